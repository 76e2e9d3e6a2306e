"""The rows drift is measured on: reference and live files, and the services' input logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from modelgen.errors import ModelgenError
from modelgen.manifest.model import LOG_PREDICTION, LOG_TIMESTAMP
from modelgen.monitoring.drift import profile_problem

# What the services' input logs add to each row (app/monitoring.py, app/monitoring.R).
TIMESTAMP, PREDICTION = LOG_TIMESTAMP, LOG_PREDICTION
LOG_PATTERN = "inputs-*.jsonl*"  # one file per process, rotated to .1, .2 ...


def read_rows(path: Path, *, lines: bool = False) -> Any:
    """Logged or reference rows: CSV, JSON lines (one record per line), a JSON list, or Parquet."""
    import pandas as pd

    suffix = path.suffix.lower()
    if not path.exists():
        raise ModelgenError(f"{path}: no such file")
    if path.is_dir():
        raise ModelgenError(f"{path} is a folder: rows come in a file (.csv, .jsonl, .json or .parquet)")
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if lines or suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".json":
            return pd.DataFrame(json.loads(path.read_text("utf-8")))
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ModelgenError(f"cannot read rows from {path}: {_reason(err)}") from err
    raise ModelgenError(f"{path}: rows must be .csv, .jsonl, .json or .parquet")


def read_profile(path: Path) -> dict[str, Any]:
    """A reference profile (``modelgen profile``'s output), checked to be one."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise ModelgenError(f"cannot read the profile {path}: {_reason(err)}") from err
    problem = profile_problem(doc)
    if problem:
        raise ModelgenError(f"{path}: not a reference profile (modelgen profile writes one): {problem}")
    return doc


def read_input_log(folder: Path, window_seconds: float | None = None, now: float | None = None) -> Any:
    """The rows the services logged into ``folder`` (rotated files included), the last
    ``window_seconds`` of them if given, oldest first."""
    import pandas as pd

    frames = []
    for path in sorted(folder.glob(LOG_PATTERN)):
        if path.stat().st_size:
            frames.append(read_rows(path, lines=True))
    if not frames:
        raise ModelgenError(f"{folder}: no input log ({LOG_PATTERN}); is the service logging (sampleRate > 0)?")
    rows = pd.concat(frames, ignore_index=True)
    if TIMESTAMP in rows:
        if window_seconds is not None:
            since = (now if now is not None else time.time()) - window_seconds
            rows = rows[rows[TIMESTAMP] >= since]
        rows = rows.sort_values(TIMESTAMP, kind="stable").drop(columns=[TIMESTAMP]).reset_index(drop=True)
    return rows


def window_seconds(text: str) -> float:
    """``24h`` or ``7d`` in seconds."""
    unit = {"h": 3600, "d": 86400}.get(text[-1:])
    if unit is None or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise ModelgenError(f"window {text!r} (allowed: hours or days, e.g. 24h, 7d)")
    return int(text[:-1]) * unit


def _reason(err: Exception) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)
