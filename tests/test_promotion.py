"""Environments promoted one by one, a canary beside the stable release, and rollback: real git
remotes, every overlay rendered by ``kubectl kustomize`` and validated (kubernetes-validate, the
OpenShift schemas, checkov)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import joblib
import jsonschema
import pytest
import yaml
from gitops_support import Remote, cli, git, variant
from support import schema_folder

from modelgen.manifest import load

pytestmark = pytest.mark.usefixtures("gitops_cache")

BIN = Path(sys.executable).parent
NAME = "penguin-species"
DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64
OPENSHIFT = {
    "Route": "route-route-v1.json",
    "ImageStream": "imagestream-image-v1.json",
    "Deployment": "deployment-apps-v1.json",
}


@pytest.fixture
def remote(tmp_path, capsys) -> Remote:
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path, "--environments", "dev,staging,prod")[0] == 0
    return remote


@pytest.fixture
def versions(penguins_manifest, tmp_path) -> dict[str, Path]:
    """The penguins example as 1.0.0, 1.0.1 and 1.1.0 (the same model, other artifact bytes each),
    deployed to dev, staging and prod."""
    manifest = load(penguins_manifest)
    old_uri, old_sha = manifest.artifact.uri, manifest.artifact.sha256
    envs = {"  environments: [dev, prod]\n": "  environments: [dev, staging, prod]\n"}
    out = {"1.0.0": variant(penguins_manifest, tmp_path / "v1.0.0", envs)}
    for i, version in enumerate(("1.0.1", "1.1.0")):
        artifact = tmp_path / "registry" / NAME / version / "model.joblib"
        artifact.parent.mkdir(parents=True)
        joblib.dump(joblib.load(url2pathname(urlsplit(old_uri).path)), artifact, compress=i + 1)
        sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
        out[version] = variant(
            penguins_manifest,
            tmp_path / f"v{version}",
            {**envs, "version: 1.0.0": f"version: {version}", old_uri: artifact.as_uri(), old_sha: sha},
        )
    return out


def ship(capsys, remote: Remote, manifest: Path, work: Path) -> None:
    """generate --gitops, and the merge request merged."""
    code, _, err = cli(capsys, "generate", manifest, "--gitops", remote.path)
    assert code == 0, err
    m = load(manifest)
    remote.merge(f"modelgen/{m.name}-{m.version}", work)


def run(capsys, remote: Remote, *args: str) -> tuple[int, str, str]:
    return cli(capsys, *args, "--gitops", remote.path, "--merge-request")


def merged(remote: Remote, branch: str, work: Path) -> None:
    remote.merge(branch, work)


def rendered(remote: Remote, env: str, work: Path) -> list[dict]:
    if work.exists():
        subprocess.run(["rm", "-rf", work], check=True)
    git("clone", "--quiet", str(remote.path), str(work))
    done = subprocess.run(
        ["kubectl", "kustomize", work / "models" / NAME / "deploy" / "overlays" / env], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def env_of(deployment: dict, container: str = "fetch-artifact") -> dict:
    spec = deployment["spec"]["template"]["spec"]
    (found,) = [c for c in spec["initContainers"] + spec["containers"] if c["name"] == container]
    return {e["name"]: e.get("value") for e in found["env"]}


def sha_of(manifest: Path) -> str:
    return load(manifest).artifact.sha256


def validate(docs: list[dict], where: Path) -> None:
    """kubernetes-validate --strict for core kinds, the OpenShift schemas for theirs, checkov for all."""
    folder = schema_folder("openshift-4.17-strict")
    where.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        if doc["kind"] in OPENSHIFT:
            schema = json.loads((folder / OPENSHIFT[doc["kind"]]).read_text())
            validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
            errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
            assert not errors, f"{doc['kind']} {doc['metadata']['name']}: {errors}"
        (where / f"{i:02d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc))
    core = [p for p in sorted(where.glob("*.yaml")) if yaml.safe_load(p.read_text())["kind"] not in OPENSHIFT or
            yaml.safe_load(p.read_text())["kind"] == "Deployment"]  # fmt: skip
    done = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", *core], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [BIN / "checkov", "-d", where, "--framework", "kubernetes", "--compact", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # generates, promotes and renders several versions
def test_a_model_moves_to_prod_only_by_promotion(remote, versions, capsys, tmp_path):
    ship(capsys, remote, versions["1.0.0"], tmp_path / "w1")
    folder = f"models/{NAME}/deploy/overlays"
    # A new model deploys to the first environment only: the later ones wait for a promotion.
    assert sorted({p.split("/")[4] for p in remote.files("main", folder)}) == ["dev"]

    # Promoting to prod skips staging: refused, unless forced.
    code, _, err = run(capsys, remote, "promote", NAME, "--to", "prod", "--image", DIGEST_1)
    assert code == 2 and "staging does not run penguin-species yet: promote to staging first" in err, err
    code, out, err = run(capsys, remote, "promote", NAME, "--to", "staging", "--image", DIGEST_1)
    assert code == 0, err
    branch = f"modelgen/promote-{NAME}-staging-1.0.0"
    # The merge request changes only staging's overlay and adds the release it runs.
    changed = git("diff", "--name-only", "main", branch, cwd=remote.path).split()
    assert sorted({p.split("/")[3] if "/releases/" in p else p.split("/")[4] for p in changed}) == [
        "releases",
        "staging",
    ], changed
    assert all(p.startswith((f"{folder}/staging/", f"models/{NAME}/deploy/releases/1.0.0/")) for p in changed)
    options = remote.pushes()[-1]["options"]
    assert f"merge_request.title=Promote {NAME} 1.0.0 to staging (first in staging)" in options
    merged(remote, branch, tmp_path / "w2")
    assert run(capsys, remote, "promote", NAME, "--to", "prod")[0] == 0  # the digest comes from staging
    merged(remote, f"modelgen/promote-{NAME}-prod-1.0.0", tmp_path / "w3")

    # 1.0.1 merged: dev runs it, staging and prod still run 1.0.0 with 1.0.0's image.
    ship(capsys, remote, versions["1.0.1"], tmp_path / "w4")
    dev, prod = (rendered(remote, env, tmp_path / f"render-{env}") for env in ("dev", "prod"))
    (dev_deployment,) = by_kind(dev, "Deployment")
    (prod_deployment,) = by_kind(prod, "Deployment")
    assert env_of(dev_deployment)["ARTIFACT_SHA256"] == sha_of(versions["1.0.1"])
    assert env_of(prod_deployment)["ARTIFACT_SHA256"] == sha_of(versions["1.0.0"])
    assert prod_deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"
    (stream,) = by_kind(prod, "ImageStream")
    assert stream["spec"]["tags"] == [
        {
            "name": "1.0.0",
            "from": {"kind": "ImageStreamImage", "namespace": "models-dev", "name": f"{NAME}@{DIGEST_1}"},
            "referencePolicy": {"type": "Local"},
        }
    ]
    assert not by_kind(prod, "BuildConfig") and by_kind(dev, "BuildConfig")  # prod never builds
    triggers = json.loads(prod_deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
    assert {t["from"]["name"] for t in triggers} == {f"{NAME}:1.0.0"}
    assert {c["image"] for c in prod_deployment["spec"]["template"]["spec"]["containers"]} == {f"{NAME}:1.0.0"}
    validate(prod, tmp_path / "objects-prod")
    # list says what runs where: dev the target branch's 1.0.1, the later ones 1.0.0.
    _, out, _ = cli(capsys, "list", "--gitops", remote.path)
    (row,) = [line.split() for line in out.splitlines()[1:] if line.split()[6] == "merged"]
    assert row[:2] == [NAME, "1.0.1"] and row[4] == "dev,staging:1.0.0,prod:1.0.0"

    # Promoting 1.0.1 to prod while staging runs 1.0.0: refused; then the exact diff of a promotion.
    code, _, err = run(capsys, remote, "promote", NAME, "--to", "prod", "--version", "1.0.1", "--image", DIGEST_2)
    assert code == 2 and "staging runs penguin-species 1.0.0, not 1.0.1" in err
    assert run(capsys, remote, "promote", NAME, "--to", "staging", "--image", DIGEST_2)[0] == 0
    diff = git("diff", "main", f"modelgen/promote-{NAME}-staging-1.0.1", "--", f"{folder}/staging/release.json",
               cwd=remote.path)  # fmt: skip
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert removed == [f'"image": "{DIGEST_1}",', f'"sha256": "{sha_of(versions["1.0.0"])}",', '"version": "1.0.0"']
    assert added == [f'"image": "{DIGEST_2}",', f'"sha256": "{sha_of(versions["1.0.1"])}",', '"version": "1.0.1"']


@pytest.mark.slow  # generates, promotes, runs a canary and rolls back
def test_a_canary_splits_the_route_and_rollback_returns_the_exact_bytes(remote, versions, capsys, tmp_path):
    for i, version in enumerate(("1.0.0", "1.0.1")):
        ship(capsys, remote, versions[version], tmp_path / f"s{i}")
        if version == "1.0.0":
            for env in ("staging", "prod"):
                assert run(capsys, remote, "promote", NAME, "--to", env, "--image", DIGEST_1)[0] == 0
                merged(remote, f"modelgen/promote-{NAME}-{env}-1.0.0", tmp_path / f"p{env}")
    before = {p: remote.show("main", p) for p in remote.files("main", f"models/{NAME}/deploy/overlays/prod")}

    code, _, err = run(capsys, remote, "canary", NAME, "1.0.1", "--env", "prod", "--weight", "10", "--image", DIGEST_2)
    assert code == 0, err
    merged(remote, f"modelgen/canary-{NAME}-prod-1.0.1-10", tmp_path / "c")
    prod = rendered(remote, "prod", tmp_path / "render")
    deployments = {d["metadata"]["name"]: d for d in by_kind(prod, "Deployment")}
    assert sorted(deployments) == [NAME, f"{NAME}-canary"]
    assert env_of(deployments[NAME])["ARTIFACT_SHA256"] == sha_of(versions["1.0.0"])
    assert env_of(deployments[f"{NAME}-canary"])["ARTIFACT_SHA256"] == sha_of(versions["1.0.1"])
    # Each Deployment selects its own pods, and so do their Services, PDBs and NetworkPolicies.
    selectors = {
        name: d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for name, d in deployments.items()
    }
    assert selectors == {NAME: NAME, f"{NAME}-canary": f"{NAME}-canary"}
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"):
        assert sorted(o["metadata"]["name"] for o in by_kind(prod, kind)) == [NAME, f"{NAME}-canary"], kind
    canary = {o["kind"]: o for o in prod if o["metadata"]["name"] == f"{NAME}-canary"}
    assert canary["Service"]["spec"]["selector"]["app.kubernetes.io/name"] == f"{NAME}-canary"
    assert (
        canary["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == f"{NAME}-canary"
    )
    assert canary["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == f"{NAME}-canary"
    assert canary["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == f"{NAME}-canary"
    assert (
        canary["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 1 and canary["Deployment"]["spec"]["replicas"] == 1
    )
    (route,) = by_kind(prod, "Route")
    assert route["spec"]["to"]["weight"] + route["spec"]["alternateBackends"][0]["weight"] == 100
    assert route["spec"]["alternateBackends"] == [{"kind": "Service", "name": f"{NAME}-canary", "weight": 10}]
    validate(prod, tmp_path / "objects-canary")
    _, out, _ = cli(capsys, "list", "--gitops", remote.path)
    assert "dev,staging:1.0.0,prod:1.0.0+1.0.1@10%" in out.split()

    # Rollback: prod's overlay back to its bytes before the canary, and no release left unused.
    code, _, err = run(capsys, remote, "rollback", NAME, "--env", "prod")
    assert code == 0, err
    branch = f"modelgen/rollback-{NAME}-prod-1.0.0"
    after = {p: remote.show(branch, p) for p in remote.files(branch, f"models/{NAME}/deploy/overlays/prod")}
    assert after == before
    releases = {p.split("/")[4] for p in remote.files(branch, f"models/{NAME}/deploy/releases")}
    assert releases == {"1.0.0"}

    # Promote completes a canary: 1.0.1 is prod's, the canary objects go.
    code, _, err = run(capsys, remote, "promote", NAME, "--to", "prod", "--force")
    assert code == 0, err
    completed = f"modelgen/promote-{NAME}-prod-1.0.1"
    release = json.loads(remote.show(completed, f"models/{NAME}/deploy/overlays/prod/release.json"))
    assert (release["version"], release["image"], release["canary"]) == ("1.0.1", DIGEST_2, None)
    assert not [p for p in remote.files(completed, f"models/{NAME}/deploy/overlays/prod") if "/canary/" in p]

    # Completed and merged, then rolled back: the stable release before the canary, not the
    # canary's 10% of 1.0.1 (the first rollback's merge request was closed, its branch deleted).
    merged(remote, completed, tmp_path / "c2")
    git("branch", "-D", branch, cwd=remote.path)
    code, _, err = run(capsys, remote, "rollback", NAME, "--env", "prod")
    assert code == 0, err
    assert f"merge_request.title=Roll back {NAME} in prod to 1.0.0" in remote.pushes()[-1]["options"]
    after = {p: remote.show(branch, p) for p in remote.files(branch, f"models/{NAME}/deploy/overlays/prod")}
    assert after == before
    assert {p.split("/")[4] for p in remote.files(branch, f"models/{NAME}/deploy/releases")} == {"1.0.0"}


def test_promotion_refuses_what_it_cannot_do(remote, versions, capsys, tmp_path):
    ship(capsys, remote, versions["1.0.0"], tmp_path / "w")
    for args, words in (
        (("promote", NAME, "--to", "dev"), "dev is the first environment"),
        (("promote", NAME, "--to", "qa"), "qa is not an environment of this model"),
        (("promote", NAME, "--to", "staging", "--image", "latest"), "an image digest is sha256:"),
        (("canary", NAME, "1.0.0", "--env", "prod", "--weight", "10"), "promote penguin-species to prod once"),
        (("canary", NAME, "1.0.0", "--env", "prod", "--weight", "100"), "between 1 and 99 percent"),
        (("rollback", NAME, "--env", "prod"), "has never been promoted"),
        (("promote", "nope", "--to", "prod"), "no model nope on main"),
    ):
        code, _, err = run(capsys, remote, *args)
        assert code == 2 and words in err, (args, err)
    # No kubeconfig and no --image: the digest of what dev built is asked for.
    code, _, err = run(capsys, remote, "promote", NAME, "--to", "staging")
    assert code == 2 and re.search(
        r"give --image sha256:\.\.\. \(the digest the BuildConfig in models-dev pushed\)", err
    )
