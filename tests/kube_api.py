"""A stand-in Kubernetes API server on 127.0.0.1: nothing here can run a real one.

It serves the objects a test gives it the way the API server answers the ``kubernetes`` client:
a named object (``GET .../namespaces/NS/PLURAL/NAME``) and a collection filtered by
``labelSelector`` (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``), as JSON — a list as ``<Kind>List``
whose items of built-in kinds leave out ``kind`` and ``apiVersion``, as the API server does for
them —, and every error as a ``Status`` object: 404 for an unknown name or an API the cluster
does not serve, 401 without the kubeconfig's bearer token, 400 for a selector it cannot parse.
It creates objects (``POST`` to a collection: 201 with the object, 409 when the name is taken) and
serves them from then on. It records the path and (decoded) query of every request, so a test
can count what a command asked for, and the path and body of every object created.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# The APIs it can serve, by kind; each kind's resource is its lower-case plural (true of all of these).
API_VERSIONS = {
    "Application": "argoproj.io/v1alpha1",
    "Deployment": "apps/v1",
    "Route": "route.openshift.io/v1",
    "CronJob": "batch/v1",
    "Job": "batch/v1",
    "ImageStream": "image.openshift.io/v1",
    "SparkApplication": "sparkoperator.k8s.io/v1beta2",
}
# Served from a CustomResourceDefinition: list items keep kind and apiVersion.
CUSTOM_KINDS = {"Application", "SparkApplication"}


@dataclass
class KubeApi:
    token: str
    objects: list[dict] = field(default_factory=list)
    # The kinds whose API the cluster serves (a cluster without Argo CD serves no Application).
    kinds: set[str] = field(default_factory=lambda: set(API_VERSIONS))
    requests: list[str] = field(default_factory=list)
    created: list[tuple[str, dict]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """A kubeconfig whose current context is this server, with ``token`` (default: the right one)."""
        path.write_text(kubeconfig(self.url, self.token if token is None else token))
        return path

    def resource(self, path: str) -> tuple[str, str, str, str, str | None] | None:
        """``(kind, apiVersion, namespace, plural, name)`` of a path this server serves, else None."""
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/NS/PLURAL[/NAME] or /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME]
        api_version, rest = (parts[1], parts[2:]) if parts[0] == "api" else ("/".join(parts[1:3]), parts[3:])
        served = {(API_VERSIONS[k], k.lower() + "s"): k for k in self.kinds}
        if (
            parts[0] not in ("api", "apis")
            or len(rest) not in (3, 4)
            or rest[0] != "namespaces"
            or ((api_version, rest[2]) not in served)
        ):
            return None
        return served[api_version, rest[2]], api_version, rest[1], rest[2], (rest[3] if len(rest) == 4 else None)

    def create(self, path: str, body: dict, authorization: str | None) -> tuple[int, dict]:
        if authorization != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        found = self.resource(path)
        if found is None or found[4] is not None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        kind, api_version, namespace, plural, _ = found
        name = body["metadata"]["name"]
        if body.get("kind") != kind or body.get("apiVersion") != api_version:
            return 400, status(400, "BadRequest", f"the body is a {body.get('kind')}, the path wants a {kind}")
        if any(o["kind"] == kind and o["metadata"].get("namespace") == namespace and o["metadata"]["name"] == name
               for o in self.objects):  # fmt: skip
            group = api_version.rpartition("/")[0]
            return 409, status(409, "AlreadyExists", f'{plural}{"." + group if group else ""} "{name}" already exists')
        self.created.append((path, body))
        stored = {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": f"uid-{len(self.created)}"}}
        self.objects.append(stored)
        return 201, stored

    def answer(self, path: str, query: str, authorization: str | None) -> tuple[int, dict]:
        if authorization != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        found = self.resource(path)
        if found is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        kind, api_version, namespace, plural, name = found
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"].get("namespace") == namespace]
        if name is not None:
            named = [o for o in found if o["metadata"]["name"] == name]
            if named:
                return 200, named[0]
            group = api_version.rpartition("/")[0]
            return 404, status(404, "NotFound", f'{plural}{"." + group if group else ""} "{name}" not found')
        selector = parse_qs(query).get("labelSelector", [""])[0]
        try:
            found = [o for o in found if matches(selector, o["metadata"].get("labels") or {})]
        except ValueError as err:
            return 400, status(400, "BadRequest", str(err))
        items = [
            o if kind in CUSTOM_KINDS else {k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
            for o in found
        ]
        return 200, {
            "kind": f"{kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy an equality-based label selector (set-based terms are refused)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if any(c in term for c in "() ") or term.startswith("!") and "=" in term:
            raise ValueError(f"unable to parse requirement: {term!r} (this stand-in serves equality-based selectors)")
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def kubeconfig(server: str, token: str) -> str:
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "tester"}}],
        "current-context": "stand-in",
    })  # fmt: skip


@contextmanager
def kube_api(objects: list[dict], token: str = "stand-in-token") -> Iterator[KubeApi]:
    """The stand-in API server serving ``objects``, on a free port of 127.0.0.1, stopped on exit."""
    api = KubeApi(token, list(objects))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            api.requests.append(unquote(self.path))
            self.send(*api.answer(url.path, url.query, self.headers.get("Authorization")))

        def do_POST(self) -> None:
            api.requests.append(unquote(self.path))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send(*api.create(urlsplit(self.path).path, body, self.headers.get("Authorization")))

        def send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.port = server.server_address[1]
    # A short poll, so that stopping it (shutdown) takes milliseconds, not half a second.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
