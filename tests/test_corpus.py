"""A corpus of models modelgen was not built around, each shipped as a data scientist would:
``deploy()`` on the training frame as it is (original column names, pandas dtypes, no renaming),
the project generated from the manifest it wrote, the artifact fetched like the init container
does, the real server started and called over HTTP with JSON and CSV. Every answer must equal
what the object in memory answers on the same frame, bit for bit, held-back rows with gaps
included; bad requests get a 4xx naming the column, never a 5xx.

The R models of the corpus (binomial glm, lm with factors, ranger, randomForest) are in
test_r_deploy.py, which ships them through ``modelgen::deploy()``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import Service, fetch_artifact, wait_until
from test_service import _bad_requests, _python_follows_requests, _table_failures

import modelgen
from modelgen.api import generate

pytestmark = pytest.mark.slow  # each model is deployed (with its round trip) and served

HERE = Path(__file__).resolve().parent


@dataclass
class Case:
    """One model as its data scientist hands it over, and the traffic it will see."""

    name: str
    model: Any
    train: pd.DataFrame
    traffic: pd.DataFrame  # rows the applications send, 3 with gaps the pipeline imputes among them
    options: dict[str, Any] = field(default_factory=dict)  # more deploy() arguments


def with_gaps(frame: pd.DataFrame, columns: list[str], seed: int = 1) -> pd.DataFrame:
    """12 rows of ``frame``; in each of the first 3, one of ``columns`` (in turn) is missing."""
    rows = frame.sample(12, random_state=seed).reset_index(drop=True)
    for i, name in enumerate((columns * 3)[:3]):
        rows.loc[i, name] = None
    return rows


def penguins() -> tuple[pd.DataFrame, pd.Series]:
    import palmerpenguins

    data = palmerpenguins.load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    return data.drop(columns=["species"]), data["species"]


# ---------------------------------------------------------------- the models


def iris() -> Case:
    """load_iris' own names ("sepal length (cm)"); a sample without gaps, traffic with them."""
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_iris(as_frame=True)
    X, y = data.data, data.target_names[data.target]
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return Case("corpus-iris", model, X.head(40), with_gaps(X, list(X.columns)))


def wine() -> Case:
    """load_wine's "od280/od315_of_diluted_wines"; integer classes."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    X, y = load_wine(return_X_y=True, as_frame=True)
    model = make_pipeline(SimpleImputer(), RandomForestClassifier(n_estimators=25, random_state=0)).fit(X, y)
    return Case("corpus-wine", model, X, with_gaps(X, ["od280/od315_of_diluted_wines", "alcohol", "hue"]))


def breast_cancer() -> Case:
    """Thirty spaced names ("mean radius"), binary classes, gradient boosting."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    return Case("corpus-breast-cancer", model, X, with_gaps(X, ["mean radius", "worst texture", "area error"]))


def diabetes_regression() -> Case:
    """A regression on names with %, parentheses, / and non-ASCII letters."""
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X.rename(
        columns={"age": "âge (ans)", "bmi": "BMI %", "bp": "blood pressure (mm Hg)", "s1": "Größe/1", "s5": "s5 (log)"}
    )
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X, y)
    return Case("corpus-diabetes", model, X, with_gaps(X, ["BMI %", "Größe/1", "âge (ans)"]))


def linnerud_knn() -> Case:
    """A small regression (20 rows), nearest neighbours behind an imputer."""
    from sklearn.datasets import load_linnerud
    from sklearn.impute import SimpleImputer
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline

    data = load_linnerud(as_frame=True)
    X, y = data.data, data.target["Weight"]
    model = make_pipeline(SimpleImputer(), KNeighborsRegressor(n_neighbors=3)).fit(X, y)
    return Case("corpus-linnerud", model, X, with_gaps(X, list(X.columns)))


