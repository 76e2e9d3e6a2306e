"""Save an ONNX file as an MLflow model (onnx flavour): python save_mlflow_onnx_model.py MODEL.onnx TARGET_DIR.

Run in MLflow's venv by bench/lib/mlflow.py. The signature is the graph's own inputs, one tensor
each (name, dtype, shape [-1, 1]), as ``mlflow.models.infer_signature`` makes it from a feed
dict: with it, MLflow's pyfunc reshapes and casts each column of a ``dataframe_split`` request to
the graph's input. Without a signature MLflow feeds a DataFrame's columns as 1-D arrays, which
this graph (inputs of shape [N, 1]) refuses. Prints {"inputs": [[name, dtype], ...]} as its last line.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime
from mlflow.models import ModelSignature
from mlflow.onnx import save_model
from mlflow.types.schema import Schema, TensorSpec

DTYPES = {
    "tensor(string)": np.dtype(object),
    "tensor(double)": np.dtype("float64"),
    "tensor(float)": np.dtype("float32"),
    "tensor(int64)": np.dtype("int64"),
    "tensor(bool)": np.dtype("bool"),
}

model = onnx.load(sys.argv[1])
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
inputs = [(i.name, i.type) for i in session.get_inputs()]
signature = ModelSignature(inputs=Schema([TensorSpec(DTYPES[kind], (-1, 1), name) for name, kind in inputs]))
# Explicit requirements: MLflow would otherwise load the model in a subprocess to infer them
# (they only matter to an environment manager; the bench serves with --env-manager local).
requirements = [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
save_model(model, sys.argv[2], signature=signature, pip_requirements=requirements)
print(json.dumps({"inputs": inputs}))
