"""Save a joblib pipeline as an MLflow model: python save_mlflow_model.py MODEL.joblib TARGET_DIR.

Run in MLflow's venv by bench/lib/mlflow.py. Prints {"trusted": [...]} (or null) as its last line.
"""

import json
import shutil
import sys

import joblib
import mlflow.sklearn

model = joblib.load(sys.argv[1])
kwargs = {"pyfunc_predict_fn": "predict_proba"}
try:
    mlflow.sklearn.save_model(model, sys.argv[2], **kwargs)
    print(json.dumps({"trusted": None}))
except Exception as err:  # MLflow 3.x writes skops by default and refuses types skops does not trust
    if "untrusted types" not in str(err).lower():
        raise
    import skops.io

    shutil.rmtree(sys.argv[2], ignore_errors=True)
    # Our own artifact, just trained: trust exactly the types skops lists for it.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(model, sys.argv[2], skops_trusted_types=trusted, **kwargs)
    print(json.dumps({"trusted": trusted}))
