"""Train the penguin anomaly detector and write everything `modelgen generate` needs.

    python examples/penguins-anomaly/train.py --out DIR [--registry DIR] [--version 1.0.0]

DIR receives model.joblib, model.sha256, sample.json and model.yaml. With --registry the artifact
is also published to REGISTRY/penguin-anomaly/VERSION/model.joblib (a local folder standing in for
Nexus/Artifactory) and the manifest points there.

The pipeline contains a custom class (anomaly_stack.StackedOutlierScores), so the manifest lists
anomaly_stack.py under `code`: the service needs it to unpickle the artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sys
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import palmerpenguins
import pandas as pd

# Imported by its top-level name (this script's folder is on sys.path when it runs), so the pickle
# refers to `anomaly_stack.StackedOutlierScores`, which is what the service can import.
from anomaly_stack import StackedOutlierScores
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NAME = "penguin-anomaly"
OWNER = "jane.doe@example.com"
DESCRIPTION = (
    "Flags Palmer penguin records unlike the study's (measurement or data-entry errors, unusual "
    "animals). One-class SVM, isolation forest and local outlier factor scores of a 4-component "
    "PCA of the imputed, encoded and scaled record, fed to a final isolation forest."
)
CATEGORICAL = ["island", "sex", "species"]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
# The study has three islands: a row from anywhere else is outside what the model knows, so the
# service refuses it (400). Other unknown categories are scored (the one-hot encoder ignores them).
STRICT = {"island"}
# Share of the training rows the final detector calls outliers; it sets the score's zero.
CONTAMINATION = 0.05
# Pinned from this environment: the service must unpickle with exactly what trained the model.
REQUIREMENTS = ["scikit-learn", "pandas", "numpy", "joblib"]
CODE = ["anomaly_stack.py"]
HERE = Path(__file__).resolve().parent
SAMPLE_SIZE = 20
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$")


def load_data() -> pd.DataFrame:
    """Every record, raw: missing values are kept because the pipeline imputes them."""
    features = palmerpenguins.load_penguins()
    # pandas 3 reads text as its "str" dtype; the service sends object columns with NaN for
    # null, so train on exactly that representation.
    for column in CATEGORICAL:
        features[column] = features[column].astype(object).where(features[column].notna(), np.nan)
    return features


def build_pipeline() -> Pipeline:
    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                CATEGORICAL,
            ),
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ]
    )
    return Pipeline(
        [
            ("preprocess", preprocess),
            ("pca", PCA(n_components=4, random_state=0)),
            ("scores", StackedOutlierScores(random_state=0)),
            ("detector", IsolationForest(contamination=CONTAMINATION, random_state=0)),
        ]
    )


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


def sample_records(features: pd.DataFrame, columns: list[dict[str, Any]], flagged: pd.Series) -> list[dict[str, Any]]:
    """Raw rows for the generated smoke tests: a few with gaps, two that the model flags (so both
    answers are exercised), the rest drawn at random."""
    chosen = features[features.isna().any(axis=1)].head(3).index.union(features[flagged].head(2).index)
    rest = features.drop(index=chosen).sample(SAMPLE_SIZE - len(chosen), random_state=0)
    rows = pd.concat([features.loc[chosen], rest]).sort_index()
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
        out.write("# Written by examples/penguins-anomaly/train.py; rerun it rather than editing by hand.\n")
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

    features = load_data()
    columns = input_columns(features)
    model = build_pipeline().fit(features)
    # Serialized before any prediction: LocalOutlierFactor's KD-tree pickles its query counters,
    # so every predict() before the dump would change the artifact's bytes.
    data = serialize(model)
    # Loaded any other way (as part of a package, say), the pickle would name a module path the
    # service cannot import.
    if type(model.named_steps["scores"]).__module__ != "anomaly_stack":
        sys.exit("error: StackedOutlierScores must be imported as the top-level module anomaly_stack")
    flagged = pd.Series(model.predict(features) == -1, index=features.index)
    print(f"outliers among the training rows: {flagged.sum()} of {len(features)} (contamination {CONTAMINATION})")
    # No labels to score against, so check the detector on a record no penguin could have.
    implausible = {**features.iloc[0].to_dict(), "bill_length_mm": 80.0, "body_mass_g": 9000.0}
    score = model.decision_function(as_service_frame([implausible], columns))[0]
    print(f"score of a 9 kg penguin with an 80 mm bill: {score:.4f} (negative = outlier)")

    sample = sample_records(features, columns, flagged)
    model.decision_function(as_service_frame(sample, columns))  # fail here, not in the smoke tests

    digest = hashlib.sha256(data).hexdigest()
    # Publish first: if the registry refuses, --out is left as it was.
    published = publish(data, args.registry.resolve(), args.version) if args.registry else None
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / "model.joblib"
    artifact.write_bytes(data)
    (out / "model.sha256").write_text(f"{digest}  {artifact.name}\n", encoding="utf-8")
    (out / "sample.json").write_text(json.dumps(sample, indent=2) + "\n", encoding="utf-8")
    # `code` paths are relative to the manifest: the handover folder must hold the module too.
    for module in CODE:
        if (out / module).resolve() != HERE / module:  # --out may be this folder itself
            shutil.copyfile(HERE / module, out / module)
    location = published or artifact

    manifest = {
        "apiVersion": "modelgen/v1",
        "kind": "Model",
        "metadata": {"name": NAME, "version": args.version, "owner": OWNER, "description": DESCRIPTION},
        "spec": {
            "runtime": "python",
            "framework": "sklearn",
            "task": "anomaly-detection",
            "artifact": {"uri": location.as_uri(), "sha256": digest, "format": "joblib"},
            "requirements": flow([f"{name}=={installed_version(name)}" for name in REQUIREMENTS]),
            "code": flow(CODE),
            "input": [flow(c) for c in columns],
            "output": flow({"type": "score"}),
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
