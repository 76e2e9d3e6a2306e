"""Every output type and input type of the generated app, on small models fitted here.

The penguins examples exercise `probabilities` and `score` over HTTP; these tests drive the
same app code (copied verbatim into every project) through Flask's test client for the other
output types, boolean and integer columns, and the 422 a pipeline's own refusal gets.
"""

from __future__ import annotations

import importlib
import json
import sys

import jsonschema
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from modelgen.render import contract as contract_module
from modelgen.render.templates import templates_dir

COLUMNS = [
    {"name": "colour", "type": "string", "nullable": False, "categories": ["red", "blue"], "strict": False},
    {"name": "size", "type": "integer", "nullable": False},
    {"name": "weight", "type": "number", "nullable": True},
    {"name": "fragile", "type": "boolean", "nullable": False},
]
FRAME = pd.DataFrame(
    {
        "colour": pd.Series(["red", "blue", "red", "blue", "red", "blue"], dtype=object),
        "size": [1, 2, 3, 4, 5, 6],
        "weight": [1.5, 2.5, 0.5, 4.0, 3.5, 1.0],
        "fragile": [True, False, True, False, False, True],
    }
)
ROWS = [
    {"colour": "red", "size": 2, "weight": 1.25, "fragile": True},
    {"colour": "blue", "size": 7, "weight": 3.0, "fragile": False},
]


@pytest.fixture(scope="module")
def app_module():
    """The service package exactly as the template ships it."""
    project = templates_dir() / "python-model" / "{{cookiecutter.name}}"
    sys.path.insert(0, str(project))
    try:
        yield importlib.import_module("app.service")
    finally:
        sys.path.remove(str(project))


def _encoder(handle_unknown: str = "ignore"):
    # Strict about unknown categories when asked: the case the service must turn into a 422.
    return make_column_transformer(
        (OneHotEncoder(handle_unknown=handle_unknown), ["colour"]),
        remainder="passthrough",
    )


def _client(app_module, model, output):
    contract = {
        "name": "hooks",
        "version": "1.0.0",
        "owner": "a@example.com",
        "description": "",
        "task": "x",
        "framework": "sklearn",
        "output": output,
        # As modelgen writes them into contract.json: the columns, their value rules, the documents.
        "columns": [contract_module.column(c) for c in COLUMNS],
        "values": contract_module.VALUES,
        "artifact": {"uri": "file:///m", "sha256": "0" * 64, "format": "joblib"},
        "engine": "native",
        "engineReason": "",
        "onnx": None,
        "requirements": [],
        "modelgen": "test",
        "monitoring": None,
    }
    contract.update(contract_module.documents(contract))
    return app_module.create_app(model, contract, max_request_bytes=1 << 20, sha256="0" * 64).test_client()


def _frame(rows):
    frame = pd.DataFrame(rows)
    frame["colour"] = frame["colour"].astype(object)
    return frame


def test_value_output_is_the_regression_prediction(app_module):
    y = [1.0, 2.0, 3.5, 4.0, 5.5, 6.0]
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, y)
    client = _client(app_module, model, {"type": "value", "classes": []})
    got = client.post("/invocations", json=ROWS)
    assert got.status_code == 200, got.get_data(as_text=True)
    assert got.get_json()["predictions"] == model.predict(_frame(ROWS)).tolist()
    csv = client.post("/invocations", json=ROWS, headers={"Accept": "text/csv"}).get_data(as_text=True)
    assert csv.splitlines()[0] == "value"
    assert [float(v) for v in csv.splitlines()[1:]] == model.predict(_frame(ROWS)).tolist()


def test_label_output_is_the_predicted_class(app_module):
    y = ["cheap", "dear", "cheap", "dear", "dear", "cheap"]
    model = make_pipeline(_encoder(), LogisticRegression()).fit(FRAME, y)
    client = _client(app_module, model, {"type": "label", "classes": ["cheap", "dear"]})
    got = client.post("/invocations", json=ROWS)
    assert got.get_json()["predictions"] == model.predict(_frame(ROWS)).tolist()


