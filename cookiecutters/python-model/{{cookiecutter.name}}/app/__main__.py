"""``python -m app``: check and load the model (or its ONNX conversion), then serve it with gunicorn or waitress.

The model is loaded here, before the server forks its workers (gunicorn's ``preload``), so
every worker shares the loaded pipeline's memory and a bad artifact stops start-up with one
line instead of a crash loop of worker tracebacks.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile


def _multiprocess_metrics_dir() -> None:
    # prometheus_client reads this at import; each run starts from an empty folder.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="metrics-")
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def _monitor(settings):  # -> app.monitoring.Monitor | None
    from app.monitoring import InputLog, Monitor

    if not settings.monitoring:
        return None
    log = None
    if settings.input_log and settings.log_sample_rate > 0:
        log = InputLog(settings.input_log, settings.log_sample_rate, settings.log_max_bytes)
    logging.getLogger("app").info(
        "monitoring %d features; input log: %s",
        len(settings.contract["monitoring"]["features"]),
        f"{settings.input_log} ({settings.log_sample_rate:.0%} of requests)" if log else "off",
    )
    return Monitor(settings.contract["monitoring"], log)


def main() -> int:
    from app.settings import one_thread_per_process

    one_thread_per_process()
    _multiprocess_metrics_dir()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app.model import ArtifactError, load_engine
    from app.predict import ModelMismatch
    from app.service import create_app
    from app.settings import from_env

    settings = from_env()
    try:
        model = load_engine(settings)
        application = create_app(
            model,
            settings.contract,
            max_request_bytes=settings.max_request_bytes,
            sha256=settings.model_sha256,
            monitor=_monitor(settings),
            engine=settings.engine,
        )
    except (ArtifactError, ModelMismatch) as err:
        print(f"{settings.contract['name']}: {err}", file=sys.stderr)
        return 3

    # Everything loaded so far lives as long as the process: keep the garbage collector from
    # walking it on every collection (shorter pauses), and from touching its pages in forked
    # workers (copy-on-write sharing of the model stays intact).
    gc.collect()
    gc.freeze()

    from app.servers import ServerError, serve

    try:
        serve(application, settings)
    except ServerError as err:
        print(f"{settings.contract['name']}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
