"""A generated project read back: its manifest (in the layout the manifest expects) and its record.

A project keeps the sample as ``tests/sample.json`` and custom code under ``model_code/``
while its ``model.yaml`` names them as they were beside the manifest; validating or
re-rendering a project puts them back where the manifest says, in a private folder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from modelgen.errors import ManifestError, ModelgenError, Problem
from modelgen.manifest import Manifest, load, named_files
from modelgen.render.templates import CODE_DIR, RECORD, SAMPLE, TRAINING_DIR

MANIFEST = "model.yaml"


def is_project(path: Path) -> bool:
    """A folder ``modelgen generate`` wrote (it has a manifest and a record), as opposed to a model's folder."""
    return (path / MANIFEST).is_file() and (path / RECORD).is_file()


def read_project(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def project_manifest(files: Mapping[str, bytes], where: str) -> Iterator[Manifest]:
    """The manifest of a project given as ``{path: bytes}``; problems are reported against ``where``.

    >>> from modelgen.manifest.docs import write_example
    >>> manifest = write_example()
    >>> from modelgen.render.templates import render
    >>> files = render(load(manifest))  # what ``read_project`` reads back from a project's folder
    >>> with project_manifest(files, "models/penguin-species") as m:
    ...     m.name, m.version, m.sample == load(manifest).sample
    ('penguin-species', '1.2.0', True)
    """
    if MANIFEST not in files:
        raise ManifestError([Problem(f"{where}/{MANIFEST}", None, "", "file not found")])
    named = named_files(files[MANIFEST])
    with tempfile.TemporaryDirectory(prefix="modelgen-project-") as tmp:
        root = Path(tmp)
        (root / MANIFEST).write_bytes(files[MANIFEST])
        # Where the project keeps each file the manifest names beside it.
        kept = {named.sample: SAMPLE} if named.sample else {}
        if named.script:
            kept[named.script] = f"{TRAINING_DIR}/{PurePosixPath(named.script).name}"
        kept.update({rel: f"{CODE_DIR}/{PurePosixPath(rel).name}" for rel in named.code})
        for rel, source in kept.items():
            if source in files:
                _place(root, rel, files[source])
        try:
            yield load(root / MANIFEST)
        except ManifestError as err:
            raise ManifestError([_relocate(p, root, where) for p in err.problems]) from None


def record(files: Mapping[str, bytes], where: str) -> dict[str, Any]:
    """The project's ``.modelgen.json``: the template, its version and the inputs it was rendered with."""
    try:
        data = json.loads(files[RECORD])
        data["inputs"]["runtime"]  # noqa: B018 - the one key every record has
        return data
    except (KeyError, TypeError, ValueError) as err:
        raise ModelgenError(f"{where}/{RECORD} is missing or not a modelgen record ({err})") from err


def _place(root: Path, rel: str, data: bytes) -> None:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        return  # a path leaving the folder: load() reports it
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _relocate(problem: Problem, root: Path, where: str) -> Problem:
    return replace(problem, file=problem.file.replace(str(root), where))
