"""`init-gitops`, first step: the argocd/ files of the GitOps repository, and the settings behind them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import jsonschema
import pytest
import yaml
from support import schema_folder

from modelgen.api import generate
from modelgen.errors import ModelgenError
from modelgen.gitops.scaffold import ALLOWED_KEYS, GitopsSettings, load_settings, parse_settings, scaffold
from modelgen.render.templates import templates_dir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPO_URL = "https://gitlab.example.com/platform/models.git"
CUSTOM = GitopsSettings(
    repo_url="ssh://git@git.corp.example:2222/ml/gitops.git",
    target_revision="release",
    argocd_namespace="argocd",
    project="ml-models",
    environments=("dev", "staging", "prod"),
    cluster="https://api.prod.example.com:6443",
    namespace_prefix="ml-",
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def documents(files: dict[str, bytes], path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(files[path]) if d is not None]


def applicationset(files: dict[str, bytes]) -> dict:
    (doc,) = documents(files, "argocd/applicationset.yaml")
    return doc


def appproject(files: dict[str, bytes]) -> dict:
    (doc,) = documents(files, "argocd/appproject.yaml")
    return doc


@pytest.fixture(params=["default", "custom"])
def settings(request) -> GitopsSettings:
    return GitopsSettings(REPO_URL) if request.param == "default" else CUSTOM


# --- what is rendered -------------------------------------------------------------------------


def test_scaffold_renders_the_argocd_files_pipeline_readme_and_settings(settings):
    files = scaffold(settings)
    assert sorted(files) == [
        ".gitlab-ci.yml",
        "README.md",
        "argocd/applicationset.yaml",
        "argocd/appproject.yaml",
        "gitops.yaml",
        "webhook/deployment.yaml",
        "webhook/kustomization.yaml",
        "webhook/networkpolicy.yaml",
        "webhook/route.yaml",
        "webhook/service.yaml",
    ]
    for path, content in files.items():
        text = content.decode("utf-8")
        assert text.endswith("\n") and not text.endswith("\n\n"), path
        assert "{%" not in text and "{{ " not in text, f"jinja left in {path}"


def test_every_argocd_object_validates_against_its_schema(settings):
    schemas = schema_folder("crds/argoproj.io")
    by_kind = {
        "AppProject": json.loads((schemas / "appproject_v1alpha1.json").read_text()),
        "ApplicationSet": json.loads((schemas / "applicationset_v1alpha1.json").read_text()),
    }
    files = scaffold(settings)
    seen = []
    for path in sorted(p for p in files if p.startswith("argocd/")):
        for doc in documents(files, path):
            schema = by_kind[doc["kind"]]
            validator = jsonschema.validators.validator_for(schema)(schema)
            errors = [f"{path}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
            assert not errors, "\n".join(errors)
            seen.append(doc["kind"])
    assert sorted(seen) == ["AppProject", "ApplicationSet"]


def test_applicationset_key_fields(settings):
    appset = applicationset(scaffold(settings))
    assert appset["metadata"] == {"name": settings.project, "namespace": settings.argocd_namespace}
    spec = appset["spec"]
    assert spec["goTemplate"] is True
    assert spec["goTemplateOptions"] == ["missingkey=error"]
    (generator,) = spec["generators"]
    assert generator["git"]["repoURL"] == settings.repo_url
    assert generator["git"]["revision"] == settings.target_revision
    assert generator["git"]["directories"] == [{"path": "models/*/deploy/overlays/*"}]

    template = spec["template"]
    # The literal Go templates, not jinja's rendering of them.
    assert template["metadata"]["name"] == "{{index .path.segments 1}}-{{.path.basename}}"
    app = template["spec"]
    assert app["project"] == settings.project
    assert app["source"] == {
        "repoURL": settings.repo_url,
        "targetRevision": settings.target_revision,
        "path": "{{.path.path}}",
    }
    assert app["destination"] == {
        "server": settings.cluster,
        "namespace": settings.namespace_prefix + "{{.path.basename}}",
    }
    sync = app["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True}
    assert "RespectIgnoreDifferences=true" in sync["syncOptions"]
    assert "CreateNamespace=true" not in sync["syncOptions"]
    (ignored,) = app["ignoreDifferences"]
    assert (ignored["group"], ignored["kind"]) == ("apps", "Deployment")
    assert ignored["jsonPointers"] == ["/spec/replicas"]
    assert sorted(ignored["jqPathExpressions"]) == [
        ".spec.template.spec.containers[].image",
        ".spec.template.spec.initContainers[].image",
    ]


def test_appproject_allows_this_repo_the_environment_namespaces_and_the_base_kinds(settings):
    project = appproject(scaffold(settings))
    assert project["metadata"] == {"name": settings.project, "namespace": settings.argocd_namespace}
    spec = project["spec"]
    assert spec["sourceRepos"] == [settings.repo_url]
    assert spec["destinations"] == [
        {"server": settings.cluster, "namespace": settings.namespace_prefix + env} for env in settings.environments
    ]
    assert spec["clusterResourceWhitelist"] == []
    kinds = {item["kind"] for item in spec["namespaceResourceWhitelist"]}
    assert kinds == base_kinds()


def base_kinds() -> set[str]:
    """The kinds the common template's deploy/base/ contains: the project must allow exactly those."""
    base = templates_dir() / "common" / "{{cookiecutter.name}}" / "deploy" / "base"
    found = set()
    for path in base.glob("*.yaml"):
        match = re.search(r"^kind: (\w+)$", path.read_text("utf-8"), re.MULTILINE)
        if match and match.group(1) != "Kustomization":
            found.add(match.group(1))
    return found


