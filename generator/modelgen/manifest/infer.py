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
_CAST = {"integer": int, "number": float, "string": str, "boolean": bool, "datetime": lambda v: v.isoformat()}
# The dtypes the service builds for a type anyway: the manifest records every other one.
_PLAIN_DTYPES = {"float64", "int64", "bool", "object", "str"}
# A string column with more distinct values than this is free text or an identifier, not categories.
MAX_CATEGORIES = 100
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}.*)?$"


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
    were built for. String columns list their values (the reference's, else the sample's) as
    ``categories``, unless they look like free text, identifiers or dates (more than
    ``MAX_CATEGORIES`` values, mostly distinct, or ISO dates); ``columns[name]["strict"]``
    makes the service refuse any other value. A pandas ``category`` column keeps its dtype's
    categories in their order, and any dtype the service would not build by itself (``Int64``,
    ``boolean``, ``string``, ``float32``, ``datetime64[ns, UTC]``...) is recorded as ``dtype``.
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
        dtype = str(series.dtype)
        if dtype not in _PLAIN_DTYPES or column["type"] == "datetime":
            column["dtype"] = dtype
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
        values = _found_categories(series if reference is None else reference[name], column["type"])
        if "categories" in given:
            if dtype == "category":
                raise ModelgenError(f"column {name!r} is a pandas category: its categories are the dtype's, in order")
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


def _found_categories(series: pd.Series, kind: str) -> list[str]:
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        return [str(c) for c in series.cat.categories]  # the codes a model was fitted on follow this order
    if kind != "string":
        return []
    present = series.dropna()
    distinct = sorted(set(present.tolist()))
    if len(distinct) > MAX_CATEGORIES or (len(distinct) > 20 and len(distinct) > len(present) / 2):
        return []
    if distinct and present.astype(str).str.match(_ISO_DATE).all():
        return []  # dates as text: every future one is new, which is no drift
    return distinct


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
    """The type of a column's values: boolean, integer, number, string or datetime."""
    import pandas as pd

    kind = pd.api.types
    if kind.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if isinstance(series.dtype, pd.CategoricalDtype):
        if not kind.is_string_dtype(series.cat.categories) and len(series.cat.categories):
            raise ModelgenError(
                f"column {series.name!r} is a category of {series.cat.categories.dtype} values; "
                "the service serves categories of strings: make them strings (astype(str)) before training"
            )
        return "string"
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
            "numbers, integers, strings, booleans or datetimes (datetime64): convert it before training"
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

    Built by the service's own request parsing (the template's ``app/payload.py``), so what a
    model is checked on here is what it gets in production: strings as object columns with NaN
    for null, numbers float64, integers int64 (float64 with gaps), booleans bool (object with
    gaps), and each recorded ``dtype`` rebuilt. Predict on this before handing a model over,
    so a mismatch fails in training, not in the service.
    """
    import json

    from modelgen.manifest.values import VALUES
    from modelgen.render.contract import column

    payload = _service_payload()
    schema = payload.InputSchema([column(c) for c in columns], VALUES)
    rows = [{c["name"]: _json_null(record.get(c["name"])) for c in columns} for record in records]
    try:
        return schema.from_json(json.dumps(rows).encode())
    except payload.BadRequest as err:
        raise ModelgenError(f"the service would refuse these rows: {err.message}") from None


def _json_null(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value  # NaN: a gap, as in a record


def _service_payload() -> Any:
    """The Python service's ``app/payload.py``, from the templates this modelgen renders."""
    import importlib.util
    import sys

    from modelgen.render.templates import templates_dir

    name = "_modelgen_service_payload"
    if name not in sys.modules:
        path = templates_dir() / "python-model" / "{{cookiecutter.name}}" / "app" / "payload.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # read once per process
        spec.loader.exec_module(module)
    return sys.modules[name]
