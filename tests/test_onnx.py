"""The ONNX engine for real: models converted by ``modelgen convert`` and ``deploy(engine=...)``,
their parity and speed gates, and each generated service serving the ONNX file (gunicorn behind
nginx) against the same project serving the artifact (MODELGEN_ENGINE=native).

The penguins stack (SVC, logistic regression and XGBoost under naive Bayes), a random forest, a
HistGradientBoosting regressor, a LightGBM classifier, and the anomaly stack with the converter
its own module registers. Every penguins row (missing values kept) and the contract's edge rows
get the same answers from both engines within the tolerance; the bad-request table gets the same
4xx from both.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from support import Service, fetch_artifact, project_venv
from test_service import _bad_requests, _python_follows_requests, _table_failures

import modelgen
from modelgen.api import generate
from modelgen.engines import gate
from modelgen.engines.record import gate_rows, onnx_uri
from modelgen.errors import DeployError, ManifestError
from modelgen.manifest import load
from modelgen.registry.backends import fetch

pytestmark = pytest.mark.slow  # converts, gates and serves real models

HERE = Path(__file__).resolve().parent


def penguins() -> tuple[pd.DataFrame, pd.Series]:
    """Penguins as the service rebuilds them: strings as objects with NaN for null."""
    import palmerpenguins

    data = palmerpenguins.load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    X = data.drop(columns=["species"])
    for name in ("island", "sex"):
        X[name] = X[name].astype(object).where(X[name].notna(), np.nan)
    return X, data["species"]


def preprocessing(numbers: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    categories = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    return ColumnTransformer([("categories", categories, ["island", "sex"]), ("numbers", SimpleImputer(), numbers)])


NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


def random_forest() -> tuple[Any, pd.DataFrame]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline

    X, y = penguins()
    return make_pipeline(preprocessing(NUMBERS), RandomForestClassifier(n_estimators=100, random_state=0)).fit(X, y), X


def hgb_regressor() -> tuple[Any, pd.DataFrame]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline

    X, _ = penguins()
    X = X[X["body_mass_g"].notna()].reset_index(drop=True)
    y, X = X["body_mass_g"], X.drop(columns=["body_mass_g"])
    numbers = [n for n in NUMBERS if n != "body_mass_g"]
    return make_pipeline(preprocessing(numbers), HistGradientBoostingRegressor(random_state=0)).fit(X, y), X


def lightgbm_classifier() -> tuple[Any, pd.DataFrame]:
    import lightgbm
    from sklearn.pipeline import make_pipeline

    X, y = penguins()
    model = make_pipeline(preprocessing(NUMBERS), lightgbm.LGBMClassifier(n_estimators=40, verbose=-1))
    return model.fit(X, y), X


DEPLOYED: dict[str, Callable[[], tuple[Any, pd.DataFrame]]] = {
    "onnx-forest": random_forest,
    "onnx-hgb": hgb_regressor,
    "onnx-lightgbm": lightgbm_classifier,
}


# ---------------------------------------------------------------- shipping them


@dataclass
class Served:
    name: str
    contract: dict[str, Any]
    rows: list[dict[str, Any]]  # every penguins row the model takes, gaps kept
    onnx: Service
    native: Service
    project: Path


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            k: None if (isinstance(v, float) and v != v) else (v.item() if hasattr(v, "item") else v)
            for k, v in r.items()
        }
        for r in frame.astype(object).to_dict("records")
    ]


def converted_example(manifest: Path, where: Path, engine: str, *, speed_gate: bool = True) -> Path:
    """A copy of an example's model folder, converted with ``modelgen convert`` (through the CLI)."""
    shutil.copytree(manifest.parent, where)
    path = where / manifest.name
    if not speed_gate:
        doc = yaml.safe_load(path.read_text())
        doc["spec"]["serving"] = {**doc["spec"].get("serving", {}), "onnx": {"speedGate": False}}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = subprocess.run(
        [Path(sys.executable).parent / "modelgen", "convert", path, "--engine", engine],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("converted to ONNX:"), done.stdout
    return path


def serve(name: str, manifest: Path, folder: Path, rows: list[dict[str, Any]], python: Path | None = None) -> Served:
    project = generate(manifest, folder / "out").path
    python = python or Path(sys.executable)
    model_path = fetch_artifact(project, python, folder / "model" / "model.bin", folder / "model" / "model.onnx")
    env = {"ONNX_PATH": str(folder / "model" / "model.onnx"), "MAX_REQUEST_BYTES": "65536"}
    onnx = Service(project, python, model_path, env=env).start()
    native = Service(project, python, model_path, env={**env, "MODELGEN_ENGINE": "native"}).start()
    contract = json.loads((project / "app/contract.json").read_text("utf-8"))
    names = [c["name"] for c in contract["columns"]]
    return Served(name, contract, [{n: r[n] for n in names} for r in rows], onnx, native, project)


@pytest.fixture(scope="module", params=["penguins-stack", "anomaly-stack", *DEPLOYED])
def served(request, tmp_path_factory, penguins_manifest, anomaly_manifest):
    folder = tmp_path_factory.mktemp(request.param)
    all_rows = records(penguins()[0].assign(species=penguins()[1]))
    if request.param == "penguins-stack":
        manifest = converted_example(penguins_manifest, folder / "src", "onnx")
        # The stack in a virtualenv of exactly its requirements.txt: onnxruntime pinned there too.
        project = generate(manifest, folder / "venv-project").path
        result = serve(request.param, manifest, folder, all_rows, project_venv(project, folder / "venv"))
    elif request.param == "anomaly-stack":
        # Slower than the pickle on 1000 rows (LOF's neighbours in ONNX), so served by choice: speedGate off.
        manifest = converted_example(anomaly_manifest, folder / "src", "onnx", speed_gate=False)
        result = serve(request.param, manifest, folder, all_rows)
    else:
        model, X = DEPLOYED[request.param]()
        patch = pytest.MonkeyPatch()
        patch.setenv("MODELGEN_CACHE", str(folder / "cache"))
        try:
            deployment = modelgen.deploy(
                model, request.param, X.head(60), registry=folder / "registry", gitops=False,
                owner="jane.doe@example.com", engine="onnx",
            )  # fmt: skip
        finally:
            patch.undo()
        result = serve(request.param, Path(deployment.manifest), folder, all_rows)
    yield result
    result.onnx.stop()
    result.native.stop()


def _project_module(project: Path, name: str):
    """A module of the generated project (app/parity.py), imported from its files."""
    spec = importlib.util.spec_from_file_location(f"_served_{name}", project / "app" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(project))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project))
        for key in [k for k in sys.modules if k == "app" or k.startswith("app.")]:
            del sys.modules[key]  # the next project's app/ must not find this one's
    return module


