"""The public entry points, as one-call pipelines of the steps in their own modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelgen.manifest import load
from modelgen.render.output import write_project
from modelgen.render.pipeline import project_files


@dataclass(frozen=True)
class Generated:
    path: Path
    changed: bool
    files: int


def generate(manifest_path: str | Path, output_dir: str | Path) -> Generated:
    """Validate a manifest, render its project and write it to ``output_dir/<name>``.

    >>> from modelgen.manifest.docs import write_example
    >>> manifest = write_example()
    >>> generated = generate(manifest, manifest.parent / "out")
    >>> generated.path == manifest.parent / "out" / "penguin-species", generated.changed, generated.files > 20
    (True, True, True)
    >>> generate(manifest, manifest.parent / "out").changed  # the same manifest again: nothing to write
    False
    """
    manifest = load(manifest_path)
    files = project_files(manifest)
    target = Path(output_dir) / manifest.name
    return Generated(target, write_project(files, target), len(files))
