"""Servers for the benches: tests/support.py's Server (one implementation for tests and benches),
with the bench's progress lines and failures as BenchError."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lib.common import ROOT, BenchError, log

sys.path.append(str(ROOT / "tests"))

from support import Response, Server, ServerError, free_port, http_request  # noqa: E402

__all__ = ["Response", "Server", "free_port", "http_request", "running", "start", "stop"]


def start(server: Server, timeout: float = 120) -> Server:
    """Start ``server`` and wait for its ``/ping``; a failure is a BenchError with the server's output."""
    log(f"starting {server.name}: {' '.join(map(str, server.cmd))} (port {server.port}, log {server.log_path})")
    try:
        server.start(timeout)
    except ServerError as err:
        raise BenchError(str(err)) from err
    log(f"{server.name} answered /ping 200 after {server.startup_seconds:.2f} s")
    return server


@contextmanager
def running(server: Server, timeout: float = 120) -> Iterator[Server]:
    """The server started, and stopped by its process group's id on the way out (errors, Ctrl-C, SIGTERM)."""
    try:
        yield start(server, timeout)
    finally:
        stop(server)


def stop(server: Server) -> None:
    if server.proc is not None:
        group = server.proc.pid
        server.stop()
        log(f"stopped {server.name} (process group {group})")