# ---------------------------------------------------------------- the tests


def test_the_onnx_engine_answers_as_the_native_one_on_every_row_and_the_edge_rows(served):
    contract = served.contract
    assert contract["engine"] == "onnx" and contract["onnx"]["sha256"]
    parity = _project_module(served.project, "parity")
    rows = served.rows + parity.edge_rows(served.rows, contract["columns"])
    answers = {}
    for engine, service in (("onnx", served.onnx), ("native", served.native)):
        got = service.post_json(rows)
        assert got.status == 200, (engine, got.body[:300])
        answers[engine] = got.json()["predictions"]
    report = parity.compare(contract["output"], answers["native"], answers["onnx"], contract["onnx"]["tolerance"])
    assert report["passed"], report
    assert report["rows"] == len(rows) > 340
    # CSV too, on the ONNX engine: the same answers as its JSON.
    names = [c["name"] for c in contract["columns"]]
    csv_text = pd.DataFrame(served.rows, columns=names).to_csv(index=False)
    got = served.onnx.post_csv(csv_text)
    assert got.status == 200 and got.json()["predictions"] == answers["onnx"][: len(served.rows)]


def test_the_bad_request_table_gets_the_same_4xx_from_both_engines(served):
    row = next(r for r in served.rows if None not in r.values())
    columns = served.contract["columns"]
    # Python refuses a body nested 30,000 deep as a whole (test_service.py says so).
    shared = [c for c in _python_follows_requests([row], columns) if not c[0].startswith("value nested 30")]
    cases = _bad_requests([row], columns) + shared
    failures = _table_failures(served.onnx, cases)  # the documented answers
    for case, ctype, body, *_ in cases:  # and byte for byte the native engine's
        data = body if isinstance(body, bytes) else body.encode()
        headers = {"Content-Type": ctype} if ctype else {}
        onnx, native = (s.request("POST", "/invocations", data, headers) for s in (served.onnx, served.native))
        if (onnx.status, onnx.body) != (native.status, native.body):
            failures.append(
                f"{case}: onnx {onnx.status} {onnx.body[:120]!r}, native {native.status} {native.body[:120]!r}"
            )
    assert not failures, "\n".join(failures)


