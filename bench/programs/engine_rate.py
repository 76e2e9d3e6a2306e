"""In-process rates of the generated service's two engines, through the service's own code, no HTTP.

    cd PROJECT && MODEL_PATH=... ONNX_PATH=... python engine_rate.py BODIES_DIR METRICS_DIR SECONDS

For each engine (native: the pickle; onnx: the converted graph), on BODIES_DIR/one.json (1 row,
dataframe_split), many.csv and many.json (the same 1000 rows as CSV and as dataframe_split JSON):

- ``predict``: the model call alone, on the request already parsed (predict_proba on the
  DataFrame, or on the ONNX engine's column arrays);
- ``parse``: what the service does with a body before HTTP: ``app.parity.Engine`` (the request
  parsed and checked by the service's schema, then predicted by its output hook), for CSV the same
  schema's ``from_csv``;
- ``app``: the whole Flask application in this process, called as a WSGI server calls it (a
  prepared environ, the body in a BytesIO): routing, body reading, parsing, prediction, metrics,
  monitoring, the JSON answer; no sockets, no server, no proxy (``app_one_unmonitored``: the same
  with monitoring off, MODELGEN_MONITORING=0).

Each rate is per second of this process's CPU time (``time.process_time``), not of the wall clock:
what one core does when it is the process's alone, which other work on a shared machine does not
lower (it only stretches the wall clock), and what the servers' CPU per request (bench/lib/wrk.py)
compares with. The best of 3 windows of SECONDS / 3 of CPU time. Prints JSON: {engine: {measure:
calls/s for 1 row, rows/s for the 1000}}. Run by bench/serving.py with BLAS/OpenMP threads pinned
to one, as a service worker runs.
"""

import io
import json
import os
import sys
import time
from pathlib import Path

os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
sys.path.insert(0, ".")

from app.__main__ import _monitor  # noqa: E402
from app.model import load_engine  # noqa: E402
from app.parity import Engine  # noqa: E402
from app.service import create_app  # noqa: E402
from app.settings import from_env  # noqa: E402

bodies = Path(sys.argv[1])
one, csv, many = ((bodies / name).read_bytes() for name in ("one.json", "many.csv", "many.json"))
seconds = float(sys.argv[3])


def rate(call, rows=1):
    """Best of 3 windows: calls (rows, when ``rows`` > 1) per CPU second."""
    for _ in range(3):
        call()
    best = 0.0
    for _ in range(3):
        calls, began = 0, time.process_time()
        while (used := time.process_time() - began) < seconds / 3:
            call()
            calls += 1
        best = max(best, calls * rows / used)
    return best


def wsgi(application, body, content_type):
    """A call of ``application`` as gunicorn makes it for a POST /invocations of ``body``."""
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(path="/invocations", method="POST", data=body, content_type=content_type).get_environ()
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call():
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body)
        answer = b"".join(application(environ, start_response))
        if not statuses[-1].startswith("200"):
            raise SystemExit(f"{statuses[-1]}: {answer[:300]!r}")

    return call


out = {}
for name in ("onnx", "native"):
    settings = from_env({**os.environ, "MODELGEN_ENGINE": name})
    model = load_engine(settings)
    engine = Engine(model, settings.contract)
    frame, frames = engine.schema.from_json(one), engine.schema.from_csv(csv)
    predict = engine.predict.model.predict_proba
    rows = len(engine(many))
    application, unmonitored = (
        create_app(
            model,
            settings.contract,
            max_request_bytes=settings.max_request_bytes,
            sha256=settings.model_sha256,
            monitor=monitor,
            engine=name,
        )
        for monitor in (_monitor(settings), None)
    )
    out[name] = {
        "predict_one": rate(lambda frame=frame, predict=predict: predict(frame)),
        "predict_csv": rate(lambda frames=frames, predict=predict: predict(frames), rows),
        "parse_one": rate(lambda engine=engine: engine(one)),
        "parse_csv": rate(lambda engine=engine: engine.predict(engine.schema.from_csv(csv)), rows),
        "parse_json": rate(lambda engine=engine: engine(many), rows),
        "app_one": rate(wsgi(application, one, "application/json")),
        "app_csv": rate(wsgi(application, csv, "text/csv"), rows),
        "app_one_unmonitored": rate(wsgi(unmonitored, one, "application/json")),
    }
print(json.dumps(out))
