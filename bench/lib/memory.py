"""A command run to completion with its wall time and the peak memory of all its processes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lib.common import BenchError

SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float  # the largest sum, over one sample, of the PSS of every process of the run
    stdout: str
    stderr: str


def measured(cmd: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float, what: str) -> Measured:
    """Run ``cmd`` in a session of its own; sample its processes' proportional set size (shared pages
    counted once, split between the processes sharing them) until it ends."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], _session_pss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise BenchError(f"{what}: no result after {timeout:.0f} s") from err
    finally:
        done.set()
        sampler.join()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        raise BenchError(f"{what}: exit {proc.returncode}\n{tail}")
    return Measured(seconds, peak[0], stdout, stderr)


def _session_pss_mb(session: int) -> float:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            with open(f"/proc/{entry.name}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue  # ended meanwhile
    return total / 1024
