"""The HTTP model registry against nginx from Debian (Nexus' raw API: PUT/GET, basic auth)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nginx_registry import PASSWORD, USER, NginxRegistry
from support import free_port

from modelgen.errors import RegistryError
from modelgen.registry.backends import HttpRegistry, LocalRegistry, fetch, registry_for, sha256_hex

DATA = b"the model's bytes\x00\x01"


@pytest.fixture
def http_registry(nginx) -> HttpRegistry:
    return HttpRegistry(nginx.base_url, username=USER, password=PASSWORD, timeout=10)


def puts(nginx: NginxRegistry, path: str) -> int:
    """PUT requests for ``path`` that nginx has answered so far."""
    return sum(f'"PUT {path} ' in line for line in nginx.logged())


@pytest.mark.slow
def test_publish_uploads_once_and_fetch_verifies(nginx, http_registry):
    artifact = http_registry.publish("penguin-species", "1.0.0", "model.joblib", DATA)
    assert artifact.uri == f"{nginx.base_url}/penguin-species/1.0.0/model.joblib"
    assert artifact.sha256 == sha256_hex(DATA)
    assert nginx.path("penguin-species", "1.0.0", "model.joblib").read_bytes() == DATA
    assert http_registry.fetch(artifact.uri, artifact.sha256) == DATA


@pytest.mark.slow
def test_same_bytes_again_is_a_no_op_other_bytes_are_refused(nginx, http_registry):
    http_registry.publish("immutable", "1.0.0", "model.joblib", DATA)
    path = "/repository/models/immutable/1.0.0/model.joblib"
    assert puts(nginx, path) == 1
    again = http_registry.publish("immutable", "1.0.0", "model.joblib", DATA)
    assert again.sha256 == sha256_hex(DATA) and puts(nginx, path) == 1  # no second upload
    with pytest.raises(RegistryError, match=r"immutable 1\.0\.0 is already published with other bytes"):
        http_registry.publish("immutable", "1.0.0", "model.joblib", b"other bytes")
    assert nginx.path("immutable", "1.0.0", "model.joblib").read_bytes() == DATA
    assert http_registry.publish("immutable", "1.0.1", "model.joblib", b"other bytes").uri.endswith(
        "/1.0.1/model.joblib"
    )


@pytest.mark.slow
def test_a_changed_artifact_fails_its_sha256(nginx, http_registry):
    artifact = http_registry.publish("tampered", "1.0.0", "model.joblib", DATA)
    nginx.path("tampered", "1.0.0", "model.joblib").write_bytes(DATA + b"!")
    with pytest.raises(RegistryError, match="sha256 is .*, expected .*changed after it was published"):
        http_registry.fetch(artifact.uri, artifact.sha256)


@pytest.mark.slow
def test_wrong_password_is_401_with_what_to_set(nginx):
    wrong = HttpRegistry(nginx.base_url, username=USER, password="wrong", timeout=10)
    with pytest.raises(RegistryError) as err:
        wrong.publish("secret", "1.0.0", "model.joblib", DATA)
    assert "HTTP 401" in str(err.value) and "MODELGEN_REGISTRY_USERNAME" in str(err.value)
    assert not nginx.path("secret", "1.0.0", "model.joblib").exists()


@pytest.mark.slow
def test_missing_object_is_404(nginx, http_registry):
    with pytest.raises(RegistryError, match="HTTP 404 .*no such artifact"):
        http_registry.fetch(f"{nginx.base_url}/nothing/1.0.0/model.joblib", "0" * 64)


@pytest.mark.slow
def test_no_write_privilege_is_403(nginx):
    readonly = HttpRegistry(nginx.base_url.replace("/models", "/readonly"), username=USER, password=PASSWORD)
    with pytest.raises(RegistryError, match="upload of .* failed: HTTP 403 .*privileges"):
        readonly.publish("penguin-species", "1.0.0", "model.joblib", DATA)


@pytest.mark.slow
def test_credentials_from_the_environment_and_netrc(nginx, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELGEN_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("MODELGEN_REGISTRY_PASSWORD", PASSWORD)
    artifact = registry_for(nginx.base_url).publish("from-env", "1.0.0", "model.joblib", DATA)
    assert fetch(artifact.uri, artifact.sha256) == DATA
    monkeypatch.delenv("MODELGEN_REGISTRY_USERNAME")
    monkeypatch.delenv("MODELGEN_REGISTRY_PASSWORD")
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert registry_for(nginx.base_url).publish("from-netrc", "1.0.0", "model.joblib", DATA).sha256 == sha256_hex(DATA)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    with pytest.raises(RegistryError, match="HTTP 401"):
        registry_for(nginx.base_url).publish("anonymous", "1.0.0", "model.joblib", DATA)


def test_registry_for_picks_the_backend(tmp_path):
    assert isinstance(registry_for(tmp_path), LocalRegistry)
    assert isinstance(registry_for(tmp_path.as_uri()), LocalRegistry)
    assert registry_for(tmp_path.as_uri()).root == tmp_path.resolve()
    assert isinstance(registry_for("https://nexus.example.com/repository/models"), HttpRegistry)


@pytest.mark.slow
def test_the_generated_init_container_downloads_with_basic_auth(nginx, http_registry, penguins_project, tmp_path):
    artifact = http_registry.publish("init-container", "1.0.0", "model.joblib", DATA)
    env = {
        **os.environ,
        "ARTIFACT_URI": artifact.uri,
        "ARTIFACT_SHA256": artifact.sha256,
        "MODEL_PATH": str(tmp_path / "model.joblib"),
        "REGISTRY_USERNAME": USER,
        "REGISTRY_PASSWORD": PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-m", "app.fetch_artifact"], cwd=penguins_project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.joblib").read_bytes() == DATA
    done = subprocess.run(
        [sys.executable, "-m", "app.fetch_artifact"],
        cwd=penguins_project,
        env={**env, "REGISTRY_PASSWORD": "wrong"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "HTTP 401" in done.stderr


class Flaky:
    """An HTTP server that answers 503 a number of times, or too late, before it serves."""

    def __init__(self, failures: int = 0, delay: float = 0.0):
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_GET(self):
                outer.calls += 1
                if outer.calls <= failures:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(delay)  # answering late is what this server is for: the client's timeout is under test
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(DATA)))
                    self.end_headers()
                    self.wfile.write(DATA)
                except BrokenPipeError:
                    pass  # the client gave up waiting: what the timeout test wants

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/repository/models"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_transient_failures_are_retried():
    flaky = Flaky(failures=2)
    try:
        data = HttpRegistry(flaky.url, retries=3, timeout=5).fetch(
            f"{flaky.url}/m/1.0.0/model.joblib", sha256_hex(DATA)
        )
        assert data == DATA and flaky.calls == 3
    finally:
        flaky.close()
    down = Flaky(failures=100)
    try:
        with pytest.raises(RegistryError, match="HTTP 503 .*the registry failed"):
            HttpRegistry(down.url, retries=2, timeout=5).fetch(f"{down.url}/m/1.0.0/model.joblib", sha256_hex(DATA))
        assert down.calls == 3
    finally:
        down.close()


def test_timeouts_and_unreachable_servers_are_clear_errors():
    slow = Flaky(delay=2.0)
    try:
        with pytest.raises(RegistryError, match=r"no answer within 0\.5 s"):
            HttpRegistry(slow.url, retries=1, timeout=0.5).fetch(f"{slow.url}/m/1.0.0/model.joblib", sha256_hex(DATA))
    finally:
        slow.close()
    url = f"http://127.0.0.1:{free_port()}/repository/models"
    with pytest.raises(RegistryError, match="cannot reach the registry"):
        HttpRegistry(url, retries=1, timeout=2).fetch(f"{url}/m/1.0.0/model.joblib", "0" * 64)


@pytest.mark.slow
def test_local_and_http_registries_share_the_layout(tmp_path, http_registry, nginx):
    local = LocalRegistry(tmp_path).publish("layout", "2.0.0", "model.joblib", DATA)
    remote = http_registry.publish("layout", "2.0.0", "model.joblib", DATA)
    assert Path(local.path).relative_to(tmp_path.resolve()).as_posix() == remote.uri.removeprefix(nginx.base_url + "/")
