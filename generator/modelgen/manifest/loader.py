"""The model manifest (``model.yaml``): load with line numbers, validate, and type it.

Validation reports every problem at once, each as ``FILE:LINE: field.path: what is wrong
(what is allowed)``, so a data scientist fixes a manifest in one round trip.
"""

from __future__ import annotations

import datetime
import difflib
import json
import keyword
import math
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from modelgen.errors import ManifestError, Problem

API_VERSION = "modelgen/v1"

# Which output types make sense for which task (spec.output.type is required).
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
    text = resources.files("modelgen.manifest").joinpath("schema/model-v1.json").read_text("utf-8")
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
        return self.spec.get("framework", DEFAULT_FRAMEWORK[self.runtime])

    @property
    def lockfile(self) -> str:
        """R: which lock file the project gets (packrat or renv)."""
        return self.spec.get("lockfile", "packrat")

    @property
    def r_version(self) -> str:
        return self.spec.get("rVersion", "4.2.2")

    @property
    def cran(self) -> str:
        return self.spec.get("cran", "https://cloud.r-project.org")

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
    def monitoring(self) -> dict[str, Any] | None:
        """Drift monitoring with every default filled in, or None when the manifest has none."""
        given = self.spec.get("monitoring")
        if given is None:
            return None
        notify = given.get("notify", {})
        return {
            "reference": given["reference"],
            "sampleRate": given.get("sampleRate", 0.1),
            "logSize": given.get("logSize", "1Gi"),
            "schedule": given.get("schedule", "0 6 * * *"),
            "window": given.get("window", "24h"),
            "thresholds": dict(given.get("thresholds", {})),
            "notify": {
                "email": list(notify.get("email", [self.owner])),
                "smtp": notify.get("smtp", ""),
                "webhook": notify.get("webhook", ""),
            },
        }

    @property
    def training(self) -> dict[str, Any] | None:
        """Retraining with defaults filled in, or None."""
        given = self.spec.get("training")
        if given is None:
            return None
        return {
            "script": given["script"],
            "data": given["data"],
            "hyperparameters": dict(given.get("hyperparameters", {})),
            "image": given.get("image", ""),
            "registry": given.get("registry", ""),
            "resources": {"cpu": "1", "memory": "2Gi", **given.get("resources", {})},
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

    >>> m = load("model.yaml")  # doctest: +SKIP
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

    doc = _parse(text, label)
    problems, bad = _schema_problems(doc, label)
    semantic, sample = _semantic_problems(doc, path.resolve().parent, path.name, label, bad)
    problems.extend(semantic)
    if problems:
        unique = list(dict.fromkeys(problems))  # one oneOf branch can repeat a sibling's finding
        unique.sort(key=lambda p: (p.line or 0, p.path))
        raise ManifestError(unique)
    return Manifest(path=path.resolve(), raw=_plain(doc), text=text, sample=sample)


def _parse(text: str, label: str) -> CommentedMap:
    """The YAML document as a round-trip mapping (it knows its line numbers), or ManifestError."""
    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark
        at_end = mark is not None and mark.index >= len(text.rstrip())
        if mark is None or (at_end and err.context_mark):  # point at what was left unclosed
            mark = err.context_mark
        line = mark.line + 1 if mark else None
        problem = _one_line(err.problem or "")
        context = _one_line(err.context or "")
        if context.startswith("while"):  # "found X (while parsing Y)"
            problem = f"{problem} ({context})"
        elif context:  # "expected X but found Y"
            problem = f"{context} {problem}".strip()
        message = f"not valid YAML: {problem or 'unreadable'}"
        raise ManifestError([Problem(label, line, "", message)]) from None
    except YAMLError as err:  # e.g. a control character: the reader knows only an offset
        position = getattr(err, "position", None)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else None
        problem = _one_line(getattr(err, "reason", None) or str(err).splitlines()[0])
        raise ManifestError([Problem(label, line, "", f"not valid YAML: {problem}")]) from None
    except RecursionError:
        raise ManifestError([Problem(label, None, "", "not valid YAML: nested too deeply")]) from None
    if doc is None:
        raise ManifestError([Problem(label, 1, "", f"the file is empty (allowed: {_DOCUMENT_SHAPE})")])
    if not isinstance(doc, CommentedMap):
        line = doc.lc.line + 1 if isinstance(doc, CommentedSeq) else _first_content_line(text)
        raise ManifestError(
            [
                Problem(
                    label,
                    line,
                    "",
                    f"{_show(_plain(doc))} is not a mapping (allowed: {_DOCUMENT_SHAPE})",
                )
            ]
        )
    return doc


_DOCUMENT_SHAPE = "a YAML mapping with apiVersion, kind, metadata and spec"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_content_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "---", "%")):
            return number
    return 1


