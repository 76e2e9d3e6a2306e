"""deploy/, the Dockerfile and the CI of a generated project, checked with the real tools.

Every overlay is built with ``kubectl kustomize``; core kinds pass ``kubernetes-validate
--strict``, OpenShift kinds the strict OpenShift 4.17 schemas, all of them checkov; what no
schema says (TLS termination, the image trigger, per-environment values) is asserted here.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import yaml
from support import schema_folder

import modelgen
from modelgen.manifest import load
from modelgen.monitoring.drift import profile
from modelgen.monitoring.reference import profile_columns
from modelgen.render.output import write_project
from modelgen.render.templates import render

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

NAME = "churn-risk"
SHA256 = "ab" * 32
ARTIFACT_URI = f"https://nexus.example.com/repository/models/{NAME}/2.3.1/model.joblib"

MANIFEST = f"""\
apiVersion: modelgen/v1
kind: Model
metadata:
  name: {NAME}
  version: 2.3.1
  owner: jane.doe@example.com
  labels: {{team: retention, cost-center: "4711"}}
spec:
  runtime: python
  task: classification
  artifact:
    uri: {ARTIFACT_URI}
    sha256: {SHA256}
    format: joblib
    secret: nexus-models
  requirements: [scikit-learn==1.5.2]
  input:
    - {{name: tenure_months, type: integer}}
    - {{name: plan, type: string, nullable: true, categories: [basic, pro]}}
  output: {{type: probabilities, classes: ["no", "yes"]}}
  sample: sample.json
  serving:
    workers: 3
    timeoutSeconds: 30
    maxRequestBytes: 2097152
    replicas: 3
    autoscaling: {{min: 3, max: 12, cpu: 60}}
    resources: {{cpu: "2", memory: 3Gi}}
    route: {{host: {NAME}.apps.example.com}}
    modelCache: {{claim: model-cache, maxAgeDays: 14}}
  environments:
    - name: dev
      replicas: 1
      autoscaling: {{min: 1, max: 2}}
      resources: {{cpu: 500m, memory: 1Gi}}
    - name: staging
      host: {NAME}.apps.staging.example.com
    - prod
  monitoring:
    reference: reference.csv
    sampleRate: 0.2
    schedule: "30 5 * * *"
    window: 48h
    logSize: 5Gi
    thresholds: {{psi: 0.25, missingChange: 0.05}}
    notify: {{email: [jane.doe@example.com, ml-team@example.com], smtp: "smtp.example.com:587"}}
  training:
    script: train.py
    data: s3://data/churn/2026-11.parquet
    hyperparameters: {{max_depth: 6, learning_rate: 0.1}}
    resources: {{cpu: "4", memory: 8Gi}}
"""
# Everything optional left out: default serving, environments dev and prod, no route host.
MINIMAL_MANIFEST = f"""\
apiVersion: modelgen/v1
kind: Model
metadata: {{name: {NAME}, version: 0.1.0, owner: jane.doe@example.com}}
spec:
  runtime: python
  task: classification
  artifact: {{uri: "{ARTIFACT_URI}", sha256: {SHA256}, format: joblib}}
  requirements: [scikit-learn==1.5.2]
  input: [{{name: tenure_months, type: integer}}, {{name: plan, type: string, nullable: true}}]
  output: {{type: label, classes: ["no", "yes"]}}
  sample: sample.json
