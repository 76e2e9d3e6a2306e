"""The manifest's input columns and sample rows, inferred from the training data (a DataFrame).

pandas is imported inside the functions, not here: ``import modelgen`` and the CLI work without it.

>>> import pandas as pd
>>> frame = pd.DataFrame({"island": ["Dream", None, "Biscoe"], "year": [2007, 2008, 2009]})
>>> input_columns(frame, columns={"island": {"strict": True}, "year": {"nullable": False}})
... # doctest: +NORMALIZE_WHITESPACE
[{'name': 'island', 'type': 'string', 'nullable': True, 'categories': ['Biscoe', 'Dream'], 'strict': True},
 {'name': 'year', 'type': 'integer'}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelgen.errors import ModelgenError

if TYPE_CHECKING:
    import pandas as pd

Column = dict[str, Any]
Record = dict[str, Any]

# What pandas.api.types.infer_dtype says about an object column, as a JSON type.
_INFERRED = {
    "string": "string",
    "empty": "string",
    "boolean": "boolean",
    "integer": "integer",
    "floating": "number",
    "mixed-integer-float": "number",
    "decimal": "number",
}
_CAST = {"integer": int, "number": float, "string": str, "boolean": bool}


# What ``columns=`` may say of one column, beyond what the data shows.
OVERRIDES = ("nullable", "strict", "categories", "description")


def input_columns(
    frame: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    columns: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Column]:
    """The manifest's ``spec.input``: one entry per column of ``frame`` (the sample), in order.

    A column is nullable unless something says otherwise: ``columns[name]["nullable"]`` when
    given, else whether ``reference`` (the training rows) or the sample has gaps in it, else
    nullable. A sample without gaps says nothing about the traffic the pipeline's imputers
    were built for. String columns list their values as ``categories``;
    ``columns[name]["strict"]`` makes the service refuse any other value.
    """
    overrides = _overrides(frame, columns or {})
    if reference is not None:
        lacking = [n for n in frame.columns if n not in reference.columns]
        if lacking:
            raise ModelgenError(f"reference lacks the input column(s) {', '.join(map(repr, lacking))}")
    found = []
    for name in frame.columns:
        series = frame[name]
        given = overrides.get(name, {})
        column: Column = {"name": name, "type": json_type(series)}
        if "nullable" in given:
            nullable = bool(given["nullable"])
        elif reference is not None:
            nullable = bool(reference[name].isna().any() or series.isna().any())
        else:
            nullable = True
        if not nullable and series.isna().any():
            raise ModelgenError(f"column {name!r} cannot be required (nullable=False): the sample has gaps in it")
        if nullable:
            column["nullable"] = True
        values = sorted(set(series.dropna().tolist())) if column["type"] == "string" else []
        if "categories" in given:
            values = _categories(name, column["type"], given["categories"])
        if values:
            column["categories"] = values
        if given.get("strict"):
            if not values:
                raise ModelgenError(f"column {name!r} cannot be strict: it has no categories (string values)")
            column["strict"] = True
        if given.get("description"):
            column["description"] = str(given["description"])
        found.append(column)
    return found


def _overrides(frame: pd.DataFrame, columns: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``columns=`` checked: it names columns of the data, with only the keys it may say."""
    if not isinstance(columns, Mapping):
        raise ModelgenError("columns must map column names to settings, e.g. {'age': {'nullable': False}}")
    unknown = [str(n) for n in columns if n not in frame.columns]
    if unknown:
        raise ModelgenError(
            f"columns names no column of the data: {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(map(repr, map(str, frame.columns)))})"
        )
    checked = {}
    for name, given in columns.items():
        if not isinstance(given, Mapping):
            raise ModelgenError(f"columns[{name!r}] must be a mapping of {', '.join(OVERRIDES)}")
        extra = sorted(set(map(str, given)) - set(OVERRIDES))
        if extra:
            raise ModelgenError(
                f"columns[{name!r}]: unknown setting {', '.join(extra)} (allowed: {', '.join(OVERRIDES)})"
            )
        checked[name] = dict(given)
    return checked


def _categories(name: str, kind: str, given: Any) -> list[str]:
    if given is None:
        return []
    if kind != "string":
        raise ModelgenError(f"column {name!r} cannot have categories: it holds {kind} values, not strings")
    if isinstance(given, str) or not all(isinstance(v, str) for v in given):
        raise ModelgenError(f"columns[{name!r}]['categories'] must be a list of strings")
    return sorted(set(given))


def json_type(series: pd.Series) -> str:
    """The JSON type of a column's values: boolean, integer, number or string."""
    import pandas as pd

    kind = pd.api.types
    if kind.is_bool_dtype(series.dtype):
        return "boolean"
    if kind.is_integer_dtype(series.dtype):
        return "integer"
    if kind.is_float_dtype(series.dtype):
        return "number"
    # Object, str and categorical columns: look at the values (booleans with gaps are object).
    inferred = kind.infer_dtype(series, skipna=True)
    if inferred == "categorical":
        inferred = kind.infer_dtype(series.dropna().astype(object), skipna=True)
    if inferred not in _INFERRED:
        raise ModelgenError(
            f"column {series.name!r} holds {inferred} values ({series.dtype}); a model's input columns hold "
            "numbers, integers, strings or booleans: convert it before training"
        )
    return _INFERRED[inferred]


def sample_records(
    frame: pd.DataFrame,
    columns: Sequence[Column],
    size: int = 20,
    random_state: int = 0,
    *,
    gaps: int = 3,
    include: Sequence[Any] = (),
) -> list[Record]:
    """Raw rows for the generated smoke tests, as plain JSON values (None where data is missing).

    The first ``gaps`` rows with missing values are taken first, with the rows labelled ``include``
    (say, ones the model answers differently), then random rows up to ``size``; all in the frame's order.
    """
    import pandas as pd

    chosen = frame.index[frame.isna().any(axis=1)][:gaps]
    if len(include):
        chosen = chosen.union(pd.Index(include))
    rest = frame.drop(index=chosen)
    rest = rest.sample(max(0, min(size - len(chosen), len(rest))), random_state=random_state)
    rows = pd.concat([frame.loc[chosen], rest]).sort_index()
    return [
        {c["name"]: None if pd.isna(row[c["name"]]) else _CAST[c["type"]](row[c["name"]]) for c in columns}
        for row in rows.to_dict("records")
    ]


def service_frame(records: Sequence[Record], columns: Sequence[Column]) -> pd.DataFrame:
    """The DataFrame the generated service hands the model for these rows, dtype for dtype.

    Strings are object columns with NaN for null (what scikit-learn's imputers look for), numbers
    float64, integers int64 (float64 with gaps), booleans bool (object with NaN with gaps). Predict
    on this before handing a model over, so a mismatch fails in training, not in the service.
    """
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {}
    for c in columns:
        values = [record.get(c["name"]) for record in records]
        missing = [v is None or bool(pd.isna(v)) for v in values]
        values = [np.nan if gap else v for v, gap in zip(values, missing, strict=True)]
        if c["type"] == "string" or (c["type"] == "boolean" and any(missing)):
            data[c["name"]] = pd.Series(values, dtype=object)
        elif c["type"] == "number" or any(missing):
            data[c["name"]] = np.array(values, dtype=np.float64)
        else:
            data[c["name"]] = np.array(values, dtype=np.int64 if c["type"] == "integer" else bool)
    return pd.DataFrame(data, columns=[c["name"] for c in columns])