def test_scaffold_is_deterministic():
    assert scaffold(CUSTOM) == scaffold(CUSTOM)
    assert scaffold(GitopsSettings(REPO_URL)) == scaffold(GitopsSettings(REPO_URL))


def test_readme_names_every_environment_namespace():
    readme = scaffold(CUSTOM)["README.md"].decode()
    for namespace in ("ml-dev", "ml-staging", "ml-prod"):
        assert f"| {namespace} |" in readme


def test_gitops_yaml_reads_back_as_the_same_settings(settings):
    text = scaffold(settings)["gitops.yaml"].decode()
    assert parse_settings(text, "gitops.yaml") == settings


def test_parent_pipeline_passes_the_gitlab_schema(settings, tmp_path):
    ci = tmp_path / ".gitlab-ci.yml"
    ci.write_bytes(scaffold(settings)[".gitlab-ci.yml"])
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci", ci],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pipeline = yaml.safe_load(ci.read_text())
    assert pipeline["include"] == [
        {"local": "models/*/.gitlab-ci-parent.yml", "rules": [{"exists": ["models/*/.gitlab-ci-parent.yml"]}]}
    ]
    assert pipeline["variables"]["MODELGEN_CI_IMAGE"] == settings.ci_image
    assert pipeline["validate"]["image"] == "$MODELGEN_CI_IMAGE"


