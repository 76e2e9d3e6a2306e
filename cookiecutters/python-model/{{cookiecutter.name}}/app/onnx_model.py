"""The ONNX engine: the converted model (``spec.artifact.onnx``) run by onnxruntime.

It stands where the unpickled model stands and answers the same calls (``predict_proba``,
``predict``, ``decision_function``, ``classes_``), so ``app.predict``'s hooks serve it unchanged.
It takes the checked columns as numpy arrays, not a DataFrame: one ``[N, 1]`` feed per column,
strings as they came (a null as the graph's null token, which its imputers replace), everything
else as doubles (floats for a graph converted in float), a null as NaN. modelgen checked, when it
converted the model, that these answers equal the artifact's (``python -m app.parity`` does it
again here).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from app.model import ArtifactError, sha256_of


class OnnxModel:
    """The ONNX graph behind the native model's interface; ``takes_columns``: no DataFrame needed."""

    takes_columns = True

    def __init__(self, path: Path, expected_sha256: str, contract: Mapping[str, Any]):
        if not path.is_file():
            raise ArtifactError(f"ONNX artifact {path} not found (set ONNX_PATH)")
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise ArtifactError(
                f"ONNX artifact {path} has sha256 {actual}, expected {expected_sha256}; refusing to start"
            )
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One worker per CPU already uses every core: more threads per call only contend.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # any refusal means the same thing to the operator
            raise ArtifactError(f"ONNX artifact {path} cannot be loaded: {type(err).__name__}: {err}") from err
        spec = contract["onnx"]
        self.output = [spec["output"]]
        self.null_token = spec["nullToken"]
        self.number = np.float32 if spec["precision"] == "float" else np.float64
        self.strings = frozenset(c["name"] for c in contract["columns"] if c["type"] == "string")
        self.inputs = [i.name for i in self.session.get_inputs()]
        classes = contract["output"].get("classes") or []
        self.classes_ = np.asarray(classes) if classes else None

    def feeds(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        token, number, feeds = self.null_token, self.number, {}
        for name in self.inputs:
            values = columns[name]
            if name in self.strings:
                feeds[name] = np.array([token if v is None or v != v else v for v in values], dtype=object)
            else:  # numbers, integers, booleans (an object column when it has gaps): NaN for null
                feeds[name] = np.asarray(values, dtype=number)
            feeds[name] = feeds[name].reshape(-1, 1)
        return feeds

    def _run(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.session.run(self.output, self.feeds(columns))[0]

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._run(columns), dtype=np.float64)

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._run(columns)).ravel()

    def decision_function(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._run(columns), dtype=np.float64).ravel()
