"""Files of rows, read and written a chunk at a time: CSV, JSON lines, Parquet (and a whole JSON document).

Paths are local or any URL fsspec opens (``file://``, ``s3://`` with s3fs; ``https://`` to read).
Readers yield ``Chunk``s (the raw rows of one chunk and the file-wide number of its first row);
nothing converts a value here: ``app.scoring`` checks them as the service checks a request.
CSV is read by pyarrow with every column as text, so the service's own cell rules decide what
``2007.0`` or ``late`` mean; Parquet values arrive typed, as JSON values would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CSV, JSON_LINES, PARQUET, JSON_DOCUMENT = "csv", "jsonl", "parquet", "json"
SUFFIXES = {".csv": CSV, ".jsonl": JSON_LINES, ".ndjson": JSON_LINES, ".parquet": PARQUET, ".pq": PARQUET}
CSV_BLOCK_BYTES = 1 << 20  # what pyarrow parses at once (its memory grows with it); chunks are cut from these


class RowFileError(Exception):
    """The file cannot be read as rows (its format, a malformed CSV line); names the row when it can."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of the input. ``kind``: "cells" (a RecordBatch of CSV text), "values" (a
    RecordBatch of Parquet values), "lines" (JSON texts, one row each) or "document" (one JSON
    body as /invocations takes it)."""

    start: int
    kind: str
    data: Any


def format_of(path: str, given: str | None = None) -> str:
    if given:
        return given
    name = path.split("?", 1)[0].lower()
    suffix = os.path.splitext(name[:-3] if name.endswith(".gz") else name)[1]
    if suffix == ".json":
        return JSON_DOCUMENT
    if suffix not in SUFFIXES:
        allowed = ", ".join([*SUFFIXES, ".json"])
        raise RowFileError(
            f"{path}: cannot tell the format from the name (allowed suffixes: {allowed}; "
            "or --input-format/--output-format)"
        )
    return SUFFIXES[suffix]


def read_chunks(path: str, fmt: str, rows: int) -> Iterator[Chunk]:
    """The rows of ``path`` in chunks of at most ``rows``."""
    if fmt == CSV:
        yield from _csv_chunks(path, rows)
    elif fmt == PARQUET:
        yield from _parquet_chunks(path, rows)
    elif fmt == JSON_LINES:
        yield from _json_line_chunks(path, rows)
    else:
        with fsspec.open(path, "rb", compression="infer") as source:
            yield Chunk(0, "document", source.read())


def row_count(path: str, fmt: str) -> int | None:
    """The number of rows when the file says it without being read (Parquet), else None."""
    if fmt != PARQUET:
        return None
    with fsspec.open(path, "rb") as source:
        return pq.ParquetFile(source).metadata.num_rows


def _csv_chunks(path: str, rows: int) -> Iterator[Chunk]:
    with fsspec.open(path, "rb", compression="infer") as source:
        header = _csv_header(source)
        source.seek(0)
        start = 0
        bad: list[Any] = []

        def broken(row: Any) -> str:
            # A line of another width breaks the file, not one row: it stops the run in either mode.
            bad.append(row)
            return "error"

        try:
            # Every column as text: the service's rules read the cells, not pyarrow's type inference.
            # One reader thread: pyarrow numbers the lines it hands the handler only then. Opening
            # reads the first block already, so a broken line there is found here too.
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=broken),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(header, pa.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                for offset in range(0, batch.num_rows, rows):
                    part = batch.slice(offset, rows)
                    yield Chunk(start, "cells", part)
                    start += part.num_rows
        except pa.ArrowInvalid as err:
            if bad:  # a line with the wrong number of fields; pyarrow counts lines from 1, the header included
                line = bad[0]
                where = f"row {line.number - 2}: " if line.number is not None else ""
                raise RowFileError(
                    f"{where}has {line.actual_columns} fields, the header has {line.expected_columns}"
                ) from None
            raise RowFileError(f"not valid CSV: {err}") from None


def _csv_header(source: Any) -> list[str]:
    import csv
    import io

    try:
        first = source.readline().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RowFileError(f"the header row is not UTF-8: {err}") from None
    names = next(csv.reader(io.StringIO(first)), [])
    if not names:
        raise RowFileError("empty file: a CSV needs a header row")
    return names


def _parquet_chunks(path: str, rows: int) -> Iterator[Chunk]:
    with fsspec.open(path, "rb") as source:
        try:
            parquet = pq.ParquetFile(source)
        except pa.ArrowInvalid as err:
            raise RowFileError(f"not a Parquet file: {err}") from None
        start = 0
        for batch in parquet.iter_batches(batch_size=rows):
            yield Chunk(start, "values", batch)
            start += batch.num_rows


def _json_line_chunks(path: str, rows: int) -> Iterator[Chunk]:
    with fsspec.open(path, "rb", compression="infer") as source:
        start, lines = 0, []
        for line in source:
            if not line.strip():
                continue  # a blank line (the one after the last row, most often) is no row
            lines.append(line)
            if len(lines) == rows:
                yield Chunk(start, "lines", lines)
                start, lines = start + len(lines), []
        if lines:
            yield Chunk(start, "lines", lines)


def raw_row(chunk: Chunk, index: int) -> Any:
    """Row ``index`` of ``chunk`` as it came, for the file of rejected rows."""
    if chunk.kind in ("cells", "values"):
        return chunk.data.slice(index, 1).to_pylist()[0]
    text = chunk.data[index].decode("utf-8", errors="replace").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---- writers


class RowWriter:
    """Appends tables to one output file in ``fmt``; Parquet carries ``metadata`` in its footer."""

    def __init__(self, path: str, fmt: str, metadata: dict[str, str]):
        self.path, self.fmt, self.metadata = path, fmt, metadata
        self._file = fsspec.open(path, "wb").open()
        self._writer: Any = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.fmt == PARQUET:
            if self._writer is None:
                schema = table.schema.with_metadata(self.metadata)
                self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")
            self._writer.write_table(table.replace_schema_metadata(self.metadata))
        elif self.fmt == CSV:
            if self._writer is None:
                self._writer = pacsv.CSVWriter(self._file, table.schema)
            self._writer.write_table(table)
        else:
            self._file.write(
                "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in table.to_pylist()).encode()
            )
        self.rows += table.num_rows

    def close(self, empty_schema: pa.Schema) -> None:
        if self._writer is None and self.fmt != JSON_LINES:
            self.write(empty_schema.empty_table())  # no row scored: still a file with its columns
        if self._writer is not None:
            self._writer.close()
        self._file.close()

    def abandon(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            _discard(self._file)


class RejectedWriter:
    """Rejected rows as JSON lines: ``{"row", "column", "reason", "values"}``."""

    def __init__(self, path: str):
        self.path = path
        self._file = fsspec.open(path, "wb").open()
        self.rows = 0

    def write(self, row: int, column: str | None, reason: str, values: Any) -> None:
        record = {"row": row, "column": column, "reason": reason, "values": values}
        self._file.write((json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8"))
        self.rows += 1

    def close(self) -> None:
        self._file.close()

    def abandon(self) -> None:
        _discard(self._file)


def _discard(file: Any) -> None:
    """Close without publishing: an object store's buffered file drops its upload (s3fs aborts the
    multipart upload, so an earlier object at that URL stays as it was); a local file is closed
    (its partial name is removed by the caller)."""
    discard = getattr(file, "discard", None)
    if discard is not None:
        discard()
    else:
        file.close()
