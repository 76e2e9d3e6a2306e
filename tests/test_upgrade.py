"""`modelgen upgrade`: new templates re-rendered over a model, hand edits kept by a 3-way merge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gitops_support import Remote, cli, git
from support import Service

from modelgen.gitops.repo import GitopsRepo
from modelgen.manifest import load
from modelgen.registry.backends import fetch
from modelgen.render.pipeline import project_files
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


# The last commit whose templates predate the one contract (two app/contract.json, app/openapi.py,
# R's documents rendered apart): repositories generated by it must upgrade cleanly.
PRE_CONTRACT = "d040520"
R_MODEL = "churn-r"
R_MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata: {name: churn-r, version: 1.0.0, owner: data.scientist@example.com}
spec:
  runtime: r
  task: classification
  artifact: {uri: "https://nexus.example.com/repository/models/churn-r/1.0.0/model.rds", sha256: %s, format: rds}
  requirements: [caret==6.0-93, ranger==0.14.1]
  input: [{name: tenure_months, type: integer}, {name: plan, type: string, nullable: true, categories: [a, b]}]
  output: {type: probabilities, classes: ["no", "yes"]}
  sample: sample.json
"""


def _old_modelgen(tmp_path: Path) -> Path:
    """modelgen and its templates as of PRE_CONTRACT, unpacked from this repository's history."""
    root = tmp_path / "old-modelgen"
    root.mkdir()
    checkout = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(checkout), "archive", PRE_CONTRACT, "generator", "cookiecutters"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, f"commit {PRE_CONTRACT} is not in {checkout}: {archive.stderr.decode()}"
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def _run_old(old: Path, cache: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(old / "generator"), "MODELGEN_CACHE": str(cache)}
    env.pop("MODELGEN_TEMPLATES", None)
    done = subprocess.run(
        [sys.executable, "-m", "modelgen", *map(str, args)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr


def test_a_repository_of_the_templates_before_the_one_contract_upgrades_cleanly(penguins_manifest, capsys, tmp_path):
    old = _old_modelgen(tmp_path)
    r_folder = tmp_path / "churn-r"
    r_folder.mkdir()
    (r_folder / "model.yaml").write_text(R_MANIFEST % ("ab" * 32))
    (r_folder / "sample.json").write_text('[{"tenure_months": 3, "plan": null}]')
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0  # the scaffold is not what changed
    for manifest, name in ((penguins_manifest, PENGUINS), (r_folder / "model.yaml", R_MODEL)):
        _run_old(old, tmp_path / "old-cache", "generate", manifest, "--gitops", remote.path)
        remote.merge(f"modelgen/{name}-1.0.0", tmp_path / f"merge-{name}")
    assert remote.show("main", f"models/{PENGUINS}/app/openapi.py")  # the old layout indeed
    assert json.loads(remote.show("main", f"models/{R_MODEL}/app/schema.json"))["input"]["required"]
    hand_edit(remote, tmp_path / "edit", READINESS, READINESS.replace("5", "3"))

    code, out, err = upgrade(capsys, remote, "--all")
    assert code == 0, err
    assert "conflict" not in err and f"upgraded: {R_MODEL}, {PENGUINS}" in out
    branch = upgrade_branch(remote)
    upgraded = {p: remote.show(branch, p) for p in remote.files(branch, "models")}
    # Each model is now exactly what the current templates generate, plus the hand edit.
    settings = GitopsRepo.open(str(remote.path)).settings
    for manifest, name in ((penguins_manifest, PENGUINS), (r_folder / "model.yaml", R_MODEL)):
        files = project_files(load(manifest), gitops_repo_url=settings.repo_url, tools_image=settings.ci_image)
        fresh = {f"models/{name}/{p}": d.decode() for p, d in files.items()}
        if name == PENGUINS:
            fresh[DEPLOYMENT] = fresh[DEPLOYMENT].replace(READINESS, READINESS.replace("5", "3"))
        assert {p: d for p, d in upgraded.items() if p.startswith(f"models/{name}/")} == fresh
    assert f"models/{PENGUINS}/app/openapi.py" not in upgraded
    assert f"models/{R_MODEL}/app/openapi.json" not in upgraded and f"models/{R_MODEL}/app/schema.json" not in upgraded
    stored = {p.split("/")[2] for p in remote.files(branch, ".modelgen")}
    assert stored == {f"python-model-{template_version('python')}", f"r-model-{template_version('r')}"}

    # The upgraded Python project serves: its documents and bins from the one contract.
    project = tmp_path / "upgraded"
    for path, text in upgraded.items():
        if path.startswith(f"models/{PENGUINS}/"):
            target = project / path.removeprefix(f"models/{PENGUINS}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    contract = json.loads((project / "app/contract.json").read_text())
    model = tmp_path / "model.joblib"
    model.write_bytes(fetch(contract["artifact"]["uri"], contract["artifact"]["sha256"]))
    service = Service(project, Path(sys.executable), model, env={"MODELGEN_WORKERS": "1"}).start()
    try:
        sample = json.loads((project / "tests/sample.json").read_text())
        answer = service.post_json(sample)
        assert answer.status == 200 and len(answer.json()["predictions"]) == len(sample)
        assert service.request("GET", "/openapi.json").json() == contract["openapi"]
        assert service.request("GET", "/schema").json()["input"]["required"] == [c["name"] for c in contract["columns"]]
        metrics = service.request("GET", "/metrics").body.decode()
        numeric = next(f for f in contract["monitoring"]["features"] if f["kind"] == "numeric")
        counted = [line for line in metrics.splitlines() if line.startswith("modelgen_feature_values_total{")]
        assert any(f'feature="{numeric["name"]}"' in line and f'bin="{numeric["bins"][0]}"' in line for line in counted)
    finally:
        service.stop()
