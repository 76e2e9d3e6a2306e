"""The in-process limit of the batch job: rows/s of one prediction call on 1000 rows, one thread.

Run in a generated project's folder (``PYTHONPATH`` = the project), ``MODEL_PATH`` and, for the
ONNX engine, ``MODELGEN_ENGINE=onnx`` and ``ONNX_PATH`` set: the rows are checked once by the
service's schema (as the service builds them), then the engine's prediction hook is timed
alone, best of three windows. Prints rows/s.
"""

import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

from app.model import load_engine  # noqa: E402
from app.payload import InputSchema  # noqa: E402
from app.predict import predictor_for  # noqa: E402
from app.settings import from_env  # noqa: E402

rows_file, seconds = sys.argv[1], float(sys.argv[2])
settings = from_env()
contract = settings.contract
model = load_engine(settings)
predictor = predictor_for(model, contract["output"])
schema = InputSchema(contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False))
with open(rows_file, "rb") as f:
    table = schema.from_csv(b"".join(line for _, line in zip(range(1001), f, strict=False)))
for _ in range(5):
    predictor.columns(table)
best = 0.0
for _ in range(3):
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.columns(table)
        calls += 1
    best = max(best, calls * 1000 / (time.perf_counter() - start))
print(best)