def test_metadata_and_metrics_name_the_engine(served):
    meta = served.onnx.request("GET", "/metadata").json()
    assert (meta["engine"], meta["onnx"]["sha256"]) == ("onnx", served.contract["onnx"]["sha256"])
    assert served.native.request("GET", "/metadata").json()["engine"] == "native"
    for engine, service in (("onnx", served.onnx), ("native", served.native)):
        metrics = service.request("GET", "/metrics").body.decode()
        assert f'engine="{engine}"' in next(
            line for line in metrics.splitlines() if line.startswith("modelgen_model_info")
        )


def test_a_step_without_a_converter_serves_natively_under_auto_and_fails_under_onnx(tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    sys.path.insert(0, str(HERE))
    from onnx_steps import Winsorize

    X, y = penguins()
    X = X[["bill_length_mm", "bill_depth_mm"]].fillna(40.0)
    model = make_pipeline(Winsorize(), LogisticRegression(max_iter=500)).fit(X, y)
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    options = {"registry": tmp_path / "registry", "gitops": False, "owner": "jane.doe@example.com"}
    options["code"] = [HERE / "onnx_steps.py"]
    with pytest.raises(DeployError) as refused:
        modelgen.deploy(model, "winsorized", X.head(30), engine="onnx", **options)
    message = str(refused.value)
    assert "step model/winsorize (onnx_steps.Winsorize) has no ONNX converter" in message, message
    assert not (tmp_path / "registry" / "winsorized").exists()  # nothing uploaded
    shipped = modelgen.deploy(model, "winsorized", X.head(30), engine="auto", **options)
    manifest = load(shipped.manifest)
    assert (manifest.serving.engine, manifest.engine, manifest.artifact.onnx) == ("auto", "native", None)
    assert "step model/winsorize (onnx_steps.Winsorize) has no ONNX converter" in manifest.engine_reason
    assert sorted(p.name for p in (tmp_path / "registry" / "winsorized" / "1.0.0").iterdir()) == [
        "model.joblib",
        "model.yaml",
        "onnx_steps.py",
        "sample.json",
    ]
    project = generate(shipped.manifest, tmp_path / "out").path
    contract = json.loads((project / "app/contract.json").read_text())
    assert (contract["engine"], contract["onnx"]) == ("native", None)
    assert "has no ONNX converter" in contract["engineReason"]
    # Asking for onnx now fails generation, naming the step the conversion stopped at.
    asked = Path(shipped.manifest).read_text().replace("engine: auto", "engine: onnx")
    Path(shipped.manifest).write_text(asked)
    with pytest.raises(ManifestError) as refused:
        generate(shipped.manifest, tmp_path / "out2")
    assert "spec.serving.engine: onnx needs spec.artifact.onnx" in str(refused.value)
    assert "step model/winsorize (onnx_steps.Winsorize) has no ONNX converter" in str(refused.value)


def test_the_parity_gate_catches_a_wrong_conversion(penguins_manifest):
    """XGBoost fed doubles without the float32 cast it applies itself: wrong answers, no error."""
    manifest = load(penguins_manifest)
    artifact = fetch(manifest.artifact.uri, manifest.artifact.sha256)
    uri = onnx_uri(manifest.artifact.uri)
    wrong = gate.convert(manifest, artifact, gate_rows(manifest), uri, tree_cast=False)
    assert not wrong.passed and wrong.report["flips"] > 0
    assert wrong.reason.startswith("the parity gate failed on") and "changed answer(s)" in wrong.reason
    right = gate.convert(manifest, artifact, gate_rows(manifest), uri)
    assert right.passed and right.report["flips"] == 0 and right.report["maxDifference"] <= 1e-6
    # The same model converted twice: the same bytes (the manifest's sha256 does not wander).
    assert gate.convert(manifest, artifact, manifest.sample, uri).onnx.sha256 == right.onnx.sha256
