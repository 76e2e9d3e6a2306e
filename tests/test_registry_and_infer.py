"""The pieces a training script (and later ``modelgen.deploy``) hands a model over with: the local
registry, the input columns and sample rows inferred from a DataFrame, and the manifest writer."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modelgen.errors import ModelgenError, RegistryError
from modelgen.manifest import load, schema
from modelgen.manifest.infer import input_columns, sample_records, service_frame
from modelgen.manifest.writer import manifest_text, write_handover
from modelgen.registry import backends as registry_module
from modelgen.registry.backends import Artifact, LocalRegistry, add_registry_arguments

DATA = b"abc"
DATA_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256 of b"abc"

# ---------------------------------------------------------------------------- registry


def test_publish_stores_the_bytes_under_name_version_file(tmp_path):
    artifact = LocalRegistry(tmp_path / "registry").publish("penguin-species", "1.0.0", "model.joblib", DATA)

    path = tmp_path.resolve() / "registry" / "penguin-species" / "1.0.0" / "model.joblib"
    assert artifact == Artifact(uri=f"file://{path}", sha256=DATA_SHA256, path=path)
    assert path.read_bytes() == DATA
    assert os.listdir(path.parent) == ["model.joblib"]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_publish_resolves_a_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    artifact = LocalRegistry("registry").publish("penguin-species", "1.0.0", "model.joblib", DATA)
    assert artifact.uri == f"file://{tmp_path}/registry/penguin-species/1.0.0/model.joblib"


def test_publishing_the_same_bytes_again_changes_nothing(tmp_path):
    registry = LocalRegistry(tmp_path)
    first = registry.publish("penguin-species", "1.0.0", "model.joblib", DATA)
    os.utime(first.path, ns=(1_000_000_000, 1_000_000_000))  # an mtime a rewrite could not keep

    again = registry.publish("penguin-species", "1.0.0", "model.joblib", DATA)

    assert again == first
    assert first.path.stat().st_mtime_ns == 1_000_000_000
    assert os.listdir(first.path.parent) == ["model.joblib"]


def test_other_bytes_under_a_published_version_are_refused(tmp_path):
    registry = LocalRegistry(tmp_path)
    first = registry.publish("penguin-species", "1.0.0", "model.joblib", DATA)

    with pytest.raises(RegistryError) as err:
        registry.publish("penguin-species", "1.0.0", "model.joblib", b"other bytes")

    assert str(err.value) == (
        f"penguin-species 1.0.0 is already published with other bytes ({first.path}, sha256 {DATA_SHA256}); "
        "a published version never changes: publish under a new version"
    )
    assert first.path.read_bytes() == DATA
    # Another version is a new artifact.
    assert registry.publish("penguin-species", "1.0.1", "model.joblib", b"other bytes").path.read_bytes() == (
        b"other bytes"
    )


def test_fetch_returns_the_published_bytes(tmp_path):
    registry = LocalRegistry(tmp_path)
    artifact = registry.publish("penguin-species", "1.0.0", "model.joblib", DATA)
    assert registry.fetch(artifact.uri, artifact.sha256) == DATA
    assert registry.fetch(artifact.uri, artifact.sha256.upper()) == DATA


def test_fetch_refuses_a_tampered_artifact(tmp_path):
    registry = LocalRegistry(tmp_path)
    artifact = registry.publish("penguin-species", "1.0.0", "model.joblib", DATA)
    artifact.path.write_bytes(b"abd")

    with pytest.raises(RegistryError) as err:
        registry.fetch(artifact.uri, artifact.sha256)

    tampered = hashlib.sha256(b"abd").hexdigest()
    assert str(err.value) == (
        f"{artifact.uri}: sha256 is {tampered}, expected {DATA_SHA256}; the artifact was changed after it was published"
    )


def test_fetch_of_a_missing_or_foreign_artifact_fails(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    missing = (tmp_path / "registry" / "penguin-species" / "9.9.9" / "model.joblib").as_uri()
    with pytest.raises(RegistryError, match="no such artifact"):
        registry.fetch(missing, DATA_SHA256)

    outside = tmp_path / "elsewhere.joblib"
    outside.write_bytes(DATA)
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.fetch(outside.as_uri(), DATA_SHA256)
    with pytest.raises(RegistryError, match="not a file:// URI"):
        registry.fetch("https://nexus.example.com/models/penguin-species/1.0.0/model.joblib", DATA_SHA256)


@pytest.mark.parametrize("name", ["Penguins", "penguin_species", "1penguin", "-penguin", "penguin-", "", "a" * 41])
def test_publish_refuses_a_name_that_is_no_dns_label(tmp_path, name):
    with pytest.raises(RegistryError, match=r"is not a model name: lower-case letters, digits and '-'"):
        LocalRegistry(tmp_path).publish(name, "1.0.0", "model.joblib", DATA)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0+build.1", "1.0.0-", "latest", "../1.0.0"])
def test_publish_refuses_a_version_that_is_no_semver(tmp_path, version):
    with pytest.raises(RegistryError) as err:
        LocalRegistry(tmp_path).publish("penguin-species", version, "model.joblib", DATA)
    assert str(err.value) == f"{version!r} is not a semantic version such as 1.0.0"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("filename", ["../model.joblib", "sub/model.joblib", ".model.joblib", ""])
def test_publish_refuses_a_file_name_with_a_path(tmp_path, filename):
    with pytest.raises(RegistryError, match="is not a plain file name"):
        LocalRegistry(tmp_path).publish("penguin-species", "1.0.0", filename, DATA)


def test_publish_accepts_a_prerelease_version_and_the_longest_name(tmp_path):
    artifact = LocalRegistry(tmp_path).publish("p" * 40, "2.1.0-rc.1", "model.onnx", DATA)
    assert artifact.path == tmp_path / ("p" * 40) / "2.1.0-rc.1" / "model.onnx"


def test_name_and_version_rules_are_the_manifest_schemas():
    metadata = schema()["properties"]["metadata"]["properties"]
    assert registry_module.NAME.pattern == metadata["name"]["pattern"]
    assert registry_module.VERSION.pattern == metadata["version"]["pattern"]


def test_training_script_options(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="train.py")
    add_registry_arguments(parser)

    args = parser.parse_args(["--registry", str(tmp_path), "--version", "2.0.0"])
    assert isinstance(args.registry, LocalRegistry) and args.registry.root == tmp_path
    assert args.version == "2.0.0"
    assert vars(parser.parse_args([])) == {"registry": None, "version": "1.0.0"}

    with pytest.raises(SystemExit):
        parser.parse_args(["--version", "1.0"])
    assert (
        "train.py: error: argument --version: '1.0' is not a semantic version such as 1.0.0" in capsys.readouterr().err
    )


# ---------------------------------------------------------------------------- infer


def training_frame() -> pd.DataFrame:
    """One column of each kind a data scientist's frame holds, with gaps where they occur."""
    return pd.DataFrame(
        {
            "count": [3, 1, 2, 5],  # int64
            "length": [1.5, np.nan, 2.25, 3.0],  # float64 with a gap
            "island": pd.Series(["Dream", None, "Biscoe", np.nan], dtype=object),  # text, None and NaN gaps
            "alive": [True, False, True, True],  # bool
            "sex": pd.Series(["male", "female", None, "male"], dtype="str"),  # pandas 3 text
            "year": pd.Series([2007, None, 2008, 2009], dtype="Int64"),  # nullable integers
            "tagged": pd.Series([True, None, False, True], dtype=object),  # booleans with a gap
        }
    )


