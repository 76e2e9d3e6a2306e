"""R serving benchmark: the generated Plumber service (R workers behind nginx) against a single
plain Plumber process (what vetiver ships) and against R's own in-process predict().

Trains examples/penguins-r, generates its project, then for each server: 1-row JSON requests
per second with wrk at 1, 2 and 8 connections (p50/p99 at 8) and 1000-row CSV (JSON for the
plain process, which reads no CSV) rows per second at 2 connections. Prints a Markdown table
and the issue's goal.

    .venv/bin/python bench/serving_r.py [--duration 10] [--work DIR]
    .venv/bin/python bench/serving_r.py --monitoring-rounds 3   # only the cost of drift monitoring
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from serving import BenchError, Server, free_port, http, log, wrk  # noqa: E402

R_ENV = {"TZ": "UTC"}

# What vetiver and most tutorials ship: one Plumber process, JSON in, predict(), JSON out.
PLAIN_API = r"""
model <- readRDS(Sys.getenv("MODEL_PATH"))
train <- model$trainingData

#* @get /ping
function() list(status = "ok")

#* @post /invocations
#* @serializer unboxedJSON
function(req) {
  rows <- jsonlite::fromJSON(req$postBody)
  for (n in names(rows)) {
    if (is.factor(train[[n]])) rows[[n]] <- factor(rows[[n]], levels = levels(train[[n]]))
    if (is.double(train[[n]])) rows[[n]] <- as.double(rows[[n]])
  }
  list(predictions = predict(model, newdata = rows, type = "prob", na.action = na.pass))
}
"""

IN_PROCESS = r"""
args <- commandArgs(trailingOnly = TRUE)
model <- readRDS(args[1])
train <- model$trainingData
typed <- function(path) {
  rows <- jsonlite::fromJSON(path)
  for (n in names(rows)) {
    if (is.factor(train[[n]])) rows[[n]] <- factor(rows[[n]], levels = levels(train[[n]]))
    if (is.double(train[[n]])) rows[[n]] <- as.double(rows[[n]])
  }
  rows
}
rate <- function(rows, seconds = 3) {
  n <- 0
  began <- proc.time()[["elapsed"]]
  while (proc.time()[["elapsed"]] - began < seconds) {
    predict(model, newdata = rows, type = "prob", na.action = na.pass)
    n <- n + 1
  }
  n / (proc.time()[["elapsed"]] - began)
}
one <- typed(args[2])
many <- typed(args[3])
cat(rate(one), rate(many) * nrow(many), "\n")
"""


def rscript() -> str:
    found = shutil.which("Rscript")
    if not found:
        raise BenchError("Rscript not found: make system-deps installs R")
    return found


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd))} failed:\n{done.stdout}{done.stderr}")
    return done


def prepare(work: Path) -> tuple[Path, Path, dict]:
    """Train, generate, fetch: the project, the model file and the contract."""
    trained = work / "trained"
    if not (trained / "model.yaml").exists():
        log("training examples/penguins-r")
        run([rscript(), ROOT / "examples/penguins-r/train.R", "--out", trained], env={**os.environ, **R_ENV})
    out = work / "generated"
    run([Path(sys.executable).parent / "modelgen", "generate", trained / "model.yaml", "-o", out])
    project = next(p for p in out.iterdir() if p.is_dir())
    contract = json.loads((project / "app/contract.json").read_text())
    model = work / "model.rds"
    env = {
        **os.environ,
        **R_ENV,
        "ARTIFACT_URI": contract["artifact"]["uri"],
        "ARTIFACT_SHA256": contract["artifact"]["sha256"],
        "MODEL_PATH": str(model),
    }
    run([rscript(), "app/fetch_artifact.R"], cwd=project, env=env)
    return project, model, contract


def workloads(work: Path, project: Path, contract: dict) -> dict[str, Path]:
    sample = json.loads((project / "tests/sample.json").read_text())
    names = [c["name"] for c in contract["columns"]]
    rows = [sample[i % len(sample)] for i in range(1000)]
    files = {"one": work / "one.json", "many-json": work / "many.json", "many-csv": work / "many.csv"}
    files["one"].write_text(json.dumps(sample[:1]))
    files["many-json"].write_text(json.dumps(rows))
    cells = [",".join("" if r[n] is None else str(r[n]) for n in names) for r in rows]
    files["many-csv"].write_text("\n".join([",".join(names), *cells]) + "\n")
    return files


def bench(server: Server, files: dict[str, Path], duration: int, csv: bool) -> dict:
    status, _ = http("POST", f"{server.url}/invocations", files["one"].read_bytes(), "application/json")
    if status != 200:
        raise BenchError(f"{server.name}: 1-row request answered {status}")
    pgid = server.proc.pid
    url = f"{server.url}/invocations"
    result = {"startup": server.startup_s}
    wrk(url, files["one"], "application/json", 2, 2, pgid)  # warm-up
    for connections in (1, 2, 8):
        r = wrk(url, files["one"], "application/json", connections, duration, pgid)
        if r.non_2xx or r.socket_errors:
            raise BenchError(f"{server.name}: {r.non_2xx} non-2xx, socket errors {r.socket_errors}")
        result[connections] = r
    body, ctype = (files["many-csv"], "text/csv") if csv else (files["many-json"], "application/json")
    r = wrk(url, body, ctype, 2, duration, pgid)
    if r.non_2xx:
        raise BenchError(f"{server.name}: 1000-row requests answered non-2xx")
    result["rows"] = r.rps * 1000
    return result


# The request path in one R process and the monitor's own work on it (bench/path_cost_r.R).
PATH_COST = HERE / "path_cost_r.R"


def monitoring_rounds(project: Path, base: dict, files: dict[str, Path], work: Path, cores: int, args) -> None:
    """The modelgen R service with monitoring off / counters / counters + input log, alternating."""
    import statistics

    extra = {"off": {"MODELGEN_MONITORING": "0"}, "on": {}, "log": {"MODELGEN_INPUT_LOG": str(work / "inputs")}}
    measured: dict[str, list[tuple[float, float]]] = {kind: [] for kind in extra}
    for _ in range(args.monitoring_rounds):
        for kind, env_extra in extra.items():
            port = free_port()
            env = {**base, "PORT": str(port), "HOST": "127.0.0.1", "MODELGEN_WORKERS": str(cores), **env_extra}
            command = ["bash", "app/start.sh"]
            server = Server(f"modelgen R monitoring {kind}", command, project, env, port, work / "m.log")
            server.start()
            try:
                pgid = server.proc.pid
                url = f"{server.url}/invocations"
                wrk(url, files["one"], "application/json", 2, 2, pgid)  # warm-up
                one = wrk(url, files["one"], "application/json", 8, args.duration, pgid).rps
                rows = wrk(url, files["many-csv"], "text/csv", 2, args.duration, pgid).rps * 1000
                measured[kind].append((one, rows))
                log(f"R monitoring {kind}: {one:.0f} req/s @8, {rows:,.0f} CSV rows/s")
            finally:
                server.stop()
    median = {k: (statistics.median(o for o, _ in v), statistics.median(r for _, r in v)) for k, v in measured.items()}
    off_one, off_rows = median["off"]
    print(f"\n{cores} CPUs, {cores} R workers, median of {args.monitoring_rounds} alternating rounds\n")
    print("| monitoring | 1-row req/s @8 | vs off | 1000-row CSV rows/s @2 | vs off |")
    print("|---|---:|---:|---:|---:|")
    labels = {"off": "off", "on": "counters", "log": "counters + input log"}
    for kind, (one, rows) in median.items():
        print(f"| {labels[kind]} | {one:.0f} | {one / off_one:.3f} | {rows:,.0f} | {rows / off_rows:.3f} |")
    for kind in ("on", "log"):
        one, rows = median[kind]
        verdict = "PASS" if one >= 0.95 * off_one and rows >= 0.95 * off_rows else "FAIL"
        print(f"- {verdict} {labels[kind]}: ≥ 0.95 × off on both")
    reference = work / "trained" / "reference.csv"  # the rows train.R wrote for the profile
    print("\nIn-process: the request path (parse, predict, encode; best of 5) and the monitor's work on it:\n")
    print("| request | path (ms) | counters (ms) | share | counters + input log (ms) | share |")
    print("|---|---:|---:|---:|---:|---:|")
    env = {**base, "REFERENCE_CSV": str(reference)}
    print(run([rscript(), PATH_COST], cwd=project, env=env).stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--monitoring-rounds", type=int, default=0, help="only measure the cost of monitoring")
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="modelgen-bench-r-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    try:
        project, model, contract = prepare(work)
        files = workloads(work, project, contract)
        one_rate, rows_rate = (
            float(x)
            for x in run(
                [rscript(), "-e", IN_PROCESS, model, files["one"], files["many-json"]], env={**os.environ, **R_ENV}
            ).stdout.split()
        )
        (work / "plain.R").write_text(PLAIN_API)
        base = {**os.environ, **R_ENV, "MODEL_PATH": str(model)}
        if args.monitoring_rounds:
            monitoring_rounds(project, base, files, work, cores, args)
            return 0
        servers = []
        for name, workers in ((f"modelgen R ({cores} workers, nginx)", cores), ("modelgen R (1 worker)", 1)):
            port = free_port()
            env = {**base, "PORT": str(port), "HOST": "127.0.0.1", "MODELGEN_WORKERS": str(workers)}
            servers.append((Server(name, ["bash", "app/start.sh"], project, env, port, work / f"{workers}.log"), True))
        port = free_port()
        plain = [rscript(), "-e", f"plumber::pr_run(plumber::pr('{work / 'plain.R'}'), host='127.0.0.1', port={port})"]
        servers.append((Server("plain Plumber (1 process)", plain, work, base, port, work / "plain.log"), False))
        results = {}
        for server, csv in servers:
            server.start()
            try:
                results[server.name] = bench(server, files, args.duration, csv)
            finally:
                server.stop()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n{cores} CPUs, load average {os.getloadavg()[0]:.2f}, wrk {args.duration} s per cell\n")
    print("| server | 1-row req/s @1 | @2 | @8 | p50 / p99 @8 ms | 1000-row rows/s @2 | start-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r[1].rps:.0f} | {r[2].rps:.0f} | {r[8].rps:.0f} | {r[8].p50_ms:.1f} / {r[8].p99_ms:.1f}"
            f" | {r['rows']:,.0f} | {r['startup']:.2f} |"
        )
    print(f"| R in-process predict() (1 thread) | {one_rate:.0f} calls/s | | | | {rows_rate:,.0f} | |")
    ours = next(iter(results.values()))[8].rps
    plain_rate = results["plain Plumber (1 process)"][8].rps
    verdict = "PASS" if ours >= 1.7 * plain_rate else "FAIL"
    print(f"\nGoal: 1-row @8 >= 1.7 x single plain Plumber: {ours:.0f} vs {1.7 * plain_rate:.0f} -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
