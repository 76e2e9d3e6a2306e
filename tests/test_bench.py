"""Every bench in bench/ runs in its smoke mode (``--smoke``: every step, 1 s runs, tiny sizes) and
prints its tables with the rows it must have: a bench that breaks fails here, not on its next
real run. The numbers of a smoke run measure nothing (short runs on a shared machine), so only
their presence and sign are checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

pytestmark = pytest.mark.slow

NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def smoke(script: str, work: Path, *args: str) -> str:
    """Run ``bench/<script> --smoke``; its stdout (the tables), after exit 0."""
    done = subprocess.run(
        [sys.executable, ROOT / "bench" / script, "--smoke", "--work", work, *args],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, f"{script} --smoke exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def table(text: str, header: str) -> dict[str, list[str]]:
    """The Markdown table whose header row starts with ``| header |``: first cell -> the other cells."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"| {header} |")), None)
    assert start is not None, f"no table headed {header!r} in:\n{text}"
    assert re.fullmatch(r"\|(-+:?\|)+", lines[start + 1]), lines[start + 1]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def positive(cell: str) -> float:
    """A number the bench printed (``1,234``, ``12.5``, ``0.9%``), which must be above 0."""
    value = cell.removesuffix("%").removesuffix(" calls/s")
    assert NUMBER.match(value), f"not a number: {cell!r}"
    assert float(value.replace(",", "")) > 0, cell
    return float(value.replace(",", ""))


def monitoring_tables(out: str) -> dict[str, list[str]]:
    """Both serving benches' monitoring rounds (every cell a positive number) and their request-path table."""
    monitoring = table(out, "monitoring")
    assert list(monitoring) == ["off", "counters", "counters + input log"], out
    for cells in monitoring.values():
        for cell in cells:
            positive(cell)
    path = table(out, "request")
    assert list(path) == ["1-row JSON", "1000-row CSV"], out
    return path


def test_serving_smoke(tmp_path):
    out = smoke("serving.py", tmp_path, "--workers", "2")
    assert "Smoke run (--smoke)" in out, out

    servers = table(out, "server")
    names = ["modelgen onnx gunicorn (2 workers)", "modelgen native gunicorn (2 workers)"]
    names += ["modelgen onnx gunicorn (4 workers)", "modelgen onnx gunicorn gthread (2 workers × 4 threads)"]
    names += ["modelgen onnx waitress (2 threads)"]
    names += ["MLflow sklearn default (1 worker)", "MLflow sklearn --workers 2"]
    names += ["MLflow onnx default (1 worker)", "MLflow onnx --workers 2"]
    assert list(servers) == names, out
    for name, cells in servers.items():
        assert len(cells) == 10, (name, cells)
        # req/s @2 and @8, p50, p99, 1000-row rows/s, [the body], server CPU, the two ratios, start-up
        for cell in cells[:5] + cells[6:]:
            positive(cell)
        assert cells[5] == ("JSON, null token" if name.startswith("MLflow onnx") else "CSV"), (name, cells)
    assert re.search(r"1000-row CSV check: 200, 1000 predictions in \d+ ms", out), out
    assert re.search(r"1000-row JSON, null token check: 200, 1000 predictions in \d+ ms", out), out
    assert "1000 rows as dataframe_split JSON, like for like with MLflow's onnx flavour" in out, out
    goals = out.split("Goals (issue 14, modelgen onnx gunicorn (2 workers)):\n", 1)[1].split("\n\n", 1)[0]
    assert len(re.findall(r"^- (PASS|FAIL) ", goals, re.M)) == 5, out  # none "n/a": both MLflow flavours ran

    in_process = table(out, "in-process, 1 thread, per CPU second")
    assert len(in_process) == 8, out
    for cells in in_process.values():
        for cell in cells:  # onnx, native, onnx ÷ native
            positive(cell)
    overhead = table(out, "server, 1-row @8")
    assert list(overhead) == names[:5], out
    for cells in overhead.values():
        for cell in cells[:4]:  # req/s, server CPU, the Flask app and parse + predict in-process
            positive(cell)

    for cells in monitoring_tables(out).values():
        for cell in (cells[0], cells[1], cells[3]):  # path, counters and the logged counters, in ms
            positive(cell)


def test_serving_r_smoke(tmp_path):
    out = smoke("serving_r.py", tmp_path)
    assert "Smoke run (--smoke)" in out, out

    servers = table(out, "server")
    names = list(servers)
    assert len(names) == 4, out
    assert re.fullmatch(r"modelgen R \(\d+ workers, nginx\)", names[0]), names
    assert names[1:] == ["modelgen R (1 worker)", "plain Plumber (1 process)", "R in-process predict() (1 thread)"]
    for name in names[:3]:
        one_1, one_2, one_8, latency, rows, startup = servers[name]
        for cell in (one_1, one_2, one_8, rows, startup):
            positive(cell)
        for cell in latency.split(" / "):
            positive(cell)
    in_process = servers["R in-process predict() (1 thread)"]
    positive(in_process[0].removesuffix(" calls/s"))
    positive(in_process[4])
    assert re.search(r"^Goal: 1-row @8 >= 1\.7 x single plain Plumber: \d+ vs \d+ -> (PASS|FAIL)$", out, re.M), out

    for cells in monitoring_tables(out).values():
        positive(cells[0])


def test_gitops_smoke(tmp_path):
    out = smoke("gitops.py", tmp_path)

    rows = table(out, "command")
    assert list(rows) == [
        "list",
        "upgrade --all (3 models)",
        "upgrade --all again (merged)",
        "generate --gitops (one update)",
        "catalog (3 models)",
    ], out
    for seconds, _ in rows.values():
        positive(seconds)
    assert rows["list"][1] == "3 models"
    assert rows["upgrade --all (3 models)"][1] == "1 commit, hand edit kept: True"
    assert rows["upgrade --all again (merged)"][1].startswith("0 commit: ")
    assert re.fullmatch(r"\d+ files? changed, .*", rows["generate --gitops (one update)"][1]), rows
    assert rows["catalog (3 models)"][1] == "4 pages"  # the index and a card per model
    assert re.search(r"^Goal: upgrade --all of 3 models under 10 s: (PASS|FAIL)", out, re.M), out


def test_batch_smoke(tmp_path):
    out = smoke("batch.py", tmp_path)
    assert "Smoke run (--smoke)" in out, out

    rows = table(out, "run")
    names = [re.sub(r"\d+ workers", "N workers", name) for name in rows]  # one worker per CPU
    assert names == [
        "in-process native (1000 rows a call, 1 thread)",
        "in-process onnx (1000 rows a call, 1 thread)",
        "modelgen batch (native, N workers)",
        "modelgen Spark job (native, local[2])",
        "modelgen batch (onnx, N workers)",
        "modelgen Spark job (onnx, local[2])",
        "MLflow spark_udf (local[2])",
    ], out
    for name, (count, seconds, rate, ratio, job_rate, peak) in rows.items():
        assert count == "20,000", (name, count)
        positive(rate)
        positive(ratio)
        if not name.startswith("in-process"):
            positive(seconds)
            positive(peak)
        if "Spark" in name or "spark_udf" in name:
            positive(job_rate)  # rows/s once the Spark session is up
    goals = re.findall(r"^- (PASS|FAIL) ", out.split("Goals:", 1)[1], re.M)
    assert len(goals) == 4, out  # both engines against the in-process rate and against MLflow
