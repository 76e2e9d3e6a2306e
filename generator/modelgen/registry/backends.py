"""Model registries: where artifacts live, immutable per version, addressed by URI and sha256.

Two backends with the same two methods, both laid out ``BASE/NAME/VERSION/FILE``: a local folder
(``LocalRegistry``, ``file://`` URIs, the embedded default) and an HTTP store (``HttpRegistry``:
a Nexus raw repository, or any server taking PUT and GET with basic auth). ``registry_for``
picks one from a location.

>>> import tempfile
>>> registry = LocalRegistry(tempfile.mkdtemp())
>>> artifact = registry.publish("penguin-species", "1.0.0", "model.joblib", b"model bytes")
>>> registry.fetch(artifact.uri, artifact.sha256)
b'model bytes'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from modelgen.credentials import WHERE_REGISTRY_CREDENTIALS_GO, has_credentials, redacted
from modelgen.errors import ArtifactMismatch, ArtifactMissing, PublishedVersionConflict, RegistryError
from modelgen.registry.policy import DOWNLOAD, REGISTRY_DEADLINE_VARIABLE, backoff

log = logging.getLogger(__name__)

# The manifest schema's patterns for metadata.name and metadata.version (tests check they agree).
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")
# No dot first: the registry's own temporary files start with one.
FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Artifact:
    """A published artifact: what a manifest's ``spec.artifact`` holds, and where it is on disk."""

    uri: str
    sha256: str
    path: Path | None = None  # the local file, for registries that have one


class Registry(Protocol):
    """What every registry backend offers."""

    def publish(self, name: str, version: str, filename: str, data: bytes) -> Artifact: ...

    def uri(self, name: str, version: str, filename: str) -> str: ...

    def fetch(self, uri: str, sha256: str) -> bytes: ...

    def read(self, path: str) -> bytes | None: ...

    def exists(self, path: str) -> bool: ...


