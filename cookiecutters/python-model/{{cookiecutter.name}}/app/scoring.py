"""One chunk of raw rows → checked, scored, and the rows refused with their reasons.

Shared by the batch job (``app.batch``) and the Spark job (``app.spark_job``): the service's
checks (``app.payload``), the service's prediction hooks (``app.predict``, as typed columns named
like its CSV header), and the model's name, version and sha256 on every output row so a table of
scores can be traced to the model that made it.

With ``skip``, a refused row is set aside and the rest of the chunk still scored: the check says
which row failed, and the remaining rows are checked again in halves, so a chunk with many bad
rows costs a few passes, not one per row. Rows the model itself refuses (422 in the service)
are found the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from app.payload import BadRequest, InputSchema, _no_duplicate_keys
from app.predict import Predictor
from app.rowfiles import Chunk, raw_row

TRACE_COLUMNS = ("model_name", "model_version", "model_sha256")
FAIL, SKIP = "fail", "skip"


@dataclass(frozen=True)
class Rejected:
    row: int  # file-wide, from 0
    column: str | None
    reason: str
    values: Any


@dataclass
class Scored:
    """A chunk's output rows (in input order) and its rejected rows; ``failure``: the one that stops a ``fail`` run."""

    table: pa.Table | None = None
    rejected: list[Rejected] = field(default_factory=list)
    failure: Rejected | None = None


def trace(contract: dict[str, Any], sha256: str) -> dict[str, str]:
    """The values of the trace columns: which model (and which bytes of it) scored a row."""
    return {"model_name": contract["name"], "model_version": contract["version"], "model_sha256": sha256}


