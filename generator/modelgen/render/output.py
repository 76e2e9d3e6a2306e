"""The one writer: put a rendered project on disk atomically, or leave the folder as it was."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from modelgen.errors import OutputError, os_problem
from modelgen.render.templates import Files

log = logging.getLogger(__name__)


def write_project(files: Files, target: Path) -> bool:
    """Make ``target`` hold exactly ``files``; return False when it already did.

    The new tree is built beside ``target`` and swapped in with renames, so a failure at
    any point leaves either the old project or the new one, never a mix.
    """
    target = Path(target)
    if _same(files, target):
        log.info("%s is up to date", target)
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    except OSError as err:
        raise OutputError(f"cannot write the project: {os_problem(err)}") from err
    backup = target.parent / f".{target.name}.old-{os.getpid()}"
    try:
        for rel, data in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            target.rename(backup)
        staging.rename(target)
    except OSError as err:
        if backup.exists() and not target.exists():
            backup.rename(target)
        raise OutputError(f"could not write {target}: {os_problem(err)}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
    return True


def _same(files: Files, target: Path) -> bool:
    if not target.is_dir():
        return False
    existing = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    if existing != set(files):
        return False
    return all((target / rel).read_bytes() == data for rel, data in files.items())
