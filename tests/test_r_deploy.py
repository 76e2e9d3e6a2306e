"""`modelgen::deploy()` from R (the package under r/), installed with R CMD INSTALL and run for real."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitops_support import Remote, cli
from support import Service, wait_until
from test_service import _csv

from modelgen.api import generate

pytestmark = pytest.mark.slow  # R: the package installed, a model trained and deployed

ROOT = Path(__file__).resolve().parents[1]

TRAIN = """
suppressPackageStartupMessages({library(caret); library(ranger); library(modelgen, lib.loc = Sys.getenv("R_LIB"))})
d <- as.data.frame(palmerpenguins::penguins)
d <- d[!is.na(d$species), ]
features <- setdiff(names(d), "species")
set.seed(0)
model <- train(species ~ ., data = d, method = "ranger", preProcess = c("medianImpute", "center", "scale"),
               na.action = na.pass, trControl = trainControl(method = "none", classProbs = TRUE),
               tuneGrid = expand.grid(mtry = 2, splitrule = "gini", min.node.size = 1), num.trees = 50, seed = 0)
sample <- head(d[features], 60)
"""


@pytest.fixture(scope="module")
def r_lib(tmp_path_factory) -> Path:
    if shutil.which("R") is None:
        if os.environ.get("CI"):
            pytest.fail("R is missing: run `make system-deps`")
        pytest.skip("R is not installed")
    lib = tmp_path_factory.mktemp("r-lib")
    done = subprocess.run(["R", "CMD", "INSTALL", ROOT / "r/modelgen", "-l", lib], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return lib


def run_r(script: str, lib: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TZ": "UTC",
        "R_LIB": str(lib),
        "MODELGEN_CLI": str(Path(sys.executable).parent / "modelgen"),
        "MODELGEN_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.run(["Rscript", "-e", TRAIN + script], capture_output=True, text=True, env=env, timeout=600)


def test_deploy_from_r_uploads_and_opens_the_merge_request(r_lib, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    registry = tmp_path / "registry"
    done = run_r(
        f"""
        d <- modelgen::deploy(model, "penguin-r-deployed", sample, registry = "{registry}", gitops = "{remote.path}",
                              owner = "jane.doe@example.com", metadata = list(metrics = list(accuracy = 0.97)),
                              reference = d[features])
        cat("manifest:", d$manifest, "\n")
        print(d)
        """,
        r_lib,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Deployment penguin-r-deployed 1.0.0" in done.stdout
    branch = "modelgen/penguin-r-deployed-1.0.0"
    assert branch in remote.branches()
    assert "merge_request.create" in remote.pushes()[-1]["options"]

    artifact = registry / "penguin-r-deployed" / "1.0.0" / "model.rds"
    manifest = yaml.safe_load(remote.show(branch, "models/penguin-r-deployed/model.yaml"))
    spec = manifest["spec"]
    assert spec["artifact"]["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert (spec["runtime"], spec["framework"], spec["artifact"]["format"]) == ("r", "caret", "rds")
    assert spec["output"] == {"type": "probabilities", "classes": ["Adelie", "Chinstrap", "Gentoo"]}
    types = {c["name"]: (c["type"], c.get("nullable", False)) for c in spec["input"]}
    assert types["island"] == ("string", False) and types["year"] == ("integer", False)
    assert types["bill_length_mm"] == ("number", True)
    names = [r.split("==")[0] for r in spec["requirements"]]
    assert {"caret", "ranger", "recipes"} <= set(names) and names.index("Rcpp") < names.index("ranger")
    assert manifest["metadata"]["provenance"]["metrics"] == {"accuracy": 0.97}
    # The registry keeps the whole version; the project on the branch has its R service.
    assert sorted(p.name for p in artifact.parent.iterdir()) == ["model.rds", "model.yaml", "sample.json"]
    assert "models/penguin-r-deployed/app/worker.R" in remote.files(branch)
    # The manifest deploy() returns outlives the R session, outside its tempdir().
    kept = Path(done.stdout.split("manifest:")[1].split()[0])
    assert kept.is_file() and kept.is_relative_to(tmp_path / "cache")
    assert yaml.safe_load(kept.read_text())["spec"]["artifact"] == spec["artifact"]


def test_deploy_from_r_refuses_a_bad_name(r_lib, tmp_path):
    done = run_r(
        """
        r <- tryCatch(modelgen::deploy(model, "Bad_Name", sample), error = conditionMessage)
        cat(r, "\\n")
        """,
        r_lib,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "name must be lower-case letters" in done.stdout


# A model fitted on a Date, a POSIXct (its training rows shown in Paris time, with fractions of a
# second) and a factor, under names with spaces: deploy() ships it (its own round trip through the
# staged project included) and the service rebuilds the columns so lm's predict() gives the same.
DATED = """
set.seed(3)
n <- 120
visits <- data.frame(
  when = as.Date("2024-01-01") + sample(0:365, n, replace = TRUE),
  `checked in at` = as.POSIXct("2024-01-01", tz = "Europe/Paris") + runif(n, 0, 365 * 86400),
  `kind of day` = factor(sample(c("work day", "holiday"), n, replace = TRUE)),
  check.names = FALSE
)
visits$y <- 0.02 * as.numeric(visits$when) + 1e-5 * as.numeric(visits$`checked in at`) +
  ifelse(visits$`kind of day` == "holiday", 5, 0) + rnorm(n)