def test_input_columns_from_dtypes_and_gaps():
    frame = training_frame()
    assert input_columns(frame, reference=frame, columns={"island": {"strict": True}}) == [
        {"name": "count", "type": "integer"},
        {"name": "length", "type": "number", "nullable": True},
        {"name": "island", "type": "string", "nullable": True, "categories": ["Biscoe", "Dream"], "strict": True},
        {"name": "alive", "type": "boolean"},
        {"name": "sex", "type": "string", "nullable": True, "categories": ["female", "male"]},
        {"name": "year", "type": "integer", "dtype": "Int64", "nullable": True},
        {"name": "tagged", "type": "boolean", "nullable": True},
    ]


def test_input_columns_refuses_what_a_manifest_cannot_say():
    with pytest.raises(ModelgenError, match="columns names no column of the data: 'isle' \\(allowed: 'count', "):
        input_columns(training_frame(), columns={"isle": {"strict": True}})
    with pytest.raises(ModelgenError, match="column 'count' cannot be strict"):
        input_columns(training_frame(), columns={"count": {"strict": True}})
    with pytest.raises(ModelgenError, match=r"columns\['count'\]: unknown setting required \(allowed: nullable, "):
        input_columns(training_frame(), columns={"count": {"required": True}})
    with pytest.raises(ModelgenError, match="column 'length' cannot be required"):
        input_columns(training_frame(), columns={"length": {"nullable": False}})
    with pytest.raises(ModelgenError, match="column 'wait' holds timedelta64 values"):
        input_columns(pd.DataFrame({"wait": pd.to_timedelta(["1 day"])}))
    with pytest.raises(
        ModelgenError, match="column 'grade' is a category of int64 values; the service serves categories of strings"
    ):
        input_columns(pd.DataFrame({"grade": pd.Series([1, 2], dtype="category")}))
    with pytest.raises(ModelgenError, match="column 'c' is a pandas category: its categories are the dtype's"):
        input_columns(pd.DataFrame({"c": pd.Series(["a"], dtype="category")}), columns={"c": {"categories": ["b"]}})
    with pytest.raises(ModelgenError, match="column 'mixed' holds mixed values"):
        input_columns(pd.DataFrame({"mixed": pd.Series(["a", 1.5], dtype=object)}))


