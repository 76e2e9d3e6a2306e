"""Request bodies → a checked pandas DataFrame, or a ``BadRequest`` naming the column and row.

Accepts MLflow's scoring-server payloads (``dataframe_split``, ``dataframe_records``,
``instances``/``inputs``), a bare list of records, one record, and CSV with a header row.
Values are checked in plain Python before pandas sees them, so a bad cell is reported as
"column X, row N" instead of surfacing later as an obscure error from inside the pipeline.
What is checked is the contract's data (``columns``, and ``values``: the accepted forms of
integers, booleans and nulls); this module only applies it.

Datetimes travel as ISO 8601 strings (``2024-05-31``, ``2024-05-31T12:30:00Z``, an offset such
as ``+02:00``, a space for the ``T``); one without an offset is UTC. A column whose contract
records the training ``dtype`` is rebuilt as that dtype (``Int64``, ``boolean``, ``string``,
``category`` with the training categories in their order, ``datetime64[ns, Europe/Paris]``...),
so the model gets what it was fitted on; otherwise the plain numpy/object columns below.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from typing import Any

import numpy as np
import pandas as pd

WRAPPERS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# What an int64 column can hold, and the largest finite float: a value beyond is the client's
# error (400), not an OverflowError (500) inside numpy.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_MAX = sys.float_info.max
# The dtypes the plain columns already are (or, for str, that no pipeline tells from object).
PLAIN_DTYPES = frozenset({"float64", "int64", "bool", "object", "str"})
# From this many rows a CSV number column is parsed whole (pyarrow) before cell by cell.
WHOLE_COLUMN_ROWS = 256
PLAIN_DECIMAL = {"integer": r"^[+-]?[0-9]+$", "number": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"}


class BadRequest(Exception):
    """Input the service refuses; becomes ``{"error": {...}}`` with ``status``."""

    def __init__(self, message: str, *, status: int = 400, column: str | None = None, row: int | None = None):
        super().__init__(message)
        self.message, self.status, self.column, self.row = message, status, column, row

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "column": self.column, "row": self.row}}


class Column:
    """One declared input column of the contract, and its values checked against it."""

    __slots__ = (
        "name", "type", "nullable", "categories", "strict", "integral_floats", "csv_null", "csv_bools", "dtype",
        "rebuild", "iso", "_order", "_tz", "_unit",
    )  # fmt: skip

    def __init__(self, spec: dict[str, Any], values: dict[str, Any]):
        self.name: str = spec["name"]
        self.type: str = spec["type"]
        self.nullable: bool = spec["nullable"]
        self.categories = frozenset(spec["categories"]) if spec["categories"] else None
        self.strict: bool = spec["strict"]
        self.integral_floats: bool = values["integralFloats"]
        self.csv_null: str = values["csv"]["null"]
        self.csv_bools = {**dict.fromkeys(values["csv"]["true"], True), **dict.fromkeys(values["csv"]["false"], False)}
        self.iso = re.compile(values["datetime"])  # what a datetime looks like: ISO 8601, said by the contract
        self.dtype: str | None = spec.get("dtype")
        self._order = list(spec["categories"] or ())  # a category dtype's codes follow the training order
        self.rebuild = self._rebuilder()

    def _rebuilder(self) -> Any:
        """The training dtype from the checked values (None: they already have it); fails at start-up on a bad one."""
        dtype = self.dtype
        if self.type == "datetime":
            target = pd.api.types.pandas_dtype(dtype or "datetime64[ns]")
            if not isinstance(target, pd.DatetimeTZDtype) and target.kind != "M":
                raise ValueError(f"column {self.name!r}: dtype {dtype} is not a datetime64 dtype")
            self._tz = getattr(target, "tz", None)
            self._unit = target.unit if self._tz is not None else np.datetime_data(target)[0]
            return None  # _json_datetime builds it, so a value out of the unit's range names its row
        if not dtype or dtype in PLAIN_DTYPES:
            return None
        if dtype == "category":
            order = self._order
            return lambda values: pd.Categorical(values, categories=order)
        target = pd.api.types.pandas_dtype(dtype)
        if isinstance(target, np.dtype) and target.kind in "iub":
            # numpy has no missing integer or boolean: with a gap, the float64/object column stays.
            return lambda values: values if values.dtype.kind in "fO" else values.astype(target)
        return lambda values: pd.array(values, dtype=object if values.dtype == object else None).astype(target)

    def bad(self, row: int, message: str) -> BadRequest:
        return BadRequest(f"column {self.name!r}, row {row}: {message}", column=self.name, row=row)

    def null(self, row: int) -> None:
        if not self.nullable:
            raise self.bad(row, "null is not allowed (column is not nullable)")

    # ---- JSON values

    def from_json(self, values: list[Any]) -> np.ndarray:
        check = getattr(self, f"_json_{self.type}")
        return check(values)

    def _json_number(self, values: list[Any]) -> np.ndarray:
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                if not math.isfinite(v):
                    raise self.bad(i, f"{v} is not a finite number")
            elif t is int:
                if not -FLOAT_MAX <= v <= FLOAT_MAX:
                    raise self.bad(i, f"{_show(v)} is too large for a number (a 64-bit float)")
            elif v is None:
                self.null(i)
            else:
                raise self.bad(i, f"{_show(v)} is not a number")
        return np.array(values, dtype=np.float64)  # None becomes NaN, which the pipeline imputes

    def _json_integer(self, values: list[Any]) -> np.ndarray:
        has_null = False
        for i, v in enumerate(values):
            t = type(v)
            if t is int:
                if not INT64_MIN <= v <= INT64_MAX:
                    raise self.bad(i, f"{_show(v)} is out of range for an integer (64 bits)")
                continue
            if t is float and self.integral_floats and v.is_integer():
                if not INT64_MIN <= v <= INT64_MAX:
                    raise self.bad(i, f"{_show(v)} is out of range for an integer (64 bits)")
                values[i] = int(v)
            elif v is None:
                self.null(i)
                has_null = True
            else:
                raise self.bad(i, f"{_show(v)} is not an integer")
        # int64 like the training frame; a column with missing values can only be float.
        return np.array(values, dtype=np.float64 if has_null else np.int64)

    def _json_string(self, values: list[Any]) -> np.ndarray:
        strict, known = self.strict, self.categories
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            if type(v) is str:
                if not v.isascii() and _lone_surrogate(v):
                    raise self.bad(i, f"{_show(v)} is not valid Unicode (a lone surrogate)")
                if strict and v not in known:
                    raise self.bad(i, f"{v!r} is not a known category (allowed: {', '.join(sorted(known))})")
                out[i] = v
            elif v is None:
                self.null(i)
                out[i] = np.nan  # scikit-learn's imputers look for NaN, not None
            else:
                raise self.bad(i, f"{_show(v)} is not a string")
        return out

    def _json_boolean(self, values: list[Any]) -> np.ndarray:
        has_null = False
        for i, v in enumerate(values):
            if type(v) is bool:
                continue
            if v is None:
                self.null(i)
                has_null = True
            else:
                raise self.bad(i, f"{_show(v)} is not true or false")
        if has_null:
            return np.array([np.nan if v is None else v for v in values], dtype=object)
        return np.array(values, dtype=bool)

    def _json_datetime(self, values: list[Any]) -> Any:
        for i, v in enumerate(values):
            if type(v) is str:
                if not self.iso.fullmatch(v):
                    raise self.bad(i, f"{_show(v)} is not an ISO 8601 date or date-time (e.g. 2024-05-31T12:30:00Z)")
            elif v is None:
                self.null(i)
            else:
                raise self.bad(i, f"{_show(v)} is not a date-time (an ISO 8601 string)")
        try:
            return self._datetimes(values)
        except ValueError:  # a month 13, a date beyond the unit's range: find the row it is in
            for i, v in enumerate(values):
                try:
                    self._datetimes([v])
                except pd.errors.OutOfBoundsDatetime:
                    raise self.bad(i, f"{_show(v)} is out of the range of a datetime64[{self._unit}]") from None
                except ValueError:
                    raise self.bad(i, f"{_show(v)} is not a valid date or date-time") from None
            raise

    def _datetimes(self, values: list[Any]) -> Any:
        # Offsets are honoured and a value without one is UTC; then the training zone, or none.
        instants = pd.to_datetime(values, utc=True, format="ISO8601").as_unit(self._unit)
        return instants.tz_convert(self._tz) if self._tz is not None else instants.tz_localize(None)

    # ---- CSV cells (strings; the contract's csv.null is null)

    def from_csv(self, cells: list[str]) -> np.ndarray:
        null = self.csv_null
        if len(cells) >= WHOLE_COLUMN_ROWS and self.type in ("number", "integer", "string"):
            checked = self._csv_whole_column(cells)
            if checked is not None:
                return checked
        if self.type in ("string", "datetime"):
            return self.from_json([c if c != null else None for c in cells])
        convert = getattr(self, f"_csv_{self.type}")
        values: list[Any] = []
        for i, cell in enumerate(cells):
            if cell == null:
                values.append(None)
                continue
            try:
                values.append(convert(cell))
            except ValueError:
                raise self.bad(i, f"{cell!r} is not a{'n' if self.type == 'integer' else ''} {self.type}") from None
        return self.from_json(values)

    def _csv_whole_column(self, cells: list[str]) -> np.ndarray | None:
        """The column checked at once by pyarrow (large CSV bodies, batch chunks), or None to check it cell by cell.

        Strings are checked against strict categories; numbers are parsed only when every cell
        is plain decimal (a pattern says so first: pyarrow alone would take "0x10"), to the same
        doubles and integers as the rules (both round correctly). Anything else — a padded cell,
        "2007.0" in an integer column, a non-finite number, an unknown category, a null where
        none is allowed — leaves the column to the cell-by-cell rules, which decide with their
        message. So the answers are the same either way.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            text = pa.array(cells, pa.string())
        except (pa.ArrowInvalid, UnicodeEncodeError):  # a lone surrogate: the rules name it
            return None
        nulls = pc.equal(text, self.csv_null)
        has_null = pc.any(nulls).as_py()
        if has_null and not self.nullable:
            return None
        given = pc.if_else(nulls, None, text)
        if self.type == "string":
            if self.strict and not pc.all(pc.is_in(given, pa.array(sorted(self.categories), pa.string()))).as_py():
                return None
            out = np.array(cells, dtype=object)
            out[nulls.to_numpy(zero_copy_only=False)] = np.nan  # scikit-learn's imputers look for NaN, not None
            return out
        if not pc.all(pc.match_substring_regex(given, PLAIN_DECIMAL[self.type])).as_py():
            return None
        try:
            values = pc.cast(given, pa.int64() if self.type == "integer" else pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if self.type == "integer":  # as from_json builds it: int64, or float64 when there is a gap
            return values.to_numpy(zero_copy_only=False).astype(np.float64 if has_null else np.int64, copy=False)
        numbers = values.to_numpy(zero_copy_only=False)  # a null becomes NaN, which the pipeline imputes
        if not pc.all(pc.is_finite(values)).as_py():  # inf, nan, a number too large for a double
            return None
        return numbers

    def _csv_boolean(self, cell: str) -> bool:
        try:
            return self.csv_bools[cell.strip().lower()]
        except KeyError:
            raise ValueError(cell) from None

    # float() and int() also take "1_000", surrounding Unicode digits ("١٢") and the like, which
    # no other CSV reader (R's among them) does: a cell is an ASCII number or it is refused.

    def _csv_number(self, cell: str) -> float:
        if "_" in cell or not cell.isascii():
            raise ValueError(cell)
        value = float(cell)
        if not math.isfinite(value):
            raise ValueError(cell)
        return value

    def _csv_integer(self, cell: str) -> int | float:
        if "_" in cell or not cell.isascii():
            raise ValueError(cell)
        try:
            return int(cell)
        except ValueError:
            value = float(cell)  # with integralFloats, "2007.0" is fine; "2007.5" never is
            if self.integral_floats and value.is_integer():
                return int(value)
            raise


def _show(value: Any) -> str:
    if type(value) is int and not -(10**40) < value < 10**40:
        return f"a {len(str(abs(value)))}-digit integer"
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError):
        return "a deeply nested value"
    return text if len(text) <= 40 else text[:37] + "..."


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: a key given twice is refused (a dict would keep the last silently)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise BadRequest(f"key {key!r} appears more than once in an object", column=key)
    return record