fit <- lm(y ~ as.numeric(when) + as.numeric(`checked in at`) + `kind of day`, data = visits)
features <- c("when", "checked in at", "kind of day")
d <- modelgen::deploy(fit, "visits", visits[features], registry = REGISTRY, gitops = GITOPS,
                      owner = "jane.doe@example.com", columns = list(when = list(nullable = FALSE)))
cat("shipped", d$version, "\n")
# The rows the test sends, read with R's own parsers (not the service's): what lm predicts for them.
rows <- jsonlite::fromJSON(ROWS)
rows <- data.frame(
  when = as.Date(rows$when),
  `checked in at` = as.POSIXct(rows$`checked in at`, format = "%Y-%m-%dT%H:%M:%OSZ", tz = "UTC"),
  `kind of day` = factor(rows$`kind of day`, levels = levels(visits$`kind of day`)),
  check.names = FALSE
)
writeLines(sprintf("%.17g", predict(fit, newdata = rows)), EXPECTED)
"""

DATED_ROWS = [
    {"when": "2024-03-01", "checked in at": "2024-03-01T12:30:15Z", "kind of day": "work day"},
    {"when": "2024-07-14", "checked in at": "2024-07-14T23:59:59.5Z", "kind of day": "holiday"},
    {"when": "2024-12-31", "checked in at": "2025-01-01T00:00:00Z", "kind of day": "holiday"},
]


@pytest.fixture(scope="module")
def dated_service(r_lib, tmp_path_factory):
    """The dated model shipped with deploy(), its project from the GitOps branch served over HTTP."""
    tmp_path = tmp_path_factory.mktemp("dated")
    remote = Remote.create(tmp_path / "gitops.git")
    init = subprocess.run(
        [Path(sys.executable).parent / "modelgen", "init-gitops", remote.path], capture_output=True, text=True
    )
    assert init.returncode == 0, init.stdout + init.stderr
    registry, rows, expected = tmp_path / "registry", tmp_path / "rows.json", tmp_path / "visits.expected"
    rows.write_text(json.dumps(DATED_ROWS))
    header = f'REGISTRY <- "{registry}"; GITOPS <- "{remote.path}"; ROWS <- "{rows}"; EXPECTED <- "{expected}"\n'
    done = run_r(header + DATED, r_lib, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shipped 1.0.0" in done.stdout
    branch = "modelgen/visits-1.0.0"
    archive = subprocess.run(
        ["git", "-C", remote.path, "archive", branch, "models/visits"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", tmp_path], input=archive.stdout, check=True)
    project = tmp_path / "models" / "visits"
    env = {"TZ": "Asia/Tokyo", "MODELGEN_WORKERS": "1"}  # a naive time is UTC all the same
    service = Service(project, Path(shutil.which("Rscript")), registry / "visits" / "1.0.0" / "model.rds", env=env,
                      command=["bash", "app/start.sh"])  # fmt: skip
    service.start(timeout=120)
    predicted = [float(v) for v in expected.read_text().split()]
    yield service, project, predicted
    service.stop()


def _values(response) -> list[float | None]:
    assert response.status == 200, response.body[:300]
    return response.json()["predictions"]


def test_dates_and_times_ship_and_serve_what_lm_predicts(dated_service):
    service, project, expected = dated_service
    spec = yaml.safe_load((project / "model.yaml").read_text())["spec"]
    assert spec["input"] == [
        {"name": "when", "type": "datetime", "dtype": "Date"},
        {"name": "checked in at", "type": "datetime", "dtype": "POSIXct", "nullable": True},
        {"name": "kind of day", "type": "string", "nullable": True, "categories": ["holiday", "work day"]},
    ]
    # deploy()'s sample carries ISO strings: the Paris-time instants written in UTC.
    sample = json.loads((project / "tests" / "sample.json").read_text())
    assert all(len(r["when"]) == 10 and r["checked in at"].endswith("Z") for r in sample)

    names = ["when", "checked in at", "kind of day"]
    reordered = list(reversed(names))
    payloads = {
        "list of records": DATED_ROWS,
        "dataframe_records": {"dataframe_records": DATED_ROWS},
        "dataframe_split": {
            "dataframe_split": {"columns": reordered, "data": [[r[n] for n in reordered] for r in DATED_ROWS]}
        },
        "instances as lists": {"instances": [[r[n] for n in names] for r in DATED_ROWS]},
        "inputs": {"inputs": DATED_ROWS},
    }
    for what, payload in payloads.items():
        assert _values(service.post_json(payload)) == pytest.approx(expected, rel=1e-12), what
    assert _values(service.post_json(DATED_ROWS[1])) == pytest.approx(expected[1:2], rel=1e-12)
    assert _values(service.post_csv(_csv(names, DATED_ROWS))) == pytest.approx(expected, rel=1e-12)
    answer = service.post_csv(_csv(names, DATED_ROWS), Accept="text/csv")
    assert [float(v) for v in answer.body.decode().split()[1:]] == pytest.approx(expected, rel=1e-12)

    # One instant however it is written (no offset is UTC, whatever the server's TZ): one prediction.
    first = DATED_ROWS[0]
    forms = [
        "2024-03-01T14:30:15+02:00",
        "2024-03-01T07:00:15-05:30",
        "2024-03-01 12:30:15",
        "2024-03-01T12:30:15.000Z",
    ]
    same = _values(service.post_json([dict(first, **{"checked in at": form}) for form in forms]))
    assert same == pytest.approx(expected[:1] * len(forms), rel=1e-12)
    assert _values(service.post_json(dict(first, **{"checked in at": "2024-03-01T14:30:15+02:00"}))) == pytest.approx(
        expected[:1], rel=1e-12
    )
    later = _values(service.post_json(dict(first, **{"checked in at": "2024-03-01T12:30:15+02:00"})))
    assert later != pytest.approx(expected[:1], rel=1e-12)  # two hours apart: the offset is not dropped
    # A date written as its midnight UTC (as pandas and JavaScript write one) is that date.
    assert _values(service.post_json(dict(first, when="2024-03-01T00:00:00Z"))) == pytest.approx(
        expected[:1], rel=1e-12
    )
    # A gap in a nullable datetime is scored: lm predicts NA for it, served as null.
    assert _values(service.post_json([dict(first, **{"checked in at": None})])) == [None]


def _error(response, status: int = 400) -> dict:
    assert response.status == status, response.body[:300]
    return response.json()["error"]


def test_a_bad_date_or_time_is_a_400_naming_its_column_and_row(dated_service):
    service, *_ = dated_service
    names = ["when", "checked in at", "kind of day"]
    rows = [dict(r) for r in DATED_ROWS]
    cases = [
        ("when", 2, "2024-13-01", "is not a valid date or date-time"),
        ("when", 1, "2024-02-30", "is not a valid date or date-time"),
        ("when", 0, "01/03/2024", "is not an ISO 8601 date or date-time"),
        ("when", 1, "2024-03-01T10:00:00Z", "has a time of day, but the column holds dates"),
        ("when", 1, "2024-03-01T00:00:00+02:00", "has a time of day, but the column holds dates"),
        ("checked in at", 2, "2024-03-01T25:00Z", "is not a valid date or date-time"),
        ("checked in at", 0, "yesterday", "is not an ISO 8601 date or date-time"),
        ("checked in at", 1, 1709296215, "is not a date-time (an ISO 8601 string)"),
    ]
    for column, row, value, words in cases:
        body = [dict(r) for r in rows]
        body[row][column] = value
        error = _error(service.post_json(body))
        assert (error["column"], error["row"]) == (column, row), (value, error)
        assert error["message"].startswith(f"column {column!r}, row {row}: ") and words in error["message"], error
        if isinstance(value, str):
            error = _error(service.post_csv(_csv(names, body)))
            assert (error["column"], error["row"]) == (column, row) and words in error["message"], (value, error)
    # when is required: an empty CSV cell (null) is refused, in JSON too.
    body = [dict(r) for r in rows]
    body[1]["when"] = None
    for answer in (service.post_json(body), service.post_csv(_csv(names, body))):
        error = _error(answer)
        assert (error["column"], error["row"]) == ("when", 1) and "null is not allowed" in error["message"]


def test_datetimes_are_monitored_by_their_gaps_and_logged_as_iso(dated_service, tmp_path):
    """The shipped manifest with a monitoring reference (deploy() writes none): the profile leaves the
    datetimes out, the service counts only their gaps and logs them as ISO strings in UTC."""
    shipped, project, _ = dated_service
    manifest = tmp_path / "manifest" / "model.yaml"
    manifest.parent.mkdir()
    manifest.write_text(
        (project / "model.yaml").read_text() + "  monitoring: {reference: reference.csv, sampleRate: 1}\n"
    )
    shutil.copy(project / "tests" / "sample.json", manifest.parent / "sample.json")
    names = ["when", "checked in at", "kind of day"]
    (manifest.parent / "reference.csv").write_text(_csv(names, DATED_ROWS * 20))
    monitored = generate(manifest, tmp_path / "generated").path
    contract = json.loads((monitored / "app" / "contract.json").read_text())
    features = {f["name"]: f for f in contract["monitoring"]["features"]}
    assert features["when"] == {"name": "when", "kind": "missing"}
    assert features["checked in at"] == {"name": "checked in at", "kind": "missing"}
    assert features["kind of day"]["kind"] == "categorical"

    logs = tmp_path / "inputs"
    env = {**shipped.env, "MODELGEN_INPUT_LOG": str(logs), "MODELGEN_LOG_SAMPLE_RATE": "1"}
    service = Service(monitored, shipped.python, shipped.model_path, env=env, command=shipped.command).start(
        timeout=120
    )
    try:
        row = dict(DATED_ROWS[1], **{"checked in at": "2024-07-15T01:59:59.5+02:00"})
        assert service.post_json([row, dict(row, **{"checked in at": None}), row]).status == 200
        text = wait_until(
            lambda: service.request("GET", "/metrics").body.decode(),
            lambda text: 'modelgen_feature_missing_total{feature="checked in at"} 1' in text,
            message="/metrics did not count the gap",
        )
    finally:
        service.stop()
    assert 'modelgen_feature_missing_total{feature="when"} 0' in text
    assert 'modelgen_feature_unseen_total{feature="when"} 0' in text  # a date is not an unseen category
    assert not [line for line in text.splitlines() if line.startswith('modelgen_feature_values_total{feature="when"')]
    logged = [json.loads(line) for f in sorted(logs.glob("inputs-*.jsonl")) for line in f.read_text().splitlines()]
    assert [(r["when"], r["checked in at"]) for r in logged] == [
        ("2024-07-14", "2024-07-14T23:59:59.5Z"),
        ("2024-07-14", None),
        ("2024-07-14", "2024-07-14T23:59:59.5Z"),
    ]


# Models as a data scientist fits them without caret or mlr, on columns named as the data came:
# what each predicts in memory, by its own library's documented call, is what the generated
# project must serve.
PLAIN_MODELS = """
suppressPackageStartupMessages({library(ranger); library(randomForest); library(glmnet)})
cars <- mtcars
cars$gear <- factor(cars$gear)
cars$transmission <- factor(ifelse(cars$am == 1, "manual", "automatic"))
names(cars)[names(cars) == "hp"] <- "horse power (hp)"
names(cars)[names(cars) == "wt"] <- "weight/1000 lbs"
flowers <- iris
names(flowers) <- c("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)", "species")
response <- function(m, x) predict(m, newdata = x, type = "response")
forest <- function(m, x) predict(m, data = x)$predictions
weight_hp <- c("weight/1000 lbs", "horse power (hp)")
design <- function(x) model.matrix(~ ., x)[, -1]
models <- list(
  list(name = "cars-binomial", sample = cars[weight_hp], predict = response,
       fit = glm(transmission ~ `weight/1000 lbs` + `horse power (hp)`, data = cars, family = binomial)),
  list(name = "cars-logical", sample = cars["weight/1000 lbs"], predict = response,
       fit = glm(I(am == 1) ~ `weight/1000 lbs`, data = cars, family = binomial)),
  list(name = "breaks-poisson", sample = warpbreaks[c("wool", "tension")], predict = response,
       fit = glm(breaks ~ wool + tension, data = warpbreaks, family = poisson)),
  list(name = "cars-lm", sample = cars[c("weight/1000 lbs", "gear")], predict = function(m, x) predict(m, newdata = x),
       fit = lm(mpg ~ `weight/1000 lbs` + gear, data = cars)),
  list(name = "flowers-ranger", sample = flowers[1:4], predict = function(m, x) as.character(forest(m, x)),
       fit = ranger(dependent.variable.name = "species", data = flowers, num.trees = 25, seed = 1)),
  list(name = "flowers-ranger-prob", sample = flowers[1:4], predict = function(m, x) forest(m, x)[, 3],
       fit = ranger(dependent.variable.name = "species", data = flowers, num.trees = 25, seed = 1, probability = TRUE)),
  # randomForest's formula interface cannot take names with spaces: fitted on x and y, as one must.
  list(name = "flowers-forest", sample = flowers[1:4], predict = function(m, x) predict(m, x, type = "prob")[, 3],
       fit = {set.seed(1); randomForest(x = flowers[1:4], y = flowers$species, ntree = 25)}),
  # glmnet on model.matrix(~ ., data)[, -1], as its vignette builds x: a factor becomes dummies.
  list(name = "cars-glmnet", sample = cars[c("weight/1000 lbs", "gear")],
       predict = function(m, x) predict(m, newx = design(x), type = "response")[, 1],
       fit = {set.seed(1); cv.glmnet(design(cars[c("weight/1000 lbs", "gear")]), cars$mpg, nfolds = 4)}),
  list(name = "flowers-glmnet", sample = flowers[1:4], s = "lambda.min",
       predict = function(m, x) predict(m, newx = design(x), s = "lambda.min", type = "response")[, 3, 1],
       fit = {set.seed(1); cv.glmnet(design(flowers[1:4]), flowers$species, family = "multinomial", nfolds = 4)})
)
for (m in models) {
  d <- modelgen::deploy(m$fit, m$name, m$sample, registry = REGISTRY, gitops = GITOPS, owner = "jane.doe@example.com",
                        s = m[["s"]])
  expected <- m$predict(m$fit, m$sample)
  utils::write.csv(m$sample, file.path(OUT, paste0(m$name, ".csv")), row.names = FALSE)
  expected <- if (is.numeric(expected)) sprintf("%.17g", expected) else expected
  writeLines(expected, file.path(OUT, paste0(m$name, ".expected")))
  cat(m$name, d$version, "\n")
}
"""

# What each model must ship as: its output, and which CSV column of the batch answer holds what
# the test's own predict() call gave.
SHIPPED = {
    "cars-binomial": ({"type": "probabilities", "classes": ["automatic", "manual"]}, "probability_manual"),
    "cars-logical": ({"type": "probabilities", "classes": ["FALSE", "TRUE"]}, "probability_TRUE"),
    "breaks-poisson": ({"type": "value"}, "value"),
    "cars-lm": ({"type": "value"}, "value"),
    "flowers-ranger": ({"type": "label", "classes": ["setosa", "versicolor", "virginica"]}, "label"),
    "flowers-ranger-prob": (
        {"type": "probabilities", "classes": ["setosa", "versicolor", "virginica"]},
        "probability_virginica",
    ),
    "flowers-forest": (
        {"type": "probabilities", "classes": ["setosa", "versicolor", "virginica"]},
        "probability_virginica",
    ),
    "cars-glmnet": ({"type": "value"}, "value"),
    "flowers-glmnet": (
        {"type": "probabilities", "classes": ["setosa", "versicolor", "virginica"]},
        "probability_virginica",
    ),
}


def test_plain_r_models_ship_and_serve_what_they_predict(r_lib, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    registry, out = tmp_path / "registry", tmp_path / "out"
    out.mkdir()
    header = f'REGISTRY <- "{registry}"; GITOPS <- "{remote.path}"; OUT <- "{out}"\n'
    done = run_r(header + PLAIN_MODELS, r_lib, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, (output, column) in SHIPPED.items():
        branch = f"modelgen/{name}-1.0.0"
        spec = yaml.safe_load(remote.show(branch, f"models/{name}/model.yaml"))["spec"]
        assert spec["output"] == output, name
        assert spec["task"] == ("regression" if output["type"] == "value" else "classification"), name
        assert spec["framework"] == ("glmnet" if name.endswith("-glmnet") else "stats"), name
        base = name in ("cars-binomial", "cars-logical", "breaks-poisson", "cars-lm")
        assert (spec["requirements"] == []) == base, (name, spec["requirements"])
        # The project on the branch, run as its batch job on the registry's artifact.
        project = tmp_path / "projects"
        project.mkdir(exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", remote.path, "archive", branch, f"models/{name}"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", project], input=archive.stdout, check=True)
        answers = tmp_path / f"{name}.answers.csv"
        env = {**os.environ, "MODEL_PATH": str(registry / name / "1.0.0" / "model.rds")}
        batch = subprocess.run(
            ["Rscript", project / "models" / name / "app" / "batch.R", out / f"{name}.csv", answers],
            capture_output=True,
            text=True,
            env=env,
        )
        assert batch.returncode == 0, batch.stderr
        with answers.open() as f:
            answered = {"batch": [row[column] for row in csv.DictReader(f)]}
        # And the real service over HTTP, the sample sent as JSON records and as the CSV file itself.
        sample_csv = (out / f"{name}.csv").read_text()
        types = {c["name"]: c["type"] for c in spec["input"]}
        convert = {"number": float, "integer": int, "string": str}
        records = [{k: convert[types[k]](v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(sample_csv))]
        service = Service(project / "models" / name, Path(shutil.which("Rscript")), Path(env["MODEL_PATH"]),
                          env={"MODELGEN_WORKERS": "1"}, command=["bash", "app/start.sh"])  # fmt: skip
        service.start(timeout=120)
        try:
            for how, response in (("json", service.post_json(records)), ("csv", service.post_csv(sample_csv))):
                assert response.status == 200, (name, how, response.body[:300])
                answered[how] = [_served(p, output, column) for p in response.json()["predictions"]]
        finally:
            service.stop()
        expected = (out / f"{name}.expected").read_text().split("\n")[:-1]
        for how, served in answered.items():
            if column == "label":
                assert served == expected, (name, how)
            else:
                assert [float(v) for v in served] == pytest.approx([float(e) for e in expected], rel=1e-12), (name, how)
                if output["type"] == "probabilities":
                    # Probabilities, not log-odds: a binomial glm served on the link scale would fail here.
                    assert all(0 <= float(v) <= 1 for v in served), name


def _served(prediction, output: dict, column: str):
    """The part of one served prediction that the batch job's ``column`` holds."""
    if output["type"] == "probabilities":
        return prediction["probabilities"][column.removeprefix("probability_")]
    return prediction


