"""Convert a model to ONNX and decide whether it may serve: the parity gate and the speed gate.

Both steps run in the model's own environment, in subprocesses over a private copy of the
project, as the reference profile's scoring does: the conversion is
``python -m modelgen.engines.onnx_convert``, the gates are the project's own
``python -m app.parity`` (the service's parsing and prediction hooks for both engines, on the
rows given and the edge rows it makes). Nothing here uploads or writes a manifest: the caller
(``deploy()``, ``modelgen convert``) records what ``Conversion`` says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from modelgen.engines.onnx_convert import EXIT_UNCONVERTIBLE
from modelgen.errors import ModelgenError
from modelgen.manifest import Manifest, OnnxArtifact
from modelgen.render.batch import run_in_project, scoring_project
from modelgen.render.contract import column
from modelgen.render.templates import CODE_DIR


@dataclass(frozen=True)
class Conversion:
    """A conversion and its gates: ``onnx`` (the fields of spec.artifact.onnx) is set when it may
    serve; otherwise ``reason`` says why not."""

    data: bytes | None
    onnx: OnnxArtifact | None
    report: dict[str, Any]
    reason: str

    @property
    def passed(self) -> bool:
        return self.onnx is not None


def convert(
    manifest: Manifest, artifact: bytes, rows: list[dict[str, Any]], uri: str, *, tree_cast: bool = True
) -> Conversion:
    """Convert ``manifest``'s model (``artifact``, its bytes) and put it through both gates on ``rows``.

    ``uri`` is where the .onnx file will live; ``tree_cast=False`` makes a wrong conversion, which
    the parity gate must catch (tests).
    """
    if manifest.runtime != "python":
        return Conversion(None, None, {}, "an R model is served natively: ONNX converts Python models")
    if manifest.artifact.format not in ("joblib", "pickle"):
        return Conversion(None, None, {}, f"a {manifest.artifact.format} artifact is not converted (joblib or pickle)")
    project = scoring_project(manifest)
    spec = {
        "columns": [column(dataclasses.asdict(c)) for c in manifest.columns],
        "output": manifest.output.type,
        "code_dir": CODE_DIR,
    }
    command = [sys.executable, "-m", "modelgen.engines.onnx_convert", "model.pkl", "spec.json", "model.onnx"]
    command += [] if tree_cast else ["--no-tree-cast"]
    files = {"model.pkl": artifact, "spec.json": json.dumps(spec).encode()}
    done = run_in_project(project, files, command, ("model.onnx", "model.onnx.json"))
    if done.returncode == EXIT_UNCONVERTIBLE:
        return Conversion(None, None, {}, done.error)
    if done.returncode != 0 or len(done.outputs) != 2:
        raise ModelgenError(f"converting {manifest.name} to ONNX failed (exit {done.returncode}): {done.error}")
    facts = json.loads(done.outputs["model.onnx.json"])
    data = done.outputs["model.onnx"]
    onnx = OnnxArtifact(
        uri=uri,
        sha256=hashlib.sha256(data).hexdigest(),
        output=facts["output"],
        precision=facts["precision"],
        null_token=facts["nullToken"],
        converters=facts["converters"],
        parity={},
        speed={},
    )
    return _gated(manifest, artifact, data, onnx, rows)


def _gated(
    manifest: Manifest, artifact: bytes, data: bytes, onnx: OnnxArtifact, rows: list[dict[str, Any]]
) -> Conversion:
    gates = manifest.serving.onnx
    converted = dataclasses.replace(manifest, artifact=dataclasses.replace(manifest.artifact, onnx=onnx))
    project = scoring_project(converted)
    files = {
        f"model.{manifest.artifact.format}": artifact,
        "model.onnx": data,
        "rows.json": json.dumps([_plain(r) for r in rows]).encode(),
    }
    command = [sys.executable, "-m", "app.parity", "rows.json", "--tolerance", repr(gates.tolerance)]
    command += ["--speed"] if gates.speed_gate else []
    done = run_in_project(project, files, command)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise ModelgenError(
            f"the parity check of {manifest.name}'s ONNX model failed (exit {done.returncode}): {done.error}"
        )
    report = json.loads(done.stdout)
    parity = {"rows": report["rows"], "maxDifference": report["maxDifference"], "flips": report["flips"]}
    onnx = dataclasses.replace(onnx, parity=parity, speed=report.get("speed", {}))
    if not report["passed"]:
        return Conversion(data, None, report, parity_failure(report))
    if gates.speed_gate and not report["faster"]:
        return Conversion(data, None, report, speed_failure(report["speed"]))
    return Conversion(data, onnx, report, "")


def parity_failure(report: dict[str, Any]) -> str:
    worst = report.get("worst", {})
    where = f" (row {worst['row']}: native {worst['native']}, onnx {worst['onnx']})" if worst else ""
    return (
        f"the parity gate failed on {report['rows']} rows: {report['flips']} changed answer(s), largest difference "
        f"{report['maxDifference']:.3g} against a tolerance of {report['tolerance']:g}{where}"
    )


def speed_failure(speed: dict[str, float]) -> str:
    return (
        "the speed gate failed: ONNX is not faster on both one-row and 1000-row requests "
        f"(one row {speed['onnxOneRowMs']:.3g} ms vs native {speed['nativeOneRowMs']:.3g} ms; 1000 rows "
        f"{speed['onnxRowsPerSecond']:.0f} vs {speed['nativeRowsPerSecond']:.0f} rows/s)"
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON has it: NaN and pandas' missing values as null, numpy scalars as Python ones."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("<NA>", "NaT"):
            value = None
        out[key] = value
    return out