def test_a_column_is_nullable_unless_the_reference_or_the_user_says_otherwise():
    sample = pd.DataFrame({"age": [31, 40], "city": ["Oslo", "Bergen"]})
    assert [c.get("nullable") for c in input_columns(sample)] == [True, True]  # no gap in 2 rows proves nothing
    training = pd.DataFrame({"age": [31, 40, 52], "city": ["Oslo", None, "Bergen"]})
    assert [c.get("nullable") for c in input_columns(sample, reference=training)] == [None, True]
    overridden = input_columns(
        sample, reference=training, columns={"age": {"nullable": True}, "city": {"nullable": False}}
    )
    assert [c.get("nullable") for c in overridden] == [True, None]
    with pytest.raises(ModelgenError, match="reference lacks the input column"):
        input_columns(sample, reference=training[["age"]])


def test_sample_records_are_plain_json_values():
    frame = training_frame()
    records = sample_records(frame, input_columns(frame))

    assert records == [
        {"count": 3, "length": 1.5, "island": "Dream", "alive": True, "sex": "male", "year": 2007, "tagged": True},
        {"count": 1, "length": None, "island": None, "alive": False, "sex": "female", "year": None, "tagged": None},
        {"count": 2, "length": 2.25, "island": "Biscoe", "alive": True, "sex": None, "year": 2008, "tagged": False},
        {"count": 5, "length": 3.0, "island": None, "alive": True, "sex": "male", "year": 2009, "tagged": True},
    ]
    assert {type(v) for record in records for v in record.values()} == {int, float, str, bool, type(None)}
    assert json.loads(json.dumps(records)) == records


def test_sample_records_take_rows_with_gaps_first_then_random_ones():
    frame = pd.DataFrame({"id": range(100), "x": [float(i) for i in range(100)]})
    frame.loc[[7, 40, 41, 90], "x"] = np.nan
    columns = input_columns(frame)

    records = sample_records(frame, columns, size=10)
    ids = [r["id"] for r in records]
    assert len(ids) == 10
    assert {7, 40, 41} <= set(ids)  # the first three rows with gaps, whatever the draw
    assert ids == sorted(ids)  # in the frame's order
    assert sample_records(frame, columns, size=10) == records  # the same draw every time
    assert sample_records(frame, columns, size=10, random_state=1) != records

    flagged = sample_records(frame, columns, size=10, include=[99])
    assert {7, 40, 41, 99} <= {r["id"] for r in flagged}
    assert len(sample_records(frame, columns, size=500)) == 100  # never more rows than there are
    assert [r["id"] for r in sample_records(frame, columns, size=2, gaps=2)] == [7, 40]


def test_service_frame_builds_what_the_service_builds():
    frame = training_frame()
    columns = input_columns(frame)
    served = service_frame(sample_records(frame, columns), columns)

    assert served.dtypes.astype(str).to_dict() == {
        "count": "int64",
        "length": "float64",
        "island": "object",
        "alive": "bool",
        "sex": "object",
        "year": "Int64",  # the training dtype, recorded in the manifest
        "tagged": "object",  # booleans with a gap stay object, NaN for null
    }
    assert served["island"].iloc[0] == "Dream"
    assert all(type(v) is float and np.isnan(v) for v in served["island"].iloc[[1, 3]])  # NaN, not None
    assert np.isnan(served.loc[1, "tagged"])
    assert list(served.columns) == [c["name"] for c in columns]


