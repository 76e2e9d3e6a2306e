"""`modelgen webhook serve`, started for real, fed signed Nexus deliveries about uploads to nginx."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gitops_support import Remote, cli
from nginx_registry import PASSWORD, USER
from support import free_port

from modelgen.registry.backends import HttpRegistry

pytestmark = pytest.mark.slow  # nginx and the webhook server, each delivery a generate

SECRET = "nexus-shared-secret"
NAME = "penguin-hooked"


def delivery(asset: str, action: str = "CREATED", repository: str = "models") -> bytes:
    """The body Nexus posts for an asset event (webhook id rm:repository:asset)."""
    return json.dumps(
        {
            "timestamp": "2026-11-29T04:20:00.000+0000",
            "nodeId": "52905B51-085CCABB-CEBBEAAD-16795588-FC927D93",
            "initiator": "jane.doe/10.0.0.7",
            "repositoryName": repository,
            "action": action,
            "asset": {"id": "bW9kZWxz", "assetId": "bW9kZWxzOjE", "format": "raw", "name": asset},
        }
    ).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class WebhookServer:
    def __init__(self, tmp: Path, registry_url: str, gitops: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MODELGEN_WEBHOOK_SECRET": SECRET,
            "MODELGEN_REGISTRY_USERNAME": USER,
            "MODELGEN_REGISTRY_PASSWORD": PASSWORD,
            "MODELGEN_CACHE": str(tmp / "webhook-cache"),
        }
        self.log = (tmp / "webhook.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelgen", "-v", "webhook", "serve", "--registry", registry_url]
            + ["--gitops", str(gitops), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the webhook did not start: " + self.output())

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def post(self, body: bytes, signature: str | None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "X-Nexus-Webhook-Id": "rm:repository:asset"}
        if signature is not None:
            headers["X-Nexus-Webhook-Signature"] = signature
        request = urllib.request.Request(self.url + "/", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def setup(tmp_path, nginx, penguins_manifest, capsys, monkeypatch):
    """A GitOps repository, the registry (nginx) and the webhook serving both."""
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    registry = HttpRegistry(nginx.base_url, username=USER, password=PASSWORD)
    # Every test uploads under its own version: the registry is shared and immutable.
    version = f"1.0.{len(list((nginx.root / 'data/repository/models').glob(f'{NAME}/*')))}"
    server = WebhookServer(tmp_path, nginx.base_url, remote.path)
    yield remote, registry, server, version, penguins_manifest.parent
    server.stop()


def upload_model(registry: HttpRegistry, version: str, model_dir: Path, *, manifest: bool = True) -> str:
    """What deploy() does with Nexus: the artifact, then the sample and the manifest pointing at it."""
    artifact = registry.publish(NAME, version, "model.joblib", (model_dir / "model.joblib").read_bytes())
    text = (model_dir / "model.yaml").read_text()
    original_uri = text.split("uri: ", 1)[1].split("\n", 1)[0]
    text = text.replace("name: penguin-species", f"name: {NAME}").replace("version: 1.0.0", f"version: {version}")
    text = text.replace(original_uri, artifact.uri)
    for name in ("sample.json", "reference.csv", "train.py"):  # the files the manifest names
        registry.publish(NAME, version, name, (model_dir / name).read_bytes())
    if manifest:
        registry.publish(NAME, version, "model.yaml", text.encode())
    return text


def test_signed_delivery_opens_one_merge_request_even_when_repeated(setup):
    remote, registry, server, version, model_dir = setup
    upload_model(registry, version, model_dir)
    body = delivery(f"{NAME}/{version}/model.yaml")
    status, reply = server.post(body, sign(body))
    assert status == 200, (reply, server.output())
    branch = f"modelgen/{NAME}-{version}"
    assert reply["branch"] == branch and reply["pushed"] is True
    push = remote.pushes()[-1]
    assert push["refs"][0][2] == f"refs/heads/{branch}"
    assert "merge_request.create" in push["options"]
    assert f"merge_request.title={NAME} {version} (new model)" in push["options"]
    on_branch = remote.show(branch, f"models/{NAME}/model.yaml")
    assert f"uri: {registry.base_url}/{NAME}/{version}/model.joblib" in on_branch

    # Nexus retries, or the artifact's own event arrives: still one branch, one push, one MR.
    pushes = len(remote.pushes())
    for asset in (f"{NAME}/{version}/model.yaml", f"/{NAME}/{version}/model.joblib"):
        again = delivery(asset)
        status, reply = server.post(again, sign(again))
        assert status == 200 and reply["pushed"] is False and "already holds this change" in reply["status"]
    assert len(remote.pushes()) == pushes


def test_a_bad_signature_is_403_and_writes_nothing(setup):
    remote, registry, server, version, model_dir = setup
    upload_model(registry, version, model_dir)
    body = delivery(f"{NAME}/{version}/model.yaml")
    pushes = len(remote.pushes())
    for signature in (None, "", sign(body, "wrong-secret"), sign(body + b" ")):
        status, reply = server.post(body, signature)
        assert status == 403 and "X-Nexus-Webhook-Signature" in reply["error"]
    assert len(remote.pushes()) == pushes and remote.branches() == ["main"]


def test_events_that_are_not_a_complete_model_are_acknowledged_and_ignored(setup):
    remote, registry, server, version, model_dir = setup
    upload_model(registry, version, model_dir, manifest=False)
    cases = [
        (delivery(f"{NAME}/{version}/model.joblib"), "no model.yaml beside"),
        (delivery(f"{NAME}/{version}/model.yaml", action="DELETED"), "action DELETED"),
        (delivery(f"{NAME}/{version}/model.yaml", repository="other"), "repository other is not models"),
    ]
    for body, expected in cases:
        status, reply = server.post(body, sign(body))
        assert status == 202 and expected in reply["status"], reply
    body = b"{not json"
    status, reply = server.post(body, sign(body))
    assert status == 400
    assert remote.branches() == ["main"]


def test_a_manifest_uploaded_before_its_artifact_waits_for_it(setup):
    remote, registry, server, version, model_dir = setup
    text = upload_model(registry, version, model_dir)
    later = text.replace(f"/{version}/model.joblib", f"/{version}/model-later.joblib")
    registry.publish(
        NAME,
        version + "-later",
        "model.yaml",
        later.replace(f"version: {version}", f"version: {version}-later").encode(),
    )
    for name in ("sample.json", "reference.csv", "train.py"):
        registry.publish(NAME, version + "-later", name, (model_dir / name).read_bytes())
    body = delivery(f"{NAME}/{version}-later/model.yaml")
    status, reply = server.post(body, sign(body))
    assert status == 202 and "is not uploaded yet" in reply["status"]
    assert remote.branches() == ["main"]


def test_an_invalid_manifest_is_422_naming_the_field(setup):
    remote, registry, server, version, model_dir = setup
    text = upload_model(registry, version, model_dir, manifest=False)
    registry.publish(NAME, version, "model.yaml", text.replace("task: classification", "task: guessing").encode())
    body = delivery(f"{NAME}/{version}/model.yaml")
    status, reply = server.post(body, sign(body))
    assert status == 422
    assert any(f"{NAME}/{version}/model.yaml" in p and "spec.task" in p for p in reply["problems"]), reply
    assert remote.branches() == ["main"]


def test_an_artifact_that_is_not_the_pinned_bytes_is_422(setup):
    remote, registry, server, version, model_dir = setup
    text = upload_model(registry, version, model_dir, manifest=False)
    pinned = text.split("sha256: ", 1)[1].split("\n", 1)[0].split()[0]
    registry.publish(NAME, version, "model.yaml", text.replace(pinned, "ab" * 32).encode())
    body = delivery(f"{NAME}/{version}/model.yaml")
    status, reply = server.post(body, sign(body))
    assert status == 422 and "problems" not in reply, (reply, server.output())
    assert f"{NAME}/{version}/model.joblib: sha256 is {pinned}, expected {'ab' * 32}" in reply["error"]
    assert remote.branches() == ["main"]


def test_a_deployed_version_with_another_artifact_is_409(setup):
    remote, registry, server, version, model_dir = setup
    text = upload_model(registry, version, model_dir)
    body = delivery(f"{NAME}/{version}/model.yaml")
    assert server.post(body, sign(body))[0] == 200
    # The same version again, uploaded beside other bytes: the branch already holds it with the first artifact.
    again = f"{version}-again"
    other = registry.publish(NAME, again, "model.joblib", (model_dir / "model.joblib").read_bytes() + b"\0")
    for name in ("sample.json", "reference.csv", "train.py"):
        registry.publish(NAME, again, name, (model_dir / name).read_bytes())
    pinned = text.split("sha256: ", 1)[1].split("\n", 1)[0].split()[0]
    uri = text.split("uri: ", 1)[1].split("\n", 1)[0]
    registry.publish(NAME, again, "model.yaml", text.replace(uri, other.uri).replace(pinned, other.sha256).encode())
    pushes = len(remote.pushes())
    body = delivery(f"{NAME}/{again}/model.yaml")
    status, reply = server.post(body, sign(body))
    assert status == 409, (reply, server.output())
    assert "a version's artifact never changes" in reply["error"] and len(remote.pushes()) == pushes
