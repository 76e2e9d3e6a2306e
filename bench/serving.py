#!/usr/bin/env python3
"""Serving benchmark: the generated penguins service against MLflow's scoring server.

Run by hand from the repository root::

    .venv/bin/python bench/serving.py [--duration 10] [--skip-mlflow] [--skip-waitress] [--work DIR]

It trains examples/penguins (or reuses ``--work DIR``), generates the service with
``modelgen generate``, loads every server with wrk on 127.0.0.1 and prints one Markdown
table on stdout (progress goes to stderr). Every server it starts runs in its own process
group and is stopped, by that group's id, before the script returns. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
MODELGEN = ROOT / ".venv" / "bin" / "modelgen"
TRAIN_SCRIPT = ROOT / "examples" / "penguins" / "train.py"
WRK_SCRIPT = Path(__file__).resolve().parent / "post.lua"
DEFAULT_MLFLOW_VENV = ROOT / ".work" / "bench-mlflow-venv"
PINNED = ("scikit-learn", "xgboost", "pandas", "numpy")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
# What the servers inherit: the environment as it was, before the bench pins its own BLAS/OpenMP
# threads to one, so MLflow runs in its default configuration (OPENBLAS_CORETYPE etc. stay as set).
SERVER_ENV = dict(os.environ)
CSV_ROWS = 1000
STARTED = time.monotonic()


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, timeout: float, what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within ``timeout`` seconds; raise BenchError on failure."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{what}: no result after {timeout:.0f} s") from err
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise BenchError(f"{what}: exit {done.returncode}\n{tail}")
    return done


def cpu_count() -> int:
    """CPUs this process may use (affinity, capped by a cgroup quota), as the service counts them."""
    available = len(os.sched_getaffinity(0))
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if limit != "max":
            return max(1, min(available, math.ceil(int(limit) / int(period))))
    except (OSError, ValueError):
        pass
    return available


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = None, timeout: float = 30):
    """One request; returns (status, body bytes), HTTP errors included."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A server process in its own process group, stopped by that group's id."""

    name: str
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        log(f"starting {self.name}: {' '.join(self.cmd)} (port {self.port}, log {self.log_path})")
        with open(self.log_path, "wb") as out:
            began = time.monotonic()
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before /ping:\n{self.log_tail()}")
            try:
                status, _ = http("GET", f"{self.url}/ping", timeout=2)
                if status == 200:
                    self.startup_s = time.monotonic() - began
                    log(f"{self.name} answered /ping 200 after {self.startup_s:.2f} s")
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.02)
        raise BenchError(f"{self.name}: no /ping 200 within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10  # workers of the group may outlive their master briefly
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        log(f"stopped {self.name} (process group {pgid})")
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    other_cpu: float = 0.0  # share of all CPUs used by processes other than the server and wrk


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise BenchError(f"wrk printed no Requests/sec:\n{text}")
    percentiles = {
        int(p): float(v) * _UNITS_MS[u] for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    requests = re.search(r"^\s*(\d+) requests in", text, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)) if sock else {}
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=percentiles.get(50, math.nan),
        p99_ms=percentiles.get(99, math.nan),
        requests=int(requests.group(1)) if requests else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors={k: v for k, v in errors.items() if v},
    )


def wrk(url: str, body_file: Path, content_type: str, connections: int, duration: int, pgid: int) -> WrkResult:
    """One wrk run against the server whose process group is ``pgid``."""
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(WRK_SCRIPT), url]
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": content_type}
    began, busy, group, children = time.monotonic(), _busy_ticks(), _group_ticks(pgid), _children_ticks()
    done = run(cmd, timeout=duration + 30, what=f"wrk {url}", env=env)
    ours = (_group_ticks(pgid) - group) + (_children_ticks() - children)
    capacity = (time.monotonic() - began) * CLOCK_TICKS * (os.cpu_count() or 1)
    result = parse_wrk(done.stdout)
    result.other_cpu = max(0.0, (_busy_ticks() - busy - ours) / capacity)
    return result