def test_service_frame_of_complete_rows_keeps_integers_and_booleans():
    columns = [
        {"name": "n", "type": "integer"},
        {"name": "x", "type": "number"},
        {"name": "ok", "type": "boolean"},
        {"name": "s", "type": "string", "nullable": True},
    ]
    served = service_frame([{"n": 1, "x": 2, "ok": False, "s": "a"}, {"n": 2, "x": 0.5, "ok": True}], columns)
    assert served.dtypes.astype(str).tolist() == ["int64", "float64", "bool", "object"]
    assert served["s"].iloc[0] == "a" and np.isnan(served["s"].iloc[1])  # a missing key is null too


def typed_frame() -> pd.DataFrame:
    """The dtypes pipelines are trained on beyond numpy's: each must come back as it was."""
    return pd.DataFrame(
        {
            "signed up": pd.to_datetime(
                ["2024-01-05", "2024-03-01 12:30", None, "2023-12-31 23:59:59.5"], format="ISO8601"
            ),
            "last login (UTC)": pd.to_datetime(["2024-01-05T10:00Z", None, "2024-02-01T00:00Z", "2024-06-30T22:00Z"]),
            "visits": pd.Series([3, None, 1, 7], dtype="Int64"),
            "premium": pd.Series([True, None, False, True], dtype="boolean"),
            # the training order is the codes' order, not the alphabet's
            "plan": pd.Categorical(["pro", "free", None, "team"], categories=["team", "pro", "free"]),
            "note": pd.Series(["likes it", None, "asked for a refund", "no"], dtype="string"),
            "score": np.array([0.1, 0.25, np.nan, 1.5], dtype=np.float32),
            "when (text)": ["2024-01-05", "2024-01-06", "2024-01-07", None],
        }
    )


def test_input_columns_record_the_training_dtypes():
    columns = {c["name"]: c for c in input_columns(typed_frame())}
    assert {n: (c["type"], c.get("dtype")) for n, c in columns.items()} == {
        "signed up": ("datetime", "datetime64[us]"),
        "last login (UTC)": ("datetime", "datetime64[us, UTC]"),
        "visits": ("integer", "Int64"),
        "premium": ("boolean", "boolean"),
        "plan": ("string", "category"),
        "note": ("string", "string"),
        "score": ("number", "float32"),
        "when (text)": ("string", None),
    }
    assert columns["plan"]["categories"] == ["team", "pro", "free"]
    assert "categories" not in columns["when (text)"]  # dates as text: each new one would count as unseen
    assert "categories" not in columns["signed up"]


def test_free_text_and_identifiers_are_not_categories():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "comment": [f"comment number {i}" for i in range(300)],
            "customer id": [f"C{i:05d}" for i in range(300)],
            "country": rng.choice(["NO", "SE", "DK", "FI"], 300),
        }
    )
    columns = {c["name"]: c for c in input_columns(frame)}
    assert "categories" not in columns["comment"] and "categories" not in columns["customer id"]
    assert columns["country"]["categories"] == ["DK", "FI", "NO", "SE"]
    # categories come from the reference when there is one: the sample may miss some
    columns = {c["name"]: c for c in input_columns(frame.head(5), reference=frame)}
    assert columns["country"]["categories"] == ["DK", "FI", "NO", "SE"]


def test_service_frame_rebuilds_the_training_dtypes_exactly():
    frame = typed_frame()
    columns = input_columns(frame)
    records = sample_records(frame, columns, size=len(frame))
    served = service_frame(records, columns)
    # the rows come back in the frame's order, so the service's frame is the training frame
    pd.testing.assert_frame_equal(served, frame.astype({"when (text)": object}))
    assert (
        records[1]["signed up"] == "2024-03-01T12:30:00"
        and records[0]["last login (UTC)"] == "2024-01-05T10:00:00+00:00"
    )


