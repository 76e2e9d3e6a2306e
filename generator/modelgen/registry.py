"""Model registries: where artifacts live, immutable per version, addressed by URI and sha256.

One backend for now, a local folder (``LocalRegistry``, ``ROOT/NAME/VERSION/FILE``); an HTTP store
(Nexus raw repository, any PUT/GET server) will be a second class with the same two methods.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from modelgen.errors import RegistryError

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

    def fetch(self, uri: str, sha256: str) -> bytes: ...


class LocalRegistry:
    """A folder (local disk or a mounted share) holding ``ROOT/NAME/VERSION/FILE``; URIs are ``file://``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def publish(self, name: str, version: str, filename: str, data: bytes) -> Artifact:
        """Store ``data`` under ``name``/``version``; publishing the same bytes again changes nothing.

        A published version never changes: other bytes under an existing version are refused.
        """
        check_name(name)
        check_version(version)
        if not FILENAME.match(filename):
            raise RegistryError(f"{filename!r} is not a plain file name (letters, digits, '.', '_', '-')")
        target = self.root / name / version / filename
        artifact = Artifact(uri=target.as_uri(), sha256=sha256_hex(data), path=target)
        try:
            if _create(target, data):
                log.info("published %s (sha256 %s)", artifact.uri, artifact.sha256)
                return artifact
            existing = target.read_bytes()
        except OSError as err:
            raise RegistryError(f"could not publish {target}: {err}") from err
        if existing != data:
            raise RegistryError(
                f"{name} {version} is already published with other bytes ({target}, sha256 {sha256_hex(existing)}); "
                "a published version never changes: publish under a new version"
            )
        log.info("%s is already published with the same bytes", artifact.uri)
        return artifact

    def fetch(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, after checking they are the ones published (``sha256``)."""
        path = self._path(uri)
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise RegistryError(f"{uri}: no such artifact in {self.root}") from err
        except OSError as err:
            raise RegistryError(f"could not read {uri}: {err}") from err
        actual = sha256_hex(data)
        if actual != sha256.lower():
            raise RegistryError(
                f"{uri}: sha256 is {actual}, expected {sha256}; the artifact was changed after it was published"
            )
        return data

    def _path(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise RegistryError(f"{uri}: not a file:// URI of this machine")
        path = Path(url2pathname(parts.path))
        if not path.resolve().is_relative_to(self.root):
            raise RegistryError(f"{uri}: not in the registry {self.root}")
        return path


def check_name(name: str) -> str:
    """``name`` if it can name a model (a DNS-1123 label of at most 40 characters)."""
    if not NAME.match(name):
        raise RegistryError(
            f"{name!r} is not a model name: lower-case letters, digits and '-', starting with a letter "
            "and not ending with '-', at most 40 characters"
        )
    return name


def check_version(version: str) -> str:
    """``version`` if it is a semantic version (``1.0.0``, ``2.1.0-rc.1``)."""
    if not VERSION.match(version):
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
