"""Load the artifact once per process, after checking that its bytes are the pinned ones."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.settings import PROJECT_DIR, Settings


class ArtifactError(Exception):
    """The artifact is missing, altered or unreadable: the service must not start."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: Path, expected_sha256: str, fmt: str, trusted: Sequence[str] = ()) -> Any:
    """The model, once its bytes are the pinned ones; skops artifacts may create only ``trusted`` types."""
    if not path.is_file():
        raise ArtifactError(f"model artifact {path} not found (set MODEL_PATH)")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ArtifactError(f"model artifact {path} has sha256 {actual}, expected {expected_sha256}; refusing to start")
    # Custom classes referenced by the pickle live in model_code/ under their training names.
    code_dir = str(PROJECT_DIR / "model_code")
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    try:
        if fmt == "joblib":
            import joblib

            return joblib.load(path)
        if fmt == "skops":
            import skops.io

            untrusted = set(skops.io.get_untrusted_types(file=path)) - set(trusted)
            if untrusted:
                needed = ", ".join(sorted(untrusted))
                raise ArtifactError(f"model artifact {path} needs types not listed in spec.artifact.trusted: {needed}")
            return skops.io.load(path, trusted=list(trusted))
        import pickle

        with path.open("rb") as f:
            return pickle.load(f)  # noqa: S301 - the bytes were checked against the pinned sha256
    except Exception as err:  # any unpickling failure means the same thing to the operator
        raise ArtifactError(f"model artifact {path} cannot be loaded: {type(err).__name__}: {err}") from err


def load_engine(settings: Settings) -> Any:
    """What answers the predictions: the artifact's own model, or its ONNX conversion (``settings.engine``)."""
    contract = settings.contract
    if settings.engine == "onnx":
        from app.onnx_model import OnnxModel

        return OnnxModel(settings.onnx_path, settings.onnx_sha256, contract)
    artifact = contract["artifact"]
    return load_model(settings.model_path, settings.model_sha256, artifact["format"], artifact.get("trusted", ()))