class LocalRegistry:
    """A folder (local disk or a mounted share) holding ``ROOT/NAME/VERSION/FILE``; URIs are ``file://``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def publish(self, name: str, version: str, filename: str, data: bytes) -> Artifact:
        """Store ``data`` under ``name``/``version``; publishing the same bytes again changes nothing.

        A published version never changes: other bytes under an existing version are refused.
        """
        target = self._target(name, version, filename)
        artifact = Artifact(uri=target.as_uri(), sha256=sha256_hex(data), path=target)
        try:
            if _create(target, data):
                log.info("published %s (sha256 %s)", artifact.uri, artifact.sha256)
                return artifact
            existing = target.read_bytes()
        except OSError as err:
            raise RegistryError(f"could not publish {target}: {err}") from err
        _same_bytes(name, version, target, existing, data)
        log.info("%s is already published with the same bytes", artifact.uri)
        return artifact

    def uri(self, name: str, version: str, filename: str) -> str:
        """The URI ``publish`` gives this file, known before anything is uploaded."""
        return self._target(name, version, filename).as_uri()

    def _target(self, name: str, version: str, filename: str) -> Path:
        _check_place(name, version, filename)
        return self.root / name / version / filename

    def fetch(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, after checking they are the ones published (``sha256``)."""
        path = self._path(uri)
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise ArtifactMissing(f"{uri}: no such artifact in {self.root}") from err
        except OSError as err:
            raise RegistryError(f"could not read {uri}: {err}") from err
        return _verified(uri, data, sha256)

    def read(self, path: str) -> bytes | None:
        """The file at ``path`` (relative to the registry's root), or None if there is none."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            raise RegistryError(f"{path}: not in the registry {self.root}")
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise RegistryError(f"could not read {target}: {err}") from err

    def exists(self, path: str) -> bool:
        """Whether there is a file at ``path`` (relative to the registry's root)."""
        return (self.root / path).is_file()

    def _path(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise RegistryError(f"{uri}: not a file:// URI of this machine")
        path = Path(url2pathname(parts.path))
        if not path.resolve().is_relative_to(self.root):
            raise RegistryError(f"{uri}: not in the registry {self.root}")
        return path


# Credentials of the HTTP registry; without them requests falls back to ~/.netrc.
USERNAME_VARIABLE = "MODELGEN_REGISTRY_USERNAME"
PASSWORD_VARIABLE = "MODELGEN_REGISTRY_PASSWORD"  # noqa: S105 - a variable's name, not a password


class HttpRegistry:
    """A Nexus raw repository (or any PUT/GET server): artifacts at ``BASE/NAME/VERSION/FILE``.

    Uploads are immutable here too: the artifact's URL is read first, and a version that holds
    other bytes is refused (Nexus' "disable redeploy" policy, or a 409 from a server that
    forbids overwrites, say the same from their side). Failures are retried as
    ``registry.policy.DOWNLOAD`` says, the init containers' policy; each request with its retries
    ends by ``deadline`` seconds (default: $MODELGEN_REGISTRY_DEADLINE_SECONDS, else the
    policy's); ``timeout`` is how long the server may send nothing. Anything else is one clear error.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DOWNLOAD["idleSeconds"],
        retries: int = DOWNLOAD["attempts"] - 1,
        deadline: float | None = None,
    ) -> None:
        import requests

        if has_credentials(base_url):
            # The base URL becomes every artifact's URI: model.yaml, the Deployment, commit messages, /metadata.
            raise RegistryError(
                f"registry URL {redacted(base_url)} carries credentials, and it becomes the artifact URI written "
                f"into the manifest, Git and the service's /metadata: leave user:password@ out and "
                f"{WHERE_REGISTRY_CREDENTIALS_GO}"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.deadline = _registry_deadline() if deadline is None else deadline
        self.session = requests.Session()
        username = username or os.environ.get(USERNAME_VARIABLE)
        password = password if password is not None else os.environ.get(PASSWORD_VARIABLE, "")
        if username:
            self.session.auth = (username, password)

    def url(self, name: str, version: str, filename: str) -> str:
        return f"{self.base_url}/{name}/{version}/{filename}"

    def uri(self, name: str, version: str, filename: str) -> str:
        """The URI ``publish`` gives this file, known before anything is uploaded."""
        _check_place(name, version, filename)
        return self.url(name, version, filename)

    def publish(self, name: str, version: str, filename: str, data: bytes) -> Artifact:
        """PUT ``data`` unless the version exists; the same bytes again is a no-op, other bytes are refused."""
        _check_place(name, version, filename)
        url = self.url(name, version, filename)
        artifact = Artifact(uri=url, sha256=sha256_hex(data))
        existing = self._get(url, missing_ok=True)
        if existing is None:
            response = self._request("PUT", url, data=data, headers={"Content-Type": "application/octet-stream"})
            if response.status_code in (200, 201, 204):
                log.info("published %s (sha256 %s)", url, artifact.sha256)
                return artifact
            if response.status_code not in (400, 409):
                self._fail(response, url, "upload")
            existing = self._get(url, missing_ok=True)  # published meanwhile, or the server forbids overwrites
            if existing is None:
                self._fail(response, url, "upload")
        _same_bytes(name, version, url, existing, data)
        log.info("%s is already published with the same bytes", url)
        return artifact

    def fetch(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, after checking they are the ones published (``sha256``)."""
        data = self._get(uri)
        return _verified(uri, data, sha256)

    def read(self, path: str) -> bytes | None:
        """The file at ``path`` (relative to the registry's base URL), or None if there is none."""
        return self._get(f"{self.base_url}/{path.lstrip('/')}", missing_ok=True)

    def exists(self, path: str) -> bool:
        """Whether there is a file at ``path`` (a HEAD request: nothing is downloaded)."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        response = self._request("HEAD", url)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            self._fail(response, url, "lookup")
        return True

    def _get(self, url: str, missing_ok: bool = False) -> bytes | None:
        response = self._request("GET", url)
        if response.status_code == 200:
            return response.content
        if response.status_code == 404 and missing_ok:
            return None
        self._fail(response, url, "download")
        return None  # unreachable: _fail raises

    def _request(self, method: str, url: str, **kwargs):
        """The response to ``method url``, its body read, after the policy's retries; RegistryError if none came."""
        import requests
        import urllib3

        headers = {"Accept-Encoding": DOWNLOAD["encoding"], **kwargs.pop("headers", {})}
        give_up = time.monotonic() + self.deadline
        attempts, last = self.retries + 1, "none"
        for attempt in range(1, attempts + 1):
            left = give_up - time.monotonic()
            if left <= 0:
                break
            try:
                response = self.session.request(
                    method, url, timeout=min(self.timeout, left), headers=headers, stream=True, **kwargs
                )
                # Read here, against the deadline; response.content then returns it.
                response._content = self._body(response, give_up, method, url)
                if response.status_code not in DOWNLOAD["retryStatuses"] or attempt == attempts:
                    return response
                last = f"HTTP {response.status_code} {response.reason}"
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
                if isinstance(  # a URL requests cannot use: no attempt will do better
                    err,
                    requests.exceptions.InvalidURL
                    | requests.exceptions.InvalidSchema
                    | requests.exceptions.MissingSchema,
                ):
                    raise RegistryError(f"{method} {url}: {err}") from err
                if attempt == attempts:
                    if _timed_out(err):
                        raise RegistryError(
                            f"{method} {url}: no answer within {self.timeout:g} s (after {attempts} attempts)"
                        ) from err
                    raise RegistryError(f"{method} {url}: cannot reach the registry: {_reason(err)}") from err
                last = "no answer" if _timed_out(err) else _reason(err)
            wait = backoff(attempt)
            if time.monotonic() + wait >= give_up:
                break
            time.sleep(wait)
        raise RegistryError(
            f"{method} {url}: did not finish within {self.deadline:g} s ({REGISTRY_DEADLINE_VARIABLE}); "
            f"last failure: {last}"
        )

    def _body(self, response, give_up: float, method: str, url: str) -> bytes:
        """The whole body, read as it comes (read1), so that a server trickling bytes cannot outlast the deadline."""
        chunks = []
        while chunk := response.raw.read1(1 << 16, decode_content=True):
            chunks.append(chunk)
            if time.monotonic() > give_up:
                response.close()
                raise RegistryError(
                    f"{method} {url}: did not finish within {self.deadline:g} s ({REGISTRY_DEADLINE_VARIABLE}), "
                    "the body was still arriving"
                )
        return b"".join(chunks)

    def _fail(self, response, url: str, what: str) -> None:
        status = response.status_code
        why = {
            401: f"authentication failed: set {USERNAME_VARIABLE}/{PASSWORD_VARIABLE} or add the host to ~/.netrc",
            403: "the credentials may not do this (check the user's privileges on the repository)",
            404: "no such artifact",
        }.get(status, "the registry failed" if status >= 500 else "refused")
        kind = ArtifactMissing if status == 404 else RegistryError
        raise kind(f"{what} of {url} failed: HTTP {status} {response.reason}: {why}")


def _registry_deadline() -> float:
    text = os.environ.get(REGISTRY_DEADLINE_VARIABLE, "")
    try:
        seconds = float(text) if text else float(DOWNLOAD["deadlineSeconds"])
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 1e6:
        raise RegistryError(f"{REGISTRY_DEADLINE_VARIABLE} must be a number of seconds above 0, not {text!r}")
    return seconds


def registry_for(location: str | Path) -> LocalRegistry | HttpRegistry:
    """The registry at ``location``: an http(s) URL, a ``file://`` URL or a local folder.

    >>> registry_for("https://nexus.example.com/repository/models").base_url
    'https://nexus.example.com/repository/models'
    """
    text = str(location)
    if text.startswith(("http://", "https://")):
        return HttpRegistry(text)
    if text.startswith("file://"):
        return LocalRegistry(url2pathname(urlsplit(text).path))
    return LocalRegistry(text)


def fetch(uri: str, sha256: str) -> bytes:
    """The artifact at ``uri`` (file:// or http(s)://), checked against ``sha256``."""
    if uri.startswith(("http://", "https://")):
        return HttpRegistry(uri.rsplit("/", 3)[0]).fetch(uri, sha256)
    path = Path(url2pathname(urlsplit(uri).path))
    return LocalRegistry(path.parents[2]).fetch(uri, sha256)


def publish_beside(uri: str, filename: str, data: bytes) -> Artifact:
    """Publish ``data`` as ``filename`` in the folder of the artifact at ``uri`` (``BASE/NAME/VERSION/``).

    >>> publish_beside("https://nexus.example.com/repository/models/churn/1.0.0/model.joblib", "../x", b"")
    Traceback (most recent call last):
    ...
    modelgen.errors.RegistryError: '../x' is not a plain file name (letters, digits, '.', '_', '-')
    """
    base, name, version, _ = uri.rsplit("/", 3)
    return registry_for(base).publish(unquote(name), unquote(version), filename, data)


def _check_place(name: str, version: str, filename: str) -> None:
    """What every backend checks before publishing ``NAME/VERSION/FILE``."""
    check_name(name)
    check_version(version)
    if not FILENAME.fullmatch(filename):
        raise RegistryError(f"{filename!r} is not a plain file name (letters, digits, '.', '_', '-')")


def _same_bytes(name: str, version: str, where: object, existing: bytes, data: bytes) -> None:
    """A published version never changes: refuse other bytes under it."""
    if existing != data:
        raise PublishedVersionConflict(
            f"{name} {version} is already published with other bytes ({where}, sha256 {sha256_hex(existing)}); "
            "a published version never changes: publish under a new version"
        )


def _verified(uri: str, data: bytes, sha256: str) -> bytes:
    actual = sha256_hex(data)
    if actual != sha256.lower():
        raise ArtifactMismatch(
            f"{uri}: sha256 is {actual}, expected {sha256}; the artifact was changed after it was published"
        )
    return data


def _timed_out(err: BaseException) -> bool:
    """Whether a (retried, wrapped) requests failure was a timeout, connect or read."""
    import requests
    import urllib3

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, urllib3.exceptions.NewConnectionError):
            return False  # urllib3 files "connection refused" under connect timeouts
        if isinstance(seen, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
            return True
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = getattr(seen, "reason", None) or inner
    return False


def _reason(err: Exception) -> str:
    # requests nests the cause (MaxRetryError → NewConnectionError); the innermost says it best.
    while err.__context__ is not None and err.__context__ is not err:
        err = err.__context__  # type: ignore[assignment]
    return str(err) or type(err).__name__


def check_name(name: str) -> str:
    """``name`` if it can name a model (a DNS-1123 label of at most 40 characters)."""
    if not NAME.fullmatch(name):
        raise RegistryError(
            f"{name!r} is not a model name: lower-case letters, digits and '-', starting with a letter "
            "and not ending with '-', at most 40 characters"
        )
    return name


def check_version(version: str) -> str:
    """``version`` if it is a semantic version (``1.0.0``, ``2.1.0-rc.1``)."""
    if not VERSION.fullmatch(version):
        raise RegistryError(f"{version!r} is not a semantic version such as 1.0.0")
    return version


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """The options a training script takes to publish its artifact: ``--registry DIR``, ``--version X.Y.Z``.

    ``args.registry`` is then a ``LocalRegistry`` (or None) and ``args.version`` a checked version.
    """
    parser.add_argument("--registry", type=LocalRegistry, help="local model registry folder to publish the artifact to")
    parser.add_argument("--version", type=_version_argument, default="1.0.0", help="model version (default: 1.0.0)")


def _version_argument(text: str) -> str:
    try:
        return check_version(text)
    except RegistryError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _create(target: Path, data: bytes) -> bool:
    """Create ``target`` holding ``data``, atomically; False if it exists already (it is left alone).

    Readers see no file or the whole of it, never a part: the bytes go to a temporary file in the
    same folder first, and only complete, synced bytes get the final name.
    """
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, 0o644)  # mkstemp makes it private; whoever serves the model must read it
        try:
            os.link(partial, target)  # unlike os.replace, never replaces a version published meanwhile
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links (some SMB shares): rename, last writer wins
            os.replace(partial, target)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