def test_cluster_output_is_an_integer(app_module):
    model = make_pipeline(_encoder(), KMeans(n_clusters=2, n_init=2, random_state=0)).fit(FRAME)
    client = _client(app_module, model, {"type": "cluster", "classes": []})
    got = client.post("/invocations", json=ROWS).get_json()["predictions"]
    assert got == model.predict(_frame(ROWS)).tolist()
    assert all(isinstance(v, int) for v in got)


def test_declared_classes_must_match_the_model(app_module):
    model = make_pipeline(_encoder(), LogisticRegression()).fit(FRAME, ["a", "b", "a", "b", "a", "b"])
    mismatch = importlib.import_module("app.predict").ModelMismatch
    with pytest.raises(mismatch, match=r"classes_ are \['a', 'b'\], the manifest declares \['b', 'a'\]"):
        _client(app_module, model, {"type": "probabilities", "classes": ["b", "a"]})


def test_pipeline_refusal_is_a_422_not_a_500(app_module):
    model = make_pipeline(_encoder("error"), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    got = client.post("/invocations", json=[dict(ROWS[0], colour="green")])
    assert got.status_code == 422
    assert "could not score" in got.get_json()["error"]["message"]


def test_booleans_and_integers_from_csv(app_module):
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    from_json = client.post("/invocations", json=ROWS).get_json()
    csv = "colour,size,weight,fragile\nred,2,1.25,true\nblue,7.0,3.0,0\n"
    assert client.post("/invocations", data=csv, content_type="text/csv").get_json() == from_json
    bad = client.post("/invocations", data="colour,size,weight,fragile\nred,2,1,maybe\n", content_type="text/csv")
    assert bad.status_code == 400
    assert bad.get_json()["error"] == {
        "message": "column 'fragile', row 0: 'maybe' is not a boolean",
        "column": "fragile",
        "row": 0,
    }
    null_weight = client.post("/invocations", data="colour,size,weight,fragile\nred,2,,true\n", content_type="text/csv")
    # A nullable column's null reaches the pipeline as NaN; this one has no imputer and says so.
    assert null_weight.status_code == 422
    assert "NaN" in null_weight.get_json()["error"]["message"]


def test_boolean_column_rejects_numbers_in_json(app_module):
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    got = client.post("/invocations", json=[dict(ROWS[0], fragile=1)])
    assert got.status_code == 400
    assert got.get_json()["error"]["column"] == "fragile"


def _explode(frame):
    raise ArithmeticError("overflow inside the pipeline")


def _requests_counted(client, status: int) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    line = f'modelgen_requests_total{{endpoint="/invocations",method="POST",status="{status}"}} '
    return next((float(x[len(line) :]) for x in text.splitlines() if x.startswith(line)), 0.0)


def test_a_500_is_counted_once_as_a_500(app_module):
    # A fitted pipeline whose first step fails on every call with an error no input check foresees.
    pipeline = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    pipeline.steps.insert(0, ("explode", FunctionTransformer(_explode).fit(FRAME)))
    client = _client(app_module, pipeline, {"type": "value", "classes": []})
    before = {status: _requests_counted(client, status) for status in (200, 500)}
    got = client.post("/invocations", json=ROWS)
    assert got.status_code == 500 and got.get_json()["error"]["message"] == "internal error: ArithmeticError"
    assert _requests_counted(client, 500) - before[500] == 1
    assert _requests_counted(client, 200) - before[200] == 0


def test_a_key_given_twice_is_refused_by_name(app_module):
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    twice = '[{"colour": "red", "size": 2, "weight": 1.5, "fragile": true, "size": 3}]'
    got = client.post("/invocations", data=twice, content_type="application/json")
    assert got.status_code == 400
    assert got.get_json()["error"]["column"] == "size"
    assert "'size' appears more than once" in got.get_json()["error"]["message"]
    split = '{"dataframe_split": {"columns": ["colour"], "columns": ["size"], "data": [[1]]}}'
    got = client.post("/invocations", data=split, content_type="application/json")
    assert got.status_code == 400 and "'columns' appears more than once" in got.get_json()["error"]["message"]


def test_split_columns_null_is_refused(app_module):
    # One behaviour for both runtimes: null is not a list of names (leaving "columns" out means the declared order).
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    data = [[r[c["name"]] for c in COLUMNS] for r in ROWS]
    got = client.post("/invocations", json={"dataframe_split": {"columns": None, "data": data}})
    assert got.status_code == 400 and "columns must be a list" in got.get_json()["error"]["message"]
    assert client.post("/invocations", json={"dataframe_split": {"data": data}}).status_code == 200


def test_csv_numbers_are_plain_ascii_decimals(app_module):
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    header = "colour,size,weight,fragile\n"
    for row, column in (
        ("red,1_000,1.5,true", "size"),
        ("red,2,1_0.5,true", "weight"),
        ("red,\u0662,1.5,true", "size"),
    ):
        got = client.post("/invocations", data=header + row + "\n", content_type="text/csv")
        assert got.status_code == 400, row
        assert (got.get_json()["error"]["column"], got.get_json()["error"]["row"]) == (column, 0), row
    assert (
        client.post("/invocations", data=header + "red,1000,1.5e1,true\n", content_type="text/csv").status_code == 200
    )


def test_405_names_the_allowed_methods(app_module):
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    for method, path, allowed in (
        ("GET", "/invocations", "POST"),
        ("POST", "/ping", "GET, HEAD"),
        ("OPTIONS", "/ping", "GET, HEAD"),
    ):
        got = client.open(path, method=method)
        assert got.status_code == 405, (method, path)
        assert got.headers["Allow"] == allowed, (method, path)
        assert got.get_json()["error"]["message"]
    assert client.head("/ping").status_code == 200


def test_the_openapi_document_and_the_service_agree_on_empty_and_valid_bodies(app_module):
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    document = client.get("/openapi.json").get_json()
    body = document["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft7Validator({**body, "components": document["components"]})
    names = [c["name"] for c in COLUMNS]
    data = [[r[n] for n in names] for r in ROWS]
    refused = [
        [],
        {"dataframe_records": []},
        {"instances": []},
        {"inputs": []},
        {"dataframe_split": {"columns": names, "data": []}},
        {"dataframe_split": {"columns": names, "data": [[1]]}},
        {"dataframe_split": {"columns": None, "data": data}},
        {"dataframe_records": ROWS, "params": {}},
    ]
    for doc in refused:
        assert not validator.is_valid(doc), doc
        assert client.post("/invocations", json=doc).status_code == 400, doc
    accepted = [
        ROWS,
        ROWS[0],
        {"dataframe_split": {"columns": names, "data": data}},
        {"instances": data},
        {"inputs": ROWS},
    ]
    for doc in accepted:
        assert validator.is_valid(doc), (doc, [e.message for e in validator.iter_errors(doc)])
        assert client.post("/invocations", json=doc).status_code == 200, doc


def test_a_body_shorter_than_its_framing_is_400_never_scored(app_module):
    # What the server hands the application when a client stopped early: fewer bytes than
    # Content-Length. (nginx and waitress close such a connection before the app sees it.)
    model = make_pipeline(_encoder(), LinearRegression()).fit(FRAME, np.arange(6.0))
    client = _client(app_module, model, {"type": "value", "classes": []})
    body = json.dumps(ROWS).encode()
    got = client.post(
        "/invocations",
        data=body[:-10],
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(len(body))},
    )
    assert got.status_code == 400
    assert f"ended after {len(body) - 10} of its {len(body)} bytes" in got.get_json()["error"]["message"]
