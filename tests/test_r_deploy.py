"""`modelgen::deploy()` from R (the package under r/), installed with R CMD INSTALL and run for real."""

from __future__ import annotations

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
                              owner = "jane.doe@example.com", metadata = list(metrics = list(accuracy = 0.97)))
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
    assert "column 'when' holds dates or times" in done.stdout
    assert "name must be lower-case letters" in done.stdout
