"""The generated Python service's request path in one process, and the monitor's work on the same requests.

    cd PROJECT && [ONNX_PATH=... MODELGEN_ENGINE=onnx|native] python path_cost.py MODEL BODIES_DIR METRICS_DIR [SCALE]

The engine is the service's (MODELGEN_ENGINE, else the contract's), loaded as the service loads
it; MODEL is the pickle (the native engine's artifact). Times parse + predict + encode (best of 5)
of BODIES_DIR/one.json and BODIES_DIR/many.csv, and the monitor's observe() alone with the
counters on and with the input log: the cost of monitoring without the machine's noise (on a
shared VM, wrk runs and even whole request paths vary by more than monitoring costs). SCALE
(default 1) multiplies the repetitions. Prints JSON of seconds per call. Run by bench/serving.py
from the project folder.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[3]
sys.path.insert(0, ".")

from app.model import load_engine  # noqa: E402
from app.monitoring import InputLog, Monitor  # noqa: E402
from app.payload import InputSchema  # noqa: E402
from app.predict import predictor_for  # noqa: E402
from app.settings import from_env  # noqa: E402

settings = from_env({**os.environ, "MODEL_PATH": sys.argv[1]})
c = settings.contract
model = load_engine(settings)
# As the service builds its schema: the ONNX engine takes the checked columns, no DataFrame.
schema = InputSchema(c["columns"], c["values"], frames=not getattr(model, "takes_columns", False))
predictor = predictor_for(model, c["output"])
monitors = {
    "on": Monitor(c["monitoring"], None),
    "log": Monitor(c["monitoring"], InputLog(Path(sys.argv[3]) / "inputs", c["sampleRate"], 10**9)),
}
bodies = Path(sys.argv[2])
one, many = (bodies / "one.json").read_bytes(), (bodies / "many.csv").read_bytes()
scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0


def best(n, call):
    times = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - began) / n)
    return min(times)


out = {}
for label, body, parse, n in (("one", one, schema.from_json, 300), ("many", many, schema.from_csv, 30)):
    n = max(1, round(n * scale))
    frame = parse(body)
    predictions = predictor(frame)
    out[f"{label}-off"] = best(n, lambda body=body, parse=parse: predictor.csv_rows(predictor(parse(body))))
    for kind in ("on", "log"):
        out[f"{label}-{kind}"] = best(
            n * 5, lambda kind=kind, frame=frame, predictions=predictions: monitors[kind].observe(frame, predictions)
        )
print(json.dumps(out))
