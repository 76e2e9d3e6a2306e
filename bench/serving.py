#!/usr/bin/env python3
"""Serving benchmark: the generated penguins service (ONNX and native engines) against MLflow's scoring server.

Run by hand from the repository root::

    .venv/bin/python bench/serving.py [--duration 10] [--skip-mlflow] [--skip-variants] [--work DIR]
    .venv/bin/python bench/serving.py --smoke   # every step in short runs; the numbers mean nothing

It trains examples/penguins (or reuses ``--work DIR``), converts the model to ONNX with
``modelgen convert --engine onnx``, generates the service with ``modelgen generate``, loads every
server with wrk on 127.0.0.1 and prints Markdown tables on stdout (progress goes to stderr):
the generated service on its ONNX engine and on its native one (MODELGEN_ENGINE=native), server
variants for the ONNX engine, MLflow's scoring server on the pickle (sklearn flavour) and on the
same ONNX file (onnx flavour), and the in-process rates of both engines. Every server it starts
runs in its own process group and is stopped, by that group's id, before the script returns.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lib.common import PROGRAMS, ROOT, BenchError, cpu_count, log, modelgen, python, reexec_in_project_venv, run
from lib.mlflow import (
    ONNX_PINNED,
    PINNED,
    mlflow_model,
    mlflow_onnx_model,
    mlflow_server,
    mlflow_venv,
    workers_flag,
)
from lib.servers import Server, free_port, http_request, running
from lib.wrk import WrkResult, require_wrk, wrk

TRAIN_SCRIPT = ROOT / "examples" / "penguins" / "train.py"
DEFAULT_MLFLOW_VENV = ROOT / ".work" / "bench-mlflow"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
# What the servers inherit: the environment as it was, before the bench pins its own BLAS/OpenMP
# threads to one, so MLflow runs in its default configuration (OPENBLAS_CORETYPE etc. stay as set).
SERVER_ENV = dict(os.environ)
CSV_ROWS = 1000
GTHREAD_THREADS = 4  # threads per gthread worker: 8 connections over 2 workers

# The 1000-row bodies: the same rows as CSV, as dataframe_split JSON (null as null), and as that JSON
# with each null string written as the ONNX graph's null token (what MLflow's onnx flavour is sent).
CSV, JSON, TOKEN_JSON = "CSV", "JSON", "JSON, null token"
# Goals of issue 14 for the ONNX engine on gunicorn (the service's default server).
GOAL_SKLEARN, GOAL_ONNX, GOAL_P99_MS, GOAL_ROWS, GOAL_STARTUP_S = 10, 2, 15, 3, 3


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs: the real bench, or ``--smoke`` (every step, in short runs)."""

    duration: int  # seconds of each wrk run
    warmup: int  # seconds of the wrk warm-up before a server's runs
    in_process: float  # seconds of each native predict_proba rate (the best of 3 windows)
    parallel: float  # seconds of the N-processes-at-once rate
    engine_rate: float  # seconds of each in-process rate of the service's engines (the best of 3 windows)
    path_scale: float  # repetitions of the in-process request path, × the real bench's


FULL = Sizes(duration=10, warmup=2, in_process=3.0, parallel=3.0, engine_rate=1.5, path_scale=1.0)
SMOKE = Sizes(duration=1, warmup=1, in_process=0.6, parallel=0.5, engine_rate=0.3, path_scale=0.05)


@dataclass(frozen=True)
class Artifacts:
    model: Path  # the pickle (model.joblib), the native engine's
    onnx: Path  # its ONNX conversion (model.onnx in the registry), the ONNX engine's
    null_token: str  # the string the graph reads as a null string (spec.artifact.onnx.nullToken)


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    columns: list[str]
    classes: list[str]
    row_body: Path  # 1-row dataframe_split JSON
    csv_body: Path  # CSV_ROWS rows with a header
    json_body: Path  # the same rows as dataframe_split JSON, a null as null
    token_body: Path  # the same JSON with each null string written as the ONNX graph's null token
    row_frame: Any  # the same row as a DataFrame (in-process)
    csv_frame: Any  # the same rows as a DataFrame, parsed from the CSV body

    def big(self, kind: str) -> tuple[Path, str]:
        """The 1000-row body of ``kind`` (CSV, JSON, TOKEN_JSON) and its Content-Type."""
        if kind == CSV:
            return self.csv_body, "text/csv"
        return (self.json_body if kind == JSON else self.token_body), "application/json"


