"""The R (Plumber) service, for real: the R example trained, its project generated, the service
started with its launcher (R workers behind nginx) on 127.0.0.1 and called over HTTP.

Same contract as the Python service: every payload shape and CSV give R's own predict() values,
the Python suite's table of bad requests gets the same status codes and error shape.
"""

from __future__ import annotations

import gzip
import http.client
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import Service, free_port, wait_until
from test_service import _bad_requests, _csv, _python_follows_requests, _table_failures

from modelgen.api import generate
from modelgen.render import contract as contract_module
from modelgen.render.templates import templates_dir

pytestmark = pytest.mark.slow  # R: the example trained, its service started

ROOT = Path(__file__).resolve().parents[1]
R_ENV = {"TZ": "UTC"}


def rscript() -> str:
    found = shutil.which("Rscript")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Rscript is missing: run `make system-deps`")
        pytest.skip("R is not installed")
    return found


@pytest.fixture(scope="module")
def r_manifest(tmp_path_factory, registry) -> Path:
    out = tmp_path_factory.mktemp("penguins-r")
    done = subprocess.run(
        [rscript(), ROOT / "examples/penguins-r/train.R", "--out", out, "--registry", registry],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **R_ENV},
    )
    assert done.returncode == 0, done.stderr
    return out / "model.yaml"


@pytest.fixture(scope="module")
def r_project(r_manifest, tmp_path_factory) -> Path:
    return generate(r_manifest, tmp_path_factory.mktemp("generated-r")).path


