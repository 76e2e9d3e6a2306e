"""`modelgen status` through the real ``kubernetes`` client, against a stand-in API server.

Nothing here can run a Kubernetes API server, so ``kube_api.py`` stands in for the cluster: an
HTTP server on 127.0.0.1 that answers the client as the API server does, reached through a
generated kubeconfig (``KUBECONFIG``). What it serves is what a cluster would hold: the
Deployment, Route and drift CronJob that ``kubectl kustomize`` builds from generated projects'
overlays, with the fields the API server and the controllers add; the Applications the
ApplicationSet of ``init-gitops`` makes; the Jobs the CronJob controller makes. Every object
served validates against its schema (the Argo CD CRD, the strict OpenShift schemas,
``kubernetes-validate --strict``).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from gitops_support import Remote, cli
from kube_api import KubeApi, kube_api
from support import free_port, schema_folder

from modelgen.cli import EXIT_DEGRADED, EXIT_FAILED
from modelgen.cluster import client
from modelgen.cluster.client import image_digest
from modelgen.gitops.scaffold import GitopsSettings, scaffold
from modelgen.manifest import load
from modelgen.monitoring.drift import EXIT_DRIFT, profile
from modelgen.monitoring.reference import profile_columns
from modelgen.render.output import write_project
from modelgen.render.templates import render

BIN = Path(sys.executable).parent
NAME = "churn-risk"  # monitored: it has a drift CronJob
OTHER = "fraud-score"  # not monitored
SHA = {"1.9.0": "1a" * 32, "2.0.0": "2b" * 32, "0.3.0": "3c" * 32}
ARGOCD = "openshift-gitops"
REPO_URL = "https://gitlab.example.com/platform/models.git"
REVISION = "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9012345"
NOW = "2026-12-07T05:30:41Z"
MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata: {{name: {name}, version: {version}, owner: jane.doe@example.com}}
spec:
  runtime: python
  task: classification
  artifact:
    uri: https://nexus.example.com/repository/models/{name}/{version}/model.joblib
    sha256: {sha256}
    format: joblib
  requirements: [scikit-learn==1.5.2]
  input: [{{name: tenure_months, type: integer}}, {{name: plan, type: string, nullable: true}}]
  output: {{type: label, classes: ["no", "yes"]}}
  sample: sample.json
"""
MONITORING = "  monitoring: {reference: reference.csv}\n"
SAMPLE = [{"tenure_months": 12, "plan": "pro"}, {"tenure_months": 1, "plan": None}]


# ---------------------------------------------------------------------------- what the cluster holds


def model_folder(where: Path, name: str, version: str) -> Path:
    folder = where / f"{name}-{version}"
    folder.mkdir()
    text = MANIFEST.format(name=name, version=version, sha256=SHA[version]) + (MONITORING if name == NAME else "")
    (folder / "model.yaml").write_text(text)
    (folder / "sample.json").write_text(json.dumps(SAMPLE))
    return folder / "model.yaml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, str, str], dict[str, dict]]:
    """(model, version, env) → {kind: object}, as ``kubectl kustomize`` builds the generated overlays."""
    where = tmp_path_factory.mktemp("projects")
    out = {}
    for name, version in ((NAME, "1.9.0"), (NAME, "2.0.0"), (OTHER, "0.3.0")):
        manifest = load(model_folder(where, name, version))
        # No model here to score a reference with: made-up rows and labels give a profile of the same shape.
        frame = pd.DataFrame({"tenure_months": [1, 5, 12, 30] * 10, "plan": ["basic", "pro", None, "pro"] * 10})
        made_up = profile(frame, profile_columns(manifest, frame, "made-up rows"), ["no", "yes"] * 20)
        project = where / "out" / f"{name}-{version}"
        write_project(render(manifest, profile=made_up if manifest.monitoring else None), project)
        for env in ("dev", "prod"):
            built = subprocess.run(
                ["kubectl", "kustomize", project / "deploy" / "overlays" / env], capture_output=True, text=True
            )
            assert built.returncode == 0, built.stderr
            out[name, version, env] = {d["kind"]: d for d in yaml.safe_load_all(built.stdout) if d}
    return out


