"""Any column name, end to end: the names scikit-learn's datasets, pandas and R data.frames use
(spaces, '/', '%', parentheses, quotes, backslashes, commas, non-ASCII) go through the manifest,
both services' JSON and CSV parsing, their errors, /schema, /openapi.json, /metrics, the input log
and the PrometheusRule exactly as written."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import joblib
import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import Service, schema_folder, sha256_of, wait_until

from modelgen.api import generate
from modelgen.manifest import load
from modelgen.manifest.writer import dump_manifest

HARD = [
    "sepal length (cm)",
    "od280/od315_of_diluted_wines",
    "Größe %",
    "1st-rank",
    "a.b",
    'with "quotes"',
    "back\\slash",
    "comma, inside",
    "emoji 🐧",
    " padded ",  # its own spaces: a CSV header cell is matched exactly before padding is stripped
]
CATEGORICAL = "日本語"
NAMES = [*HARD, CATEGORICAL]
KINDS = ["a", "b", "c"]


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(i, 1 + i / 10, rows).round(3) for i, name in enumerate(HARD)}
    data[CATEGORICAL] = rng.choice(KINDS, rows)
    return pd.DataFrame(data)


def manifest_doc(runtime: str, artifact: Path, requirements: list[str], folder: Path) -> dict:
    train = frame(200, 0)
    train.to_csv(folder / "reference.csv", index=False)
    sample = frame(5, 1).to_dict("records")
    (folder / "sample.json").write_text(json.dumps(sample, ensure_ascii=False), "utf-8")
    columns = [{"name": n, "type": "number", "nullable": True} for n in HARD]
    columns.append({"name": CATEGORICAL, "type": "string", "nullable": True, "categories": KINDS})
    return {
        "apiVersion": "modelgen/v1",
        "kind": "Model",
        "metadata": {"name": f"hard-names-{runtime}", "version": "1.0.0", "owner": "jane.doe@example.com"},
        "spec": {
            "runtime": runtime,
            "framework": "sklearn" if runtime == "python" else "stats",
            "task": "regression",
            "artifact": {"uri": f"file://{artifact}", "sha256": sha256_of(artifact), "format": artifact.suffix[1:]},
            "requirements": requirements,
            "input": columns,
            "output": {"type": "value"},
            "sample": "sample.json",
            "monitoring": {"reference": "reference.csv", "sampleRate": 1},
        },
    }


def test_hard_names_are_a_valid_manifest_kept_exactly(tmp_path):
    artifact = tmp_path / "model.joblib"
    artifact.write_bytes(b"not read by validation")
    doc = manifest_doc("python", artifact, ["scikit-learn==1.5.2"], tmp_path)
    dump_manifest(doc, tmp_path / "model.yaml")
    manifest = load(tmp_path / "model.yaml")
    assert [c.name for c in manifest.columns] == NAMES


@pytest.fixture(scope="module")
def python_model(tmp_path_factory):
    """A scikit-learn pipeline selecting every column by its exact name; its generated project."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder = tmp_path_factory.mktemp("hard-names")
    train = frame(200, 0)
    target = train[HARD].sum(axis=1) + train[CATEGORICAL].map({"a": 0, "b": 1, "c": 5})
    features = ColumnTransformer(
        [("num", SimpleImputer(), HARD), ("cat", OneHotEncoder(handle_unknown="ignore"), [CATEGORICAL])]
    )
    model = make_pipeline(features, Ridge()).fit(train, target)
    artifact = folder / "model.joblib"
    joblib.dump(model, artifact)
    doc = manifest_doc("python", artifact, [f"scikit-learn=={metadata.version('scikit-learn')}"], folder)
    dump_manifest(doc, folder / "model.yaml")
    return model, artifact, generate(folder / "model.yaml", folder / "out").path


