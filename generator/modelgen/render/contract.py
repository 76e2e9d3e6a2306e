"""The contract both services serve: one JSON document (``app/contract.json``) built here, once.

Everything the Python and the R service would otherwise work out for themselves is decided
here and written down as data: the input columns and the rule for their values (types,
nullability, categories, strictness, the accepted forms of integers, booleans and nulls), the
request limits, the monitored prediction column, the reference bins with their labels, and the
OpenAPI and /schema documents. The services read it and serve it; they hold no copy. The drift
report labels its bins with ``bin_labels`` too, so /metrics and the report always agree.

Pure functions of the manifest (and the reference profile): nothing is read or written here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from modelgen.manifest import Artifact, Manifest
from modelgen.manifest.values import VALUES
from modelgen.registry.policy import DOWNLOAD

# The column of the service's CSV answer (and the field of its JSON one) that monitoring and the
# drift job follow, per output type.
MONITORED = {"probabilities": "label", "label": "label", "cluster": "cluster", "value": "value", "score": "score"}
# Monitored fields that are numbers: counted per reference bin, not per label.
NUMERIC_FIELDS = ("value", "score")
# Each input type as JSON Schema; a datetime travels as an ISO 8601 string.
_JSON_TYPES: dict[str, dict[str, str]] = {
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
}


def build(manifest: Manifest, profile: Mapping[str, Any] | None, modelgen_version: str) -> dict[str, Any]:
    """``app/contract.json`` of ``manifest``'s project; ``profile`` (with ``spec.monitoring``) fixes the bins."""
    serving, monitoring = manifest.serving, manifest.monitoring
    contract: dict[str, Any] = {
        "name": manifest.name,
        "version": manifest.version,
        "owner": manifest.owner,
        "description": manifest.description,
        "task": manifest.task,
        "framework": manifest.framework,
        "output": {"type": manifest.output.type, "classes": list(manifest.output.classes)},
        "columns": [column(asdict(c)) for c in manifest.columns],
        "values": VALUES,
        "artifact": artifact_fields(manifest.artifact),
        # What runs the model (MODELGEN_ENGINE switches back to native without a new image) and,
        # when it was converted, how the service reads the ONNX artifact.
        "engine": manifest.engine,
        "engineReason": manifest.engine_reason,
        "onnx": onnx_fields(manifest),
        "download": DOWNLOAD,  # how the init containers retry and when they give up
        "requirements": list(manifest.requirements),
        "server": serving.server,
        "workers": serving.workers,
        "maxRequestBytes": serving.max_request_bytes,
        "timeoutSeconds": serving.timeout_seconds,
        "sampleRate": monitoring.sample_rate if monitoring and profile is not None else 0,
        "modelgen": modelgen_version,
    }
    contract["monitoring"] = monitored(contract, profile) if monitoring and profile is not None else None
    contract.update(documents(contract))
    return contract


