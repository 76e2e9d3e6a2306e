"""`modelgen.deploy()` end to end: nginx as the registry, a bare GitOps remote, the generated service.

Also what it infers from DataFrames and estimators, what it refuses, and the example notebook,
executed headless.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from gitops_support import Remote, cli, git
from nginx_registry import PASSWORD, USER
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from support import Service

import modelgen
from modelgen.errors import ModelgenError, RegistryError
from modelgen.notebook.deploy import DeployError, infer_task, pin_requirements, referenced_globals

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "penguins"))
import train as penguins_train  # noqa: E402


@pytest.fixture
def env(tmp_path, monkeypatch, capsys, gitops_cache) -> Remote:
    """A GitOps repository, a private clone cache, and nginx's credentials in the environment."""
    monkeypatch.setenv("MODELGEN_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("MODELGEN_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.setenv("MODELGEN_OWNER", "jane.doe@example.com")
    remote = Remote.create(tmp_path / "gitops.git")
    assert cli(capsys, "init-gitops", remote.path)[0] == 0
    return remote


@pytest.fixture(scope="module")
def penguins():
    features, species = penguins_train.load_data()
    return penguins_train.build_pipeline().fit(features, species), features


@pytest.mark.slow
def test_deploy_end_to_end_serves_the_sample_like_the_object_in_memory(env, nginx, penguins, penguins_python, tmp_path):
    model, features = penguins
    sample = features.head(200)
    deployment = modelgen.deploy(
        model,
        "penguin-deployed",
        sample,
        registry=nginx.base_url,
        gitops=env.path,
        metadata={"metrics": {"accuracy": 0.985}, "data": "palmerpenguins 0.1.0", "monitoring": {"sampleRate": 0.5}},
        reference=features,  # drift monitoring against the training rows
    )
    assert deployment.version == "1.0.0"
    assert deployment.branch == "modelgen/penguin-deployed-1.0.0"
    assert repr(deployment).startswith("Deployment penguin-deployed 1.0.0")
    assert "<table>" in deployment._repr_html_()

    # The registry holds the version: the artifact (pinned by sha256), the manifest, the sample.
    folder = nginx.path("penguin-deployed", "1.0.0", "x").parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.joblib", "model.yaml", "reference.csv", "sample.json"]
    artifact = (folder / "model.joblib").read_bytes()
    folder_url = f"{nginx.base_url}/penguin-deployed/1.0.0"
    assert deployment.artifact_uri == f"{folder_url}/model.joblib"
    assert deployment.sha256 == hashlib.sha256(artifact).hexdigest()

    # The branch holds the project and the inferred manifest; the push asked for the MR.
    manifest = yaml.safe_load(env.show(deployment.branch, "models/penguin-deployed/model.yaml"))
    spec, meta = manifest["spec"], manifest["metadata"]
    assert (spec["task"], spec["output"]) == (
        "classification",
        {"type": "probabilities", "classes": ["Adelie", "Chinstrap", "Gentoo"]},
    )
    assert [c["name"] for c in spec["input"]] == list(features.columns)
    assert {c["name"]: c["type"] for c in spec["input"]}["year"] == "integer"
    assert sorted(r.split("==")[0] for r in spec["requirements"]) == [
        "joblib",
        "numpy",
        "pandas",
        "scikit-learn",
        "xgboost",
    ]
    assert meta["owner"] == "jane.doe@example.com"
    assert meta["provenance"]["metrics"] == {"accuracy": 0.985}
    assert meta["provenance"]["parameters"]["pca__n_components"] == 5
    assert meta["provenance"]["libraries"]["scikit-learn"] == __import__("sklearn").__version__
    assert "merge_request.create" in env.pushes()[-1]["options"]
    # Monitoring: the reference went to the registry and its profile (inputs and the model's
    # predictions on them) into the project.
    assert spec["monitoring"] == {"sampleRate": 0.5, "reference": f"{folder_url}/reference.csv"}
    profile = json.loads(env.show(deployment.branch, "models/penguin-deployed/deploy/base/monitoring/profile.json"))
    assert profile["rows"] == len(features) and set(profile["features"]) == set(features.columns)
    expected = pd.Series(model.predict(features)).value_counts(normalize=True).sort_index()
    assert profile["predictions"]["frequencies"] == pytest.approx(expected.to_dict())

    # The service generated on that branch answers the sample exactly like the object in memory.
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", "--branch", deployment.branch, str(env.path), str(checkout))
    project = checkout / "models" / "penguin-deployed"
    model_path = tmp_path / "model" / "model.joblib"
    fetch_env = {
        **os.environ,
        "ARTIFACT_URI": deployment.artifact_uri,
        "ARTIFACT_SHA256": deployment.sha256,
        "MODEL_PATH": str(model_path),
        "REGISTRY_USERNAME": USER,
        "REGISTRY_PASSWORD": PASSWORD,
    }
    fetched = subprocess.run(
        [penguins_python, "-m", "app.fetch_artifact"], cwd=project, env=fetch_env, capture_output=True, text=True
    )
    assert fetched.returncode == 0, fetched.stderr
    service = Service(project, penguins_python, model_path).start()
    try:
        # The whole sample, as an application sends it (JSON, null for missing values).
        records = json.loads(sample.to_json(orient="records"))
        response = service.post_json({"dataframe_records": records})
        assert response.status == 200, response.body
        served = np.array([[p["probabilities"][c] for c in model.classes_] for p in response.json()["predictions"]])
        assert np.array_equal(served, model.predict_proba(sample))
    finally:
        service.stop()


@pytest.mark.slow  # several deploys, each checking its artifact in a fresh process
def test_version_defaults_to_the_next_free_one_and_the_same_bytes_ship_once(env, tmp_path):
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "g": ["a", "b", "a", "b"]})
    model = make_pipeline(
        ColumnTransformer([("g", OneHotEncoder(), ["g"])], remainder="passthrough"), LinearRegression()
    ).fit(frame, [0.0, 1.0, 2.0, 3.5])
    registry = tmp_path / "registry"
    first = modelgen.deploy(model, "tiny", frame, registry=registry, gitops=env.path)
    # The notebook cell run again: the same bytes are that version, nothing new is pushed.
    again = modelgen.deploy(model, "tiny", frame, registry=registry, gitops=env.path)
    assert (first.version, again.version) == ("1.0.0", "1.0.0")
    assert again.branch == "modelgen/tiny-1.0.0"
    assert "already ships these artifact bytes (pending on branch modelgen/tiny-1.0.0)" in again.message
    assert Path(again.manifest).read_text() == Path(first.manifest).read_text()
    assert env.branches() == ["main", "modelgen/tiny-1.0.0"]

    retrained = make_pipeline(
        ColumnTransformer([("g", OneHotEncoder(), ["g"])], remainder="passthrough"), LinearRegression()
    ).fit(frame, [0.0, 1.0, 2.0, 4.0])
    second = modelgen.deploy(retrained, "tiny", frame, registry=registry, gitops=env.path)
    assert second.version == "1.0.1"
    assert env.branches() == ["main", "modelgen/tiny-1.0.0", "modelgen/tiny-1.0.1"]
    manifest = yaml.safe_load(Path(second.manifest).read_text())
    assert (manifest["spec"]["task"], manifest["spec"]["output"]) == ("regression", {"type": "value"})
    # A version taken in the registry by other bytes is skipped, never overwritten.
    (registry / "tiny" / "1.0.2").mkdir()
    (registry / "tiny" / "1.0.2" / "model.joblib").write_bytes(b"someone else's")
    third = make_pipeline(
        ColumnTransformer([("g", OneHotEncoder(), ["g"])], remainder="passthrough"), LinearRegression()
    ).fit(frame, [0.0, 1.0, 2.0, 5.0])
    assert modelgen.deploy(third, "tiny", frame, registry=registry, gitops=env.path).version == "1.0.3"

    # A refused push after the upload: the next call takes that version again, not the one after.
    fourth = make_pipeline(
        ColumnTransformer([("g", OneHotEncoder(), ["g"])], remainder="passthrough"), LinearRegression()
    ).fit(frame, [0.0, 1.0, 2.0, 6.0])
    env.reject()
    with pytest.raises(ModelgenError, match="refused the push"):
        modelgen.deploy(fourth, "tiny", frame, registry=registry, gitops=env.path)
    assert sorted(p.name for p in (registry / "tiny" / "1.0.4").iterdir()) == ["model.joblib"]
    env.reject(False)
    assert modelgen.deploy(fourth, "tiny", frame, registry=registry, gitops=env.path).version == "1.0.4"
    assert not (registry / "tiny" / "1.0.5").exists()