# Noise check: on a small machine anything else running (a test suite, pip) takes CPU from the
# server under test. Busy CPU time (all CPUs) minus the server's process group and wrk = others.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return user + nice + system + irq + softirq + steal


def _group_ticks(pgid: int) -> int:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after "pid (comm)": state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total


def _children_ticks() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once subprocess.run has reaped it
    return (usage.ru_utime + usage.ru_stime) * CLOCK_TICKS


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


def in_process(model: Any, workload: Workload, seconds: float = 3.0, windows: int = 3) -> tuple[float, float]:
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


PARALLEL_SCRIPT = """
import pickle, sys, time
model, frame, seconds = pickle.load(sys.stdin.buffer)
for _ in range(20):
    model.predict_proba(frame)
calls, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    model.predict_proba(frame)
    calls += 1
print(calls / (time.perf_counter() - start))
"""


def parallel_in_process(model: Any, frame: Any, processes: int, seconds: float = 3.0) -> float:
    """1-row predict_proba calls/s of ``processes`` single-threaded processes running at once.

    This is the machine's real ceiling for one worker per core: two busy processes on two vCPUs
    rarely run at twice the speed of one (shared caches, memory bandwidth, the hypervisor).
    """
    import pickle

    payload = pickle.dumps((model, frame, seconds))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PARALLEL_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
        )
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
    status, body = http("POST", f"{server.url}/invocations", workload.row_body.read_bytes(), "application/json")
    if status != 200:
        raise BenchError(f"1-row JSON answered {status}: {body[:300]!r}")
    if len(json.loads(body)["predictions"]) != 1:
        raise BenchError(f"1-row JSON: expected 1 prediction, got {body[:300]!r}")
    began = time.perf_counter()
    status, body = http("POST", f"{server.url}/invocations", workload.csv_body.read_bytes(), "text/csv")
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


def measure(server: Server, row: Row, workload: Workload, reference: list[list[float]], duration: int) -> None:
    url = f"{server.url}/invocations"
    pgid = server.proc.pid if server.proc else 0
    row.notes.append(check_server(server, workload, reference))
    # Short warm-up so first-request costs (imports, caches, worker spawn) stay out of the numbers.
    wrk(url, workload.row_body, "application/json", 8, 2, pgid)
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


def bench_server(server: Server, row: Row, workload: Workload, reference: list[list[float]], duration: int) -> None:
    """Start, check, load and stop one server; a failure is recorded in the row, not raised."""
    try:
        server.start()
        row.startup_s = server.startup_s
        measure(server, row, workload, reference, duration)
    except BenchError as err:
        row.error = str(err).splitlines()[0]
        log(f"{row.name} FAILED: {err}\n--- log tail ---\n{server.log_tail()}")
    finally:
        server.stop()


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
        [str(VENV_PYTHON), str(TRAIN_SCRIPT), "--out", str(out), "--registry", str(work / "registry")],
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
    run([str(MODELGEN), "generate", str(manifest_path), "-o", str(out)], timeout=120, what="modelgen generate")
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
        cmd=[str(VENV_PYTHON), "-m", "app"],
        cwd=project,
        env=env,
        port=port,
        log_path=work / f"server-modelgen-{server}.log",
    )


# --------------------------------------------------------------------------- MLflow side