def penguin_clusters() -> Case:
    from sklearn.cluster import KMeans
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = penguins()[0][["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]]
    model = make_pipeline(SimpleImputer(), StandardScaler(), KMeans(n_clusters=3, n_init=10, random_state=0)).fit(X)
    return Case("corpus-kmeans", model, X, with_gaps(X, ["bill_depth_mm", "body_mass_g"]), {"task": "clustering"})


def wine_outliers() -> Case:
    from sklearn.datasets import load_wine
    from sklearn.ensemble import IsolationForest
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    X = load_wine(as_frame=True).data
    model = make_pipeline(SimpleImputer(), IsolationForest(n_estimators=50, random_state=0)).fit(X)
    return Case("corpus-isolation", model, X, with_gaps(X, ["magnesium", "proline"]))


def typed_penguins() -> pd.DataFrame:
    """Penguins as a data engineer's table: a pandas category, nullable Int64 and boolean, a datetime."""
    X, _ = penguins()
    rng = np.random.default_rng(0)
    hours = pd.to_timedelta(rng.integers(0, 365 * 24, len(X)), unit="h")
    return pd.DataFrame(
        {
            "island name": X["island"].astype("category"),
            "bill length (mm)": X["bill_length_mm"],
            "flipper (mm)": X["flipper_length_mm"].astype("Int64"),
            "seen at": pd.to_datetime(X["year"].astype(str)) + hours,
            "tagged?": pd.Series(rng.choice(np.array([True, False, None], dtype=object), len(X)), dtype="boolean"),
        }
    )


def lightgbm_typed() -> Case:
    """LightGBM on a category, nullable Int64 and boolean, and a datetime turned into numbers by
    the data scientist's own step (tests/corpus_steps.py, shipped with ``code=``)."""
    import lightgbm
    from corpus_steps import DateParts
    from sklearn.pipeline import make_pipeline

    X, y = typed_penguins(), penguins()[1]
    model = make_pipeline(DateParts(("seen at",)), lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)).fit(X, y)
    traffic = with_gaps(X, ["flipper (mm)", "tagged?", "bill length (mm)"])
    # The training rows as reference: drift monitoring on, and nullability from them ("seen at" and
    # "island name" never miss there, so they are required).
    return Case("corpus-lightgbm", model, X, traffic, {"code": [HERE / "corpus_steps.py"], "reference": X})


def native_categories() -> Case:
    """HistGradientBoosting's own categorical support: it reads the category dtype of the columns."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = penguins()
    X = X.drop(columns=["year"]).astype({"island": "category", "sex": "category"})
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=30, random_state=0).fit(X, y)
    return Case("corpus-native-categories", model, X, with_gaps(X, ["sex", "bill_length_mm", "island"]))


def text_beside_numbers() -> Case:
    """A free-text column (TfidfVectorizer) beside numeric ones: no category list for the text."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = penguins()
    rng = np.random.default_rng(0)
    moods = np.array(["calm", "curious", "noisy", "shy", "hungry", "sleepy", "restless"])
    notes = [
        f"seen near {island} at {rng.integers(6, 20)}h, {' and '.join(rng.choice(moods, 2))}, nest {i}"
        for i, island in enumerate(X["island"])
    ]
    X = pd.DataFrame({"field notes": notes, "bill (mm)": X["bill_length_mm"], "mass (g)": X["body_mass_g"]})
    features = ColumnTransformer(
        [
            ("text", TfidfVectorizer(), "field notes"),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["bill (mm)", "mass (g)"]),
        ]
    )
    model = make_pipeline(features, LogisticRegression(max_iter=1000)).fit(X, y)
    options = {"columns": {"field notes": {"nullable": False}}}  # TfidfVectorizer takes no NaN
    return Case("corpus-text", model, X, with_gaps(X, ["bill (mm)", "mass (g)"]), options)


CORPUS: dict[str, Callable[[], Case]] = {
    f.__name__: f
    for f in (
        iris, wine, breast_cancer, diabetes_regression, linnerud_knn, penguin_clusters, wine_outliers,
        lightgbm_typed, native_categories, text_beside_numbers,
    )
}  # fmt: skip


# ---------------------------------------------------------------- shipping and calling them


def json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: json_value(v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


def csv_text(frame: pd.DataFrame) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(frame.columns)
    for row in records(frame):
        writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row.values()])
    return out.getvalue()


def expected_answers(case: Case, output: dict[str, Any]) -> list[Any]:
    """What the service must answer for ``case.traffic``: the object in memory's own answers."""
    model, frame = case.model, case.traffic
    if output["type"] == "probabilities":
        classes = [str(c) for c in model.classes_]
        return [dict(zip(classes, row, strict=True)) for row in model.predict_proba(frame).tolist()]
    if output["type"] == "score":
        return model.decision_function(frame).tolist()
    return np.asarray(model.predict(frame)).tolist()


