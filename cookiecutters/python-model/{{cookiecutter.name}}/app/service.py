"""The HTTP contract: /invocations, /ping, /metadata, /schema, /openapi.json, /metrics."""

from __future__ import annotations

import csv
import io
import json
import logging
import platform
import time
from importlib import metadata
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app import metrics
from app.monitoring import Monitor
from app.payload import BadRequest, InputSchema
from app.predict import predictor_for

try:
    from gunicorn.http.errors import ParseException as FramingError
except ImportError:  # waitress only: it checks the framing before the application sees the body

    class FramingError(Exception):  # type: ignore[no-redef]
        pass


log = logging.getLogger("app")

JSON = "application/json"
CSV = "text/csv"


def create_app(
    model: Any,
    contract: dict[str, Any],
    *,
    max_request_bytes: int,
    sha256: str,
    monitor: Monitor | None = None,
    engine: str = "native",
) -> Flask:
    """The Flask application serving ``model`` (run by ``engine``); everything per-request is prepared here, once."""
    app = Flask("app")
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes
    # The ONNX engine takes the checked columns as arrays: no DataFrame on its hot path.
    schema = InputSchema(contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False))
    predictor = predictor_for(model, contract["output"])
    static = {
        "metadata": _encode(_metadata(contract, sha256, engine)),
        # Written by modelgen with the contract: the R service serves the same documents.
        "schema": _encode(contract["schema"]),
        "openapi": _encode(contract["openapi"]),
        "ping": _encode({"status": "ok"}),
    }
    metrics.MODEL_INFO.labels(contract["name"], contract["version"], sha256, engine).set(1)
    version = contract["version"]
    requests_total, latency, rows_total = metrics.REQUESTS, metrics.LATENCY, metrics.ROWS

    # No automatic OPTIONS: the routes answer what the OpenAPI document lists, and a 405's Allow
    # header names exactly those methods (GET and HEAD, or POST), as the R service's does.
    @app.post("/invocations", provide_automatic_options=False)
    def invocations() -> Response:
        started = time.perf_counter()
        status = 500  # unless set below: an unexpected error is counted once, as a 500
        g.counted = True
        try:
            mediatype = (request.mimetype or "").lower()
            if mediatype == JSON or mediatype.endswith("+json"):
                frame = schema.from_json(read_body(request.environ, max_request_bytes))
            elif mediatype in (CSV, "application/csv"):
                frame = schema.from_csv(read_body(request.environ, max_request_bytes))
            else:
                raise BadRequest(
                    f"unsupported media type {request.mimetype or '(none)'!r} (allowed: {JSON}, {CSV})",
                    status=415,
                )
            try:
                predictions = predictor(frame)
            except (ValueError, TypeError) as err:
                # The rows passed the schema but the pipeline refused them (e.g. an encoder that
                # rejects unseen categories): the client's data, so a 4xx, never a 500.
                raise BadRequest(f"the model could not score these rows: {err}", status=422) from err
            rows_total.inc(len(predictions))
            if monitor is not None:
                monitor.observe(frame, predictions)
            if CSV in (request.headers.get("Accept") or ""):
                response = Response(_csv(predictor.header, predictor.csv_rows(predictions)), mimetype=CSV)
            else:
                response = Response(_encode({"predictions": predictions}), mimetype=JSON)
            status = 200
        except BadRequest as err:
            status = err.status
            response = Response(_encode(err.body()), status=status, mimetype=JSON)
        except HTTPException as err:  # answered by http_error below
            status = err.code or 500
            raise
        finally:
            latency.labels("/invocations").observe(time.perf_counter() - started)
            requests_total.labels("/invocations", "POST", status).inc()
        return response

    def static_route(path: str, key: str) -> None:
        def view() -> Response:
            g.counted = True
            requests_total.labels(path, request.method, 200).inc()
            return Response(static[key], mimetype=JSON)

        app.add_url_rule(path, endpoint=key, view_func=view, methods=["GET"], provide_automatic_options=False)

    static_route("/ping", "ping")
    static_route("/metadata", "metadata")
    static_route("/schema", "schema")
    static_route("/openapi.json", "openapi")

    @app.get("/metrics", provide_automatic_options=False)
    def prometheus() -> Response:
        if monitor is not None:
            monitor.flush()  # this worker's counts up to now; the others' within FLUSH_SECONDS
        return Response(metrics.exposition(), mimetype=metrics.CONTENT_TYPE.split(";")[0])

    # Every answer says which version gave it: with a canary, two versions answer on one route.
    @app.after_request
    def version_header(response: Response) -> Response:
        response.headers["X-Model-Version"] = version
        return response

    # A request is counted once: by its view when it got that far (g.counted), else here.
    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        # 404, 405 and werkzeug's 413 (body over MAX_CONTENT_LENGTH) in the same JSON shape.
        message = err.description or err.name
        if err.code == 413:
            message = f"request body over the limit of {max_request_bytes} bytes"
        if not g.get("counted"):
            requests_total.labels(request.path if err.code != 404 else "other", request.method, err.code).inc()
        body = {"error": {"message": message, "column": None, "row": None}}
        response = Response(_encode(body), status=err.code or 500, mimetype=JSON)
        if isinstance(err, MethodNotAllowed) and err.valid_methods:  # in one order, as the R service sends it
            response.headers["Allow"] = ", ".join(sorted(err.valid_methods))
        return response

    @app.errorhandler(Exception)
    def server_error(err: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        if not g.get("counted"):
            requests_total.labels(request.path, request.method, 500).inc()
        body = {"error": {"message": f"internal error: {type(err).__name__}", "column": None, "row": None}}
        return Response(_encode(body), status=500, mimetype=JSON)

    return app


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole request body, or a BadRequest: 413 over ``limit`` bytes, 400 if it ended early.

    werkzeug's ``get_data`` stops reading a chunked body at ``MAX_CONTENT_LENGTH`` and returns
    what it has, so a body over the limit would be scored cut short. Here the body is read to its
    end (one byte past the limit at most), and a body shorter than its Content-Length, or whose
    chunked framing breaks off, is refused: a partial body is never scored.
    """
    stream = environ["wsgi.input"]
    too_large = BadRequest(f"request body over the limit of {limit} bytes", status=413)
    declared = environ.get("CONTENT_LENGTH") or None
    chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
    if declared is not None and not chunked:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest(f"Content-Length {declared!r} is not a number of bytes") from None
        if length > limit:
            raise too_large
        wanted = length
    elif chunked or environ.get("wsgi.input_terminated"):
        wanted = limit + 1
    else:  # neither framing: HTTP/1.1 says there is no body
        return b""
    parts, received = [], 0
    try:
        while received < wanted:
            part = stream.read(min(wanted - received, 1 << 20))
            if not part:
                break
            parts.append(part)
            received += len(part)
    except (OSError, ValueError) as err:  # gunicorn: NoMoreData (an OSError) when the client stops
        raise BadRequest(f"the request body ended early: {err or type(err).__name__}") from None
    except FramingError as err:  # gunicorn's chunked parser: a bad chunk size ("zz"), a missing CRLF
        raise BadRequest(f"the request body's chunked framing is malformed: {type(err).__name__}") from None
    if received > limit:
        raise too_large
    if declared is not None and not chunked and received < wanted:
        raise BadRequest(f"the request body ended after {received} of its {wanted} bytes (Content-Length)")
    return b"".join(parts)


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _metadata(contract: dict[str, Any], sha256: str, engine: str) -> dict[str, Any]:
    libraries = {}
    serving = ["flask", "gunicorn", "waitress", "prometheus-client"] + (["onnxruntime"] if contract["onnx"] else [])
    for requirement in contract["requirements"] + serving:
        name = requirement.split("==")[0].split("[")[0]
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        "name": contract["name"],
        "version": contract["version"],
        "owner": contract["owner"],
        "description": contract["description"],
        "task": contract["task"],
        "framework": contract["framework"],
        "output": contract["output"],
        "artifact": {**{k: v for k, v in contract["artifact"].items() if k != "secret"}, "sha256": sha256},
        "engine": engine,
        "engineReason": contract["engineReason"] if engine == contract["engine"] else "MODELGEN_ENGINE",
        "onnx": {k: contract["onnx"][k] for k in ("uri", "sha256", "precision")} if contract["onnx"] else None,
        "python": platform.python_version(),
        "libraries": libraries,
        "modelgen": contract["modelgen"],
    }