def mlflow_venv(path: Path, pins: dict[str, str]) -> tuple[Path, str, str]:
    """The MLflow virtualenv (created once, reused after): (python, mlflow version, note)."""
    python = path / "bin" / "python"
    note_file = path / ".bench-note"
    wanted = [f"{name}=={version}" for name, version in pins.items()]
    installed = _versions(python, ["mlflow", *pins]) if python.exists() else {}
    if installed.get("mlflow") and all(installed.get(n) == v for n, v in pins.items()):
        log(f"reusing {path} (mlflow {installed['mlflow']})")
        version = installed["mlflow"]
    else:
        if not python.exists():
            log(f"creating {path}")
            run([sys.executable, "-m", "venv", str(path)], timeout=120, what="python -m venv")
        log(f"pip install mlflow {' '.join(wanted)} (first run only; can take a few minutes)")
        note_file.unlink(missing_ok=True)
        try:
            run([str(python), "-m", "pip", "install", "--quiet", "mlflow", *wanted], timeout=900, what="pip install")
        except BenchError as err:
            raise BenchError(f"pip could not install mlflow with {' '.join(wanted)}: {err}") from err
        version = _versions(python, ["mlflow"])["mlflow"]
    if not note_file.exists():
        note_file.write_text(_mlflow_note(python, version, wanted) + "\n")
    return python, version, note_file.read_text().strip()


def _mlflow_note(python: Path, version: str, wanted: list[str]) -> str:
    """pip backtracks to an older mlflow when the newest one conflicts with the pins: say which."""
    note = f"mlflow {version} (separate venv, pip install mlflow {' '.join(wanted)})"
    try:
        index = run([str(python), "-m", "pip", "index", "versions", "mlflow"], timeout=120, what="pip index")
    except BenchError:
        return note
    latest = re.search(r"mlflow \(([^)]+)\)", index.stdout)
    if latest and latest.group(1) != version:
        note += f"; the newest mlflow on the index, {latest.group(1)}, did not resolve here (pip picked {version})"
    elif latest:
        note += ", the newest mlflow on the index"
    return note


