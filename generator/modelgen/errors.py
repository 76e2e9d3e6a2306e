"""The one exception family modelgen raises, all of it here; the CLI catches ``ModelgenError`` once.

The subclasses say what went wrong, so callers choose by type (the webhook its HTTP status), never
by the message's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ModelgenError(Exception):
    """Base class: ``str(err)`` is a message meant for the user, without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a manifest, located as precisely as the YAML allows."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(document)'}: {self.message}"


class ManifestError(ModelgenError):
    """A manifest that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RenderError(ModelgenError):
    """A template could not be rendered."""


class OutputError(ModelgenError):
    """Writing the generated project failed; the output folder was left as it was."""


class RegistryError(ModelgenError):
    """An artifact could not be published to or fetched from a model registry, or was not the one published."""


class ArtifactMissing(RegistryError):
    """There is nothing at the artifact's URI (yet)."""


class ArtifactMismatch(RegistryError):
    """The bytes at the artifact's URI are not the ones its sha256 pins."""


class VersionConflict(ModelgenError):
    """A published version would change: a version's artifact never does (give it a new version)."""


class PublishedVersionConflict(RegistryError, VersionConflict):
    """The registry already holds other bytes under this name and version."""


class GitError(ModelgenError):
    """A git command failed; the message carries git's own explanation."""


class GitopsError(ModelgenError):
    """The GitOps repository cannot take this change."""


class DeployedVersionConflict(GitopsError, VersionConflict):
    """The GitOps repository already has this model version with another artifact."""


class MergeRequestError(ModelgenError):
    """GitLab did not open the merge request."""


class RetrainError(ModelgenError):
    """Retraining could not produce or publish a new model."""


class DeployError(ModelgenError):
    """The model cannot be shipped as it is; the message says what to change."""


class NotifyError(ModelgenError):
    """A notification could not be delivered."""


def os_problem(err: OSError) -> str:
    """``PATH: reason`` for a failed file operation: one line, no errno, no traceback.

    >>> os_problem(PermissionError(13, "Permission denied", "/etc/shadow"))
    '/etc/shadow: Permission denied'
    >>> os_problem(FileNotFoundError(2, "No such file or directory", "/missing/x"))
    '/missing/x: its folder /missing does not exist'
    """
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    reason = err.strerror or str(err)
    if isinstance(err, FileExistsError) and paths and not Path(paths[0]).is_dir():
        reason = "exists and is not a folder"
    elif isinstance(err, NotADirectoryError):
        reason = "a part of the path is a file, not a folder"
    elif isinstance(err, FileNotFoundError) and paths and not Path(paths[0]).parent.exists():
        reason = f"its folder {Path(paths[0]).parent} does not exist"
    return f"{' → '.join(paths)}: {reason}" if paths else reason


class BatchError(ModelgenError):
    """A batch run cannot be made or started (no such model, no Spark job for R, the cluster refused it)."""


class ClusterError(ModelgenError):
    """The cluster could not be reached, or refused a request."""


class ClusterUnreachable(ClusterError):
    """No answer from the cluster's API server: no connection, a timeout, or TLS failed."""


class ClusterRefused(ClusterError):
    """The API server answered with an error (not authorised, forbidden, an API it does not serve)."""


class NotDeployed(ModelgenError):
    """Argo CD deploys no such model (or environment) to the cluster."""
