#!/usr/bin/env python3
"""Batch benchmark: the generated streaming batch job and Spark job against MLflow's spark_udf.

Run by hand from the repository root::

    .venv/bin/python bench/batch.py [--rows 2000000] [--work DIR] [--skip-mlflow] [--skip-onnx]
    .venv/bin/python bench/batch.py --smoke   # every step on 20,000 rows; the numbers mean nothing

Same run, same model (examples/penguins), same rows (penguins resampled, 3% of the nullable
cells missing): the in-process limit (one prediction call on 1000 checked rows, one thread),
``python -m app.batch`` (CSV in, Parquet out, one worker per CPU), ``app/spark_job.py`` on
``local[2]``, and ``mlflow.pyfunc.spark_udf`` on ``local[2]``; with the ONNX engine too. Each
run is timed end to end (Spark's start included) with the peak memory of all its processes
(PSS, sampled every 0.2 s). One Markdown table on stdout, progress on stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lib.common import PROGRAMS, ROOT, BenchError, cpu_count, log, modelgen, python, reexec_in_project_venv, run
from lib.memory import Measured, measured
from lib.mlflow import mlflow_model, mlflow_venv

sys.path.append(str(ROOT / "tests"))
from support import penguin_rows  # noqa: E402

TRAIN_SCRIPT = ROOT / "examples" / "penguins" / "train.py"
DEFAULT_MLFLOW_VENV = ROOT / ".work" / "bench-mlflow"
MASTER = "local[2]"


@dataclass
class Row:
    name: str
    rows: int
    seconds: float | None = None
    rate: float | None = None
    peak_mb: float | None = None
    job_rate: float | None = None  # Spark: rows/s once the session is up (what a long job runs at)


def prepare(work: Path) -> tuple[Path, Path]:
    """The trained example and its generated project (reused from ``work`` when already there)."""
    model_dir = work / "model"
    if not (model_dir / "model.yaml").exists():
        log("training examples/penguins")
        run([python(), TRAIN_SCRIPT, "--out", model_dir, "--registry", work / "registry"], timeout=600, what="train")
    return model_dir, generate(model_dir / "model.yaml", work / "project")


def generate(manifest: Path, out: Path) -> Path:
    run([*modelgen(), "generate", manifest, "-o", out], timeout=600, what="modelgen generate")
    return out / "penguin-species"


def onnx_project(work: Path, model_dir: Path) -> tuple[Path, Path] | None:
    """The same model converted to ONNX (``modelgen convert --engine onnx``): its project and model.onnx."""
    converted = work / "model-onnx"
    if not (converted / "model.yaml").exists() or "onnx:" not in (converted / "model.yaml").read_text():
        shutil.rmtree(converted, ignore_errors=True)
        shutil.copytree(model_dir, converted)
        log("converting the model to ONNX (modelgen convert --engine onnx)")
        try:
            run([*modelgen(), "convert", converted / "model.yaml", "--engine", "onnx"], timeout=900, what="convert")
        except BenchError as err:
            log(f"no ONNX rows: {err}")
            return None
    import yaml

    uri = yaml.safe_load((converted / "model.yaml").read_text())["spec"]["artifact"]["onnx"]["uri"]
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    return generate(converted / "model.yaml", work / "project-onnx"), Path(url2pathname(urlsplit(uri).path))


def environment(project: Path, model: Path, onnx: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "MODEL_PATH": str(model), "PYTHONPATH": str(project), "PYSPARK_PYTHON": str(python())}
    env.pop("MODELGEN_ENGINE", None)
    if onnx is not None:
        env.update(MODELGEN_ENGINE="onnx", ONNX_PATH=str(onnx))
    return env


def in_process(project: Path, env: dict[str, str], rows: Path, seconds: float) -> float:
    done = run(
        [python(), PROGRAMS / "batch_rate.py", rows, str(seconds)], timeout=300, what="in-process", cwd=project, env=env
    )
    return float(done.stdout.strip().splitlines()[-1])


def timed(name: str, n: int, cmd: list, *, cwd: Path, env: dict[str, str]) -> Row:
    log(f"{name}: {' '.join(map(str, cmd))}")
    result: Measured = measured(cmd, cwd=cwd, env=env, timeout=3600, what=name)
    log(f"{name}: {result.seconds:.1f} s, {n / result.seconds:,.0f} rows/s, peak {result.peak_mb:,.0f} MB")
    row = Row(name, n, result.seconds, n / result.seconds, result.peak_mb)
    # The Spark programs say how long the job took once their session was up.
    scored = re.search(r"^(?:app\.spark_job: )?scored .* in ([\d.]+) s \(the Spark session took", result.stdout, re.M)
    if scored:
        row.job_rate = n / float(scored.group(1))
    return row


def batch_rows(project: Path, env: dict[str, str], rows: Path, n: int, out: Path, label: str) -> list[Row]:
    """The streaming batch job, then the Spark job, of one project and engine."""
    local = timed(
        f"modelgen batch ({label}, {cpu_count()} workers)", n,
        [python(), "-m", "app.batch", rows, out / f"{label}.parquet", "--progress", "log"], cwd=project, env=env,
    )  # fmt: skip
    spark = timed(
        f"modelgen Spark job ({label}, {MASTER})", n,
        [python(), "-m", "app.spark_job", rows, out / f"{label}-spark", "--master", MASTER], cwd=project, env=env,
    )  # fmt: skip
    return [local, spark]


def mlflow_row(args: argparse.Namespace, work: Path, model: Path, rows: Path, n: int) -> tuple[Row, str]:
    mlflow_python, note = mlflow_venv(args.mlflow_venv)
    model_dir, saved = mlflow_model(mlflow_python, model, work)
    env = {**os.environ, "PYSPARK_PYTHON": str(mlflow_python), "PYSPARK_DRIVER_PYTHON": str(mlflow_python)}
    cmd = [mlflow_python, PROGRAMS / "mlflow_spark_udf.py", model_dir, rows, work / "out" / "mlflow-spark", MASTER]
    return timed(f"MLflow spark_udf ({MASTER})", n, cmd, cwd=work, env=env), f"{note}; {saved}"


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(rows: list[Row], limits: dict[str, float]) -> str:
    lines = [
        "| run | rows | seconds | rows/s | ÷ in-process (native) | rows/s after Spark's start | peak memory (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    native = limits.get("native")
    for row in rows:
        ratio = row.rate / native if row.rate and native else None
        cells = [row.name, f"{row.rows:,}", _fmt(row.seconds, 1), _fmt(row.rate), _fmt(ratio, 2)]
        cells += [_fmt(row.job_rate) if row.job_rate else "", _fmt(row.peak_mb)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(rows: dict[str, Row], limits: dict[str, float]) -> list[str]:
    out = []
    for label in ("native", "onnx"):
        batch = rows.get(f"batch-{label}")
        if batch is None or label not in limits:
            continue
        ratio = batch.rate / limits[label]
        verdict = "PASS" if ratio >= 0.8 else "FAIL"
        out.append(
            f"- {verdict} streaming batch ({label}) >= 0.8 x in-process {label} rate: {batch.rate:,.0f} vs "
            f"{limits[label]:,.0f} rows/s ({ratio:.2f}), peak {batch.peak_mb:,.0f} MB"
        )
    mlflow = rows.get("mlflow")
    for label in ("native", "onnx"):
        spark = rows.get(f"spark-{label}")
        if spark is None:
            continue
        if mlflow is None:
            out.append(f"- n/a modelgen Spark ({label}) >= 1.5 x MLflow spark_udf: MLflow skipped")
            continue
        # Once Spark is up: what a job of 50 million rows runs at; end to end (JVM start included) too.
        ratio = spark.job_rate / mlflow.job_rate
        verdict = "PASS" if ratio >= 1.5 else "FAIL"
        out.append(
            f"- {verdict} modelgen Spark ({label}) >= 1.5 x MLflow spark_udf, once Spark is up: "
            f"{spark.job_rate:,.0f} vs {mlflow.job_rate:,.0f} rows/s ({ratio:.2f}); end to end "
            f"{spark.rate:,.0f} vs {mlflow.rate:,.0f} ({spark.rate / mlflow.rate:.2f})"
        )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="every step on 20,000 rows: the table, not a measurement")
    p.add_argument("--rows", type=int, help="rows to score (default 2,000,000; 20,000 with --smoke)")
    p.add_argument("--work", type=Path, help="keep the model, projects, rows and outputs here (default: a temp dir)")
    p.add_argument("--skip-mlflow", action="store_true")
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--mlflow-venv", type=Path, default=DEFAULT_MLFLOW_VENV)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    reexec_in_project_venv()
    args = parse_args(argv)
    n = args.rows or (20_000 if args.smoke else 2_000_000)
    seconds = 0.3 if args.smoke else 2.0
    temp = None if args.work else tempfile.TemporaryDirectory(prefix="bench-batch-")
    work = (args.work or Path(temp.name)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    try:
        model_dir, project = prepare(work)
        model = model_dir / "model.joblib"
        rows = work / f"rows-{n}.csv"
        if not rows.exists():
            log(f"making {n:,} rows")
            penguin_rows(model_dir / "reference.csv", n).to_csv(rows, index=False)
        (work / "out").mkdir(exist_ok=True)
        shutil.rmtree(work / "out")
        (work / "out").mkdir()

        limits, results, named = {}, [], {}
        env = environment(project, model)
        limits["native"] = in_process(project, env, rows, seconds)
        log(f"in-process native: {limits['native']:,.0f} rows/s")
        local, spark = batch_rows(project, env, rows, n, work / "out", "native")
        named.update({"batch-native": local, "spark-native": spark})
        converted = None if args.skip_onnx else onnx_project(work, model_dir)
        if converted is not None:
            onnx_project_dir, onnx_file = converted
            onnx_env = environment(onnx_project_dir, model, onnx_file)
            limits["onnx"] = in_process(onnx_project_dir, onnx_env, rows, seconds)
            log(f"in-process onnx: {limits['onnx']:,.0f} rows/s")
            local, spark = batch_rows(onnx_project_dir, onnx_env, rows, n, work / "out", "onnx")
            named.update({"batch-onnx": local, "spark-onnx": spark})
        note = "MLflow skipped (--skip-mlflow)"
        if not args.skip_mlflow:
            named["mlflow"], note = mlflow_row(args, work, model, rows, n)
        for label in limits:
            results.append(Row(f"in-process {label} (1000 rows a call, 1 thread)", n, None, limits[label]))
        results += [
            named[k] for k in ("batch-native", "spark-native", "batch-onnx", "spark-onnx", "mlflow") if k in named
        ]
    except BenchError as err:
        log(f"failed: {err}")
        return 1
    finally:
        if temp is not None:
            temp.cleanup()

    if args.smoke:
        print("Smoke run (--smoke): every step on a small file; the numbers measure nothing.\n")
    import pyspark
    import sklearn

    print(table(results, limits))
    print()
    versions = f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, pyspark {pyspark.__version__}"
    after = os.getloadavg()[0]
    print(
        f"{dt.date.today()}: {cpu_count()} CPUs, {versions} ({MASTER}); 1-min load average {load:.2f} before "
        f"the run, {after:.2f} after (other work on the machine lowers every number)"
    )
    print(note)
    print()
    print("Goals:")
    print("\n".join(goals(named, limits)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