@pytest.mark.slow  # checkov
def test_ci_image_dockerfile_passes_hadolint_and_checkov():
    dockerfile = ROOT / "ci" / "image" / "Dockerfile"
    for cmd in (
        [BIN / "hadolint", "--no-color", "--failure-threshold", "error", dockerfile],
        [BIN / "checkov", "-f", dockerfile, "--framework", "dockerfile", "--compact", "--quiet", "--skip-download"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# --- settings -----------------------------------------------------------------------------------


def test_defaults():
    s = load_settings(None, repo_url=REPO_URL)
    assert s == GitopsSettings(REPO_URL)
    assert (s.target_revision, s.argocd_namespace, s.project) == ("main", "openshift-gitops", "models")
    assert s.environments == ("dev", "prod") and s.namespaces == ("models-dev", "models-prod")
    assert s.cluster == "https://kubernetes.default.svc"


def test_gitops_yaml_is_read_and_options_win(tmp_path):
    config = tmp_path / "gitops.yaml"
    config.write_text(
        f"repo_url: {REPO_URL}\nargocd_namespace: argocd\nenvironments: [dev, staging, prod]\ntarget_revision: v1\n"
    )
    s = load_settings(config, target_revision="main", project=None)
    assert s == GitopsSettings(
        REPO_URL, argocd_namespace="argocd", environments=("dev", "staging", "prod"), target_revision="main"
    )


def test_unknown_key_in_gitops_yaml_names_file_key_and_allowed_keys(tmp_path):
    config = tmp_path / "gitops.yaml"
    config.write_text(f"repo_url: {REPO_URL}\nargocd_ns: argocd\n")
    with pytest.raises(ModelgenError) as err:
        load_settings(config)
    message = str(err.value)
    assert str(config) in message and "argocd_ns" in message
    assert all(key in message for key in ALLOWED_KEYS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("argocd_namespace: argocd\n", "no repo_url"),
        (f"repo_url: {REPO_URL}\nenvironments: [dev, Prod]\n", "not a valid namespace"),
        (f"repo_url: {REPO_URL}\nenvironments: []\n", "environments must be a non-empty list"),
        (f"repo_url: {REPO_URL}\nenvironments: [dev, dev]\n", "twice"),
        ("- repo_url\n", "expected a mapping"),
        ("repo_url: [\n", "not valid YAML"),
    ],
)
def test_bad_gitops_yaml(tmp_path, text, expected):
    config = tmp_path / "gitops.yaml"
    config.write_text(text)
    with pytest.raises(ModelgenError, match=expected):
        load_settings(config)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ModelgenError, match="cannot read"):
        load_settings(tmp_path / "gitops.yaml", repo_url=REPO_URL)


# --- the directory pattern over a real repository ----------------------------------------------

MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata:
  name: {name}
  version: 1.0.0
  owner: data.scientist@example.com
spec:
  runtime: python
  task: classification
  artifact:
    uri: https://nexus.example.com/repository/models/{name}/1.0.0/model.joblib
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    format: joblib
  requirements: [scikit-learn==1.9.1]
  input:
    - {{name: tenure_months, type: integer}}
  output: {{type: label, classes: ["no", "yes"]}}
  sample: sample.json
  environments: {environments}
