"""``init-gitops`` on an existing empty repository: the branch it uses is the repository's default one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from git_http import git_http
from gitops_support import PRE_RECEIVE, cli, git

pytestmark = pytest.mark.usefixtures("gitops_cache")


def empty_bare(path: Path, head: str) -> Path:
    """A real empty bare repository whose HEAD is ``refs/heads/<head>`` (git's old default: master)."""
    git("init", "--bare", "--quiet", f"--initial-branch={head}", str(path))
    git("config", "receive.advertisePushOptions", "true", cwd=path)
    hook = path / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE.format(python=sys.executable))
    hook.chmod(0o755)
    assert git("symbolic-ref", "HEAD", cwd=path).strip() == f"refs/heads/{head}"
    return path


def test_an_empty_repository_whose_head_is_master_gets_master(tmp_path, capsys):
    remote = empty_bare(tmp_path / "gitops.git", "master")
    code, out, err = cli(capsys, "init-gitops", remote)
    assert code == 0, err
    assert "branch master (the repository's default branch)" in out
    assert git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=remote).split() == ["refs/heads/master"]
    assert yaml.safe_load(git("show", "master:gitops.yaml", cwd=remote))["target_revision"] == "master"
    # Every later command takes the repository.
    code, out, err = cli(capsys, "list", "--gitops", remote)
    assert code == 0 and out.startswith("NAME"), err
    code, out, err = cli(capsys, "init-gitops", remote)
    assert code == 0 and "nothing to do" in out, err


def test_a_given_branch_becomes_a_local_empty_repository_s_default(tmp_path, capsys):
    remote = empty_bare(tmp_path / "gitops.git", "master")
    code, out, err = cli(capsys, "init-gitops", remote, "--target-branch", "main")
    assert code == 0, err
    assert "branch main (now the repository's default branch, instead of master)" in out
    assert git("symbolic-ref", "HEAD", cwd=remote).strip() == "refs/heads/main"
    code, out, err = cli(capsys, "list", "--gitops", remote)
    assert code == 0 and out.startswith("NAME"), err


def test_a_target_revision_in_the_config_file_counts_as_given(tmp_path, capsys):
    remote = empty_bare(tmp_path / "gitops.git", "master")
    config = tmp_path / "gitops.yaml"
    config.write_text("target_revision: release\n")
    code, out, err = cli(capsys, "init-gitops", remote, "--config", config)
    assert code == 0, err
    assert "branch release (now the repository's default branch, instead of master)" in out


@pytest.mark.slow  # an HTTP git server
def test_a_remote_whose_head_is_not_the_given_branch_still_works_and_is_told(tmp_path, capsys, caplog):
    served = tmp_path / "srv"
    remote = empty_bare(served / "gitops.git", "master")
    with git_http(served, "oauth2", "pw") as server:
        url = server.url("gitops.git", "oauth2:pw")
        code, out, err = cli(capsys, "init-gitops", url, "--target-branch", "main")
        assert code == 0, err
        assert "branch main (as given; the remote's default branch is master)" in out
        assert "make main its default branch" in caplog.text
        # HEAD still names master, which does not exist: the branch holding gitops.yaml is found.
        assert git("symbolic-ref", "HEAD", cwd=remote).strip() == "refs/heads/master"
        code, out, err = cli(capsys, "list", "--gitops", url)
        assert code == 0 and out.startswith("NAME"), err
        # And without a branch given, the remote's HEAD is honoured over HTTP too.
        other = empty_bare(served / "other.git", "trunk")
        code, out, err = cli(capsys, "init-gitops", server.url("other.git", "oauth2:pw"))
        assert code == 0, err
        assert "branch trunk (the repository's default branch)" in out
        assert git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=other).split() == ["refs/heads/trunk"]