class ChunkScorer:
    """Scores chunks with the service's schema and prediction hook; ``keep``: input columns copied to the output."""

    def __init__(
        self,
        schema: InputSchema,
        predictor: Predictor,
        traced: dict[str, str],
        keep: tuple[str, ...] = (),
        on_error=FAIL,
    ):
        self.schema, self.predictor, self.traced = schema, predictor, traced
        self.keep, self.on_error = tuple(keep), on_error
        self._keepset = frozenset(keep)

    def metadata(self, engine: str) -> dict[str, str]:
        """The Parquet footer's record of the model (its key: ``modelgen``)."""
        return {"modelgen": json.dumps({**self.traced, "engine": engine}, sort_keys=True)}

    def empty_schema(self) -> pa.Schema:
        names = [*self.keep, *self.predictor.header, *TRACE_COLUMNS]
        return pa.schema([(n, pa.string()) for n in names])

    def score(self, chunk: Chunk) -> Scored:
        scored = Scored()
        try:
            rows, check = self._prepare(chunk)
        except BadRequest as err:  # the header, or a document that is not rows: the whole input is wrong
            scored.failure = Rejected(chunk.start, err.column, err.message, None)
            return scored
        pieces: list[pa.Table] = []
        # A whole JSON document is scored as the service scores a request: all its rows, or none.
        on_error = FAIL if chunk.kind == "document" else self.on_error
        self._score_rows(chunk, np.arange(rows), check, pieces, scored, on_error)
        if scored.failure is None and pieces:
            scored.table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return scored

    # ---- the rows of one chunk, as the checks take them

    def _prepare(self, chunk: Chunk) -> tuple[int, Any]:
        """How many rows the chunk has, and a function checking a subset of them (row indices)."""
        schema, keep = self.schema, self._keepset
        if chunk.kind in ("cells", "values"):
            batch = chunk.data
            names = schema.check_header(batch.schema.names, keep)
            missing = [k for k in self.keep if k not in names]
            if missing:
                raise BadRequest(f"no column {missing[0]!r} to keep (--keep)", column=missing[0])
            batch = pa.RecordBatch.from_arrays(batch.columns, names=names)
            cells = chunk.kind == "cells"

            def check(rows: np.ndarray) -> tuple[Any, dict[str, Any]]:
                part = batch.take(pa.array(rows)) if len(rows) != batch.num_rows else batch
                values = {n: _values(part.column(n), cells) for n in schema.names}
                kept = {k: part.column(k) for k in self.keep}
                return schema.from_columns(values, cells=cells), kept

            return batch.num_rows, check
        if chunk.kind == "lines":
            lines = chunk.data

            def check(rows: np.ndarray) -> tuple[Any, dict[str, Any]]:
                return self._json_lines([lines[i] for i in rows])

            return len(lines), check
        table = schema.from_json(chunk.data)  # a whole JSON document: all its rows pass, or it fails
        return _row_count(table), lambda rows: (table, {})

    def _json_lines(self, lines: list[bytes]) -> tuple[Any, dict[str, Any]]:
        if not self.keep:
            # The lines as one JSON array: one parse. Trusted only when every line gave one row (a
            # line holding `{...},{...}` would shift every row after it, and the row named with it);
            # otherwise, or for a line that is not JSON, the lines are read one by one below.
            joined = b"[" + b",".join(lines) + b"]"
            try:
                table = self.schema.from_json(joined)
            except BadRequest as err:
                if err.row is not None and _values_in(joined) == len(lines):
                    raise
            else:
                if _row_count(table) == len(lines):
                    return table, {}
        records = []
        for i, line in enumerate(lines):  # one at a time: to name the line that is not JSON
            try:
                records.append(json.loads(line, object_pairs_hook=_no_duplicate_keys))
            except BadRequest as err:
                raise BadRequest(f"row {i}: {err.message}", column=err.column, row=i) from None
            except (ValueError, RecursionError) as err:
                reason = "nested too deeply" if isinstance(err, RecursionError) else err
                raise BadRequest(f"row {i}: not valid JSON: {reason}", row=i) from None
        inputs = frozenset(self.schema.names)
        kept = {
            k: _as_text([(r.get if k in inputs else r.pop)(k, None) if isinstance(r, dict) else None for r in records])
            for k in self.keep
        }
        return self.schema.from_json(json.dumps(records).encode("utf-8")), kept

    # ---- scoring, setting refused rows aside

    def _score_rows(
        self, chunk: Chunk, rows: np.ndarray, check: Any, pieces: list, scored: Scored, on_error: str
    ) -> None:
        if not len(rows) or scored.failure is not None:
            return
        try:
            table, kept = check(rows)
        except BadRequest as err:
            if err.row is None:  # not a row's fault (a missing column): nothing can be scored
                scored.failure = Rejected(chunk.start + int(rows[0]), err.column, err.message, None)
                return
            bad = int(rows[err.row])
            rejected = self._rejected(chunk, bad, err.column, _renumber(err.message, err.row, chunk.start + bad))
            if on_error == FAIL:
                scored.failure = rejected
                return
            scored.rejected.append(rejected)
            before, after = rows[: err.row], rows[err.row + 1 :]
            half = len(after) // 2
            for part in (before, after[:half], after[half:]):
                self._score_rows(chunk, part, check, pieces, scored, on_error)
            return
        try:
            columns = self.predictor.columns(table)
        except (ValueError, TypeError) as err:  # rows that passed the checks, refused by the pipeline (a 422)
            # Halved down to the row the pipeline refuses, in either mode, so the message names it
            # (a whole JSON document is one request: scored, or refused, as one).
            if len(rows) == 1 or chunk.kind == "document":
                first = chunk.start + int(rows[0])
                where = f"row {first}" if len(rows) == 1 else f"rows {first}-{chunk.start + int(rows[-1])}"
                message = f"{where}: the model could not score {'this row' if len(rows) == 1 else 'these rows'}: {err}"
                rejected = self._rejected(chunk, int(rows[0]), None, message)
                if on_error == FAIL:
                    scored.failure = rejected
                else:
                    scored.rejected.append(rejected)
                return
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                self._score_rows(chunk, part, check, pieces, scored, on_error)
            return
        pieces.append(self._output(kept, columns, len(rows)))

    def _output(self, kept: dict[str, Any], columns: dict[str, Any], n: int) -> pa.Table:
        arrays = {**kept, **{name: _arrow(values) for name, values in columns.items()}}
        for name, value in self.traced.items():
            arrays[name] = pa.array([value] * n, pa.string())
        return pa.table(arrays)

    def _rejected(self, chunk: Chunk, index: int, column: str | None, reason: str) -> Rejected:
        return Rejected(chunk.start + index, column, reason, raw_row(chunk, index))


def _as_text(values: list[Any]) -> pa.Array:
    """Kept JSON values as text, as a CSV's cells are: one column type for the whole file, whatever
    each chunk holds (a chunk of nulls, a number here and a string there, an object)."""
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def _values_in(array: bytes) -> int:
    """How many values a JSON array holds (-1: it is not one), without any check of them."""
    try:
        values = json.loads(array)
    except (ValueError, RecursionError):
        return -1
    return len(values) if isinstance(values, list) else -1


def _row_count(table: Any) -> int:
    return len(table) if not isinstance(table, dict) else len(next(iter(table.values())))


def _values(column: pa.Array, cells: bool) -> list[Any]:
    """A column as the checks take it: CSV cells as text; Parquet timestamps and dates as ISO 8601 text."""
    if not cells and (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
        return [None if v is None else v.isoformat() for v in column.to_pylist()]
    return column.to_pylist()


def _arrow(values: Any) -> pa.Array:
    array = np.asarray(values)
    if array.dtype == object:
        return pa.array(array.tolist())
    return pa.array(array)


def _renumber(message: str, row: int, file_row: int) -> str:
    """The check counts rows from 0 in what it was given; the file counts them from its first row."""
    if f"row {row}:" in message:
        return message.replace(f"row {row}:", f"row {file_row}:", 1)
    return f"row {file_row}: {message}"
