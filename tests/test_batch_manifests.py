"""The cluster objects of ``modelgen batch``: the Job (``--engine job``) and the SparkApplication (``--engine spark``).

Printed with ``--dry-run`` and checked with the real tools (``kubernetes-validate --strict``,
the Spark operator's vendored schema, checkov); created with the Kubernetes Python client
against the stand-in API server of ``kube_api.py`` on 127.0.0.1 (there is no cluster here): it
records what the client sends and answers as the API server does (201 with the object, 409 when
the name is taken).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from gitops_support import Remote, cli
from kube_api import KubeApi, kube_api
from support import BIN, schema_folder
from test_deploy_manifests import MANIFEST, MINIMAL_MANIFEST, R_MANIFEST, SAMPLE, _generate

ARGS = ["--input", "s3://warehouse/customers.parquet", "--output", "s3://scores/churn.parquet", "--on-error", "skip"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return _generate(MANIFEST, SAMPLE, tmp_path_factory.mktemp("batch-python"))


@pytest.fixture(scope="module")
def r_project(tmp_path_factory) -> Path:
    return _generate(R_MANIFEST, SAMPLE, tmp_path_factory.mktemp("batch-r"))


def printed(capsys, project: Path, engine: str, *more: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "batch", str(project), *ARGS, "--engine", engine, "--dry-run", *more)
    assert code == 0, err
    return yaml.safe_load(out)


def init_container(project: Path) -> dict[str, Any]:
    deployment = yaml.safe_load((project / "deploy/base/deployment.yaml").read_text())
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return init


def test_the_job_is_the_deployment_s_pod_running_the_batch_job(capsys, project, tmp_path):
    job = printed(capsys, project, "job", "--env", "staging")
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "models-staging"
    assert re.fullmatch("churn-risk-batch-[0-9a-f]{8}", job["metadata"]["name"])
    pod = job["spec"]["template"]["spec"]
    deployment = yaml.safe_load((project / "deploy/base/deployment.yaml").read_text())["spec"]["template"]["spec"]
    # The artifact is fetched and verified by the Deployment's own init container, as it is there.
    assert pod["initContainers"] == deployment["initContainers"] == [init_container(project)]
    assert pod["securityContext"] == deployment["securityContext"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    (batch,) = pod["containers"]
    assert batch["command"] == ["python", "-m", "app.batch"]
    assert batch["args"] == [*ARGS[1::2][:2], "--on-error", "skip", "--progress", "log"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in batch["env"]}
    assert env["MODEL_PATH"] == "/model/model.joblib" and env["MODEL_SHA256"] == "ab" * 32
    assert not {"PORT", "MAX_REQUEST_BYTES", "MODELGEN_INPUT_LOG", "MODELGEN_WORKERS"} & set(env)
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "churn-risk-batch", "key": "access_key_id", "optional": True}
    }
    quantity = {"cpu": "2", "memory": "3Gi"}  # staging's resources
    assert batch["resources"] == {"requests": quantity, "limits": quantity}

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    done = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "-k", "1.30.0", path], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and " passed for " in done.stdout, done.stdout + done.stderr


def test_the_same_run_gets_the_same_name_and_another_run_another(capsys, project):
    first = printed(capsys, project, "job")["metadata"]["name"]
    assert printed(capsys, project, "job")["metadata"]["name"] == first
    code, out, _ = cli(
        capsys, "batch", str(project), *ARGS[:3], "s3://scores/other.parquet", "--engine", "job", "--dry-run"
    )
    assert code == 0 and yaml.safe_load(out)["metadata"]["name"] != first


def test_the_spark_application_passes_the_operator_s_schema_and_fetches_the_artifact_as_the_deployment(capsys, project):
    schema = json.loads((schema_folder("crds/sparkoperator.k8s.io") / "sparkapplication_v1beta2.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    generated = yaml.safe_load((project / "batch/sparkapplication.yaml").read_text())
    application = printed(capsys, project, "spark", "--env", "prod")
    for doc in (generated, application):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, "\n".join(errors)
    assert application["metadata"]["namespace"] == "models-prod"
    assert re.fullmatch("churn-risk-spark-[0-9a-f]{8}", application["metadata"]["name"])
    assert application["spec"]["arguments"] == [*ARGS[1::2][:2], "--on-error", "skip"]
    assert application["spec"]["mainApplicationFile"] == "local:///opt/app/app/spark_job.py"
    # The executors' init container is the Deployment's, in the Spark image (it has the same app/).
    (init,) = application["spec"]["executor"]["initContainers"]
    assert {**init, "image": "churn-risk:latest"} == init_container(project)
    assert init["image"] == application["spec"]["image"] == "churn-risk-spark:latest"


def test_the_spark_job_refuses_an_environment_promotion_pinned_to_another_version(project):
    from modelgen.batch.objects import spark_application
    from modelgen.errors import BatchError
    from modelgen.render.project import project_manifest, read_project

    files = read_project(project)
    release = {"version": "0.9.0", "sha256": "cd" * 32, "image": "sha256:" + "ef" * 32, "promotedFrom": "dev"}
    pinned = {**files, "deploy/overlays/prod/release.json": json.dumps(release).encode()}
    with project_manifest(files, str(project)) as manifest:
        assert spark_application(files, manifest, "prod", ARGS[1::2][:2])[1] == "models-prod"
        with pytest.raises(BatchError, match="prod runs churn-risk 0.9.0, and the Spark job is 2[.]3[.]1's"):
            spark_application(pinned, manifest, "prod", ARGS[1::2][:2])
        # Pinned to the project's own version (promoted as it is): the Spark job is that version's.
        same = {**release, "version": manifest.version}
        assert spark_application({**pinned, "deploy/overlays/prod/release.json": json.dumps(same).encode()},
                                 manifest, "prod", ARGS[1::2][:2])  # fmt: skip


def test_an_r_model_has_no_spark_job_nor_cluster_job_and_says_why(capsys, r_project):
    assert not (r_project / "batch").exists()
    code, _, err = cli(capsys, "batch", str(r_project), *ARGS, "--engine", "spark", "--dry-run")
    assert code == 2 and "is an R model: the Spark job is Python's" in err and "--engine local" in err
    # app/batch.R writes files only: in a pod they would go with it.
    code, _, err = cli(capsys, "batch", str(r_project), *ARGS[:-2], "--engine", "job", "--dry-run")
    assert code == 2 and "is an R model: its batch job (app/batch.R) reads and writes files only" in err
    code, _, err = cli(capsys, "batch", str(r_project), *ARGS, "--keep", "id", "--engine", "local")
    assert code == 2 and "--keep: the R batch job writes the predictions only" in err


def test_the_cluster_is_given_urls_not_paths_of_this_machine(capsys, project, tmp_path):
    for flags in (
        ["--input", str(tmp_path / "rows.csv"), "--output", "s3://scores/out.parquet"],
        ["--input", "s3://rows.csv", "--output", (tmp_path / "out.parquet").as_uri()],
        ["--input", "s3://rows.csv", "--output", "s3://out.parquet", "--on-error", "skip", "--rejected", "bad.jsonl"],
    ):
        for engine in ("job", "spark"):
            code, out, err = cli(capsys, "batch", str(project), *flags, "--engine", engine, "--dry-run")
            assert code == 2 and not out and "in the cluster, give a URL the pod reaches" in err, (flags, err)


@pytest.mark.slow  # checkov takes seconds to start
def test_checkov_passes_the_job_and_the_spark_application(capsys, project, tmp_path):
    for engine in ("job", "spark"):
        (tmp_path / f"{engine}.yaml").write_text(yaml.safe_dump(printed(capsys, project, engine)))
    done = subprocess.run(
        [BIN / "checkov", "-d", tmp_path, "--framework", "kubernetes", "--compact", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    failed = [(r["check_id"], r["resource"]) for r in report["results"]["failed_checks"]]
    assert not failed and done.returncode == 0, failed or done.stdout[-3000:]
    assert any(r["resource"].startswith("Job.") for r in report["results"]["passed_checks"])


# ---------------------------------------------------------------------------- creating them


@pytest.fixture
def api_server(tmp_path, monkeypatch) -> Iterator[KubeApi]:
    with kube_api([]) as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield api


def test_the_job_and_the_spark_application_are_created_as_printed(capsys, project, api_server):
    job = printed(capsys, project, "job", "--env", "prod")
    code, out, err = cli(capsys, "batch", str(project), *ARGS, "--engine", "job", "--env", "prod")
    assert code == 0, err
    assert out.strip() == f"Job {job['metadata']['name']} created in models-prod"
    application = printed(capsys, project, "spark")
    code, out, err = cli(capsys, "batch", str(project), *ARGS, "--engine", "spark")
    assert code == 0, err
    (job_path, sent_job), (spark_path, sent_application) = api_server.created
    assert job_path == "/apis/batch/v1/namespaces/models-prod/jobs"
    assert sent_job == job
    assert spark_path == "/apis/sparkoperator.k8s.io/v1beta2/namespaces/models-dev/sparkapplications"
    assert sent_application == application

    # The same run again: the API server refuses it, and modelgen says so in one line.
    code, _, err = cli(capsys, "batch", str(project), *ARGS, "--engine", "job", "--env", "prod")
    assert code == 2 and "Traceback" not in err
    name = job["metadata"]["name"]
    assert f'cannot create the Job in models-prod: jobs.batch "{name}" already exists (HTTP 409)' in err


def test_a_model_of_the_gitops_repository_gives_the_job_its_project_folder_gives(capsys, gitops_cache, tmp_path):
    project = _generate(MINIMAL_MANIFEST, SAMPLE, tmp_path)
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    code, _, err = cli(capsys, "generate", tmp_path / "src" / "model.yaml", "--gitops", remote.path)
    assert code == 0, err
    code, _, err = cli(capsys, "batch", "churn-risk", *ARGS, "--engine", "job", "--dry-run", "--gitops", remote.path)
    assert code == 2 and "no model 'churn-risk'" in err  # only what is merged is scored
    remote.merge("modelgen/churn-risk-0.1.0", tmp_path / "work")
    code, out, err = cli(capsys, "batch", "churn-risk", *ARGS, "--engine", "job", "--dry-run", "--gitops", remote.path)
    assert code == 0, err
    assert yaml.safe_load(out) == printed(capsys, project, "job")
