"""Where a batch run happens: here (the project's own entry point), or in the cluster (an object created).

``NAME`` is a generated project folder, or a model of the GitOps repository (``models/NAME/``
on its target branch). Locally, the project runs in a private copy with the artifact fetched
and checked by modelgen's registry client, in this Python (which needs the model's libraries,
as ``generate`` does to profile a reference) or Rscript. In the cluster, objects are created
with the Kubernetes Python client as ``modelgen.cluster.client`` configures it (the pod's service
account, else ``$KUBECONFIG`` or ``~/.kube/config``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelgen.errors import BatchError
from modelgen.manifest import Manifest
from modelgen.render.project import is_project, project_manifest, read_project

Files = dict[str, bytes]
PROJECT_VARIABLES = ("MODEL_PATH", "MODEL_SHA256", "ONNX_PATH", "ONNX_SHA256")


@contextmanager
def model_project(name: str, gitops: str | None) -> Iterator[tuple[Files, Manifest]]:
    """The files and manifest of ``name``: a project folder, else ``models/NAME/`` of ``gitops``."""
    folder = Path(name)
    if folder.is_dir():
        if not is_project(folder):
            raise BatchError(f"{name} is not a generated project (it needs model.yaml and .modelgen.json)")
        files, where = read_project(folder), str(folder).rstrip("/")
    else:
        if not gitops:
            raise BatchError(
                f"{name} is no project folder here; to score a model of the GitOps repository, give --gitops"
            )
        from modelgen.gitops.repo import MODELS, GitopsRepo

        files, where = GitopsRepo.open(gitops).files(f"{MODELS}/{name}/"), f"{MODELS}/{name}"
        files = {path.removeprefix(f"{where}/"): data for path, data in files.items()}
        if not files:
            raise BatchError(f"no model {name!r} in {gitops} (see `modelgen list`)")
    with project_manifest(files, where) as manifest:
        yield files, manifest


def run_here(files: Files, manifest: Manifest, arguments: Sequence[str], *, spark: bool = False) -> int:
    """The project's batch entry point (``spark``: its Spark job, pyspark installed) on this machine;
    its progress and messages go to the terminal."""
    from modelgen.registry.backends import fetch

    artifact = manifest.artifact
    with tempfile.TemporaryDirectory(prefix="modelgen-batch-") as tmp:
        root = Path(tmp)
        for rel, content in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
        (root / f"model.{artifact.format}").write_bytes(fetch(artifact.uri, artifact.sha256))
        if manifest.runtime == "python":
            command = [sys.executable, "-m", "app.spark_job" if spark else "app.batch"]
        else:
            command = ["Rscript", "app/batch.R"]
        environment = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
        # The artifact itself answers here (an ONNX conversion would need its own download).
        environment.update(PYTHONPATH=str(root), MODELGEN_ENGINE="native")
        environment.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this Python's libraries
        try:
            return subprocess.run([*command, *arguments], cwd=root, env=environment, check=False).returncode
        except OSError as err:
            raise BatchError(f"cannot run {command[0]}: {err}") from err


def batch_arguments(
    source: str, target: str, on_error: str, keep: Sequence[str], rejected: str | None, *, here: bool
) -> list[str]:
    """The batch job's command line; ``here``: local paths made absolute, as the project's copy must see them.

    >>> batch_arguments("in.csv", "s3://b/out.parquet", "skip", ["id"], None, here=False)
    ['in.csv', 's3://b/out.parquet', '--on-error', 'skip', '--keep', 'id']
    """

    def path(value: str) -> str:
        return value if not here or "://" in value else os.path.abspath(value)

    arguments = [path(source), path(target), "--on-error", on_error]
    for column in keep:
        arguments += ["--keep", column]
    if rejected:
        arguments += ["--rejected", path(rejected)]
    return arguments


def cluster_urls(args: Any) -> None:
    """In the cluster, inputs and outputs are URLs the pod reaches: a path of this machine is not there,
    and one in the pod goes with it."""
    from urllib.parse import urlsplit

    for flag, value in (("--input", args.input), ("--output", args.output), ("--rejected", args.rejected)):
        if value and urlsplit(value).scheme in ("", "file"):
            raise BatchError(
                f"{flag} {value}: in the cluster, give a URL the pod reaches (s3://...; https://... to read), "
                "not a path"
            )


def create(obj: dict[str, Any], namespace: str) -> str:
    """Create a Job or a SparkApplication in ``namespace``; its name as the API server gave it."""
    from kubernetes import client

    from modelgen.cluster.client import api_client, request

    api = api_client()
    what = f"create the {obj['kind']} in {namespace}"
    try:
        if obj["kind"] == "Job":
            return request(api, what, client.BatchV1Api(api).create_namespaced_job, namespace, obj).metadata.name
        group, version = obj["apiVersion"].split("/")
        custom = client.CustomObjectsApi(api).create_namespaced_custom_object
        return request(api, what, custom, group, version, namespace, "sparkapplications", obj)["metadata"]["name"]
    finally:
        api.close()
