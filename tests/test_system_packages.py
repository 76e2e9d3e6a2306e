"""spec.systemPackages: what the model's libraries need from the operating system, installed in
the image and in the CI test job; LightGBM's OpenMP runtime added without being asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelgen.manifest import load
from modelgen.render.templates import render

BIN = Path(sys.executable).parent

MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata: {{name: churn, version: 1.0.0, owner: jane.doe@example.com}}
spec:
  runtime: {runtime}
  task: regression
  artifact: {{uri: "https://nexus.example.com/repository/models/churn/1.0.0/model.{ext}", sha256: {sha}, format: {ext}}}
  requirements: {requirements}
{extra}  input: [{{name: tenure (months), type: number, nullable: true}}]
  output: {{type: value}}
  sample: sample.json
"""


def project(tmp_path: Path, runtime: str, requirements: str, extra: str = "") -> dict[str, str]:
    ext = "joblib" if runtime == "python" else "rds"
    text = MANIFEST.format(runtime=runtime, ext=ext, sha="ab" * 32, requirements=requirements, extra=extra)
    (tmp_path / "model.yaml").write_text(text, "utf-8")
    (tmp_path / "sample.json").write_text(json.dumps([{"tenure (months)": 3.5}]), "utf-8")
    files = render(load(tmp_path / "model.yaml"))
    return {path: files[path].decode("utf-8") for path in ("Dockerfile", ".gitlab-ci.yml")}


def apt_install(dockerfile: str) -> list[str]:
    """The packages the Dockerfile's apt-get install names."""
    line = next(line for line in dockerfile.splitlines() if "apt-get install" in line)
    return line.split("--no-install-recommends", 1)[1].split("\\")[0].split()


def ci_apt_step(ci: str) -> str | None:
    steps = [s for s in yaml.safe_load(ci)["test"]["script"] if s.startswith("dpkg -s ")]
    assert len(steps) <= 1
    return steps[0] if steps else None


def test_lightgbm_brings_libgomp1_beside_the_declared_packages(tmp_path):
    files = project(
        tmp_path, "python", "[scikit-learn==1.9.1, LightGBM==4.7.0]", "  systemPackages: [zlib1g, libgomp1]\n"
    )
    assert apt_install(files["Dockerfile"]) == ["nginx-light", "libgomp1", "zlib1g"]  # once each, sorted
    step = ci_apt_step(files[".gitlab-ci.yml"])
    assert step.startswith("dpkg -s libgomp1 zlib1g >/dev/null 2>&1 || {")
    assert "apt-get install -y -qq --no-install-recommends libgomp1 zlib1g" in step
    # The step as the CI shell runs it: both packages are on this machine, so nothing is installed.
    done = subprocess.run(["bash", "-ec", step.replace("apt-get", "false")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_nothing_extra_without_a_library_that_needs_it(tmp_path):
    files = project(tmp_path, "python", "[scikit-learn==1.9.1, xgboost==3.2.0]")  # xgboost brings its own OpenMP
    assert apt_install(files["Dockerfile"]) == ["nginx-light"]
    assert ci_apt_step(files[".gitlab-ci.yml"]) is None


def test_r_image_and_ci_install_the_declared_packages(tmp_path):
    files = project(tmp_path, "r", "[]", "  systemPackages: [libxml2]\n")
    assert apt_install(files["Dockerfile"])[-1] == "libxml2"
    assert apt_install(files["Dockerfile"])[0] == "nginx-light"
    assert "--no-install-recommends libxml2" in ci_apt_step(files[".gitlab-ci.yml"])


@pytest.mark.parametrize("runtime", ["python", "r"])
def test_dockerfile_and_ci_with_system_packages_pass_hadolint_and_gitlab_schema(tmp_path, runtime):
    requirements = "[lightgbm==4.7.0]" if runtime == "python" else "[ranger==0.14.1]"
    files = project(tmp_path, runtime, requirements, "  systemPackages: [libpq5]\n")
    (tmp_path / "Dockerfile").write_text(files["Dockerfile"], "utf-8")
    (tmp_path / "ci.yml").write_text(files[".gitlab-ci.yml"], "utf-8")
    done = subprocess.run(
        [BIN / "hadolint", "--no-color", "--failure-threshold", "error", tmp_path / "Dockerfile"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"]
        + [tmp_path / "ci.yml"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