def served_answers(body: dict[str, Any], output: dict[str, Any]) -> list[Any]:
    predictions = body["predictions"]
    if output["type"] == "probabilities":
        return [p["probabilities"] for p in predictions]
    if output["type"] == "score":
        return [p["score"] for p in predictions]
    return predictions


@dataclass
class Shipped:
    case: Case
    manifest: dict[str, Any]  # the contract the service serves
    service: Service
    inputs: Path  # its input log's folder


@pytest.fixture(scope="module", params=list(CORPUS))
def shipped(request, tmp_path_factory):
    """The model deployed, its project generated, its artifact fetched, its service started."""
    case = CORPUS[request.param]()
    folder = tmp_path_factory.mktemp(case.name)
    patch = pytest.MonkeyPatch()
    patch.setenv("MODELGEN_CACHE", str(folder / "cache"))
    try:
        deployment = modelgen.deploy(
            case.model, case.name, case.train, registry=folder / "registry", gitops=False,
            owner="jane.doe@example.com", **case.options,
        )  # fmt: skip
    finally:
        patch.undo()
    project = generate(Path(deployment.manifest), folder / "out").path
    model_path = fetch_artifact(project, Path(sys.executable), folder / "model" / f"model.{case.name}")
    contract = json.loads((project / "app/contract.json").read_text("utf-8"))
    # The body limit of test_service.py's penguins, whose table of bad requests runs here too; every
    # scored request in the input log, for the models deployed with a reference (monitoring on).
    env = {"MAX_REQUEST_BYTES": "65536", "MODELGEN_INPUT_LOG": str(folder / "inputs"), "MODELGEN_LOG_SAMPLE_RATE": "1"}
    service = Service(project, Path(sys.executable), model_path, env=env).start()
    yield Shipped(case, contract, service, folder / "inputs")
    service.stop()


def test_every_corpus_model_serves_what_it_predicts_in_memory(shipped):
    case, output = shipped.case, shipped.manifest["output"]
    expected = expected_answers(case, output)
    bodies = {
        "records": records(case.traffic),
        "dataframe_split": {
            "dataframe_split": {
                "columns": list(case.traffic.columns),
                "data": [list(r.values()) for r in records(case.traffic)],
            }
        },
    }
    for shape, body in bodies.items():
        answer = shipped.service.post_json(body)
        assert answer.status == 200, (shape, answer.body[:500])
        assert served_answers(answer.json(), output) == expected, shape
    answer = shipped.service.post_csv(csv_text(case.traffic), Accept="application/json")
    assert answer.status == 200, answer.body[:500]
    assert served_answers(answer.json(), output) == expected, "csv"


def test_the_manifest_keeps_names_and_dtypes_as_trained(shipped):
    case, columns = shipped.case, shipped.manifest["columns"]
    assert [c["name"] for c in columns] == list(case.train.columns)
    for column in columns:
        dtype = str(case.train[column["name"]].dtype)
        plain = dtype in ("float64", "int64", "bool", "object", "str") and column["type"] != "datetime"
        assert column["dtype"] == (None if plain else dtype), column  # recorded unless the service's default
        if column["type"] == "string" and column["categories"] is not None:
            assert len(column["categories"]) <= 100, column["name"]  # free text is no category list
    # the sample's lack of gaps says nothing: every column takes null unless the reference (the
    # training rows) never misses it, or the data scientist declared it required
    required = {n for n, c in case.options.get("columns", {}).items() if c.get("nullable") is False}
    if "reference" in case.options:
        required |= {n for n in case.train.columns if not case.options["reference"][n].isna().any()}
    assert {c["name"] for c in columns if not c["nullable"]} == required


