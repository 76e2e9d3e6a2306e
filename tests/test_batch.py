"""The generated project's streaming batch job (``python -m app.batch``), run for real.

Penguins rows resampled into large files (3% of each nullable cell missing) are scored by the
project's own venv (exactly its requirements.txt), and compared with what the real service
(gunicorn, on 127.0.0.1) answers for the same rows. Peak memory is the largest resident set of
any process of the job (the main process and its scoring workers), as the kernel counts it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import Service, fetch_artifact, penguin_rows

from modelgen.cli import main

pytestmark = pytest.mark.slow

ROWS = 2_000_000
CHECKED = 10_000
# The largest resident set of any process of the job, on 2 million rows (320 MB measured): the
# model, pandas, scikit-learn, xgboost and pyarrow take about 270 MB of it, 1 MB CSV blocks and
# the chunks in flight (at most two per worker, 10,000 rows each) the rest.
PEAK_RSS_MB = 400
# Four times the rows may add no more than this to the peak (20 MB measured, the allocators
# settling): memory does not grow with the file.
GROWTH_MB = 40
BAD_ROW = 150_123  # in the middle of the smaller files below


def batch(python: Path, project: Path, model: Path, *args: str | Path, timeout: int = 600) -> tuple[int, str, int]:
    """Run ``python -m app.batch ARGS`` in ``project``: (exit code, stderr, peak RSS in MB of its largest process).

    A small parent runs it and reports RUSAGE_CHILDREN's ru_maxrss: the batch process and the
    workers it forked and waited for, never this test's other children.
    """
    measure = (
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, python, "-m", "app.batch", *map(str, args), "--progress", "log"],
        cwd=project,
        env={**os.environ, "MODEL_PATH": str(model)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    *said, last = done.stderr.strip().splitlines()
    kilobytes, code = last.split()
    return int(code), "\n".join(said), int(kilobytes) // 1024


@pytest.fixture(scope="module")
def model(penguins_project, penguins_python, tmp_path_factory) -> Path:
    return fetch_artifact(penguins_project, penguins_python, tmp_path_factory.mktemp("model") / "model.joblib")


@pytest.fixture(scope="module")
def files(penguins_manifest, tmp_path_factory) -> Path:
    """big.csv (2 million rows), small.csv (300,000) and bad.csv (small.csv with row BAD_ROW broken)."""
    root = tmp_path_factory.mktemp("batch")
    reference = penguins_manifest.parent / "reference.csv"
    penguin_rows(reference, ROWS).to_csv(root / "big.csv", index=False)
    small = penguin_rows(reference, 300_000, seed=1)
    small.to_csv(root / "small.csv", index=False)
    small.loc[BAD_ROW, "year"] = "late"
    small.to_csv(root / "bad.csv", index=False)
    return root


@pytest.fixture(scope="module")
def service(penguins_project, penguins_python, model):
    server = Service(penguins_project, penguins_python, model, env={"MODELGEN_WORKERS": "2"}).start()
    yield server
    server.stop()


def served(service: Service, rows: pd.DataFrame) -> pd.DataFrame:
    """The service's CSV answers for ``rows``, 1000 rows a request."""
    answers = []
    for start in range(0, len(rows), 1000):
        body = rows.iloc[start : start + 1000].to_csv(index=False)
        response = service.post_csv(body, Accept="text/csv")
        assert response.status == 200, response.body[:300]
        answers.append(pd.read_csv(io.BytesIO(response.body)))
    return pd.concat(answers, ignore_index=True)


