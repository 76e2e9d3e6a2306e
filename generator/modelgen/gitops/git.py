"""Git, spoken through its plumbing commands so that no working tree is ever touched.

modelgen keeps a bare clone of the GitOps repository and builds each commit in a private
index file: reading trees, writing blobs, committing and pushing happen without a checkout,
so a failure at any step leaves nothing half-written, anywhere.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from modelgen.errors import GitError

log = logging.getLogger(__name__)

Changes = Mapping[str, bytes | None]  # path -> new content, or None to delete
# The identity commits get when neither the environment nor git's config names one.
FALLBACK_IDENTITY = {"name": "modelgen", "email": "modelgen@localhost"}
_ZERO = "0" * 40
# Every git command ends by this deadline, in seconds ($MODELGEN_GIT_DEADLINE_SECONDS overrides it);
# its whole process group is killed then, helpers such as git-remote-https included.
DEADLINE_VARIABLE = "MODELGEN_GIT_DEADLINE_SECONDS"
DEFAULT_DEADLINE = 600
# Commands that talk to a remote. Over http(s) they give up sooner, on their own, when fewer than
# LOW_SPEED_LIMIT bytes a second arrive for LOW_SPEED_TIME seconds: a remote that accepts and never answers.
NETWORK = frozenset({"fetch", "push", "clone", "ls-remote"})
LOW_SPEED_LIMIT = 1000
LOW_SPEED_TIME = 30


@dataclass(frozen=True)
class Entry:
    mode: str
    sha: str


class Git:
    """One repository (usually bare), driven by ``git -C <path>``; ``env`` goes to every git it runs."""

    def __init__(self, path: Path, env: Mapping[str, str] | None = None):
        self.path = Path(path)
        # The remote's credentials (credentials.Transport.env), so they are in no file and no argv.
        self.env = dict(env or {})

    def run(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> bytes:
        deadline = git_deadline()
        options: list[str] = []
        if args[0] in NETWORK:
            speed_time = max(1, min(LOW_SPEED_TIME, math.ceil(deadline)))
            options = ["-c", f"http.lowSpeedLimit={LOW_SPEED_LIMIT}", "-c", f"http.lowSpeedTime={speed_time}"]
        cmd = ["git", *options, "-C", str(self.path), *args]
        log.debug("$ %s", " ".join(cmd))
        remote = self._remote(args) if args[0] in NETWORK else ""
        # Over http(s) git gets a session of its own, so that on the deadline its whole group goes,
        # git-remote-http(s) included (left behind, it would hold the pipes, and this call, open).
        # Other remotes (ssh) keep the terminal for their prompts; only git itself is killed then.
        isolate = remote.startswith(("http://", "https://"))
        try:
            with subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if input is not None else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **self.env, **(env or {})},
                start_new_session=isolate,
            ) as proc:
                try:
                    stdout, stderr = proc.communicate(input, timeout=deadline)
                except subprocess.TimeoutExpired:
                    if isolate:
                        os.killpg(proc.pid, signal.SIGKILL)
                    else:
                        proc.kill()
                    proc.wait()
                    raise GitError(
                        f"git {args[0]}: {remote or 'it'} did not finish within {deadline:g} s ({DEADLINE_VARIABLE})"
                    ) from None
        except OSError as err:
            raise GitError(f"git {args[0]} failed: {err}") from err
        if proc.returncode != 0:
            said = stderr.decode("utf-8", "replace").strip() or stdout.decode("utf-8", "replace").strip()
            # One line, as every error modelgen prints: git's lines (fatal:, hint:, remote:) joined.
            said = "; ".join(line.strip() for line in said.splitlines() if line.strip())
            raise GitError(f"git {args[0]} failed (exit {proc.returncode}): {said}")
        return stdout

    def _remote(self, args: Sequence[str]) -> str:
        """The remote a network command talks to, as its URL (without credentials) when git knows it."""
        url = next((a for a in args[1:] if "://" in a), "")
        if not url:
            try:
                url = self.text("config", "--get", "remote.origin.url")  # modelgen's only remote
            except GitError:
                url = "origin"
        parts = urlsplit(url)
        if "@" in parts.netloc:
            url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        return url

    def text(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).decode("utf-8").strip()

    def resolve(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None when there is no such ref."""
        try:
            return self.text("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except GitError:
            return None

    def tree(self, commit: str | None, prefix: str = "") -> dict[str, Entry]:
        """Every file under ``prefix`` at ``commit``, keyed by its path from the repository's root."""
        if commit is None:
            return {}
        args = ["ls-tree", "-r", "-z", "--full-tree", commit]
        if prefix:
            args += ["--", prefix.rstrip("/") + "/"]
        files: dict[str, Entry] = {}
        for record in self.run(*args).split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            mode, kind, sha = meta.decode().split()
            if kind == "blob":
                files[path.decode("utf-8")] = Entry(mode, sha)
        return files

    def read(self, entries: Mapping[str, Entry]) -> dict[str, bytes]:
        """The contents of many blobs with one ``git cat-file --batch``."""
        if not entries:
            return {}
        paths = list(entries)
        out = self.run("cat-file", "--batch", input="".join(f"{entries[p].sha}\n" for p in paths).encode())
        contents: dict[str, bytes] = {}
        pos = 0
        for path in paths:
            header_end = out.index(b"\n", pos)
            _sha, _kind, size = out[pos:header_end].split()
            start = header_end + 1
            contents[path] = out[start : start + int(size)]
            pos = start + int(size) + 1
        return contents

    def commit(self, parent: str | None, changes: Changes, message: str) -> str:
        """A new commit: ``parent``'s tree with ``changes`` applied. Nothing else is touched."""
        with tempfile.TemporaryDirectory(prefix="modelgen-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self.run("read-tree", parent, env=env)
            else:
                self.run("read-tree", "--empty", env=env)
            written = self._write_blobs({p: data for p, data in changes.items() if data is not None}, Path(tmp))
            info = [f"100644 {written[p]}\t{p}" for p in sorted(written)]
            info += [f"0 {_ZERO}\t{p}" for p, data in sorted(changes.items()) if data is None]
            if info:
                self.run("update-index", "--index-info", input=("\n".join(info) + "\n").encode("utf-8"), env=env)
            tree = self.text("write-tree", env=env)
        args = ["commit-tree", tree]
        if parent:
            args += ["-p", parent]
        return self.text(*args, input=message.encode("utf-8"), env=self._identity())

    def tree_of(self, commit: str) -> str:
        return self.text("rev-parse", f"{commit}^{{tree}}")

    def _write_blobs(self, files: Mapping[str, bytes], tmp: Path) -> dict[str, str]:
        if not files:
            return {}
        staged = []
        for i, data in enumerate(files.values()):
            path = tmp / f"blob-{i}"
            path.write_bytes(data)
            staged.append(str(path))
        shas = self.text("hash-object", "-w", "--no-filters", "--stdin-paths", input="\n".join(staged).encode()).split()
        return dict(zip(files, shas, strict=True))

    def _identity(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for role in ("AUTHOR", "COMMITTER"):
            for key in ("name", "email"):
                var = f"GIT_{role}_{key.upper()}"
                if var in os.environ:
                    continue
                try:
                    configured = self.text("config", f"user.{key}")
                except GitError:
                    configured = ""
                if not configured:
                    env[var] = FALLBACK_IDENTITY[key]
        return env


def git_deadline() -> float:
    """Seconds any one git command may take: $MODELGEN_GIT_DEADLINE_SECONDS, else DEFAULT_DEADLINE."""
    text = os.environ.get(DEADLINE_VARIABLE, "")
    try:
        seconds = float(text) if text else float(DEFAULT_DEADLINE)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 1e6:
        raise GitError(f"{DEADLINE_VARIABLE} must be a number of seconds above 0, not {text!r}")
    return seconds


def push(
    repo: Git,
    commit: str,
    branch: str,
    *,
    options: Sequence[str] = (),
    expect: str | None = None,
) -> bool:
    """Push ``commit`` to ``origin``'s ``branch``; ``expect`` is the commit the branch must still be at.

    A branch modelgen owns (``modelgen/...``) may be replaced, but only if nobody moved it since
    it was fetched (``--force-with-lease``); the target branch is only ever fast-forwarded.
    False when the branch was at ``commit`` already (another run pushed the very same commit).
    """
    args = ["push", "--porcelain"]
    for option in options:
        args += ["-o", option]
    if expect is not None:
        args.append(f"--force-with-lease=refs/heads/{branch}:{expect}")
    args += ["origin", f"{commit}:refs/heads/{branch}"]
    try:
        out = repo.text(*args)
    except GitError as err:
        raise GitError(f"the remote refused the push of {branch}: {err}") from err
    # --porcelain: "<flag>\t<from>:<to>\t<summary>" per ref; "=" is a ref that was up to date.
    return not any(line.startswith("=\t") for line in out.splitlines())


def merge_file(ours: bytes, base: bytes, theirs: bytes, labels: tuple[str, str, str]) -> tuple[bytes, int]:
    """``git merge-file``: the 3-way merge of one file and its number of conflicts (0 = clean)."""
    with tempfile.TemporaryDirectory(prefix="modelgen-merge-") as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(str(path))
        args = ["git", "merge-file", "-p", "-L", labels[0], "-L", labels[1], "-L", labels[2], *paths]
        done = subprocess.run(args, capture_output=True, timeout=60)
    # The exit status is the number of conflicts; negative (255 here) means git failed.
    if done.returncode < 0 or done.returncode > 127:
        raise GitError(f"git merge-file failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout, done.returncode
