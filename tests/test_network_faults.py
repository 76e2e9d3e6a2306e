"""Every network step has a deadline and one retry policy (``modelgen.registry.policy.DOWNLOAD``).

The real clients against servers on 127.0.0.1 that misbehave on purpose (``http_faults``): both
init containers run as the generated Deployment runs them (``python -m app.fetch_artifact``,
``Rscript app/fetch_artifact.R``), modelgen's HTTP registry in process, ``modelgen list`` against
a git remote that accepts connections and never answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from http_faults import FaultyServer

from modelgen.errors import RegistryError
from modelgen.gitops.git import DEADLINE_VARIABLE as GIT_DEADLINE_VARIABLE
from modelgen.gitops.git import DEFAULT_DEADLINE as DEFAULT_GIT_DEADLINE
from modelgen.gitops.git import LOW_SPEED_LIMIT, LOW_SPEED_TIME
from modelgen.manifest import load
from modelgen.registry.backends import HttpRegistry, sha256_hex
from modelgen.registry.policy import DOWNLOAD, INIT_DEADLINE_VARIABLE, REGISTRY_DEADLINE_VARIABLE
from modelgen.render.templates import render

BODY = bytes(range(256)) * 64  # 16 KiB: long enough that a trickle of a byte a second outlasts any test
BIN = Path(sys.executable).parent
MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata: {name: fetch-check, version: 1.0.0, owner: jane.doe@example.com}
spec:
  runtime: %(runtime)s
  task: classification
  artifact:
    uri: https://nexus.example.com/repository/models/fetch-check/1.0.0/model.%(format)s
    sha256: %(sha)s
    format: %(format)s
  requirements: [%(requirement)s]
  input: [{name: tenure_months, type: integer}]
  output: {type: label, classes: ["no", "yes"]}
  sample: sample.json
"""
RUNTIMES = {
    "python": {
        "format": "joblib",
        "requirement": "scikit-learn==1.5.2",
        "command": [sys.executable, "-m", "app.fetch_artifact"],
    },
    "r": {"format": "rds", "requirement": "ranger==0.14.1", "command": ["Rscript", "app/fetch_artifact.R"]},
}


@pytest.fixture(scope="module", params=list(RUNTIMES))
def init_container(request, tmp_path_factory) -> tuple[list[str], Path]:
    """The command of a generated project's init container and the folder it runs in."""
    runtime = RUNTIMES[request.param]
    if request.param == "r" and shutil.which("Rscript") is None:
        pytest.skip("R is not installed")
    source = tmp_path_factory.mktemp(f"manifest-{request.param}")
    (source / "model.yaml").write_text(MANIFEST % {**runtime, "runtime": request.param, "sha": "ab" * 32})
    (source / "sample.json").write_text('[{"tenure_months": 3}]')
    project = tmp_path_factory.mktemp(f"project-{request.param}")
    for path, data in render(load(source / "model.yaml")).items():
        if path.startswith("app/"):
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            (project / path).write_bytes(data)
    return runtime["command"], project


def fetch(init_container, server: FaultyServer, tmp_path: Path, deadline: float = 60) -> subprocess.CompletedProcess:
    command, project = init_container
    env = {
        **os.environ,
        "ARTIFACT_URI": server.url,
        "ARTIFACT_SHA256": sha256_hex(BODY),
        "MODEL_PATH": str(tmp_path / "model" / "model.bin"),
        INIT_DEADLINE_VARIABLE: f"{deadline:g}",
    }
    # The subprocess' own timeout only stops a hung client from hanging the suite.
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=deadline + 120)


def fetched(tmp_path: Path) -> bytes | None:
    model = tmp_path / "model" / "model.bin"
    assert not model.with_name("model.bin.partial").exists()  # nothing half-written is left
    return model.read_bytes() if model.exists() else None


