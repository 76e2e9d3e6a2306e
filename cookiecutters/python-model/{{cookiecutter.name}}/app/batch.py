"""``python -m app.batch INPUT OUTPUT``: score a file of rows with the service's own checks and model.

INPUT is CSV with a header row, JSON lines (one record a line), Parquet, or one JSON document in
any shape /invocations accepts (``.json``, read whole, as the service reads a request); OUTPUT is
CSV, JSON lines or Parquet, by its suffix: the columns the service answers with ``Accept:
text/csv``, then ``model_name``, ``model_version`` and ``model_sha256`` (Parquet also records
them in its footer, key ``modelgen``). Either may be a local path or a ``file://`` or
``s3://`` URL (fsspec); INPUT also ``https://``.

The file is read, checked and scored in chunks, by one worker process per CPU of the
container's limit, with a bounded number of chunks in flight: memory stays flat whatever the
size of the file. Rows are numbered from 0 over the whole file (the first data row is row 0).

``--on-error fail`` (default): the first bad row stops the run, exit 2, naming its row and
column; no output is left behind. ``--on-error skip``: bad rows go to the rejected file (JSON
lines: row, column, reason, the row's values) and the others are scored. Exit 3: the artifact
is missing or not the pinned one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

LOG_EVERY_SECONDS = 10.0
CHUNK_ROWS = 10_000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.batch", description=__doc__.splitlines()[0])
    p.add_argument("input", help="rows to score: .csv (with header), .jsonl, .parquet or .json; a path or URL")
    p.add_argument("output", help="where the predictions go: .csv, .jsonl or .parquet; a path or URL")
    p.add_argument(
        "--on-error", choices=["fail", "skip"], default="fail", help="a bad row stops the run, or is set aside"
    )
    p.add_argument("--rejected", help="with --on-error skip: where rejected rows go (default: OUTPUT.rejected.jsonl)")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN", help="input column copied to the output")
    p.add_argument("--input-format", choices=["csv", "jsonl", "parquet", "json"], help="instead of INPUT's suffix")
    p.add_argument("--output-format", choices=["csv", "jsonl", "parquet"], help="instead of OUTPUT's suffix")
    p.add_argument(
        "--chunk-rows", type=_positive, default=CHUNK_ROWS, help=f"rows checked and scored at once ({CHUNK_ROWS})"
    )
    p.add_argument("--workers", type=_positive, help="scoring processes (default: the CPUs of the container's limit)")
    p.add_argument("--progress", choices=["auto", "bar", "log"], default="auto", help="auto: a bar on a terminal")
    p.add_argument("--log-every", type=float, default=LOG_EVERY_SECONDS, metavar="SECONDS", help="without a bar")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    from app.settings import one_thread_per_process

    one_thread_per_process()
    args = parser().parse_args(argv)

    from app.model import ArtifactError, load_engine
    from app.payload import InputSchema
    from app.predict import ModelMismatch, predictor_for
    from app.rowfiles import JSON_DOCUMENT, RowFileError, format_of
    from app.scoring import SKIP, ChunkScorer, trace
    from app.settings import cpu_limit, from_env

    settings = from_env()
    contract = settings.contract
    try:
        model = load_engine(settings)
        predictor = predictor_for(model, contract["output"])
    except (ArtifactError, ModelMismatch) as err:
        print(f"{contract['name']}: {err}", file=sys.stderr)
        return 3
    schema = InputSchema(contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False))
    sha256 = settings.scoring_sha256
    scorer = ChunkScorer(schema, predictor, trace(contract, sha256), tuple(args.keep), args.on_error)
    try:
        in_format = format_of(args.input, args.input_format)
        out_format = format_of(args.output, args.output_format)
        if out_format == JSON_DOCUMENT:
            raise RowFileError(f"{args.output}: write predictions as .jsonl (JSON lines), .csv or .parquet")
    except RowFileError as err:
        print(err, file=sys.stderr)
        return 2
    rejected = None
    if args.on_error == SKIP:
        rejected = args.rejected or f"{_stem(args.output)}.rejected.jsonl"
    workers = args.workers or cpu_limit()
    return run(scorer, args, in_format, out_format, rejected, workers, settings.engine)


def run(
    scorer: Any,
    args: argparse.Namespace,
    in_format: str,
    out_format: str,
    rejected: str | None,
    workers: int,
    engine: str,
) -> int:
    from app.rowfiles import RejectedWriter, RowFileError, RowWriter, read_chunks, row_count

    writer = rejected_writer = progress = None
    targets: list[_Target] = []
    done = False
    try:
        output = _Target(args.output)
        targets.append(output)
        rejects = _Target(rejected) if rejected else None
        if rejects:
            targets.append(rejects)
        progress = Progress(args.progress, row_count(args.input, in_format), args.log_every)
        writer = RowWriter(output.partial, out_format, scorer.metadata(engine))
        rejected_writer = RejectedWriter(rejects.partial) if rejects else None
        for scored in scored_chunks(scorer, read_chunks(args.input, in_format, args.chunk_rows), workers):
            if scored.failure is not None:
                raise _Stop(scored.failure.reason)
            for r in scored.rejected:
                rejected_writer.write(r.row, r.column, r.reason, r.values)
            if scored.table is not None:
                writer.write(scored.table)
            progress.add(
                (scored.table.num_rows if scored.table is not None else 0) + len(scored.rejected), len(scored.rejected)
            )
        writer.close(scorer.empty_schema())
        output.complete = True
        if rejected_writer is not None:
            rejected_writer.close()
            rejects.complete = True
        for target in targets:
            target.commit()
        done = True
    except Exception as err:  # noqa: BLE001 - whatever stops the run is one line, and nothing is left behind
        known = isinstance(err, _Stop | OSError | RowFileError)
        print(f"{args.input}: {err if known else f'{type(err).__name__}: {err}'}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
        if not done:  # failed, or interrupted: the partial files go, an earlier output stays as it was
            for open_writer in (writer, rejected_writer):
                if open_writer is not None:
                    _quietly(open_writer.abandon)
            for target in targets:
                _quietly(target.discard)
    print(f"{args.output}: {writer.rows} predictions", file=sys.stderr)
    if rejected_writer is not None:
        print(f"{rejected}: {rejected_writer.rows} rejected rows", file=sys.stderr)
    return 0


def _quietly(step: Any) -> None:
    with contextlib.suppress(Exception):  # cleaning up after a failure already reported
        step()


class _Stop(Exception):
    """A row that stops a ``fail`` run, or an input that cannot be scored at all."""


# ---- scoring in worker processes

_SCORER: Any = None  # set before the workers fork: each inherits the loaded model


def _score(chunk: Any) -> Any:
    return _SCORER.score(chunk)


def scored_chunks(scorer: Any, chunks: Iterator[Any], workers: int) -> Iterator[Any]:
    """Each chunk scored, in input order; at most two chunks per worker in flight, so memory stays bounded."""
    if workers <= 1:
        for chunk in chunks:
            yield scorer.score(chunk)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _SCORER
    _SCORER = scorer
    # Forked (all at once, at the first submit) before the input is opened, after the model was
    # loaded and checked once: the workers share its memory, as gunicorn's preloaded workers do.
    # An executor, not a Pool: a worker killed (the container's memory limit) breaks it with an
    # error, where a Pool would wait for the lost chunk for ever.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        pool.submit(int).result()
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_score, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # A run stopped early (a bad row, an error) does not score the chunks still queued.
        pool.shutdown(wait=True, cancel_futures=True)


# ---- where the output goes


class _Target:
    """An output written beside its name and renamed into place (local), or removed on failure (remote)."""

    def __init__(self, url: str):
        import fsspec

        self.url = url
        self.complete = False  # its writer closed: the whole file is there
        self.fs, self.path = fsspec.core.url_to_fs(url)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        if self.local:
            folder, name = os.path.split(os.path.abspath(self.path))
            self.partial = os.path.join(folder, f".{name}.partial-{os.getpid()}")
        else:
            self.partial = url  # object stores make a file visible only once it is complete

    def commit(self) -> None:
        if self.local:
            os.replace(self.partial, self.path)

    def discard(self) -> None:
        """After a failure: the partial file (local), or the object once its upload completed
        (remote; an abandoned upload never became one)."""
        if self.local and os.path.exists(self.partial):
            os.remove(self.partial)
        elif not self.local and self.complete:
            self.fs.rm(self.path)


def _stem(url: str) -> str:
    head, dot, suffix = url.rpartition(".")
    return head if dot and "/" not in suffix else url


# ---- progress


class Progress:
    """A bar on a terminal (tqdm), else a log line every ``every`` seconds."""

    def __init__(self, mode: str, total: int | None, every: float = LOG_EVERY_SECONDS):
        self.every = every
        self.rows = self.rejected = 0
        self.started = self.logged = time.monotonic()
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def add(self, rows: int, rejected: int) -> None:
        self.rows += rows
        self.rejected += rejected
        if self.bar is not None:
            self.bar.update(rows)
            if rejected:
                self.bar.set_postfix(rejected=self.rejected)
            return
        now = time.monotonic()
        if now - self.logged >= self.every:
            self.logged = now
            rate = self.rows / max(now - self.started, 1e-9)
            print(f"scored {self.rows:,} rows ({rate:,.0f} rows/s), {self.rejected:,} rejected", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


if __name__ == "__main__":
    sys.exit(main())
