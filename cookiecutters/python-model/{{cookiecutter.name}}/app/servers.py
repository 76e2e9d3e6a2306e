"""The two WSGI servers a model can run on."""

from __future__ import annotations

import logging
import os
from typing import Any

from app.settings import Settings

log = logging.getLogger("app")


def serve(application: Any, settings: Settings) -> None:
    log.info(
        "serving %s %s on :%d with %s, %d worker(s)",
        settings.contract["name"],
        settings.contract["version"],
        settings.port,
        settings.server,
        settings.workers,
    )
    if settings.server == "waitress":
        _waitress(application, settings)
    else:
        _gunicorn(application, settings)


def _gunicorn(application: Any, settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    from app import metrics

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{settings.host}:{settings.port}",
                "workers": settings.workers,
                "worker_class": "sync",
                "preload_app": True,  # the model was loaded before the fork
                "timeout": settings.timeout_seconds,
                "graceful_timeout": 20,
                "keepalive": 5,
                "control_socket_disable": True,  # it would write into $HOME, read-only on OpenShift
                # /tmp may be the only writable place (read-only root filesystem).
                "worker_tmp_dir": "/dev/shm" if _writable("/dev/shm") else None,
                "accesslog": "-" if settings.access_log else None,
                "errorlog": "-",
                "child_exit": lambda _server, worker: metrics.worker_exit(worker.pid),
            }
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return application

    Server().run()


def _waitress(application: Any, settings: Settings) -> None:
    import waitress

    waitress.serve(
        application,
        host=settings.host,
        port=settings.port,
        threads=settings.workers,
        channel_timeout=settings.timeout_seconds,
        max_request_body_size=settings.max_request_bytes,
        ident=settings.contract["name"],
    )


def _writable(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)
