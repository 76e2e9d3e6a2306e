"""Train the penguin species classifier and write everything `modelgen generate` needs.

    python examples/penguins/train.py --out DIR [--registry DIR] [--version 1.0.0]
    python examples/penguins/train.py --output DIR [--hyperparameters FILE] [--data URI]

DIR receives model.joblib, model.sha256, sample.json, reference.csv (the training rows the drift
job compares live inputs with), a copy of this script (for `modelgen retrain`) and model.yaml.
With --registry the artifact is also published to REGISTRY/penguin-species/VERSION/model.joblib
(a local folder standing in for Nexus/Artifactory) and the manifest points there.

The second form is modelgen's training contract (`spec.training`): hyperparameters from a JSON
file, data from a CSV path (or "palmerpenguins", the package's copy), and only model.joblib,
metrics.json and reference.csv written to the output folder.

The pipeline is deliberately a full one (per-group imputation and scaling, PCA, a stack of three
model families) so the generated service is exercised with a realistic artifact.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import joblib
import numpy as np
import palmerpenguins
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import StackingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler
from sklearn.svm import SVC
from xgboost import XGBClassifier

from modelgen.errors import ModelgenError
from modelgen.manifest.infer import input_columns, sample_records, service_frame
from modelgen.manifest.writer import write_handover
from modelgen.registry.backends import add_registry_arguments, sha256_hex

NAME = "penguin-species"
OWNER = "jane.doe@example.com"
DESCRIPTION = (
    "Species of a Palmer penguin (Adelie, Chinstrap, Gentoo) from its island, bill, flipper, "
    "body mass, sex and year. SVC, logistic regression and XGBoost stacked under Gaussian naive "
    "Bayes, on a 5-component PCA of the imputed, encoded and scaled measurements."
)
TARGET = "species"
CATEGORICAL = ["island", "sex"]
# The study records female or male (or nothing): any other value is a client's bug, so the
# service refuses it (400). A row from another island is still scored (the one-hot encoder
# ignores it) and the drift job reports the new island to the owner.
STRICT = {"sex"}
BILL = ["bill_length_mm", "bill_depth_mm"]
BODY = ["flipper_length_mm", "body_mass_g", "year"]
HEADER = "Written by examples/penguins/train.py; rerun it rather than editing by hand."
# Pinned from this environment: the service must unpickle with exactly what trained the model.
REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy", "joblib"]
HYPERPARAMETERS = {"pca_components": 5, "xgb_estimators": 50, "xgb_max_depth": 3, "logreg_c": 1.0}
DATA = "palmerpenguins"


def load_data(uri: str = DATA) -> tuple[pd.DataFrame, pd.Series]:
    """Raw features (missing values kept: the pipeline imputes them) and the species."""
    raw = palmerpenguins.load_penguins() if uri == DATA else pd.read_csv(uri.removeprefix("file://"))
    data = raw.dropna(subset=[TARGET]).reset_index(drop=True)
    features = data.drop(columns=[TARGET])
    # pandas 3 reads text as its "str" dtype; the service sends object columns with NaN for
    # null, so train on exactly that representation.
    for column in CATEGORICAL:
        features[column] = features[column].astype(object).where(features[column].notna(), np.nan)
    return features, data[TARGET]


def build_pipeline(params: dict | None = None) -> Pipeline:
    p = {**HYPERPARAMETERS, **(params or {})}
    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                CATEGORICAL,
            ),
            ("bill", make_pipeline(SimpleImputer(strategy="mean"), RobustScaler()), BILL),
            ("body", make_pipeline(SimpleImputer(strategy="median"), MinMaxScaler()), BODY),
        ]
    )
    stack = StackingClassifier(
        estimators=[
            # SVC(probability=True) is deprecated since scikit-learn 1.9; this is its replacement
            # (Platt scaling on cross-validated decision values, one SVC refitted on all rows).
            ("svc", CalibratedClassifierCV(SVC(), ensemble=False)),
            ("logreg", LogisticRegression(C=p["logreg_c"], max_iter=1000)),
            (
                "xgb",
                XGBClassifier(n_estimators=p["xgb_estimators"], max_depth=p["xgb_max_depth"], n_jobs=1, random_state=0),
            ),
        ],
        # StackingClassifier label-encodes y before fitting the base estimators, which is what
        # lets XGBoost (integer labels only) sit in a stack whose classes_ are species names.
        final_estimator=GaussianNB(),
    )
    pca = PCA(n_components=p["pca_components"], random_state=0)
    return Pipeline([("preprocess", preprocess), ("pca", pca), ("stack", stack)])


def serialize(model: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def train(params: dict, data_uri: str) -> tuple[Pipeline, bytes, dict[str, float], pd.DataFrame]:
    """The fitted model, its artifact, its held-out metrics and the features it learned from."""
    features, species = load_data(data_uri)
    x_train, x_test, y_train, y_test = train_test_split(
        features, species, stratify=species, test_size=0.25, random_state=0
    )
    accuracy = build_pipeline(params).fit(x_train, y_train).score(x_test, y_test)
    print(f"test accuracy: {accuracy:.4f} ({len(x_test)} held-out rows)")

    # The served model learns from every labelled row; the split above only measured the recipe.
    model = build_pipeline(params).fit(features, species)
    data = serialize(model)  # before any prediction, which some estimators record (see penguins-anomaly)
    return model, data, {"accuracy": round(float(accuracy), 6)}, features


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="folder for the artifact, sample and manifest")
    target.add_argument("--output", type=Path, help="training contract: folder for model.joblib and metrics.json")
    parser.add_argument("--hyperparameters", type=Path, help="JSON file of hyperparameters (training contract)")
    parser.add_argument("--data", default=DATA, help="training data: a CSV path, or palmerpenguins")
    add_registry_arguments(parser)  # --registry DIR, --version X.Y.Z
    args = parser.parse_args(argv)

    params = {**HYPERPARAMETERS, **(json.loads(args.hyperparameters.read_text()) if args.hyperparameters else {})}
    model, data, metrics, features = train(params, args.data)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "model.joblib").write_bytes(data)
        (args.output / "metrics.json").write_text(json.dumps(metrics) + "\n")
        features.to_csv(args.output / "reference.csv", index=False)
        print(f"wrote {args.output}/model.joblib, metrics.json, reference.csv")
        return
    columns = input_columns(features, reference=features, columns={n: {"strict": True} for n in STRICT})
    sample = sample_records(features, columns)
    model.predict_proba(service_frame(sample, columns))  # fail here, not in the smoke tests

    # Publish first: if the registry refuses, --out is left as it was.
    out = args.out.resolve()
    uri = (out / "model.joblib").as_uri()  # without a registry, the copy beside the manifest
    if args.registry:
        uri = args.registry.publish(NAME, args.version, "model.joblib", data).uri

    manifest = {
        "apiVersion": "modelgen/v1",
        "kind": "Model",
        "metadata": {
            "name": NAME,
            "version": args.version,
            "owner": OWNER,
            "description": DESCRIPTION,
            "provenance": {"data": args.data, "parameters": params, "metrics": metrics},
        },
        "spec": {
            "runtime": "python",
            "framework": "sklearn",
            "task": "classification",
            "artifact": {"uri": uri, "sha256": sha256_hex(data), "format": "joblib"},
            "requirements": [f"{name}=={installed_version(name)}" for name in REQUIREMENTS],
            "input": columns,
            "output": {"type": "probabilities", "classes": model.classes_.tolist()},
            "sample": "sample.json",
            "serving": {
                "replicas": 2,
                "autoscaling": {"min": 2, "max": 6, "cpu": 70},
                "resources": {"cpu": "2", "memory": "1Gi"},
                "route": {"host": f"{NAME}.apps.example.com"},
            },
            "environments": ["dev", "prod"],
            # The drift job compares a sample of live requests with the rows the model learned from.
            "monitoring": {"reference": "reference.csv", "sampleRate": 0.1},
            "training": {"script": "train.py", "data": args.data, "hyperparameters": params},
        },
    }
    write_handover(out, manifest, artifact=data, sample=sample, header=HEADER)
    features.to_csv(out / "reference.csv", index=False)
    if Path(__file__).resolve() != (out / "train.py").resolve():
        shutil.copyfile(__file__, out / "train.py")
    print(f"wrote {out}/model.yaml (artifact {uri}, sha256 {sha256_hex(data)})")


if __name__ == "__main__":
    try:
        main()
    except ModelgenError as err:  # a version already published with other bytes, say
        sys.exit(f"error: {err}")