def column(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One input column as the services check it: ``strict`` only where there are categories to hold to."""
    categories = list(spec["categories"]) if spec.get("categories") is not None else None
    return {
        "name": spec["name"],
        "type": spec["type"],
        "nullable": bool(spec.get("nullable", False)),
        "categories": categories,
        "strict": bool(spec.get("strict")) and bool(categories),
        "description": spec.get("description", ""),
        "dtype": spec.get("dtype") or None,
    }


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Reference bins as interval labels: what /metrics counts by and the drift report shows."""
    bounds = ["-inf", *(f"{e:g}" for e in edges), "inf"]
    return [f"({a}, {b}]" for a, b in zip(bounds, bounds[1:], strict=False)]


def monitored(contract: Mapping[str, Any], profile: Mapping[str, Any]) -> dict[str, Any]:
    """What the services count per request: each feature's bins or known categories, and the predictions'.

    A value ``v`` falls in bin ``i`` when ``edges[i-1] < v <= edges[i]`` (numpy's
    ``searchsorted(edges, v, side="left")``), the rule ``drift.profile`` bins the reference by.
    """
    features = []
    for col in contract["columns"]:
        ref = profile["features"].get(col["name"])
        if ref and ref["kind"] == "numeric":
            features.append(
                {"name": col["name"], "kind": "numeric", "edges": ref["edges"], "bins": bin_labels(ref["edges"])}
            )
        elif col["type"] == "datetime":  # no bins for time, which only moves on: its gaps still count
            features.append({"name": col["name"], "kind": "missing"})
        elif col["type"] in ("string", "boolean"):
            seen = ref["frequencies"] if ref else ()
            known = sorted(set(seen) | {str(c) for c in col["categories"] or ()})
            features.append({"name": col["name"], "kind": "categorical", "categories": known})
        else:  # a number the reference has no bins for: its missing values still count
            features.append({"name": col["name"], "kind": "numeric", "edges": [], "bins": bin_labels([])})
    field = MONITORED[contract["output"]["type"]]
    expected = profile.get("predictions") or {}
    if field in NUMERIC_FIELDS or expected.get("kind") == "numeric":
        edges = list(expected.get("edges", []))
        predictions = {"kind": "numeric", "edges": edges, "bins": bin_labels(edges)}
    else:  # classes or clusters: a bounded set of labels
        predictions = {"kind": "categorical"}
    return {"field": field, "features": features, "predictions": predictions}


def documents(contract: Mapping[str, Any]) -> dict[str, Any]:
    """``openapi`` (GET /openapi.json) and ``schema`` (GET /schema) of a contract.

    Reads only name, version, owner, description, task, columns and output, which a project's
    recorded inputs (``.modelgen.json``) hold as well.
    """
    return {
        "openapi": openapi_document(contract),
        "schema": {"input": input_schema(contract), "output": output_schema(contract)},
    }


def input_schema(contract: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema of one input record."""
    properties = {}
    for col in contract["columns"]:
        prop: dict[str, Any] = dict(_JSON_TYPES[col["type"]])
        if col.get("nullable"):
            prop["nullable"] = True
        if col.get("categories"):
            key = "enum" if col.get("strict") else "x-known-values"
            prop[key] = list(col["categories"]) + ([None] if key == "enum" and col.get("nullable") else [])
        if col.get("description"):
            prop["description"] = col["description"]
        properties[col["name"]] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [c["name"] for c in contract["columns"]],
        "additionalProperties": False,
    }


def output_schema(contract: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema of one prediction."""
    output = contract["output"]
    kind = output["type"]
    if kind == "probabilities":
        return {
            "type": "object",
            "properties": {
                "label": {"enum": output["classes"]},
                "probabilities": {
                    "type": "object",
                    "properties": {str(c): {"type": "number"} for c in output["classes"]},
                },
            },
        }
    if kind == "label":
        return {"enum": output["classes"]}
    if kind == "score":
        return {
            "type": "object",
            "properties": {
                "outlier": {"type": "boolean"},
                "score": {"type": "number", "description": "negative for outliers"},
            },
        }
    return {"type": "integer" if kind == "cluster" else "number"}


def openapi_document(contract: Mapping[str, Any]) -> dict[str, Any]:
    """The service's OpenAPI 3 description."""
    error = {"$ref": "#/components/schemas/Error"}
    record = {"$ref": "#/components/schemas/Record"}

    def error_response(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": error}}}

    def json_response(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": {"type": "object"}}}}

    columns = [c["name"] for c in contract["columns"]]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": contract["name"],
            "version": contract["version"],
            "description": contract.get("description") or f"{contract['task']} model served by modelgen",
            "contact": {"email": contract["owner"]},
        },
        "paths": {
            "/invocations": {
                "post": {
                    "summary": "Predict for one or more raw rows",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"oneOf": _payload_shapes(columns, record)}},
                            "text/csv": {"schema": {"type": "string", "description": f"header: {','.join(columns)}"}},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per row, in order",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "predictions": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Prediction"},
                                            }
                                        },
                                    }
                                },
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        "400": error_response("A row does not fit the input schema"),
                        "413": error_response("Body over the size limit"),
                        "415": error_response("Content type other than JSON or CSV"),
                        "422": error_response("The model could not score valid-looking rows"),
                    },
                }
            },
            "/ping": {"get": {"summary": "Liveness and readiness", "responses": {"200": json_response("Ready")}}},
            "/metadata": {
                "get": {
                    "summary": "Model identity and library versions",
                    "responses": {"200": json_response("Metadata")},
                }
            },
            "/schema": {"get": {"summary": "Input and output schema", "responses": {"200": json_response("Schema")}}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Record": input_schema(contract),
                "Prediction": output_schema(contract),
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string"},
                                "column": {"type": "string", "nullable": True},
                                "row": {"type": "integer", "nullable": True},
                            },
                        }
                    },
                },
            }
        },
    }


def _payload_shapes(columns: list[str], record: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON bodies /invocations accepts (MLflow's scoring-server payloads, a list, one record).

    As the services check them: at least one row, every column once, nothing next to the rows.
    """
    width = len(columns)
    row = {"type": "array", "minItems": width, "maxItems": width}
    rows = {"type": "array", "minItems": 1, "items": record}
    split = {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": {
            "columns": {
                "type": "array",
                "items": {"enum": columns},
                "minItems": width,
                "maxItems": width,
                "uniqueItems": True,
            },
            "data": {"type": "array", "minItems": 1, "items": row},
            "index": {"type": "array"},
        },
    }
    lists_or_rows = {"type": "array", "minItems": 1, "items": {"oneOf": [record, row]}}

    def wrapper(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "required": [key], "additionalProperties": False, "properties": {key: schema}}

    return [
        wrapper("dataframe_split", split),
        wrapper("dataframe_records", rows),
        wrapper("instances", lists_or_rows),
        wrapper("inputs", lists_or_rows),
        rows,
        record,
    ]


def onnx_fields(manifest: Manifest) -> dict[str, Any] | None:
    """What the service needs of ``spec.artifact.onnx`` (None without one): where it is, its bytes,
    how to feed and read it, and the parity tolerance its tests hold it to."""
    onnx = manifest.artifact.onnx
    if onnx is None:
        return None
    return {
        "tolerance": manifest.serving.onnx.tolerance,
        "uri": onnx.uri,
        "sha256": onnx.sha256,
        "output": onnx.output,
        "precision": onnx.precision,
        "nullToken": onnx.null_token,
        "onnxruntime": onnx.converters.get("onnxruntime", ""),
    }


def artifact_fields(artifact: Artifact) -> dict[str, Any]:
    """``spec.artifact`` as the manifest has it, its default ``secret`` filled in (``trusted`` only when given)."""
    trusted = {} if artifact.trusted is None else {"trusted": list(artifact.trusted)}
    return {
        "uri": artifact.uri,
        "sha256": artifact.sha256,
        "format": artifact.format,
        "secret": artifact.secret,
        **trusted,
    }
