"""A conversion's outcome recorded: the ONNX file published beside the artifact, the manifest told.

``convert_manifest`` is ``modelgen convert MANIFEST``: it converts the manifest's model, puts it
through the gates on the sample and the reference rows, publishes ``model.onnx`` beside the
artifact (immutable, like the artifact) and writes ``spec.serving.engine`` and
``spec.artifact.onnx`` (or, under ``auto``, why not) into the manifest, comments and layout kept.
``deploy()`` records its conversion with ``record`` too.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgen.engines.gate import Conversion, convert
from modelgen.errors import ModelgenError
from modelgen.manifest import Manifest, load
from modelgen.manifest.writer import edited_manifest

ENGINES = ("onnx", "auto")
ONNX_FILENAME = "model.onnx"


@dataclass(frozen=True)
class Converted:
    """What ``convert_manifest`` did: the engine asked for, the conversion, the manifest it wrote."""

    engine: str
    conversion: Conversion
    manifest: Path

    @property
    def message(self) -> str:
        if self.conversion.passed:
            onnx = self.conversion.onnx
            speed = onnx.speed
            faster = (
                f"; one row {speed['nativeOneRowMs']:.3g} -> {speed['onnxOneRowMs']:.3g} ms, 1000 rows "
                f"{speed['nativeRowsPerSecond']:.0f} -> {speed['onnxRowsPerSecond']:.0f} rows/s"
                if speed
                else ""
            )
            return (
                f"converted to ONNX: {onnx.uri} (sha256 {onnx.sha256[:12]}, {onnx.precision}); parity on "
                f"{onnx.parity['rows']} rows, largest difference {onnx.parity['maxDifference']:.3g}{faster}; "
                f"{self.manifest} serves it (engine {self.engine})"
            )
        return f"{self.manifest}: engine auto serves the model natively: {self.conversion.reason}"


def engine_report(manifest: Manifest) -> str:
    """The engine and its gates' results, as Markdown for the merge request ("" for a native model asked so)."""
    onnx = manifest.artifact.onnx
    if manifest.engine == "onnx" and onnx is not None:
        parity, speed = onnx.parity, onnx.speed
        lines = [
            f"**Engine: ONNX** ({onnx.precision} inputs; {', '.join(f'{k} {v}' for k, v in onnx.converters.items())}); "
            f"`{onnx.uri}` sha256 `{onnx.sha256}`.",
        ]
        if parity:
            tolerance = manifest.serving.onnx.tolerance
            lines.append(
                f"- Parity gate: {parity['rows']} rows (sample, reference and edge rows), {parity['flips']} changed "
                f"answers, largest difference {parity['maxDifference']:.3g} (tolerance {tolerance:g})."
            )
        if speed:
            lines.append(
                f"- Speed gate: one row {speed['nativeOneRowMs']:.3g} ms native, {speed['onnxOneRowMs']:.3g} ms ONNX; "
                f"1000 rows {speed['nativeRowsPerSecond']:.0f} and {speed['onnxRowsPerSecond']:.0f} rows/s."
            )
        elif not manifest.serving.onnx.speed_gate:
            lines.append("- Speed gate: off (spec.serving.onnx.speedGate).")
        lines.append("- `MODELGEN_ENGINE=native` on the Deployment serves the artifact itself, without a new image.")
        return "\n".join(lines)
    if manifest.engine_reason:
        return f"**Engine: native** (asked: {manifest.serving.engine}): {manifest.engine_reason}."
    return ""


def onnx_uri(artifact_uri: str) -> str:
    """Where the ONNX file of the artifact at ``artifact_uri`` lives: beside it."""
    return artifact_uri.rsplit("/", 1)[0] + "/" + ONNX_FILENAME


def gate_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """The rows the parity gate compares on: the sample, and the reference rows when there are any."""
    rows = list(manifest.sample)
    if manifest.monitoring is not None:
        from modelgen.monitoring.reference import reference_rows

        frame, _ = reference_rows(manifest)
        names = [c.name for c in manifest.columns]
        rows += frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    return rows


def record(spec: MutableMapping[str, Any], engine: str, conversion: Conversion) -> None:
    """Write ``conversion`` into a manifest document's ``spec`` (a dict, or ruamel's round-trip map).

    ``engine="onnx"`` and a conversion that did not pass: refused, naming the gate or step.
    """
    serving = spec.setdefault("serving", {})
    serving["engine"] = engine
    gates = serving.get("onnx")
    if conversion.passed:
        spec["artifact"]["onnx"] = conversion.onnx.document()
        if gates is not None:
            gates.pop("fallback", None)
            if not gates:
                del serving["onnx"]
        return
    if engine == "onnx":
        raise ModelgenError(f"engine onnx: the model cannot be served by ONNX: {conversion.reason}")
    spec["artifact"].pop("onnx", None)
    if gates is None:
        serving["onnx"] = gates = {}
    gates["fallback"] = conversion.reason


def convert_manifest(path: str | Path, engine: str | None = None) -> Converted:
    """Convert the model of the manifest at ``path``, publish the ONNX file, record the outcome in the manifest."""
    from modelgen.registry.backends import fetch, publish_beside

    path = Path(path)
    manifest = load(path)
    engine = engine or (manifest.serving.engine if manifest.serving.engine in ENGINES else "auto")
    if engine not in ENGINES:
        raise ModelgenError(f"engine {engine!r} is not one a conversion serves (allowed: {', '.join(ENGINES)})")
    artifact = fetch(manifest.artifact.uri, manifest.artifact.sha256)
    conversion = convert(manifest, artifact, gate_rows(manifest), onnx_uri(manifest.artifact.uri))
    text = edited_manifest(path.read_text("utf-8"), lambda doc: record(doc["spec"], engine, conversion))
    if conversion.passed:
        published = publish_beside(manifest.artifact.uri, ONNX_FILENAME, conversion.data)
        if published.uri != conversion.onnx.uri:  # the registry's own spelling of the same place
            raise ModelgenError(f"the ONNX file went to {published.uri}, not {conversion.onnx.uri}")
    path.write_text(text, "utf-8")
    load(path)  # what was written reads back as a valid manifest
    return Converted(engine, conversion, path)
