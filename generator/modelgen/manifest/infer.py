"""The manifest's input columns and sample rows, inferred from the training data (a DataFrame).

pandas is imported inside the functions, not here: ``import modelgen`` and the CLI work without it.

>>> import pandas as pd
>>> frame = pd.DataFrame({"island": ["Dream", None, "Biscoe"], "year": [2007, 2008, 2009]})
>>> input_columns(frame, strict=["island"])  # doctest: +NORMALIZE_WHITESPACE
[{'name': 'island', 'type': 'string', 'nullable': True, 'categories': ['Biscoe', 'Dream'], 'strict': True},
 {'name': 'year', 'type': 'integer'}]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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


def input_columns(frame: pd.DataFrame, *, strict: Collection[str] = ()) -> list[Column]:
    """The manifest's ``spec.input``: one entry per column, in order, nullable exactly where the data has gaps.

    String columns list their values as ``categories``; the columns named in ``strict`` make the
    service refuse any other value.
    """
    unknown = sorted(set(strict) - set(frame.columns))
    if unknown:
        raise ModelgenError(f"strict names no column of the data: {', '.join(unknown)}")
    columns = []
    for name in frame.columns:
        series = frame[name]
        column: Column = {"name": name, "type": json_type(series)}
        if series.isna().any():
            column["nullable"] = True
        values = sorted(set(series.dropna().tolist())) if column["type"] == "string" else []
        if values:
            column["categories"] = values
        if name in strict:
            if not values:
                raise ModelgenError(f"column {name!r} cannot be strict: it has no categories (string values)")
            column["strict"] = True
        columns.append(column)
    return columns


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