def _versions(python: Path, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    return json.loads(run([str(python), "-c", code, *names], timeout=60, what="read versions").stdout)


SAVE_MODEL = """
import json, sys, joblib, mlflow.sklearn
model = joblib.load(sys.argv[1])
kwargs = dict(pyfunc_predict_fn="predict_proba")
try:
    mlflow.sklearn.save_model(model, sys.argv[2], **kwargs)
    print(json.dumps({"trusted": None}))
except Exception as err:  # MLflow 3.x writes skops by default and refuses types skops does not trust
    if "untrusted types" not in str(err).lower():
        raise
    import shutil, skops.io
    shutil.rmtree(sys.argv[2], ignore_errors=True)
    # Our own artifact, just trained: trust exactly the types skops lists for it.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(model, sys.argv[2], skops_trusted_types=trusted, **kwargs)
    print(json.dumps({"trusted": trusted}))
"""


def mlflow_model(python: Path, model_path: Path, work: Path) -> tuple[Path, str]:
    """The pipeline saved with mlflow.sklearn.save_model in the MLflow venv: (model dir, note)."""
    target = work / "mlflow-model"
    if target.exists():
        shutil.rmtree(target)
    done = run([str(python), "-c", SAVE_MODEL, str(model_path), str(target)], timeout=180, what="save_model", cwd=work)
    trusted = json.loads(done.stdout.strip().splitlines()[-1])["trusted"]
    flavor = _sklearn_flavor(target / "MLmodel")
    note = f"model saved by mlflow.sklearn.save_model(pyfunc_predict_fn='predict_proba'), {flavor}"
    if trusted:
        note += f", skops_trusted_types={trusted} (MLflow refused the default save without them)"
    log(f"saved the pipeline as an MLflow model in {target}: {note}")
    return target, note


def _sklearn_flavor(mlmodel: Path) -> str:
    match = re.search(r"serialization_format:\s*(\S+)", mlmodel.read_text()) if mlmodel.exists() else None
    return f"serialization_format {match.group(1)}" if match else "serialization format unknown"


def mlflow_workers_flag(python: Path) -> str:
    text = run(
        [str(python.parent / "mlflow"), "models", "serve", "--help"], timeout=60, what="mlflow models serve --help"
    ).stdout
    for flag in ("--workers", "-w"):
        if re.search(rf"(^|\s|,){re.escape(flag)}[\s,]", text):
            return flag
    raise BenchError(f"mlflow models serve --help names no workers flag:\n{text}")


def mlflow_server(python: Path, model_dir: Path, work: Path, extra: list[str], label: str) -> Server:
    port = free_port()
    bin_dir = python.parent
    # `mlflow models serve` starts uvicorn by name: the MLflow venv's bin/ goes first on PATH.
    path = f"{bin_dir}{os.pathsep}{SERVER_ENV.get('PATH', '')}"
    env = {**SERVER_ENV, "PATH": path, "VIRTUAL_ENV": str(bin_dir.parent)}
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), *extra]
    return Server(
        name=label,
        cmd=cmd,
        cwd=work,
        env=env,
        port=port,
        log_path=work / f"server-{label.replace(' ', '-').replace('(', '').replace(')', '')}.log",
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


# --------------------------------------------------------------------------- main


# The service's request path in one process, and the monitor's own work on the same requests
# timed alone: the cost of monitoring without the machine's noise (on this shared VM, wrk runs
# and even whole request paths vary by more than monitoring costs).
PATH_COST = r"""
import json, os, sys, time
from pathlib import Path
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[3]
sys.path.insert(0, ".")
from app.model import load_model
from app.monitoring import InputLog, Monitor
from app.payload import InputSchema
from app.predict import predictor_for
from app.settings import from_env
settings = from_env()
c = settings.contract
model = load_model(Path(sys.argv[1]), settings.model_sha256, c["artifact"]["format"], c["artifact"].get("trusted", ()))
schema, predictor = InputSchema(c["columns"], c["values"]), predictor_for(model, c["output"])
monitors = {"off": None, "on": Monitor(c["monitoring"], None),
            "log": Monitor(c["monitoring"], InputLog(Path(sys.argv[3]) / "inputs", c["sampleRate"], 10**9))}
one, many = Path(sys.argv[2]).joinpath("one.json").read_bytes(), Path(sys.argv[2]).joinpath("many.csv").read_bytes()
def best(n, call):
    times = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - began) / n)
    return min(times)
out = {}
for label, body, parse, n in (("one", one, schema.from_json, 300), ("many", many, schema.from_csv, 30)):
    frame = parse(body)
    predictions = predictor(frame)
    out[f"{label}-off"] = best(n, lambda: predictor.csv_rows(predictor(parse(body))))
    for kind in ("on", "log"):
        out[f"{label}-{kind}"] = best(n * 5, lambda: monitors[kind].observe(frame, predictions))
print(json.dumps(out))
"""


def path_cost(project: Path, model_path: Path, workload: Workload, work: Path) -> list[str]:
    (work / "bodies").mkdir(exist_ok=True)
    shutil.copyfile(workload.row_body, work / "bodies" / "one.json")
    shutil.copyfile(workload.csv_body, work / "bodies" / "many.csv")
    metrics = work / "path-cost-metrics"
    metrics.mkdir(exist_ok=True)
    env = {**os.environ, "MODEL_PATH": str(model_path)}
    done = run(
        [str(VENV_PYTHON), "-c", PATH_COST, str(model_path), str(work / "bodies"), str(metrics)],
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run (default 10)")
    parser.add_argument("--work", type=Path, help="work dir to use and keep (default: a temp dir, removed)")
    parser.add_argument("--skip-mlflow", action="store_true", help="only the generated service")
    parser.add_argument("--skip-waitress", action="store_true", help="no row for the generated service on waitress")
    parser.add_argument("--workers", type=int, help="MODELGEN_WORKERS (default: CPUs available)")
    parser.add_argument(
        "--monitoring-rounds",
        type=int,
        default=2,
        help="rounds of gunicorn with monitoring off / on / on with the input log (0: skip; default 2)",
    )
    parser.add_argument("--monitoring-only", action="store_true", help="only the monitoring-cost rounds")
    parser.add_argument("--mlflow-venv", type=Path, default=DEFAULT_MLFLOW_VENV, help="MLflow virtualenv (reused)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be 1..120 seconds")
    return args


def _reexec_in_project_venv() -> None:
    """The bench needs the project's libraries (pandas, scikit-learn, ...): run under .venv if it is not."""
    if importlib.util.find_spec("sklearn") is None and VENV_PYTHON.exists() and Path(sys.executable) != VENV_PYTHON:
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])