def make_workload(work: Path, manifest: dict[str, Any], sample_path: Path, model: Any, null_token: str) -> Workload:
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
    split = json.loads(data.to_json(orient="split", index=False))  # NaN as null, integers as integers
    json_body = work / f"bench-{CSV_ROWS}rows.json"
    json_body.write_text(json.dumps({"dataframe_split": split}))
    at = [split["columns"].index(name) for name in text]
    for values in split["data"]:
        for j in at:
            if values[j] is None:
                values[j] = null_token
    token_body = work / f"bench-{CSV_ROWS}rows-null-token.json"
    token_body.write_text(json.dumps({"dataframe_split": split}, ensure_ascii=False))

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
        json_body=json_body,
        token_body=token_body,
        row_frame=as_service_frame(pd.DataFrame([row], columns=columns)),
        csv_frame=as_service_frame(pd.read_csv(io.StringIO(csv_text))),
    )


def bodies_dir(work: Path, workload: Workload) -> Path:
    """The request bodies where the in-process programs read them: one.json, many.csv, many.json."""
    bodies = work / "bodies"
    bodies.mkdir(exist_ok=True)
    shutil.copyfile(workload.row_body, bodies / "one.json")
    shutil.copyfile(workload.csv_body, bodies / "many.csv")
    shutil.copyfile(workload.json_body, bodies / "many.json")
    return bodies