def bad_requests(columns: list[dict[str, Any]], row: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(case, content type, body, the column the error must name) for any model's columns."""
    j, names = "application/json", [c["name"] for c in columns]
    wrong = {"number": "many", "integer": 2.5, "boolean": "yes", "string": 3, "datetime": "2024-13-01"}
    cases = [
        (f"{c['type']} column given {wrong[c['type']]!r}", j, json.dumps([row, {**row, c["name"]: wrong[c["type"]]}]),
         c["name"])
        for c in columns
    ]  # fmt: skip
    cases += [
        (f"{c['name']} null", j, json.dumps([{**row, c["name"]: None}]), c["name"])
        for c in columns
        if not c["nullable"]
    ]
    cases += [
        ("missing column", j, json.dumps([{k: v for k, v in row.items() if k != names[0]}]), names[0]),
        ("extra column", j, json.dumps([{**row, "colour (extra)": 1}]), "colour (extra)"),
        ("a list for a value", j, json.dumps([{**row, names[-1]: [1]}]), names[-1]),
        ("not JSON", j, "{'a': 1", None),
        ("empty list", j, "[]", None),
        ("split of the wrong width", j, json.dumps({"dataframe_split": {"columns": names, "data": [[1]]}}), None),
        ("CSV missing a column", "text/csv", csv_text(pd.DataFrame([row]).drop(columns=[names[0]])), names[0]),
        ("CSV header only", "text/csv", ",".join(f'"{n}"' for n in names) + "\n", None),
        ("CSV not UTF-8", "text/csv", "\xff\xfe", None),
        ("plain text", "text/plain", "hello", None),
    ]
    return cases


def test_bad_requests_get_a_4xx_naming_the_column(shipped):
    row = records(shipped.case.traffic.dropna().head(1))[0]
    failures = []
    for case, ctype, body, column in bad_requests(shipped.manifest["columns"], row):
        data = body.encode("latin-1") if case == "CSV not UTF-8" else body.encode()
        got = shipped.service.request("POST", "/invocations", data, {"Content-Type": ctype})
        error = got.json().get("error", {}) if got.body.startswith(b"{") else {}
        if not 400 <= got.status < 500 or (column is not None and error.get("column") != column):
            failures.append(f"{case}: {got.status} {got.body[:200]!r}")
    assert not failures, "\n".join(failures)


def test_the_service_table_of_bad_requests_gets_its_documented_answers(shipped):
    """The Python suite's own table (tests/test_service.py, written for penguins) on this model's columns."""
    row = records(shipped.case.traffic.dropna().head(1))
    columns = shipped.manifest["columns"]
    # Python refuses a body nested 30,000 deep as a whole, before it reaches a cell (test_service.py says so).
    shared = [c for c in _python_follows_requests(row, columns) if not c[0].startswith("value nested 30")]
    cases = _bad_requests(row, columns) + shared
    assert len(cases) >= 26
    failures = _table_failures(shipped.service, cases)
    assert not failures, "\n".join(failures)


def metric_values(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = service.request("GET", "/metrics").body.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize("shipped", ["lightgbm_typed"], indirect=True)  # the one deployed with a reference
def test_a_monitored_model_counts_and_logs_what_it_served(shipped):
    """Typed columns (a category, Int64, boolean, a datetime) through the reference profile, the
    service's counters and its input log: each row's gaps counted under its column's own name, each
    prediction by its label, each row logged with the label served."""
    case, contract = shipped.case, shipped.manifest
    features = {f["name"]: f["kind"] for f in contract["monitoring"]["features"]}
    assert features == {
        "island name": "categorical",
        "bill length (mm)": "numeric",
        "flipper (mm)": "numeric",
        "seen at": "missing",  # a datetime: only its gaps are counted
        "tagged?": "categorical",
    }
    before = metric_values(shipped.service)
    answer = shipped.service.post_json(records(case.traffic))
    assert answer.status == 200, answer.body[:300]
    labels = [p["label"] for p in answer.json()["predictions"]]

    def delta(after, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    after = wait_until(
        lambda: metric_values(shipped.service),
        lambda m: sum(delta(m, "modelgen_predictions_total", bin=c) for c in set(labels)) == len(labels),
        message="the predictions were not counted",
    )
    for label in set(labels):
        assert delta(after, "modelgen_predictions_total", bin=label) == labels.count(label)
    for name in features:
        assert delta(after, "modelgen_feature_missing_total", feature=name) == case.traffic[name].isna().sum(), name
    logged = [json.loads(line) for f in sorted(shipped.inputs.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert [row["__prediction"] for row in logged[-len(labels) :]] == labels
    assert [row["seen at"] for row in logged[-len(labels) :]] == [json_value(v) for v in case.traffic["seen at"]]
