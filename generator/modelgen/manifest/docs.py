"""Reference documentation generated from the manifest's JSON Schema (``modelgen docs manifest``).

``docs/manifest.md`` is this module's output: the numbers and table cells are worked out here,
the page is ``templates/manifest.md.j2``. A test fails when the page and the schema differ, so it
cannot drift from ``schema/model-v1.json``. Output is deterministic: schema order, no dates.
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from modelgen.manifest.messages import PATTERN_MEANINGS
from modelgen.manifest.model import LOG_PREDICTION, LOG_TIMESTAMP, OUTPUTS_BY_TASK
from modelgen.manifest.rules import MAX_SAMPLE_PROBLEMS
from modelgen.manifest.validate import schema

# A complete manifest using every field, and the sample beside it; tests/test_manifest.py
# checks that they load.
_TEMPLATES = resources.files("modelgen.manifest") / "templates"
EXAMPLE = (_TEMPLATES / "example.yaml").read_text("utf-8")
EXAMPLE_SAMPLE = (_TEMPLATES / "example-sample.json").read_text("utf-8")


def write_example(folder: str | Path | None = None) -> Path:
    """The example manifest with the files it names, in ``folder`` (a new temporary one by default);
    returns the path of its ``model.yaml``. Docstring examples and first experiments start here.

    >>> write_example().name
    'model.yaml'
    """
    target = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="modelgen-example-"))
    target.mkdir(parents=True, exist_ok=True)
    (target / "sample.json").write_text(EXAMPLE_SAMPLE, "utf-8")
    (target / "features.py").write_text("# custom transformers the pickle refers to\n", "utf-8")
    (target / "model.yaml").write_text(EXAMPLE, "utf-8")
    return target / "model.yaml"


_TYPE_WORDS = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "object": "mapping",
    "array": "list",
    "null": "null",
}


def manifest_reference() -> str:
    """The Markdown reference page of the ``modelgen/v1`` manifest (``manifest.md.j2`` filled in)."""
    root = schema()
    spec = root["properties"]["spec"]["properties"]
    sections = [
        {"title": title, "intro": _object_intro(path, node), "rows": _rows(root, path, node)}
        for title, path, node in _objects(root)
    ]
    return _page().render(
        api_version=root["properties"]["apiVersion"]["const"],
        description=root["description"],
        schema_id=root["$id"],
        tasks=spec["task"]["enum"],
        example=EXAMPLE,
        example_sample=EXAMPLE_SAMPLE,
        sections=sections,
        outputs_by_task=OUTPUTS_BY_TASK,
        log_fields=(LOG_TIMESTAMP, LOG_PREDICTION),
        default_environments=spec["environments"]["default"],
        max_sample_problems=MAX_SAMPLE_PROBLEMS,
    )


@cache
def _page() -> jinja2.Template:
    # Markdown, not HTML: nothing to escape, and every line laid out by the template itself.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=False,
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("manifest.md.j2")


def _objects(root: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(heading, path, schema) of every mapping that has fields, depth first in schema order."""
    found: list[tuple[str, str, dict[str, Any]]] = [("Top level", "", root)]

    def walk(path: str, node: dict[str, Any]) -> None:
        for key, field in node.get("properties", {}).items():
            if "$ref" in field:
                continue  # documented where it is defined
            sub = f"{path}.{key}" if path else key
            target, suffix = field, ""
            if field.get("type") == "array" and "items" in field:
                target, suffix = field["items"], "[]"
            mapping = _mapping_branch(target)
            if mapping is not None and "properties" in mapping:
                found.append((f"`{sub}{suffix}`", sub + suffix, mapping))
                walk(sub + suffix, mapping)

    walk("", root)
    return found


def _mapping_branch(node: dict[str, Any]) -> dict[str, Any] | None:
    if node.get("type") == "object":
        return node
    for branch in node.get("oneOf", []):
        if branch.get("type") == "object":
            return branch
    return None


def _object_intro(path: str, node: dict[str, Any]) -> list[str]:
    parent = _parent_schema(path)
    lines = []
    if parent is not None and parent.get("description"):
        lines.append(_sentence(parent["description"]))
    if parent is not None and "oneOf" in parent.get("items", {}):
        names = [b for b in parent["items"]["oneOf"] if b.get("type") == "string"]
        if names:
            meaning = PATTERN_MEANINGS.get(names[0].get("pattern", ""), "a string")
            lines.append(
                f"An item is either just a name ({meaning}) or a mapping with the fields below. "
                "A field left out comes from `spec.serving`; `host` comes from "
                "`spec.serving.route.host` only for the environment named `prod`."
            )
    return lines


