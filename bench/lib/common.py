"""Paths, progress and commands for the benches."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "bench" / "programs"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
STARTED = time.monotonic()


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str | Path], *, timeout: float, what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within ``timeout`` seconds; raise BenchError on failure."""
    try:
        done = subprocess.run(
            [str(part) for part in cmd], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{what}: no result after {timeout:.0f} s") from err
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise BenchError(f"{what}: exit {done.returncode}\n{tail}")
    return done


def python() -> Path:
    """The interpreter the bench runs under: the project's venv (see reexec_in_project_venv)."""
    return Path(sys.executable)


def modelgen() -> list[str]:
    """The modelgen CLI of this interpreter (and of PYTHONPATH, if set)."""
    return [sys.executable, "-m", "modelgen"]


def reexec_in_project_venv() -> None:
    """A bench needs the project's libraries (modelgen, pandas, scikit-learn): run under .venv if they are missing."""
    if importlib.util.find_spec("sklearn") is None and VENV_PYTHON.exists() and Path(sys.executable) != VENV_PYTHON:
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])


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
