"""``spark-submit app/spark_job.py INPUT OUTPUT``: the model on Spark, with the service's checks and outputs.

The same artifact, checked against the same sha256, scores a DataFrame read from INPUT (CSV
with a header, JSON lines or Parquet; any URL the cluster's Hadoop file systems read) with
``mapInArrow`` — mapInPandas' sibling that hands each Python worker Arrow batches, which the
checks take as they are, without a pandas round trip. Each executor's Python worker loads the
model once and keeps it for every batch it is given (Spark reuses its Python workers).

Every batch goes through ``app.scoring``, as ``python -m app.batch`` does: the service's column
checks, the service's output columns, then ``model_name``, ``model_version`` and
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
import functools
import importlib
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from app.settings import PROJECT_DIR, load_contract

ROW_ID = "row_id"
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
    for setting in args.conf:
        key, _, value = setting.partition("=")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        score(spark, args, fmt, contract)
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

    frame = read(spark, args.input, fmt).withColumn(ROW_ID, F.monotonically_increasing_id())
    missing = [name for name in args.keep if name not in frame.columns]
    if missing:
        print(f"{args.input}: no column {missing[0]!r} to keep (--keep)", file=sys.stderr)
        raise SystemExit(2)
    kept = [frame.schema[name] for name in (ROW_ID, *args.keep)]
    schema = output_schema(contract, kept)
    cells = fmt == "csv"
    keep, on_error = (ROW_ID, *args.keep), args.on_error

    from pyspark.sql.pandas.types import to_arrow_schema

    # By reference to the module, not by value from __main__ (which this file is when submitted):
    # a function pickled by value brings fresh globals into every task, and the model with them.
    job = importlib.import_module("app.spark_job")
    scored_batches = functools.partial(
        job.score_batches, keep=keep, on_error=on_error, cells=cells, schema=to_arrow_schema(schema)
    )
    scored = frame.mapInArrow(scored_batches, schema)
    outputs = [n for n in schema.fieldNames() if n not in REJECTED_FIELDS]
    if on_error == "fail":
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
    rejected.write.mode(args.mode).parquet(args.rejected or f"{args.output.rstrip('/')}_rejected")
    scored.unpersist()


def read(spark: Any, path: str, fmt: str) -> Any:
    if fmt == "parquet":
        return spark.read.parquet(path)
    if fmt == "jsonl":
        # Each line's text, parsed by the service's own JSON checks, not by Spark's schema inference.
        return spark.read.text(path).withColumnRenamed("value", "_line").where("trim(_line) != ''")
    header = spark.read.option("header", True).csv(path).columns
    # Every cell as text, an empty one as the contract's null token, a line of another width fails the job.
    reader = spark.read.schema(", ".join(f"`{n}` string" for n in header)).option("header", True)
    return reader.option("mode", "FAILFAST").option("emptyValue", "").csv(path)


def output_schema(contract: dict[str, Any], kept: list[Any]) -> Any:
    """The row id and kept columns, the service's output columns, the trace and the rejection fields."""
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
    from app.scoring import TRACE_COLUMNS

    fields = [*kept, *(StructField(n, t) for n, t in predictions)]
    fields += [StructField(n, StringType()) for n in (*TRACE_COLUMNS, *REJECTED_FIELDS)]
    return StructType(fields)


def worker_scorer(keep: tuple[str, ...], on_error: str) -> Any:
    """This Python worker's scorer: the artifact checked and loaded on its first batch, then kept."""
    global _SCORER
    if _SCORER is None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")  # one Spark task per core already
        from app.model import load_engine
        from app.payload import InputSchema
        from app.predict import predictor_for
        from app.scoring import ChunkScorer, trace
        from app.settings import from_env

        settings = from_env()
        contract = settings.contract
        model = load_engine(settings)
        schema = InputSchema(contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False))
        sha256 = settings.onnx_sha256 if settings.engine == "onnx" else settings.model_sha256
        _SCORER = ChunkScorer(schema, predictor_for(model, contract["output"]), trace(contract, sha256), keep, on_error)
        # One line per load: the job's log shows each Python worker loading the model once.
        print(
            f"app.spark_job: loaded {contract['name']} {contract['version']} in Python worker {os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
    return _SCORER


def score_batches(
    batches: Iterator[Any], *, keep: tuple[str, ...], on_error: str, cells: bool, schema: Any
) -> Iterator[Any]:
    """mapInArrow's function: each Arrow batch checked and scored; rejected rows flagged, or the job failed."""
    import pyarrow as pa

    from app.rowfiles import Chunk

    scorer = worker_scorer(keep, on_error)
    for batch in batches:
        if "_line" in batch.schema.names:  # JSON lines: the texts, as the batch job reads them
            chunk = Chunk(0, "lines", [v.encode("utf-8") for v in batch.column("_line").to_pylist()])
            ids = batch.column(ROW_ID).to_pylist()
            chunk = _with_row_ids(chunk, ids)
        else:
            if cells:  # Spark reads an empty CSV cell as null; the service's CSV reads it as its null token
                batch = pa.RecordBatch.from_arrays(
                    [c.fill_null("") if pa.types.is_string(c.type) else c for c in batch.columns],
                    names=batch.schema.names,
                )
            chunk = Chunk(0, "cells" if cells else "values", batch)
        scored = scorer.score(chunk)
        if scored.failure is not None:
            raise ValueError(_located(scored.failure, chunk))
        parts = []
        if scored.table is not None:
            parts.append(scored.table)
        if scored.rejected:
            parts.append(pa.Table.from_pylist([_rejection(r, chunk) for r in scored.rejected]))
        for part in parts:  # scored rows and rejected ones, each with the other's columns null
            columns = {n: part.column(n) if n in part.column_names else pa.nulls(part.num_rows) for n in schema.names}
            yield from pa.table(columns).cast(schema).to_batches()


def _with_row_ids(chunk: Any, ids: list[int]) -> Any:
    """JSON lines carry their row id into the record, where --keep finds it."""
    from app.rowfiles import Chunk

    lines = []
    for line, row_id in zip(chunk.data, ids, strict=True):
        text = line.strip()
        lines.append(text[:-1] + f',"{ROW_ID}":{row_id}}}'.encode() if text.endswith(b"}") else text)
    return Chunk(0, "lines", lines)


def _rejection(rejected: Any, chunk: Any) -> dict[str, Any]:
    values = dict(rejected.values) if isinstance(rejected.values, dict) else {"_line": rejected.values}
    row_id = values.pop(ROW_ID, None)
    reason = _by_row_id(rejected, row_id)
    return {
        ROW_ID: row_id,
        "rejected_column": rejected.column,
        "rejected_reason": reason,
        "rejected_values": json.dumps(values, default=str),
    }


def _located(failure: Any, chunk: Any) -> str:
    values = failure.values if isinstance(failure.values, dict) else {}
    return _by_row_id(failure, values.get(ROW_ID))


def _by_row_id(rejected: Any, row_id: int | None) -> str:
    """The reason with the row named by its row_id: Spark has no file-wide row numbers, a batch's own mean nothing."""
    if row_id is None:
        return rejected.reason
    return rejected.reason.replace(f"row {rejected.row}:", f"row_id {row_id}:", 1)


if __name__ == "__main__":
    sys.exit(main())
