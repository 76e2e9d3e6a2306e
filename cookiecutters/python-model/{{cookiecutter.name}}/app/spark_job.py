"""``spark-submit app/spark_job.py INPUT OUTPUT``: the model on Spark, with the service's checks and outputs.

The same artifact, checked against the same sha256, scores a DataFrame read from INPUT (CSV
with a header, JSON lines or Parquet; any URL the cluster's Hadoop file systems read) with
``mapInArrow`` — mapInPandas' sibling that hands each Python worker Arrow batches, which the
checks take as they are, without a pandas round trip. Each executor's Python worker loads the
model once and keeps it for every batch it is given (Spark reuses its Python workers). CSV and
JSON lines travel as lines of text and are parsed in the workers, as ``app.batch`` parses them;
a quoted CSV cell holding a line break is refused (give such a file as Parquet).

Every batch goes through ``app.scoring``, as ``python -m app.batch`` does: the service's column
checks, the service's output columns; Spark adds ``model_name``, ``model_version`` and
``model_sha256``. OUTPUT gets Parquet: ``row_id`` (increasing in input order, unique, not
consecutive: Spark's ``monotonically_increasing_id``), the ``--keep`` columns, the predictions.
With ``--on-error skip`` the rejected rows go to their own Parquet output (``--rejected``,
default ``OUTPUT_rejected``): row_id, column, reason and the row's values as JSON; with ``fail``
(default) the first one fails the job, naming it, and Spark's commit protocol leaves no output.

Run here with ``python -m app.spark_job IN OUT --master 'local[2]'`` (pyspark installed,
``PYSPARK_PYTHON`` the interpreter with the model's libraries); in the cluster, the project's
``batch/sparkapplication.yaml``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from app.settings import PROJECT_DIR, load_contract

ROW_ID = "row_id"
BATCH_ROWS = 50_000
REJECTED_FIELDS = ("rejected_column", "rejected_reason", "rejected_values")

_SCORER: Any = None  # one per Python worker, loaded by the first batch it scores


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app/spark_job.py", description=__doc__.splitlines()[0])
    p.add_argument("input", help="rows to score: CSV (with header), JSON lines or Parquet; a path or URL")
    p.add_argument("output", help="where the predictions go (a Parquet folder)")
    p.add_argument("--input-format", choices=["csv", "jsonl", "parquet"], help="instead of INPUT's suffix")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    p.add_argument("--rejected", help="with --on-error skip: where rejected rows go (default: OUTPUT_rejected)")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN", help="input column copied to the output")
    p.add_argument("--mode", choices=["error", "overwrite"], default="error", help="when OUTPUT exists")
    p.add_argument("--master", help="e.g. local[2] (default: what spark-submit or the cluster says)")
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting, as spark-submit's"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from app.rowfiles import RowFileError, format_of

    try:
        fmt = format_of(args.input, args.input_format)
    except RowFileError as err:
        print(err, file=sys.stderr)
        return 2
    if fmt == "json":
        print(f"{args.input}: give Spark rows as .jsonl, .csv or .parquet", file=sys.stderr)
        return 2
    # Spark's local Python workers inherit this process's environment: they find app/ through it.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")]))
    from pyspark.sql import SparkSession

    contract = load_contract()
    builder = SparkSession.builder.appName(f"{contract['name']}-{contract['version']}-batch")
    if args.master:
        builder = builder.master(args.master)
    # Rows a Python worker checks and scores at once: the pipeline's cost per call is spread over
    # more of them (14% faster than Spark's 10,000 on the penguins stack), a few MB of text each.
    builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
    for setting in args.conf:
        key, _, value = setting.partition("=")
        builder = builder.config(key, value)
    started = time.monotonic()
    spark = builder.getOrCreate()
    session = time.monotonic() - started
    try:
        score(spark, args, fmt, contract)
        took = time.monotonic() - started - session
        print(f"app.spark_job: scored {args.input} in {took:.1f} s (the Spark session took {session:.1f} s to start)")
    except Exception as err:  # noqa: BLE001 - a refused row fails the Spark job: say which, in one line
        found = re.search(r"ValueError: (.+)", str(err))
        if found is None:
            raise
        print(f"{args.input}: {found.group(1)}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    return 0


def score(spark: Any, args: argparse.Namespace, fmt: str, contract: dict[str, Any]) -> None:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import LongType, StringType, StructField

    rejected_path = args.rejected or f"{args.output.rstrip('/')}_rejected"
    if args.mode == "error":
        # Both outputs checked before either is written: skip mode writes them one after the other.
        for path in [args.output, *([rejected_path] if args.on_error == "skip" else [])]:
            if _exists(spark, path):
                print(f"{path} exists already: give another output, or --mode overwrite", file=sys.stderr)
                raise SystemExit(2)
    frame, header = read(spark, args.input, fmt)
    frame = frame.withColumn(ROW_ID, F.monotonically_increasing_id())
    if fmt == "parquet":
        columns = {f.name: f for f in frame.schema.fields}
    else:  # CSV cells are text; JSON lines' values are kept as their text
        columns = {name: StructField(name, StringType()) for name in header or args.keep}
    missing = [name for name in args.keep if name not in columns]
    if missing:
        print(f"{args.input}: no column {missing[0]!r} to keep (--keep)", file=sys.stderr)
        raise SystemExit(2)
    kept = [StructField(ROW_ID, LongType(), False), *(columns[name] for name in args.keep)]
    schema = output_schema(contract, kept)

    from app.scoring import trace
    from app.settings import from_env

    settings = from_env()
    traced = trace(contract, settings.scoring_sha256)
    # By reference to the module, not by value from __main__ (which this file is when submitted):
    # a function pickled by value brings fresh globals into every task, and the model with them.
    job = importlib.import_module("app.spark_job")
    scored_batches = functools.partial(
        job.score_batches,
        keep=(ROW_ID, *args.keep),
        on_error=args.on_error,
        fmt=fmt,
        header=header,
        schema=to_arrow_schema(schema),
        traced=traced,
    )
    # The trace columns are constants: Spark adds them, rather than each row carrying them back from Python.
    scored = frame.mapInArrow(scored_batches, schema).select(
        *schema.fieldNames(), *(F.lit(value).alias(name) for name, value in traced.items())
    )
    outputs = [n for n in scored.columns if n not in REJECTED_FIELDS]
    if args.on_error == "fail":
        scored.select(outputs).write.mode(args.mode).parquet(args.output)
        return
    # Scored once, written twice: the predictions and the rejected rows each to their own output.
    scored = scored.persist(StorageLevel.DISK_ONLY)
    scored.where(F.col("rejected_reason").isNull()).select(outputs).write.mode(args.mode).parquet(args.output)
    rejected = scored.where(F.col("rejected_reason").isNotNull()).select(
        ROW_ID,
        F.col("rejected_column").alias("column"),
        F.col("rejected_reason").alias("reason"),
        F.col("rejected_values").alias("values"),
    )
    rejected.write.mode(args.mode).parquet(rejected_path)
    scored.unpersist()


def read(spark: Any, path: str, fmt: str) -> tuple[Any, list[str] | None]:
    """The rows as the Python workers take them, and a CSV's header.

    CSV and JSON lines are read as lines of text, and parsed in the Python workers as
    ``app.batch`` parses them (pyarrow's CSV reader, every cell as text; the service's JSON
    checks): the JVM does not split cells it would only hand over as text, which is most of its
    work. A quoted CSV cell with a line break in it is refused (a line is a row here).
    """
    if fmt == "parquet":
        return spark.read.parquet(path), None
    from pyspark.sql import functions as F

    lines = spark.read.text(path).where(F.trim("value") != "")
    if fmt == "jsonl":
        return lines.withColumnRenamed("value", "_line"), None
    first = _first_line(spark, sorted(lines.inputFiles())[0]) if lines.inputFiles() else None
    if not first:
        raise SystemExit(f"{path}: empty file: a CSV needs a header row")
    header = next(csv.reader([first.removeprefix("\ufeff")]))
    # Each file's header line is the first file's: none of them is a row.
    return lines.where(F.col("value") != first).withColumnRenamed("value", "_csv"), header


def _exists(spark: Any, path: str) -> bool:
    """Whether ``path`` exists, asked of Hadoop's file systems (s3a://, hdfs://, local) by the driver."""
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    location = jvm.org.apache.hadoop.fs.Path(path)
    return bool(location.getFileSystem(conf).exists(location))


