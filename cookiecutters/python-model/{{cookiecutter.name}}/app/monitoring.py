"""What the drift job and the alerts need from live traffic, kept off the hot path's critical cost.

Per input feature, Prometheus counters of missing values, of values per reference bin (numeric)
or per known category, and of unseen categories; per prediction, its label or its reference
bin. Label sets are fixed at start-up from the contract's ``monitoring`` section (modelgen wrote
the reference bins and their labels there), so an unseen category never creates a new time
series (it counts as "unseen"). Optionally, a sampled share of requests
goes to an input log: JSON lines (the row, ``__ts``, ``__prediction``) in a file per process,
rotated by size, on a volume the drift job reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app import metrics

log = logging.getLogger("app.monitoring")

# Up to this many rows, the input log is written row by row with json; above, by pandas.
SMALL_FRAME = 50
FLUSH_SECONDS = 0.5


class _Numeric:
    def __init__(self, feature: dict[str, Any]):
        self.name = name = feature["name"]
        self.edges = np.asarray(feature["edges"], dtype=np.float64)
        self.bins = [metrics.FEATURE_VALUES.labels(name, label) for label in feature["bins"]]
        self.missing = metrics.FEATURE_MISSING.labels(name)

    def observe(self, values: np.ndarray, add: Callable[[Any, int], None]) -> None:
        values = np.asarray(values, dtype=np.float64)
        absent = np.isnan(values)
        missing = int(absent.sum())
        if missing:
            add(self.missing, missing)
            values = values[~absent]
        if len(values) == 1:  # the common one-row request: no array machinery
            add(self.bins[int(np.searchsorted(self.edges, values[0], side="left"))], 1)
            return
        counts = np.bincount(np.searchsorted(self.edges, values, side="left"), minlength=len(self.bins))
        for index in np.flatnonzero(counts).tolist():
            add(self.bins[index], int(counts[index]))


class _Categorical:
    def __init__(self, feature: dict[str, Any]):
        self.name = name = feature["name"]
        self.categories = {c: metrics.FEATURE_VALUES.labels(name, c) for c in feature["categories"]}
        self.unseen = metrics.FEATURE_UNSEEN.labels(name)
        self.missing = metrics.FEATURE_MISSING.labels(name)

    def observe(self, values: np.ndarray, add: Callable[[Any, int], None]) -> None:
        for value, count in Tally(values.tolist()).items():
            if value is None or value is pd.NA or (type(value) is float and math.isnan(value)):
                add(self.missing, count)
                continue
            key = ("true" if value else "false") if type(value) is bool else str(value)
            child = self.categories.get(key)
            add(child if child is not None else self.unseen, count)


class _Missing:
    """A feature counted only when absent (a datetime: time moves on, so its values have no reference)."""

    def __init__(self, feature: dict[str, Any]):
        self.name = feature["name"]
        self.missing = metrics.FEATURE_MISSING.labels(self.name)

    def observe(self, values: np.ndarray, add: Callable[[Any, int], None]) -> None:
        missing = int(pd.isna(values).sum())
        if missing:
            add(self.missing, missing)


_FEATURES = {"numeric": _Numeric, "categorical": _Categorical, "missing": _Missing}


class Monitor:
    """Counts one scored request's rows and predictions; writes a sample to the input log.

    Counts gather in a dict and reach the Prometheus counters every ``FLUSH_SECONDS`` from a
    thread of each worker: one multiprocess counter update costs a few microseconds (a lock and
    an mmap write), and a 1000-row request touches dozens of them.
    """

    def __init__(self, monitoring: dict[str, Any], input_log: InputLog | None):
        """``monitoring`` is the contract's section of that name: what to count, and by which labels."""
        self.features = [_FEATURES[f["kind"]](f) for f in monitoring["features"]]
        self.field = monitoring["field"]
        expected = monitoring["predictions"]
        self.numeric_predictions = expected["kind"] == "numeric"
        self.prediction_edges = np.asarray(expected.get("edges", []), dtype=np.float64)
        self.prediction_bins = [metrics.PREDICTIONS.labels(label) for label in expected.get("bins", [])]
        self.log = input_log
        self._pending: dict[Any, int] = {}
        self._lock = threading.Lock()
        self._flusher: int | None = None  # the pid whose flushing thread runs

    def observe(self, frame: pd.DataFrame | Mapping[str, np.ndarray], predictions: list[Any]) -> None:
        values = self.monitored(predictions)
        with self._lock:
            if self._flusher != os.getpid():  # first request of this (forked) worker
                self._flusher = os.getpid()
                threading.Thread(target=self._flush_forever, name="monitoring-flush", daemon=True).start()
            pending = self._pending

            def add(child: Any, count: int) -> None:
                pending[child] = pending.get(child, 0) + count

            for feature in self.features:
                feature.observe(_array(frame[feature.name], type(feature) is _Numeric), add)
            if self.numeric_predictions:
                bins = np.searchsorted(self.prediction_edges, np.asarray(values, dtype=np.float64), side="left")
                for index, count in Tally(bins.tolist()).items():
                    add(self.prediction_bins[index], count)
            else:
                for label, count in Tally(values).items():
                    add(metrics.PREDICTIONS.labels(str(label)), count)  # classes/clusters: a bounded set
        if self.log is not None:
            self.log.maybe_write(frame, values)

    def flush(self) -> None:
        """Move the gathered counts to the Prometheus counters."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for child, count in pending.items():
            child.inc(count)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # those counts are lost, the thread (and later counts) are not
                log.exception("monitoring: flushing counters failed")

    def monitored(self, predictions: list[Any]) -> list[Any]:
        if predictions and isinstance(predictions[0], dict):
            field = self.field
            return [p[field] for p in predictions]
        return predictions


class InputLog:
    """A sampled share of requests as JSON lines, in ``<dir>/inputs-<host>-<pid>.jsonl``.

    One file per process (no locking between gunicorn workers or pods on a shared volume),
    rotated when it reaches ``max_bytes`` to ``.1`` … ``.<backups>``, oldest dropped.
    """

    def __init__(self, directory: Path, sample_rate: float, max_bytes: int, backups: int = 3):
        self.directory = Path(directory)
        self.sample_rate = sample_rate
        self.max_bytes = max_bytes
        self.backups = backups
        self._pid: int | None = None
        self._file: Any = None
        self._random = random.Random()
        self._lock = threading.Lock()  # waitress serves requests on threads of one process

    def maybe_write(self, frame: pd.DataFrame | Mapping[str, np.ndarray], predictions: list[Any]) -> None:
        if self._random.random() >= self.sample_rate:
            return
        try:
            with self._lock:
                # The ONNX engine's columns become a DataFrame only here, for the sampled requests.
                self._write(frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame), predictions)
        except (OSError, ValueError) as err:  # a full volume, a value JSON cannot write: never fail a prediction
            log.warning("input log: %s", err)

    def _write(self, frame: pd.DataFrame, predictions: list[Any]) -> None:
        if self._pid != os.getpid():  # first write, or a forked worker: a file of its own
            self._open()
        stamp = round(time.time(), 3)
        if len(frame) > SMALL_FRAME:
            text = frame.assign(__ts=stamp, __prediction=predictions).to_json(
                orient="records", lines=True, date_format="iso", date_unit="ns"
            )
            text = text if text.endswith("\n") else text + "\n"
        else:  # plain json.dumps: several times faster than DataFrame.to_json on a few rows
            names = [*frame.columns, "__ts", "__prediction"]
            columns = [_plain(frame[name].tolist()) for name in frame.columns]
            text = "".join(
                json.dumps(dict(zip(names, (*values, stamp, prediction), strict=True)), default=_json_default) + "\n"
                for *values, prediction in zip(*columns, predictions, strict=True)
            )
        self._file.write(text)
        self._file.flush()
        if self._file.tell() >= self.max_bytes:
            self._rotate()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        self.path = self.directory / f"inputs-{socket.gethostname()}-{self._pid}.jsonl"
        self._file = self.path.open("a", encoding="utf-8")

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("a", encoding="utf-8")


def _array(column: Any, numeric: bool) -> np.ndarray:
    """A column's values as numpy has them: the ONNX engine's arrays as they are, a Series unboxed."""
    if isinstance(column, np.ndarray):
        return column
    if numeric and column.dtype.kind not in "fiu":  # Int64, Float32...: NA as NaN
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return column.to_numpy()


def _plain(values: list[Any]) -> list[Any]:
    return [None if (type(v) is float and v != v) or v is pd.NA or v is pd.NaT else v for v in values]


def _json_default(value: Any) -> Any:
    # A Timestamp as ISO 8601 (what the service accepts back); anything else as its text.
    return value.isoformat() if isinstance(value, pd.Timestamp) else str(value)
