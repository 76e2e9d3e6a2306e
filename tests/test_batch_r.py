"""The R project's streaming batch job (``Rscript app/batch.R``), run for real on a smaller file.

Penguins rows resampled (3% of each nullable cell missing), scored in chunks by R, compared with
what the R service (its workers behind nginx, on 127.0.0.1) answers for the same rows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import penguin_rows
from test_r_service import R_ENV, r_manifest, r_model_path, r_project, r_service, rscript  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

ROWS = 60_000
BAD_ROW = 31_234


def r_batch(project: Path, model: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [rscript(), "app/batch.R", *map(str, args)],
        cwd=project,
        env={**os.environ, **R_ENV, "MODEL_PATH": str(model)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """This module's own registry: the R example trained here is other bytes than test_r_service's
    (an RDS is not byte-for-byte reproducible), and a version is never published twice."""
    return tmp_path_factory.mktemp("registry-batch-r")


@pytest.fixture(scope="module")
def rows(r_manifest, tmp_path_factory) -> Path:  # noqa: F811 - the fixture imported above
    root = tmp_path_factory.mktemp("batch-r")
    frame = penguin_rows(r_manifest.parent / "reference.csv", ROWS, seed=3)
    frame.to_csv(root / "rows.csv", index=False)
    frame.loc[BAD_ROW, "year"] = "late"
    frame.to_csv(root / "bad.csv", index=False)
    return root


def test_r_batch_scores_in_chunks_as_the_r_service_does(r_project, r_model_path, rows, tmp_path):  # noqa: F811
    out = tmp_path / "scores.csv"
    done = r_batch(r_project, r_model_path, rows / "rows.csv", out, "--chunk-rows", "5000")
    assert done.returncode == 0, done.stderr
    scores = pd.read_csv(out)
    assert len(scores) == ROWS
    contract = json.loads((r_project / "app/contract.json").read_text())
    assert scores[["model_name", "model_version", "model_sha256"]].drop_duplicates().values.tolist() == [
        [contract["name"], contract["version"], contract["artifact"]["sha256"]]
    ]

    picked = np.sort(np.random.default_rng(5).choice(ROWS, 2000, replace=False))
    sample = pd.read_csv(rows / "rows.csv", dtype=str, keep_default_na=False).iloc[picked]
    service = r_service(r_project, r_model_path).start(timeout=120)
    try:
        answers = []
        for start in range(0, len(sample), 500):
            body = sample.iloc[start : start + 500].to_csv(index=False)
            response = service.post_csv(body, Accept="text/csv")
            assert response.status == 200, response.body[:300]
            answers.append(pd.read_csv(io.BytesIO(response.body)))
    finally:
        service.stop()
    expected = pd.concat(answers, ignore_index=True)
    got = scores.iloc[picked].reset_index(drop=True)[list(expected.columns)]
    assert got["label"].tolist() == expected["label"].tolist()
    numbers = [c for c in expected.columns if c != "label"]
    assert np.allclose(got[numbers].to_numpy(), expected[numbers].to_numpy(), rtol=0, atol=1e-12)


def test_r_batch_fails_on_a_bad_row_or_sets_it_aside(r_project, r_model_path, rows, tmp_path):  # noqa: F811
    out = tmp_path / "scores.csv"
    done = r_batch(r_project, r_model_path, rows / "bad.csv", out, "--chunk-rows", "5000")
    assert done.returncode == 2
    assert f"column 'year', row {BAD_ROW}: 'late' is not an integer" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no partial file

    done = r_batch(r_project, r_model_path, rows / "bad.csv", out, "--chunk-rows", "5000", "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(out)) == ROWS - 1
    (rejected,) = [json.loads(line) for line in (tmp_path / "scores.rejected.jsonl").read_text().splitlines()]
    assert rejected["row"] == BAD_ROW and rejected["column"] == "year"
    assert rejected["reason"] == f"column 'year', row {BAD_ROW}: 'late' is not an integer"
    assert rejected["values"]["year"] == "late"

    done = r_batch(r_project, r_model_path, tmp_path / "rows.parquet", tmp_path / "x.csv")
    assert done.returncode == 2 and "Parquet needs R's arrow package" in done.stderr


def test_r_batch_names_rows_as_the_file_counts_them(r_project, r_model_path, rows, tmp_path):  # noqa: F811
    frame = pd.read_csv(rows / "rows.csv", dtype=str, keep_default_na=False, nrows=40)
    # A sex cell quoted over two lines, blank lines making a whole chunk of their own, and a
    # bad row after them: it is named by its row over the file.
    text = frame.to_csv(index=False).splitlines()
    header, body = text[0], text[1:]
    quoted = next(i for i in range(3, 15) if frame.loc[i, "sex"])
    body[quoted] = body[quoted].replace(",male,", ',"ma\nle",').replace(",female,", ',"fe\nmale",')
    assert "\n" in body[quoted]
    body[30] = body[30].rsplit(",", 1)[0] + ",late"
    (tmp_path / "in.csv").write_text("\n".join([header, *body[:20], "", "", "", *body[20:]]) + "\n")
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    done = r_batch(r_project, r_model_path, tmp_path / "in.csv", out, "--chunk-rows", "3", "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    rejected = [json.loads(line) for line in (out.parent / "scores.rejected.jsonl").read_text().splitlines()]
    # Row 30's year is not a number, named as the file counts rows (the quoted row is one row,
    # the blank lines none); the quoted row is refused as a whole row, or scored.
    assert rejected[-1]["row"] == 30 and rejected[-1]["column"] == "year", rejected
    assert [r["row"] for r in rejected[:-1]] in ([], [quoted]), rejected
    assert len(pd.read_csv(out)) == 40 - len(rejected)

    # JSON lines: a line holding two records is refused by its own row number.
    typed = pd.read_csv(rows / "rows.csv", nrows=10)
    records = [json.dumps(r) for r in typed.astype(object).where(typed.notna(), None).to_dict("records")]
    records[3] = records[3] + "," + records[4]
    (tmp_path / "in.jsonl").write_text("\n".join(records) + "\n")
    done = r_batch(r_project, r_model_path, tmp_path / "in.jsonl", out, "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    (rejected,) = [json.loads(line) for line in (out.parent / "scores.rejected.jsonl").read_text().splitlines()]
    assert rejected["row"] == 3 and "one JSON value on one line" in rejected["reason"], rejected
    assert len(pd.read_csv(out)) == 9
