"""`modelgen generate`: complete, deterministic, idempotent, and all-or-nothing on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelgen.api import generate
from modelgen.errors import OutputError, RenderError
from modelgen.manifest import load
from modelgen.render import templates as render_module
from modelgen.render.output import write_project
from modelgen.render.templates import render

MODELGEN = [sys.executable, "-m", "modelgen"]

MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata:
  name: churn
  version: 2.1.0
  owner: data.scientist@example.com
  description: Will a customer leave?
spec:
  runtime: python
  task: classification
  artifact:
    uri: https://nexus.example.com/repository/models/churn/2.1.0/model.joblib
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    format: joblib
  requirements: [scikit-learn==1.9.1, pandas==3.1.1]
  code: [features.py]
  input:
    - {name: plan, type: string, categories: [basic, pro], strict: true}
    - {name: tenure_months, type: integer}
    - {name: monthly_fee, type: number, nullable: true}
  output: {type: probabilities, classes: ["no", "yes"]}
  sample: sample.json
  serving:
    workers: 3
    route: {host: churn.apps.example.com}
  environments:
    - dev
    - {name: prod, replicas: 4}
"""


@pytest.fixture
def manifest(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.yaml").write_text(MANIFEST)
    (folder / "features.py").write_text("class Ratio:\n    pass\n")
    (folder / "sample.json").write_text(json.dumps([{"plan": "pro", "tenure_months": 3, "monthly_fee": None}]))
    return folder / "model.yaml"


def test_project_has_every_part(manifest):
    files = render(load(manifest))
    for path in [
        "model.yaml",
        ".modelgen.json",
        "README.md",
        "requirements.txt",
        "Dockerfile",
        ".gitlab-ci.yml",
        "app/__main__.py",
        "app/service.py",
        "app/contract.json",
        "model_code/features.py",
        "tests/sample.json",
        "tests/test_service.py",
        "deploy/base/kustomization.yaml",
        "deploy/overlays/dev/kustomization.yaml",
        "deploy/overlays/prod/kustomization.yaml",
    ]:
        assert path in files, path
    assert files["model.yaml"] == manifest.read_bytes()  # verbatim, comments and all
    assert files["model_code/features.py"] == (manifest.parent / "features.py").read_bytes()


def test_contract_and_requirements_follow_the_manifest(manifest):
    files = render(load(manifest))
    contract = json.loads(files["app/contract.json"])
    assert contract["name"] == "churn"
    assert contract["workers"] == 3
    assert [c["name"] for c in contract["columns"]] == ["plan", "tenure_months", "monthly_fee"]
    assert contract["columns"][0]["strict"] is True
    assert contract["output"] == {"type": "probabilities", "classes": ["no", "yes"]}
    lines = [line for line in files["requirements.txt"].decode().splitlines() if line and not line.startswith("#")]
    assert lines[:2] == ["scikit-learn==1.9.1", "pandas==3.1.1"]
    assert "pandas==3.1.1" in lines and sum(line.startswith("pandas==") for line in lines) == 1
    assert all("==" in line for line in lines)  # everything pinned
    readme = files["README.md"].decode()
    assert "curl" in readme and "text/csv" in readme and "data.scientist@example.com" in readme


def test_python_sources_are_copied_not_rendered(manifest):
    files = render(load(manifest))
    template = render_module.templates_dir() / "python-model" / "{{cookiecutter.name}}" / "app" / "service.py"
    assert files["app/service.py"] == template.read_bytes()


def test_rendering_is_deterministic(manifest, tmp_path):
    first = render(load(manifest))
    second = render(load(manifest))
    assert first == second
    # The same manifest copied elsewhere renders to the same bytes: no absolute paths leak in.
    other = tmp_path / "elsewhere"
    other.mkdir()
    for name in ("model.yaml", "features.py", "sample.json"):
        (other / name).write_bytes((manifest.parent / name).read_bytes())
    assert render(load(other / "model.yaml")) == first


def test_second_run_changes_nothing(manifest, tmp_path):
    out = tmp_path / "out"
    first = generate(manifest, out)
    assert first.changed
    stamps = {p: p.stat().st_mtime_ns for p in first.path.rglob("*")}
    second = generate(manifest, out)
    assert not second.changed
    assert {p: p.stat().st_mtime_ns for p in first.path.rglob("*")} == stamps


def test_regeneration_removes_files_no_longer_rendered(manifest, tmp_path):
    out = tmp_path / "out"
    project = generate(manifest, out).path
    (project / "stale.txt").write_text("left over")
    assert generate(manifest, out).changed
    assert not (project / "stale.txt").exists()


def test_failed_render_leaves_the_folder_as_it_was(manifest, tmp_path, monkeypatch):
    out = tmp_path / "out"
    project = generate(manifest, out).path
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*_args, **_kwargs):
        raise RenderError("template exploded")

    monkeypatch.setattr(render_module, "_cookiecutter", broken)
    (manifest.parent / "model.yaml").write_text(MANIFEST.replace("2.1.0", "2.2.0"))
    with pytest.raises(RenderError):
        generate(manifest, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == [project.name]  # no staging folders left


def test_failed_write_leaves_the_folder_as_it_was(manifest, tmp_path):
    out = tmp_path / "out"
    project = generate(manifest, out).path
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    files = render(load(manifest))
    files["app/service.py"] = b"changed"
    files["deploy/base/kustomization.yaml/oops"] = b"a file below a file cannot be written"
    with pytest.raises(OutputError):
        write_project(files, project)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == [project.name]


def test_cli_generate_and_validate(manifest, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([*MODELGEN, "generate", manifest, "-o", out], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "written" in run.stdout
    again = subprocess.run([*MODELGEN, "generate", manifest, "-o", out], capture_output=True, text=True)
    assert "unchanged" in again.stdout
    valid = subprocess.run([*MODELGEN, "validate", manifest], capture_output=True, text=True)
    assert valid.returncode == 0 and "valid (churn 2.1.0" in valid.stdout


def test_cli_reports_a_broken_manifest_without_traceback(manifest, tmp_path):
    manifest.write_text(MANIFEST.replace("task: classification", "task: classify"))
    run = subprocess.run([*MODELGEN, "generate", manifest, "-o", tmp_path / "out"], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"{manifest}:10: spec.task:" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


R_MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata: {name: churn-r, version: 1.0.0, owner: data.scientist@example.com}
spec:
  runtime: r
  task: classification
  artifact: {uri: "https://nexus.example.com/repository/models/churn-r/1.0.0/model.rds", sha256: %s, format: rds}
  requirements: [caret==6.0-93, ranger==0.14.1]
  lockfile: %s
  input: [{name: tenure_months, type: integer}, {name: plan, type: string, nullable: true}]
  output: {type: probabilities, classes: ["no", "yes"]}
  sample: sample.json
"""


@pytest.mark.parametrize("template", ["common", "python-model", "r-model-packrat", "r-model-renv", "common-r"])
def test_in_memory_rendering_equals_cookiecutter_generate_files(manifest, tmp_path, template):
    """render's own pass over a template must write exactly what cookiecutter writes."""
    from cookiecutter.generate import generate_files

    if template.startswith(("r-model", "common-r")):
        lockfile = template.rsplit("-", 1)[1] if template.startswith("r-model") else "packrat"
        folder = tmp_path / "r"
        folder.mkdir()
        (folder / "model.yaml").write_text(R_MANIFEST % ("ab" * 32, lockfile))
        (folder / "sample.json").write_text('[{"tenure_months": 3, "plan": null}]')
        manifest = folder / "model.yaml"
        template = "r-model" if template.startswith("r-model") else "common"
    source = render_module.templates_dir() / template
    ctx = render_module.context(load(manifest))
    verbatim = json.loads((source / "cookiecutter.json").read_text()).get("_copy_without_render", [])
    project = generate_files(
        repo_dir=str(source),
        context={"cookiecutter": {**ctx, "_template": template, "_copy_without_render": verbatim}},
        output_dir=str(tmp_path / "cookiecutter"),
        accept_hooks=False,
    )
    expected = {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in Path(project).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert render_module._cookiecutter(source, ctx) == expected
