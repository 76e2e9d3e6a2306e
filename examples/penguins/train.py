"""Train the penguin species classifier and write everything `modelgen generate` needs.

    python examples/penguins/train.py --out DIR [--registry DIR] [--version 1.0.0]

DIR receives model.joblib, model.sha256, sample.json and model.yaml. With --registry the artifact
is also published to REGISTRY/penguin-species/VERSION/model.joblib (a local folder standing in for
Nexus/Artifactory) and the manifest points there.

The pipeline is deliberately a full one (per-group imputation and scaling, PCA, a stack of three
model families) so the generated service is exercised with a realistic artifact.
"""

from __future__ import annotations

import argparse
import io
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
from modelgen.infer import input_columns, sample_records, service_frame
from modelgen.manifest_writer import write_handover
from modelgen.registry import add_registry_arguments, sha256_hex

NAME = "penguin-species"
OWNER = "jane.doe@example.com"
DESCRIPTION = (
    "Species of a Palmer penguin (Adelie, Chinstrap, Gentoo) from its island, bill, flipper, "
    "body mass, sex and year. SVC, logistic regression and XGBoost stacked under Gaussian naive "
    "Bayes, on a 5-component PCA of the imputed, encoded and scaled measurements."
)
TARGET = "species"
CATEGORICAL = ["island", "sex"]
# The study has three islands: a row from anywhere else is outside what the model knows, so the
# service refuses it (400). An unknown sex is still scored (the one-hot encoder ignores it).
STRICT = {"island"}
BILL = ["bill_length_mm", "bill_depth_mm"]
BODY = ["flipper_length_mm", "body_mass_g", "year"]
HEADER = "Written by examples/penguins/train.py; rerun it rather than editing by hand."
# Pinned from this environment: the service must unpickle with exactly what trained the model.
REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy", "joblib"]


def load_data() -> tuple[pd.DataFrame, pd.Series]:
    """Raw features (missing values kept: the pipeline imputes them) and the species."""
    data = palmerpenguins.load_penguins().dropna(subset=[TARGET]).reset_index(drop=True)
    features = data.drop(columns=[TARGET])
    # pandas 3 reads text as its "str" dtype; the service sends object columns with NaN for
    # null, so train on exactly that representation.
    for column in CATEGORICAL:
        features[column] = features[column].astype(object).where(features[column].notna(), np.nan)
    return features, data[TARGET]


def build_pipeline() -> Pipeline:
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
            ("logreg", LogisticRegression(max_iter=1000)),
            ("xgb", XGBClassifier(n_estimators=50, max_depth=3, n_jobs=1, random_state=0)),
        ],
        # StackingClassifier label-encodes y before fitting the base estimators, which is what
        # lets XGBoost (integer labels only) sit in a stack whose classes_ are species names.
        final_estimator=GaussianNB(),
    )
    return Pipeline([("preprocess", preprocess), ("pca", PCA(n_components=5, random_state=0)), ("stack", stack)])


def serialize(model: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifact, sample and manifest")
    add_registry_arguments(parser)  # --registry DIR, --version X.Y.Z
    args = parser.parse_args(argv)

    features, species = load_data()
    x_train, x_test, y_train, y_test = train_test_split(
        features, species, stratify=species, test_size=0.25, random_state=0
    )
    accuracy = build_pipeline().fit(x_train, y_train).score(x_test, y_test)
    print(f"test accuracy: {accuracy:.4f} ({len(x_test)} held-out rows)")

    # The served model learns from every labelled row; the split above only measured the recipe.
    model = build_pipeline().fit(features, species)
    data = serialize(model)  # before any prediction, which some estimators record (see penguins-anomaly)
    columns = input_columns(features, strict=STRICT)
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
        "metadata": {"name": NAME, "version": args.version, "owner": OWNER, "description": DESCRIPTION},
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
        },
    }
    write_handover(out, manifest, artifact=data, sample=sample, header=HEADER)
    print(f"wrote {out}/model.yaml (artifact {uri}, sha256 {sha256_hex(data)})")


if __name__ == "__main__":
    try:
        main()
    except ModelgenError as err:  # a version already published with other bytes, say
        sys.exit(f"error: {err}")