def _first_line(spark: Any, path: str) -> str | None:
    """A file's first line, read by the driver through Hadoop's file systems (s3a://, hdfs://...):
    no Spark job (a second JVM warm-up) for one line."""
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    hadoop = jvm.org.apache.hadoop
    location = hadoop.fs.Path(path)
    stream = location.getFileSystem(conf).open(location)
    codec = hadoop.io.compress.CompressionCodecFactory(conf).getCodec(location)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
    try:
        return reader.readLine()
    finally:
        reader.close()


def output_schema(contract: dict[str, Any], kept: list[Any]) -> Any:
    """What the Python workers answer: row id and kept columns, the service's output columns, rejection fields."""
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

    output = contract["output"]
    classes = output.get("classes") or []
    label = LongType() if classes and all(isinstance(c, int) for c in classes) else StringType()
    predictions = {
        "probabilities": [("label", label), *((f"probability_{c}", DoubleType()) for c in classes)],
        "label": [("label", label)],
        "value": [("value", DoubleType())],
        "cluster": [("cluster", LongType())],
        "score": [("outlier", BooleanType()), ("score", DoubleType())],
    }[output["type"]]
    fields = [*kept, *(StructField(n, t) for n, t in predictions)]
    fields += [StructField(n, StringType()) for n in REJECTED_FIELDS]
    return StructType(fields)


