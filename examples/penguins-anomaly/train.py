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
import io
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import joblib
import numpy as np
import palmerpenguins
import pandas as pd

# Imported by its top-level name (this script's folder is on sys.path when it runs), so the pickle
# refers to `anomaly_stack.StackedOutlierScores`, which is what the service can import.
from anomaly_stack import StackedOutlierScores
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelgen.errors import ModelgenError
from modelgen.manifest.infer import input_columns, sample_records, service_frame
from modelgen.manifest.writer import write_handover
from modelgen.registry.backends import add_registry_arguments, sha256_hex

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
HEADER = "Written by examples/penguins-anomaly/train.py; rerun it rather than editing by hand."
# Pinned from this environment: the service must unpickle with exactly what trained the model.
REQUIREMENTS = ["scikit-learn", "pandas", "numpy", "joblib"]
CODE = ["anomaly_stack.py"]
HERE = Path(__file__).resolve().parent


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


def serialize(model: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the artifact, sample and manifest")
    add_registry_arguments(parser)  # --registry DIR, --version X.Y.Z
    args = parser.parse_args(argv)

    features = load_data()
    columns = input_columns(features, reference=features, columns={n: {"strict": True} for n in STRICT})
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
    score = model.decision_function(service_frame([implausible], columns))[0]
    print(f"score of a 9 kg penguin with an 80 mm bill: {score:.4f} (negative = outlier)")

    # Two of the rows the model flags go in the sample too, so the smoke tests see both answers.
    sample = sample_records(features, columns, include=features.index[flagged][:2])
    model.decision_function(service_frame(sample, columns))  # fail here, not in the smoke tests

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
            "task": "anomaly-detection",
            "artifact": {"uri": uri, "sha256": sha256_hex(data), "format": "joblib"},
            "requirements": [f"{name}=={installed_version(name)}" for name in REQUIREMENTS],
            "code": CODE,
            "input": columns,
            "output": {"type": "score"},
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
    write_handover(out, manifest, artifact=data, sample=sample, code_from=HERE, header=HEADER)
    print(f"wrote {out}/model.yaml (artifact {uri}, sha256 {sha256_hex(data)})")


if __name__ == "__main__":
    try:
        main()
    except ModelgenError as err:  # a version already published with other bytes, say
        sys.exit(f"error: {err}")
