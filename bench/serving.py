#!/usr/bin/env python3
"""Serving benchmark: the generated penguins service against MLflow's scoring server.

Run by hand from the repository root::

    .venv/bin/python bench/serving.py [--duration 10] [--skip-mlflow] [--skip-waitress] [--work DIR]
    .venv/bin/python bench/serving.py --smoke   # every step in about a minute; the numbers mean nothing

It trains examples/penguins (or reuses ``--work DIR``), generates the service with
``modelgen generate``, loads every server with wrk on 127.0.0.1 and prints one Markdown
table on stdout (progress goes to stderr). Every server it starts runs in its own process
group and is stopped, by that group's id, before the script returns. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lib.common import PROGRAMS, ROOT, BenchError, cpu_count, log, modelgen, python, reexec_in_project_venv, run
from lib.mlflow import PINNED, mlflow_model, mlflow_server, mlflow_venv, workers_flag
from lib.servers import Server, free_port, http_request, running
from lib.wrk import WrkResult, require_wrk, wrk

TRAIN_SCRIPT = ROOT / "examples" / "penguins" / "train.py"
DEFAULT_MLFLOW_VENV = ROOT / ".work" / "bench-mlflow"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
# What the servers inherit: the environment as it was, before the bench pins its own BLAS/OpenMP
# threads to one, so MLflow runs in its default configuration (OPENBLAS_CORETYPE etc. stay as set).
SERVER_ENV = dict(os.environ)
CSV_ROWS = 1000


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs: the real bench, or ``--smoke`` (every step, in about a minute)."""

    duration: int  # seconds of each wrk run
    warmup: int  # seconds of the wrk warm-up before a server's runs
    in_process: float  # seconds of each in-process rate (the best of 3 windows)
    parallel: float  # seconds of the N-processes-at-once rate
    path_scale: float  # repetitions of the in-process request path, × the real bench's


FULL = Sizes(duration=10, warmup=2, in_process=3.0, parallel=3.0, path_scale=1.0)
SMOKE = Sizes(duration=1, warmup=1, in_process=0.6, parallel=0.5, path_scale=0.05)


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    columns: list[str]
    classes: list[str]
    row_body: Path  # 1-row dataframe_split JSON
    csv_body: Path  # CSV_ROWS rows with a header
    row_frame: Any  # the same row as a DataFrame (in-process)
    csv_frame: Any  # the same rows as a DataFrame, parsed from the CSV body


def make_workload(work: Path, manifest: dict[str, Any], sample_path: Path, model: Any) -> Workload:
    import numpy as np
    import pandas as pd
    from palmerpenguins import load_penguins

    columns = [c["name"] for c in manifest["spec"]["input"]]
    records = json.loads(sample_path.read_text())
    complete = [r for r in records if all(r.get(c) is not None for c in columns)]
    if not complete:
        raise BenchError(f"{sample_path}: no record with every column set")
    row = [complete[0][c] for c in columns]
    body = {"dataframe_split": {"columns": columns, "data": [row]}}
    row_body = work / "bench-1row.json"
    row_body.write_text(json.dumps(body))

    data = load_penguins()[columns].sample(n=CSV_ROWS, replace=True, random_state=20240601)
    csv_text = data.to_csv(index=False)
    csv_body = work / f"bench-{CSV_ROWS}rows.csv"
    csv_body.write_text(csv_text)

    text = [c["name"] for c in manifest["spec"]["input"] if c.get("type") == "string"]

    def as_service_frame(frame: Any) -> Any:
        # As the generated service builds rows (and as train.py trained): text as object with NaN
        # for null, not pandas 3's "str" dtype.
        for name in text:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
        return frame

    return Workload(
        columns=columns,
        classes=[str(c) for c in model.classes_],
        row_body=row_body,
        csv_body=csv_body,
        row_frame=as_service_frame(pd.DataFrame([row], columns=columns)),
        csv_frame=as_service_frame(pd.read_csv(io.StringIO(csv_text))),
    )


