"""A converted model's generated project: the Deployment fetches and verifies both files, the model
container is told which engine runs, the CI job fetches both and runs the parity test, the
requirements pin onnxruntime; validated with kubectl kustomize, kubernetes-validate and GitLab's
CI schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelgen.manifest import load
from modelgen.render.output import write_project
from modelgen.render.templates import render

BIN = Path(sys.executable).parent
SHA, ONNX_SHA = "ab" * 32, "cd" * 32
URI = "https://nexus.example.com/repository/models/churn/1.0.0/model.joblib"
ONNX_URI = "https://nexus.example.com/repository/models/churn/1.0.0/model.onnx"

MANIFEST = f"""\
apiVersion: modelgen/v1
kind: Model
metadata: {{name: churn, version: 1.0.0, owner: jane.doe@example.com}}
spec:
  runtime: python
  task: classification
  artifact:
    uri: {URI}
    sha256: {SHA}
    format: joblib
    onnx:
      uri: {ONNX_URI}
      sha256: {ONNX_SHA}
      output: probabilities
      precision: double
      nullToken: "\\u2400modelgen:null\\u2400"
      converters: {{skl2onnx: 1.20.0, onnxruntime: 1.32.0}}
      parity: {{rows: 376, maxDifference: 2.5e-59, flips: 0}}
      speed: {{nativeOneRowMs: 6.8, onnxOneRowMs: 0.09, nativeRowsPerSecond: 75000, onnxRowsPerSecond: 185000}}
  requirements: [scikit-learn==1.9.1]
  input:
    - {{name: tenure (months), type: integer}}
    - {{name: plan, type: string, nullable: true, categories: [basic, pro]}}
  output: {{type: probabilities, classes: ["no", "yes"]}}
  sample: sample.json
  serving: {{engine: {{engine}}}}
"""


@pytest.fixture(scope="module", params=["onnx", "auto"])
def project(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp(f"onnx-{request.param}")
    (folder / "model.yaml").write_text(MANIFEST.replace("{engine}", request.param), "utf-8")
    (folder / "sample.json").write_text(json.dumps([{"tenure (months)": 3, "plan": None}]), "utf-8")
    manifest = load(folder / "model.yaml")
    assert manifest.engine == "onnx"  # auto with a converted model serves it
    write_project(render(manifest), folder / "out")
    return folder / "out"


def test_the_deployment_fetches_both_files_and_names_the_engine(project):
    done = subprocess.run(["kubectl", "kustomize", project / "deploy/overlays/prod"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (deployment,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    fetch_env = {e["name"]: e.get("value") for e in spec["initContainers"][0]["env"]}
    assert (fetch_env["ONNX_URI"], fetch_env["ONNX_SHA256"], fetch_env["ONNX_PATH"]) == (
        ONNX_URI,
        ONNX_SHA,
        "/model/model.onnx",
    )
    assert (fetch_env["ARTIFACT_URI"], fetch_env["ARTIFACT_SHA256"]) == (URI, SHA)
    model_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert (model_env["MODELGEN_ENGINE"], model_env["ONNX_PATH"], model_env["ONNX_SHA256"]) == (
        "onnx",
        "/model/model.onnx",
        ONNX_SHA,
    )
    file = project / "deployment.yaml"
    file.write_text(yaml.safe_dump(deployment), "utf-8")
    valid = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", file], capture_output=True, text=True
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr


def test_the_ci_job_fetches_both_and_the_tests_hold_the_onnx_model_to_the_artifact(project):
    ci = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
    variables = ci["test"]["variables"]
    assert (variables["ONNX_URI"], variables["ONNX_SHA256"], variables["ONNX_PATH"]) == (
        ONNX_URI,
        ONNX_SHA,
        "model.onnx",
    )
    assert (project / "tests/test_onnx_parity.py").is_file()
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"]
        + [project / ".gitlab-ci.yml"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "onnxruntime==1.32.0" in (project / "requirements.txt").read_text().splitlines()
    contract = json.loads((project / "app/contract.json").read_text())
    assert contract["engine"] == "onnx" and contract["onnx"]["tolerance"] == 1e-06
    assert "| engine | ONNX (onnxruntime 1.32.0)" in (project / "README.md").read_text()


def test_a_native_model_gets_none_of_it(tmp_path):
    text = MANIFEST.replace("{engine}", "native")
    text = text[: text.index("    onnx:")] + text[text.index("  requirements:") :]
    (tmp_path / "model.yaml").write_text(text, "utf-8")
    (tmp_path / "sample.json").write_text(json.dumps([{"tenure (months)": 3, "plan": None}]), "utf-8")
    files = render(load(tmp_path / "model.yaml"))
    assert "tests/test_onnx_parity.py" not in files
    assert b"ONNX_URI" not in files["deploy/base/deployment.yaml"] and b"ONNX_URI" not in files[".gitlab-ci.yml"]
    assert b"onnxruntime" not in files["requirements.txt"]
    assert json.loads(files["app/contract.json"])["onnx"] is None
