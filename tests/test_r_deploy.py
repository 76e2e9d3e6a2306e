"""`modelgen::deploy()` from R (the package under r/), installed with R CMD INSTALL and run for real."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitops_support import Remote, cli

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


def test_deploy_from_r_refuses_dates_and_missing_settings(r_lib, tmp_path):
    done = run_r(
        """
        sample$when <- as.Date("2024-01-01")
        r <- tryCatch(modelgen::deploy(model, "dated", sample, registry = tempdir(), gitops = tempdir(),
                                       owner = "a@b.example"), error = conditionMessage)
        cat(r, "\\n")
        r <- tryCatch(modelgen::deploy(model, "Bad_Name", sample), error = conditionMessage)
        cat(r, "\\n")
        """,
        r_lib,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "column 'when' holds Date values, which the R service does not serve yet" in done.stdout
    assert "name must be lower-case letters" in done.stdout


# Models as a data scientist fits them without caret or mlr, on columns named as the data came:
# what each predicts in memory, by its own library's documented call, is what the generated
# project must serve.
PLAIN_MODELS = """
suppressPackageStartupMessages({library(ranger); library(randomForest)})
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
  list(name = "flowers-forest", sample = iris[1:4], predict = function(m, x) predict(m, x, type = "prob")[, 3],
       fit = {set.seed(1); randomForest(Species ~ ., data = iris, ntree = 25)})
)
for (m in models) {
  d <- modelgen::deploy(m$fit, m$name, m$sample, registry = REGISTRY, gitops = GITOPS, owner = "jane.doe@example.com")
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
            served = [row[column] for row in csv.DictReader(f)]
        expected = (out / f"{name}.expected").read_text().split("\n")[:-1]
        if column == "label":
            assert served == expected, name
        else:
            assert [float(v) for v in served] == pytest.approx([float(e) for e in expected], rel=1e-12), name
            if output["type"] == "probabilities":
                # Probabilities, not log-odds: a binomial glm served on the link scale would fail here.
                assert all(0 <= float(v) <= 1 for v in served), name


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
