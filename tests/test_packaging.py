"""The wheel carries the templates and schema: an installed modelgen renders what the checkout renders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import ROOT
from test_generate import MANIFEST

from modelgen.api import generate
from modelgen.gitops.scaffold import GitopsSettings, scaffold

pytestmark = pytest.mark.slow  # builds the wheel and installs it in a virtualenv


def test_installed_wheel_renders_byte_identical_projects(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path / "dist", ROOT],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("modelgen-*.whl"))
    # The drift report's, the manifest reference's and the catalog's templates are package data beside their
    # modules, not one of the force-included folders.
    names = zipfile.ZipFile(wheel).namelist()
    assert "modelgen/monitoring/templates/report.html.j2" in names
    assert "modelgen/manifest/templates/manifest.md.j2" in names and "modelgen/manifest/templates/example.yaml" in names
    assert "modelgen/catalog/templates/model.html.j2" in names and "modelgen/catalog/static/catalog.js" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    # pip byte-compiles the packaged templates on install; those caches must not leak into output.
    subprocess.run(
        [venv / "bin/python", "-m", "pip", "install", "--quiet", wheel], check=True, capture_output=True, timeout=600
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.yaml").write_text(MANIFEST)
    (model / "features.py").write_text("class Ratio:\n    pass\n")
    (model / "sample.json").write_text('[{"plan": "pro", "tenure_months": 3, "monthly_fee": null}]')

    run = subprocess.run(
        [venv / "bin/modelgen", "generate", model / "model.yaml", "-o", tmp_path / "installed"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    checkout = generate(model / "model.yaml", tmp_path / "checkout").path

    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    installed = tree(tmp_path / "installed" / "churn")
    assert installed == tree(checkout)
    assert "app/service.py" in installed

    # The GitOps scaffold (gitops/ and ci/) comes from the wheel too.
    remote = tmp_path / "gitops.git"
    run = subprocess.run(
        [venv / "bin/modelgen", "init-gitops", remote, "--repo-url", "https://gitlab.example.com/ml/gitops.git"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODELGEN_CACHE": str(tmp_path / "cache")},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    expected = scaffold(GitopsSettings("https://gitlab.example.com/ml/gitops.git"))
    for path, data in expected.items():
        shown = subprocess.run(["git", "-C", remote, "show", f"main:{path}"], capture_output=True, check=True)
        assert shown.stdout == data, path
