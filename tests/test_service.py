"""The generated service, installed from its own requirements.txt and started with its real server.

Predictions over HTTP must equal the artifact's own predict/predict_proba in this process,
every payload shape must give the same answer, and bad input must get its documented 4xx.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from support import Service, fetch_artifact, project_venv

pytestmark = pytest.mark.slow  # every test serves from a project's own virtualenv

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def anomaly_python(anomaly_project, tmp_path_factory) -> Path:
    return project_venv(anomaly_project, tmp_path_factory.mktemp("venv") / "anomaly")


@pytest.fixture(scope="module")
def penguins_model_path(penguins_project, penguins_python, tmp_path_factory) -> Path:
    return fetch_artifact(penguins_project, penguins_python, tmp_path_factory.mktemp("model") / "model.joblib")


@pytest.fixture(scope="module")
def penguins(penguins_project, penguins_python, penguins_model_path):
    # A small body limit so the 413 case needs no huge request.
    service = Service(
        penguins_project, penguins_python, penguins_model_path, env={"MAX_REQUEST_BYTES": "65536"}
    ).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def anomaly(anomaly_project, anomaly_python, tmp_path_factory):
    model_path = fetch_artifact(anomaly_project, anomaly_python, tmp_path_factory.mktemp("model") / "model.joblib")
    service = Service(anomaly_project, anomaly_python, model_path).start()
    yield service
    service.stop()


def _sample(project: Path) -> list[dict]:
    return json.loads((project / "tests/sample.json").read_text())


def _columns(project: Path) -> list[dict]:
    return json.loads((project / "app/contract.json").read_text())["columns"]


def _names(project: Path) -> list[str]:
    return [c["name"] for c in _columns(project)]


def _frame(project: Path, rows: list[dict]) -> pd.DataFrame:
    """The rows as a data scientist would build them in a notebook: missing strings as NaN."""
    contract = json.loads((project / "app/contract.json").read_text())
    frame = pd.DataFrame(rows, columns=_names(project))
    for col in contract["columns"]:
        if col["type"] == "string":
            frame[col["name"]] = frame[col["name"]].astype(object).where(frame[col["name"]].notna(), np.nan)
    return frame


def _csv(names: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(
            ["" if row[n] is None else repr(row[n]) if isinstance(row[n], float) else row[n] for n in names]
        )
    return out.getvalue()


# ---------------------------------------------------------------- classification


def test_penguins_predictions_equal_in_process_predict_proba(penguins, penguins_project, penguins_model_path):
    sample = _sample(penguins_project)
    model = joblib.load(penguins_model_path)
    frame = _frame(penguins_project, sample)
    proba = model.predict_proba(frame)
    labels = model.predict(frame)

    got = penguins.post_json(sample)
    assert got.status == 200, got.body
    predictions = got.json()["predictions"]
    assert [p["label"] for p in predictions] == labels.tolist()
    classes = model.classes_.tolist()
    assert [[p["probabilities"][c] for c in classes] for p in predictions] == proba.tolist()


def test_every_payload_shape_gives_identical_predictions(penguins, penguins_project):
    sample = _sample(penguins_project)
    names = _names(penguins_project)
    reference = penguins.post_json(sample).json()["predictions"]
    shapes = {
        "dataframe_split": {"dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in sample]}},
        "dataframe_split, other column order": {
            "dataframe_split": {"columns": names[::-1], "data": [[r[n] for n in names[::-1]] for r in sample]}
        },
        "dataframe_records": {"dataframe_records": sample},
        "instances (records)": {"instances": sample},
        "instances (lists)": {"instances": [[r[n] for n in names] for r in sample]},
        "inputs": {"inputs": sample},
    }
    for shape, doc in shapes.items():
        got = penguins.post_json(doc)
        assert got.status == 200, (shape, got.body)
        assert got.json()["predictions"] == reference, shape
    # A lone row goes through BLAS on its own, so its last bits may differ from the same row in a batch;
    # the single-object shape must equal a one-row list, exactly.
    one = penguins.post_json(sample[0])
    assert one.status == 200, one.body
    assert one.json()["predictions"] == penguins.post_json([sample[0]]).json()["predictions"]
    csv_in = penguins.post_csv(_csv(names, sample))
    assert csv_in.status == 200, csv_in.body
    assert csv_in.json()["predictions"] == reference


def test_csv_out(penguins, penguins_project):
    sample = _sample(penguins_project)
    reference = penguins.post_json(sample).json()["predictions"]
    got = penguins.post_json(sample, Accept="text/csv")
    assert got.status == 200
    assert got.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.body.decode())))
    classes = list(reference[0]["probabilities"])
    assert rows[0] == ["label"] + [f"probability_{c}" for c in classes]
    assert [r[0] for r in rows[1:]] == [p["label"] for p in reference]
    assert [[float(x) for x in r[1:]] for r in rows[1:]] == [list(p["probabilities"].values()) for p in reference]


def test_unknown_category_of_a_lenient_column_is_scored(penguins, penguins_project):
    # A penguin from another island: the encoder ignores the category, the drift job reports it.
    row = dict(_sample(penguins_project)[0], island="Atlantis")
    got = penguins.post_json([row])
    assert got.status == 200, got.body


def test_endpoints(penguins, penguins_project, penguins_model_path):
    names = _names(penguins_project)
    meta = penguins.request("GET", "/metadata").json()
    assert meta["name"] == "penguin-species"
    assert (
        meta["artifact"]["sha256"]
        == json.loads((penguins_project / "app/contract.json").read_text())["artifact"]["sha256"]
    )
    assert meta["libraries"]["scikit-learn"] == sklearn.__version__  # the pin, installed in the project's venv
    schema = penguins.request("GET", "/schema").json()
    # The documents come from contract.json, whose objects are written with sorted keys (so an
    # upgrade renders them the same from recorded inputs); the column order is in "required".
    assert list(schema["input"]["properties"]) == sorted(names)
    assert schema["input"]["required"] == names
    spec = penguins.request("GET", "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/invocations" in spec["paths"]
    assert penguins.request("GET", "/ping").status == 200


def test_metrics_add_up_across_workers(penguins, penguins_project):
    def invocations_200() -> float:
        text = penguins.request("GET", "/metrics").body.decode()
        match = re.search(r'modelgen_requests_total\{endpoint="/invocations",method="POST",status="200"\} (\S+)', text)
        return float(match.group(1)) if match else 0.0

    before = invocations_200()
    for _ in range(12):  # sync workers close each connection, so these spread over both workers
        assert penguins.post_json(_sample(penguins_project)[:1]).status == 200
    text = penguins.request("GET", "/metrics").body.decode()
    assert invocations_200() - before == 12
    assert "modelgen_request_duration_seconds_bucket" in text
    assert 'modelgen_model_info{engine="native",name="penguin-species"' in text


# ---------------------------------------------------------------- bad requests

BIG = "x" * 70_000


Case = tuple[str, str, "str | bytes", int, "str | None", "int | None", str]
# What the service says of a value that is not of its column's type.
NOT_A = {
    "number": "is not a number",
    "integer": "is not an integer",
    "string": "is not a string",
    "boolean": "is not true or false",
    "datetime": "is not a date-time",
}


class _Picker:
    """Columns of a model by what a bad-request case needs of one: the i-th number column (in turn,
    so the cases spread over them), a strict one, a required one; None when the model has none."""

    def __init__(self, columns: list[dict]):
        self.columns = columns

    def _of(self, keep, i: int) -> str | None:
        found = [c["name"] for c in self.columns if keep(c)]
        return found[i % len(found)] if found else None

    def number(self, i: int = 0) -> str | None:
        return self._of(lambda c: c["type"] == "number", i)

    def integer(self) -> str | None:
        return self._of(lambda c: c["type"] == "integer", 0)

    def string(self) -> str | None:
        return self._of(lambda c: c["type"] == "string", 0)

    def strict(self) -> str | None:
        return self._of(lambda c: c.get("strict"), 0)

    def required(self) -> str | None:
        return self._of(lambda c: not c["nullable"], 0)

    def typed(self) -> str:
        """A column whose type says what a list in it is not: an integer one when there is one."""
        return self.integer() or self.columns[-1]["name"]

    def type_of(self, name: str) -> str:
        return next(c["type"] for c in self.columns if c["name"] == name)


def _bad_requests(sample: list[dict], columns: list[dict]) -> list[Case]:
    """The table of bad requests and their documented answers, for any model's ``columns`` (the
    contract's): a case that needs a kind of column (a number, a strict string...) takes one the
    model has, and is left out when it has none. ``sample[0]`` must be a valid row."""
    row = sample[0]
    names = [c["name"] for c in columns]
    pick = _Picker(columns)
    first, typed = names[0], pick.typed()
    without_first = {k: v for k, v in row.items() if k != first}
    j = "application/json"
    cases: list[Case | None] = [
        # (case, content type, body, status, column, row, words in the message)
        ("missing column", j, json.dumps([without_first]), 400, first, 0, "missing column"),
        ("extra column", j, json.dumps([dict(row, colour="blue")]), 400, "colour", 0, "unknown column"),
        ("not JSON", j, "{'island': 'Dream'", 400, None, None, "not valid JSON"),
        ("empty body", j, "", 400, None, None, "empty body"),
        ("JSON scalar", j, "42", 400, None, None, "object or a list"),
        ("empty list", j, "[]", 400, None, None, "non-empty list"),
        ("row that is not an object", j, json.dumps([row, 7]), 400, None, 1, "expected an object"),
        (
            "split row of the wrong length",
            j,
            json.dumps({"dataframe_split": {"columns": names, "data": [[1]]}}),
            400,
            None,
            0,
            "expected a list of",
        ),
        (
            "split with an unknown column",
            j,
            json.dumps({"dataframe_split": {"columns": [*names[:-1], "x"], "data": [[None] * len(names)]}}),
            400,
            "x",
            None,
            "unknown column",
        ),
        (
            "split with a duplicated column",
            j,
            json.dumps({"dataframe_split": {"columns": [*names, first], "data": []}}),
            400,
            first,
            None,
            "more than once",
        ),
        (
            "unexpected field next to the rows",
            j,
            json.dumps({"dataframe_records": [row], "params": {}}),
            400,
            None,
            None,
            "unexpected field",
        ),
        ("CSV missing a column", "text/csv", _csv(names[1:], [row]), 400, first, None, "missing column"),
        ("CSV row with too few fields", "text/csv", _csv(names, []) + "Dream,1\n", 400, None, 0, "fields"),
        ("CSV header only", "text/csv", _csv(names, []), 400, None, None, "no data rows"),
        ("CSV not UTF-8", "text/csv", b"island\n\xff\xfe\n", 400, None, None, "not UTF-8"),
        ("unsupported media type", "text/plain", "island=Dream", 415, None, None, "unsupported media type"),
        ("no media type", "", json.dumps([row]), 415, None, None, "unsupported media type"),
        ("body over the limit", j, json.dumps([dict(row, **{first: BIG})]), 413, None, None, "over the limit"),
        # Bodies from hostile or careless clients (issue 12): the same answers from both runtimes.
        (
            "JSON in latin-1",
            j,
            json.dumps([dict(row, **{first: "Dréam"})], ensure_ascii=False).encode("latin-1"),
            400,
            None,
            None,
            "not valid JSON",
        ),
        (
            "gzip-compressed JSON",
            j,
            gzip.compress(json.dumps([row]).encode(), mtime=0),
            400,
            None,
            None,
            "not valid JSON",
        ),
        (
            "NUL byte in JSON",
            j,
            json.dumps([dict(row, **{first: "Dr\0eam"})]).replace("\\u0000", "\0"),
            400,
            None,
            None,
            "not valid JSON",
        ),
        ("CSV in UTF-16", "text/csv", _csv(names, [row]).encode("utf-16"), 400, None, None, "not UTF-8"),
        (
            "gzip-compressed CSV",
            "text/csv",
            gzip.compress(_csv(names, [row]).encode(), mtime=0),
            400,
            None,
            None,
            "not UTF-8",
        ),
        (
            "split with columns null",
            j,
            json.dumps({"dataframe_split": {"columns": None, "data": [[row[n] for n in names]]}}),
            400,
            None,
            None,
            "list of column names",
        ),
        (
            "value nested 500 deep",
            j,
            _with_raw(row, typed, "[" * 500 + "]" * 500),
            400,
            typed,
            0,
            NOT_A[pick.type_of(typed)],
        ),
    ]
    if (n := pick.number(0)) is not None:
        cases += [
            ("string for a number", j, json.dumps([row, dict(row, **{n: "long"})]), 400, n, 1, "is not a number"),
            (
                "bool for a number",
                j,
                json.dumps([dict(row, **{pick.number(3): True})]),
                400,
                pick.number(3),
                0,
                "is not a number",
            ),
            (
                "infinite number",
                j,
                json.dumps([dict(row, **{pick.number(1): float("inf")})]),
                400,
                pick.number(1),
                0,
                "finite",
            ),
            (
                "CSV bad number",
                "text/csv",
                _csv(names, [row, dict(row, **{pick.number(2): "wide"})]),
                400,
                pick.number(2),
                1,
                "is not a number",
            ),
            (
                "number too large for a float",
                j,
                _with_raw(row, pick.number(1), "1e400"),
                400,
                pick.number(1),
                0,
                "is not a finite number",
            ),
            (
                "NUL byte in a CSV number",
                "text/csv",
                _csv(names, [dict(row, **{pick.number(1): "1\x008"})]),
                400,
                pick.number(1),
                0,
                "is not a number",
            ),
        ]
    if (s := pick.string()) is not None:
        cases.append(("number for a string", j, json.dumps([dict(row, **{s: 3})]), 400, s, 0, "is not a string"))
    if (i := pick.integer()) is not None:
        cases.append(
            ("fraction for an integer", j, json.dumps([dict(row, **{i: 2007.5})]), 400, i, 0, "is not an integer")
        )
    if (r := pick.required()) is not None:
        cases.append(
            ("null in a non-nullable column", j, json.dumps([dict(row, **{r: None})]), 400, r, 0, "null is not allowed")
        )
    if (k := pick.strict()) is not None:
        cases.append(
            (
                "unknown category of a strict column",
                j,
                json.dumps([dict(row, **{k: "unknown"})]),
                400,
                k,
                0,
                "not a known category",
            )
        )
    return cases


def _with_raw(row: dict, name: str, text: str) -> str:
    """A one-row JSON body whose ``name`` is ``text`` as written, which json.dumps cannot write (1e400)."""
    return "[" + json.dumps({**row, name: "@"}).replace('"@"', text) + "]"


def _python_follows_requests(sample: list[dict], columns: list[dict]) -> list[Case]:
    """Bad requests the R service answers so; the Python service answers them alike with its fixes for
    issue 12 (items 5 and 15), and then ``test_bad_requests_get_their_documented_4xx`` takes these too."""
    row = sample[0]
    names = [c["name"] for c in columns]
    pick = _Picker(columns)
    typed = pick.typed()
    j = "application/json"
    first = json.dumps({names[0]: row[names[0]]})[1:-1]
    cases = [
        (
            "duplicate key",
            j,
            json.dumps([row]).replace("{", "{" + first + ", ", 1),
            400,
            names[0],
            None,
            f"key {names[0]!r} appears more than once",
        ),
        (
            "value nested 30,000 deep",
            j,
            _with_raw(row, typed, "[" * 30_000 + "]" * 30_000),
            400,
            typed,
            0,
            NOT_A[pick.type_of(typed)],
        ),
    ]
    if (i := pick.integer()) is not None:
        cases += [
            ("integer out of range", j, json.dumps([dict(row, **{i: 10**30})]), 400, i, 0, "out of range"),
            (
                "CSV integer out of range",
                "text/csv",
                _csv(names, [dict(row, **{i: 10**30})]),
                400,
                i,
                0,
                "out of range",
            ),
        ]
    return cases


def test_bad_requests_get_their_documented_4xx(penguins, penguins_project):
    sample, columns = _sample(penguins_project), _columns(penguins_project)
    # The R service's hostile cases too, but the deep nesting: Python refuses the whole body
    # ("nested too deeply", no column) before it reaches a cell, R names the cell.
    shared = [c for c in _python_follows_requests(sample, columns) if not c[0].startswith("value nested")]
    cases = _bad_requests(sample, columns) + shared
    assert len(cases) == 38  # penguins have every kind of column the table asks for
    failures = _table_failures(penguins, cases)
    assert not failures, "\n".join(failures)


def _table_failures(service: Service, cases: list[Case]) -> list[str]:
    """Each case ``service`` does not answer as documented: status, column, row and words."""
    failures = []
    for case, ctype, body, status, column, row, words in cases:
        data = body if isinstance(body, bytes) else body.encode()
        headers = {"Content-Type": ctype} if ctype else {}
        got = service.request("POST", "/invocations", data, headers)
        try:
            error = got.json()["error"]
        except (ValueError, KeyError, TypeError):
            failures.append(f"{case}: {got.status} {got.body[:200]!r} is not the JSON error shape")
            continue
        if (got.status, error["column"], error["row"]) != (status, column, row) or words not in error["message"]:
            failures.append(f"{case}: got {got.status} {error}")
    return failures


def test_other_methods_and_paths_answer_in_json(penguins):
    got = penguins.request("GET", "/invocations")
    assert got.status == 405 and "error" in got.json()
    got = penguins.request("GET", "/nope")
    assert got.status == 404 and "error" in got.json()


def test_every_answer_names_the_model_version(penguins, penguins_project):
    """With a canary two versions answer on one route: each answer says which one it was."""
    version = json.loads((penguins_project / "app/contract.json").read_text())["version"]
    sample = _sample(penguins_project)
    for got in (
        penguins.post_json(sample[:1]),
        penguins.post_json([{}]),
        penguins.request("GET", "/ping"),
        penguins.request("GET", "/nope"),
        penguins.request("GET", "/invocations"),
    ):
        assert got.headers.get("X-Model-Version") == version, (got.status, got.headers)


def _own_tests(project: Path, python: Path, model_path: Path) -> subprocess.CompletedProcess:
    env = {"MODEL_PATH": str(model_path), "PATH": "/usr/bin:/bin", "HOME": str(project)}
    return subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generated_smoke_tests_pass(penguins_project, penguins_python, penguins_model_path):
    run = _own_tests(penguins_project, penguins_python, penguins_model_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b1[0-9] passed\b", run.stdout), run.stdout[-500:]


# ---------------------------------------------------------------- start-up


def test_tampered_artifact_stops_startup(penguins_project, penguins_python, penguins_model_path, tmp_path):
    tampered = tmp_path / "model.joblib"
    data = bytearray(penguins_model_path.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as failed:
        Service(penguins_project, penguins_python, tampered).start(timeout=30)
    message = str(failed.value)
    assert "exited with 3" in message
    assert "sha256" in message and "refusing to start" in message
    assert "Traceback" not in message


def test_waitress_serves_the_same_predictions(penguins, penguins_project, penguins_python, penguins_model_path):
    sample = _sample(penguins_project)
    service = Service(penguins_project, penguins_python, penguins_model_path, env={"MODELGEN_SERVER": "waitress"})
    service.start()
    try:
        assert service.post_json(sample).json() == penguins.post_json(sample).json()
    finally:
        service.stop()


# ---------------------------------------------------------------- anomaly detection (custom code)


def test_anomaly_scores_equal_in_process(anomaly, anomaly_project, tmp_path_factory):
    sample = _sample(anomaly_project)
    contract = json.loads((anomaly_project / "app/contract.json").read_text())
    assert (anomaly_project / "model_code/anomaly_stack.py").is_file()
    # Load in a fresh interpreter that only knows the generated project's model_code/ folder.
    script = (
        "import json, sys, joblib, numpy as np, pandas as pd\n"
        "sys.path.insert(0, 'model_code')\n"
        f"m = joblib.load({str(anomaly.model_path)!r})\n"
        "rows = json.load(open('tests/sample.json'))\n"
        "cols = json.load(open('app/contract.json'))['columns']\n"
        "f = pd.DataFrame(rows, columns=[c['name'] for c in cols])\n"
        "for c in cols:\n"
        "    if c['type'] == 'string':\n"
        "        f[c['name']] = f[c['name']].astype(object).where(f[c['name']].notna(), np.nan)\n"
        "print(json.dumps({'score': m.decision_function(f).tolist(), 'predict': m.predict(f).tolist()}))\n"
    )
    out = subprocess.run(
        [anomaly.python, "-c", script], cwd=anomaly_project, capture_output=True, text=True, check=True
    )
    expected = json.loads(out.stdout)
    got = anomaly.post_json(sample)
    assert got.status == 200, got.body
    predictions = got.json()["predictions"]
    assert [p["score"] for p in predictions] == expected["score"]
    assert [p["outlier"] for p in predictions] == [v == -1 for v in expected["predict"]]
    assert contract["task"] == "anomaly-detection"
    assert anomaly.post_csv(_csv(_names(anomaly_project), sample)).json()["predictions"] == predictions


def test_generated_smoke_tests_pass_with_custom_code(anomaly_project, anomaly):
    run = _own_tests(anomaly_project, anomaly.python, anomaly.model_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b1[0-9] passed\b", run.stdout), run.stdout[-500:]