def main(argv: list[str] | None = None) -> int:
    _reexec_in_project_venv()
    args = parse_args(argv)
    # The in-process rate is the single-core one (the service runs one single-threaded worker per
    # core): pin BLAS/OpenMP to one thread before numpy, scikit-learn or xgboost is imported.
    for var in THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks on `kill`
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (apt-get install -y wrk)")

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
    log(f"work dir {work}; {cores} CPUs; wrk {args.duration} s per run; load average {load_before:.2f}")
    try:
        model_dir = prepare_model(work)
        manifest_path = model_dir / "model.yaml"
        manifest = yaml.safe_load(manifest_path.read_text())
        model_path = model_dir / "model.joblib"
        project = generate(work, manifest_path, manifest["metadata"]["name"])

        model = joblib.load(model_path)
        workload = make_workload(work, manifest, model_dir / manifest["spec"].get("sample", "sample.json"), model)
        reference = model.predict_proba(workload.csv_frame).tolist()
        log("in-process predict_proba, 1 thread, ~3 s each for 1 row and 1000 rows")
        one_rate, rows_rate = in_process(model, workload)
        log(f"in-process: {one_rate:,.0f} calls/s (1 row), {rows_rate:,.0f} rows/s ({CSV_ROWS} rows)")
        parallel_rate = parallel_in_process(model, workload.row_frame, cores)
        log(f"in-process, {cores} processes at once: {parallel_rate:,.0f} calls/s (1 row)")

        monitoring_rows: list[Row] = []
        for _ in range(args.monitoring_rounds):
            for kind in ("off", "on", "log"):  # alternating, so drift of the machine hits all three
                server = modelgen_server(project, model_path, "gunicorn", workers, work, kind)
                monitoring_rows.append(Row(server.name))
                bench_server(server, monitoring_rows[-1], workload, reference, args.duration)
        path_lines = path_cost(project, model_path, workload, work) if args.monitoring_rounds else []
        if args.monitoring_only:
            print(table(monitoring_rows, cores, one_rate, rows_rate))
            print()
            print("\n".join(monitoring_cost(monitoring_rows, args.monitoring_rounds) + [""] + path_lines))
            return 0

        rows: list[Row] = []
        configs = [("gunicorn", workers)] + ([] if args.skip_waitress else [("waitress", workers)])
        for server_name, n in configs:
            server = modelgen_server(project, model_path, server_name, n, work)
            rows.append(Row(server.name))
            bench_server(server, rows[-1], workload, reference, args.duration)

        mlflow_rows: list[Row] = []
        mlflow_note = "MLflow skipped (--skip-mlflow)"
        if not args.skip_mlflow:
            try:
                python, _, mlflow_note = mlflow_venv(args.mlflow_venv.resolve(), pins)
                mlflow_dir, save_note = mlflow_model(python, model_path, work)
                mlflow_note += f"; {save_note}"
                flag = mlflow_workers_flag(python)
                for extra, label in (([], "MLflow default (1 worker)"), ([flag, "2"], f"MLflow {flag} 2")):
                    server = mlflow_server(python, mlflow_dir, work, extra, label)
                    mlflow_rows.append(Row(label))
                    bench_server(server, mlflow_rows[-1], workload, reference, args.duration)
            except BenchError as err:
                mlflow_note = f"MLflow not measured: {str(err).splitlines()[0]}"
                log(f"MLflow setup failed: {err}")
        rows += mlflow_rows

        print(table(rows, cores, one_rate, rows_rate))
        print()
        libraries = ", ".join(f"{n} {v}" for n, v in pins.items())
        print(
            f"{dt.date.today().isoformat()}: {cores} CPUs, Python {platform.python_version()}, {libraries}; "
            f"wrk -t2 -d{args.duration}s; {workers} modelgen workers; 1-min load average {load_before:.2f} before "
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
