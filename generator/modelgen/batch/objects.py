"""The cluster objects of a batch run, from the model's generated project.

The Job is the model's Deployment in that environment (``kubectl kustomize
deploy/overlays/ENV``: the release and image the environment runs, its resources, its
namespace) turned into a run-once pod: its pod settings, volumes and ``fetch-artifact`` init
container as they are (so the artifact is fetched and verified exactly as for the service, and
cannot drift from it), and the serving container becomes one running ``python -m app.batch``
with the same image, artifact settings, limits and security
context. The SparkApplication is the project's own ``batch/sparkapplication.yaml`` with its
arguments set.
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelgen.errors import BatchError
from modelgen.manifest import Manifest

SPARK_APPLICATION = "batch/sparkapplication.yaml"
# What only the server reads: the Job's container leaves these out.
SERVING_ONLY = {
    "PORT",
    "MAX_REQUEST_BYTES",
    "TIMEOUT_SECONDS",
    "PROMETHEUS_MULTIPROC_DIR",
    "MODELGEN_WORKERS",
    "MODELGEN_INPUT_LOG",
}
SERVING_ONLY_PREFIX = "MODELGEN_LOG_"
# s3:// credentials for the batch container, from the optional Secret <name>-batch (AWS_<KEY> from key <key>).
STORAGE_KEYS = ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "ENDPOINT_URL")
# Reasons checkov is told (the Deployment's own, and what a one-off Job adds).
CHECKOV_SKIPS = {
    "CKV_K8S_40": "OpenShift assigns the UID from the namespace range (restricted-v2 SCC)",
    "CKV_K8S_43": "the model's own image, resolved by the ImageStream (lookupPolicy.local)",
    "CKV_K8S_14": "the model's own image, resolved by the ImageStream (lookupPolicy.local)",
    "CKV_K8S_35": "registry and storage credentials as env, from optional Secrets",
    "CKV_K8S_21": "created in the model's namespace by modelgen batch",
    "CKV2_K8S_6": "the model's NetworkPolicy selects this pod (same app.kubernetes.io/name)",
}


def batch_job(
    files: Mapping[str, bytes], manifest: Manifest, env: str, arguments: Sequence[str]
) -> tuple[dict[str, Any], str]:
    """The Job that scores ``arguments`` (INPUT OUTPUT and options) in environment ``env``, and its namespace."""
    if manifest.runtime != "python":
        raise BatchError(
            f"{manifest.name} is an R model: its batch job (app/batch.R) reads and writes files only, and a "
            "pod's files go with it; score it here with --engine local"
        )
    _environment(manifest, env)
    deployment = next(
        (d for d in kustomized(files, env) if d["kind"] == "Deployment" and d["metadata"]["name"] == manifest.name),
        None,
    )
    if deployment is None:
        raise BatchError(f"deploy/overlays/{env} has no Deployment {manifest.name}")
    pod = copy.deepcopy(deployment["spec"]["template"]["spec"])
    serving = next(c for c in pod["containers"] if c["name"] == "model")
    scorer = {
        "name": "batch",
        "image": serving["image"],
        "command": ["python", "-m", "app.batch"],
        "args": [*arguments, "--progress", "log"],
        "env": [
            *(
                e
                for e in serving["env"]
                if e["name"] not in SERVING_ONLY and not e["name"].startswith(SERVING_ONLY_PREFIX)
            ),
            # Object-store credentials for s3:// inputs and outputs, when the namespace has them.
            *(_optional_secret(f"AWS_{key}", f"{manifest.name}-batch", key.lower()) for key in STORAGE_KEYS),
        ],
        "resources": serving["resources"],
        "securityContext": serving["securityContext"],
        "volumeMounts": [m for m in serving["volumeMounts"] if m["name"] in ("model", "tmp")],
    }
    # The volumes its containers mount (the model, /tmp, the init container's download cache):
    # not the service's input log.
    mounted = {m["name"] for c in [*pod.get("initContainers", []), scorer] for m in c.get("volumeMounts", [])}
    pod.update(containers=[scorer], restartPolicy="Never", volumes=[v for v in pod["volumes"] if v["name"] in mounted])
    pod.pop("terminationGracePeriodSeconds", None)
    labels = {
        "app.kubernetes.io/name": manifest.name,
        "app.kubernetes.io/part-of": "modelgen",
        "app.kubernetes.io/component": "batch",
        "app.kubernetes.io/version": manifest.version,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run_name(manifest, arguments),
            "labels": labels,
            "annotations": {f"checkov.io/skip{i}": f"{k}={why}" for i, (k, why) in enumerate(CHECKOV_SKIPS.items(), 1)},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 86400,
            "ttlSecondsAfterFinished": 604800,
            "template": {
                "metadata": {
                    "labels": {"app.kubernetes.io/name": manifest.name, "modelgen.dev/pod": "batch"},
                    # Lets "<name>:latest" name the model's own image through its ImageStream.
                    "annotations": {"alpha.image.policy.openshift.io/resolve-names": "*"},
                },
                "spec": pod,
            },
        },
    }
    return job, deployment["metadata"]["namespace"]


def kustomized(files: Mapping[str, bytes], env: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize deploy/overlays/ENV`` builds from the project's files."""
    with tempfile.TemporaryDirectory(prefix="modelgen-batch-") as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            if rel.startswith("deploy/"):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
        try:
            done = subprocess.run(
                ["kubectl", "kustomize", str(root / "deploy" / "overlays" / env)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise BatchError(f"cannot run kubectl kustomize (the Job is built from the overlay): {err}") from err
    if done.returncode != 0:
        raise BatchError(f"kubectl kustomize deploy/overlays/{env} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def spark_application(
    files: Mapping[str, bytes], manifest: Manifest, env: str, arguments: Sequence[str]
) -> tuple[dict[str, Any], str]:
    """The project's SparkApplication with ``arguments`` (INPUT OUTPUT and options), and its namespace."""
    require_spark(manifest)
    application = _yaml(files, SPARK_APPLICATION)
    _environment(manifest, env)
    _runs_this_version(files, manifest, env)
    application["metadata"]["name"] = run_name(manifest, arguments, "spark")
    application["spec"]["arguments"] = list(arguments)
    return application, namespace(files, env)


def _runs_this_version(files: Mapping[str, bytes], manifest: Manifest, env: str) -> None:
    """The SparkApplication (and its image) is the project's version: refuse an environment pinned
    by promotion to another one, rather than score with a model that environment does not run."""
    from modelgen.gitops.live import live_of
    from modelgen.gitops.repo import RELEASE_FILE

    release = files.get(f"deploy/overlays/{env}/{RELEASE_FILE}")
    if release is None:
        return
    running = live_of(env, manifest, release).version
    if running != manifest.version:
        raise BatchError(
            f"{env} runs {manifest.name} {running}, and the Spark job is {manifest.version}'s (what "
            f"{manifest.environments[0].name} runs): score {env}'s version with --engine job --env {env}, "
            f"whose Job runs the release {env} pins"
        )


def require_spark(manifest: Manifest) -> None:
    """Only a Python project has a Spark job."""
    if manifest.runtime != "python":
        raise BatchError(
            f"{manifest.name} is an R model: the Spark job is Python's (app/spark_job.py scores with the "
            "service's Python code); score it with --engine local, whose R batch job streams any file size"
        )


def run_name(manifest: Manifest, arguments: Sequence[str], kind: str = "batch") -> str:
    """``<model>-<kind>-<8 hex>`` from the version and the arguments: the same run asked twice is
    refused by the API server (AlreadyExists) instead of scoring the same rows twice.

    >>> from types import SimpleNamespace
    >>> run_name(SimpleNamespace(name="churn", version="1.0.0"), ["s3://in.csv", "s3://out.parquet"])
    'churn-batch-75e2a7f5'
    """
    digest = hashlib.sha256("\0".join([manifest.version, *arguments]).encode("utf-8")).hexdigest()
    # A Kubernetes name: at most 63 characters (the model's name is a DNS-1123 label already).
    return f"{manifest.name[:48]}-{kind}-{digest[:8]}"


def namespace(files: Mapping[str, bytes], env: str) -> str:
    """The namespace the environment's overlay deploys the model to."""
    overlay = _yaml(files, f"deploy/overlays/{env}/kustomization.yaml")
    if not overlay.get("namespace"):
        raise BatchError(f"deploy/overlays/{env}/kustomization.yaml names no namespace")
    return overlay["namespace"]


def _environment(manifest: Manifest, env: str) -> Any:
    for environment in manifest.environments:
        if environment.name == env:
            return environment
    allowed = ", ".join(e.name for e in manifest.environments)
    raise BatchError(f"{manifest.name} has no environment {env!r} (allowed: {allowed})")


def _optional_secret(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}


def _yaml(files: Mapping[str, bytes], path: str) -> dict[str, Any]:
    if path not in files:
        raise BatchError(f"the project has no {path}: generate it again with this modelgen (modelgen upgrade)")
    return yaml.safe_load(files[path])
