"""``modelgen webhook serve``: a Nexus repository webhook that turns an uploaded model into a merge request.

Nexus posts an event for every asset created in the raw repository, signed with HMAC-SHA1 of
the body in ``X-Nexus-Webhook-Signature``. When the asset is a ``model.yaml`` (or an artifact
beside one), the manifest and the files it names are fetched from the registry, the artifact's
sha256 is checked, and ``generate --gitops --merge-request`` runs. Deliveries are handled one at
a time, and a delivery for what is already on a branch or on main changes nothing, so Nexus
retrying (or an upload of several files) never opens a second merge request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any

from modelgen.errors import (
    ArtifactMismatch,
    ArtifactMissing,
    ManifestError,
    ModelgenError,
    RegistryError,
    VersionConflict,
)
from modelgen.gitops.merge_request import GitLabApi
from modelgen.gitops.repo import GitopsRepo, publish_model
from modelgen.manifest import load, named_files
from modelgen.registry.backends import HttpRegistry, LocalRegistry

log = logging.getLogger(__name__)

SECRET_VARIABLE = "MODELGEN_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Nexus-Webhook-Signature"
MANIFEST = "model.yaml"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class Webhook:
    """The webhook's logic, apart from HTTP: headers and body in, a status and a JSON body out."""

    def __init__(
        self,
        secret: str,
        registry: HttpRegistry | LocalRegistry,
        gitops: str,
        *,
        repository: str | None = None,
        gitlab_url: str | None = None,
    ):
        if not secret:
            raise ModelgenError(f"the webhook needs its shared secret in ${SECRET_VARIABLE}")
        self.secret = secret.encode("utf-8")
        self.registry = registry
        self.gitops = gitops
        self.repository = repository
        self.gitlab_url = gitlab_url
        self._lock = threading.Lock()

    def handle(self, headers: dict[str, str], body: bytes) -> Reply:
        signature = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER.lower(), "")
        expected = hmac.new(self.secret, body, hashlib.sha1).hexdigest()
        if not hmac.compare_digest(signature.strip().lower(), expected):
            log.warning("refused a delivery with a missing or wrong signature")
            return Reply(403, {"error": f"missing or wrong {SIGNATURE_HEADER}"})
        try:
            event = json.loads(body)
            action, repository, asset = event["action"], event.get("repositoryName"), event["asset"]["name"]
        except (ValueError, KeyError, TypeError) as err:
            return Reply(400, {"error": f"not a Nexus asset event: {err}"})
        if action not in ("CREATED", "UPDATED"):
            return Reply(202, {"status": f"ignored: action {action}"})
        if self.repository and repository != self.repository:
            return Reply(202, {"status": f"ignored: repository {repository} is not {self.repository}"})
        folder = PurePosixPath(str(asset).lstrip("/")).parent
        return self._deploy(str(folder), str(asset))

    def _deploy(self, folder: str, asset: str) -> Reply:
        with tempfile.TemporaryDirectory(prefix="modelgen-webhook-") as tmp:
            try:
                text = self._get(f"{folder}/{MANIFEST}", missing_ok=not asset.endswith(MANIFEST))
                if text is None:
                    return Reply(202, {"status": f"ignored: no {MANIFEST} beside {asset}"})
                manifest_path = Path(tmp) / MANIFEST
                manifest_path.write_bytes(text)
                for rel in named_files(text):
                    data = self._get(f"{folder}/{rel}", missing_ok=False)
                    target = (Path(tmp) / rel).resolve()
                    if not target.is_relative_to(Path(tmp).resolve()):
                        return Reply(422, {"error": f"{folder}/{MANIFEST} names a file outside its folder: {rel}"})
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                manifest = load(manifest_path)
                try:
                    # The artifact must be there, and be the bytes the manifest pins.
                    self.registry.fetch(manifest.artifact.uri, manifest.artifact.sha256)
                except ArtifactMissing:
                    # Uploaded before its artifact: the artifact's own event comes later.
                    return Reply(202, {"status": f"waiting: {manifest.artifact.uri} is not uploaded yet"})
                # Only the GitOps step is serialized: fetching and checking a delivery never waits
                # behind another one (nor holds others up, whatever its manifest holds).
                with self._lock:
                    repo = GitopsRepo.open(self.gitops)
                    api = GitLabApi.from_environment(self.gitlab_url, repo.settings.repo_url)
                    result = publish_model(repo, manifest, merge_request=True, api=api)
            except ManifestError as err:
                problems = [str(p).replace(str(manifest_path), f"{folder}/{MANIFEST}") for p in err.problems]
                return Reply(status_for(err), {"error": "invalid manifest", "problems": problems})
            except ModelgenError as err:
                return Reply(status_for(err), {"error": str(err)})
        log.info("%s: %s", asset, result.message)
        body = {"status": result.message, "branch": result.branch, "pushed": result.pushed}
        if result.merge_request_url:
            body["merge_request"] = result.merge_request_url
        return Reply(200, body)

    def _get(self, path: str, missing_ok: bool) -> bytes | None:
        data = self.registry.read(path)
        if data is None and not missing_ok:
            raise RegistryError(f"{path}: no such file in the registry")
        return data


# Which HTTP status a failed delivery gets, by the exception's type (the first class it is an instance of).
# Nexus retries 5xx: what a retry may fix is 502; what the upload itself got wrong is 4xx.
STATUSES: tuple[tuple[type[ModelgenError], int], ...] = (
    (ManifestError, 422),  # fix the manifest and upload it again
    (ArtifactMismatch, 422),  # the artifact is not the bytes the manifest pins
    (VersionConflict, 409),  # this version is already deployed with another artifact
    (ModelgenError, 502),  # the registry, git or GitLab failed: a retry may succeed
)


def status_for(err: ModelgenError) -> int:
    """The HTTP status a delivery that failed with ``err`` is answered with."""
    return next(status for kind, status in STATUSES if isinstance(err, kind))


def wsgi_app(webhook: Webhook) -> Callable:
    """The webhook as a WSGI application: ``POST /`` (or any path) for deliveries, ``GET /healthz``."""

    def app(environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if method == "GET" and path == "/healthz":
            reply = Reply(200, {"status": "ok"})
        elif method != "POST":
            reply = Reply(405, {"error": "POST Nexus webhook deliveries here"})
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            headers = {k[5:].replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
            reply = webhook.handle(headers, body)
        data = json.dumps(reply.body).encode("utf-8")
        status = f"{reply.status} {HTTPStatus(reply.status).phrase}"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    return app


def serve(webhook: Webhook, host: str, port: int, threads: int = 4) -> None:
    """Serve until stopped, with waitress (deliveries are still handled one at a time)."""
    try:
        import waitress
    except ImportError as err:
        raise ModelgenError("the webhook server needs waitress: pip install 'modelgen[webhook]'") from err
    log.info("webhook listening on %s:%d", host, port)
    try:
        waitress.serve(wsgi_app(webhook), host=host, port=port, threads=threads, ident="modelgen-webhook")
    except (OSError, ValueError) as err:  # waitress: ValueError for a host it cannot resolve
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ModelgenError(f"cannot listen on {host}:{port}: {reason}") from err
