"""``python -m app.parity ROWS``: the ONNX model against the artifact, on rows and edge rows.

Both engines get the same requests through the service's own parsing and prediction hooks:
ROWS (a JSON list of records, such as tests/sample.json) and edge rows made from the contract
(every nullable column null, an unseen category in each non-strict string column, each number far
below and far above what the rows hold, each boolean both ways). The gate fails on any changed
label, cluster or outlier flag, or a difference above the tolerance: absolute for probabilities,
relative for values and scores. ``--speed`` also times one-row and 1000-row requests on each
engine, parsing included. The report (JSON) goes to stdout; exit 1 when parity fails, 3 when an
artifact is missing or wrong.

modelgen runs this before it records a conversion; the project's tests and CI job run it again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.model import ArtifactError, load_engine
from app.onnx_model import OnnxModel
from app.payload import InputSchema
from app.predict import ModelMismatch, predictor_for
from app.settings import Settings, from_env

DEFAULT_TOLERANCE = 1e-6
UNSEEN = "modelgen-unseen-category"


def edge_rows(rows: Sequence[dict[str, Any]], columns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows at the edges of what ``rows`` show, each a change of the first row."""
    base = dict(rows[0])
    edges = [{**base, **{c["name"]: None for c in columns if c["nullable"]}}]
    for column in columns:
        name, kind = column["name"], column["type"]
        if kind == "string" and not column.get("strict"):
            edges.append({**base, name: UNSEEN})
        elif kind == "boolean":
            edges += [{**base, name: True}, {**base, name: False}]
        elif kind in ("number", "integer"):
            present = [r[name] for r in rows if r.get(name) is not None]
            low, high = (min(present), max(present)) if present else (0, 0)
            span = (high - low) or 1
            for value in (low - 10 * span, high + 10 * span):
                edges.append({**base, name: round(value) if kind == "integer" else float(value)})
    return edges


def compare(output: dict[str, Any], native: list[Any], onnx: list[Any], tolerance: float) -> dict[str, Any]:
    """How far the ONNX answers are from the native ones, per the output's rule."""
    kind = output["type"]
    worst, worst_row, flips = 0.0, None, 0
    for i, (a, b) in enumerate(zip(native, onnx, strict=True)):
        if kind == "probabilities":
            flipped = a["label"] != b["label"]
            pairs = zip(a["probabilities"].values(), b["probabilities"].values(), strict=True)
            difference = max(abs(x - y) for x, y in pairs)
        elif kind == "score":
            flipped = a["outlier"] != b["outlier"]
            difference = abs(a["score"] - b["score"]) / max(1.0, abs(a["score"]))
        elif kind == "value":
            flipped, difference = False, abs(a - b) / max(1.0, abs(a))
        else:  # label, cluster
            flipped, difference = str(a) != str(b), 0.0
        flips += flipped
        if difference > worst or (flipped and worst_row is None):
            worst, worst_row = difference, i
    report = {"rows": len(native), "maxDifference": worst, "flips": flips, "tolerance": tolerance}
    report["passed"] = flips == 0 and worst <= tolerance
    if worst_row is not None:
        report["worst"] = {"row": worst_row, "native": native[worst_row], "onnx": onnx[worst_row]}
    return report


class Engine:
    """One engine as the service runs it: the request parsed by the service's schema, then predicted."""

    def __init__(self, model: Any, contract: dict[str, Any]):
        self.schema = InputSchema(
            contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False)
        )
        self.predict = predictor_for(model, contract["output"])

    def __call__(self, body: bytes) -> list[Any]:
        return self.predict(self.schema.from_json(body))


def timed(call: Callable[[], Any], budget: float, at_least: int) -> float:
    """Median seconds of one call, calling it at least ``at_least`` times or for ``budget`` seconds."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < at_least or time.perf_counter() - started < budget:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
        if len(times) >= 10_000:
            break
    return statistics.median(times)


def speed(native: Engine, onnx: Engine, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    one = json.dumps([rows[0]]).encode()
    thousand = json.dumps([rows[i % len(rows)] for i in range(1000)]).encode()
    result = {}
    for name, engine in (("native", native), ("onnx", onnx)):
        engine(one)  # the first call warms caches up
        result[f"{name}OneRowMs"] = round(timed(lambda e=engine: e(one), 1.0, 30) * 1000, 4)
        result[f"{name}RowsPerSecond"] = round(1000 / timed(lambda e=engine: e(thousand), 1.0, 3), 1)
    return result


def _answers(native: Engine, onnx: Engine, rows: Sequence[dict[str, Any]]) -> tuple[tuple[list, list], int]:
    """Both engines' answers to ``rows``; rows the native pipeline refuses (the service's 422) are
    left out one by one, and counted."""
    try:
        body = json.dumps(rows).encode()
        return (native(body), onnx(body)), 0
    except (ValueError, TypeError):
        pass
    kept_native, kept_onnx, refused = [], [], 0
    for row in rows:
        body = json.dumps([row]).encode()
        try:
            answer = native(body)
        except (ValueError, TypeError):
            refused += 1
            continue
        kept_native += answer
        kept_onnx += onnx(body)
    return (kept_native, kept_onnx), refused


def check(settings: Settings, rows: Sequence[dict[str, Any]], tolerance: float, with_speed: bool) -> dict[str, Any]:
    """The parity report of this project's two artifacts on ``rows`` and the edge rows."""
    contract = settings.contract
    if not contract["onnx"]:
        raise ModelMismatch("this model has no ONNX artifact (spec.artifact.onnx) to compare")
    native = Engine(load_engine(dataclasses.replace(settings, engine="native")), contract)
    onnx = Engine(OnnxModel(settings.onnx_path, settings.onnx_sha256, contract), contract)
    every = [*rows, *edge_rows(rows, contract["columns"])]
    answers, refused = _answers(native, onnx, every)
    report = compare(contract["output"], *answers, tolerance)
    report["edgeRows"], report["refusedByNative"] = len(every) - len(rows), refused
    if with_speed:
        report["speed"] = measured = speed(native, onnx, rows)
        report["faster"] = (
            measured["onnxOneRowMs"] < measured["nativeOneRowMs"]
            and measured["onnxRowsPerSecond"] > measured["nativeRowsPerSecond"]
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.parity", description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, help="a JSON list of records (e.g. tests/sample.json)")
    parser.add_argument("--tolerance", type=float, help="default: the contract's (spec.serving.onnx.tolerance)")
    parser.add_argument("--speed", action="store_true", help="also time one-row and 1000-row requests")
    args = parser.parse_args(argv)
    settings = from_env()
    rows = json.loads(args.rows.read_text("utf-8"))
    tolerance = args.tolerance or (settings.contract["onnx"] or {}).get("tolerance", DEFAULT_TOLERANCE)
    try:
        report = check(settings, rows, tolerance, args.speed)
    except (ArtifactError, ModelMismatch) as err:
        print(f"{settings.contract['name']}: {err}", file=sys.stderr)
        return 3
    print(json.dumps(report, indent=1, default=str))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
