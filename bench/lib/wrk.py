"""wrk runs against one server, with the share of the CPUs other processes took meanwhile."""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lib.common import PROGRAMS, BenchError, run

# wrk's Lua script: POST the bytes of $WRK_BODY_FILE with $WRK_CONTENT_TYPE.
POST_SCRIPT = PROGRAMS / "post.lua"
# Noise check: on a small machine anything else running (a test suite, pip) takes CPU from the
# server under test. Busy CPU time (all CPUs) minus the server's process group and wrk = others.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    other_cpu: float = 0.0  # share of all CPUs used by processes other than the server and wrk
    server_cpu_s: float = 0.0  # CPU seconds of the server's process group during the run
    client_cpu_s: float = 0.0  # CPU seconds of wrk itself

    @property
    def server_ms_per_request(self) -> float:
        """CPU the server spent per request it answered (all its processes: workers, proxy, master)."""
        return self.server_cpu_s * 1000 / self.requests if self.requests else math.nan


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk, or make system-deps)")


def parse_wrk(text: str) -> WrkResult:
    """The numbers of wrk's ``--latency`` report."""
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
    """One wrk run (``-t2 --latency``) posting ``body_file`` to the server whose process group is ``pgid``."""
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(POST_SCRIPT), url]
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": content_type}
    began, busy, group, children = time.monotonic(), _busy_ticks(), _group_ticks(pgid), _children_ticks()
    done = run(cmd, timeout=duration + 30, what=f"wrk {url}", env=env)
    server, client = _group_ticks(pgid) - group, _children_ticks() - children
    capacity = (time.monotonic() - began) * CLOCK_TICKS * (os.cpu_count() or 1)
    result = parse_wrk(done.stdout)
    result.other_cpu = max(0.0, (_busy_ticks() - busy - server - client) / capacity)
    result.server_cpu_s, result.client_cpu_s = server / CLOCK_TICKS, client / CLOCK_TICKS
    return result


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
