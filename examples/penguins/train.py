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
import hashlib
import io
import json
import os
import re
import sys
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import palmerpenguins
import pandas as pd
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
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
# Pinned from this environment: the service must unpickle with exactly what trained the model.
REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy", "joblib"]
SAMPLE_SIZE = 20
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")


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


def json_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    return "string"


def input_columns(features: pd.DataFrame) -> list[dict[str, Any]]:
    """The manifest's input: one entry per raw column, nullable exactly where the data has gaps."""
    columns = []
    for name in features.columns:
        series = features[name]
        column: dict[str, Any] = {"name": name, "type": json_type(series)}
        if series.isna().any():
            column["nullable"] = True
        if column["type"] == "string":
            column["categories"] = sorted(series.dropna().unique().tolist())
        if name in STRICT:
            column["strict"] = True
        columns.append(column)
    return columns


def sample_records(features: pd.DataFrame, columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw rows for the generated smoke tests: a few with gaps, the rest drawn at random."""
    gaps = features[features.isna().any(axis=1)].head(3)
    rest = features.drop(index=gaps.index).sample(SAMPLE_SIZE - len(gaps), random_state=0)
    rows = pd.concat([gaps, rest]).sort_index()
    cast = {"integer": int, "number": float, "string": str, "boolean": bool}
    return [
        {c["name"]: None if pd.isna(row[c["name"]]) else cast[c["type"]](row[c["name"]]) for c in columns}
        for row in rows.to_dict("records")
    ]


def as_service_frame(records: list[dict[str, Any]], columns: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as the generated service builds them: text as object with NaN for null."""
    frame = pd.DataFrame(records, columns=[c["name"] for c in columns])
    for c in columns:
        if c["type"] == "string":
            frame[c["name"]] = frame[c["name"]].astype(object).where(frame[c["name"]].notna(), np.nan)
    return frame


def serialize(model: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def publish(data: bytes, registry: Path, version: str) -> Path:
    """Store the artifact as REGISTRY/NAME/VERSION/model.joblib; a published version never changes."""
    target = registry / NAME / version / "model.joblib"
    if target.exists():
        if target.read_bytes() != data:
            existing = hashlib.sha256(target.read_bytes()).hexdigest()
            sys.exit(
                f"error: {target} already exists with different bytes (sha256 {existing}); "
                "published versions are immutable, choose another --version"
            )
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees a half-written artifact.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return target


def flow(value: Any) -> Any:
    """Short lists and mappings on one line, as a person writes a manifest."""
    if isinstance(value, dict):
        node: CommentedMap | CommentedSeq = CommentedMap((k, flow(v)) for k, v in value.items())
    elif isinstance(value, list):
        node = CommentedSeq(flow(v) for v in value)
    else:
        return value
    node.fa.set_flow_style()
    return node


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    yaml = YAML()
    yaml.width = 4096  # never fold a long line: the manifest is reviewed in diffs
    yaml.indent(mapping=2, sequence=4, offset=2)
    with path.open("w", encoding="utf-8") as out:
        out.write("# Written by examples/penguins/train.py; rerun it rather than editing by hand.\n")
        yaml.dump(manifest, out)


def semver(text: str) -> str:
    if not SEMVER.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a semantic version such as 1.0.0")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifact, sample and manifest")
    parser.add_argument("--registry", type=Path, help="local model registry folder to publish the artifact to")
    parser.add_argument("--version", type=semver, default="1.0.0", help="model version (default: 1.0.0)")
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
    columns = input_columns(features)
    sample = sample_records(features, columns)
    model.predict_proba(as_service_frame(sample, columns))  # fail here, not in the smoke tests

    digest = hashlib.sha256(data).hexdigest()
    # Publish first: if the registry refuses, --out is left as it was.
    published = publish(data, args.registry.resolve(), args.version) if args.registry else None
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / "model.joblib"
    artifact.write_bytes(data)
    (out / "model.sha256").write_text(f"{digest}  {artifact.name}\n", encoding="utf-8")
    (out / "sample.json").write_text(json.dumps(sample, indent=2) + "\n", encoding="utf-8")
    location = published or artifact

    manifest = {
        "apiVersion": "modelgen/v1",
        "kind": "Model",
        "metadata": {"name": NAME, "version": args.version, "owner": OWNER, "description": DESCRIPTION},
        "spec": {
            "runtime": "python",
            "framework": "sklearn",
            "task": "classification",
            "artifact": {"uri": location.as_uri(), "sha256": digest, "format": "joblib"},
            "requirements": flow([f"{name}=={installed_version(name)}" for name in REQUIREMENTS]),
            "input": [flow(c) for c in columns],
            "output": flow({"type": "probabilities", "classes": model.classes_.tolist()}),
            "sample": "sample.json",
            "serving": {
                "replicas": 2,
                "autoscaling": flow({"min": 2, "max": 6, "cpu": 70}),
                "resources": flow({"cpu": "2", "memory": "1Gi"}),
                "route": flow({"host": f"{NAME}.apps.example.com"}),
            },
            "environments": flow(["dev", "prod"]),
        },
    }
    write_manifest(out / "model.yaml", manifest)
    print(f"wrote {out}/model.yaml (artifact {location}, sha256 {digest})")


if __name__ == "__main__":
    main()
