"""The one exception family modelgen raises; the CLI catches ``ModelgenError`` once."""

from __future__ import annotations

from dataclasses import dataclass


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


class NotifyError(ModelgenError):
    """A notification could not be delivered."""