def in_process(model: Any, workload: Workload, seconds: float, windows: int = 3) -> tuple[float, float]:
    """Single-core predict_proba rates: (1-row calls/s, 1000-row rows/s).

    The best of a few windows: it is a limit, and other work on the machine only lowers it.
    """

    def window(frame: Any, length: float) -> float:
        calls, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < length:
            model.predict_proba(frame)
            calls += 1
        return calls / elapsed

    def rate(frame: Any) -> float:
        for _ in range(3):
            model.predict_proba(frame)
        return max(window(frame, seconds / windows) for _ in range(windows))

    one = rate(workload.row_frame)
    rows = rate(workload.csv_frame) * len(workload.csv_frame)
    return one, rows


def parallel_in_process(model: Any, frame: Any, processes: int, seconds: float) -> float:
    """1-row predict_proba calls/s of ``processes`` single-threaded processes running at once.

    This is the machine's real ceiling for one worker per core: two busy processes on two vCPUs
    rarely run at twice the speed of one (shared caches, memory bandwidth, the hypervisor).
    """
    import pickle

    payload = pickle.dumps((model, frame, seconds))
    program = str(PROGRAMS / "parallel_predict.py")
    procs = [
        subprocess.Popen([sys.executable, program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(payload)
        proc.stdin.close()
    total = 0.0
    for proc in procs:
        assert proc.stdout is not None
        total += float(proc.stdout.read().decode().strip())
        proc.wait(timeout=120)
    return total


def probabilities(predictions: list[Any], classes: list[str]) -> list[list[float]]:
    """modelgen's [{"label", "probabilities": {...}}] or MLflow's [[p, ...]] as rows of floats."""
    out = []
    for item in predictions:
        if isinstance(item, dict) and "probabilities" in item:
            out.append([float(item["probabilities"][c]) for c in classes])
        elif isinstance(item, dict):
            out.append([float(item[c]) for c in classes])
        else:
            out.append([float(p) for p in item])
    return out


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    name: str
    startup_s: float | None = None
    one_2: WrkResult | None = None
    one_8: WrkResult | None = None
    csv_2: WrkResult | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def csv_rows_per_s(self) -> float | None:
        return self.csv_2.rps * CSV_ROWS if self.csv_2 else None


def check_server(server: Server, workload: Workload, reference: list[list[float]]) -> str:
    """One correct answer from each payload before loading; returns a note on the probabilities."""
    url = f"{server.url}/invocations"
    answer = http_request("POST", url, workload.row_body.read_bytes(), {"Content-Type": "application/json"})
    status, body = answer.status, answer.body
    if status != 200:
        raise BenchError(f"1-row JSON answered {status}: {body[:300]!r}")
    if len(json.loads(body)["predictions"]) != 1:
        raise BenchError(f"1-row JSON: expected 1 prediction, got {body[:300]!r}")
    began = time.perf_counter()
    answer = http_request("POST", url, workload.csv_body.read_bytes(), {"Content-Type": "text/csv"})
    status, body = answer.status, answer.body
    took = time.perf_counter() - began
    if status != 200:
        raise BenchError(f"{CSV_ROWS}-row CSV answered {status}: {body[:300]!r}")
    predictions = json.loads(body)["predictions"]
    if len(predictions) != CSV_ROWS:
        raise BenchError(f"{CSV_ROWS}-row CSV: expected {CSV_ROWS} predictions, got {len(predictions)}")
    got = probabilities(predictions, workload.classes)
    diff = max(abs(a - b) for r, s in zip(got, reference, strict=True) for a, b in zip(r, s, strict=True))
    return (
        f"{CSV_ROWS}-row CSV check: 200, {CSV_ROWS} predictions in {took * 1000:.0f} ms, "
        f"max |Δp| vs in-process predict_proba {diff:.1e}"
    )


def measure(server: Server, row: Row, workload: Workload, reference: list[list[float]], sizes: Sizes) -> None:
    url = f"{server.url}/invocations"
    pgid = server.proc.pid if server.proc else 0
    row.notes.append(check_server(server, workload, reference))
    # Short warm-up so first-request costs (imports, caches, worker spawn) stay out of the numbers.
    wrk(url, workload.row_body, "application/json", 8, sizes.warmup, pgid)
    duration = sizes.duration
    log(f"{row.name}: 1-row JSON, 2 connections, {duration} s")
    row.one_2 = wrk(url, workload.row_body, "application/json", 2, duration, pgid)
    log(f"{row.name}: 1-row JSON, 8 connections, {duration} s")
    row.one_8 = wrk(url, workload.row_body, "application/json", 8, duration, pgid)
    log(f"{row.name}: {CSV_ROWS}-row CSV, 2 connections, {duration} s")
    row.csv_2 = wrk(url, workload.csv_body, "text/csv", 2, duration, pgid)
    other = max(r.other_cpu for r in (row.one_2, row.one_8, row.csv_2))
    warning = " (numbers lowered: rerun on a quiet machine)" if other > 0.05 else ""
    row.notes.append(f"other processes used up to {other:.0%} of the CPUs during its wrk runs{warning}")
    for label, result in (("1-row @2", row.one_2), ("1-row @8", row.one_8), ("CSV @2", row.csv_2)):
        if result.non_2xx or result.socket_errors:
            row.notes.append(
                f"wrk {label}: {result.non_2xx} non-2xx of {result.requests}, socket errors {result.socket_errors}"
            )
    log(
        f"{row.name}: {row.one_2.rps:.0f} / {row.one_8.rps:.0f} req/s, p99@8 {row.one_8.p99_ms:.1f} ms, "
        f"{row.csv_rows_per_s:.0f} CSV rows/s"
    )


def bench_server(server: Server, row: Row, workload: Workload, reference: list[list[float]], sizes: Sizes) -> None:
    """Start, check, load and stop one server; a failure is recorded in the row, not raised."""
    try:
        with running(server):
            row.startup_s = server.startup_seconds
            try:
                measure(server, row, workload, reference, sizes)
            except BenchError:
                log(f"--- {server.name}: log tail ---\n{server.output_tail()}")
                raise
    except BenchError as err:
        row.error = str(err).splitlines()[0]
        log(f"{row.name} FAILED: {err}")


# --------------------------------------------------------------------------- modelgen side


def prepare_model(work: Path) -> Path:
    """Train the penguins example into work/model unless work/model/model.yaml already exists."""
    out = work / "model"
    if (out / "model.yaml").is_file() and (out / "model.joblib").is_file():
        log(f"reusing the trained model in {out}")
        return out
    if not TRAIN_SCRIPT.is_file():
        raise BenchError(f"{TRAIN_SCRIPT} does not exist yet")
    log(f"training {TRAIN_SCRIPT.relative_to(ROOT)} into {out}")
    began = time.monotonic()
    run(
        [python(), TRAIN_SCRIPT, "--out", out, "--registry", work / "registry"],
        timeout=300,
        what="train.py",
        cwd=ROOT,
        env=SERVER_ENV,
    )
    log(f"trained in {time.monotonic() - began:.1f} s")
    return out


def generate(work: Path, manifest_path: Path, name: str) -> Path:
    out = work / "generated"
    if out.exists():
        shutil.rmtree(out)
    run([*modelgen(), "generate", manifest_path, "-o", out], timeout=120, what="modelgen generate")
    project = out / name
    if not (project / "app").is_dir():
        raise BenchError(f"modelgen generate wrote no {project}/app")
    log(f"generated {project}")
    return project


def modelgen_server(
    project: Path, model_path: Path, server: str, workers: int, work: Path, monitoring: str = "on"
) -> Server:
    """``monitoring``: "on" (the profile's counters), "log" (counters and the sampled input log,
    at the manifest's sample rate), or "off" (MODELGEN_MONITORING=0)."""
    port = free_port()
    extra = {"off": {"MODELGEN_MONITORING": "0"}, "on": {}, "log": {"MODELGEN_INPUT_LOG": str(work / "inputs")}}
    env = {
        **SERVER_ENV,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "MODEL_PATH": str(model_path),
        "MODELGEN_WORKERS": str(workers),
        "MODELGEN_SERVER": server,
        "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{server}"),
        **extra[monitoring],
    }
    label = "" if monitoring == "on" else {"off": ", monitoring off", "log": ", monitoring + input log"}[monitoring]
    return Server(
        name=f"modelgen {server} ({workers} {'workers' if server == 'gunicorn' else 'threads'}{label})",
        cmd=[python(), "-m", "app"],
        cwd=project,
        env=env,
        port=port,
        log_path=work / f"server-modelgen-{server}.log",
    )


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def table(rows: list[Row], cores: int, one_rate: float, rows_rate: float) -> str:
    header = [
        "server",
        "1-row req/s @2",
        "1-row req/s @8",
        "p50 @8 (ms)",
        "p99 @8 (ms)",
        f"{CSV_ROWS}-row CSV rows/s @2",
        "req/s@8 ÷ (cores × in-proc)",
        "CSV rows/s ÷ in-proc",
        "start-up (s)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in rows:
        if row.error and not row.one_8:
            cells = [row.name, f"error: {row.error}"] + [""] * (len(header) - 3) + [_fmt(row.startup_s, 2)]
        else:
            cells = [
                row.name,
                _fmt(row.one_2.rps if row.one_2 else None),
                _fmt(row.one_8.rps if row.one_8 else None),
                _fmt(row.one_8.p50_ms if row.one_8 else None, 1),
                _fmt(row.one_8.p99_ms if row.one_8 else None, 1),
                _fmt(row.csv_rows_per_s),
                _fmt(row.one_8.rps / (cores * one_rate) if row.one_8 else None, 2),
                _fmt(row.csv_rows_per_s / rows_rate if row.csv_rows_per_s else None, 2),
                _fmt(row.startup_s, 2),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(ours: Row, mlflow_rows: list[Row], cores: int, one_rate: float, rows_rate: float) -> list[str]:
    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "FAIL")

    measured = [r for r in mlflow_rows if r.one_8]
    best_rps = max(measured, key=lambda r: r.one_8.rps) if measured else None
    best_csv = max(measured, key=lambda r: r.csv_rows_per_s or 0) if measured else None
    rps = ours.one_8.rps if ours.one_8 else None
    p99 = ours.one_8.p99_ms if ours.one_8 else None
    csv = ours.csv_rows_per_s
    ceiling = cores * one_rate
    out = []

    def add(ok: bool | None, text: str) -> None:
        out.append(f"- {verdict(ok)} {text}")

    if best_rps and rps is not None:
        need = 3 * best_rps.one_8.rps
        best = f"({best_rps.name}: {best_rps.one_8.rps:,.0f})"
        add(rps >= need, f"1-row req/s @8 {rps:,.0f} ≥ 3 × MLflow best {best} = {need:,.0f}")
    else:
        add(None, "1-row req/s @8 ≥ 3 × MLflow best (MLflow not measured)")
    add(
        None if rps is None else rps >= 0.85 * ceiling,
        f"1-row req/s @8 {_fmt(rps)} ≥ 0.85 × {cores} cores × in-process {one_rate:,.0f}/s = {0.85 * ceiling:,.0f}",
    )
    add(None if p99 is None else p99 <= 50, f"p99 @8 {_fmt(p99, 1)} ms ≤ 50 ms")
    if best_csv and csv is not None:
        need = 1.5 * best_csv.csv_rows_per_s
        best = f"({best_csv.name}: {best_csv.csv_rows_per_s:,.0f})"
        add(csv >= need, f"CSV rows/s {csv:,.0f} ≥ 1.5 × MLflow best {best} = {need:,.0f}")
    else:
        add(None, "CSV rows/s ≥ 1.5 × MLflow best (MLflow not measured)")
    add(
        None if csv is None else csv >= 0.8 * rows_rate,
        f"CSV rows/s {_fmt(csv)} ≥ 0.8 × in-process {rows_rate:,.0f} rows/s = {0.8 * rows_rate:,.0f}",
    )
    add(None if ours.startup_s is None else ours.startup_s <= 3, f"start-up {_fmt(ours.startup_s, 2)} s ≤ 3 s")
    return out


def path_cost(project: Path, model_path: Path, workload: Workload, work: Path, scale: float) -> list[str]:
    """The request path and the monitor's work on it, in one process (bench/programs/path_cost.py)."""
    (work / "bodies").mkdir(exist_ok=True)
    shutil.copyfile(workload.row_body, work / "bodies" / "one.json")
    shutil.copyfile(workload.csv_body, work / "bodies" / "many.csv")
    metrics = work / "path-cost-metrics"
    metrics.mkdir(exist_ok=True)
    env = {**os.environ, "MODEL_PATH": str(model_path)}
    program = PROGRAMS / "path_cost.py"
    done = run(
        [python(), program, model_path, work / "bodies", metrics, str(scale)],
        timeout=600, what="in-process request path", cwd=project, env=env,
    )  # fmt: skip
    t = json.loads(done.stdout)
    lines = [
        "In-process: the request path (parse, predict, encode; best of 5) and the monitor's work on it:",
        "",
        "| request | path (ms) | counters (ms) | share | counters + input log (ms) | share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    goals = []
    for label, name in (("one", "1-row JSON"), ("many", f"{CSV_ROWS}-row CSV")):
        off, on, logged = t[f"{label}-off"], t[f"{label}-on"], t[f"{label}-log"]
        lines.append(
            f"| {name} | {off * 1e3:.2f} | {on * 1e3:.3f} | {on / (off + on):.1%} | {logged * 1e3:.3f} | "
            f"{logged / (off + logged):.1%} |"
        )
        share = logged / (off + logged)
        goals.append(f"- {'PASS' if share <= 0.05 else 'FAIL'} {name}: counters + input log take {share:.1%} (≤ 5%)")
    return [*lines, "", *goals]


def monitoring_cost(rows: list[Row], rounds: int) -> list[str]:
    """Median throughput with monitoring off, on and with the input log; the ≤ 5% loss goal."""
    import statistics

    def median(kind: str, value: Any) -> float | None:
        values = [value(r) for r in rows if r.name.endswith(kind) and r.one_8]
        return statistics.median(values) if values else None

    kinds = {"off": "monitoring off)", "on": "workers)", "log": "monitoring + input log)"}
    one = {k: median(v, lambda r: r.one_8.rps) for k, v in kinds.items()}
    csv = {k: median(v, lambda r: r.csv_rows_per_s) for k, v in kinds.items()}
    lines = [
        f"Monitoring cost, gunicorn, median of {rounds} alternating rounds:",
        "",
        "| monitoring | 1-row req/s @8 | vs off | CSV rows/s @2 | vs off |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {"off": "off", "on": "counters", "log": "counters + input log"}
    for kind, label in labels.items():
        ratio_one = one[kind] / one["off"] if one[kind] and one["off"] else None
        ratio_csv = csv[kind] / csv["off"] if csv[kind] and csv["off"] else None
        lines.append(
            f"| {label} | {_fmt(one[kind])} | {_fmt(ratio_one, 3)} | {_fmt(csv[kind])} | {_fmt(ratio_csv, 3)} |"
        )
    lines.append("")
    for kind in ("on", "log"):
        for what, values in (("1-row req/s @8", one), ("CSV rows/s", csv)):
            if values[kind] and values["off"]:
                ok = values[kind] >= 0.95 * values["off"]
                lines.append(
                    f"- {'PASS' if ok else 'FAIL'} {what} with {labels[kind]} "
                    f"{values[kind]:,.0f} ≥ 0.95 × off {values['off']:,.0f}"
                )
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every step with 1 s runs: the table, not a measurement")
    parser.add_argument("--duration", type=int, help="seconds of each wrk run (default 10; 1 with --smoke)")
    parser.add_argument("--work", type=Path, help="work dir to use and keep (default: a temp dir, removed)")
    parser.add_argument("--skip-mlflow", action="store_true", help="only the generated service")
    parser.add_argument("--skip-waitress", action="store_true", help="no row for the generated service on waitress")
    parser.add_argument("--workers", type=int, help="MODELGEN_WORKERS (default: CPUs available)")
    parser.add_argument(
        "--monitoring-rounds",
        type=int,
        help="rounds of gunicorn with monitoring off / on / on with the input log (0: skip; default 2, 1 with --smoke)",
    )
    parser.add_argument("--monitoring-only", action="store_true", help="only the monitoring-cost rounds")
    parser.add_argument("--mlflow-venv", type=Path, default=DEFAULT_MLFLOW_VENV, help="MLflow virtualenv (reused)")
    args = parser.parse_args(argv)
    if args.duration is not None and not 1 <= args.duration <= 120:
        parser.error("--duration must be 1..120 seconds")
    if args.monitoring_rounds is None:
        args.monitoring_rounds = 1 if args.smoke else 2
    if args.monitoring_only and not args.monitoring_rounds:
        parser.error("--monitoring-only needs --monitoring-rounds of 1 or more")
    base = SMOKE if args.smoke else FULL
    args.sizes = replace(base, duration=args.duration or base.duration)
    return args


def main(argv: list[str] | None = None) -> int:
    reexec_in_project_venv()
    args = parse_args(argv)
    sizes: Sizes = args.sizes
    # The in-process rate is the single-core one (the service runs one single-threaded worker per
    # core): pin BLAS/OpenMP to one thread before numpy, scikit-learn or xgboost is imported.
    for var in THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on `kill`
    require_wrk()

    import importlib.metadata as metadata

    import joblib
    import yaml

    pins = {name: metadata.version(name) for name in PINNED}
    cores = cpu_count()
    workers = args.workers or cores
    temp = None if args.work else Path(tempfile.mkdtemp(prefix="modelgen-bench-"))
    work = (args.work or temp).resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    mode = " (smoke)" if args.smoke else ""
    log(f"work dir {work}; {cores} CPUs; wrk {sizes.duration} s per run{mode}; load average {load_before:.2f}")
    try:
        model_dir = prepare_model(work)
        manifest_path = model_dir / "model.yaml"
        manifest = yaml.safe_load(manifest_path.read_text())
        model_path = model_dir / "model.joblib"
        project = generate(work, manifest_path, manifest["metadata"]["name"])

        model = joblib.load(model_path)
        workload = make_workload(work, manifest, model_dir / manifest["spec"].get("sample", "sample.json"), model)
        reference = model.predict_proba(workload.csv_frame).tolist()
        log(f"in-process predict_proba, 1 thread, ~{sizes.in_process:g} s each for 1 row and {CSV_ROWS} rows")
        one_rate, rows_rate = in_process(model, workload, sizes.in_process)
        log(f"in-process: {one_rate:,.0f} calls/s (1 row), {rows_rate:,.0f} rows/s ({CSV_ROWS} rows)")
        parallel_rate = parallel_in_process(model, workload.row_frame, cores, sizes.parallel)
        log(f"in-process, {cores} processes at once: {parallel_rate:,.0f} calls/s (1 row)")

        monitoring_rows: list[Row] = []
        for _ in range(args.monitoring_rounds):
            for kind in ("off", "on", "log"):  # alternating, so drift of the machine hits all three
                server = modelgen_server(project, model_path, "gunicorn", workers, work, kind)
                monitoring_rows.append(Row(server.name))
                bench_server(server, monitoring_rows[-1], workload, reference, sizes)
        path_lines = []
        if args.monitoring_rounds:
            path_lines = path_cost(project, model_path, workload, work, sizes.path_scale)
        smoke_line = (
            [f"Smoke run (--smoke): wrk {sizes.duration} s per run; every step ran, the numbers measure nothing.", ""]
            if args.smoke
            else []
        )
        if args.monitoring_only:
            print(table(monitoring_rows, cores, one_rate, rows_rate))
            print()
            print("\n".join(smoke_line + monitoring_cost(monitoring_rows, args.monitoring_rounds) + [""] + path_lines))
            return 0

        rows: list[Row] = []
        configs = [("gunicorn", workers)] + ([] if args.skip_waitress else [("waitress", workers)])
        for server_name, n in configs:
            server = modelgen_server(project, model_path, server_name, n, work)
            rows.append(Row(server.name))
            bench_server(server, rows[-1], workload, reference, sizes)

        mlflow_rows: list[Row] = []
        mlflow_note = "MLflow skipped (--skip-mlflow)"
        if not args.skip_mlflow:
            try:
                mlflow_python, mlflow_note = mlflow_venv(args.mlflow_venv.resolve())
                mlflow_dir, save_note = mlflow_model(mlflow_python, model_path, work)
                mlflow_note += f"; {save_note}"
                flag = workers_flag(mlflow_python)
                for extra, label in (([], "MLflow default (1 worker)"), ([flag, "2"], f"MLflow {flag} 2")):
                    server = mlflow_server(mlflow_python, mlflow_dir, work, extra, label, SERVER_ENV)
                    mlflow_rows.append(Row(label))
                    bench_server(server, mlflow_rows[-1], workload, reference, sizes)
            except BenchError as err:
                mlflow_note = f"MLflow not measured: {str(err).splitlines()[0]}"
                log(f"MLflow setup failed: {err}")
        rows += mlflow_rows

        print(table(rows, cores, one_rate, rows_rate))
        print()
        print("\n".join(smoke_line), end="")
        libraries = ", ".join(f"{n} {v}" for n, v in pins.items())
        print(
            f"{dt.date.today().isoformat()}: {cores} CPUs, Python {platform.python_version()}, {libraries}; "
            f"wrk -t2 -d{sizes.duration}s; {workers} modelgen workers; 1-min load average {load_before:.2f} before "
            f"the run (other work on the machine lowers every number). {mlflow_note}."
        )
        print(
            f"In-process limit (1 thread, this process): 1-row predict_proba {one_rate:,.0f} calls/s "
            f"(× {cores} cores = {cores * one_rate:,.0f}); {CSV_ROWS}-row predict_proba {rows_rate:,.0f} rows/s."
        )
        ours = rows[0].one_8.rps if rows and rows[0].one_8 else None
        print(
            f"Measured ceiling: {cores} single-threaded processes predicting at once: {parallel_rate:,.0f} calls/s "
            f"({parallel_rate / (cores * one_rate):.2f} of cores × the 1-process rate)"
            + (f"; {rows[0].name} reaches {ours / parallel_rate:.2f} of it at 8 connections." if ours else ".")
        )
        for row in rows:
            for note in ([f"error: {row.error}"] if row.error else []) + row.notes:
                print(f"- {row.name}: {note}")
        print()
        print(f"Goals ({rows[0].name}):")
        for line in goals(rows[0], mlflow_rows, cores, one_rate, rows_rate):
            print(line)
        if monitoring_rows:
            print()
            print("\n".join(monitoring_cost(monitoring_rows, args.monitoring_rounds) + [""] + path_lines))
        return 0
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        log("done")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"error: {error}")
        sys.exit(1)
