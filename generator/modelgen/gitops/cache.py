"""modelgen's bare clones of GitOps repositories, under ``$MODELGEN_CACHE`` (default ``~/.cache/modelgen``).

A clone is built beside its final name and renamed into place, so a command killed half-way
leaves either no clone or a whole one; every step that writes to it (creation, fetch, push)
holds an exclusive ``flock`` on a lock file beside it, so concurrent commands take turns instead
of racing on git's own lock files. A clone found broken anyway (made by an older modelgen, or by
hand) is rebuilt: it is only a cache of the remote, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from modelgen.errors import GitError, GitopsError
from modelgen.gitops.git import Git

log = logging.getLogger(__name__)

CACHE_VARIABLE = "MODELGEN_CACHE"
LOCK_TIMEOUT_VARIABLE = "MODELGEN_CACHE_LOCK_TIMEOUT"
# Seconds to wait for another modelgen's fetch or push; both are bounded by git's own timeout.
DEFAULT_LOCK_TIMEOUT = 300.0
_FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "modelgen")


def clone_path(url: str, cache: Path | None = None) -> Path:
    """Where the clone of ``url`` (a URL without credentials, or an absolute path) is kept."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", url).strip("-")[-40:]
    return (cache or cache_root()) / "gitops" / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:10]}.git"


def lock_timeout() -> float:
    text = os.environ.get(LOCK_TIMEOUT_VARIABLE)
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise GitopsError(f"{LOCK_TIMEOUT_VARIABLE}={text!r} is not a number of seconds") from None
    if value < 0:
        raise GitopsError(f"{LOCK_TIMEOUT_VARIABLE}={text!r}: a number of seconds, 0 or more")
    return value


@contextlib.contextmanager
def locked(clone: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the clone's lock file (``<clone>.lock``) exclusively; a lock dies with its process."""
    timeout = lock_timeout() if timeout is None else timeout
    lock = clone.with_name(clone.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                raise GitopsError(
                    f"the GitOps cache {clone} is busy: another modelgen (pid {holder}) has held {lock} for over "
                    f"{timeout:g} s; wait for it to finish, or raise {LOCK_TIMEOUT_VARIABLE} (the lock goes away "
                    "with the process that holds it)"
                )
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def prepared(clone: Path, url: str, env: Mapping[str, str] | None = None) -> Git:
    """The clone of ``url`` at ``clone``, created, repaired or rebuilt as needed; call it holding ``locked``."""
    _remove_leftovers(clone)
    if clone.exists() or clone.is_symlink():
        problem = _problem(clone)
        if problem is None:
            git = Git(clone, env)
            _remove_stale_git_locks(clone)
            if git.text("config", "--get", "remote.origin.url") != url:
                git.run("config", "remote.origin.url", url)
            return git
        log.warning("rebuilding the GitOps cache %s: %s", clone, problem)
        _discard(clone)
    return _create(clone, url, env)


def _create(clone: Path, url: str, env: Mapping[str, str] | None) -> Git:
    clone.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{clone.name}.building-", dir=clone.parent))
    try:
        git = Git(building, env)
        git.run("init", "--bare", "--quiet")
        git.run("config", "remote.origin.url", url)
        git.run("config", "remote.origin.fetch", _FETCH_REFSPEC)
        os.rename(building, clone)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return Git(clone, env)


def _problem(clone: Path) -> str | None:
    """Why ``clone`` is not a usable clone, or None when it is."""
    if not clone.is_dir() or clone.is_symlink():
        return "not a folder"
    if not (clone / "HEAD").is_file():
        return "no HEAD (its creation was interrupted)"
    git = Git(clone)
    try:
        if git.text("rev-parse", "--is-bare-repository") != "true":
            return "not a bare repository"
        if not git.text("config", "--get", "remote.origin.url"):
            return "no remote origin"
        if _FETCH_REFSPEC not in git.text("config", "--get-all", "remote.origin.fetch").splitlines():
            return "remote origin fetches nothing"
    except GitError as err:
        return f"git cannot use it ({err})"
    return None


def _remove_stale_git_locks(clone: Path) -> None:
    """git's own ``*.lock`` files left by a killed git: nobody else works here while we hold the lock."""
    for stale in [*clone.glob("*.lock"), *(clone / "refs").rglob("*.lock")]:
        log.warning("removing %s, left by an interrupted git", stale)
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def _remove_leftovers(clone: Path) -> None:
    """Clones whose building or discarding was interrupted (only ever done holding the lock)."""
    for leftover in clone.parent.glob(f".{clone.name}.*-*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _discard(clone: Path) -> None:
    # Renamed first, so the clone's name is free at once even if removing the folder fails.
    aside = clone.with_name(f".{clone.name}.broken-{os.getpid()}")
    os.rename(clone, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink()
