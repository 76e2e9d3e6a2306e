"""R serving benchmark: the generated Plumber service (R workers behind nginx) against a single
plain Plumber process (what vetiver ships) and against R's own in-process predict().

Trains examples/penguins-r, generates its project, then for each server: 1-row JSON requests
per second with wrk at 1, 2 and 8 connections (p50/p99 at 8) and 1000-row CSV (JSON for the
plain process, which reads no CSV) rows per second at 2 connections. Prints a Markdown table
and the issue's goal.

    .venv/bin/python bench/serving_r.py [--duration 10] [--work DIR]
    .venv/bin/python bench/serving_r.py --monitoring-rounds 3   # only the cost of drift monitoring
    .venv/bin/python bench/serving_r.py --smoke   # both, 1 s runs: every step, the numbers mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from lib.common import PROGRAMS, ROOT, BenchError, cpu_count, log, modelgen, reexec_in_project_venv, run
from lib.servers import Server, free_port, http_request, running
from lib.wrk import WrkResult, require_wrk, wrk

R_ENV = {"TZ": "UTC"}
ROWS = 1000


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs: the real bench, or ``--smoke`` (every step, in seconds each)."""

    duration: int  # seconds of each wrk run
    warmup: int  # seconds of the wrk warm-up before a server's runs
    in_process: float  # seconds of each of R's in-process predict() rates
    path_scale: float  # repetitions of the in-process request path (bench/programs/path_cost.R), × the real bench's


FULL = Sizes(duration=10, warmup=2, in_process=3.0, path_scale=1.0)
SMOKE = Sizes(duration=1, warmup=1, in_process=0.5, path_scale=0.1)


def rscript() -> str:
    found = shutil.which("Rscript")
    if not found:
        raise BenchError("Rscript not found: make system-deps installs R")
    return found


def prepare(work: Path) -> tuple[Path, Path, dict]:
    """Train, generate, fetch: the project, the model file and the contract."""
    trained = work / "trained"
    if not (trained / "model.yaml").exists():
        log("training examples/penguins-r")
        train = ROOT / "examples/penguins-r/train.R"
        run([rscript(), train, "--out", trained], timeout=600, what="train.R", env={**os.environ, **R_ENV})
    out = work / "generated"
    shutil.rmtree(out, ignore_errors=True)
    run([*modelgen(), "generate", trained / "model.yaml", "-o", out], timeout=120, what="modelgen generate")
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
    run([rscript(), "app/fetch_artifact.R"], timeout=120, what="fetch_artifact.R", cwd=project, env=env)
    log(f"generated {project}")
    return project, model, contract


def workloads(work: Path, project: Path, contract: dict) -> dict[str, Path]:
    sample = json.loads((project / "tests/sample.json").read_text())
    names = [c["name"] for c in contract["columns"]]
    rows = [sample[i % len(sample)] for i in range(ROWS)]
    files = {"one": work / "one.json", "many-json": work / "many.json", "many-csv": work / "many.csv"}
    files["one"].write_text(json.dumps(sample[:1]))
    files["many-json"].write_text(json.dumps(rows))
    cells = [",".join("" if r[n] is None else str(r[n]) for n in names) for r in rows]
    files["many-csv"].write_text("\n".join([",".join(names), *cells]) + "\n")
    return files


def checked(server: Server, result: WrkResult, what: str) -> WrkResult:
    if result.non_2xx or result.socket_errors:
        raise BenchError(f"{server.name}, {what}: {result.non_2xx} non-2xx, socket errors {result.socket_errors}")
    return result


def bench(server: Server, files: dict[str, Path], sizes: Sizes, csv: bool) -> dict:
    """1-row req/s at 1, 2 and 8 connections and 1000-row rows/s at 2, of a started server."""
    url = f"{server.url}/invocations"
    answer = http_request("POST", url, files["one"].read_bytes(), {"Content-Type": "application/json"})
    if answer.status != 200:
        raise BenchError(f"{server.name}: 1-row request answered {answer.status}: {answer.body[:300]!r}")
    pgid = server.proc.pid
    result = {"startup": server.startup_seconds}
    wrk(url, files["one"], "application/json", 2, sizes.warmup, pgid)
    for connections in (1, 2, 8):
        r = wrk(url, files["one"], "application/json", connections, sizes.duration, pgid)
        result[connections] = checked(server, r, f"1-row @{connections}")
    body, ctype = (files["many-csv"], "text/csv") if csv else (files["many-json"], "application/json")
    r = checked(server, wrk(url, body, ctype, 2, sizes.duration, pgid), f"{ROWS}-row @2")
    result["rows"] = r.rps * ROWS
    return result


def r_service(name: str, project: Path, base: dict, workers: int, log_path: Path, **extra: str) -> Server:
    """The generated R service (app/start.sh: R workers behind nginx) on a free port."""
    port = free_port()
    env = {**base, "PORT": str(port), "HOST": "127.0.0.1", "MODELGEN_WORKERS": str(workers), **extra}
    return Server(name, ["bash", "app/start.sh"], project, env, port, log_path)