def test_two_million_rows_score_as_the_service_does_in_bounded_memory(
    penguins_project, penguins_python, model, files, service, tmp_path
):
    out = tmp_path / "scores.parquet"
    code, said, peak = batch(penguins_python, penguins_project, model, files / "big.csv", out, "--log-every", "2")
    assert code == 0, said
    assert f"{out}: {ROWS} predictions" in said
    assert "rows/s)" in said  # the periodic progress line, as logged when stderr is no terminal
    scores = pq.read_table(out)
    assert scores.num_rows == ROWS
    header = ["label", "probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]
    assert scores.column_names == [*header, "model_name", "model_version", "model_sha256"]

    # Traceable: every row and the footer name the model and the artifact's bytes.
    contract = json.loads((penguins_project / "app/contract.json").read_text())
    sha256 = contract["artifact"]["sha256"]
    for name, value in (("model_name", "penguin-species"), ("model_version", "1.0.0"), ("model_sha256", sha256)):
        assert scores.column(name).unique().to_pylist() == [value]
    footer = json.loads(pq.read_schema(out).metadata[b"modelgen"])
    assert footer == {
        "model_name": "penguin-species",
        "model_version": "1.0.0",
        "model_sha256": sha256,
        "engine": "native",
    }

    picked = np.sort(np.random.default_rng(7).choice(ROWS, CHECKED, replace=False))
    rows = pd.read_csv(files / "big.csv", dtype=str, keep_default_na=False).iloc[picked]
    expected = served(service, rows)
    got = scores.take(picked).select(header).to_pandas()
    assert got["label"].tolist() == expected["label"].tolist()
    assert np.allclose(got[header[1:]].to_numpy(), expected[header[1:]].to_numpy(), rtol=0, atol=1e-12)

    assert peak < PEAK_RSS_MB, f"peak RSS {peak} MB"
    smaller = tmp_path / "head.csv"
    pd.read_csv(files / "big.csv", dtype=str, keep_default_na=False, nrows=ROWS // 4).to_csv(smaller, index=False)
    code, said, small_peak = batch(penguins_python, penguins_project, model, smaller, tmp_path / "head.parquet")
    assert code == 0, said
    assert peak - small_peak < GROWTH_MB, f"peak RSS {small_peak} MB on {ROWS // 4:,} rows, {peak} MB on {ROWS:,}"


def test_a_bad_row_fails_the_run_by_its_number_and_leaves_no_output(
    penguins_project, penguins_python, model, files, tmp_path
):
    out = tmp_path / "scores.csv"
    code, said, _ = batch(penguins_python, penguins_project, model, files / "bad.csv", out)
    assert code == 2
    assert f"column 'year', row {BAD_ROW}: 'late' is not an integer" in said
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written, no partial file


def test_skip_sets_a_bad_row_aside_with_its_number_and_scores_the_rest(
    penguins_project, penguins_python, model, files, tmp_path
):
    out = tmp_path / "scores.csv"
    code, said, _ = batch(penguins_python, penguins_project, model, files / "bad.csv", out, "--on-error", "skip")
    assert code == 0, said
    rejected_file = tmp_path / "scores.rejected.jsonl"
    rejected = [json.loads(line) for line in rejected_file.read_text().splitlines()]
    assert len(rejected) == 1
    (row,) = rejected
    assert row["row"] == BAD_ROW and row["column"] == "year"
    assert row["reason"] == f"column 'year', row {BAD_ROW}: 'late' is not an integer"
    assert row["values"]["year"] == "late" and set(row["values"]) == set(pd.read_csv(files / "bad.csv", nrows=0))

    # Every other row scored, in order, exactly as the clean file's rows are.
    code, said, _ = batch(penguins_python, penguins_project, model, files / "small.csv", tmp_path / "clean.csv")
    assert code == 0, said
    skipped, clean = pd.read_csv(out), pd.read_csv(tmp_path / "clean.csv")
    assert len(skipped) == 300_000 - 1
    pd.testing.assert_frame_equal(skipped, clean.drop(index=BAD_ROW).reset_index(drop=True))


def test_parquet_and_json_lines_in_give_what_csv_gives(penguins_project, penguins_python, model, files, tmp_path):
    rows = pd.read_csv(files / "small.csv", dtype=str, keep_default_na=False, nrows=50_000)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    typed = pd.read_csv(tmp_path / "rows.csv")  # numbers as numbers, empty cells as missing
    typed["year"] = typed["year"].astype("int64")
    typed.to_parquet(tmp_path / "rows.parquet", index=False)
    with (tmp_path / "rows.jsonl").open("w") as f:
        for record in typed.astype(object).where(typed.notna(), None).to_dict("records"):
            f.write(json.dumps(record) + "\n")

    for source, target in (
        ("rows.csv", "from-csv.csv"),
        ("rows.parquet", "from-parquet.parquet"),
        ("rows.jsonl", "from-jsonl.jsonl"),
    ):
        code, said, _ = batch(
            penguins_python, penguins_project, model, tmp_path / source, tmp_path / target, "--keep", "island"
        )
        assert code == 0, said
    from_csv = pd.read_csv(tmp_path / "from-csv.csv")
    from_parquet = pd.read_parquet(tmp_path / "from-parquet.parquet")
    from_jsonl = pd.read_json(tmp_path / "from-jsonl.jsonl", lines=True)
    assert list(from_csv.columns[:2]) == ["island", "label"]  # --keep: the input column first
    assert len(from_csv) == len(from_parquet) == len(from_jsonl) == 50_000
    numbers = ["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]
    for other in (from_parquet, from_jsonl):
        assert other["label"].tolist() == from_csv["label"].tolist()
        assert other["island"].tolist() == from_csv["island"].tolist()
        assert np.allclose(other[numbers].to_numpy(), from_csv[numbers].to_numpy(), rtol=0, atol=1e-12)


def test_a_missing_column_stops_either_mode_before_anything_is_written(
    penguins_project, penguins_python, model, tmp_path
):
    rows = tmp_path / "rows.csv"
    rows.write_text("island,bill_length_mm\nDream,40.1\n")
    for mode in ("fail", "skip"):
        code, said, _ = batch(penguins_python, penguins_project, model, rows, tmp_path / "out.csv", "--on-error", mode)
        assert code == 2 and "missing column 'bill_depth_mm'" in said, said
        assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_modelgen_batch_runs_the_project_s_batch_job_here(penguins_project, files, tmp_path):
    # `--engine local` (the default): the project's own entry point in a private copy, the artifact
    # fetched from the registry and checked by modelgen, in this Python.
    out = tmp_path / "scores.parquet"
    args = ["batch", str(penguins_project), "--input", str(files / "bad.csv"), "--output", str(out)]
    assert main([*args, "--on-error", "skip", "--keep", "island"]) == 0
    assert pq.read_metadata(out).num_rows == 300_000 - 1
    assert pq.read_schema(out).names[:2] == ["island", "label"]
    (rejected,) = (tmp_path / "scores.rejected.jsonl").read_text().splitlines()
    assert json.loads(rejected)["row"] == BAD_ROW


def test_a_broken_file_or_a_line_of_two_rows_is_one_line_and_leaves_nothing(
    penguins_project, penguins_python, model, files, tmp_path
):
    rows = pd.read_csv(files / "small.csv", dtype=str, keep_default_na=False, nrows=200)
    # A CSV line of another width in the first block pyarrow reads (when the reader is opened).
    lines = rows.to_csv(index=False).splitlines()
    lines[4] += ",surplus"
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    # A Parquet input that is not there, a URL scheme nobody serves.
    cases = [("wide.csv", "row 3: has 8 fields, the header has 7"), ("gone.parquet", "No such file")]
    for source, words in cases:
        for mode in ("fail", "skip"):
            out = tmp_path / "out" / "scores.parquet"
            out.parent.mkdir(exist_ok=True)
            code, said, _ = batch(
                penguins_python, penguins_project, model, tmp_path / source, out, "--on-error", mode, "--workers", "2"
            )
            assert code == 2 and words in said and "Traceback" not in said, said
            assert not list(out.parent.iterdir()), said  # no output, no partial, no rejected file
    code, said, _ = batch(penguins_python, penguins_project, model, tmp_path / "wide.csv", "nope://x/out.csv")
    assert code == 2 and "nope" in said and "Traceback" not in said, said

    # JSON lines: a line holding two records is refused by its own row number, not the one after it.
    typed = pd.read_csv(files / "small.csv", nrows=200)
    records = [json.dumps(r) for r in typed.astype(object).where(typed.notna(), None).to_dict("records")]
    records[7] = records[7] + "," + records[8]
    (tmp_path / "rows.jsonl").write_text("\n".join(records) + "\n")
    out = tmp_path / "json" / "scores.csv"
    out.parent.mkdir()
    code, said, _ = batch(penguins_python, penguins_project, model, tmp_path / "rows.jsonl", out, "--on-error", "skip")
    assert code == 0, said
    (rejected,) = [json.loads(line) for line in (out.parent / "scores.rejected.jsonl").read_text().splitlines()]
    assert rejected["row"] == 7 and "not valid JSON" in rejected["reason"], rejected
    assert len(pd.read_csv(out)) == 199


def test_kept_json_values_are_text_whatever_each_chunk_holds(penguins_project, penguins_python, model, files, tmp_path):
    typed = pd.read_csv(files / "small.csv", nrows=30)
    records = typed.astype(object).where(typed.notna(), None).to_dict("records")
    # customer: nulls for the first chunk, then numbers, a string, an object: one text column.
    ids: list = [None] * 10 + list(range(10, 25)) + ["c-25", {"crm": 26}, True, 28.5, None]
    for record, customer in zip(records, ids, strict=True):
        record["customer"] = customer
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "scores.parquet"
    code, said, _ = batch(
        penguins_python, penguins_project, model, tmp_path / "rows.jsonl", out, "--keep", "customer",
        "--chunk-rows", "10",
    )  # fmt: skip
    assert code == 0, said
    kept = pq.read_table(out).column("customer").to_pylist()
    assert kept == [None] * 10 + [str(i) for i in range(10, 25)] + ["c-25", '{"crm": 26}', "true", "28.5", None]
