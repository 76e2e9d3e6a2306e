"""modelgen's clone cache of the GitOps repository: broken clones heal, concurrent runs take turns.

Breakages are made for real: the creation steps an older modelgen ran (mkdir, git init --bare,
remote add, fetch) run here up to step k, as a kill at that moment would leave them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitops_support import Remote, cli, git

from modelgen.errors import GitopsError
from modelgen.gitops.cache import clone_path, locked
from modelgen.gitops.repo import normalize

pytestmark = pytest.mark.usefixtures("gitops_cache")
GENERATOR = Path(__file__).resolve().parents[1] / "generator"


@pytest.fixture
def remote(tmp_path, capsys) -> Remote:
    remote = Remote.create(tmp_path / "gitops.git")
    code, _, err = cli(capsys, "init-gitops", remote.path, "--repo-url", "https://gitlab.example.com/ml/gitops.git")
    assert code == 0, err
    return remote


def _steps_up_to(step: str, clone: Path, url: str) -> None:
    shutil.rmtree(clone)  # the one init-gitops made
    clone.mkdir()
    if step == "mkdir":
        return
    git("init", "--bare", "--quiet", cwd=clone)
    if step == "init":
        return  # the reported case: every later command said "No such remote 'origin'"
    if step == "init-without-config":
        (clone / "config").unlink()
        return
    git("remote", "add", "origin", url, cwd=clone)
    if step == "remote":
        return
    git("fetch", "--quiet", "origin", cwd=clone)
    # A git killed while writing the refs it fetched leaves the objects and the refs' lock files,
    # which make every later fetch fail.
    git("update-ref", "-d", "refs/remotes/origin/main", cwd=clone)
    (clone / "refs" / "remotes" / "origin").mkdir(parents=True, exist_ok=True)
    (clone / "refs" / "remotes" / "origin" / "main.lock").write_text("")
    (clone / "packed-refs.lock").write_text("")


@pytest.mark.parametrize("step", ["mkdir", "init", "init-without-config", "remote", "fetch-killed"])
def test_a_clone_broken_at_any_step_of_its_creation_is_repaired(remote, capsys, gitops_cache, step):
    clone = clone_path(normalize(remote.path), gitops_cache)
    _steps_up_to(step, clone, normalize(remote.path))
    code, out, err = cli(capsys, "list", "--gitops", remote.path)
    assert code == 0, err
    assert out.startswith("NAME")
    assert (
        git("rev-parse", "refs/remotes/origin/main", cwd=clone).strip()
        == git("rev-parse", "main", cwd=remote.path).strip()
    )
    assert not list(clone.parent.glob(f".{clone.name}.*"))
    # And it stays usable.
    code, _, err = cli(capsys, "list", "--gitops", remote.path)
    assert code == 0, err


def test_a_clone_building_when_killed_is_cleared_and_a_file_in_its_place_replaced(remote, capsys, caplog, gitops_cache):
    clone = clone_path(normalize(remote.path), gitops_cache)
    building = clone.with_name(f".{clone.name}.building-abc123")
    building.mkdir()
    git("init", "--bare", "--quiet", cwd=building)
    shutil.rmtree(clone)
    clone.write_text("not a clone\n")
    code, _, err = cli(capsys, "list", "--gitops", remote.path)
    assert code == 0, err
    assert not building.exists() and (clone / "HEAD").is_file()
    assert "rebuilding the GitOps cache" in caplog.text


def test_a_held_lock_times_out_with_a_clear_message(remote, capsys, gitops_cache, monkeypatch):
    clone = clone_path(normalize(remote.path), gitops_cache)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl,sys,time; f=open({str(clone) + '.lock'!r},'w'); "
            "fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); f.flush(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("MODELGEN_CACHE_LOCK_TIMEOUT", "0.5")
        started = time.monotonic()
        code, _, err = cli(capsys, "list", "--gitops", remote.path)
        assert code == 2 and time.monotonic() - started < 10
        assert "is busy: another modelgen (pid 4242)" in err and "MODELGEN_CACHE_LOCK_TIMEOUT" in err
    finally:
        holder.kill()
        holder.wait()
    # The lock died with its process.
    code, _, err = cli(capsys, "list", "--gitops", remote.path)
    assert code == 0, err


def test_the_lock_is_exclusive_and_released(tmp_path):
    clone = tmp_path / "gitops" / "x.git"
    with locked(clone, timeout=1):
        fd = os.open(str(clone) + ".lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(GitopsError, match="is busy"), locked(clone, timeout=0.1):
                pass
        finally:
            os.close(fd)
    with locked(clone, timeout=0.1):
        pass


def _modelgen(*args: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "MODELGEN_CACHE": str(cache), "PYTHONPATH": str(GENERATOR)}
    for name in ("GITLAB_URL", "GITLAB_TOKEN", "MODELGEN_GITOPS", "MODELGEN_REGISTRY", "MODELGEN_TEMPLATES"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "modelgen", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow  # 3 x 8 modelgen processes
def test_concurrent_commands_on_a_cold_cache_all_succeed(remote, tmp_path):
    failures = []
    for round in range(3):
        cache = tmp_path / f"cold-{round}"
        procs = [_modelgen("list", "--gitops", str(remote.path), cache=cache) for _ in range(8)]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            if proc.returncode != 0 or not out.startswith("NAME"):
                failures.append(err.strip())
    assert failures == []


@pytest.mark.slow  # two generate runs at once
def test_the_same_model_generated_twice_at_once_is_pushed_once(remote, penguins_manifest, tmp_path):
    cache = tmp_path / "shared"
    procs = [
        _modelgen("generate", str(penguins_manifest), "--gitops", str(remote.path), "--merge-request", cache=cache)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    assert [code for code, _, _ in results] == [0, 0], results
    branch = "modelgen/penguin-species-1.0.0"
    said = sorted(out for _, out, _ in results)
    assert said[0].startswith(f"branch {branch} already holds this change") and "nothing to push" in said[0], results
    assert said[1].startswith(f"pushed {branch} ("), results
    assert remote.branches() == ["main", branch]


@pytest.mark.slow  # two renders of the model
def test_a_push_that_loses_the_race_to_the_same_change_says_it_is_already_pushed(
    remote, penguins_manifest, monkeypatch, tmp_path
):
    from modelgen.gitops.repo import GitopsRepo, publish_model
    from modelgen.manifest import load

    manifest = load(penguins_manifest)
    # Both runs fetched before either pushed (on two machines: two caches); their commits differ
    # (other times), their trees do not.
    first = GitopsRepo.open(remote.path, cache=tmp_path / "one")
    second = GitopsRepo.open(remote.path, cache=tmp_path / "two")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
    won = publish_model(first, manifest, merge_request=True)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2026-01-01T00:00:05Z")
    lost = publish_model(second, manifest, merge_request=True)
    branch = "modelgen/penguin-species-1.0.0"
    assert won.pushed and won.message.startswith(f"pushed {branch} (")
    assert not lost.pushed
    assert lost.message == (
        f"branch {branch} already holds this change, pushed meanwhile ({won.commit[:12]}): nothing to push"
    )
    assert git("rev-parse", branch, cwd=remote.path).strip() == won.commit
