"""Whether rows fit the input columns: the rule ``validate`` applies to the sample, as the
generated services apply it to requests."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from modelgen.manifest.messages import TYPE_NAMES, show

# The accepted forms of a value beyond its JSON type, the same in both runtimes. Numbers must be
# finite everywhere (NaN and Infinity are refused); an integer column takes 3.0 as 3 (JSON and
# CSV "3.0") when ``integralFloats``; a CSV cell is null when it equals ``csv.null`` and a boolean
# when it is one of ``csv.true``/``csv.false`` (compared trimmed and lower-cased). A datetime is a
# string matching ``datetime`` whole (ISO 8601: a date, or a date and a time of at least minutes,
# ``T`` or a space between, an optional ``Z`` or ``+HH:MM`` offset; without one it is UTC).
VALUES: dict[str, Any] = {
    "integralFloats": True,
    "csv": {"null": "", "true": ["true", "1"], "false": ["false", "0"]},
    "datetime": (
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
        r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?"
    ),
}
_DATETIME = re.compile(VALUES["datetime"])


def sample_problems(sample: Any, columns: list[dict[str, Any]]) -> Iterator[str]:
    """Why ``sample`` (a list of records) does not fit the input columns; nothing if it does."""
    if not isinstance(sample, list) or not sample:
        got = "an empty list" if sample == [] else show(sample)
        yield f"{got} is not a sample (allowed: a non-empty JSON list of records)"
        return
    names = [c["name"] for c in columns]
    for row, record in enumerate(sample):
        if not isinstance(record, dict):
            yield (f"row {row}: {show(record)} is not a record (allowed: an object mapping column names to values)")
            continue
        for extra in sorted(set(record) - set(names)):
            yield (f"row {row}: column {show(extra)} is not an input column (allowed: {', '.join(names)})")
        for col in columns:
            if col["name"] not in record:
                hint = TYPE_NAMES[col["type"]] + (" or null" if col.get("nullable") else "")
                yield f"row {row}: column {show(col['name'])} is missing (allowed: {hint})"
                continue
            wrong = value_problem(record[col["name"]], col)
            if wrong:
                yield f"row {row}: column {show(col['name'])}: {wrong}"


def value_problem(value: Any, col: dict[str, Any]) -> str | None:
    """Why one JSON value does not fit a column, or None (the same rule the service applies)."""
    if value is None:
        return None if col.get("nullable") else "null is not allowed (column is not nullable)"
    kind = col["type"]
    finite_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "number":
        ok = finite_number
    elif kind == "integer":
        ok = finite_number and (isinstance(value, int) or (VALUES["integralFloats"] and value.is_integer()))
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "datetime":
        ok = isinstance(value, str) and _DATETIME.fullmatch(value) is not None
    else:
        ok = isinstance(value, str)
    if not ok:
        return f"{show(value)} is not {TYPE_NAMES[kind]}"
    if kind == "string" and col.get("strict") and value not in col.get("categories", ()):
        return f"{show(value)} is not a known category (allowed: {', '.join(col['categories'])})"
    return None