def uid(*names: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(names)))


def admitted(doc: dict, **status) -> dict:
    """``doc`` as the API server keeps it once created: uid, resourceVersion, creation time, status."""
    doc = copy.deepcopy(doc)
    meta = doc["metadata"]
    meta.update(
        uid=uid(doc["kind"], meta.get("namespace", ""), meta["name"]),
        resourceVersion="48213",
        creationTimestamp="2026-11-30T09:12:03Z",
        generation=2,
    )
    doc["status"] = status
    return doc


def deployment(doc: dict, ready: int | None = None, updated: int | None = None) -> dict:
    replicas = doc["spec"]["replicas"]
    ready = replicas if ready is None else ready
    updated = replicas if updated is None else updated
    available = {
        "type": "Available",
        "status": "True" if ready else "False",
        "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
    }
    progressing = {
        "type": "Progressing",
        "status": "True",
        "reason": "NewReplicaSetAvailable",
        "message": f'ReplicaSet "{doc["metadata"]["name"]}-7d4b9c8f6" has successfully progressed.',
    }
    return admitted(
        doc,
        observedGeneration=2,
        replicas=max(replicas, updated),
        readyReplicas=ready,
        availableReplicas=ready,
        updatedReplicas=updated,
        **({"unavailableReplicas": replicas - ready} if ready < replicas else {}),
        conditions=[{**c, "lastUpdateTime": NOW, "lastTransitionTime": NOW} for c in (available, progressing)],
    )


def canary_of(doc: dict) -> dict:
    """A release's Deployment as the canary overlay names it: suffixed, selecting its own pods, one replica."""
    doc = copy.deepcopy(doc)
    name = doc["metadata"]["name"] + "-canary"
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    for labels in (doc["metadata"]["labels"], spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]):
        labels["app.kubernetes.io/name"] = name
    spec["replicas"] = 1
    return doc


def route(doc: dict, canary_weight: int | None = None) -> dict:
    doc = copy.deepcopy(doc)
    name, namespace = doc["metadata"]["name"], doc["metadata"]["namespace"]
    if canary_weight is not None:  # what the release overlay's patch sets
        doc["spec"]["to"]["weight"] = 100 - canary_weight
        doc["spec"]["alternateBackends"] = [{"kind": "Service", "name": f"{name}-canary", "weight": canary_weight}]
    doc["spec"]["host"] = f"{name}-{namespace}.apps.example.com"
    ingress = {
        "host": doc["spec"]["host"],
        "routerName": "default",
        "wildcardPolicy": "None",
        "routerCanonicalHostname": "router-default.apps.example.com",
        "conditions": [{"type": "Admitted", "status": "True", "lastTransitionTime": NOW}],
    }
    return admitted(doc, ingress=[ingress])