def _plain(node: Any) -> Any:
    """ruamel's round-trip types → plain Python values, so nothing downstream depends on them."""
    if isinstance(node, dict):
        return {_key_text(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for plain in (str, int, float):
        if isinstance(node, plain):
            return plain(node)
    return node


FieldPath = tuple[str | int, ...]
_MISSING = object()  # "no such value" (None is a value: YAML null)


def _line(doc: Any, path: FieldPath | list[str | int]) -> int | None:
    """1-based line of the deepest node of ``path`` that exists in the YAML."""
    node, line = doc, None
    for key in path:
        if isinstance(node, CommentedMap):
            found = _key(node, key)
            if found is _MISSING:
                break
            try:
                line = node.lc.key(found)[0] + 1
            except KeyError:  # came in through a merge key (<<: *anchor): no position of its own
                line = node.lc.line + 1
            node = node[found]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    if line is None and isinstance(node, (CommentedMap, CommentedSeq)):
        line = node.lc.line + 1
    return line


def _key(node: CommentedMap, key: Any) -> Any:
    """The key of ``node`` that ``_plain`` turned into ``key`` (YAML keys need not be strings)."""
    if isinstance(key, str) and key in node:
        return key
    return next((k for k in node if _key_text(k) == key), _MISSING)


def _key_text(key: Any) -> str:
    """A YAML key as a field name: ``null`` and ``true`` as written, not Python's None/True."""
    return json.dumps(key) if key is None or isinstance(key, bool) else str(key)


def _dotted(path: FieldPath | list[str | int]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


# ---------------------------------------------------------------------------- schema check

# What each ``pattern`` in the schema means, in words; used in messages and in docs/manifest.md.
# tests/test_manifest.py checks that every pattern of the schema is explained here.
# What each runtime accepts where the schema lists both runtimes' values.
RUNTIME_VALUES = {
    "python": {"framework": ("sklearn", "xgboost"), "format": ("joblib", "pickle", "skops"), "code": ".py"},
    "r": {"framework": ("caret", "mlr", "mlr3", "recipes", "stats"), "format": ("rds",), "code": ".R"},
}
DEFAULT_FRAMEWORK = {"python": "sklearn", "r": "stats"}
R_ONLY = ("lockfile", "rVersion", "cran")

PATTERN_MEANINGS: dict[str, str] = {
    "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$": (
        "a DNS-1123 label: lower-case letters, digits and '-', starting with a letter, "
        "ending with a letter or digit, at most 40 characters"
    ),
    "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$": (
        "a semantic version MAJOR.MINOR.PATCH without leading zeros, optionally -prerelease, e.g. 1.2.0 or 2.0.0-rc.1"
    ),
    "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$": "an e-mail address, e.g. jane.doe@example.com",
    "^[A-Za-z_][A-Za-z0-9_.]*$": "a dotted Python name, e.g. sklearn.pipeline.Pipeline",
    "^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$": (
        "lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or "
        "digit, at most 63 characters"
    ),
    "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$": (
        "empty, or letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    ),
    "^(https?|file)://\\S+$": "an http://, https:// or file:// URL without spaces",
    "^[0-9a-f]{64}$": "64 lower-case hexadecimal digits (0-9, a-f)",
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "a DNS-1123 name: lower-case letters, digits and '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z0-9][A-Za-z0-9._-]*(\\[[A-Za-z0-9,._-]+\\])?==[A-Za-z0-9.+!_-]+$": (
        "a package pinned to one version, name==version or name[extra]==version, e.g. scikit-learn==1.5.2"
    ),
    "^[^/\\\\].*\\.(py|R)$": "a path relative to the manifest's folder, ending in .py (Python) or .R (R)",
    "^[0-9]+\\.[0-9]+\\.[0-9]+$": "a version MAJOR.MINOR.PATCH, e.g. 4.2.2",
    "^[1-9][0-9]{0,3}[hd]$": "a number of hours or days, e.g. 24h or 7d",
    "^[A-Za-z0-9.-]+(:[0-9]{1,5})?$": "a host name with an optional port, e.g. smtp.example.com:587",
    "^https?://\\S+$": "an http:// or https:// URL without spaces",
    "^[A-Za-z_][A-Za-z0-9_.-]{0,127}$": (
        "a letter or '_', then letters, digits, '_', '.' or '-', at most 128 characters"
    ),
    "\\.json$": "a path relative to the manifest's folder, ending in .json",
    "^([0-9]+m|[0-9]+(\\.[0-9]+)?)$": "cores (2, 0.5) or millicores (500m)",
    "^[0-9]+(Ki|Mi|Gi)$": "a whole number with the unit Ki, Mi or Gi, e.g. 512Mi or 1Gi",
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$": (
        "a DNS host name with at least one dot, in lower case, e.g. penguins.apps.example.com"
    ),
    "^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$": (
        "a DNS-1123 label: lower-case letters, digits and '-', starting with a letter, "
        "ending with a letter or digit, at most 20 characters"
    ),
}

# DNS-style patterns: (longest allowed, must start with a letter) to say what exactly is wrong.
_DNS_PATTERNS = {
    "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$": (40, True),
    "^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$": (20, True),
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (None, False),
}


def _validator() -> jsonschema.protocols.Validator:
    base = jsonschema.Draft202012Validator
    # JSON Schema counts 2.0 as an integer; Kubernetes does not, so neither do we.
    checker = base.TYPE_CHECKER.redefine("integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(base, type_checker=checker)(schema())


def _schema_problems(doc: Any, label: str) -> tuple[list[Problem], set[FieldPath]]:
    """Every schema violation, and the paths of the values they make unusable."""
    problems: list[Problem] = []
    bad: set[FieldPath] = set()

    def add(path: FieldPath, message: str, *, at: FieldPath | None = None, usable: bool = False) -> None:
        problems.append(Problem(label, _line(doc, path if at is None else at), _dotted(path), message))
        if not usable:
            bad.add(path)

    plain = _plain(doc)
    for err in _leaf_errors(_validator().iter_errors(plain)):
        path: FieldPath = tuple(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed)):
                guess = difflib.get_close_matches(key, allowed, n=1)
                hint = f", did you mean {guess[0]}?" if guess else ""
                add(
                    (*path, key),
                    f"unknown field{hint} (allowed here: {', '.join(allowed)})",
                    usable=True,
                )
        elif err.validator == "required":
            for key in err.validator_value:
                if key not in err.instance and (*path, key) not in bad:
                    hint = _field_hint(err.schema.get("properties", {}).get(key, {}))
                    add((*path, key), f"required field is missing ({hint})", at=path)
        elif err.validator == "uniqueItems":
            for index, first in _duplicates(err.instance):
                add(
                    (*path, index),
                    f"{_show(err.instance[index])} is a duplicate of {_dotted((*path, first))} "
                    "(allowed: each item once)",
                )
        elif err.relative_schema_path and "propertyNames" in err.relative_schema_path:
            add(
                (*path, err.instance),
                f"{_show(err.instance)} is not a valid key (allowed: {_explain_hint(err)})",
            )
        else:
            add(path, _explain(err))
    return problems, bad


def _leaf_errors(
    errors: Iterator[jsonschema.ValidationError],
) -> Iterator[jsonschema.ValidationError]:
    """For ``oneOf`` (an environment is a name or a mapping), report the branch of the value's
    type: all of its errors, not just the one jsonschema's ``best_match`` would pick."""
    for err in errors:
        if err.validator != "oneOf" or not err.context:
            yield err
            continue
        branches: dict[int, list[jsonschema.ValidationError]] = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        fitting = [
            subs for subs in branches.values() if not any(s.validator == "type" and not s.relative_path for s in subs)
        ]
        if len(fitting) == 1:
            yield from _leaf_errors(iter(fitting[0]))
        elif not fitting:
            yield err  # a value of none of the branches' types; _explain lists them
        else:
            yield jsonschema.exceptions.best_match(err.context)


def _duplicates(items: list[Any]) -> Iterator[tuple[int, int]]:
    """(index, index of its first occurrence) for every repeated item."""
    seen: list[Any] = []
    for index, item in enumerate(items):
        for first, earlier in enumerate(seen):
            if _same(item, earlier):
                yield index, first
                break
        seen.append(item)


def _same(a: Any, b: Any) -> bool:
    """JSON equality (unlike Python's, ``true`` is not ``1``)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _field_hint(field: dict[str, Any]) -> str:
    """What a missing field should hold, as briefly as the schema allows."""
    if "enum" in field:
        return "allowed: " + ", ".join(map(str, field["enum"]))
    if "const" in field:
        return f"allowed: {field['const']}"
    if field.get("description"):
        return field["description"].rstrip(".")
    if field.get("pattern") in PATTERN_MEANINGS:
        return "allowed: " + PATTERN_MEANINGS[field["pattern"]]
    if "type" in field:
        return "allowed: " + _types(field["type"])
    return "see docs/manifest.md"


def _types(types: str | list[str]) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in ([types] if isinstance(types, str) else types))


def _show(value: Any) -> str:
    """A value as the user would recognise it in a message (JSON style, shortened)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, TaggedScalar):
        return f"a value tagged {value.tag}"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, str) and len(value) > 72:  # a whole sha256 fits
        value = value[:69] + "..."
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"


def _yaml_kind(value: Any) -> str | None:
    """What YAML made of an unquoted scalar meant as a string."""
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, (int, float)):
        return "the number"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "the date"
    return None