def _parent_schema(path: str) -> dict[str, Any] | None:
    """The schema of the field ``path`` (without a trailing ``[]``), for its description."""
    node: dict[str, Any] = schema()
    for key in path.removesuffix("[]").split(".") if path else []:
        node = node.get("properties", {}).get(key.removesuffix("[]"), {})
        if key.endswith("[]"):
            node = _mapping_branch(node.get("items", {})) or {}
    return node if path else None


def _rows(root: dict[str, Any], path: str, node: dict[str, Any]) -> list[list[str]]:
    """The cells of the table of one mapping's fields, escaped for a Markdown table."""
    rows = []
    required = set(node.get("required", []))
    for key, field in node["properties"].items():
        full = f"{path}.{key}" if path else key
        described = field
        note = ""
        if "$ref" in field:
            described = _resolve(root, field["$ref"])
            note = f"Overrides `{_ref_path(field['$ref'])}` for this environment."
        cells = [
            f"`{full}`",
            _type(described),
            "yes" if key in required else "no",
            _default(described),
            _allowed(described, _ref_path(field["$ref"]) if "$ref" in field else full),
            " ".join(filter(None, [_sentence(described.get("description", "")), note])),
        ]
        rows.append([_cell(c) for c in cells])
    return rows


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _ref_path(ref: str) -> str:
    return ".".join(p for p in ref.removeprefix("#/").split("/") if p != "properties")


def _type(node: dict[str, Any]) -> str:
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        words = [_TYPE_WORDS[t] for t in types]
        if node.get("type") == "array" and "items" in node:
            return f"list of {_type(node['items'])}"
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            return f"mapping of string to {_type(node['additionalProperties'])}"
        return " or ".join(words)
    if "oneOf" in node:
        return "(" + " or ".join(_type(b) for b in node["oneOf"]) + ")"
    values = node.get("enum", [node["const"]] if "const" in node else [])
    kinds = sorted({_TYPE_WORDS[_json_type(v)] for v in values})
    return " or ".join(kinds)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number"}.get(type(value), "string")


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    return f"`{_flow(node['default'])}`"


def _flow(value: Any) -> str:
    """A value as it would be written in the manifest (YAML flow style)."""
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _allowed(node: dict[str, Any], path: str) -> str:
    """What the Allowed column says of one field: its values, bounds, then what its items or fields are."""
    parts = [*_values(node), *_bounds(node)]
    inner = _inner(node, path)
    return "; ".join([*parts, inner] if inner else parts)


def _values(node: dict[str, Any]) -> list[str]:
    parts = []
    if "const" in node:
        parts.append(f"`{node['const']}`")
    if "enum" in node:
        parts.append(", ".join(f"`{_flow(v)}`" for v in node["enum"]))
    if "pattern" in node:
        parts.append(PATTERN_MEANINGS[node["pattern"]])
    return parts


def _bounds(node: dict[str, Any]) -> list[str]:
    parts = []
    if "minimum" in node and "maximum" in node:
        parts.append(f"{node['minimum']} to {node['maximum']}")
    elif "minimum" in node:
        parts.append(f"at least {node['minimum']}")
    elif "maximum" in node:
        parts.append(f"at most {node['maximum']}")
    low, high = node.get("minLength"), node.get("maxLength")
    if low is not None and high is not None:
        parts.append(f"{low} to {high} characters")
    elif low is not None:
        parts.append(f"at least {low} character{'s' if low > 1 else ''}")
    elif high is not None:
        parts.append(f"at most {high} characters")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item{'s' if node['minItems'] > 1 else ''}")
    if node.get("uniqueItems"):
        parts.append("no duplicates")
    return parts


def _inner(node: dict[str, Any], path: str) -> str:
    """A list's items or a mapping's fields: inline when short, else a pointer to their own table."""
    if node.get("type") == "array" and "items" in node:
        items = node["items"]
        if _mapping_branch(items) is not None:
            return f"items: see `{path}[]`"
        if "oneOf" not in items:
            inner = _allowed(items, path)
            return f"items: {inner}" if inner else ""
        return ""
    if node.get("type") == "object" and "properties" in node:
        return f"fields: see `{path}`"
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        keys = PATTERN_MEANINGS[node["propertyNames"]["pattern"]] if "propertyNames" in node else "any name"
        values = _allowed(node["additionalProperties"], path)
        return f"keys: {keys}; values: {values}"
    return ""


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?", ")")) else text + "."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