"""
SAMPLE = [{"tenure_months": 12, "plan": "pro"}, {"tenure_months": 1, "plan": None}]

# What each environment must get, written out rather than derived from the manifest code.
EXPECTED = {
    "dev": {"replicas": 1, "hpa": (1, 2, 60), "cpu": "500m", "memory": "1Gi", "host": None},
    "staging": {
        "replicas": 3,
        "hpa": (3, 12, 60),
        "cpu": "2",
        "memory": "3Gi",
        "host": f"{NAME}.apps.staging.example.com",
    },
    "prod": {"replicas": 3, "hpa": (3, 12, 60), "cpu": "2", "memory": "3Gi", "host": f"{NAME}.apps.example.com"},
}
ENVS = list(EXPECTED)
CORE_KINDS = {
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "CronJob",  # the drift job, its input log volume and the reference profile
    "PersistentVolumeClaim",
    "ConfigMap",
}
OPENSHIFT_SCHEMAS = {
    "Route": "route-route-v1.json",
    "BuildConfig": "buildconfig-build-v1.json",
    "ImageStream": "imagestream-image-v1.json",
    "Deployment": "deployment-apps-v1.json",
}
# Each skip carries its reason in the Deployment's annotations; nothing else may be skipped.
ALLOWED_CHECKOV_SKIPS = {"CKV_K8S_14", "CKV_K8S_35", "CKV_K8S_40", "CKV_K8S_43"}


# ---------------------------------------------------------------------------- fixtures


def _generate(manifest_text: str, sample: list[dict[str, Any]], where: Path) -> Path:
    src = where / "src"
    src.mkdir()
    (src / "model.yaml").write_text(manifest_text, "utf-8")
    (src / "sample.json").write_text(json.dumps(sample), "utf-8")
    (src / "train.py").write_text("print('trained')\n", "utf-8")
    (src / "train.R").write_text("cat('trained')\n", "utf-8")
    manifest = load(src / "model.yaml")
    project = where / "out" / manifest.name
    write_project(render(manifest, profile=_profile(manifest) if manifest.monitoring else None), project)
    return project


def _profile(manifest) -> dict[str, Any]:
    # No model here to score a reference with: a profile of made-up rows and labels has the same shape.
    frame = pd.DataFrame(
        {"tenure_months": [1, 5, 12, 30, 60] * 20, "plan": ["basic", "pro", None, "pro", "basic"] * 20}
    )
    return profile(frame, profile_columns(manifest, frame, "made-up rows"), ["no", "yes", "no", "no", "yes"] * 20)


def _kustomize(overlay: Path) -> list[dict[str, Any]]:
    done = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _run(*args: str | Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


# The same model as an R one: deploy/ and the CI come from the same common template.
R_MANIFEST = (
    MANIFEST.replace("runtime: python", "runtime: r")
    .replace("model.joblib", "model.rds")
    .replace("format: joblib", "format: rds")
    .replace("[scikit-learn==1.5.2]", "[caret==6.0-93, ranger==0.14.1]")
    .replace("script: train.py", "script: train.R")
)


@pytest.fixture(scope="module", params=["python", "r"])
def project(request, tmp_path_factory) -> Path:
    text = MANIFEST if request.param == "python" else R_MANIFEST
    return _generate(text, SAMPLE, tmp_path_factory.mktemp(f"deploy-{request.param}"))


@pytest.fixture(scope="module")
def rendered(project) -> dict[str, list[dict[str, Any]]]:
    """Every overlay, built once: environment → its objects."""
    return {env: _kustomize(project / "deploy" / "overlays" / env) for env in ENVS}


@pytest.fixture(scope="module")
def object_files(rendered, tmp_path_factory) -> Path:
    """The kustomize output, one object per file (``<env>/<kind>.yaml``), for the file-based tools."""
    root = tmp_path_factory.mktemp("objects")
    for env, docs in rendered.items():
        (root / env).mkdir()
        for doc in docs:
            (root / env / f"{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc), "utf-8")
    return root


@pytest.fixture(scope="module")
def checkov_report(object_files) -> tuple[int, dict[str, Any], str]:
    done = _run(
        BIN / "checkov",
        "-d",
        object_files,
        "--framework",
        "kubernetes",
        "--compact",
        "--skip-download",
        "-o",
        "json",  # without --quiet, so the report lists passed and skipped checks too
    )
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stdout + done.stderr


@pytest.fixture(scope="module")
def openshift_schemas() -> Path:
    return schema_folder("openshift-4.17-strict")


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["initContainers"] + spec["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# ---------------------------------------------------------------------------- schemas and tools


@pytest.mark.parametrize("env", ENVS)
def test_overlay_builds_every_object_into_its_namespace(rendered, env):
    docs = rendered[env]
    openshift, monitoring = {"Route", "BuildConfig", "ImageStream"}, {"ServiceMonitor", "PrometheusRule"}
    assert sorted(d["kind"] for d in docs) == sorted(CORE_KINDS | openshift | monitoring)
    names = {d["metadata"]["name"] for d in docs}
    profile_map = one(docs, "ConfigMap")["metadata"]["name"]
    assert re.fullmatch(f"{NAME}-monitoring-[a-z0-9]{{10}}", profile_map)  # hashed: a new profile rolls the job
    assert names == {NAME, f"{NAME}-drift", f"{NAME}-inputs", profile_map}
    assert {d["metadata"]["namespace"] for d in docs} == {f"models-{env}"}


def test_core_kinds_pass_kubernetes_validate_strict(object_files):
    files = sorted(p for p in object_files.rglob("*.yaml") if yaml.safe_load(p.read_text())["kind"] in CORE_KINDS)
    assert len(files) == len(CORE_KINDS) * len(ENVS)
    done = _run(BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", *files)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if " passed for " not in line]
    assert done.returncode == 0, "\n".join(problems)
    assert done.stdout.count("passed") == len(files), done.stdout + done.stderr


@pytest.mark.parametrize("kind", sorted(OPENSHIFT_SCHEMAS))
def test_objects_pass_the_strict_openshift_schemas(rendered, openshift_schemas, kind):
    schema = json.loads((openshift_schemas / OPENSHIFT_SCHEMAS[kind]).read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
    for env, docs in rendered.items():
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(one(docs, kind))]
        assert not errors, f"{kind} in {env}:\n" + "\n".join(errors)


def test_strict_schema_catches_a_misspelt_field(rendered, openshift_schemas):
    # The check above means something only if the schema rejects what it does not know.
    schema = json.loads((openshift_schemas / OPENSHIFT_SCHEMAS["Route"]).read_text("utf-8"))
    route = copy.deepcopy(one(rendered["prod"], "Route"))
    route["spec"]["tls"]["terminaton"] = "edge"
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
    assert list(validator.iter_errors(route))


@pytest.mark.slow  # checkov takes seconds to start, once per runtime
def test_checkov_passes_with_only_the_justified_skips(checkov_report):
    code, report, output = checkov_report
    assert report, f"checkov wrote no JSON report (exit {code}):\n{output[-3000:]}"
    results = report["results"]
    failed = [(r["check_id"], r["check_name"], r["resource"]) for r in results["failed_checks"]]
    assert not failed, "\n".join(map(str, failed))
    assert code == 0, output[-3000:]
    # It really scanned each environment's Deployment.
    scanned = {r["resource"] for r in results["passed_checks"]}
    assert {f"Deployment.models-{env}.{NAME}" for env in ENVS} <= scanned
    skipped = {r["check_id"] for r in results["skipped_checks"]}
    assert skipped == ALLOWED_CHECKOV_SKIPS
    # A skip without a reason is reported as "No comment provided".
    assert all(
        r["check_result"].get("suppress_comment", "") not in ("", "No comment provided")
        for r in results["skipped_checks"]
    )


# The project's own pipeline, and the trigger job the GitOps repository's pipeline includes.
@pytest.mark.parametrize("ci_file", [".gitlab-ci.yml", ".gitlab-ci-parent.yml"])
def test_gitlab_ci_passes_the_gitlab_schema(project, ci_file):
    done = _run(
        BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.gitlab-ci",
        "--data-transform",
        "gitlab-ci",
        project / ci_file,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # checkov
def test_dockerfile_passes_hadolint_and_checkov(project):
    dockerfile = project / "Dockerfile"
    done = _run(BIN / "hadolint", "--no-color", "--failure-threshold", "error", dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _run(
        BIN / "checkov", "-f", dockerfile, "--framework", "dockerfile", "--compact", "--quiet", "--skip-download"
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------- what schemas cannot say


@pytest.mark.parametrize("env", ENVS)
def test_environment_values(rendered, env):
    docs, want = rendered[env], EXPECTED[env]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == want["replicas"]
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    got = (hpa["minReplicas"], hpa["maxReplicas"], hpa["metrics"][0]["resource"]["target"]["averageUtilization"])
    assert got == want["hpa"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    resources = containers(deployment)["model"]["resources"]
    quantity = {"cpu": want["cpu"], "memory": want["memory"]}
    assert resources == {"requests": quantity, "limits": quantity}
    assert one(docs, "Route")["spec"].get("host") == want["host"]


def test_environments_differ_where_configured(rendered):
    replicas = {env: one(docs, "Deployment")["spec"]["replicas"] for env, docs in rendered.items()}
    hosts = {env: one(docs, "Route")["spec"].get("host") for env, docs in rendered.items()}
    assert replicas == {"dev": 1, "staging": 3, "prod": 3}
    assert len(set(hosts.values())) == 3


@pytest.mark.parametrize("env", ENVS)
def test_route_is_edge_tls_with_redirect_to_the_service(rendered, env):
    route = one(rendered[env], "Route")["spec"]
    assert route["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert route["to"]["kind"] == "Service" and route["to"]["name"] == NAME
    assert route["port"] == {"targetPort": "http"}


def test_image_trigger_names_both_containers(rendered):
    deployment = one(rendered["prod"], "Deployment")
    triggers = json.loads(deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
    assert {t["from"]["kind"] for t in triggers} == {"ImageStreamTag"}
    assert {t["from"]["name"] for t in triggers} == {f"{NAME}:latest"}
    assert sorted(t["fieldPath"] for t in triggers) == [
        'spec.template.spec.containers[?(@.name=="model")].image',
        'spec.template.spec.initContainers[?(@.name=="fetch-artifact")].image',
    ]
    # The names in the trigger are the containers' names, and both run the built image.
    assert {name: c["image"] for name, c in containers(deployment).items()} == {
        "fetch-artifact": f"{NAME}:latest",
        "model": f"{NAME}:latest",
    }


def test_image_stream_and_build_config(rendered):
    docs = rendered["prod"]
    assert one(docs, "ImageStream")["spec"]["lookupPolicy"] == {"local": True}
    build = one(docs, "BuildConfig")["spec"]
    assert build["strategy"]["type"] == "Docker"
    assert build["source"]["type"] == "Git"
    assert build["source"]["contextDir"] == f"models/{NAME}"
    assert build["source"]["git"]["uri"].startswith("https://")
    assert build["output"]["to"] == {"kind": "ImageStreamTag", "name": f"{NAME}:latest"}
    assert {"type": "ConfigChange"} in build["triggers"]


@pytest.fixture(scope="module")
def runtime(project) -> str:
    return json.loads((project / ".modelgen.json").read_text())["inputs"]["runtime"]


def test_init_container_fetches_and_verifies_the_artifact(rendered, runtime):
    deployment = one(rendered["prod"], "Deployment")
    init = containers(deployment)["fetch-artifact"]
    command = {"python": ["python", "-m", "app.fetch_artifact"], "r": ["Rscript", "app/fetch_artifact.R"]}
    assert init["command"] == command[runtime]
    env = env_of(init)
    extension = "joblib" if runtime == "python" else "rds"
    assert env["ARTIFACT_URI"] == ARTIFACT_URI.replace("joblib", extension)
    assert env["ARTIFACT_SHA256"] == SHA256
    assert env["MODEL_PATH"] == f"/model/model.{extension}"
    for var, key in (("REGISTRY_USERNAME", "username"), ("REGISTRY_PASSWORD", "password")):
        assert env[var] == {"secretKeyRef": {"name": "nexus-models", "key": key, "optional": True}}
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    # Through the shared cache: a ReadWriteMany claim, mounted by the init container only.
    assert (env["MODEL_CACHE_DIR"], env["MODEL_CACHE_MAX_AGE_DAYS"]) == ("/cache", "14")
    assert mounts == {"/model": False, "/tmp": False, "/cache": False}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "model-cache"}
    assert "/cache" not in {m["mountPath"] for m in containers(deployment)["model"]["volumeMounts"]}


def test_model_container_env_ports_probes(rendered, runtime):
    deployment = one(rendered["prod"], "Deployment")
    model = containers(deployment)["model"]
    assert "command" not in model  # the image's CMD: python -m app, or bash app/start.sh
    expected = {
        "PORT": "8080",
        "MODEL_PATH": "/model/model.joblib" if runtime == "python" else "/model/model.rds",
        "MODEL_SHA256": SHA256,
        "MODELGEN_WORKERS": "3",
        "MAX_REQUEST_BYTES": "2097152",
        "TIMEOUT_SECONDS": "30",
    }
    if runtime == "python":  # gunicorn's workers add up their metrics there; the R workers use /tmp
        expected["PROMETHEUS_MULTIPROC_DIR"] = "/tmp/metrics"
    # spec.monitoring: a fifth of the requests to the input log on the shared volume.
    expected["MODELGEN_INPUT_LOG"] = "/var/lib/modelgen/inputs"
    expected["MODELGEN_LOG_SAMPLE_RATE"] = "0.2"
    assert env_of(model) == expected
    assert model["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert model[probe]["httpGet"] == {"path": "/ping", "port": "http"}, probe
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in model["volumeMounts"]}
    assert mounts == {"/model": True, "/tmp": False, "/var/lib/modelgen/inputs": False}
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    cache = [{"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}}]
    assert volumes == [
        {"name": "model", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "inputs", "persistentVolumeClaim": {"claimName": f"{NAME}-inputs"}},
        *cache,
    ]
    service = one(rendered["prod"], "Service")["spec"]
    assert service["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]


def test_pods_fit_openshift_restricted_v2(rendered):
    deployment = one(rendered["prod"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 30
    for name, container in containers(deployment).items():
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        assert requests == limits and set(limits) == {"cpu", "memory"}, name
    # OpenShift assigns the UID: a fixed one would be refused by restricted-v2.
    assert "runAsUser" not in json.dumps(deployment)
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_labels_select_by_name_only_and_carry_version_and_manifest_labels(rendered):
    docs = rendered["prod"]
    selector = {"app.kubernetes.io/name": NAME}
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["selector"] == {"matchLabels": selector}  # immutable: never changes
    # The drift job's pods carry the same kustomize labels: traffic and disruption budgets go
    # to the serving pods only.
    servers = {**selector, "modelgen.dev/pod": "server"}
    assert servers.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    drift_pod = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert drift_pod["modelgen.dev/pod"] == "drift" and selector.items() <= drift_pod.items()
    assert one(docs, "Service")["spec"]["selector"] == servers
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"] == {"matchLabels": servers}
    assert one(docs, "NetworkPolicy")["spec"]["podSelector"] == {"matchLabels": selector}
    want = {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/part-of": "modelgen",
        "app.kubernetes.io/version": "2.3.1",
        "team": "retention",
        "cost-center": "4711",
    }
    for doc in [*docs, deployment["spec"]["template"]]:
        labels = doc["metadata"]["labels"]
        assert want.items() <= labels.items(), doc.get("kind", "pod template")


def test_defaults_give_short_overlays_and_no_worker_override(tmp_path):
    project = _generate(MINIMAL_MANIFEST, SAMPLE, tmp_path)
    for env in ("dev", "prod"):  # the manifest's default environments
        overlay = project / "deploy" / "overlays" / env / "kustomization.yaml"
        body = [line for line in overlay.read_text().splitlines() if line and not line.startswith("#")]
        assert body == [
            "apiVersion: kustomize.config.k8s.io/v1beta1",
            "kind: Kustomization",
            f"namespace: models-{env}",
            "resources:",
            "  - ../../base",
        ]
        docs = _kustomize(overlay.parent)
        deployment = one(docs, "Deployment")
        model = containers(deployment)["model"]
        assert "MODELGEN_WORKERS" not in env_of(model)
        assert env_of(containers(deployment)["fetch-artifact"])["REGISTRY_USERNAME"]["secretKeyRef"]["name"] == (
            "model-registry"
        )
        assert "host" not in one(docs, "Route")["spec"]


# ---------------------------------------------------------------------------- CI and image


def test_gitlab_ci_jobs(project, runtime):
    ci = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
    assert ci["stages"] == ["test", "build"]
    assert ci["variables"]["MODEL_DIR"] == f"models/{NAME}"
    test = ci["test"]
    assert test["stage"] == "test"
    extension = "joblib" if runtime == "python" else "rds"
    assert test["variables"]["ARTIFACT_URI"] == ARTIFACT_URI.replace("joblib", extension)
    assert test["variables"]["ARTIFACT_SHA256"] == SHA256
    assert test["variables"]["MODEL_PATH"] == f"model.{extension}"
    if runtime == "python":
        assert test["image"] == "python:3.11-slim-bookworm"
        assert test["script"][-2:] == ["python -m app.fetch_artifact", "python -m pytest tests/"]
    else:
        assert test["image"] == "rocker/r-ver:4.2.2"
        assert test["script"][-2:] == ["Rscript app/fetch_artifact.R", "Rscript tests/smoke.R"]
        assert "packrat::restore" in test["script"][0]
    (overlays,) = ci["overlays"]["script"]  # every overlay there is, whichever environments it has
    assert "for overlay in deploy/overlays/*/; do" in overlays and 'kubectl kustomize "$overlay"' in overlays
    build = ci["build"]
    assert build["stage"] == "build"
    assert build["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    assert "parallel" not in build and 'namespace="models-dev"' in build["script"][-1]  # built once, in dev
    assert f"oc start-build {NAME} " in build["script"][-1]
    assert all("only" not in job for job in ci.values() if isinstance(job, dict))


def test_dockerfile_runs_as_any_uid_with_one_thread_per_worker(project, runtime):
    lines = [line.strip() for line in (project / "Dockerfile").read_text().splitlines()]
    base = {"python": "FROM python:3.11-slim-bookworm", "r": "FROM rocker/r-ver:4.2.2"}[runtime]
    assert lines[[i for i, line in enumerate(lines) if line.startswith("FROM ")][0]] == base
    assert "USER 1001" in lines
    assert lines[-1] == {"python": 'CMD ["python", "-m", "app"]', "r": 'CMD ["bash", "app/start.sh"]'}[runtime]
    assert "EXPOSE 8080" in lines
    text = (project / "Dockerfile").read_text()
    for setting in ("OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "HOME=/tmp"):
        assert setting in text
    restore = {
        "python": "pip install --no-cache-dir -r requirements.txt",
        "r": 'packrat::restore(project = ".", prompt = FALSE, restart = FALSE, overwrite.dirty = TRUE)',
    }
    assert restore[runtime] in text
    assert "chmod -R g=u /opt/app" in text
    ignored = (project / ".dockerignore").read_text().splitlines()
    artifact = "model.joblib" if runtime == "python" else "model.rds"
    assert {artifact, "deploy/", ".git"} <= set(ignored)


def test_argo_cd_sync_waves_put_the_image_stream_and_build_before_the_deployment(rendered):
    waves = {}
    for env_objects in rendered.values():
        for obj in env_objects:
            annotations = obj["metadata"].get("annotations", {})
            waves[obj["kind"]] = int(annotations.get("argocd.argoproj.io/sync-wave", "0"))
    assert waves["ImageStream"] < waves["BuildConfig"] < waves["Deployment"] == 0


# ---------------------------------------------------------------------------- monitoring objects


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_monitoring_objects_pass_the_prometheus_operator_schemas(rendered, kind):
    folder = schema_folder("crds/monitoring.coreos.com")
    schema = json.loads((folder / f"{kind.lower()}_v1.json").read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
    for env, docs in rendered.items():
        errors = [
            f"{env}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(one(docs, kind))
        ]
        assert not errors, "\n".join(errors)


def test_monitoring_watches_the_service_with_metrics_the_service_exports(rendered, project, runtime):
    docs = rendered["prod"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == "models-prod"
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": NAME}
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    spikes = ["ModelInputMissingSpike"] * 2  # one per input feature
    assert [r["alert"] for r in rules] == ["ModelServerErrors", "ModelRejectsManyRequests", "ModelSlow", *spikes]
    # The reference profile had 20% missing plans and no missing tenure; the margin is missingChange 0.05.
    limits = {r["labels"]["feature"]: float(r["expr"].rsplit(">", 1)[1]) for r in rules if "feature" in r["labels"]}
    assert limits == {"plan": 0.25, "tenure_months": 0.05}
    # Every metric an alert reads is one the service of this runtime writes.
    sources = {
        "python": [project / "app" / "metrics.py"],
        "r": [project / "app" / "service.R", project / "app" / "monitoring.R"],
    }
    exported = "".join(path.read_text() for path in sources[runtime])
    for rule in rules:
        assert f'job="{NAME}"' in rule["expr"]
        for metric in re.findall(r"(modelgen_\w+?)(?:_bucket)?\{", rule["expr"]):
            assert metric in exported, f"{rule['alert']} reads {metric}, which the {runtime} service does not export"
    assert "> 7.5" in next(r for r in rules if r["alert"] == "ModelSlow")["expr"]  # timeoutSeconds 30 / 4


def test_drift_job_reads_the_input_log_with_the_manifest_settings(rendered, project):
    docs = rendered["prod"]
    cronjob = one(docs, "CronJob")
    assert cronjob["spec"]["schedule"] == "30 5 * * *" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"registry.example.com/platform/modelgen-ci:{modelgen.__version__}"
    assert container["command"] == ["modelgen"]
    args = container["args"]
    assert args[:2] == ["monitor", NAME]
    assert "--window=48h" in args and "--smtp=smtp.example.com:587" in args
    assert [a for a in args if a.startswith("--mail-to=")] == [
        "--mail-to=jane.doe@example.com",
        "--mail-to=ml-team@example.com",
    ]
    assert json.loads(next(a for a in args if a.startswith("--thresholds=")).split("=", 1)[1]) == {
        "psi": 0.25,
        "missing_change": 0.05,
    }
    # The profile comes from the kustomize-generated ConfigMap, the rows from the service's volume.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["profile"]["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    assert volumes["inputs"]["persistentVolumeClaim"]["claimName"] == f"{NAME}-inputs"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"--profile={mounts['profile']}/profile.json" in args and f"--live={mounts['inputs']}" in args
    deployment = one(docs, "Deployment")
    served = {m["name"]: m["mountPath"] for m in containers(deployment)["model"]["volumeMounts"]}
    assert served["inputs"] == mounts["inputs"] == env_of(containers(deployment)["model"])["MODELGEN_INPUT_LOG"]
    claim = one(docs, "PersistentVolumeClaim")["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["resources"]["requests"]["storage"] == "5Gi"
    assert json.loads(one(docs, "ConfigMap")["data"]["profile.json"]) == json.loads(
        (project / "deploy/base/monitoring/profile.json").read_text()
    )


@pytest.fixture(scope="module")
def training_job(project) -> Path:
    return project / "training" / "job.yaml"


@pytest.mark.slow  # checkov
def test_training_job_passes_kubernetes_validate_and_checkov(training_job, tmp_path):
    # kubectl create names the Job from generateName; kubernetes-validate wants a name.
    job = yaml.safe_load(training_job.read_text())
    job["metadata"]["name"] = job["metadata"].pop("generateName") + "x1y2z"
    named = tmp_path / "job.yaml"
    named.write_text(yaml.safe_dump(job))
    done = _run(BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", named)
    assert done.returncode == 0 and "passed" in done.stdout, done.stdout + done.stderr
    done = _run(BIN / "checkov", "-f", training_job, "--framework", "kubernetes", "--compact", "--skip-download")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Passed checks: " in done.stdout and "Failed checks: 0" in done.stdout


def test_training_job_runs_the_script_with_the_contract_then_publishes(training_job, runtime):
    job = yaml.safe_load(training_job.read_text())
    assert job["metadata"]["generateName"] == f"{NAME}-retrain-"
    pod = job["spec"]["template"]["spec"]
    (train,) = pod["initContainers"]
    (publish,) = pod["containers"]
    assert train["image"] == f"{NAME}:latest"  # the model's own image: its requirements and the script
    assert train["workingDir"] == "/opt/app"  # where the Dockerfile puts the project
    script = " ".join(train["command"])
    interpreter, path = ("python", "training/train.py") if runtime == "python" else ("Rscript", "training/train.R")
    assert f"exec {interpreter} {path} --hyperparameters /work/hyperparameters.json" in script
    assert '--data "$DATA" --output /work/output' in script
    env = env_of(train)
    assert json.loads(env["HYPERPARAMETERS"]) == {"max_depth": 6, "learning_rate": 0.1}
    assert env["DATA"] == "s3://data/churn/2026-11.parquet"
    assert train["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert publish["args"] == ["retrain", NAME, "--from-output", "/work/output", "--merge-request"]
    assert env_of(publish)["MODELGEN_GITOPS"] == {"secretKeyRef": {"name": "modelgen-retrain", "key": "gitops"}}