def test_the_prometheus_rule_quotes_names_for_promql_and_yaml(python_model):
    _, _, project = python_model
    rule = yaml.safe_load((project / "deploy/base/prometheusrule.yaml").read_text("utf-8"))
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "ModelInputMissingSpike"]
    assert sorted(a["labels"]["feature"] for a in alerts) == sorted(NAMES)
    for alert in alerts:
        name = alert["labels"]["feature"]
        # The PromQL string literal reads back (Go's escapes: \\ and \") as the name itself.
        literal = alert["expr"].split("feature=", 1)[1].split("}[30m]", 1)[0]
        assert json.loads(literal) == name
        assert name in alert["annotations"]["summary"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        done = subprocess.run([kubectl, "kustomize", project / "deploy/base"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        rendered = {d["kind"]: d for d in yaml.safe_load_all(done.stdout) if d}
        assert rendered["PrometheusRule"]["spec"] == rule["spec"]
        (profile,) = rendered["ConfigMap"]["data"].values()
        assert sorted(json.loads(profile)["features"]) == sorted(NAMES)
    crd = json.loads((schema_folder("crds/monitoring.coreos.com") / "prometheusrule_v1.json").read_text("utf-8"))
    jsonschema.validators.validator_for(crd, default=jsonschema.Draft4Validator)(crd).validate(rule)


def csv_body(rows: pd.DataFrame) -> str:
    out = io.StringIO()
    rows.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    return out.getvalue()


def json_shapes(rows: pd.DataFrame) -> list[object]:
    records = rows.to_dict("records")
    return [
        records,
        {"dataframe_records": records},
        {"dataframe_split": {"columns": NAMES[::-1], "data": rows[NAMES[::-1]].values.tolist()}},
        {"instances": rows[NAMES].values.tolist()},
    ]


def check_service(service: Service, rows: pd.DataFrame, expected: list[float], logs: Path) -> None:
    """Every payload shape, the errors, /schema, /openapi.json, /metrics and the input log, by exact name."""
    for doc in json_shapes(rows):
        answer = service.post_json(doc)
        assert answer.status == 200, answer.body[:500]
        assert np.allclose(answer.json()["predictions"], expected, rtol=0, atol=1e-9), doc
    answer = service.post_csv(csv_body(rows), Accept="application/json")
    assert answer.status == 200, answer.body[:500]
    assert np.allclose(answer.json()["predictions"], expected, rtol=0, atol=1e-9)

    many = pd.concat([rows] * 15, ignore_index=True)  # above 50 rows the Python input log is written by pandas
    assert service.post_json(many.to_dict("records")).status == 200

    for name in NAMES:
        bad = rows.to_dict("records")
        bad[1][name] = [1] if name != CATEGORICAL else 3.5
        answer = service.post_json(bad)
        assert answer.status == 400 and answer.json()["error"]["column"] == name, answer.body[:500]
        assert answer.json()["error"]["row"] == 1
        missing = rows.drop(columns=[name])
        answer = service.post_csv(csv_body(missing))
        assert answer.status == 400 and answer.json()["error"]["column"] == name, answer.body[:500]
    answer = service.post_csv(csv_body(rows.rename(columns={"a.b": "a_b"})))
    assert answer.status == 400 and answer.json()["error"]["column"] == "a_b"

    schema = service.request("GET", "/schema").json()["input"]
    assert sorted(schema["properties"]) == sorted(NAMES) and schema["required"] == NAMES
    for record in rows.to_dict("records"):
        jsonschema.validate(record, schema)
    openapi = json.dumps(service.request("GET", "/openapi.json").json(), ensure_ascii=False)
    for name in NAMES:
        assert json.dumps(name, ensure_ascii=False) in openapi

    def families() -> dict:
        text = service.request("GET", "/metrics").body.decode("utf-8")
        return {f.name: f for f in text_string_to_metric_families(text)}

    found = wait_until(
        families,
        lambda f: "modelgen_feature_missing" in f and sum(s.value for s in f["modelgen_feature_values"].samples) > 0,
        message="/metrics did not count the requests' features",
    )
    assert {s.labels["feature"] for s in found["modelgen_feature_missing"].samples} == set(NAMES)
    assert {s.labels["feature"] for s in found["modelgen_feature_values"].samples} == set(NAMES)
    bins = {s.labels["bin"] for s in found["modelgen_feature_values"].samples if s.labels["feature"] == CATEGORICAL}
    assert bins == set(KINDS)

    logged = wait_until(
        lambda: [json.loads(line) for f in sorted(logs.glob("inputs-*")) for line in f.read_text("utf-8").splitlines()],
        lambda lines: len(lines) >= 5 * len(rows) + len(many),
        message="the input log did not get the requests' rows",
    )
    assert all(set(line) == {*NAMES, "__ts", "__prediction"} for line in logged)
    assert logged[0][CATEGORICAL] == rows[CATEGORICAL].iloc[0]


def check_drift_job(capsys, project: Path, logs: Path, out: Path) -> None:
    """The drift job reads the input log by the same names; its report shows them (escaped in HTML)."""
    from gitops_support import cli

    profile = project / "deploy/base/monitoring/profile.json"
    code, _, err = cli(capsys, "monitor", project.name, "--profile", profile, "--live", logs, "--out", out)
    assert code == 0, err
    report = json.loads((out / "drift-report.json").read_text("utf-8"))
    assert sorted(f["name"] for f in report["features"]) == sorted(NAMES)
    page = (out / "drift-report.html").read_text("utf-8")
    assert "<h3>with &#34;quotes&#34;</h3>" in page and "<h3>emoji 🐧</h3>" in page
    assert "id='sepal%20length%20%28cm%29'" in page and "href='#sepal%20length%20%28cm%29'" in page


@pytest.mark.slow
def test_the_python_service_serves_any_column_name(python_model, tmp_path, capsys):
    model, artifact, project = python_model
    rows = frame(4, 2)
    logs = tmp_path / "inputs"
    env = {"MODELGEN_INPUT_LOG": str(logs), "MODELGEN_LOG_SAMPLE_RATE": "1", "MODELGEN_WORKERS": "2"}
    service = Service(project, Path(sys.executable), artifact, env=env).start()
    try:
        check_service(service, rows, model.predict(rows).tolist(), logs)
    finally:
        service.stop()

    check_drift_job(capsys, project, logs, tmp_path / "report")

    # The batch entry point reads the same CSV header.
    (tmp_path / "rows.csv").write_text(csv_body(rows), "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "app.batch", tmp_path / "rows.csv", tmp_path / "scored.csv"],
        cwd=project,
        env={**os.environ, "MODEL_PATH": str(artifact)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert np.allclose(pd.read_csv(tmp_path / "scored.csv")["value"], model.predict(rows), rtol=0, atol=1e-9)


R_TRAIN = r"""
args <- commandArgs(TRUE)
# JSON, not read.csv: read.table strips the header's cells, and " padded " has spaces of its own.
data <- jsonlite::fromJSON(args[1])
data$`日本語` <- factor(data$`日本語`, levels = c("a", "b", "c"))
set.seed(0)
data$y <- data$`sepal length (cm)` * 2 + data$`Größe %` - data$`back\\slash` + as.integer(data$`日本語`) +
  rnorm(nrow(data))
model <- glm(y ~ `sepal length (cm)` + `od280/od315_of_diluted_wines` + `Größe %` + `1st-rank` + a.b +
             `with "quotes"` + `back\\slash` + `comma, inside` + `emoji 🐧` + ` padded ` + `日本語`,
             data = data, family = gaussian)
saveRDS(model, args[2])
rows <- jsonlite::fromJSON(args[3])
rows$`日本語` <- factor(rows$`日本語`, levels = c("a", "b", "c"))
cat(jsonlite::toJSON(unname(predict(model, newdata = rows, type = "response")), digits = NA))
"""


@pytest.mark.slow
def test_the_r_service_serves_a_glm_with_backquoted_terms(tmp_path, capsys):
    from test_r_service import R_ENV, r_service, rscript

    artifact = tmp_path / "model.rds"
    doc_folder = tmp_path
    frame(200, 0).to_json(tmp_path / "train.json", orient="records", force_ascii=False)
    rows = frame(4, 2)
    rows.to_json(tmp_path / "rows.json", orient="records", force_ascii=False)
    done = subprocess.run(
        [rscript(), "-e", R_TRAIN, tmp_path / "train.json", artifact, tmp_path / "rows.json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **R_ENV, "LANG": "C.UTF-8"},
    )
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout)
    jsonlite = subprocess.run(
        [rscript(), "-e", "cat(as.character(packageVersion('jsonlite')))"], capture_output=True, text=True
    ).stdout
    doc = manifest_doc("r", artifact, [f"jsonlite=={jsonlite}"], doc_folder)
    dump_manifest(doc, tmp_path / "model.yaml")
    project = generate(tmp_path / "model.yaml", tmp_path / "out").path

    logs = tmp_path / "inputs"
    service = r_service(project, artifact, MODELGEN_INPUT_LOG=str(logs), MODELGEN_LOG_SAMPLE_RATE="1")
    service.start(timeout=120)
    try:
        check_service(service, rows, expected, logs)
    finally:
        service.stop()
    check_drift_job(capsys, project, logs, tmp_path / "report")