def worker_scorer(keep: tuple[str, ...], on_error: str, traced: dict[str, str]) -> Any:
    """This Python worker's scorer: the artifact checked and loaded on its first batch, then kept.
    It must be the model the driver writes into the trace columns."""
    global _SCORER
    if _SCORER is None:
        from app.settings import one_thread_per_process

        one_thread_per_process()  # one Spark task per core already
        from app.model import load_engine
        from app.payload import InputSchema
        from app.predict import predictor_for
        from app.scoring import ChunkScorer, trace
        from app.settings import from_env

        settings = from_env()
        contract = settings.contract
        model = load_engine(settings)
        schema = InputSchema(contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False))
        sha256 = settings.scoring_sha256
        if trace(contract, sha256) != traced:
            raise RuntimeError(f"this executor's model is {trace(contract, sha256)}, the driver's {traced}")
        _SCORER = ChunkScorer(schema, predictor_for(model, contract["output"]), {}, keep, on_error)
        # One line per load: the job's log shows each Python worker loading the model once.
        print(
            f"app.spark_job: loaded {contract['name']} {contract['version']} in Python worker {os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
    return _SCORER


def score_batches(
    batches: Iterator[Any],
    *,
    keep: tuple[str, ...],
    on_error: str,
    fmt: str,
    header: list[str] | None,
    schema: Any,
    traced: dict[str, str],
) -> Iterator[Any]:
    """mapInArrow's function: each Arrow batch checked and scored; rejected rows flagged, or the job failed."""
    import pyarrow as pa

    from app.rowfiles import Chunk

    scorer = worker_scorer(keep, on_error, traced)
    for batch in batches:
        ids = batch.column(ROW_ID).to_pylist()  # a rejected row's id, by its index in the batch
        if fmt == "jsonl":  # the texts, as the batch job reads them
            chunk = Chunk(0, "lines", [v.encode("utf-8") for v in batch.column("_line").to_pylist()])
            chunk = _with_row_ids(chunk, ids)
        elif fmt == "csv":
            chunk = Chunk(0, "cells", _csv_cells(batch, header))
        else:
            chunk = Chunk(0, "values", batch)
        scored = scorer.score(chunk)
        if scored.failure is not None:
            raise ValueError(_by_row_id(scored.failure, ids[scored.failure.row]))
        parts = []
        if scored.table is not None:
            parts.append(scored.table)
        if scored.rejected:
            parts.append(pa.Table.from_pylist([_rejection(r, ids[r.row]) for r in scored.rejected]))
        for part in parts:  # scored rows and rejected ones, each with the other's columns null
            columns = {n: part.column(n) if n in part.column_names else pa.nulls(part.num_rows) for n in schema.names}
            yield from pa.table(columns).cast(schema).to_batches()


def _csv_cells(batch: Any, header: list[str]) -> Any:
    """A batch of CSV lines as a RecordBatch of cells (text), with their row ids."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    lines = batch.column("_csv").to_pylist()
    try:
        table = pacsv.read_csv(
            io.BytesIO("\n".join(lines).encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as err:
        raise ValueError(f"not valid CSV: {err}") from None
    if table.num_rows != len(lines):
        raise ValueError("a quoted CSV cell holds a line break: the Spark job reads a row a line; give it Parquet")
    columns = [c.combine_chunks() for c in table.columns]
    return pa.RecordBatch.from_arrays([*columns, batch.column(ROW_ID)], names=[*header, ROW_ID])


def _with_row_ids(chunk: Any, ids: list[int]) -> Any:
    """JSON lines carry their row id into the record, where --keep finds it."""
    from app.rowfiles import Chunk

    lines = []
    for line, row_id in zip(chunk.data, ids, strict=True):
        text = line.strip()
        if text.startswith(b"{") and text.endswith(b"}"):
            inner = text[1:-1].strip()  # an empty object takes the key without a comma before it
            text = b"{" + inner + (b"," if inner else b"") + f'"{ROW_ID}":{row_id}}}'.encode()
        lines.append(text)
    return Chunk(0, "lines", lines)


def _rejection(rejected: Any, row_id: int) -> dict[str, Any]:
    values = dict(rejected.values) if isinstance(rejected.values, dict) else {"_line": rejected.values}
    values.pop(ROW_ID, None)
    return {
        ROW_ID: row_id,
        "rejected_column": rejected.column,
        "rejected_reason": _by_row_id(rejected, row_id),
        "rejected_values": json.dumps(values, default=str),
    }


def _by_row_id(rejected: Any, row_id: int) -> str:
    """The reason with the row named by its row_id: Spark has no file-wide row numbers, a batch's own mean nothing."""
    return rejected.reason.replace(f"row {rejected.row}:", f"row_id {row_id}:", 1)


if __name__ == "__main__":
    sys.exit(main())
