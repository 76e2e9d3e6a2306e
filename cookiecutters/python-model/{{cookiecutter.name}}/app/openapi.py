"""The service's OpenAPI 3 description, derived from the contract so it cannot drift."""

from __future__ import annotations

from typing import Any

_JSON_TYPES = {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}


def input_schema(contract: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of one input record."""
    properties = {}
    for col in contract["columns"]:
        prop: dict[str, Any] = {"type": _JSON_TYPES[col["type"]]}
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


def output_schema(contract: dict[str, Any]) -> dict[str, Any]:
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


def document(contract: dict[str, Any]) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}
    record = {"$ref": "#/components/schemas/Record"}

    def error_response(text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": error}}}

    def json_response(text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": schema or {"type": "object"}}}}

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
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {
                                            "type": "object",
                                            "required": ["dataframe_split"],
                                            "properties": {
                                                "dataframe_split": {
                                                    "type": "object",
                                                    "properties": {
                                                        "columns": {"type": "array", "items": {"enum": columns}},
                                                        "data": {"type": "array", "items": {"type": "array"}},
                                                    },
                                                }
                                            },
                                        },
                                        {
                                            "type": "object",
                                            "required": ["dataframe_records"],
                                            "properties": {"dataframe_records": {"type": "array", "items": record}},
                                        },
                                        {
                                            "type": "object",
                                            "required": ["instances"],
                                            "properties": {"instances": {"type": "array", "items": record}},
                                        },
                                        {"type": "array", "items": record},
                                        record,
                                    ]
                                }
                            },
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
