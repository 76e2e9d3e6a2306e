"""The generated Spark job (``app/spark_job.py``) run for real: pyspark from PyPI, ``local[2]``, Java 17.

Spark's Python workers are this venv's Python (``PYSPARK_PYTHON``: it has the model's libraries
and pyarrow), as the batch job's are; the file is cut into 8 partitions, so the two Python
workers of ``local[2]`` each score several of them and must load the model only once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import penguin_rows

pytestmark = pytest.mark.slow

ROWS = 200_000
BAD_ROW = 123_457
PARTITIONS = ("--conf", "spark.sql.files.maxPartitionBytes=1m")  # 8 MB of CSV: 8 tasks


def run(project: Path, model: Path, module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MODEL_PATH": str(model),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def parquet_folder(folder: Path) -> pd.DataFrame:
    """Spark's part files in their order: the input's order, as each task writes its rows in order."""
    parts = sorted(folder.glob("part-*.parquet"))
    assert parts, f"no part files in {folder}"
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def model(penguins_manifest) -> Path:
    return penguins_manifest.parent / "model.joblib"


@pytest.fixture(scope="module")
def rows(penguins_manifest, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spark")
    frame = penguin_rows(penguins_manifest.parent / "reference.csv", ROWS, seed=11)
    frame.loc[BAD_ROW, "year"] = "late"
    frame.to_csv(root / "rows.csv", index=False)
    frame.iloc[:5000].to_csv(root / "head.csv", index=False)
    return root


def test_spark_scores_as_the_batch_job_does_and_sets_rejected_rows_apart(penguins_project, model, rows, tmp_path):
    out = tmp_path / "spark"
    done = run(
        penguins_project, model, "app.spark_job", rows / "rows.csv", out, "--master", "local[2]", *PARTITIONS,
        "--on-error", "skip", "--keep", "island",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    local = tmp_path / "local.parquet"
    done_local = run(
        penguins_project, model, "app.batch", rows / "rows.csv", local, "--on-error", "skip", "--keep", "island"
    )
    assert done_local.returncode == 0, done_local.stderr

    spark = parquet_folder(out).sort_values("row_id", kind="stable").reset_index(drop=True)
    batch = pq.read_table(local).to_pandas()
    assert len(spark) == len(batch) == ROWS - 1
    assert list(spark.columns) == ["row_id", *batch.columns]
    assert spark["row_id"].is_unique
    # Row for row: the same labels and probabilities, the same trace of the model.
    pd.testing.assert_frame_equal(spark.drop(columns="row_id"), batch, check_exact=True)

    # The refused row is in its own output, with its row_id, its reason and its values.
    (rejected,) = parquet_folder(Path(f"{out}_rejected")).to_dict("records")
    (local_rejected,) = [json.loads(line) for line in (tmp_path / "local.rejected.jsonl").read_text().splitlines()]
    assert rejected["column"] == local_rejected["column"] == "year"
    assert rejected["reason"] == f"column 'year', row_id {rejected['row_id']}: 'late' is not an integer"
    assert json.loads(rejected["values"]) == local_rejected["values"]
    assert local_rejected["row"] == BAD_ROW

    # Each Python worker loaded the model once, and scored more than one partition with it.
    loads = re.findall(r"app\.spark_job: loaded penguin-species 1\.0\.0 in Python worker (\d+)", done.stderr)
    tasks = len(list(out.glob("part-*.parquet")))
    assert 1 <= len(loads) == len(set(loads)) <= 2 < tasks, (loads, tasks)


def test_a_bad_row_fails_the_spark_job_naming_it_and_leaves_no_output(penguins_project, model, rows, tmp_path):
    bad = pd.read_csv(rows / "head.csv", dtype=str, keep_default_na=False)
    bad.loc[4321, "year"] = "late"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "scores"
    done = run(penguins_project, model, "app.spark_job", tmp_path / "bad.csv", out, "--master", "local[2]")
    assert done.returncode == 2, done.stderr[-3000:]
    assert re.search(r"bad\.csv: column 'year', row_id \d+: 'late' is not an integer$", done.stderr.strip(), re.M)
    assert not list(tmp_path.rglob("*.parquet")) and not (out / "_SUCCESS").exists()


def test_skip_mode_writes_neither_output_when_one_of_them_exists(penguins_project, model, rows, tmp_path):
    # The rejected rows' folder is left from an earlier run: the predictions are not written
    # before the second write would fail.
    (tmp_path / "scores_rejected").mkdir()
    (tmp_path / "scores_rejected" / "part-0.parquet").write_bytes(b"earlier")
    out = tmp_path / "scores"
    done = run(penguins_project, model, "app.spark_job", rows / "head.csv", out, "--master", "local[1]",
               "--on-error", "skip")  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().endswith(f"{out}_rejected exists already: give another output, or --mode overwrite")
    assert not out.exists()
    assert (tmp_path / "scores_rejected" / "part-0.parquet").read_bytes() == b"earlier"