def test_deploy_from_r_checks_before_uploading_and_ships_the_same_bytes_once(r_lib, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    registry = tmp_path / "registry"
    done = run_r(
        f"""
        REGISTRY <- "{registry}"; GITOPS <- "{remote.path}"
        fit <- glm(am ~ wt, data = mtcars, family = binomial)
        cars <- mtcars["wt"]
        ship <- function(...) {{
          d <- modelgen::deploy(..., registry = REGISTRY, gitops = GITOPS, owner = "jane.doe@example.com")
          paste("shipped", d$version, d$message)
        }}
        said <- function(...) cat(tryCatch(ship(...), error = conditionMessage), "\\n##\\n")
        said(fit, "cars", cars, task = "regression")
        said(fit, "cars", cars, nullable = FALSE)
        said(fit, "cars", cars, metadata = list(descripton = "typo"))
        said(fit, "cars", cars, columns = list(weight = list(nullable = FALSE)))
        said(fit, "cars", cars, version = "1.0")
        cat(file.exists(file.path(REGISTRY, "cars")), "\\n##\\n")
        said(fit, "cars", cars, columns = list(wt = list(nullable = FALSE)))
        said(fit, "cars", cars, columns = list(wt = list(nullable = FALSE)))
        said(lm(mpg ~ wt + hp, data = mtcars), "cars-lm", mtcars[c("wt", "hp")],
             reference = transform(mtcars[c("wt", "hp")], hp = replace(hp, 3, NA)))
        said(fit, "cars-s", cars, s = 0.1)
        said(glmnet::glmnet(as.matrix(mtcars[c("wt", "hp")]), mtcars$mpg), "cars-net", mtcars[c("wt", "hp")])
        said(glmnet::cv.glmnet(as.matrix(mtcars[c("wt", "hp")]), mtcars$mpg, nfolds = 4), "cars-net",
             mtcars[c("wt", "hp")], s = "lambda.best")
        """,
        r_lib,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answers = done.stdout.split("\n##\n")
    assert 'task = "regression", but the model is a classifier (classes 0, 1)' in answers[0]
    assert "unknown argument(s) nullable" in answers[1] and "columns = list(age = list(nullable = FALSE))" in answers[1]
    assert "metadata has unknown key(s) descripton (allowed: description, data," in answers[2]
    assert "columns names no column of the sample: 'weight' (allowed: 'wt')" in answers[3]
    # A manifest problem is told as the argument to change, not as a line of a staged file.
    assert 'version (metadata.version): "1.0" is not valid' in answers[4] and "model.yaml" not in answers[4]
    assert answers[5].strip() == "FALSE"  # none of the refused calls uploaded anything
    assert answers[6].startswith("shipped 1.0.0")
    assert answers[7].startswith("shipped 1.0.0") and "already ships these artifact bytes" in answers[7]
    assert "s is the penalty of a glmnet or cv.glmnet model; this model takes none" in answers[9]
    assert "the glmnet fit holds a path of" in answers[10] and "say which to serve with s =" in answers[10]
    assert 's must be one penalty: "lambda.1se", "lambda.min" or a number >= 0' in answers[11]
    assert [b for b in remote.branches() if b.startswith("modelgen/cars-")] == [
        "modelgen/cars-1.0.0",
        "modelgen/cars-lm-1.0.0",
    ]
    spec = yaml.safe_load(remote.show("modelgen/cars-1.0.0", "models/cars/model.yaml"))["spec"]
    assert spec["input"] == [{"name": "wt", "type": "number"}]
    # Nullable where the training rows have a gap, required where neither they nor the sample do.
    lm_input = yaml.safe_load(remote.show("modelgen/cars-lm-1.0.0", "models/cars-lm/model.yaml"))["spec"]["input"]
    assert lm_input == [{"name": "wt", "type": "number"}, {"name": "hp", "type": "number", "nullable": True}]


def test_deploy_from_r_after_a_refused_push_takes_the_same_version_again(r_lib, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    registry = tmp_path / "registry"
    script = f"""
        fit <- lm(mpg ~ wt, data = mtcars)
        r <- tryCatch(modelgen::deploy(fit, "cars", mtcars["wt"], registry = "{registry}", gitops = "{remote.path}",
                                       owner = "jane.doe@example.com")$version, error = conditionMessage)
        cat(r, "\\n")
        """
    remote.reject()
    refused = run_r(script, r_lib, tmp_path)
    assert refused.returncode == 0, refused.stderr
    assert "modelgen generate failed" in refused.stdout
    assert sorted(p.name for p in (registry / "cars" / "1.0.0").iterdir()) == ["model.rds"]
    remote.reject(False)
    shipped = run_r(script, r_lib, tmp_path)
    assert shipped.stdout.strip() == "1.0.0", shipped.stdout + shipped.stderr
    assert sorted(p.name for p in (registry / "cars").iterdir()) == ["1.0.0"]
    assert "modelgen/cars-1.0.0" in remote.branches()