def drift_job(cron_job: dict, outcome: str) -> dict:
    """The Job the CronJob controller made of ``cron_job``'s template at 05:30, having ended in ``outcome``."""
    meta = cron_job["metadata"]
    name = f"{meta['name']}-29416170"  # the controller's suffix: the scheduled minute since the epoch
    job_uid = uid("Job", meta["namespace"], name)
    controller = {"batch.kubernetes.io/controller-uid": job_uid, "batch.kubernetes.io/job-name": name}
    controller |= {"controller-uid": job_uid, "job-name": name}
    template = copy.deepcopy(cron_job["spec"]["jobTemplate"])
    spec = template["spec"] | {
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": job_uid}},
        "completions": 1,
        "parallelism": 1,
        "completionMode": "NonIndexed",
        "suspend": False,
    }
    spec["template"]["metadata"]["labels"].update(controller)
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"], "uid": meta["uid"]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": template["metadata"]["labels"] | controller,
            "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-12-07T05:30:00Z"},
            "ownerReferences": [owner | {"controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }
    status = {"startTime": "2026-12-07T05:30:02Z", "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}
    if outcome == "running":
        return admitted(job, **status | {"active": 1, "ready": 1})
    ended = {"status": "True", "lastProbeTime": NOW, "lastTransitionTime": NOW}
    if outcome == "ok":
        return admitted(job, **status, succeeded=1, completionTime=NOW, conditions=[{"type": "Complete", **ended}])
    if outcome == "drifted":  # exit code 4 matched the podFailurePolicy's FailJob rule: no other try
        message = (
            f"Container drift for pod {meta['namespace']}/{name}-x7k2p failed with exit code {EXIT_DRIFT} "
            "matching FailJob rule at index 0"
        )
        failed = {"reason": "PodFailurePolicy", "message": message, **ended}
        conditions = [{"type": "FailureTarget", **failed}, {"type": "Failed", **failed}]
        return admitted(job, **status, failed=1, conditions=conditions)
    # Three pods failed (a volume not mounted, say): the backoff limit.
    message = "Job has reached the specified backoff limit"
    conditions = [{"type": "Failed", "reason": "BackoffLimitExceeded", "message": message, **ended}]
    return admitted(job, **status, failed=3, conditions=conditions)


@functools.cache
def applicationset_template() -> str:
    (appset,) = yaml.safe_load_all(scaffold(GitopsSettings(REPO_URL))["argocd/applicationset.yaml"])
    return json.dumps(appset["spec"]["template"])


# What Argo CD says of the Deployment, by the Application's health.
DEPLOYMENT_HEALTH = {
    "Degraded": 'Deployment "{model}" exceeded its progress deadline',
    "Progressing": "Waiting for rollout to finish: 1 of 2 updated replicas are available...",
}


def application(model: str, env: str, sync: str = "Synced", health: str = "Healthy", namespace: str = ARGOCD) -> dict:
    """The Application the ApplicationSet of ``init-gitops`` makes of ``models/<model>/deploy/overlays/<env>``."""
    text = applicationset_template()
    path = f"models/{model}/deploy/overlays/{env}"
    for go_template, value in (
        ("{{index .path.segments 1}}", model),
        ("{{.path.basename}}", env),
        ("{{.path.path}}", path),
    ):
        text = text.replace(go_template, value)
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", **json.loads(text)}
    app["metadata"]["namespace"] = namespace
    owner = {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "name": "models"}
    app["metadata"]["ownerReferences"] = [owner | {"uid": uid("ApplicationSet", "models"), "controller": True}]
    resource = {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": f"models-{env}", "name": model}
    resource |= {"status": sync, "health": {"status": health}}
    if health in DEPLOYMENT_HEALTH:
        resource["health"]["message"] = DEPLOYMENT_HEALTH[health].format(model=model)
    compared = {"source": app["spec"]["source"], "destination": app["spec"]["destination"]}
    return admitted(
        app,
        sync={"status": sync, "revision": REVISION, "comparedTo": compared},
        health={"status": health, "lastTransitionTime": NOW},
        resources=[resource],
        reconciledAt=NOW,
        sourceType="Kustomize",
        controllerNamespace=namespace,
    )


@dataclass(frozen=True)
class Env:
    """How one environment of churn-risk is, in a scenario."""

    version: str
    sync: str = "Synced"
    health: str = "Healthy"
    ready: int | None = None  # default: every replica
    updated: int | None = None
    drift: str = "ok"  # how the newest drift Job ended: ok, drifted, failed, running
    canary: int | None = None  # 2.0.0 as a canary, taking this percent of requests


def cluster(rendered, dev: Env = Env("2.0.0"), prod: Env = Env("1.9.0")) -> list[dict]:
    """churn-risk in dev and prod as ``dev`` and ``prod`` say, and fraud-score (not monitored) in dev."""
    objects = []
    for env, how in (("dev", dev), ("prod", prod)):
        docs = rendered[NAME, how.version, env]
        cron_job = admitted(docs["CronJob"], lastScheduleTime="2026-12-07T05:30:00Z")
        objects += [
            application(NAME, env, how.sync, how.health),
            deployment(docs["Deployment"], how.ready, how.updated),
            route(docs["Route"], how.canary),
            cron_job,
            drift_job(cron_job, how.drift),
        ]
        if how.canary is not None:
            objects.append(deployment(canary_of(rendered[NAME, "2.0.0", env]["Deployment"])))
    other = rendered[OTHER, "0.3.0", "dev"]
    objects += [application(OTHER, "dev"), deployment(other["Deployment"]), route(other["Route"])]
    return objects


# ---------------------------------------------------------------------------- running status


@pytest.fixture
def connect(tmp_path, monkeypatch):
    """``connect(api)`` points the kubeconfig at a stand-in API server; no in-cluster config here."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("MODELGEN_GITOPS", raising=False)

    def point(api: KubeApi, token: str | None = None) -> KubeApi:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig", token)))
        return api

    return point


def status(capsys, objects: list[dict], connect, *args: str) -> tuple[int, str, str, KubeApi]:
    with kube_api(objects) as api:
        connect(api)
        code, out, err = cli(capsys, "status", *args)
    return code, out, err, api


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def by_key(out: str) -> dict[tuple[str, str], dict]:
    return {(d["model"], d["environment"]): d for d in json.loads(out)}


DRIFT_OK = ["ok", "2026-12-07", "05:30"]


def test_healthy_models_show_what_runs_and_exit_0(rendered, connect, capsys):
    code, out, err, api = status(capsys, cluster(rendered), connect)
    assert (code, err) == (0, "")
    assert out == (
        "MODEL        ENV   SYNC    HEALTH   READY  UPDATED  VERSION  SHA256        CANARY  DRIFT\n"
        "churn-risk   dev   Synced  Healthy  2/2    2/2      2.0.0    2b2b2b2b2b2b  -       ok 2026-12-07 05:30\n"
        "churn-risk   prod  Synced  Healthy  2/2    2/2      1.9.0    1a1a1a1a1a1a  -       ok 2026-12-07 05:30\n"
        "fraud-score  dev   Synced  Healthy  2/2    2/2      0.3.0    3c3c3c3c3c3c  -       -\n"
    ), out
    # One list of Applications, then four lists per namespace by modelgen's label: not a GET per object.
    apis = [
        ("apps/v1", "deployments"),
        ("route.openshift.io/v1", "routes"),
        ("batch/v1", "cronjobs"),
        ("batch/v1", "jobs"),
    ]
    lists = [f"/apis/{version}/namespaces/models-{env}/{plural}" for env in ("dev", "prod") for version, plural in apis]
    assert api.requests == [
        "/apis/argoproj.io/v1alpha1/namespaces/openshift-gitops/applications?labelSelector=modelgen.io/model",
        *(f"{path}?labelSelector=app.kubernetes.io/part-of=modelgen" for path in lists),
    ]


def test_json_for_scripts(rendered, connect, capsys):
    code, out, _, _ = status(capsys, cluster(rendered), connect, NAME, "--env", "prod", "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "model": NAME,
            "environment": "prod",
            "namespace": "models-prod",
            "application": {
                "name": f"{NAME}-prod",
                "sync": "Synced",
                "health": "Healthy",
                "revision": REVISION,
                "messages": [],
            },
            "deployment": {
                "name": NAME,
                "version": "1.9.0",
                "sha256": SHA["1.9.0"],
                "replicas": 2,
                "ready": 2,
                "updated": 2,
                "weight": 100,
            },
            "canary": None,
            "drift": {
                "cronJob": f"{NAME}-drift",
                "job": f"{NAME}-drift-29416170",
                "result": "ok",
                "time": "2026-12-07T05:30:41+00:00",
                "message": "",
            },
            "problems": [],
            "degraded": False,
            "drifted": False,
        }
    ]


def test_name_and_env_narrow_what_is_read(rendered, connect, capsys):
    code, out, _, api = status(capsys, cluster(rendered), connect, NAME, "--env", "prod")
    assert code == 0
    assert [r[:2] for r in rows(out)] == [["MODEL", "ENV"], [NAME, "prod"]]
    assert api.requests[0].endswith("?labelSelector=modelgen.io/model=churn-risk,modelgen.io/environment=prod")
    assert len(api.requests) == 5 and all("/namespaces/models-prod/" in r for r in api.requests[1:])


def test_degraded_application_unready_replicas_and_a_failed_drift_job_exit_5(rendered, connect, capsys):
    prod = Env("1.9.0", health="Degraded", ready=1, drift="failed")
    code, out, err, _ = status(capsys, cluster(rendered, prod=prod), connect, NAME)
    assert (code, err) == (EXIT_DEGRADED, "")
    table, problems = out.split("\n\n")
    assert rows(table)[1][2:4] == ["Synced", "Healthy"]  # dev is fine
    failed = ["failed", *DRIFT_OK[1:]]
    assert rows(table)[2] == [NAME, "prod", "Synced", "Degraded", "1/2", "2/2", "1.9.0", "1a" * 6, "-", *failed]
    assert problems.splitlines() == [
        f"{NAME}/prod: Application {NAME}-prod is Synced and Degraded: "
        f'Deployment {NAME} is Degraded: Deployment "{NAME}" exceeded its progress deadline',
        f"{NAME}/prod: Deployment {NAME}: 1 of 2 replicas ready",
        f"{NAME}/prod: drift job {NAME}-drift-29416170 failed: "
        "BackoffLimitExceeded: Job has reached the specified backoff limit",
    ]


def test_out_of_sync_while_a_rollout_is_under_way_exit_5(rendered, connect, capsys):
    dev = Env("2.0.0", sync="OutOfSync", health="Progressing", ready=1, updated=1)
    code, out, _, _ = status(capsys, cluster(rendered, dev=dev), connect, "--json")
    assert code == EXIT_DEGRADED
    docs = by_key(out)
    assert [key for key, doc in docs.items() if doc["degraded"]] == [(NAME, "dev")]
    assert docs[NAME, "dev"]["application"]["sync"] == "OutOfSync"
    assert docs[NAME, "dev"]["problems"] == [
        f"Application {NAME}-dev is OutOfSync and Progressing: Deployment {NAME} is Progressing: "
        "Waiting for rollout to finish: 1 of 2 updated replicas are available...",
        f"Deployment {NAME}: 1 of 2 replicas ready",
        f"Deployment {NAME}: 1 of 2 replicas updated",
    ]


def test_a_canary_shows_its_version_and_share_of_requests(rendered, connect, capsys):
    objects = cluster(rendered, prod=Env("1.9.0", canary=10))
    code, out, _, _ = status(capsys, objects, connect, NAME, "--env", "prod")
    assert code == 0, out
    canary = ["2.0.0", "10%", "1/1"]
    assert rows(out)[1] == [NAME, "prod", "Synced", "Healthy", "2/2", "2/2", "1.9.0", "1a" * 6, *canary, *DRIFT_OK]
    code, out, _, _ = status(capsys, objects, connect, NAME, "--env", "prod", "--json")
    doc = by_key(out)[NAME, "prod"]
    assert (doc["deployment"]["version"], doc["deployment"]["weight"]) == ("1.9.0", 90)
    assert doc["canary"] == {
        "name": f"{NAME}-canary",
        "version": "2.0.0",
        "sha256": SHA["2.0.0"],
        "replicas": 1,
        "ready": 1,
        "updated": 1,
        "weight": 10,
    }


def test_a_route_sending_requests_to_a_missing_canary_is_degraded(rendered, connect, capsys):
    objects = [o for o in cluster(rendered, prod=Env("1.9.0", canary=25)) if o["metadata"]["name"] != f"{NAME}-canary"]
    code, out, _, _ = status(capsys, objects, connect, NAME, "--env", "prod")
    assert code == EXIT_DEGRADED
    assert (
        out.splitlines()[-1]
        == f"{NAME}/prod: the Route sends 25% of requests to {NAME}-canary, which has no Deployment"
    )


def test_drift_found_by_the_last_job_exits_4(rendered, connect, capsys):
    code, out, _, _ = status(capsys, cluster(rendered, prod=Env("1.9.0", drift="drifted")), connect, "--json")
    assert code == EXIT_DRIFT
    docs = by_key(out)
    assert [key for key, doc in docs.items() if doc["drifted"]] == [(NAME, "prod")]
    assert not any(doc["degraded"] for doc in docs.values())
    assert docs[NAME, "prod"]["drift"]["message"].endswith("failed with exit code 4 matching FailJob rule at index 0")
    # Something degraded as well: that is what the exit code says.
    both = cluster(rendered, dev=Env("2.0.0", ready=0), prod=Env("1.9.0", drift="drifted"))
    assert status(capsys, both, connect)[0] == EXIT_DEGRADED


def test_a_running_drift_job_and_one_not_run_yet(rendered, connect, capsys):
    objects = cluster(rendered, dev=Env("2.0.0", drift="running"))
    objects = [o for o in objects if not (o["kind"] == "Job" and o["metadata"]["namespace"] == "models-prod")]
    code, out, _, _ = status(capsys, objects, connect, NAME)
    assert code == 0
    assert [r[9:] for r in rows(out)[1:]] == [["running", "2026-12-07", "05:30"], ["not", "run", "yet"]]


def test_the_gitops_repository_says_where_argo_cd_is_and_what_should_run(
    rendered, connect, capsys, tmp_path, gitops_cache
):
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path, "--argocd-namespace", "argocd")[0] == 0
    code, _, err = cli(capsys, "generate", model_folder(tmp_path, "score-card", "0.3.0"), "--gitops", remote.path)
    assert code == 0, err
    remote.merge("modelgen/score-card-0.3.0", tmp_path / "work")
    # churn-risk and fraud-score run (their Applications in argocd); Argo CD has not made score-card's yet.
    objects = [o for o in cluster(rendered) if o["kind"] != "Application"] + [
        application(model, env, namespace="argocd") for model, env in ((NAME, "dev"), (NAME, "prod"), (OTHER, "dev"))
    ]
    code, out, err, api = status(capsys, objects, connect, "--gitops", str(remote.path))
    assert code == EXIT_DEGRADED, err
    assert api.requests[0].startswith("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?")
    assert [r[:4] for r in rows(out)[1:5]] == [
        [NAME, "dev", "Synced", "Healthy"],
        [NAME, "prod", "Synced", "Healthy"],
        [OTHER, "dev", "Synced", "Healthy"],
        ["score-card", "dev", "missing", "-"],
    ]
    assert out.splitlines()[-2:] == [
        "score-card/dev: no Argo CD Application score-card-dev: the ApplicationSet has not made it (yet)",
        "score-card/dev: no Deployment score-card in models-dev",
    ]
    code, _, err, _ = status(capsys, objects, connect, "iris", "--gitops", str(remote.path))
    assert (code, err) == (
        EXIT_FAILED,
        "error: no Argo CD Application of model iris in namespace argocd (labelled modelgen.io/model): "
        "the GitOps repository has score-card\n",
    )


# ---------------------------------------------------------------------------- errors: one line, exit 2


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path):
    # As a command of its own: what the user sees is stderr entire, logging included.
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "MODELGEN_GITOPS")}
    env["KUBECONFIG"] = str(KubeApi("a-token", port=port).kubeconfig(tmp_path / "kubeconfig"))
    done = subprocess.run([BIN / "modelgen", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (EXIT_FAILED, "")
    assert done.stderr == f"error: cannot reach the cluster at http://127.0.0.1:{port}: Connection refused\n"


def test_a_cluster_that_does_not_answer_costs_the_deadline_once(connect, capsys, monkeypatch):
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 1)
    with socket.socket() as silent:  # connections are taken (the backlog), never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        connect(KubeApi("a-token", port=port))
        started = time.monotonic()
        code, _, err = cli(capsys, "status")
        assert time.monotonic() - started < 3  # one request, not retried
    assert (code, err) == (
        EXIT_FAILED,
        f"error: cannot reach the cluster at http://127.0.0.1:{port}: no answer within 1 s\n",
    )


def test_no_kubeconfig_a_wrong_token_an_unknown_model_and_no_argo_cd_are_each_one_line(
    rendered, connect, capsys, tmp_path, monkeypatch
):
    cannot_list = "error: cannot list Argo CD Applications (argoproj.io/v1alpha1) in openshift-gitops"
    with kube_api(cluster(rendered)) as api:
        connect(api, token="expired")
        assert cli(capsys, "status")[::2] == (EXIT_FAILED, f"{cannot_list}: Unauthorized (HTTP 401)\n")
        connect(api)
        assert cli(capsys, "status", "iris")[::2] == (
            EXIT_FAILED,
            "error: no Argo CD Application of model iris in namespace openshift-gitops (labelled modelgen.io/model): "
            "is Argo CD's namespace right? (--argocd-namespace, or --gitops to read gitops.yaml)\n",
        )
        api.kinds.discard("Application")  # a cluster without Argo CD
        assert cli(capsys, "status")[::2] == (
            EXIT_FAILED,
            f"{cannot_list}: the server could not find the requested resource (HTTP 404)\n",
        )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = cli(capsys, "status")
    assert code == EXIT_FAILED and err.startswith("error: no cluster to read: ") and err.count("\n") == 1, err


# ---------------------------------------------------------------------------- the same client for promote


def test_image_digest_reads_the_image_stream_or_says_nothing(connect):
    digest = "sha256:" + "7" * 64
    reference = f"image-registry.openshift-image-registry.svc:5000/models-dev/{NAME}"
    stream = admitted(
        {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": NAME, "namespace": "models-dev"},
            "spec": {"lookupPolicy": {"local": True}},
        },
        dockerImageRepository=reference,
        tags=[
            {
                "tag": "latest",
                "items": [
                    {"created": NOW, "dockerImageReference": f"{reference}@{digest}", "image": digest, "generation": 1}
                ],
            }
        ],
    )
    validate_openshift([stream])
    with kube_api([stream]) as api:
        connect(api)
        assert image_digest("models-dev", NAME) == digest
        assert image_digest("models-prod", NAME) is None  # 404: no such ImageStream there
        assert api.requests[-1] == f"/apis/image.openshift.io/v1/namespaces/models-prod/imagestreams/{NAME}"
    assert image_digest("models-dev", NAME) is None  # the server is gone


# ---------------------------------------------------------------------------- what is served is valid


OPENSHIFT = {
    "Deployment": "deployment-apps-v1.json",
    "Route": "route-route-v1.json",
    "ImageStream": "imagestream-image-v1.json",
}


def schema_errors(schema: dict, doc: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def validate_openshift(objects: list[dict]) -> None:
    folder = schema_folder("openshift-4.17-strict")
    for doc in objects:
        errors = schema_errors(json.loads((folder / OPENSHIFT[doc["kind"]]).read_text()), doc)
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: {errors}"


def test_every_object_the_stand_in_serves_validates(rendered, tmp_path):
    scenarios = [
        cluster(rendered),
        cluster(
            rendered,
            dev=Env("2.0.0", sync="OutOfSync", health="Progressing", ready=1, updated=1, drift="running"),
            prod=Env("1.9.0", health="Degraded", ready=0, drift="drifted", canary=10),
        ),
        cluster(rendered, prod=Env("1.9.0", drift="failed")),
    ]
    objects = list({json.dumps(o, sort_keys=True): o for scenario in scenarios for o in scenario}.values())
    assert {o["kind"] for o in objects} == {"Application", "Deployment", "Route", "CronJob", "Job"}
    schema = json.loads((schema_folder("crds/argoproj.io") / "application_v1alpha1.json").read_text())
    for app in (o for o in objects if o["kind"] == "Application"):
        assert not schema_errors(schema, app), f"{app['metadata']['name']}: {schema_errors(schema, app)}"
    validate_openshift([o for o in objects if o["kind"] in OPENSHIFT])
    core = [o for o in objects if o["kind"] in ("Deployment", "CronJob", "Job")]
    for i, doc in enumerate(core):
        (tmp_path / f"{i:02d}.yaml").write_text(yaml.safe_dump(doc))
    files = sorted(tmp_path.glob("*.yaml"))
    done = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", *files], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.count("passed") == len(core), done.stdout + done.stderr