def _explain(err: jsonschema.ValidationError) -> str:
    s, v = err.schema, err.instance
    if err.validator == "oneOf":
        types = [b.get("type") for b in s["oneOf"] if "type" in b]
        return f"{_show(v)} has the wrong type (allowed: {' or '.join(_types(t) for t in types)})"
    if v is None and err.validator in ("type", "enum", "const"):
        return f"has no value (allowed: {_explain_hint(err)})"
    if err.validator == "type":
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        kind = _yaml_kind(v)
        if "string" in types and kind:
            return (
                f"YAML read this unquoted value as {kind} {_show(v)} "
                f"(allowed: {_types(types)}; put the value in quotes)"
            )
        return f"{_show(v)} has the wrong type (allowed: {_types(types)})"
    if err.validator in ("enum", "const"):
        return f"{_show(v)} is not allowed (allowed: {_explain_hint(err)})"
    if err.validator == "pattern":
        faults = _pattern_faults(s["pattern"], v)
        why = f": {', '.join(faults)}" if faults else ""
        return f"{_show(v)} is not valid{why} (allowed: {_explain_hint(err)})"
    if err.validator == "minimum":
        return f"{_show(v)} is too small (allowed: at least {err.validator_value})"
    if err.validator == "maximum":
        return f"{_show(v)} is too large (allowed: at most {err.validator_value})"
    if err.validator == "minItems":
        return f"has {len(v)} item(s) (allowed: at least {err.validator_value})"
    if err.validator == "maxLength":
        return f"is {len(v)} characters long (allowed: at most {err.validator_value})"
    return err.message  # pragma: no cover - every keyword the schema uses is handled above


