"""Prometheus metrics, shared across gunicorn's worker processes.

With several workers each process counts on its own; prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``python -m app`` before this module is imported)
adds them up when ``/metrics`` is scraped, whichever worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter(
    "modelgen_requests_total", "HTTP requests by endpoint and status code.", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "modelgen_request_duration_seconds",
    "Time from request received to response ready, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ROWS = Counter("modelgen_predicted_rows_total", "Rows scored by the model.")
MODEL_INFO = Gauge(
    "modelgen_model_info",
    "The model this service serves (always 1), and the engine that runs it (native or onnx).",
    ["name", "version", "sha256", "engine"],
    multiprocess_mode="max",
)

# Drift signals (app.monitoring); label values come from the reference profile, a bounded set.
FEATURE_MISSING = Counter("modelgen_feature_missing_total", "Missing values per input feature.", ["feature"])
FEATURE_UNSEEN = Counter(
    "modelgen_feature_unseen_total", "Values of a categorical feature the reference never had.", ["feature"]
)
FEATURE_VALUES = Counter(
    "modelgen_feature_values_total",
    "Values per input feature, by reference bin (numeric) or category.",
    ["feature", "bin"],
)
PREDICTIONS = Counter("modelgen_predictions_total", "Predictions by label or reference bin.", ["bin"])

CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def worker_exit(pid: int) -> None:
    """Let a dead worker's live gauges go (gunicorn ``child_exit`` hook)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)
