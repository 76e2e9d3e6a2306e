"""`modelgen upgrade`: new templates re-rendered over a model, hand edits kept by a 3-way merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gitops_support import Remote, cli, git

from modelgen.render.templates import template_version, templates_dir

PENGUINS = "penguin-species"
DEPLOYMENT = f"models/{PENGUINS}/deploy/base/deployment.yaml"
GRACE = "      terminationGracePeriodSeconds: 40\n"
READINESS = "            periodSeconds: 5\n"


pytestmark = pytest.mark.usefixtures("gitops_cache")


@pytest.fixture
def remote(tmp_path, capsys, penguins_manifest) -> Remote:
    """A GitOps repository with the penguins model merged into main, from the current templates."""
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    assert cli(capsys, "generate", penguins_manifest, "--gitops", remote.path)[0] == 0
    remote.merge(f"modelgen/{PENGUINS}-1.0.0", tmp_path / "work")
    return remote


@pytest.fixture
def new_templates(tmp_path, monkeypatch) -> Path:
    """A copy of the templates where a line of the Deployment changed and a file was added."""
    root = tmp_path / "templates"
    shutil.copytree(templates_dir(), root, ignore=shutil.ignore_patterns("__pycache__"))
    deployment = root / "common" / "{{cookiecutter.name}}" / "deploy" / "base" / "deployment.yaml"
    text = deployment.read_text()
    assert text.count(GRACE) == 1
    deployment.write_text(text.replace(GRACE, GRACE.replace("40", "45")))
    (root / "python-model" / "{{cookiecutter.name}}" / "RUNBOOK.md").write_text(
        "# Runbook of {{ cookiecutter.name }}\n"
    )
    monkeypatch.setenv("MODELGEN_TEMPLATES", str(root))
    return root


def hand_edit(remote: Remote, work: Path, old: str, new: str) -> None:
    text = remote.show("main", DEPLOYMENT)
    assert text.count(old) == 1, old
    remote.commit_on_main(work, {DEPLOYMENT: text.replace(old, new)}, "Tune the Deployment by hand")


def upgrade(capsys, remote: Remote, *args: str) -> tuple[int, str, str]:
    return cli(capsys, "upgrade", *args, "--gitops", remote.path, "--merge-request")


def upgrade_branch(remote: Remote) -> str:
    (branch,) = [b for b in remote.branches() if b.startswith("modelgen/upgrade-")]
    return branch


def test_upgrade_keeps_a_hand_edit_beside_a_template_change(remote, new_templates, capsys, tmp_path):
    old_version = json.loads(remote.show("main", f"models/{PENGUINS}/.modelgen.json"))["template_version"]
    hand_edit(remote, tmp_path / "edit", READINESS, READINESS.replace("5", "3"))
    code, out, err = upgrade(capsys, remote, "--all")
    assert code == 0, err
    assert f"upgraded: {PENGUINS}" in out
    branch = upgrade_branch(remote)
    deployment = remote.show(branch, DEPLOYMENT)
    assert GRACE.replace("40", "45") in deployment  # the template's change
    assert READINESS.replace("5", "3") in deployment and READINESS not in deployment  # the hand edit
    assert "<<<<<<<" not in deployment
    assert remote.show(branch, f"models/{PENGUINS}/RUNBOOK.md") == f"# Runbook of {PENGUINS}\n"
    # Only what the templates changed differs from main (plus the record and the template store).
    changed = git("diff", "--name-only", "main", branch, "--", "models", cwd=remote.path).split()
    assert sorted(changed) == sorted([DEPLOYMENT, f"models/{PENGUINS}/RUNBOOK.md", f"models/{PENGUINS}/.modelgen.json"])
    record = json.loads(remote.show(branch, f"models/{PENGUINS}/.modelgen.json"))
    new_version = template_version("python", new_templates)
    assert record["template_version"] == new_version != old_version
    stored = {p.split("/")[2] for p in remote.files(branch, ".modelgen")}
    assert stored == {f"python-model-{new_version}"}  # the old templates are no longer referenced
    options = remote.pushes()[-1]["options"]
    assert "merge_request.title=Upgrade 1 model(s) to modelgen 0.1.0 templates" in options
    assert "merge_request.label=template-upgrade" in options

    # Once merged, the same templates have nothing more to upgrade: no commit, no push.
    remote.merge(branch, tmp_path / "merge")
    pushes = len(remote.pushes())
    code, out, _ = upgrade(capsys, remote, "--all")
    assert code == 0 and "nothing to do" in out
    assert len(remote.pushes()) == pushes


def test_upgrade_reports_a_conflict_and_keeps_both_sides(remote, new_templates, capsys, tmp_path):
    hand_edit(remote, tmp_path / "edit", GRACE, GRACE.replace("40", "60"))
    code, out, err = upgrade(capsys, remote, PENGUINS)
    assert code == 3
    assert f"conflict: {DEPLOYMENT}: 1 conflicting change(s)" in err
    deployment = remote.show(upgrade_branch(remote), DEPLOYMENT)
    ours, theirs = GRACE.replace("40", "60"), GRACE.replace("40", "45")
    start, middle, end = deployment.index("<<<<<<< "), deployment.index("=======\n"), deployment.index(">>>>>>> ")
    assert start < deployment.index(ours) < middle < deployment.index(theirs) < end
    options = remote.pushes()[-1]["options"]
    assert "merge_request.title=Draft: Upgrade 1 model(s) to modelgen 0.1.0 templates" in options
    assert any(o.startswith("merge_request.description=") and DEPLOYMENT in o for o in options)


def test_upgrade_with_the_templates_it_was_generated_with_does_nothing(remote, capsys):
    pushes = len(remote.pushes())
    code, out, _ = upgrade(capsys, remote, "--all")
    assert code == 0 and "every model is up to date" in out
    assert len(remote.pushes()) == pushes


def test_upgrade_names_unknown_models_and_needs_names_or_all(remote, capsys):
    code, _, err = upgrade(capsys, remote, "nope")
    assert code == 2 and f"no model(s) nope on main (models: {PENGUINS})" in err
    code, _, err = upgrade(capsys, remote)
    assert code == 2 and "name the models to upgrade, or pass --all" in err