# What a payload becomes: a DataFrame with the training dtypes, or (``frames=False``, for the ONNX
# engine) the checked columns as numpy arrays by name, before any DataFrame is built.
Table = pd.DataFrame | dict[str, np.ndarray]


class InputSchema:
    """The declared input columns; turns any accepted payload into a DataFrame (or arrays by column)."""

    def __init__(self, columns: list[dict[str, Any]], values: dict[str, Any], *, frames: bool = True):
        self.frames = frames
        self.columns = [Column(c, values) for c in columns]
        self._rebuilt = [(c.name, c.rebuild) for c in self.columns if c.rebuild is not None]
        self.names = [c.name for c in self.columns]
        self._nameset = frozenset(self.names)

    # ---- JSON

    def from_json(self, body: bytes) -> Table:
        if not body.strip():
            raise BadRequest("empty body: send rows as JSON (see /openapi.json)")
        try:
            doc = json.loads(body, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(f"body is not valid JSON: {err}") from None
        except RecursionError:
            raise BadRequest("body is not valid JSON: nested too deeply") from None
        if isinstance(doc, list):
            return self._records(doc, "body")
        if not isinstance(doc, dict):
            raise BadRequest("JSON body must be an object or a list of records")
        wrappers = [k for k in WRAPPERS if k in doc]
        if not wrappers:
            return self._records([doc], "body")  # one record
        if len(doc) > 1:
            extra = sorted(k for k in doc if k != wrappers[0])
            raise BadRequest(f"unexpected field(s) next to {wrappers[0]!r}: {', '.join(extra)}")
        key = wrappers[0]
        if key == "dataframe_split":
            return self._split(doc[key])
        return self._records(doc[key], key)

    def _records(self, records: Any, where: str) -> Table:
        if not isinstance(records, list) or not records:
            raise BadRequest(f"{where} must be a non-empty list of rows")
        if isinstance(records[0], list):  # "instances": [[...], ...] in input column order
            return self._rows(records, self.names)
        names, nameset, width = self.names, self._nameset, len(self.names)
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                raise BadRequest(f"row {i}: expected an object of column: value", row=i)
            if len(rec) != width or not nameset.issuperset(rec):
                self._explain_columns(set(rec), i)
        return self._frame({n: [rec[n] for rec in records] for n in names}, self.columns)

    def _split(self, split: Any) -> Table:
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise BadRequest("dataframe_split must be an object with 'columns' and 'data'")
        extra = sorted(set(split) - {"columns", "data", "index"})
        if extra:
            raise BadRequest(f"unexpected field(s) in dataframe_split: {', '.join(extra)}")
        columns = split.get("columns", self.names)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise BadRequest("dataframe_split.columns must be a list of column names")
        self._check_header(columns)
        if not split["data"]:
            raise BadRequest("dataframe_split.data must be a non-empty list of rows")
        return self._rows(split["data"], columns)

    def _rows(self, rows: list[Any], columns: list[str]) -> Table:
        self._check_header(columns)
        width = len(columns)
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != width:
                got = f"{len(row)} values" if isinstance(row, list) else "not a list"
                raise BadRequest(
                    f"row {i}: expected a list of {width} values ({', '.join(map(repr, columns))}), got {got}", row=i
                )
        position = {name: j for j, name in enumerate(columns)}
        return self._frame({n: [row[position[n]] for row in rows] for n in self.names}, self.columns)

    # ---- CSV

    def from_csv(self, body: bytes) -> Table:
        if not body.strip():
            raise BadRequest("empty body: send a header row and at least one data row")
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise BadRequest(f"CSV body is not UTF-8: {err}") from None
        try:
            table = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error as err:
            raise BadRequest(f"body is not valid CSV: {err}") from None
        table = [r for r in table if r]  # a trailing newline gives an empty row
        header, rows = table[0], table[1:]
        # A name may have spaces of its own: a cell is matched exactly first, else without its padding.
        header = [h if h in self._nameset else h.strip() for h in header]
        self._check_header(header)
        if not rows:
            raise BadRequest("CSV body has a header but no data rows")
        width = len(header)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise BadRequest(f"row {i}: has {len(row)} fields, the header has {width}", row=i)
        position = {name: j for j, name in enumerate(header)}
        return self._dataframe({c.name: c.from_csv([row[position[c.name]] for row in rows]) for c in self.columns})

    # ---- columns already split (the batch job's readers: CSV cells as text, Parquet values as JSON's)

    def from_columns(self, values: dict[str, list[Any]], *, cells: bool) -> Table:
        """Rows given column by column: CSV ``cells`` (strings, the contract's null token) or
        JSON-typed values; each column is checked as a request's would be."""
        return self._dataframe({c.name: (c.from_csv if cells else c.from_json)(values[c.name]) for c in self.columns})

    def check_header(self, header: list[str], extra: frozenset[str] = frozenset()) -> list[str]:
        """The header with padded names matched as from_csv matches them; ``extra`` columns may be there too."""
        header = [h if h in self._nameset or h in extra else h.strip() for h in header]
        self._check_header([h for h in header if h not in extra or h in self._nameset])
        return header

    # ---- shared

    def _frame(self, values: dict[str, list[Any]], columns: list[Column]) -> Table:
        return self._dataframe({c.name: c.from_json(values[c.name]) for c in columns})

    def _dataframe(self, arrays: dict[str, np.ndarray]) -> Table:
        if not self.frames:
            return arrays
        # Object columns stay object: pandas 3 would infer its "str" dtype, which the pipeline
        # was not necessarily trained on.
        data = {n: pd.Series(a, dtype=object, copy=False) if a.dtype == object else a for n, a in arrays.items()}
        for name, rebuild in self._rebuilt:
            data[name] = rebuild(arrays[name])
        return pd.DataFrame(data, columns=self.names)

    def _check_header(self, header: list[str]) -> None:
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise BadRequest(f"column {dup!r} appears more than once", column=dup)
        if set(header) != self._nameset:
            self._explain_columns(set(header), None)

    def _explain_columns(self, given: set[str], row: int | None) -> None:
        at = f"row {row}: " if row is not None else ""
        missing = [n for n in self.names if n not in given]
        extra = sorted(given - self._nameset)
        if extra:  # most often a typo of the missing one, so name both
            also = f"; missing {', '.join(map(repr, missing))}" if missing else ""
            expected = ", ".join(map(repr, self.names))
            raise BadRequest(f"{at}unknown column {extra[0]!r}{also} (expected: {expected})", column=extra[0], row=row)
        raise BadRequest(f"{at}missing column {missing[0]!r}", column=missing[0], row=row)
