"""The model manifest (``model.yaml``): load with line numbers, validate, and type it.

Validation reports every problem at once, each as ``FILE:LINE: field.path: what is wrong
(what is allowed)``, so a data scientist fixes a manifest in one round trip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from modelgen.errors import ManifestError, Problem

API_VERSION = "modelgen/v1"

# Which output types make sense for which task; the first is the default when omitted.
OUTPUTS_BY_TASK = {
    "classification": ("probabilities", "label"),
    "regression": ("value",),
    "anomaly-detection": ("score",),
    "clustering": ("cluster",),
}
DEFAULT_ENVIRONMENTS = ("dev", "prod")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``modelgen/v1`` manifests (the reference for every field)."""
    text = resources.files("modelgen").joinpath("schema/model-v1.json").read_text("utf-8")
    return json.loads(text)


# ---------------------------------------------------------------------------- typed model


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False
    categories: tuple[str, ...] | None = None
    strict: bool = False
    description: str = ""


@dataclass(frozen=True)
class Environment:
    name: str
    replicas: int
    autoscaling: dict[str, int]
    resources: dict[str, str]
    host: str


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; ``raw`` is the document as written, ``path`` where it was read."""

    path: Path
    raw: dict[str, Any]
    text: str
    sample: list[dict[str, Any]]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.raw["metadata"]["name"]

    @property
    def version(self) -> str:
        return self.raw["metadata"]["version"]

    @property
    def owner(self) -> str:
        return self.raw["metadata"]["owner"]

    @property
    def description(self) -> str:
        return self.raw["metadata"].get("description", "")

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.raw["metadata"].get("labels", {}))

    @property
    def spec(self) -> dict[str, Any]:
        return self.raw["spec"]

    @property
    def runtime(self) -> str:
        return self.spec["runtime"]

    @property
    def framework(self) -> str:
        return self.spec.get("framework", "sklearn")

    @property
    def task(self) -> str:
        return self.spec["task"]

    @property
    def artifact(self) -> dict[str, str]:
        return {"secret": "model-registry", **self.spec["artifact"]}

    @property
    def requirements(self) -> list[str]:
        return list(self.spec["requirements"])

    @property
    def code(self) -> list[str]:
        return list(self.spec.get("code", []))

    @property
    def columns(self) -> list[Column]:
        return [
            Column(
                name=c["name"],
                type=c["type"],
                nullable=c.get("nullable", False),
                categories=tuple(c["categories"]) if "categories" in c else None,
                strict=c.get("strict", False),
                description=c.get("description", ""),
            )
            for c in self.spec["input"]
        ]

    @property
    def output(self) -> dict[str, Any]:
        return dict(self.spec["output"])

    @property
    def serving(self) -> dict[str, Any]:
        given = self.spec.get("serving", {})
        return {
            "server": given.get("server", "gunicorn"),
            "workers": given.get("workers"),
            "maxRequestBytes": given.get("maxRequestBytes", 10 * 1024 * 1024),
            "timeoutSeconds": given.get("timeoutSeconds", 60),
            "replicas": given.get("replicas", 2),
            "autoscaling": {"min": 2, "max": 10, "cpu": 70, **given.get("autoscaling", {})},
            "resources": {"cpu": "1", "memory": "1Gi", **given.get("resources", {})},
            "host": given.get("route", {}).get("host", ""),
        }

    @property
    def environments(self) -> list[Environment]:
        serving = self.serving
        envs = []
        for item in self.spec.get("environments", list(DEFAULT_ENVIRONMENTS)):
            env = {"name": item} if isinstance(item, str) else item
            envs.append(
                Environment(
                    name=env["name"],
                    replicas=env.get("replicas", serving["replicas"]),
                    autoscaling={**serving["autoscaling"], **env.get("autoscaling", {})},
                    resources={**serving["resources"], **env.get("resources", {})},
                    host=env.get("host", serving["host"] if env["name"] == "prod" else ""),
                )
            )
        return envs


# ---------------------------------------------------------------------------- loading


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest; raise ``ManifestError`` listing every problem.

    >>> m = load("examples/penguins/model.yaml")  # doctest: +SKIP
    >>> m.name, m.task
    ('penguin-species', 'classification')
    """
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ManifestError([Problem(label, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError([Problem(label, None, "", f"cannot read file ({err})")]) from None

    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(filter(None, [err.context, err.problem]))
        raise ManifestError([Problem(label, line, "", f"not valid YAML: {problem}")]) from None
    if not isinstance(doc, dict):
        raise ManifestError(
            [Problem(label, 1, "", "must be a YAML mapping (apiVersion, kind, ...)")]
        )

    problems = list(_schema_problems(doc, label))
    sample: list[dict[str, Any]] = []
    if not problems:
        semantic, sample = _semantic_problems(doc, path.resolve().parent, label)
        problems.extend(semantic)
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ManifestError(problems)
    return Manifest(path=path.resolve(), raw=_plain(doc), text=text, sample=sample)


def _plain(node: Any) -> Any:
    """ruamel's round-trip types → plain dicts/lists, so nothing downstream depends on them."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _line(doc: Any, path: list[str | int]) -> int | None:
    """1-based line of the deepest node of ``path`` that exists in the YAML."""
    node, line = doc, None
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    if line is None and isinstance(node, (CommentedMap, CommentedSeq)):
        line = node.lc.line + 1
    return line


def _dotted(path: list[str | int] | Any) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


# ---------------------------------------------------------------------------- schema check


def _schema_problems(doc: Any, label: str) -> Iterator[Problem]:
    validator = jsonschema.Draft202012Validator(schema())
    for err in _leaf_errors(validator.iter_errors(_plain(doc))):
        path = list(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed))
            for key in extra:
                yield Problem(
                    label,
                    _line(doc, [*path, key]),
                    _dotted([*path, key]),
                    f"unknown field (allowed here: {', '.join(allowed)})",
                )
            continue
        if err.validator == "required":
            missing = err.message.split("'")[1]
            yield Problem(
                label,
                _line(doc, path),
                _dotted([*path, missing]),
                f"required field is missing{_described(err.schema, missing)}",
            )
            continue
        yield Problem(label, _line(doc, path), _dotted(path), _explain(err))


def _leaf_errors(
    errors: Iterator[jsonschema.ValidationError],
) -> Iterator[jsonschema.ValidationError]:
    """For ``oneOf`` (an environment is a name or a mapping), report the branch that fits best."""
    for err in errors:
        if err.validator == "oneOf" and err.context:
            yield jsonschema.exceptions.best_match(err.context)
        else:
            yield err


def _described(node_schema: dict[str, Any], key: str) -> str:
    desc = node_schema.get("properties", {}).get(key, {}).get("description")
    return f" ({desc})" if desc else ""


def _explain(err: jsonschema.ValidationError) -> str:
    s, v = err.schema, err.instance
    got = json.dumps(v, default=str) if not isinstance(v, (dict, list)) else type(v).__name__
    if len(got) > 60:
        got = got[:57] + "..."
    if err.validator == "enum":
        return f"{got} is not allowed (allowed: {', '.join(map(str, s['enum']))})"
    if err.validator == "const":
        return f"{got} is not allowed (allowed: {s['const']})"
    if err.validator == "type":
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        return f"{got} has the wrong type (allowed: {' or '.join(_TYPE_NAMES[t] for t in types)})"
    if err.validator == "pattern":
        hint = s.get("description") or f"must match {s['pattern']}"
        return f"{got} is not valid ({hint})"
    if err.validator in ("minimum", "maximum"):
        return f"{got} is out of range (allowed: {'>=' if err.validator == 'minimum' else '<='} {err.validator_value})"
    if err.validator == "minItems":
        return f"needs at least {err.validator_value} item(s)"
    if err.validator == "uniqueItems":
        return "contains duplicate items (allowed: each item once)"
    if err.validator == "maxLength":
        return f"is too long (allowed: at most {err.validator_value} characters)"
    return err.message


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


# ---------------------------------------------------------------------------- semantic checks


def _semantic_problems(
    doc: Any, base: Path, label: str
) -> tuple[list[Problem], list[dict[str, Any]]]:
    spec = doc["spec"]
    problems: list[Problem] = []

    def add(path: list[str | int], message: str) -> None:
        problems.append(Problem(label, _line(doc, path), _dotted(path), message))

    seen: dict[str, int] = {}
    for i, col in enumerate(spec["input"]):
        p = ["spec", "input", i]
        if col["name"] in seen:
            add(
                [*p, "name"],
                f"duplicate column {col['name']!r} (first at input[{seen[col['name']]}]; column names must be unique)",
            )
        seen.setdefault(col["name"], i)
        if "categories" in col and col["type"] != "string":
            add(
                [*p, "categories"],
                f"categories are only allowed on string columns (this one is {col['type']})",
            )
        if col.get("strict") and "categories" not in col:
            add([*p, "strict"], "strict needs a list of categories to check against")

    task, output = spec["task"], spec["output"]
    allowed = OUTPUTS_BY_TASK[task]
    if output["type"] not in allowed:
        add(
            ["spec", "output", "type"],
            f"{output['type']!r} does not fit task {task} (allowed: {', '.join(allowed)})",
        )
    if task == "classification" and "classes" not in output:
        add(
            ["spec", "output"],
            "classification needs output.classes (the model's classes_, in order)",
        )
    if task != "classification" and "classes" in output:
        add(
            ["spec", "output", "classes"],
            f"classes are only allowed for classification (task is {task})",
        )

    serving = spec.get("serving", {})
    scaling = serving.get("autoscaling", {})
    if scaling.get("min", 2) > scaling.get("max", 10):
        add(["spec", "serving", "autoscaling"], "min is larger than max")
    env_names = [e if isinstance(e, str) else e["name"] for e in spec.get("environments", [])]
    for i, name in enumerate(env_names):
        if name in env_names[:i]:
            add(["spec", "environments", i], f"duplicate environment {name!r}")

    for i, rel in enumerate(spec.get("code", [])):
        resolved = _inside(base, rel)
        if resolved is None:
            add(
                ["spec", "code", i],
                f"{rel!r} escapes the manifest's folder (allowed: paths inside {base})",
            )
        elif not resolved.is_file():
            add(["spec", "code", i], f"file {rel!r} not found next to the manifest")
        elif not resolved.stem.isidentifier():
            add(["spec", "code", i], f"{resolved.name!r} is not an importable module name")

    sample: list[dict[str, Any]] = []
    resolved = _inside(base, spec["sample"])
    if resolved is None:
        add(
            ["spec", "sample"],
            f"{spec['sample']!r} escapes the manifest's folder (allowed: paths inside {base})",
        )
    elif not resolved.is_file():
        add(["spec", "sample"], f"file {spec['sample']!r} not found next to the manifest")
    else:
        try:
            sample = json.loads(resolved.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            add(["spec", "sample"], f"{spec['sample']} is not valid JSON ({err})")
        else:
            for message in sample_problems(sample, _plain(spec["input"])):
                add(["spec", "sample"], f"{spec['sample']}: {message}")
    return problems, sample


def _inside(base: Path, rel: str) -> Path | None:
    target = (base / rel).resolve()
    return target if target.is_relative_to(base) else None


def sample_problems(sample: Any, columns: list[dict[str, Any]]) -> Iterator[str]:
    """Why ``sample`` (a list of records) does not fit the input columns; nothing if it does."""
    if not isinstance(sample, list) or not sample:
        yield "must be a non-empty JSON list of records"
        return
    names = [c["name"] for c in columns]
    for row, record in enumerate(sample):
        if not isinstance(record, dict):
            yield f"row {row}: must be an object mapping column names to values"
            continue
        for extra in sorted(set(record) - set(names)):
            yield f"row {row}: column {extra!r} is not an input column (allowed: {', '.join(names)})"
        for col in columns:
            if col["name"] not in record:
                yield f"row {row}: column {col['name']!r} is missing"
                continue
            wrong = value_problem(record[col["name"]], col)
            if wrong:
                yield f"row {row}: column {col['name']!r}: {wrong}"


def value_problem(value: Any, col: dict[str, Any]) -> str | None:
    """Why one JSON value does not fit a column, or None (the same rule the service applies)."""
    if value is None:
        return None if col.get("nullable") else "null is not allowed (column is not nullable)"
    kind = col["type"]
    if kind == "number":
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        return f"{json.dumps(value)} is not a {kind}"
    if kind == "string" and col.get("strict") and value not in col.get("categories", ()):
        return f"{value!r} is not a known category (allowed: {', '.join(col['categories'])})"
    return None
