"""The generated service's own ``python -m app`` with gunicorn's gthread workers: a server variant to measure.

    cd PROJECT && python serve_gthread.py THREADS

The generated service runs gunicorn with sync workers and offers no setting for the worker class
(app/servers.py). To measure gthread without changing the project, this runs ``app.__main__``
unchanged and only has gunicorn's configuration answer ``worker_class = gthread`` and
``threads = THREADS`` where the service sets its worker class: the same nginx in front, the same
workers (MODELGEN_WORKERS), preload, timeouts and application. Started by bench/serving.py.
"""

import runpy
import sys

from gunicorn.config import Config

threads = int(sys.argv[1])
_set = Config.set


def _set_gthread(self, name, value):
    if name == "worker_class":
        _set(self, "threads", threads)
        value = "gthread"
    _set(self, name, value)


Config.set = _set_gthread
sys.path.insert(0, ".")
sys.argv = [sys.argv[0]]
runpy.run_module("app", run_name="__main__", alter_sys=True)