def servers_table(project: Path, base: dict, files: dict[str, Path], work: Path, cores: int, sizes: Sizes) -> None:
    """The main table: the generated service with all cores and with 1 worker, plain Plumber, in-process."""
    one_rate, rows_rate = (
        float(x)
        for x in run(
            [rscript(), PROGRAMS / "predict_rate.R", base["MODEL_PATH"], files["one"], files["many-json"]]
            + [str(sizes.in_process)],
            timeout=120, what="predict_rate.R", env={**os.environ, **R_ENV},
        ).stdout.split()
    )  # fmt: skip
    servers = [
        (r_service(f"modelgen R ({cores} workers, nginx)", project, base, cores, work / f"{cores}.log"), True),
        (r_service("modelgen R (1 worker)", project, base, 1, work / "1.log"), True),
    ]
    port = free_port()
    plain = PROGRAMS / "plain_plumber.R"
    serve = f"plumber::pr_run(plumber::pr('{plain}'), host='127.0.0.1', port={port})"
    servers.append(
        (Server("plain Plumber (1 process)", [rscript(), "-e", serve], work, base, port, work / "plain.log"), False)
    )
    results = {}
    for server, csv in servers:
        with running(server):
            results[server.name] = bench(server, files, sizes, csv)

    print(f"\n{cores} CPUs, load average {os.getloadavg()[0]:.2f}, wrk {sizes.duration} s per cell\n")
    print(f"| server | 1-row req/s @1 | @2 | @8 | p50 / p99 @8 ms | {ROWS}-row rows/s @2 | start-up s |")
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


def monitoring_rounds(
    project: Path, base: dict, files: dict[str, Path], work: Path, cores: int, rounds: int, sizes: Sizes
) -> None:
    """The modelgen R service with monitoring off / counters / counters + input log, alternating."""
    extra = {"off": {"MODELGEN_MONITORING": "0"}, "on": {}, "log": {"MODELGEN_INPUT_LOG": str(work / "inputs")}}
    measured: dict[str, list[tuple[float, float]]] = {kind: [] for kind in extra}
    for _ in range(rounds):
        for kind, env_extra in extra.items():
            server = r_service(f"modelgen R monitoring {kind}", project, base, cores, work / "m.log", **env_extra)
            with running(server):
                pgid = server.proc.pid
                url = f"{server.url}/invocations"
                wrk(url, files["one"], "application/json", 2, sizes.warmup, pgid)
                one = checked(server, wrk(url, files["one"], "application/json", 8, sizes.duration, pgid), "1-row")
                many = checked(server, wrk(url, files["many-csv"], "text/csv", 2, sizes.duration, pgid), "CSV")
                measured[kind].append((one.rps, many.rps * ROWS))
                log(f"R monitoring {kind}: {one.rps:.0f} req/s @8, {many.rps * ROWS:,.0f} CSV rows/s")
    median = {k: (statistics.median(o for o, _ in v), statistics.median(r for _, r in v)) for k, v in measured.items()}
    off_one, off_rows = median["off"]
    print(f"\n{cores} CPUs, {cores} R workers, median of {rounds} alternating rounds\n")
    print(f"| monitoring | 1-row req/s @8 | vs off | {ROWS}-row CSV rows/s @2 | vs off |")
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
    program = PROGRAMS / "path_cost.R"
    cost = run([rscript(), program, str(sizes.path_scale)], timeout=600, what="path_cost.R", cwd=project, env=env)
    print(cost.stdout.strip())


def main() -> int:
    reexec_in_project_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the table and one monitoring round, 1 s runs")
    parser.add_argument("--duration", type=int, help="seconds of each wrk run (default 10; 1 with --smoke)")
    parser.add_argument("--work", type=Path, help="work dir to use and keep (default: a temp dir, removed)")
    parser.add_argument("--monitoring-rounds", type=int, default=0, help="only measure the cost of monitoring")
    args = parser.parse_args()
    base_sizes = SMOKE if args.smoke else FULL
    sizes = replace(base_sizes, duration=args.duration or base_sizes.duration)
    require_wrk()
    work = (args.work or Path(tempfile.mkdtemp(prefix="modelgen-bench-r-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cores = cpu_count()
    try:
        project, model, contract = prepare(work)
        files = workloads(work, project, contract)
        base = {**os.environ, **R_ENV, "MODEL_PATH": str(model)}
        if args.smoke:
            print(f"Smoke run (--smoke): wrk {sizes.duration} s per cell; every step ran, the numbers measure nothing.")
        if args.smoke or not args.monitoring_rounds:
            servers_table(project, base, files, work, cores, sizes)
        if args.smoke or args.monitoring_rounds:
            monitoring_rounds(project, base, files, work, cores, args.monitoring_rounds or 1, sizes)
        return 0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"error: {error}")
        sys.exit(1)
