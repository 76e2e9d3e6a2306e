"""The manifest's JSON Schema (``schema/model-v1.json``) and its check, worded for people.

jsonschema finds the violations; this module turns each into one ``Problem`` with the line,
the dotted field path and what is allowed, and remembers which values are unusable so the
rules after it skip them instead of piling up follow-on errors.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from modelgen.errors import Problem
from modelgen.manifest.document import FieldPath, dotted, line_of
from modelgen.manifest.messages import explain, explain_hint, field_hint, show


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``modelgen/v1`` manifests (the reference for every field)."""
    text = resources.files("modelgen.manifest").joinpath("schema/model-v1.json").read_text("utf-8")
    return json.loads(text)


def _validator() -> jsonschema.protocols.Validator:
    base = jsonschema.Draft202012Validator
    # JSON Schema counts 2.0 as an integer; Kubernetes does not, so neither do we.
    checker = base.TYPE_CHECKER.redefine("integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(base, {"pattern": _pattern}, type_checker=checker)(schema())


def _pattern(validator: Any, pattern: str, instance: Any, _schema: dict[str, Any]) -> Iterator[Any]:
    """``pattern`` with JSON Schema's (ECMA-262) meaning of a final ``$``: the very end of the
    string. Python's ``$`` also matches before a final newline, so ``name: |`` would pass and
    become a folder named ``penguin-species\n``."""
    if validator.is_type(instance, "string") and not _end_anchored(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _end_anchored(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\Z"
    return re.compile(pattern)


def schema_problems(doc: Any, values: Any, label: str) -> tuple[list[Problem], set[FieldPath]]:
    """Every schema violation of ``values`` (``doc`` as plain data; ``doc`` gives the lines), and the
    paths of the values they make unusable."""
    problems: list[Problem] = []
    bad: set[FieldPath] = set()

    def add(path: FieldPath, message: str, *, at: FieldPath | None = None, usable: bool = False) -> None:
        problems.append(Problem(label, line_of(doc, path if at is None else at), dotted(path), message))
        if not usable:
            bad.add(path)

    for err in _leaf_errors(_validator().iter_errors(values)):
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
                    hint = field_hint(err.schema.get("properties", {}).get(key, {}))
                    add((*path, key), f"required field is missing ({hint})", at=path)
        elif err.validator == "uniqueItems":
            for index, first in _duplicates(err.instance):
                add(
                    (*path, index),
                    f"{show(err.instance[index])} is a duplicate of {dotted((*path, first))} (allowed: each item once)",
                )
        elif err.relative_schema_path and "propertyNames" in err.relative_schema_path:
            add(
                (*path, err.instance),
                f"{show(err.instance)} is not a valid key (allowed: {explain_hint(err)})",
            )
        else:
            add(path, explain(err))
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


def default(*path: str) -> Any:
    """The schema's default of the field at ``path``, e.g. ``default("spec", "environments")``.

    >>> default("spec", "serving", "server")
    'gunicorn'
    """
    node = schema()
    for key in path:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])