def _explain_hint(err: jsonschema.ValidationError) -> str:
    s = err.schema
    if err.validator == "enum":
        return ", ".join(map(str, s["enum"]))
    if err.validator == "const":
        return str(s["const"])
    if err.validator == "pattern":
        return PATTERN_MEANINGS.get(s["pattern"]) or f"must match {s['pattern']}"
    if err.validator == "type":
        return _types(s["type"])
    return err.message


def _pattern_faults(pattern: str, value: str) -> list[str]:
    """What exactly breaks a pattern, for the patterns where that can be said simply."""
    faults: list[str] = []
    if pattern in _DNS_PATTERNS:
        longest, letter_first = _DNS_PATTERNS[pattern]
        if not value:
            return ["is empty"]
        if longest and len(value) > longest:
            faults.append(f"is {len(value)} characters long")
        if any(c.isupper() for c in value):
            faults.append("has upper-case letters")
        others = sorted({c for c in value.lower() if c not in _LOWER_DIGITS_DASH})
        if others:
            faults.append("contains " + " ".join(json.dumps(c) for c in others))
        first = value[0].lower()
        if letter_first and first not in string.ascii_lowercase:
            faults.append("does not start with a letter")
        elif first == "-":
            faults.append("starts with '-'")
        if value.endswith("-"):
            faults.append("ends with '-'")
    elif pattern == "^[0-9a-f]{64}$":
        if len(value) != 64:
            faults.append(f"has {len(value)} characters")
        if any(c.isupper() for c in value):
            faults.append("has upper-case letters")
        if any(c not in string.hexdigits for c in value):
            faults.append("has characters other than 0-9 and a-f")
    elif pattern.startswith("^[A-Za-z0-9][A-Za-z0-9._-]*") and "==" not in value:
        faults.append("is not pinned with ==")
    elif pattern in ("^[^/\\\\].*\\.(py|R)$", "\\.json$"):
        if value.startswith(("/", "\\")):
            faults.append("is an absolute path")
        suffixes = (".py", ".R") if "py" in pattern else (".json",)
        if not value.endswith(suffixes):
            faults.append(f"does not end in {' or '.join(suffixes)}")
    return faults