def test_modelgen_imports_without_pandas():
    code = (
        "import sys, modelgen, modelgen.cli, modelgen.registry.backends, modelgen.manifest.infer, "
        "modelgen.manifest.writer; "
        "assert 'pandas' not in sys.modules, 'pandas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- manifest writer

MANIFEST = {
    "apiVersion": "modelgen/v1",
    "kind": "Model",
    "metadata": {"name": "churn", "version": "2.1.0", "owner": "ds@example.com", "description": "Will they leave?"},
    "spec": {
        "runtime": "python",
        "task": "classification",
        "artifact": {"uri": "file:///registry/churn/2.1.0/model.joblib", "sha256": DATA_SHA256, "format": "joblib"},
        "requirements": ["scikit-learn==1.9.1", "pandas==3.1.1"],
        "code": ["features.py"],
        "input": [
            {"name": "plan", "type": "string", "categories": ["basic", "pro"], "strict": True},
            {"name": "tenure_months", "type": "integer"},
            {"name": "fee", "type": "number", "nullable": True, "description": "x" * 100},
        ],
        "output": {"type": "probabilities", "classes": ["no", "yes"]},
        "sample": "sample.json",
        "serving": {"replicas": 2, "resources": {"cpu": "2", "memory": "1Gi"}},
        "environments": ["dev", {"name": "prod", "replicas": 3, "host": "churn.apps.example.com"}],
    },
}

EXPECTED = f"""\
# Written by a test.
# Rerun it.
apiVersion: modelgen/v1
kind: Model
metadata:
  name: churn
  version: 2.1.0
  owner: ds@example.com
  description: Will they leave?
spec:
  runtime: python
  task: classification
  artifact:
    uri: file:///registry/churn/2.1.0/model.joblib
    sha256: {DATA_SHA256}
    format: joblib
  requirements: [scikit-learn==1.9.1, pandas==3.1.1]
  code: [features.py]
  input:
    - {{name: plan, type: string, categories: [basic, pro], strict: true}}
    - {{name: tenure_months, type: integer}}
    - name: fee
      type: number
      nullable: true
      description: {"x" * 100}
  output: {{type: probabilities, classes: ['no', 'yes']}}
  sample: sample.json
  serving: {{replicas: 2, resources: {{cpu: '2', memory: 1Gi}}}}
  environments: [dev, {{name: prod, replicas: 3, host: churn.apps.example.com}}]
"""


def test_manifest_text_puts_what_fits_on_one_line():
    assert manifest_text(MANIFEST, header="Written by a test.\nRerun it.") == EXPECTED


def test_write_handover_writes_the_manifest_and_every_file_it_names(tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    (code / "features.py").write_text("X = 1\n")
    sample = [{"plan": "pro", "tenure_months": 3, "fee": None}]

    path = write_handover(tmp_path / "out", MANIFEST, artifact=DATA, sample=sample, code_from=code)

    out = tmp_path / "out"
    assert path == out / "model.yaml"
    assert sorted(p.name for p in out.iterdir()) == ["features.py", "model.joblib", "model.sha256", "model.yaml"] + [
        "sample.json"
    ]
    assert (out / "model.joblib").read_bytes() == DATA
    assert (out / "model.sha256").read_text() == f"{DATA_SHA256}  model.joblib\n"  # as sha256sum -c reads it
    assert (out / "sample.json").read_text() == (
        '[\n  {\n    "plan": "pro",\n    "tenure_months": 3,\n    "fee": null\n  }\n]\n'
    )
    assert (out / "features.py").read_text() == "X = 1\n"
    assert path.read_text() == EXPECTED.split("\n", 2)[2]
    assert load(path).name == "churn"  # a valid manifest


def test_write_handover_needs_the_code_it_names_and_then_writes_nothing(tmp_path):
    with pytest.raises(ModelgenError, match="say which folder holds them"):
        write_handover(tmp_path / "out", MANIFEST, artifact=DATA, sample=[])
    with pytest.raises(ModelgenError, match=f"code module not found: {tmp_path.resolve()}/features.py"):
        write_handover(tmp_path / "out", MANIFEST, artifact=DATA, sample=[], code_from=tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "version", "filename"),
    [("penguins\n", "1.0.0", "model.joblib"), ("penguins", "1.0.0\n", "model.joblib"), ("p", "1.0.0", "m.joblib\n")],
)
def test_a_trailing_newline_is_no_valid_name_version_or_file_name(tmp_path, name, version, filename):
    # Python's $ matches before a final newline: each would become a folder or file with one in it.
    with pytest.raises(RegistryError, match="not"):
        LocalRegistry(tmp_path).publish(name, version, filename, b"bytes")
    assert not any(tmp_path.rglob("*\n*"))