@pytest.fixture(scope="module")
def r_model_path(r_project, tmp_path_factory) -> Path:
    """Fetched and checked by the project's init container script."""
    contract = json.loads((r_project / "app/contract.json").read_text())
    target = tmp_path_factory.mktemp("r-model") / "model.rds"
    env = {
        **os.environ,
        **R_ENV,
        "ARTIFACT_URI": contract["artifact"]["uri"],
        "ARTIFACT_SHA256": contract["artifact"]["sha256"],
        "MODEL_PATH": str(target),
    }
    done = subprocess.run(
        [rscript(), "app/fetch_artifact.R"], cwd=r_project, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "(sha256 ok)" in done.stdout
    return target


def counted_invocations(metrics: str) -> float:
    """The POST /invocations answered 200 that a /metrics text counts, every worker's added up."""
    prefix = 'modelgen_requests_total{endpoint="/invocations",method="POST",status="200"}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


def r_service(project: Path, model_path: Path, **env: str) -> Service:
    return Service(
        project,
        Path(rscript()),
        model_path,
        env={**R_ENV, "MODELGEN_WORKERS": "2", **env},
        command=["bash", "app/start.sh"],
    )


@pytest.fixture(scope="module")
def r_penguins(r_project, r_model_path):
    service = r_service(r_project, r_model_path, MAX_REQUEST_BYTES="65536").start(timeout=120)
    yield service
    service.stop()


def in_process(project: Path, model_path: Path, rows: list[dict]) -> list[list[float]]:
    """R's own predict() on the same RDS, the rows typed as the model was trained (no service code)."""
    script = """
    args <- commandArgs(trailingOnly = TRUE)
    model <- readRDS(args[1])
    rows <- jsonlite::fromJSON(args[2])
    train <- model$trainingData
    for (n in names(rows)) {
      if (is.factor(train[[n]])) rows[[n]] <- factor(rows[[n]], levels = levels(train[[n]]))
      if (is.integer(train[[n]])) rows[[n]] <- as.integer(rows[[n]])
      if (is.double(train[[n]])) rows[[n]] <- as.double(rows[[n]])
    }
    p <- predict(model, newdata = rows, type = "prob", na.action = na.pass)
    cat(jsonlite::toJSON(unname(as.matrix(p)), digits = NA))
    """
    data = project.parent / "rows.json"
    data.write_text(json.dumps(rows))
    done = subprocess.run(
        [rscript(), "-e", script, model_path, data],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **R_ENV},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def probabilities(response, classes: list[str]) -> list[list[float]]:
    assert response.status == 200, response.body[:500]
    return [[p["probabilities"][c] for c in classes] for p in response.json()["predictions"]]


def test_every_payload_shape_gives_r_s_own_predictions(r_penguins, r_project, r_model_path):
    sample = json.loads((r_project / "tests/sample.json").read_text())
    contract = json.loads((r_project / "app/contract.json").read_text())
    classes, names = contract["output"]["classes"], [c["name"] for c in contract["columns"]]
    expected = in_process(r_project, r_model_path, sample)
    reordered = list(reversed(names))
    payloads = {
        "list of records": sample,
        "dataframe_records": {"dataframe_records": sample},
        "dataframe_split": {
            "dataframe_split": {"columns": reordered, "data": [[r[n] for n in reordered] for r in sample]}
        },
        "instances as records": {"instances": sample},
        "instances as lists": {"instances": [[r[n] for n in names] for r in sample]},
        "inputs": {"inputs": sample},
    }
    for what, payload in payloads.items():
        assert probabilities(r_penguins.post_json(payload), classes) == expected, what
    one = r_penguins.post_json(sample[0])
    assert probabilities(one, classes) == expected[:1]
    labels = [p["label"] for p in r_penguins.post_json(sample).json()["predictions"]]
    assert labels == [classes[row.index(max(row))] for row in expected]

    csv_answer = r_penguins.post_csv(_csv(names, sample), Accept="text/csv")
    assert csv_answer.status == 200 and csv_answer.headers["Content-Type"].startswith("text/csv")
    lines = csv_answer.body.decode().splitlines()
    assert lines[0] == ",".join(["label", *(f"probability_{c}" for c in classes)])
    assert [[float(x) for x in line.split(",")[1:]] for line in lines[1:]] == expected
    csv_json = r_penguins.post_csv(_csv(names, sample))
    assert probabilities(csv_json, classes) == expected


def test_the_python_table_of_bad_requests_gets_the_same_answers(r_penguins, r_project):
    sample = json.loads((r_project / "tests/sample.json").read_text())
    columns = json.loads((r_project / "app/contract.json").read_text())["columns"]
    failures = _table_failures(r_penguins, _bad_requests(sample, columns))
    assert not failures, "\n".join(failures)
    version = json.loads((r_project / "app/contract.json").read_text())["version"]
    for method, path, status in (("GET", "/nope", 404), ("GET", "/invocations", 405), ("POST", "/ping", 405)):
        got = r_penguins.request(method, path, b"" if method == "POST" else None)
        assert got.status == status and set(got.json()["error"]) == {"message", "column", "row"}
        assert got.headers.get("X-Model-Version") == version  # as every answer, errors included
    assert r_penguins.post_json(sample[:1]).headers.get("X-Model-Version") == version


HOSTILE_CASES = [
    "number too large for a float",
    "JSON in latin-1",
    "gzip-compressed JSON",
    "NUL byte in JSON",
    "CSV in UTF-16",
    "gzip-compressed CSV",
    "NUL byte in a CSV number",
    "split with columns null",
    "value nested 500 deep",
    "duplicate key",
    "integer out of range",
    "CSV integer out of range",
    "value nested 30,000 deep",
]


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_a_hostile_body_gets_the_python_answer(r_penguins, r_project, case):
    """Each was a 500, a 200 (Inf scored; a year of 1e30 scored as NA; columns null) or the wrong 400
    (a duplicate key: "missing column 'NA'") from R; the Python service's answer is the reference."""
    sample = json.loads((r_project / "tests/sample.json").read_text())
    columns = json.loads((r_project / "app/contract.json").read_text())["columns"]
    table = {c[0]: c for c in _bad_requests(sample, columns) + _python_follows_requests(sample, columns)}
    _, ctype, body, status, column, row, words = table[case]
    data = body if isinstance(body, bytes) else body.encode()
    got = r_penguins.request("POST", "/invocations", data, {"Content-Type": ctype})
    assert got.status == status, got.body[:300]
    error = got.json()["error"]
    assert (error["column"], error["row"]) == (column, row) and words in error["message"], error


def test_json_in_utf_16_or_utf_32_is_scored_like_utf_8(r_penguins, r_project):
    """Python's json.loads reads JSON in any of the encodings RFC 4627 allows (found from the first
    bytes); R answered 500 for them."""
    sample = json.loads((r_project / "tests/sample.json").read_text())
    text = json.dumps(sample)
    expected = r_penguins.post_json(sample)
    assert expected.status == 200
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"):
        got = r_penguins.request("POST", "/invocations", text.encode(encoding), {"Content-Type": "application/json"})
        assert (got.status, got.json()) == (200, expected.json()), encoding
    gzipped = gzip.compress(text.encode(), mtime=0)
    got = r_penguins.request(
        "POST", "/invocations", gzipped, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert got.status == 400 and "not valid JSON" in got.json()["error"]["message"]  # as Python: never decoded


def test_a_nul_byte_in_a_csv_text_cell_is_scored_as_an_unknown_category(r_penguins, r_project):
    """Python's csv reader keeps a NUL in its cell; R strings cannot hold one (a 500 before)."""
    sample = json.loads((r_project / "tests/sample.json").read_text())
    names = [c["name"] for c in json.loads((r_project / "app/contract.json").read_text())["columns"]]
    row = sample[1]
    with_nul = r_penguins.post_csv(_csv(names, [dict(row, island="Dr\0eam")]))
    unknown = r_penguins.post_csv(_csv(names, [dict(row, island="Dr-eam")]))
    assert with_nul.status == 200 and with_nul.json() == unknown.json()


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends for one HTTP/1.0 request, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def assert_head_answers_like_get(service: Service) -> None:
    for path, status in (("/ping", 200), ("/metadata", 200), ("/schema", 200), ("/openapi.json", 200),
                         ("/invocations", 405), ("/nope", 404)):  # fmt: skip
        get = service.request("GET", path)
        answer = _raw_exchange(service.port, f"HEAD {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split(b" ")[1] == str(status).encode(), (path, head)
        assert body == b"", (path, body[:100])
        headers = {k.lower(): v for k, v in (line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:])}
        assert (headers["content-type"], int(headers["content-length"])) == (get.headers["Content-Type"], len(get.body))
    answer = _raw_exchange(service.port, b"HEAD /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")


def test_head_answers_like_get_without_a_body(r_penguins):
    """HEAD /ping was a 405 from R (a readiness probe or a load balancer may send HEAD); Flask answers it
    with the GET's headers and no body."""
    assert_head_answers_like_get(r_penguins)


def test_a_405_names_the_allowed_methods_and_options_answers_them(r_penguins):
    """RFC 9110: a 405 carries Allow; R sent none. OPTIONS answers with Allow as Flask does."""
    allowed = {"/invocations": {"POST", "OPTIONS"}}
    for path in ("/ping", "/metadata", "/schema", "/openapi.json", "/metrics"):
        allowed[path] = {"GET", "HEAD", "OPTIONS"}
    for path, methods in allowed.items():
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - methods:
            got = r_penguins.request(method, path, b"" if method in ("POST", "PUT", "PATCH") else None)
            assert got.status == 405 and set(got.json()["error"]) == {"message", "column", "row"}, (method, path)
            assert {m.strip() for m in got.headers["Allow"].split(",")} == methods, (method, path)
        got = r_penguins.request("OPTIONS", path)
        assert got.status == 200 and {m.strip() for m in got.headers["Allow"].split(",")} == methods, path


def test_an_abandoned_long_request_does_not_hold_the_next_one(r_project, r_model_path):
    """A client that sends a large body and goes away must not leave the next requests queued behind
    its worker: nginx used to close the upstream connection on the client's abort, so least_conn saw
    the still-scoring worker as free and sent it the next request (one waited 3.3 s)."""
    contract = json.loads((r_project / "app/contract.json").read_text())
    names = [c["name"] for c in contract["columns"]]
    sample = json.loads((r_project / "tests/sample.json").read_text())
    limit = contract["maxRequestBytes"]
    lines = _csv(names, sample).splitlines()
    rows = lines[1:] * ((limit - 1000) // len("\n".join(lines[1:]) + "\n"))
    body = ("\n".join([lines[0], *rows]) + "\n").encode()  # just under the limit: seconds of scoring
    assert len(body) <= limit
    service = r_service(r_project, r_model_path, MODELGEN_WORKERS="2").start(timeout=120)
    try:

        def scored_rows() -> float:
            text = service.request("GET", "/metrics").body.decode()
            (line,) = [line for line in text.splitlines() if line.startswith("modelgen_predicted_rows_total ")]
            return float(line.rsplit(" ", 1)[1])

        assert service.post_json(sample[:1]).status == 200
        before = wait_until(scored_rows, lambda n: n == 1, message="/metrics did not count the first row")
        head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as slow:
            slow.sendall(head.encode() + body)
            slow.settimeout(1)
            with pytest.raises(TimeoutError):  # still scoring after a second: the client gives up
                slow.recv(1)
        # Each short request must be answered within 5 s (one row takes milliseconds), whichever worker
        # nginx picks: alternating between the two, some went to the one still scoring the abandoned body.
        for i in range(6):
            connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
            try:
                connection.request("POST", "/invocations", json.dumps(sample[:1]), {"Content-Type": "application/json"})
                answer = connection.getresponse()
                assert answer.status == 200 and answer.read()
            except TimeoutError:
                pytest.fail(f"short request {i} waited over 5 s behind the abandoned request")
            finally:
                connection.close()
        # The abandoned body was being scored all that time: its rows are counted only after the short ones.
        assert scored_rows() == before + 6
        wait_until(scored_rows, lambda n: n == before + 6 + len(rows), timeout=300,
                   message="the abandoned request was not scored")  # fmt: skip
    finally:
        service.stop()


def test_other_endpoints_and_metrics_across_workers(r_penguins, r_project):
    contract = json.loads((r_project / "app/contract.json").read_text())
    metadata = r_penguins.request("GET", "/metadata").json()
    assert (metadata["name"], metadata["version"]) == (contract["name"], contract["version"])
    assert metadata["artifact"]["sha256"] == contract["artifact"]["sha256"] and "secret" not in metadata["artifact"]
    assert metadata["libraries"]["caret"] == "6.0-93" or metadata["libraries"]["caret"].startswith("6.")
    schema = r_penguins.request("GET", "/schema").json()
    assert schema["input"]["required"] == [c["name"] for c in contract["columns"]]
    # sex is strict (an enum, null allowed); island lists what training saw but accepts others.
    assert schema["input"]["properties"]["sex"]["enum"] == ["female", "male", None]
    assert schema["input"]["properties"]["island"]["x-known-values"] == ["Biscoe", "Dream", "Torgersen"]
    assert r_penguins.request("GET", "/openapi.json").json()["info"]["title"] == contract["name"]
    assert r_penguins.request("GET", "/ping").json() == {"status": "ok"}

    def count() -> float:
        return counted_invocations(r_penguins.request("GET", "/metrics").body.decode())

    # Each worker writes its counts 0.2 s after a request: wait for those of earlier tests' requests first.
    before = r_penguins.answered[("POST", "/invocations", 200)]
    wait_until(count, lambda n: n == before, message=f"/metrics did not count the {before} earlier requests")
    sample = json.loads((r_project / "tests/sample.json").read_text())
    for _ in range(12):  # nginx spreads these over both workers; /metrics adds both up
        assert r_penguins.post_json(sample[:1]).status == 200
    wait_until(count, lambda n: n == before + 12, message=f"/metrics did not count {before} + 12 requests")
    text = r_penguins.request("GET", "/metrics").body.decode()
    assert f'modelgen_model_info{{name="{contract["name"]}"' in text
    assert "modelgen_request_duration_seconds_bucket" in text


def test_a_tampered_artifact_stops_start_up(r_project, r_model_path, tmp_path):
    tampered = tmp_path / "model.rds"
    tampered.write_bytes(r_model_path.read_bytes() + b"\0")
    done = subprocess.run(
        ["bash", "app/start.sh"],
        cwd=r_project,
        env={**os.environ, **R_ENV, "MODEL_PATH": str(tampered), "PORT": str(free_port()), "HOST": "127.0.0.1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert "refusing to start" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_one_worker_serves_without_nginx(r_project, r_model_path):
    service = r_service(r_project, r_model_path, MODELGEN_WORKERS="1").start(timeout=120)
    try:
        sample = json.loads((r_project / "tests/sample.json").read_text())
        assert service.post_json(sample).status == 200
        big = service.post_json([dict(sample[0], island="x" * 11_000_000)])
        assert big.status == 413 and big.json()["error"]["message"].startswith("request body over the limit")
        # Without nginx in front, httpuv itself must leave the body out of a HEAD answer.
        assert_head_answers_like_get(service)
    finally:
        service.stop()


def test_the_project_s_own_smoke_tests_pass(r_project, r_model_path):
    done = subprocess.run(
        [rscript(), "tests/smoke.R"],
        cwd=r_project,
        env={**os.environ, **R_ENV, "MODEL_PATH": str(r_model_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 passed" in done.stdout


def test_lock_files_read_back_with_their_tools(r_manifest, tmp_path):
    """packrat reads the packrat.lock; renv.lock has renv's layout (renv is not in Debian)."""
    project = generate(r_manifest, tmp_path / "packrat").path
    lock = project / "packrat.lock"
    script = (
        "l <- packrat:::readLockFile(commandArgs(TRUE)[1]); cat(l$r_version, length(l$packages), '\\n'); "
        "v <- setNames(vapply(l$packages, `[[`, '', 'version'), vapply(l$packages, `[[`, '', 'name')); "
        "cat(v[['caret']], v[['plumber']], '\\n'); cat(names(v)[1:3], '\\n')"
    )
    done = subprocess.run([rscript(), "-e", script, lock], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, second, third = done.stdout.splitlines()
    assert third.split() == ["R6", "Rcpp", "cli"]  # dependencies first: packrat installs in file order
    requirements = len(json.loads((project / "app/contract.json").read_text())["requirements"])
    assert first.split()[0] == "4.2.2" and int(first.split()[1]) >= requirements
    assert second.split() == ["6.0-93", "1.2.1"]

    renv_manifest = tmp_path / "renv-model" / "model.yaml"
    shutil.copytree(r_manifest.parent, renv_manifest.parent)
    renv_manifest.write_text(r_manifest.read_text().replace("  rVersion:", "  lockfile: renv\n  rVersion:"))
    project = generate(renv_manifest, tmp_path / "renv").path
    assert not (project / "packrat.lock").exists()
    renv = json.loads((project / "renv.lock").read_text())
    assert renv["R"] == {"Version": "4.2.2", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]}
    assert renv["Packages"]["caret"] == {
        "Package": "caret",
        "Version": "6.0-93",
        "Source": "Repository",
        "Repository": "CRAN",
    }
    assert "renv::restore" in (project / "Dockerfile").read_text()


KINDS = r"""
app <- commandArgs(TRUE)[1]
for (part in c("payload.R", "model.R")) source(file.path(app, part))
suppressPackageStartupMessages({library(recipes); library(mlr)})
d <- as.data.frame(palmerpenguins::penguins)
d <- d[complete.cases(d), c("species", "bill_length_mm", "flipper_length_mm", "body_mass_g", "sex")]
d$species <- droplevels(d$species)
two <- d[d$species != "Gentoo", ]
two$species <- droplevels(two$species)
x <- d[1:40, -1]
set.seed(0)
check <- function(what, model, classes, expected, frame = x) {
  got <- predictor_for(model, list(type = "probabilities", classes = as.list(classes)))$predict(frame)
  probs <- sapply(got$cells, as.numeric)
  expected <- matrix(as.numeric(as.matrix(expected)), nrow = nrow(frame))
  stopifnot(isTRUE(all.equal(unname(probs), expected, tolerance = 1e-12)))
  cat("ok", what, "\n")
}
glm_model <- glm(species ~ ., data = two, family = binomial())
p <- predict(glm_model, newdata = two[1:40, -1], type = "response")
check("glm", glm_model, levels(two$species), cbind(1 - p, p), two[1:40, -1])
rg <- ranger::ranger(species ~ ., data = d, probability = TRUE, num.trees = 30, seed = 1)
check("ranger", rg, levels(d$species), predict(rg, data = x)$predictions)
rf <- randomForest::randomForest(species ~ ., data = d, ntree = 30)
check("randomForest", rf, levels(d$species), predict(rf, newdata = x, type = "prob"))
task <- makeClassifTask(data = d, target = "species")
wrapped <- train(makeLearner("classif.rpart", predict.type = "prob"), task)
check("mlr", wrapped, levels(d$species), getPredictionProbabilities(predict(wrapped, newdata = x)))
rec <- prep(step_normalize(recipe(species ~ ., data = d), all_numeric_predictors()), training = d)
fit <- ranger::ranger(species ~ ., data = bake(rec, new_data = d), probability = TRUE, num.trees = 30, seed = 1)
bundle <- list(recipe = rec, model = fit)
check("recipe + model", bundle, levels(d$species), predict(fit, data = bake(rec, new_data = x))$predictions)
declared <- list(type = "probabilities", classes = list("a", "b", "c"))
wrong <- tryCatch(predictor_for(rg, declared), artifact_error = conditionMessage)
stopifnot(grepl("the model's classes are Adelie, Chinstrap, Gentoo", wrong))
cat("ok classes checked\n")
"""


def test_model_kinds_predict_like_their_own_predict(r_project):
    """glm, ranger, randomForest, mlr WrappedModel and a recipe bundle, through the service's dispatch."""
    done = subprocess.run(
        [rscript(), "-e", KINDS, r_project / "app"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **R_ENV},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(" ", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("ok")] == [
        "glm",
        "ranger",
        "randomForest",
        "mlr",
        "recipe + model",
        "classes checked",
    ]


def test_monitoring_counts_logs_and_feeds_the_drift_job(r_project, r_model_path, tmp_path, capsys):
    """The R service's drift signals: the same counters and input log as the Python service's."""
    import numpy as np
    import pandas as pd
    from gitops_support import cli
    from test_drift import drifted

    sample = json.loads((r_project / "tests/sample.json").read_text())
    rows = pd.DataFrame(sample * 60)  # 1,200 rows like the ones the model knows
    live = drifted(rows)  # flipper +25%, 40% of body mass missing, island "Atlantis" in ~15%
    records = live.astype(object).where(live.notna(), None).to_dict("records")
    for record in records:
        record["year"] = int(record["year"])
    logs = tmp_path / "inputs"
    service = r_service(r_project, r_model_path, MODELGEN_INPUT_LOG=str(logs), MODELGEN_LOG_SAMPLE_RATE="1")
    service.start(timeout=120)
    try:
        for start in range(0, len(records), 100):
            assert service.post_json(records[start : start + 100]).status == 200
        # A worker writes its counts (requests and inputs together) 0.2 s after a request.
        posts = service.answered[("POST", "/invocations", 200)]
        text = wait_until(
            lambda: service.request("GET", "/metrics").body.decode(),
            lambda text: counted_invocations(text) == posts,
            message=f"/metrics did not count the {posts} requests",
        )
    finally:
        service.stop()

    def value(line_start: str) -> float:
        (line,) = [line for line in text.splitlines() if line.startswith(line_start)]
        return float(line.rsplit(" ", 1)[1])

    atlantis = sum(r["island"] == "Atlantis" for r in records)
    assert value('modelgen_feature_unseen_total{feature="island"}') == atlantis > 0
    missing_mass = sum(r["body_mass_g"] is None for r in records)
    assert value('modelgen_feature_missing_total{feature="body_mass_g"}') == missing_mass
    flipper = [line for line in text.splitlines() if line.startswith('modelgen_feature_values_total{feature="flipper')]
    present = sum(r["flipper_length_mm"] is not None for r in records)
    assert len(flipper) == 10 and sum(float(line.rsplit(" ", 1)[1]) for line in flipper) == present
    predicted = [line for line in text.splitlines() if line.startswith("modelgen_predictions_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in predicted) == len(records)
    logged = [json.loads(line) for f in sorted(logs.glob("inputs-*.jsonl")) for line in f.read_text().splitlines()]
    assert len(logged) == len(records) and {"__ts", "__prediction"} <= set(logged[0])
    # The drift job reads what R logged like what Python logs.
    profile = r_project / "deploy/base/monitoring/profile.json"
    code, out, err = cli(capsys, "monitor", "penguin-species-r", "--profile", profile, "--live", logs,
                         "--out", tmp_path / "report")  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "drift-report.json").read_text())
    assert {"island", "flipper_length_mm", "body_mass_g"} <= set(report["drifted"])
    assert np.isclose(sum(report["features"][0]["live"].values()), 1.0)


VALUE_FORMS = r"""
args <- commandArgs(TRUE)
source(file.path(args[1], "payload.R"))
spec <- jsonlite::read_json(args[2])
schema <- input_schema(spec$columns, spec$values)
for (case in spec$cases) {
  body <- charToRaw(case$body)
  out <- tryCatch(
    {
      values <- if (case$csv) schema$from_csv(body) else schema$from_json(body)
      list(values = lapply(values, function(v) as.list(ifelse(is.na(v), NA, v))))
    },
    bad_request = function(err) list(column = err$column, row = err$row)
  )
  cat(as.character(jsonlite::toJSON(out, auto_unbox = TRUE, null = "null", na = "null")), "\n")
}
"""


def test_both_runtimes_take_the_accepted_value_forms_from_the_contract(tmp_path):
    """Change the contract's ``values`` and both services follow: the forms are data, not code."""
    columns = [contract_module.column({"name": "n", "type": "integer", "nullable": True})]
    columns.append(contract_module.column({"name": "b", "type": "boolean"}))
    values = {
        "integralFloats": False,
        "csv": {"null": "NA", "true": ["yes"], "false": ["no"]},
        "datetime": contract_module.VALUES["datetime"],
    }
    cases = [
        {"csv": True, "body": "n,b\nNA,yes\n3,no\n"},  # accepted: null and the booleans as declared
        {"csv": True, "body": "n,b\n3.0,yes\n"},  # no integral floats
        {"csv": True, "body": "n,b\n3,true\n"},  # "true" is not one of the forms
        {"csv": True, "body": "n,b\n,yes\n"},  # "" is a value (not a number), not null
        {"csv": False, "body": '[{"n": 2.0, "b": true}]'},
        {"csv": False, "body": '[{"n": 2, "b": false}, {"n": null, "b": true}]'},
    ]
    r_answers, python_answers = _both_runtimes(tmp_path, columns, values, cases, _plain_values)
    assert python_answers == [
        {"values": {"n": [None, 3], "b": [True, False]}},
        {"column": "n", "row": 0},
        {"column": "b", "row": 0},
        {"column": "n", "row": 0},
        {"column": "n", "row": 0},
        {"values": {"n": [2, None], "b": [False, True]}},
    ]
    assert r_answers == python_answers


def _both_runtimes(tmp_path, columns, values, cases, python_values) -> tuple[list, list]:
    """Each case (a JSON or CSV body) read by both services' payload code under one contract: R's
    answers (VALUE_FORMS) and Python's, an error as its column and row, else ``python_values(frame)``."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"columns": columns, "values": values, "cases": cases}))
    app = templates_dir() / "r-model" / "{{cookiecutter.name}}" / "app"
    done = subprocess.run(
        [rscript(), "-e", VALUE_FORMS, app, spec],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **R_ENV},
    )
    assert done.returncode == 0, done.stderr
    r_answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    sys.path.insert(0, str(templates_dir() / "python-model" / "{{cookiecutter.name}}"))
    try:
        payload = importlib.import_module("app.payload")
    finally:
        sys.path.pop(0)
    schema = payload.InputSchema(columns, values)
    python_answers = []
    for case in cases:
        try:
            frame = (schema.from_csv if case["csv"] else schema.from_json)(case["body"].encode())
        except payload.BadRequest as err:
            python_answers.append({"column": err.column, "row": err.row})
        else:
            python_answers.append({"values": python_values(frame)})
    return r_answers, python_answers


def _plain_values(frame) -> dict[str, list]:
    return {n: [None if _missing(v) else v for v in frame[n].tolist()] for n in frame.columns}


def _instants(frame) -> dict[str, list]:
    """Column t as seconds since 1970 UTC, as R's answers give them."""
    return {"t": [None if s is None or s != s else s.timestamp() for s in frame["t"].tolist()]}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def test_both_runtimes_take_the_datetime_form_from_the_contract(tmp_path):
    """A contract whose values.datetime allows dates only: both services refuse a time, and agree on
    the instants they accept (R's as seconds since 1970 UTC, pandas' naive UTC timestamps)."""
    columns = [contract_module.column({"name": "t", "type": "datetime", "nullable": True})]
    values = {**contract_module.VALUES, "datetime": "[0-9]{4}-[0-9]{2}-[0-9]{2}"}
    cases = [
        {"csv": False, "body": '[{"t": "2024-03-01"}, {"t": null}]'},
        {"csv": True, "body": "t\n2024-03-01\n1969-12-31\n"},
        {"csv": False, "body": '[{"t": "2024-03-01"}, {"t": "2024-03-01T10:00Z"}]'},
        {"csv": True, "body": "t\n2024-03-01 10:00\n"},
        {"csv": False, "body": '[{"t": "2024-02-30"}]'},
    ]
    r_answers, python_answers = _both_runtimes(tmp_path, columns, values, cases, _instants)
    day = 1709251200.0  # 2024-03-01T00:00:00Z
    assert python_answers == [
        {"values": {"t": [day, None]}},
        {"values": {"t": [day, -86400.0]}},
        {"column": "t", "row": 1},
        {"column": "t", "row": 0},
        {"column": "t", "row": 0},
    ]
    assert r_answers == python_answers


DATETIME_FORMS = r"""
args <- commandArgs(TRUE)
source(file.path(args[1], "payload.R"))
spec <- jsonlite::read_json(args[2])
schema <- input_schema(spec$columns, spec$values)
for (case in spec$cases) {
  body <- charToRaw(enc2utf8(case$body))
  out <- tryCatch(
    {
      values <- if (case$csv) schema$from_csv(body) else schema$from_json(body)
      list(classes = lapply(values, function(v) class(v)[1]), zone = attr(values$at, "tzone"),
           values = lapply(values, function(v) as.list(ifelse(is.na(v), NA, as.numeric(v)))))
    },
    bad_request = function(err) list(column = err$column, row = err$row, message = err$message)
  )
  cat(as.character(jsonlite::toJSON(out, auto_unbox = TRUE, null = "null", na = "null", digits = NA)), "\n")
}
"""


def test_iso_8601_dates_and_times_are_read_as_the_instants_they_name(tmp_path):
    """Every form a client may write a datetime in (an offset or Z, none for UTC, a space for the T,
    minutes only, fractions of a second) is one instant, in JSON and CSV; a Date column takes a day
    (or its midnight UTC); anything else is a 400 naming the cell."""
    from datetime import UTC, date, datetime

    def seconds(*parts) -> float:
        return datetime(*parts, tzinfo=UTC).timestamp()

    def days(*parts) -> int:
        return (date(*parts) - date(1970, 1, 1)).days

    columns = [
        contract_module.column({"name": "day of visit", "type": "datetime", "dtype": "Date"}),
        contract_module.column({"name": "at", "type": "datetime", "nullable": True}),  # no dtype: POSIXct
    ]
    names = ["day of visit", "at"]
    forms = {
        "2024-03-01T12:30:15Z": seconds(2024, 3, 1, 12, 30, 15),
        "2024-03-01T14:30:15+02:00": seconds(2024, 3, 1, 12, 30, 15),
        "2024-03-01T07:00:15-05:30": seconds(2024, 3, 1, 12, 30, 15),
        "2024-03-01 12:30:15": seconds(2024, 3, 1, 12, 30, 15),
        "2024-03-01T12:30": seconds(2024, 3, 1, 12, 30),
        "2024-03-01T12:30:15.25Z": seconds(2024, 3, 1, 12, 30, 15) + 0.25,
        "2024-03-01": seconds(2024, 3, 1),
        "2024-02-29T23:30:00-01:00": seconds(2024, 3, 1, 0, 30),
        "1969-12-31T23:59:59Z": -1.0,
    }
    records = [{"day of visit": "2024-03-01", "at": text} for text in forms]
    records[1]["day of visit"] = "2024-03-01T00:00:00.000Z"  # a date as pandas or JavaScript writes one
    records[2]["at"] = None
    expected_at = list(forms.values())
    expected_at[2] = None
    bad = [
        ("day of visit", "2024-13-01", "is not a valid date or date-time"),
        ("day of visit", "2024-03-01T10:00:00Z", "has a time of day, but the column holds dates"),
        ("day of visit", None, "null is not allowed"),
        ("at", "2024-03-01T12:30:61Z", "is not a valid date or date-time"),
        ("at", "2024-03-01T12", "is not an ISO 8601 date or date-time"),
        ("at", "1 March 2024", "is not an ISO 8601 date or date-time"),
        ("at", 1709296215, "is not a date-time (an ISO 8601 string)"),
    ]
    cases = [{"csv": False, "body": json.dumps(records)}, {"csv": True, "body": _csv(names, records)}]
    for column, value, _ in bad:
        body = [dict(r) for r in records[:3]]
        body[2][column] = value
        cases.append({"csv": False, "body": json.dumps(body)})
        if not isinstance(value, int):  # a CSV cell is text (an empty one null)
            cases.append({"csv": True, "body": _csv(names, body)})
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"columns": columns, "values": contract_module.VALUES, "cases": cases}))
    app = templates_dir() / "r-model" / "{{cookiecutter.name}}" / "app"
    done = subprocess.run(
        [rscript(), "-e", DATETIME_FORMS, app, spec],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": "Asia/Tokyo"},  # the server's zone changes nothing
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for answer in answers[:2]:  # JSON, then CSV
        assert answer["classes"] == {"day of visit": "Date", "at": "POSIXct"} and answer["zone"] == "UTC"
        assert answer["values"]["day of visit"] == [days(2024, 3, 1)] * len(forms)
        assert answer["values"]["at"] == expected_at
    errors = answers[2:]
    wanted = [(column, words) for column, value, words in bad for _ in range(1 if isinstance(value, int) else 2)]
    assert len(errors) == len(wanted)
    for error, (column, words) in zip(errors, wanted, strict=True):
        assert (error["column"], error["row"]) == (column, 2), error
        assert error["message"].startswith(f"column {column!r}, row 2: ") and words in error["message"], error
