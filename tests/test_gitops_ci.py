"""The GitOps repository's pipeline run for real by gitlab-ci-local, on a merge request's branch.

`init-gitops` + `generate --gitops` make the repository; a clone on the model's branch (what
GitLab checks out for a merge-request pipeline) runs the validate job (manifests, kustomize,
kubernetes-validate, checkov) and the model's child pipeline (its smoke tests on the real
artifact, its overlays) in the shell, with the tools its CI image would have on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gitops_support import Remote, cli, git

pytestmark = pytest.mark.slow  # gitlab-ci-local runs the pipelines in a project's virtualenv

ROOT = Path(__file__).resolve().parents[1]
PENGUINS = "penguin-species"
BRANCH = f"modelgen/{PENGUINS}-1.0.0"


def gitlab_ci_local() -> Path:
    """Installed by `make system-deps` (npm, 4.73.0: the last release for Node 20); a failure in CI."""
    found = os.environ.get("GITLAB_CI_LOCAL") or shutil.which("gitlab-ci-local")
    path = Path(found) if found else ROOT / ".work" / "npm" / "node_modules" / ".bin" / "gitlab-ci-local"
    if not path.exists() or not shutil.which("rsync"):
        message = f"gitlab-ci-local ({path}) or rsync missing: run `make system-deps`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def checkout(tmp_path, capsys, penguins_manifest, anomaly_manifest, gitops_cache) -> Path:
    """A clone of a GitOps repository (the anomaly model merged) on the branch `generate --gitops` pushed."""
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    assert cli(capsys, "generate", anomaly_manifest, "--gitops", remote.path)[0] == 0
    (anomaly,) = [b for b in remote.branches() if b != "main"]
    remote.merge(anomaly, tmp_path / "merge")
    assert cli(capsys, "generate", penguins_manifest, "--gitops", remote.path, "--merge-request")[0] == 0
    work = tmp_path / "work"
    git("clone", "--quiet", "--branch", BRANCH, str(remote.path), str(work))
    return work


def run_pipeline(work: Path, python: Path, *args: str) -> subprocess.CompletedProcess:
    # The project's venv first (the child's test job installs into "python"), then modelgen and
    # the validators, as the CI image has them.
    path = os.pathsep.join([str(python.parent), str(Path(sys.executable).parent), os.environ["PATH"]])
    return subprocess.run(
        [
            gitlab_ci_local(),
            "--force-shell-executor",
            "--no-color",
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            *args,
        ],
        cwd=work,
        env={**os.environ, "PATH": path, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_merge_request_pipeline_validates_and_runs_the_changed_model_s_child_pipeline(checkout, penguins_python):
    listed = run_pipeline(checkout, penguins_python, "--list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    jobs = [
        line.split()[0] for line in listed.stdout.splitlines() if re.match(r"^\S+\s+\S*\s*(validate|models)\s", line)
    ]
    assert jobs == ["validate", f"model:{PENGUINS}"], listed.stdout

    done = run_pipeline(checkout, penguins_python)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    # validate: every overlay rendered and checked.
    assert f"rendered models/{PENGUINS}/deploy/overlays/dev/" in log  # prod once it is promoted
    assert "models/penguin-species/: valid (penguin-species 1.0.0, python, classification)" in log
    assert re.search(r"models/penguin-anomaly\S*/: valid", log), log[-4000:]
    assert re.search(r"Passed checks: \d+, Failed checks: 0", log), log[-4000:]
    # The child pipeline: the model's smoke tests against the real artifact, and its overlays.
    assert re.search(r"\d+ passed", log), log[-4000:]
    assert re.search(r"fetched file://\S+/penguin-species/1.0.0/model.joblib -> model.joblib \(sha256 ok\)", log)
    assert re.search(r"overlays\s+finished", log) and re.search(r"test\s+finished", log), log[-4000:]


def test_a_broken_overlay_fails_the_validate_job(checkout, penguins_python):
    overlay = checkout / "models" / PENGUINS / "deploy" / "overlays" / "dev" / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "resources:\n  - missing.yaml\n")
    git("commit", "--quiet", "-am", "break the dev overlay", cwd=checkout)
    done = run_pipeline(checkout, penguins_python, "validate")
    assert done.returncode != 0
    assert "missing.yaml" in done.stdout + done.stderr
