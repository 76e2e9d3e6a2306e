"""Real processes for the tests: example training, generated projects, their venvs and servers.

The benches (bench/lib/) start and stop their servers with this module's free_port, http_request
and Server too: one implementation of each.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The JSON schemas vendored for the tests (tests/schemas/README.md); MODELGEN_SCHEMAS may point at another copy.
SCHEMAS = Path(os.environ.get("MODELGEN_SCHEMAS") or ROOT / "tests" / "schemas")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "the condition did not hold",
) -> T:
    """Call ``probe`` every ``interval`` s until ``done(value)`` holds (by default: the value is true); return it.

    What a test waits for is a condition, not a time: this returns as soon as it holds, and after
    ``timeout`` s raises AssertionError with ``message`` and the last value, however busy the machine.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            shown = repr(value)
            shown = shown if len(shown) <= 2000 else shown[:2000] + "..."
            raise AssertionError(f"{message} within {timeout:g} s; the last value was {shown}")
        time.sleep(interval)


def schema_folder(name: str) -> Path:
    """A folder of SCHEMAS, e.g. ``crds/argoproj.io``; a missing one fails the test instead of skipping it."""
    folder = SCHEMAS / name
    if not folder.is_dir():
        raise AssertionError(f"no JSON schemas at {folder}: tests/schemas/README.md says where they come from")
    return folder


def train(example: str, out: Path, registry: Path) -> Path:
    """Run an example's real training script; returns its model.yaml."""
    subprocess.run(
        [sys.executable, ROOT / "examples" / example / "train.py", "--out", out, "--registry", registry],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out / "model.yaml"


def penguin_rows(reference: Path, n: int, seed: int = 0, missing: float = 0.03):
    """``n`` penguins rows drawn with replacement from the reference rows, as text, with a ``missing`` share
    of each nullable column's cells empty (the tests' and bench/batch.py's large files)."""
    import numpy as np
    import pandas as pd

    ref = pd.read_csv(reference, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(ref), n)
    columns = {}
    for name in ref.columns:
        values = ref[name].to_numpy(dtype=object)[picked]
        if name not in ("island", "year"):  # the penguins manifest's two columns that are not nullable
            values[rng.random(n) < missing] = ""
        columns[name] = values
    return pd.DataFrame(columns)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project_venv(project: Path, where: Path) -> Path:
    """A fresh virtualenv with exactly the generated requirements.txt installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", where], check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run(
        # pytest too, as the project's CI test job installs it, to run the project's own tests.
        [python, "-m", "pip", "install", "--quiet", "-r", project / "requirements.txt", "pytest"],
        check=True,
        timeout=900,
        capture_output=True,
    )
    return python


def fetch_artifact(project: Path, python: Path, target: Path, onnx_target: Path | None = None) -> Path:
    """Download a generated project's artifact the way its init container does (app.fetch_artifact);
    its ONNX conversion too, to ``onnx_target``, when one is given."""
    contract = json.loads((project / "app/contract.json").read_text())
    env = {
        "ARTIFACT_URI": contract["artifact"]["uri"],
        "ARTIFACT_SHA256": contract["artifact"]["sha256"],
        "MODEL_PATH": str(target),
        "PATH": "/usr/bin:/bin",
    }
    if onnx_target is not None:
        env.update(ONNX_URI=contract["onnx"]["uri"], ONNX_SHA256=contract["onnx"]["sha256"], ONNX_PATH=str(onnx_target))
    subprocess.run([python, "-m", "app.fetch_artifact"], cwd=project, env=env, check=True, timeout=60)
    return target


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http_request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> Response:
    """One HTTP request; an error status comes back as a Response, not as an exception."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, dict(err.headers), err.read())


class ServerError(RuntimeError):
    """A server exited, or did not answer ``/ping``, before it was ready; the message ends with its output."""


@dataclass
class Server:
    """A server command in its own process group on 127.0.0.1: ready once ``GET /ping`` answers 200.

    ``stop`` signals the whole group by its id, so the workers a server forked go with it.
    Output (stdout and stderr) goes to ``log_path``, or to an unnamed temporary file without one.
    """

    name: str
    cmd: list[str | Path]
    cwd: Path
    env: dict[str, str]
    port: int
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    # From process start to the first /ping 200.
    startup_seconds: float | None = None
    _log: io.BufferedRandom | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        """Start and wait for ``/ping``; on failure the group is stopped and ServerError raised."""
        self._log = open(self.log_path, "w+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(part) for part in self.cmd],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                failure = f"{self.name} exited with {self.proc.returncode} before answering /ping"
                break
            try:
                if http_request("GET", f"{self.url}/ping", timeout=2).status == 200:
                    self.startup_seconds = time.monotonic() - started
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        else:
            failure = f"{self.name} did not answer /ping within {timeout:g} s"
        output = self.output_tail()
        self.stop()
        raise ServerError(f"{failure}: {output}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after 30 s; then wait (up to 10 s) until no member is left."""
        if self.proc is not None:
            group = self.proc.pid  # start_new_session: the group's id is its leader's pid
            _signal_group(group, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.proc.wait(timeout=10)
            deadline = time.monotonic() + 10  # workers may outlive their master briefly
            while _group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(group):
                _signal_group(group, signal.SIGKILL)
            self.proc = None  # never signal the id again: it may be reused
        if self._log is not None:
            self._log.close()
            self._log = None

    def output_tail(self, lines: int = 30) -> str:
        """The last lines the server printed (stdout and stderr)."""
        if self.log_path is not None and self.log_path.exists():
            data = self.log_path.read_bytes()
        elif self._log is not None:
            self._log.flush()
            self._log.seek(0)
            data = self._log.read()
        else:
            data = b""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Service:
    """The generated service started with its real server (``python -m app``) on 127.0.0.1."""

    project: Path
    python: Path
    model_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    server: Server | None = field(default=None, repr=False)
    startup_seconds: float = 0.0
    # What starts it; the default is the Python service's entry point.
    command: list[str] | None = None
    # Responses it gave through ``request``, by (method, path, status): what its /metrics must count.
    answered: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Service:
        self.port = free_port()
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MODEL_PATH": str(self.model_path),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        command = self.command or [self.python, "-m", "app"]
        self.server = Server("service", command, self.project, env, self.port).start(timeout)
        self.proc, self.startup_seconds = self.server.proc, self.server.startup_seconds
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout=30
    ) -> Response:
        response = http_request(method, self.url + path, body, headers, timeout)
        self.answered[(method, path, response.status)] += 1
        return response

    def post_json(self, doc, **headers: str) -> Response:
        return self.request(
            "POST", "/invocations", json.dumps(doc).encode(), {"Content-Type": "application/json", **headers}
        )

    def post_csv(self, text: str, **headers: str) -> Response:
        return self.request("POST", "/invocations", text.encode(), {"Content-Type": "text/csv", **headers})


@contextmanager
def smtp_inbox() -> Iterator[tuple]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1: its controller (``.port``) and an inbox (``.messages``)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Inbox(Message):
        def __init__(self):
            super().__init__()
            self.messages = []

        def handle_message(self, message):
            self.messages.append(message)

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()
