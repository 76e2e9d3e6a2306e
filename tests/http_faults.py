"""An HTTP server on 127.0.0.1 that misbehaves on purpose, one way per request, and counts requests.

Each request gets the next of ``faults`` (the last one repeats): ``ok`` serves the body, ``500``
fails, ``stall`` sends the headers and then nothing, ``trickle`` a byte a second, ``chunked-cut``
a chunked body without its last chunk, ``length-cut`` half the body its Content-Length promised,
``gzip`` the body gzip-encoded although the client did not ask for it.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("ok", "500", "stall", "trickle", "chunked-cut", "length-cut", "gzip")


class FaultyServer:
    def __init__(self, body: bytes, *faults: str) -> None:
        assert faults and set(faults) <= set(FAULTS), faults
        self.body, self.faults = body, faults
        self.requests: list[dict[str, str]] = []  # the headers of each request seen
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/models/demo/1.0.0/model.bin"

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def next_fault(self, headers: dict[str, str]) -> str:
        with self._lock:
            self.requests.append(headers)
            return self.faults[min(len(self.requests), len(self.faults)) - 1]


def _handler(server: FaultyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            fault = server.next_fault(dict(self.headers.items()))
            body = server.body
            if fault == "500":
                self._head(500, {"Content-Length": "0"})
            elif fault == "ok":
                self._head(200, {"Content-Length": str(len(body))})
                self.wfile.write(body)
            elif fault == "gzip":
                packed = gzip.compress(body)
                self._head(200, {"Content-Length": str(len(packed)), "Content-Encoding": "gzip"})
                self.wfile.write(packed)
            elif fault == "length-cut":
                self._head(200, {"Content-Length": str(len(body))})
                self.wfile.write(body[: len(body) // 2])
            elif fault == "chunked-cut":
                self._head(200, {"Transfer-Encoding": "chunked"})
                half = body[: len(body) // 2]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))  # no further chunks, no 0-chunk
            elif fault == "stall":
                self._head(200, {"Content-Length": str(len(body))})
                server.stopped.wait()
            elif fault == "trickle":
                self._head(200, {"Content-Length": str(len(body))})
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if server.stopped.wait(1):
                        break
            self.close_connection = True

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()

    return Handler