def one_line(done: subprocess.CompletedProcess) -> str:
    said = done.stderr.strip()
    assert done.returncode == 1 and said and "\n" not in said, (done.returncode, done.stderr)
    return said


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["500", "chunked-cut", "length-cut"])
def test_init_containers_retry_a_failure_once_and_then_succeed(init_container, tmp_path, fault):
    with FaultyServer(BODY, fault, "ok") as server:
        done = fetch(init_container, server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert fetched(tmp_path) == BODY
    assert len(server.requests) == 2


@pytest.mark.slow
def test_init_containers_ask_for_identity_and_decode_gzip_anyway(init_container, tmp_path):
    with FaultyServer(BODY, "gzip") as server:
        done = fetch(init_container, server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert fetched(tmp_path) == BODY
    assert len(server.requests) == 1
    assert server.requests[0]["Accept-Encoding"] == "identity"


@pytest.mark.slow
def test_init_containers_give_up_after_the_policys_attempts(init_container, tmp_path):
    with FaultyServer(BODY, "500") as server:
        done = fetch(init_container, server, tmp_path)
    said = one_line(done)
    assert f"download of {server.url} failed after {DOWNLOAD['attempts']} attempts: HTTP 500" in said
    assert len(server.requests) == DOWNLOAD["attempts"]
    assert fetched(tmp_path) is None


@pytest.mark.slow
def test_init_containers_do_not_retry_what_another_attempt_cannot_change(init_container, tmp_path):
    with FaultyServer(BODY[:100], "ok") as server:  # complete, but not the published bytes
        done = fetch(init_container, server, tmp_path)
    assert f"sha256 mismatch for {server.url}" in one_line(done)
    assert len(server.requests) == 1
    assert fetched(tmp_path) is None


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["stall", "trickle"])
def test_init_containers_end_by_their_deadline(init_container, tmp_path, fault):
    with FaultyServer(BODY, fault) as server:
        done = fetch(init_container, server, tmp_path, deadline=3)
    said = one_line(done)
    assert f"download of {server.url} did not finish within 3 s ({INIT_DEADLINE_VARIABLE})" in said
    assert fetched(tmp_path) is None


@pytest.mark.slow
def test_the_registry_client_retries_a_single_500():
    with FaultyServer(BODY, "500", "ok") as server:
        assert HttpRegistry(server.url.rsplit("/", 3)[0]).fetch(server.url, sha256_hex(BODY)) == BODY
    assert len(server.requests) == 2
    assert server.requests[0]["Accept-Encoding"] == "identity"


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["chunked-cut", "length-cut"])
def test_the_registry_client_retries_a_body_cut_short(fault):
    with FaultyServer(BODY, fault, "ok") as server:
        assert HttpRegistry(server.url.rsplit("/", 3)[0]).fetch(server.url, sha256_hex(BODY)) == BODY
    assert len(server.requests) == 2


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["stall", "trickle"])
def test_the_registry_client_ends_by_its_deadline(monkeypatch, fault):
    monkeypatch.setenv(REGISTRY_DEADLINE_VARIABLE, "3")
    with FaultyServer(BODY, fault) as server:
        registry = HttpRegistry(server.url.rsplit("/", 3)[0])
        expected = rf"GET {re.escape(server.url)}: did not finish within 3 s \({REGISTRY_DEADLINE_VARIABLE}\)"
        with pytest.raises(RegistryError, match=expected):
            registry.fetch(server.url, sha256_hex(BODY))


class SilentRemote:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.mark.slow
def test_modelgen_list_ends_by_the_git_deadline_naming_the_remote(tmp_path):
    remote = SilentRemote()
    url = f"http://127.0.0.1:{remote.port}/x.git"
    env = {**os.environ, "MODELGEN_CACHE": str(tmp_path / "cache"), GIT_DEADLINE_VARIABLE: "3"}
    try:
        done = subprocess.run(
            [str(BIN / "modelgen"), "list", "--gitops", url], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        remote.close()
    said = done.stderr.strip()
    assert done.returncode != 0 and "\n" not in said and "Traceback" not in said, done.stderr
    assert url in said
    assert remote.accepted  # git did reach it: what ended the command was the deadline
    # Whichever comes first at 3 s: the process deadline, or git's own low-speed limit set to it.
    low_speed = "Less than 1000 bytes/sec transferred the last 3 seconds"
    assert f"within 3 s ({GIT_DEADLINE_VARIABLE})" in said or low_speed in said


def test_the_policy_is_in_the_contract_and_stated_in_the_readme(tmp_path):
    (tmp_path / "model.yaml").write_text(MANIFEST % {**RUNTIMES["python"], "runtime": "python", "sha": "ab" * 32})
    (tmp_path / "sample.json").write_text('[{"tenure_months": 3}]')
    contract = json.loads(render(load(tmp_path / "model.yaml"))["app/contract.json"])
    assert contract["download"] == DOWNLOAD
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    waits = DOWNLOAD["backoffSeconds"]
    stated = [
        f"{DOWNLOAD['attempts']} attempts, waiting {', '.join(map(str, waits[:-1]))} and {waits[-1]} s between them",
        f"a server that sends nothing for {DOWNLOAD['idleSeconds']} s",
        "HTTP " + "/".join(map(str, DOWNLOAD["retryStatuses"])),
        f"All attempts end within {DOWNLOAD['deadlineSeconds']} s",
        f"Only `Accept-Encoding: {DOWNLOAD['encoding']}`",
        f"`{INIT_DEADLINE_VARIABLE}`",
        f"`{REGISTRY_DEADLINE_VARIABLE}`",
        f"Every git command ends within {DEFAULT_GIT_DEADLINE} s (`{GIT_DEADLINE_VARIABLE}`)",
        f"slower than {LOW_SPEED_LIMIT} bytes/s for {LOW_SPEED_TIME} s",
    ]
    assert [s for s in stated if s not in readme] == []
