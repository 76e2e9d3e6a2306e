"""The two WSGI servers a model can run on.

gunicorn's sync workers read a request themselves, so a client that connects and sends nothing,
or its headers and then its body a byte at a time, holds a worker for as long as it likes: two
such sockets stall a two-worker pod (gunicorn's documentation says sync workers need a buffering
proxy in front). So gunicorn runs behind nginx in the same process group, as the R service does:
nginx holds slow and idle clients at no cost, enforces the body limit whatever the framing
(Content-Length or chunked), and hands gunicorn only complete requests on a Unix socket.
waitress buffers whole requests in its own event loop before a thread sees them: it needs none.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from app.settings import Settings

log = logging.getLogger("app")

# A client has this long to send its headers, and between two reads of its body, before nginx
# drops it (nginx's defaults are 60 s; a stalled client should not hold a connection that long).
CLIENT_TIMEOUT_SECONDS = 15


class ServerError(Exception):
    """The server cannot start as configured; one line for the log."""


def serve(application: Any, settings: Settings) -> None:
    log.info(
        "serving %s %s on :%d with %s, %d worker(s)",
        settings.contract["name"],
        settings.contract["version"],
        settings.port,
        settings.server + (" behind nginx" if settings.server == "gunicorn" else ""),
        settings.workers,
    )
    if settings.server == "waitress":
        _waitress(application, settings)
    else:
        _gunicorn(application, settings)


class Proxy:
    """nginx in front of gunicorn: its configuration, process and run folder (under TMPDIR)."""

    def __init__(self, settings: Settings, binary: str):
        self.binary = binary
        self.run_dir = Path(tempfile.mkdtemp(prefix="modelgen-"))
        # nginx started by root (a developer's machine) runs its worker as nobody: let it reach
        # the socket and buffer bodies. Under OpenShift's arbitrary UID this changes nothing.
        self.run_dir.chmod(0o755)
        (self.run_dir / "temp").mkdir(mode=0o1777)
        (self.run_dir / "temp").chmod(0o1777)
        self.socket = self.run_dir / "gunicorn.sock"
        self.config = self.run_dir / "nginx.conf"
        self.config.write_text(nginx_config(settings, self.run_dir, self.socket))
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def start(self) -> None:
        cmd = [self.binary, "-e", "stderr", "-p", str(self.run_dir), "-c", str(self.config), "-g", "daemon off;"]
        self.proc = subprocess.Popen(cmd)  # same process group: stopping the service stops it too

    def reap(self) -> int | None:
        """nginx's exit status if it has exited (claimed before gunicorn reaps every child)."""
        if self.proc is None or self.proc.returncode is not None:
            return None
        try:
            pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode

    def stop(self, graceful: bool, timeout: float) -> None:
        """Stop nginx; gracefully, it first finishes the requests it holds."""
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None and self.reap() is None:
            proc.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ChildProcessError:  # reaped by gunicorn meanwhile
                pass

    def remove(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


def nginx_config(settings: Settings, run_dir: Path, upstream: Path) -> str:
    listen = str(settings.port) if settings.host == "0.0.0.0" else f"{settings.host}:{settings.port}"
    limit = settings.max_request_bytes

    def error(message: str) -> str:
        return json.dumps({"error": {"message": message, "column": None, "row": None}}, separators=(",", ":"))

    temp = run_dir / "temp"
    return f"""worker_processes 1;
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server_tokens off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  upstream gunicorn {{
    server unix:{upstream};
  }}
  server {{
    listen {listen};
    client_max_body_size {limit};
    client_body_buffer_size 1m;
    client_header_timeout {CLIENT_TIMEOUT_SECONDS}s;
    client_body_timeout {CLIENT_TIMEOUT_SECONDS}s;
    keepalive_timeout 5s;
    proxy_read_timeout {settings.timeout_seconds}s;
    proxy_send_timeout {settings.timeout_seconds}s;
    error_page 400 = @bad_request;
    error_page 413 = @too_large;
    error_page 502 504 = @unavailable;
    location @bad_request {{
      default_type application/json;
      return 400 '{error("malformed HTTP request (its headers or its chunked body framing)")}';
    }}
    location @too_large {{
      default_type application/json;
      return 413 '{error(f"request body over the limit of {limit} bytes")}';
    }}
    location @unavailable {{
      default_type application/json;
      return 503 '{error("the model did not answer in time; retry later")}';
    }}
    location / {{
      proxy_pass http://gunicorn;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


def _nginx_binary() -> str:
    binary = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        raise ServerError(
            f"nginx not found ({binary}): gunicorn serves only behind it (set NGINX to its path, "
            "install it, or serve with MODELGEN_SERVER=waitress)"
        )
    return binary


def _gunicorn(application: Any, settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer

    from app import metrics

    proxy = Proxy(settings, _nginx_binary())

    class ProxiedArbiter(Arbiter):
        def reap_workers(self) -> None:
            status = proxy.reap()
            super().reap_workers()
            if status is not None and not proxy.stopping:
                raise HaltServer(f"nginx exited with {status}", 1)

        def stop(self, graceful: bool = True) -> None:
            # nginx first: it stops accepting and finishes what it holds while the workers still run.
            proxy.stop(graceful, timeout=self.cfg.graceful_timeout)
            super().stop(graceful)

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"unix:{proxy.socket}",
                "workers": settings.workers,
                "worker_class": "sync",
                "preload_app": True,  # the model was loaded before the fork
                "timeout": settings.timeout_seconds,
                "graceful_timeout": 20,
                "control_socket_disable": True,  # it would write into $HOME, read-only on OpenShift
                # /tmp may be the only writable place (read-only root filesystem).
                "worker_tmp_dir": "/dev/shm" if _writable("/dev/shm") else None,
                "accesslog": "-" if settings.access_log else None,
                "errorlog": "-",
                "child_exit": lambda _server, worker: metrics.worker_exit(worker.pid),
                # nginx starts once the socket exists, so it never answers 502 for lack of one.
                "when_ready": lambda _server: proxy.start(),
            }
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return application

        def run(self) -> None:
            ProxiedArbiter(self).run()

    master = os.getpid()
    try:
        Server().run()
    finally:  # gunicorn could not start (or stopped without stopping nginx): no nginx outlives it
        # A worker leaves through here too (gunicorn forks it inside run() and ends it with
        # sys.exit): only the master owns nginx and the run folder.
        if os.getpid() == master:
            proxy.stop(graceful=False, timeout=5)
            proxy.remove()


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