_LOWER_DIGITS_DASH = set(string.ascii_lowercase + string.digits + "-")

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

# At most this many sample-row problems are listed; a broken sample would flood the output.
MAX_SAMPLE_PROBLEMS = 20


def _semantic_problems(
    doc: Any, base: Path, manifest_name: str, label: str, bad: set[FieldPath]
) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Rules JSON Schema cannot state, checked on every part the schema check found usable."""
    problems: list[Problem] = []
    plain = _plain(doc)

    def add(path: FieldPath, message: str) -> None:
        problems.append(Problem(label, _line(doc, path), _dotted(path), message))

    def get(*path: str | int) -> Any:
        """The value at ``path`` if it is there and passed the schema check, else _MISSING."""
        if any(b[: len(path)] == path or path[: len(b)] == b for b in bad):
            return _MISSING
        node = plain
        for key in path:
            if not isinstance(node, (dict, list)):
                return _MISSING
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return _MISSING
        return node

    if not isinstance(plain.get("spec"), dict):
        return problems, []

    inputs = plain["spec"].get("input")
    seen: dict[str, int] = {}
    for i, col in enumerate(inputs if isinstance(inputs, list) else []):
        p: FieldPath = ("spec", "input", i)
        name, kind, strict = get(*p, "name"), get(*p, "type"), get(*p, "strict")
        if isinstance(name, str):
            if name in seen:
                add(
                    (*p, "name"),
                    f"duplicate column {_show(name)} (first at spec.input[{seen[name]}]; "
                    "allowed: each column name once)",
                )
            seen.setdefault(name, i)
        has_categories = isinstance(col, dict) and "categories" in col
        if has_categories and kind not in (_MISSING, "string"):
            add(
                (*p, "categories"),
                f"categories on a {kind} column (allowed: only on string columns)",
            )
        if strict is True and isinstance(col, dict) and not has_categories:
            add((*p, "strict"), "strict without categories (allowed: only with a categories list)")

    task, kind = get("spec", "task"), get("spec", "output", "type")
    if task is not _MISSING and kind is not _MISSING:
        allowed = OUTPUTS_BY_TASK[task]
        if kind not in allowed:
            add(
                ("spec", "output", "type"),
                f"{_show(kind)} does not fit task {task} (allowed: {', '.join(allowed)})",
            )
    output = get("spec", "output")
    if task == "classification" and isinstance(output, dict) and "classes" not in output:
        add(
            ("spec", "output", "classes"),
            "required field is missing for classification (allowed: the model's classes_, in order)",
        )
    if task not in (_MISSING, "classification") and isinstance(output, dict) and "classes" in output:
        add(
            ("spec", "output", "classes"),
            f"classes on a {task} model (allowed: only for classification)",
        )

    scaling = get("spec", "serving", "autoscaling")
    serving_scaling = "spec.serving.autoscaling"
    defaults = [("the default", {"min": 2, "max": 10})]
    if isinstance(scaling, dict):
        _check_scaling(add, ("spec", "serving", "autoscaling"), [*defaults, ("", scaling)])
    envs = plain["spec"].get("environments")
    names: dict[str, int] = {}
    for i, env in enumerate(envs if isinstance(envs, list) else []):
        if get("spec", "environments", i) is _MISSING:
            continue
        name = env if isinstance(env, str) else env["name"]
        if name in names:
            add(
                ("spec", "environments", i),
                f"duplicate environment {_show(name)} (first at spec.environments[{names[name]}]; "
                "allowed: each name once)",
            )
        names.setdefault(name, i)
        own = env.get("autoscaling") if isinstance(env, dict) else None
        if own:
            inherited = scaling if isinstance(scaling, dict) else {}
            layers = [*defaults, (serving_scaling, inherited), ("", own)]
            _check_scaling(add, ("spec", "environments", i, "autoscaling"), layers)

    runtime = get("spec", "runtime")
    if runtime is not _MISSING:
        allowed = RUNTIME_VALUES[runtime]
        for key, path in (("framework", ("spec", "framework")), ("format", ("spec", "artifact", "format"))):
            value = get(*path)
            if value is not _MISSING and value not in allowed[key]:
                add(path, f"{_show(value)} is not a {runtime} {key} (allowed: {', '.join(allowed[key])})")
        if runtime == "python":
            for key in R_ONLY:
                if key in plain["spec"]:
                    add(("spec", key), f"{key} applies to R models only (allowed here: leave it out)")
        if get("spec", "artifact", "trusted") is not _MISSING and get("spec", "artifact", "format") != "skops":
            add(("spec", "artifact", "trusted"), "trusted applies to skops artifacts only (allowed: leave it out)")
        codes = plain["spec"].get("code")
        for i, rel in enumerate(codes if isinstance(codes, list) else []):
            if isinstance(rel, str) and get("spec", "code", i) is not _MISSING and not rel.endswith(allowed["code"]):
                add(("spec", "code", i), f"{_show(rel)} is not {runtime} code (allowed: {allowed['code']} files)")

    code = plain["spec"].get("code")
    modules: dict[str, int] = {}
    for i, rel in enumerate(code if isinstance(code, list) else []):
        if get("spec", "code", i) is _MISSING:
            continue
        resolved = _file_problem(add, ("spec", "code", i), base, rel, manifest_name)
        if resolved is None or runtime == "r":  # R files are sourced by path: no module names
            continue
        module = resolved.stem
        if not module.isidentifier() or keyword.iskeyword(module):
            add(
                ("spec", "code", i),
                f"{_show(resolved.name)} is not an importable module name (allowed: letters, "
                "digits and '_', not starting with a digit, plus .py)",
            )
        elif module in sys.stdlib_module_names or module == "app":
            add(
                ("spec", "code", i),
                f"{_show(resolved.name)} would hide the "
                + ("service's package app" if module == "app" else f"standard module {module}")
                + " (allowed: a module name of your own)",
            )
        elif module in modules:
            add(
                ("spec", "code", i),
                f"{_show(rel)} has the same module name as spec.code[{modules[module]}] (allowed: distinct file names)",
            )
        modules.setdefault(module, i)

    script = get("spec", "training", "script")
    if isinstance(script, str):
        expected = {"python": (".py",), "r": (".R", ".r")}.get(runtime, ())
        if expected and not script.endswith(expected):
            add(("spec", "training", "script"), f"{_show(script)} is not a {runtime} script (allowed: {expected[0]})")
        else:
            _file_problem(add, ("spec", "training", "script"), base, script, manifest_name)

    sample: list[dict[str, Any]] = []
    rel = get("spec", "sample")
    resolved = (
        None
        if rel is _MISSING
        else _file_problem(
            add,
            (
                "spec",
                "sample",
            ),
            base,
            rel,
            manifest_name,
        )
    )
    if resolved is not None:
        try:
            sample = json.loads(resolved.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            add(
                ("spec", "sample"),
                f"{rel} is not valid JSON: {_one_line(str(err))} (allowed: a JSON list of input records)",
            )
        except OSError as err:
            add(("spec", "sample"), f"cannot read {rel} ({err.strerror or err})")
        else:
            columns = get("spec", "input")
            if columns is not _MISSING and len(seen) == len(columns):  # usable, no duplicates
                found = list(sample_problems(sample, columns))
                for message in found[:MAX_SAMPLE_PROBLEMS]:
                    add(("spec", "sample"), f"{rel}: {message}")
                if len(found) > MAX_SAMPLE_PROBLEMS:
                    add(
                        ("spec", "sample"),
                        f"{rel}: {len(found) - MAX_SAMPLE_PROBLEMS} more problem(s) not listed",
                    )
    return problems, sample


def _check_scaling(add: Any, path: FieldPath, layers: list[tuple[str, dict[str, Any]]]) -> None:
    """min <= max once ``layers`` (lowest precedence first; "" is the mapping at ``path``) merge."""
    value: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, given in layers:
        for key in ("min", "max"):
            if key in given:
                value[key], origin[key] = given[key], source
    if value["min"] <= value["max"]:
        return
    where = next((k for k in ("min", "max") if origin[k] == ""), None)
    notes = [
        f"{key} is {origin[key]}" if origin[key] == "the default" else f"{key} from {origin[key]}"
        for key in ("min", "max")
        if origin[key]
    ]
    add(
        (*path, where) if where else path,
        f"min {value['min']} is larger than max {value['max']} ({'; '.join([*notes, 'allowed: min <= max'])})",
    )


def _file_problem(add: Any, path: FieldPath, base: Path, rel: str, manifest_name: str) -> Path | None:
    """``rel`` resolved inside ``base`` if it names a file there; else reports why not."""
    resolved = _inside(base, rel)
    if resolved is None:
        add(
            path,
            f"{_show(rel)} points outside the manifest's folder "
            f"(allowed: a relative path inside the folder of {manifest_name})",
        )
        return None
    try:
        exists, is_file = resolved.exists(), resolved.is_file()
    except OSError as err:
        add(path, f"cannot read {_show(rel)} ({err.strerror or err})")
        return None
    if not exists:
        add(
            path,
            f"file {_show(rel)} not found (paths are relative to the folder of {manifest_name})",
        )
    elif not is_file:
        add(path, f"{_show(rel)} is not a file (allowed: a file in the folder of {manifest_name})")
    return resolved if is_file else None


def _inside(base: Path, rel: str) -> Path | None:
    try:
        target = (base / rel).resolve()
    except (OSError, ValueError, RuntimeError):  # NUL byte, symlink loop
        return None
    return target if target.is_relative_to(base) else None


def sample_problems(sample: Any, columns: list[dict[str, Any]]) -> Iterator[str]:
    """Why ``sample`` (a list of records) does not fit the input columns; nothing if it does."""
    if not isinstance(sample, list) or not sample:
        got = "an empty list" if sample == [] else _show(sample)
        yield f"{got} is not a sample (allowed: a non-empty JSON list of records)"
        return
    names = [c["name"] for c in columns]
    for row, record in enumerate(sample):
        if not isinstance(record, dict):
            yield (f"row {row}: {_show(record)} is not a record (allowed: an object mapping column names to values)")
            continue
        for extra in sorted(set(record) - set(names)):
            yield (f"row {row}: column {_show(extra)} is not an input column (allowed: {', '.join(names)})")
        for col in columns:
            if col["name"] not in record:
                hint = _TYPE_NAMES[col["type"]] + (" or null" if col.get("nullable") else "")
                yield f"row {row}: column {_show(col['name'])} is missing (allowed: {hint})"
                continue
            wrong = value_problem(record[col["name"]], col)
            if wrong:
                yield f"row {row}: column {_show(col['name'])}: {wrong}"


def value_problem(value: Any, col: dict[str, Any]) -> str | None:
    """Why one JSON value does not fit a column, or None (the same rule the service applies)."""
    if value is None:
        return None if col.get("nullable") else "null is not allowed (column is not nullable)"
    kind = col["type"]
    finite_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "number":
        ok = finite_number
    elif kind == "integer":  # 3.0 is accepted as 3, as the service does
        ok = finite_number and (isinstance(value, int) or value.is_integer())
    elif kind == "boolean":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        return f"{_show(value)} is not {_TYPE_NAMES[kind]}"
    if kind == "string" and col.get("strict") and value not in col.get("categories", ()):
        return f"{_show(value)} is not a known category (allowed: {', '.join(col['categories'])})"
    return None