@pytest.mark.slow  # deploys up to their round-trip check
def test_a_failed_deploy_leaves_nothing_and_the_next_takes_the_same_version(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LinearRegression().fit(frame, [0.0, 1.0, 2.0, 3.0])
    registry = tmp_path / "registry"
    kwargs = {"registry": registry, "gitops": False, "owner": "a.b@example.com"}
    # The manifest's problems name the argument to change, not a staging file.
    with pytest.raises(DeployError) as failed:
        modelgen.deploy(model, "reg", frame, metadata={"serving": {"replicas": 500}}, **kwargs)
    assert "metadata['serving'] (spec.serving.replicas)" in str(failed.value)
    assert "model.yaml" not in str(failed.value)
    assert "cache" not in str(failed.value)
    with pytest.raises(DeployError, match=r"metadata\['environments'\] \(spec.environments\[0\]\)"):
        modelgen.deploy(model, "reg", frame, metadata={"environments": ["Not An Env"]}, **kwargs)
    assert not registry.exists() or not any(registry.rglob("*.joblib"))
    assert not (tmp_path / "cache" / "deployments" / "reg").exists()

    shipped = modelgen.deploy(model, "reg", frame, **kwargs)
    assert shipped.version == "1.0.0"
    assert sorted(p.name for p in (registry / "reg" / "1.0.0").iterdir()) == [
        "model.joblib", "model.yaml", "sample.json"
    ]  # fmt: skip
    # Without GitOps, the registry's manifests tell which version holds these bytes.
    again = modelgen.deploy(model, "reg", frame, **kwargs)
    assert (again.version, again.branch) == ("1.0.0", None)
    assert "already ships these artifact bytes (in the registry)" in again.message
    assert not (registry / "reg" / "1.0.1").exists()
    # An explicit version is a new version, whatever its bytes.
    assert modelgen.deploy(model, "reg", frame, version="2.0.0", **kwargs).version == "2.0.0"


def test_unknown_arguments_and_metadata_are_refused_naming_what_is_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LinearRegression().fit(frame, [0.0, 1.0, 2.0, 3.0])
    kwargs = {"registry": tmp_path / "registry", "gitops": False, "owner": "a.b@example.com"}
    unknown = r"unknown argument\(s\) nullable \(allowed: version, .*columns, engine\); .*columns="
    with pytest.raises(DeployError, match=unknown):
        modelgen.deploy(model, "reg", frame, nullable={"x": True}, **kwargs)
    with pytest.raises(DeployError, match=r"metadata has unknown key\(s\) owner, team \(allowed: description, "):
        modelgen.deploy(model, "reg", frame, metadata={"team": "risk", "owner": "x"}, **kwargs)
    with pytest.raises(DeployError, match=r"sample/reference/columns: .*'y'"):
        modelgen.deploy(model, "reg", frame, columns={"y": {"nullable": False}}, **kwargs)
    with pytest.raises(DeployError, match="reference must be a non-empty pandas DataFrame"):
        modelgen.deploy(model, "reg", frame, reference=frame.iloc[:0], **kwargs)
    assert not (tmp_path / "registry").exists()


def test_schema_inference_on_pandas_dtypes(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    frame = pd.DataFrame(
        {
            "visits": pd.array([1, None, 3, 4, 2, 1], dtype="Int64"),
            "plan": pd.Categorical(["basic", "pro", "pro", None, "basic", "pro"]),
            "active": [True, False, True, True, False, True],
            "fee": [9.5, 20.0, None, 20.0, 9.5, 20.0],
        }
    )
    target = [0, 1, 1, 0, 0, 1]
    model = make_pipeline(
        ColumnTransformer(
            [
                ("plan", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["plan"]),
                ("numbers", SimpleImputer(), ["visits", "fee", "active"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, target)
    deployment = modelgen.deploy(
        model, "churn", frame, registry=tmp_path / "registry", gitops=False, owner="a.b@example.com"
    )
    assert deployment.branch is None
    spec = yaml.safe_load(Path(deployment.manifest).read_text())["spec"]
    assert spec["input"] == [
        {"name": "visits", "type": "integer", "dtype": "Int64", "nullable": True},  # rebuilt as trained
        {"name": "plan", "type": "string", "dtype": "category", "nullable": True, "categories": ["basic", "pro"]},
        {"name": "active", "type": "boolean", "nullable": True},  # no gap in 6 rows proves nothing
        {"name": "fee", "type": "number", "nullable": True},
    ]
    assert spec["output"] == {"type": "probabilities", "classes": [0, 1]}

    waited = frame.assign(signup=pd.to_timedelta(["1 day"] * 6))
    with pytest.raises(ModelgenError, match="column 'signup' holds timedelta64 values.*convert it"):
        modelgen.deploy(model, "churn", waited, registry=tmp_path / "registry", gitops=False, owner="a.b@example.com")


@pytest.mark.slow  # a deploy and its round-trip check
def test_custom_code_is_found_and_shipped(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "ratio_features.py").write_text(
        textwrap.dedent(
            """
            from sklearn.base import BaseEstimator, TransformerMixin

            class Ratio(BaseEstimator, TransformerMixin):
                def fit(self, X, y=None):
                    return self

                def transform(self, X):
                    return (X["a"] / X["b"]).to_frame("ratio")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from ratio_features import Ratio

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 2.0, 1.0, 1.0]})
    model = make_pipeline(Ratio(), IsolationForest(random_state=0)).fit(frame)
    deployment = modelgen.deploy(
        model, "ratio-outliers", frame, registry=tmp_path / "registry", gitops=False, owner="a.b@example.com"
    )
    spec = yaml.safe_load(Path(deployment.manifest).read_text())["spec"]
    assert spec["code"] == ["ratio_features.py"]
    assert (spec["task"], spec["output"]) == ("anomaly-detection", {"type": "score"})
    assert (Path(deployment.manifest).parent / "ratio_features.py").read_text() == (
        tmp_path / "ratio_features.py"
    ).read_text()
    assert not any(r.startswith("ratio") for r in spec["requirements"])


@pytest.mark.slow  # several deploys up to their refusal
def test_refusals_say_what_to_change(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LinearRegression().fit(frame, [0.0, 1.0, 2.0, 3.0])
    kwargs = {"registry": tmp_path / "registry", "gitops": False, "owner": "a.b@example.com"}
    with pytest.raises(DeployError, match="sample must be a non-empty pandas DataFrame"):
        modelgen.deploy(model, "reg", frame.to_dict("records"), **kwargs)
    with pytest.raises(DeployError, match="format='onnx' is not one of joblib, skops, pickle"):
        modelgen.deploy(model, "reg", frame, format="onnx", **kwargs)
    with pytest.raises(RegistryError, match="is not a model name"):
        modelgen.deploy(model, "Reg_1", frame, **kwargs)
    monkeypatch.delenv("MODELGEN_REGISTRY", raising=False)
    with pytest.raises(DeployError, match=r"say where the registry is: registry=\.\.\. or \$MODELGEN_REGISTRY"):
        modelgen.deploy(model, "reg", frame, gitops=False, owner="a.b@example.com")
    with pytest.raises(DeployError, match="metrics must be numbers: auc"):
        modelgen.deploy(model, "reg", frame, metadata={"metrics": {"auc": "high"}}, **kwargs)

    # Predictions that change once the artifact is loaded again: nothing is uploaded.
    (tmp_path / "noisy.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from sklearn.base import BaseEstimator, RegressorMixin

            class Noisy(RegressorMixin, BaseEstimator):
                def fit(self, X, y):
                    return self

                def predict(self, X):
                    return np.random.default_rng().random(len(X))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from noisy import Noisy

    with pytest.raises(DeployError, match=r"predict\(\) differs when loaded in a fresh process"):
        modelgen.deploy(Noisy().fit(frame, [0, 1, 2, 3]), "noisy", frame, **kwargs)
    assert not (tmp_path / "registry" / "noisy").exists()


def test_classes_defined_in_the_notebook_are_refused():
    namespace: dict = {"__name__": "__main__"}
    exec(  # a class as a notebook cell defines it: in __main__
        "from sklearn.base import BaseEstimator, TransformerMixin\n"
        "class Doubler(BaseEstimator, TransformerMixin):\n"
        "    def fit(self, X, y=None): return self\n"
        "    def transform(self, X): return X * 2\n",
        namespace,
    )
    main = sys.modules["__main__"]
    main.Doubler = namespace["Doubler"]
    try:
        model = make_pipeline(namespace["Doubler"](), LinearRegression())
        with pytest.raises(
            DeployError, match=r"Doubler is defined in the notebook \(__main__\).*move it to a .py file"
        ):
            referenced_globals(model)
    finally:
        del main.Doubler


def test_task_and_requirements_inference():
    assert infer_task(IsolationForest())[0] == "anomaly-detection"
    with pytest.raises(DeployError, match="cannot tell the task of a SimpleImputer"):
        infer_task(SimpleImputer())
    pins = pin_requirements({("sklearn.linear_model._base", "LinearRegression")}, "joblib", ["numpy==2.0.0"])
    assert [p.split("==")[0] for p in pins] == ["joblib", "numpy", "pandas", "scikit-learn"]
    assert "numpy==2.0.0" in pins  # an explicit pin wins
    with pytest.raises(DeployError, match="not pinned"):
        pin_requirements(set(), "joblib", ["numpy"])


@pytest.mark.slow  # a deploy and its round-trip check
def test_skops_artifacts_record_their_trusted_types(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LinearRegression().fit(frame, [0.0, 1.0, 2.0, 3.0])
    deployment = modelgen.deploy(
        model, "skopsy", frame, format="skops", registry=tmp_path / "registry", gitops=False, owner="a.b@example.com"
    )
    spec = yaml.safe_load(Path(deployment.manifest).read_text())["spec"]
    assert spec["artifact"]["format"] == "skops"
    assert any(r.startswith("skops==") for r in spec["requirements"])
    import skops.io

    data = (tmp_path / "registry" / "skopsy" / "1.0.0" / "model.skops").read_bytes()
    trusted = spec["artifact"].get("trusted", [])
    assert sorted(skops.io.get_untrusted_types(data=data)) == trusted
    loaded = skops.io.loads(data, trusted=trusted)
    assert np.array_equal(loaded.predict(frame), model.predict(frame))


@pytest.mark.slow
def test_the_example_notebook_runs_headless_and_deploys(env, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("MODELGEN_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("MODELGEN_GITOPS", str(env.path))
    notebook = nbformat.read(ROOT / "examples" / "notebooks" / "deploy-penguins.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute(env={**os.environ})
    last = notebook.cells[-1]["outputs"][-1]["data"]["text/plain"]
    assert last.startswith("Deployment penguin-notebook 1.0.0"), last
    assert "modelgen/penguin-notebook-1.0.0" in env.branches()
    manifest = yaml.safe_load(env.show("modelgen/penguin-notebook-1.0.0", "models/penguin-notebook/model.yaml"))
    assert manifest["metadata"]["provenance"]["source"] == "examples/notebooks/deploy-penguins.ipynb"
    assert 0.9 < manifest["metadata"]["provenance"]["metrics"]["accuracy"] <= 1.0
