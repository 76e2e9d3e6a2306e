"""Every endpoint answers, every payload shape gives the same predictions, bad rows get a 4xx."""

from __future__ import annotations

import csv
import io
import json

import pytest

from app.payload import InputSchema
from app.predict import predictor_for


def test_ping(client):
    assert client.get("/ping").status_code == 200


def test_metadata_names_the_pinned_artifact(client, settings):
    meta = client.get("/metadata").get_json()
    assert meta["name"] == settings.contract["name"]
    assert meta["version"] == settings.contract["version"]
    assert meta["artifact"]["sha256"] == settings.model_sha256


def test_schema_and_openapi_list_every_column(client, settings):
    names = [c["name"] for c in settings.contract["columns"]]
    schema = client.get("/schema").get_json()["input"]
    assert list(schema["properties"]) == sorted(names) and schema["required"] == names
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["schemas"]["Record"] == schema


def test_predictions_match_the_model_in_process(client, model, settings, sample):
    schema = InputSchema(
        settings.contract["columns"], settings.contract["values"], frames=not getattr(model, "takes_columns", False)
    )
    expected = predictor_for(model, settings.contract["output"]).predict(schema.from_json(json.dumps(sample).encode()))
    got = client.post("/invocations", json=sample)
    assert got.status_code == 200, got.get_data(as_text=True)
    assert got.get_json()["predictions"] == expected
    assert len(expected) == len(sample)


@pytest.mark.parametrize("shape", ["dataframe_split", "dataframe_records", "instances", "csv"])
def test_every_payload_shape_gives_the_same_answer(client, settings, sample, shape):
    names = [c["name"] for c in settings.contract["columns"]]
    reference = client.post("/invocations", json=sample).get_json()["predictions"]
    if shape == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows([["" if r[n] is None else _cell(r[n]) for n in names] for r in sample])
        got = client.post("/invocations", data=out.getvalue(), content_type="text/csv")
    elif shape == "dataframe_split":
        data = [[r[n] for n in names] for r in sample]
        got = client.post("/invocations", json={"dataframe_split": {"columns": names, "data": data}})
    else:
        got = client.post("/invocations", json={shape: sample})
    assert got.status_code == 200, got.get_data(as_text=True)
    assert got.get_json()["predictions"] == reference


def test_csv_answer(client, sample):
    got = client.post("/invocations", json=sample[:3], headers={"Accept": "text/csv"})
    assert got.mimetype == "text/csv"
    assert len(list(csv.reader(io.StringIO(got.get_data(as_text=True))))) == 4


def test_missing_column_is_named(client, settings, sample):
    first = settings.contract["columns"][0]["name"]
    row = {k: v for k, v in sample[0].items() if k != first}
    got = client.post("/invocations", json=[row])
    assert got.status_code == 400
    assert got.get_json()["error"]["column"] == first


def test_unsupported_media_type(client):
    assert client.post("/invocations", data="x", content_type="text/plain").status_code == 415


def test_metrics_count_requests(client, sample):
    client.post("/invocations", json=sample[:1])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'modelgen_requests_total{endpoint="/invocations",method="POST",status="200"}' in text


def _cell(value):
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)
