"""Real git for the GitOps tests: a bare remote whose pre-receive hook records every push."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from modelgen.cli import main

# Records each push (refs and GIT_PUSH_OPTION_*) and refuses it while a file "reject" exists.
PRE_RECEIVE = """#!{python}
import json, os, sys
refs = [line.split() for line in sys.stdin.read().splitlines()]
count = int(os.environ.get("GIT_PUSH_OPTION_COUNT") or 0)
options = [os.environ["GIT_PUSH_OPTION_%d" % i] for i in range(count)]
rejected = os.path.exists("reject")
with open("push-log.jsonl", "a") as log:
    log.write(json.dumps({{"refs": refs, "options": options, "rejected": rejected}}) + "\\n")
if rejected:
    print("pre-receive: the repository is frozen for a release", file=sys.stderr)
    sys.exit(1)
"""


def git(*args: str, cwd: Path | None = None) -> str:
    env_args = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *env_args, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@dataclass
class Remote:
    path: Path

    @classmethod
    def create(cls, path: Path) -> Remote:
        git("init", "--bare", "--quiet", "--initial-branch=main", str(path))
        git("config", "receive.advertisePushOptions", "true", cwd=path)
        hook = path / "hooks" / "pre-receive"
        hook.write_text(PRE_RECEIVE.format(python=sys.executable))
        hook.chmod(0o755)
        return cls(path)

    def pushes(self) -> list[dict]:
        log = self.path / "push-log.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def branches(self) -> list[str]:
        return git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.path).split()

    def show(self, ref: str, path: str) -> str:
        return git("show", f"{ref}:{path}", cwd=self.path)

    def files(self, ref: str, prefix: str = "") -> list[str]:
        args = ["ls-tree", "-r", "--name-only", ref] + ([prefix] if prefix else [])
        return git(*args, cwd=self.path).split("\n")[:-1]

    def reject(self, on: bool = True) -> None:
        flag = self.path / "reject"
        if on:
            flag.write_text("frozen\n")
        else:
            flag.unlink(missing_ok=True)

    def merge(self, branch: str, work: Path) -> None:
        """What accepting the merge request does: a merge commit of ``branch`` into main."""
        if work.exists():
            shutil.rmtree(work)
        git("clone", "--quiet", str(self.path), str(work))
        git("merge", "--no-ff", "--quiet", "-m", f"Merge branch '{branch}'", f"origin/{branch}", cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)

    def commit_on_main(self, work: Path, edits: dict[str, str], message: str) -> None:
        """A hand edit merged into main (as through a reviewed merge request)."""
        if work.exists():
            shutil.rmtree(work)
        git("clone", "--quiet", str(self.path), str(work))
        for rel, text in edits.items():
            (work / rel).write_text(text)
        git("commit", "--quiet", "-am", message, cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``modelgen ARGS`` in this process; returns the exit code, stdout and stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def variant(manifest: Path, where: Path, replacements: dict[str, str]) -> Path:
    """A copy of the model folder of ``manifest`` with text replaced in model.yaml."""
    shutil.copytree(manifest.parent, where)
    text = manifest.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    (where / manifest.name).write_text(text)
    return where / manifest.name