"""


def write_manifest(folder: Path, name: str, environments: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text(MANIFEST.format(name=name, environments=json.dumps(environments)))
    (folder / "sample.json").write_text(json.dumps([{"tenure_months": 3}]))
    return folder / "model.yaml"


def go_path_match_dirs(root: Path, pattern: str) -> list[str]:
    """The directories of ``root`` whose relative path matches ``pattern`` as Go's path.Match does.

    Argo CD's git directory generator walks every directory of the repository and keeps those
    whose path matches; path.Match's ``*`` never crosses a ``/``, so the pattern and the path
    must have the same number of segments and match segment by segment. Hidden folders (.git)
    are not walked.
    """
    wanted = pattern.split("/")
    found = []
    for directory in root.rglob("*"):
        rel = directory.relative_to(root)
        if not directory.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        if len(rel.parts) == len(wanted) and all(map(fnmatchcase, rel.parts, wanted)):
            found.append(rel.as_posix())
    return sorted(found)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_directory_pattern_matches_exactly_the_overlays(tmp_path):
    settings = GitopsSettings(REPO_URL, environments=("dev", "staging", "prod"))
    repo = tmp_path / "repo"
    models = repo / "models"
    inputs = tmp_path / "inputs"
    generate(write_manifest(inputs / "churn", "churn", ["dev", "prod"]), models)
    generate(write_manifest(inputs / "fraud-score", "fraud-score", ["dev", "staging"]), models)
    # Folders and files at other depths that the pattern must not pick up.
    (models / "x" / "deploy" / "base").mkdir(parents=True)
    (models / "readme.txt").write_text("not a model\n")
    (models / "churn" / "deploy" / "overlays" / "dev" / "extra").mkdir()
    (models / "fraud-score" / "deploy" / "overlays" / "notes.md").write_text("a file, not an overlay\n")
    (repo / "argocd").mkdir()
    (repo / "deploy" / "overlays" / "dev").mkdir(parents=True)

    (entry,) = applicationset(scaffold(settings))["spec"]["generators"][0]["git"]["directories"]
    matched = go_path_match_dirs(repo, entry["path"])
    assert matched == [
        "models/churn/deploy/overlays/dev",
        "models/churn/deploy/overlays/prod",
        "models/fraud-score/deploy/overlays/dev",
        "models/fraud-score/deploy/overlays/staging",
    ]

    # What the ApplicationSet's template makes of each path: {{index .path.segments 1}}-{{.path.basename}}.
    names = [f"{path.split('/')[1]}-{path.split('/')[-1]}" for path in matched]
    assert len(set(names)) == len(names)
    assert all(DNS_LABEL.match(name) for name in names), names
    namespaces = {settings.namespace_prefix + path.split("/")[-1] for path in matched}
    assert namespaces <= set(settings.namespaces), "an overlay's environment has no AppProject destination"

    for path in matched:
        built = subprocess.run(
            ["kubectl", "kustomize", str(repo / path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert built.returncode == 0, f"{path}: {built.stderr}"
        objects = [d for d in yaml.safe_load_all(built.stdout) if d]
        env = path.split("/")[-1]
        # The overlay's namespace must be the one the Application deploys to.
        assert {o["metadata"]["namespace"] for o in objects} == {settings.namespace_prefix + env}
        assert_sync_waves(path, objects)
    if not waves_set(objects):
        pytest.skip("the base sets no sync waves on ImageStream/BuildConfig yet: their order is not checked")


def assert_sync_waves(path: str, objects: list[dict]) -> None:
    """ImageStream and BuildConfig come before the rest; checked only where the base sets waves."""
    if not waves_set(objects):
        return
    waves = wave_by_kind(objects)
    assert waves["ImageStream"] < waves["BuildConfig"] < waves["Deployment"], f"{path}: {waves}"
    assert all(
        wave >= waves["Deployment"] for kind, wave in waves.items() if kind not in ("ImageStream", "BuildConfig")
    )


def wave_by_kind(objects: list[dict]) -> dict[str, int]:
    return {
        o["kind"]: int(o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0")) for o in objects
    }


def waves_set(objects: list[dict]) -> bool:
    waves = wave_by_kind(objects)
    return waves.get("ImageStream", 0) != 0 or waves.get("BuildConfig", 0) != 0


# --- the Nexus webhook's deployment (webhook/) ---------------------------------------------------


CORE = ("deployment", "service", "networkpolicy")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
@pytest.mark.slow  # checkov
def test_webhook_deployment_renders_and_passes_the_schemas_and_checkov(tmp_path):
    settings = GitopsSettings(REPO_URL, gitlab_url="https://gitlab.example.com")
    for path, data in scaffold(settings).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    built = subprocess.run(["kubectl", "kustomize", tmp_path / "webhook"], capture_output=True, text=True, check=True)
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert sorted(o["kind"] for o in objects) == ["Deployment", "NetworkPolicy", "Route", "Service"]
    assert {o["metadata"]["namespace"] for o in objects} == {"modelgen"}
    out = tmp_path / "rendered"
    out.mkdir()
    for o in objects:
        (out / f"{o['kind'].lower()}.yaml").write_text(yaml.safe_dump(o))
    done = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", *(out / f"{k}.yaml" for k in CORE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    openshift = schema_folder("openshift-4.17-strict")
    for kind, schema_file in (("route", "route-route-v1.json"), ("deployment", "deployment-apps-v1.json")):
        schema = json.loads((openshift / schema_file).read_text())
        doc = yaml.safe_load((out / f"{kind}.yaml").read_text())
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, errors
    done = subprocess.run(
        [BIN / "checkov", "-d", out, "--framework", "kubernetes", "--compact", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MODELGEN_GITOPS"] == REPO_URL and env["GITLAB_URL"] == "https://gitlab.example.com"
    assert env["MODELGEN_REGISTRY"] == settings.registry_url
    assert env["MODELGEN_WEBHOOK_SECRET"] == {"secretKeyRef": {"name": "modelgen-webhook", "key": "webhook-secret"}}
    assert container["image"] == settings.ci_image
    assert container["command"][:3] == ["modelgen", "webhook", "serve"]
    assert "GITLAB_URL" not in scaffold(GitopsSettings(REPO_URL))["webhook/deployment.yaml"].decode()
