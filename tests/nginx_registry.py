"""nginx from Debian as the HTTP model registry: Nexus' raw repository API (PUT/GET, basic auth).

Like a Nexus raw repository with "disable redeploy", a PUT over an existing artifact gets 409.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from support import free_port, wait_until

USER, PASSWORD = "ci", "s3cret"

CONF = """\
{user}worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log logs/access.log;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  server {{
    listen 127.0.0.1:{port};
    root data;
    client_max_body_size 2g;
    location /repository/ {{
      auth_basic "artifacts";
      auth_basic_user_file htpasswd;
      set $exists "";
      if (-f $request_filename) {{ set $exists 1; }}
      if ($request_method = PUT) {{ set $exists "${{exists}}P"; }}
      if ($exists = "1P") {{ return 409; }}
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }}
    # A repository this user may read but not write: PUT is 403, as in Nexus without the privilege.
    location /repository/readonly/ {{
      auth_basic "artifacts";
      auth_basic_user_file htpasswd;
      limit_except GET HEAD {{ deny all; }}
    }}
  }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@dataclass
class NginxRegistry:
    root: Path
    port: int
    process: subprocess.Popen

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/repository/models"

    def path(self, name: str, version: str, filename: str) -> Path:
        return self.root / "data" / "repository" / "models" / name / version / filename

    @classmethod
    def start(cls, root: Path, binary: str) -> NginxRegistry:
        for sub in ("data/repository/models", "tmp", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(["htpasswd", "-bc", root / "htpasswd", USER, PASSWORD], check=True, capture_output=True)
        port = free_port()
        # As root, nginx's workers would switch to "nobody", who cannot enter pytest's private tmp dirs.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(CONF.format(port=port, user=user))
        process = subprocess.Popen(
            [binary, "-p", root, "-c", root / "nginx.conf", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = cls(root, port, process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                return server  # it answers (404 outside /repository/)
            except OSError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError("nginx did not start")

    def logged(self) -> list[str]:
        """The access log, once it holds every request answered so far.

        nginx writes a request's line after the response: a request sent now, answered after all
        the earlier ones by the one worker, is logged after them too, so its line marks the end.
        """
        marker = f"/logged-{uuid.uuid4().hex}"
        with contextlib.suppress(urllib.error.HTTPError):  # 404: outside /repository/
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}{marker}", timeout=10)
        log = self.root / "logs" / "access.log"
        return wait_until(
            lambda: log.read_text().splitlines(),
            lambda lines: any(f"GET {marker} " in line for line in lines),
            message=f"nginx did not log GET {marker}",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
