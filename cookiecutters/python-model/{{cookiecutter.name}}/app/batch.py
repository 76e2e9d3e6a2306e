"""``python -m app.batch INPUT OUTPUT``: score a file of rows with the service's own checks and model.

INPUT is CSV with a header row, or JSON in any shape /invocations accepts; OUTPUT is CSV, the
columns the service answers with ``Accept: text/csv``. Rows are checked and scored in chunks,
so a file larger than memory's comfort goes through with a flat footprint. Exit 2 names the
column and row of a bad value (rows counted from 0 over the whole file, as /invocations counts
them in a request), exit 3 a bad artifact; no output file is left behind on either.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from app.model import ArtifactError, load_engine
from app.payload import BadRequest, InputSchema
from app.predict import ModelMismatch, predictor_for
from app.settings import from_env

CHUNK_ROWS = 10_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.batch", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="rows to score: .csv (with header) or .json")
    parser.add_argument("output", type=Path, help="where the predictions go (CSV)")
    args = parser.parse_args(argv)

    settings = from_env()
    contract = settings.contract
    try:
        model = load_engine(settings)
        predictor = predictor_for(model, contract["output"])
    except (ArtifactError, ModelMismatch) as err:
        print(f"{contract['name']}: {err}", file=sys.stderr)
        return 3
    schema = InputSchema(contract["columns"], contract["values"], frames=not getattr(model, "takes_columns", False))
    rows = 0
    try:
        with args.output.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(predictor.header)
            for frame in _chunks(schema, args.input):
                writer.writerows(predictor.csv_rows(predictor(frame)))
                rows += len(frame)
    except BadRequest as err:
        args.output.unlink(missing_ok=True)
        message = err.message
        if err.row is not None and rows:  # rows are counted per chunk: number them over the file
            message = message.replace(f"row {err.row}:", f"row {err.row + rows}:", 1)
        print(f"{args.input}: {message}", file=sys.stderr)
        return 2
    print(f"{args.output}: {rows} predictions", file=sys.stderr)
    return 0


def _chunks(schema: InputSchema, path: Path):
    if path.suffix.lower() != ".csv":
        yield schema.from_json(path.read_bytes())
        return
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        header = next(reader, [])
        while True:
            rows = [row for _, row in zip(range(CHUNK_ROWS), reader, strict=False)]
            if not rows:
                return
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows([header, *rows])
            yield schema.from_csv(text.getvalue().encode("utf-8"))


if __name__ == "__main__":
    sys.exit(main())