def in_process(model: Any, workload: Workload, seconds: float, windows: int = 3) -> tuple[float, float]:
    """Single-core predict_proba rates of the pickle on prebuilt frames: (1-row calls/s, 1000-row rows/s).

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


def engine_rates(project: Path, artifacts: Artifacts, workload: Workload, work: Path, seconds: float) -> dict:
    """Both engines' in-process rates through the service's own code (bench/programs/engine_rate.py)."""
    metrics = work / "engine-rate-metrics"
    metrics.mkdir(exist_ok=True)
    env = {**os.environ, "MODEL_PATH": str(artifacts.model), "ONNX_PATH": str(artifacts.onnx)}
    done = run(
        [python(), PROGRAMS / "engine_rate.py", bodies_dir(work, workload), metrics, str(seconds)],
        timeout=900, what="in-process engine rates", cwd=project, env=env,
    )  # fmt: skip
    return json.loads(done.stdout)


def probabilities(predictions: Any, classes: list[str]) -> list[list[float]]:
    """modelgen's [{"label", "probabilities": {...}}], MLflow's [[p, ...]] (sklearn flavour) or
    {"label": [...], "probabilities": [[p, ...]]} (onnx flavour: every graph output by name) as rows of floats."""
    if isinstance(predictions, dict) and isinstance(predictions.get("probabilities"), list):
        predictions = predictions["probabilities"]
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
    engine: str  # onnx or native: what predicts; the row's in-process reference
    big: str = CSV  # the 1000-row body it is sent (CSV, JSON, TOKEN_JSON)
    also_json: bool = False  # also the 1000-row dataframe_split JSON (like for like with MLflow's onnx flavour)
    startup_s: float | None = None
    one_2: WrkResult | None = None
    one_8: WrkResult | None = None
    big_2: WrkResult | None = None
    json_2: WrkResult | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float | None:
        return self.big_2.rps * CSV_ROWS if self.big_2 else None

    @property
    def json_rows_per_s(self) -> float | None:
        return self.json_2.rps * CSV_ROWS if self.json_2 else None


def check_server(server: Server, row: Row, workload: Workload, reference: list[list[float]]) -> str:
    """One correct answer from each payload before loading; returns a note on the probabilities."""
    url = f"{server.url}/invocations"
    answer = http_request("POST", url, workload.row_body.read_bytes(), {"Content-Type": "application/json"})
    status, body = answer.status, answer.body
    if status != 200:
        raise BenchError(f"1-row JSON answered {status}: {body[:300]!r}")
    if len(probabilities(json.loads(body)["predictions"], workload.classes)) != 1:
        raise BenchError(f"1-row JSON: expected 1 prediction, got {body[:300]!r}")
    path, content_type = workload.big(row.big)
    began = time.perf_counter()
    answer = http_request("POST", url, path.read_bytes(), {"Content-Type": content_type})
    status, body = answer.status, answer.body
    took = time.perf_counter() - began
    if status != 200:
        raise BenchError(f"{CSV_ROWS}-row {row.big} answered {status}: {body[:300]!r}")
    got = probabilities(json.loads(body)["predictions"], workload.classes)
    if len(got) != CSV_ROWS:
        raise BenchError(f"{CSV_ROWS}-row {row.big}: expected {CSV_ROWS} predictions, got {len(got)}")
    diff = max(abs(a - b) for r, s in zip(got, reference, strict=True) for a, b in zip(r, s, strict=True))
    flips = sum(r.index(max(r)) != s.index(max(s)) for r, s in zip(got, reference, strict=True))
    return (
        f"{CSV_ROWS}-row {row.big} check: 200, {CSV_ROWS} predictions in {took * 1000:.0f} ms, "
        f"max |Δp| vs the pickle's in-process predict_proba {diff:.1e}, {flips} label(s) changed"
    )


def measure(server: Server, row: Row, workload: Workload, reference: list[list[float]], sizes: Sizes) -> None:
    url = f"{server.url}/invocations"
    pgid = server.proc.pid if server.proc else 0
    row.notes.append(check_server(server, row, workload, reference))
    # Short warm-up so first-request costs (imports, caches, worker spawn) stay out of the numbers.
    wrk(url, workload.row_body, "application/json", 8, sizes.warmup, pgid)
    duration = sizes.duration
    log(f"{row.name}: 1-row JSON, 2 connections, {duration} s")
    row.one_2 = wrk(url, workload.row_body, "application/json", 2, duration, pgid)
    log(f"{row.name}: 1-row JSON, 8 connections, {duration} s")
    row.one_8 = wrk(url, workload.row_body, "application/json", 8, duration, pgid)
    log(f"{row.name}: {CSV_ROWS}-row {row.big}, 2 connections, {duration} s")
    row.big_2 = wrk(url, *workload.big(row.big), 2, duration, pgid)
    runs = [("1-row @2", row.one_2), ("1-row @8", row.one_8), (f"{row.big} @2", row.big_2)]
    if row.also_json:
        log(f"{row.name}: {CSV_ROWS}-row {JSON}, 2 connections, {duration} s")
        row.json_2 = wrk(url, *workload.big(JSON), 2, duration, pgid)
        runs.append((f"{JSON} @2", row.json_2))
    other = max(r.other_cpu for _, r in runs)
    warning = " (numbers lowered: rerun on a quiet machine)" if other > 0.05 else ""
    row.notes.append(f"other processes used up to {other:.0%} of the CPUs during its wrk runs{warning}")
    for label, result in runs:
        if result.non_2xx or result.socket_errors:
            row.notes.append(
                f"wrk {label}: {result.non_2xx} non-2xx of {result.requests}, socket errors {result.socket_errors}"
            )
    log(
        f"{row.name}: {row.one_2.rps:.0f} / {row.one_8.rps:.0f} req/s, p99@8 {row.one_8.p99_ms:.1f} ms, "
        f"{row.rows_per_s:.0f} rows/s ({row.big})"
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


def convert(manifest_path: Path) -> str:
    """``modelgen convert --engine onnx``: the ONNX file into the registry, spec.artifact.onnx into the manifest.

    Rerun on a reused model, it converts to the same bytes. Returns what it printed (one line).
    """
    began = time.monotonic()
    done = run(
        [*modelgen(), "convert", manifest_path, "--engine", "onnx"],
        timeout=600, what="modelgen convert --engine onnx", env=SERVER_ENV,
    )  # fmt: skip
    said = " ".join((done.stdout.strip() or done.stderr.strip()).split())
    log(f"converted in {time.monotonic() - began:.1f} s: {said}")
    return said


def onnx_artifacts(model_dir: Path, manifest: dict[str, Any]) -> Artifacts:
    spec = (manifest["spec"]["artifact"] or {}).get("onnx")
    if not spec:
        raise BenchError(f"{model_dir / 'model.yaml'}: no spec.artifact.onnx after modelgen convert")
    uri = urllib.parse.urlparse(spec["uri"])
    if uri.scheme != "file":
        raise BenchError(f"the ONNX file is at {spec['uri']}: the bench reads a local folder registry (file://)")
    return Artifacts(model_dir / "model.joblib", Path(urllib.parse.unquote(uri.path)), spec["nullToken"])


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
    project: Path,
    artifacts: Artifacts,
    server: str,
    workers: int,
    work: Path,
    monitoring: str = "on",
    engine: str = "onnx",
    threads: int | None = None,
) -> Server:
    """The generated service, as ``python -m app`` runs it, with the environment it offers:
    ``engine`` (MODELGEN_ENGINE), ``server`` (MODELGEN_SERVER), ``workers`` (MODELGEN_WORKERS);
    ``monitoring``: "on" (the profile's counters), "log" (counters and the sampled input log, at the
    manifest's sample rate), or "off" (MODELGEN_MONITORING=0). ``threads``: gunicorn's gthread
    workers with that many threads each, which the service does not offer (programs/serve_gthread.py)."""
    port = free_port()
    extra = {"off": {"MODELGEN_MONITORING": "0"}, "on": {}, "log": {"MODELGEN_INPUT_LOG": str(work / "inputs")}}
    label = "" if monitoring == "on" else {"off": ", monitoring off", "log": ", monitoring + input log"}[monitoring]
    if server == "waitress":
        name = f"modelgen {engine} waitress ({workers} threads{label})"
    elif threads:
        name = f"modelgen {engine} gunicorn gthread ({workers} workers × {threads} threads{label})"
    else:
        name = f"modelgen {engine} gunicorn ({workers} workers{label})"
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")
    env = {
        **SERVER_ENV,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "MODEL_PATH": str(artifacts.model),
        "ONNX_PATH": str(artifacts.onnx),
        "MODELGEN_ENGINE": engine,
        "MODELGEN_WORKERS": str(workers),
        "MODELGEN_SERVER": server,
        "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{slug}"),
        **extra[monitoring],
    }
    cmd = [python(), PROGRAMS / "serve_gthread.py", str(threads)] if threads else [python(), "-m", "app"]
    return Server(name=name, cmd=cmd, cwd=project, env=env, port=port, log_path=work / f"server-{slug}.log")


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    return _fmt(a / b if a is not None and b else None, digits)


def in_process_rows_rate(rates: dict, row: Row) -> float:
    """The in-process rows/s (parse + predict) of ``row``'s engine on the body its 1000-row runs send."""
    return rates[row.engine]["parse_csv" if row.big == CSV else "parse_json"]


def table(rows: list[Row], cores: int, rates: dict) -> str:
    header = [
        "server",
        "1-row req/s @2",
        "1-row req/s @8",
        "p50 @8 (ms)",
        "p99 @8 (ms)",
        f"{CSV_ROWS}-row rows/s @2",
        f"{CSV_ROWS}-row body",
        "server CPU ms/req @8",
        "req/s@8 ÷ (cores × in-proc)",
        "rows/s ÷ in-proc",
        "start-up (s)",
    ]
    align = ["---" if name in ("server", f"{CSV_ROWS}-row body") else "---:" for name in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        if row.error and not row.one_8:
            cells = [row.name, f"error: {row.error}"] + [""] * (len(header) - 3) + [_fmt(row.startup_s, 2)]
        else:
            one = rates[row.engine]["parse_one"]
            cells = [
                row.name,
                _fmt(row.one_2.rps if row.one_2 else None),
                _fmt(row.one_8.rps if row.one_8 else None),
                _fmt(row.one_8.p50_ms if row.one_8 else None, 1),
                _fmt(row.one_8.p99_ms if row.one_8 else None, 1),
                _fmt(row.rows_per_s),
                row.big,
                _fmt(row.one_8.server_ms_per_request if row.one_8 else None, 2),
                _ratio(row.one_8.rps if row.one_8 else None, cores * one),
                _ratio(row.rows_per_s, in_process_rows_rate(rates, row)),
                _fmt(row.startup_s, 2),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ENGINE_MEASURES = (
    ("1 row: predict_proba alone (calls/s)", "predict_one"),
    ("1 row: parse + predict (calls/s)", "parse_one"),
    ("1 row: Flask app, one WSGI call (calls/s)", "app_one"),
    ("1 row: Flask app, monitoring off (calls/s)", "app_one_unmonitored"),
    (f"{CSV_ROWS}-row CSV: predict_proba alone (rows/s)", "predict_csv"),
    (f"{CSV_ROWS}-row CSV: parse + predict (rows/s)", "parse_csv"),
    (f"{CSV_ROWS}-row CSV: Flask app, one WSGI call (rows/s)", "app_csv"),
    (f"{CSV_ROWS}-row JSON: parse + predict (rows/s)", "parse_json"),
)


def engine_table(rates: dict) -> list[str]:
    """Both engines in one process, one thread: the model call, the service's parsing, the whole Flask app."""
    lines = ["| in-process, 1 thread, per CPU second | onnx | native | onnx ÷ native |", "|---|---:|---:|---:|"]
    for label, key in ENGINE_MEASURES:
        onnx, native = rates["onnx"][key], rates["native"][key]
        lines.append(f"| {label} | {_fmt(onnx)} | {_fmt(native)} | {_ratio(onnx, native, 1)} |")
    return lines


def overhead_table(rows: list[Row], rates: dict) -> list[str]:
    """Where a 1-row request's CPU goes on each modelgen server at 8 connections."""
    lines = [
        "| server, 1-row @8 | req/s | server CPU (ms/req) | Flask app in-process (ms/req) | parse + predict "
        "(ms/req) | the server around the app (ms/req) | share of the server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if not row.name.startswith("modelgen") or not row.one_8:
            continue
        r = rates[row.engine]
        cpu = row.one_8.server_ms_per_request
        app = 1000 / r["app_one"] if "monitoring off" not in row.name else 1000 / r["app_one_unmonitored"]
        parse = 1000 / r["parse_one"]
        share = f"{(cpu - app) / cpu:.0%}" if cpu else "–"
        lines.append(
            f"| {row.name} | {_fmt(row.one_8.rps)} | {_fmt(cpu, 2)} "
            f"| {_fmt(app, 2)} | {_fmt(parse, 3)} | {_fmt(cpu - app, 2)} | {share} |"
        )
    return lines


def _best(rows: list[Row], key: Any) -> Row | None:
    measured = [r for r in rows if r.one_8 and key(r) is not None]
    return max(measured, key=key) if measured else None


def goals(ours: Row, sklearn_rows: list[Row], onnx_rows: list[Row]) -> list[str]:
    """Issue 14's goals for the ONNX engine on the service's default server."""

    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "FAIL")

    out = []

    def add(ok: bool | None, text: str) -> None:
        out.append(f"- {verdict(ok)} {text}")

    rps = ours.one_8.rps if ours.one_8 else None
    p99 = ours.one_8.p99_ms if ours.one_8 else None
    rows = ours.rows_per_s
    for factor, peers, what in ((GOAL_SKLEARN, sklearn_rows, "sklearn"), (GOAL_ONNX, onnx_rows, "onnx flavour")):
        best = _best(peers, lambda r: r.one_8.rps)
        if best and rps is not None:
            need = factor * best.one_8.rps
            add(
                rps >= need,
                f"1-row req/s @8 {rps:,.0f} ≥ {factor} × MLflow's best {what} ({best.name}: {best.one_8.rps:,.0f}) "
                f"= {need:,.0f} ({rps / best.one_8.rps:.1f} ×)",
            )
        else:
            add(None, f"1-row req/s @8 ≥ {factor} × MLflow's best {what} (not measured)")
    add(None if p99 is None else p99 <= GOAL_P99_MS, f"p99 @8 {_fmt(p99, 1)} ms ≤ {GOAL_P99_MS} ms")
    best = _best([r for r in sklearn_rows + onnx_rows if r.big == CSV], lambda r: r.rows_per_s)
    if best and rows is not None:
        need = GOAL_ROWS * best.rows_per_s
        add(
            rows >= need,
            f"{CSV_ROWS}-row CSV rows/s {rows:,.0f} ≥ {GOAL_ROWS} × MLflow's best on CSV ({best.name}: "
            f"{best.rows_per_s:,.0f}) = {need:,.0f} ({rows / best.rows_per_s:.1f} ×)",
        )
    else:
        add(None, f"{CSV_ROWS}-row CSV rows/s ≥ {GOAL_ROWS} × MLflow's best (not measured)")
    add(
        None if ours.startup_s is None else ours.startup_s <= GOAL_STARTUP_S,
        f"start-up {_fmt(ours.startup_s, 2)} s ≤ {GOAL_STARTUP_S} s",
    )
    return out


def comparisons(ours: Row, variants: list[Row], onnx_rows: list[Row]) -> list[str]:
    """The ONNX engine's servers side by side, and the 1000-row JSON like for like with MLflow's onnx flavour."""
    lines = []
    served = [r for r in variants if r.one_8]
    if served:
        best = _best(served, lambda r: r.one_8.rps)
        each = "; ".join(
            f"{r.name}: {r.one_8.rps:,.0f} req/s, p99 {r.one_8.p99_ms:.1f} ms, {_fmt(r.rows_per_s)} CSV rows/s"
            for r in served
        )
        lines.append(f"ONNX engine by server (1-row @8, CSV @2): {each}. Most 1-row req/s @8: {best.name}.")
    peer = _best(onnx_rows, lambda r: r.rows_per_s)
    if ours.json_rows_per_s and peer and peer.rows_per_s:
        lines.append(
            f"{CSV_ROWS} rows as dataframe_split JSON, like for like with MLflow's onnx flavour: {ours.name} "
            f"{ours.json_rows_per_s:,.0f} rows/s (nulls as null) vs {peer.name} {peer.rows_per_s:,.0f} rows/s "
            f"(null strings as the null token): {ours.json_rows_per_s / peer.rows_per_s:.1f} ×."
        )
    return lines


MLFLOW_ONNX_PAYLOADS = (
    "MLflow's onnx flavour: 1-row requests are the same dataframe_split JSON every server gets (the tensor "
    "signature makes MLflow reshape each column to [N, 1] and cast it to the graph's dtype, year to float64). "
    f"Its {CSV_ROWS}-row body is the same rows as dataframe_split JSON, not CSV: with a tensor signature MLflow "
    "answers CSV with 400 (its CSV parser asks the signature for pandas dtypes, which a TensorSpec refuses), and "
    "without one it feeds each DataFrame column as a 1-D array, which the graph's [N, 1] inputs refuse. In that "
    "JSON each null string is written as the graph's null token (spec.artifact.onnx.nullToken), which the ONNX "
    "engine substitutes itself (MLflow would feed None, which onnxruntime turns into the string 'None', an unseen "
    "category); a null number is JSON null, which MLflow's cast to float64 makes NaN, as the graph expects."
)


def path_cost(
    project: Path, artifacts: Artifacts, engine: str, workload: Workload, work: Path, scale: float
) -> list[str]:
    """The request path and the monitor's work on it, in one process (bench/programs/path_cost.py)."""
    bodies = bodies_dir(work, workload)
    metrics = work / "path-cost-metrics"
    metrics.mkdir(exist_ok=True)
    env = {**os.environ, "ONNX_PATH": str(artifacts.onnx), "MODELGEN_ENGINE": engine}
    program = PROGRAMS / "path_cost.py"
    done = run(
        [python(), program, artifacts.model, bodies, metrics, str(scale)],
        timeout=600, what="in-process request path", cwd=project, env=env,
    )  # fmt: skip
    t = json.loads(done.stdout)
    lines = [
        f"In-process, {engine} engine: the request path (parse, predict, encode; best of 5) "
        "and the monitor's work on it:",
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
    csv = {k: median(v, lambda r: r.rows_per_s) for k, v in kinds.items()}
    engine = rows[0].engine if rows else "?"
    lines = [
        f"Monitoring cost, {engine} engine on gunicorn, median of {rounds} alternating rounds:",
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
    parser.add_argument(
        "--skip-variants",
        action="store_true",
        help="no server variants for the ONNX engine (more workers, gthread, waitress): its default gunicorn only",
    )
    parser.add_argument("--workers", type=int, help="MODELGEN_WORKERS (default: CPUs available)")
    parser.add_argument(
        "--monitoring-rounds",
        type=int,
        help="rounds of gunicorn with monitoring off / on / on with the input log (0: skip; default 2, 1 with --smoke)",
    )
    parser.add_argument(
        "--monitoring-engine",
        choices=("onnx", "native"),
        default="onnx",
        help="the engine of the monitoring rounds (default onnx, what the converted project serves)",
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
    # The in-process rates are single-core ones (the service runs one single-threaded worker per
    # core): pin BLAS/OpenMP to one thread before numpy, scikit-learn or xgboost is imported.
    for var in THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on `kill`
    require_wrk()

    import importlib.metadata as metadata

    import joblib
    import yaml

    try:
        pins = {name: metadata.version(name) for name in (*PINNED, *ONNX_PINNED)}
    except metadata.PackageNotFoundError as err:
        raise BenchError(f"the project venv has no {err}: install it with the onnx extra (make)") from err
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
        converted = convert(manifest_path)
        manifest = yaml.safe_load(manifest_path.read_text())
        artifacts = onnx_artifacts(model_dir, manifest)
        project = generate(work, manifest_path, manifest["metadata"]["name"])

        model = joblib.load(artifacts.model)
        sample = model_dir / manifest["spec"].get("sample", "sample.json")
        workload = make_workload(work, manifest, sample, model, artifacts.null_token)
        reference = model.predict_proba(workload.csv_frame).tolist()
        log(f"in-process predict_proba, 1 thread, ~{sizes.in_process:g} s each for 1 row and {CSV_ROWS} rows")
        one_rate, rows_rate = in_process(model, workload, sizes.in_process)
        log(f"in-process: {one_rate:,.0f} calls/s (1 row), {rows_rate:,.0f} rows/s ({CSV_ROWS} rows)")
        parallel_rate = parallel_in_process(model, workload.row_frame, cores, sizes.parallel)
        log(f"in-process, {cores} processes at once: {parallel_rate:,.0f} calls/s (1 row)")
        log(f"in-process rates of both engines through the service's code, ~{sizes.engine_rate:g} s each")
        rates = engine_rates(project, artifacts, workload, work, sizes.engine_rate)
        log(f"in-process, parse + predict, 1 row: onnx {rates['onnx']['parse_one']:,.0f} calls/s, "
            f"native {rates['native']['parse_one']:,.0f} calls/s")  # fmt: skip

        monitoring_rows: list[Row] = []
        engine = args.monitoring_engine
        for _ in range(args.monitoring_rounds):
            for kind in ("off", "on", "log"):  # alternating, so drift of the machine hits all three
                server = modelgen_server(project, artifacts, "gunicorn", workers, work, kind, engine)
                monitoring_rows.append(Row(server.name, engine))
                bench_server(server, monitoring_rows[-1], workload, reference, sizes)
        path_lines = []
        if args.monitoring_rounds:
            path_lines = path_cost(project, artifacts, engine, workload, work, sizes.path_scale)
        smoke_line = (
            [f"Smoke run (--smoke): wrk {sizes.duration} s per run; every step ran, the numbers measure nothing.", ""]
            if args.smoke
            else []
        )
        if args.monitoring_only:
            print(table(monitoring_rows, cores, rates))
            print()
            print("\n".join(smoke_line + monitoring_cost(monitoring_rows, args.monitoring_rounds) + [""] + path_lines))
            return 0

        # The ONNX engine on the service's default server first (the goals are its), then the same
        # project natively, then the ONNX engine's server variants.
        configs = [("onnx", "gunicorn", workers, None), ("native", "gunicorn", workers, None)]
        if not args.skip_variants:
            configs += [
                ("onnx", "gunicorn", 2 * workers, None),
                ("onnx", "gunicorn", workers, GTHREAD_THREADS),
                ("onnx", "waitress", workers, None),
            ]
        rows: list[Row] = []
        for engine, server_name, n, threads in configs:
            server = modelgen_server(project, artifacts, server_name, n, work, engine=engine, threads=threads)
            rows.append(Row(server.name, engine, also_json=not rows))
            bench_server(server, rows[-1], workload, reference, sizes)
        ours = rows[0]
        variants = [r for r in rows if r.engine == "onnx"]

        sklearn_rows: list[Row] = []
        onnx_rows: list[Row] = []
        mlflow_notes: list[str] = []
        if args.skip_mlflow:
            mlflow_notes.append("MLflow skipped (--skip-mlflow)")
        else:
            try:
                mlflow_python, venv_note = mlflow_venv(args.mlflow_venv.resolve())
                mlflow_notes.append(venv_note)
                flag = workers_flag(mlflow_python)
                sklearn_dir, save_note = mlflow_model(mlflow_python, artifacts.model, work)
                mlflow_notes.append(save_note)
                onnx_dir, onnx_note = mlflow_onnx_model(mlflow_python, artifacts.onnx, work)
                mlflow_notes.append(onnx_note)
                for flavour, model_path, kind, found in (
                    ("sklearn", sklearn_dir, CSV, sklearn_rows),
                    ("onnx", onnx_dir, TOKEN_JSON, onnx_rows),
                ):
                    for extra, how in (([], "default (1 worker)"), ([flag, "2"], f"{flag} 2")):
                        label = f"MLflow {flavour} {how}"
                        server = mlflow_server(mlflow_python, model_path, work, extra, label, SERVER_ENV)
                        found.append(Row(label, "native" if flavour == "sklearn" else "onnx", big=kind))
                        bench_server(server, found[-1], workload, reference, sizes)
            except BenchError as err:
                mlflow_notes.append(f"MLflow not measured: {str(err).splitlines()[0]}")
                log(f"MLflow setup failed: {err}")
        rows += sklearn_rows + onnx_rows

        print(table(rows, cores, rates))
        print()
        print("\n".join(smoke_line), end="")
        libraries = ", ".join(f"{n} {v}" for n, v in pins.items())
        print(
            f"{dt.date.today().isoformat()}: {cores} CPUs, Python {platform.python_version()}, {libraries}; "
            f"wrk -t2 -d{sizes.duration}s; {workers} modelgen workers; 1-min load average {load_before:.2f} before "
            f"the run (other work on the machine lowers every number)."
        )
        print(f"modelgen convert: {converted}")
        print(f"MLflow: {'; '.join(mlflow_notes)}.")
        if onnx_rows:
            print(MLFLOW_ONNX_PAYLOADS)
        print(
            "Columns: server CPU = CPU time of the server's whole process group (workers, master, nginx; "
            "MLflow's uvicorn workers) during the 1-row @8 run ÷ the requests answered; in-proc = the row's "
            "engine in one process, one thread, parse + predict through the service's own code, per CPU second "
            "(bench/programs/engine_rate.py; MLflow rows: the same engine's rate), on the 1-row body and on "
            "the 1000-row body the row was sent."
        )
        print(
            f"Native in-process limit (the pickle's predict_proba on prebuilt frames, 1 thread): {one_rate:,.0f} "
            f"calls/s (× {cores} cores = {cores * one_rate:,.0f}); {CSV_ROWS} rows {rows_rate:,.0f} rows/s. "
            f"{cores} single-threaded processes at once: {parallel_rate:,.0f} calls/s "
            f"({parallel_rate / (cores * one_rate):.2f} of cores × the 1-process rate)."
        )
        for row in rows:
            for note in ([f"error: {row.error}"] if row.error else []) + row.notes:
                print(f"- {row.name}: {note}")
        print()
        print("\n".join(engine_table(rates)))
        print()
        print("\n".join(overhead_table(rows, rates)))
        print()
        print(
            "The server around the app = server CPU per request − the Flask app's in-process time per request: "
            "nginx, gunicorn (or waitress), sockets and the WSGI plumbing, plus what concurrency costs "
            "(2 busy cores shared with wrk, cold caches); an estimate, not a profile."
        )
        for line in comparisons(ours, variants, onnx_rows):
            print(line)
        print()
        print(f"Goals (issue 14, {ours.name}):")
        for line in goals(ours, sklearn_rows, onnx_rows):
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
