"""The generated Python service against hostile clients, over raw sockets, with its real servers.

gunicorn runs behind nginx (app/servers.py), waitress on its own: both must answer a body over
the limit with 413 whatever its framing, never score a body that ended early, keep answering
/ping and normal requests while idle and slow clients hold connections, and answer values no
column can hold with a 400 naming the column and row.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import Service, fetch_artifact, wait_until

pytestmark = pytest.mark.slow  # every test serves from the penguins project's own virtualenv

LIMIT = 300_000  # over the 200 KB of a 100,000-deep JSON document, small enough to exceed quickly
# A bound on each answer, not a measurement: an answer that waits for a slow client's worker to
# be freed (gunicorn's 60 s timeout) never comes within it.
ANSWER_SECONDS = 3


@pytest.fixture(scope="module")
def model_path(penguins_project, penguins_python, tmp_path_factory) -> Path:
    return fetch_artifact(penguins_project, penguins_python, tmp_path_factory.mktemp("model") / "model.joblib")


@pytest.fixture(scope="module", params=["gunicorn", "waitress"])
def service(request, penguins_project, penguins_python, model_path, tmp_path_factory) -> Iterator[Service]:
    env = {
        "MODELGEN_SERVER": request.param,
        "MODELGEN_WORKERS": "2",
        "MAX_REQUEST_BYTES": str(LIMIT),
        # Every request goes to the input log, which writes more than 50 rows with pandas.
        "MODELGEN_INPUT_LOG": str(tmp_path_factory.mktemp("inputs")),
        "MODELGEN_LOG_SAMPLE_RATE": "1",
    }
    started = Service(penguins_project, penguins_python, model_path, env=env).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sample(penguins_project) -> list[dict]:
    return json.loads((penguins_project / "tests/sample.json").read_text())


def _connect(service: Service) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=ANSWER_SECONDS)
    return sock


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server answered (413) and closed before the whole body was sent
        sock.sendall(data)


def _answer(sock: socket.socket) -> tuple[int | None, bytes]:
    """The status and body of the response on ``sock`` (sent with Connection: close); None for no response."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:  # reset after the response, or the bound passed
        pass
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        return None, data
    return int(head.split()[1]), body


def _post(service: Service, headers: dict[str, str], body: bytes, *, close_write: bool = False):
    sock = _connect(service)
    lines = ["POST /invocations HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    _send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    if close_write:  # the client is done sending: whatever the framing promised is all there is
        sock.shutdown(socket.SHUT_WR)
    return _answer(sock)


def _chunked(body: bytes, size: int = 16384, *, last: bool = True) -> bytes:
    pieces = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(pieces) + (b"0\r\n\r\n" if last else b"")


def _csv_rows(sample: list[dict], size: int) -> bytes:
    """Valid CSV rows of the penguins columns, a little over ``size`` bytes."""
    names = list(sample[0])
    complete = next(r for r in sample if all(v is not None for v in r.values()))
    line = ",".join(str(complete[n]) for n in names) + "\n"
    return (",".join(names) + "\n" + line * (size // len(line) + 1)).encode()


# ---------------------------------------------------------------- framing


def test_a_chunked_body_over_the_limit_is_413_and_never_scored(service, sample):
    body = _csv_rows(sample, LIMIT + 50_000)
    status, answer = _post(service, {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"}, _chunked(body))
    assert status == 413, answer[:300]
    assert b"predictions" not in answer
    # Under the limit the same framing is scored, every row of it.
    small = _csv_rows(sample, 20_000)
    status, answer = _post(service, {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"}, _chunked(small))
    assert status == 200, answer[:300]
    assert len(json.loads(answer)["predictions"]) == small.count(b"\n") - 1


def test_a_body_that_ends_early_is_never_scored(service, sample):
    # The client stops sending mid-body (a half-close: it could still read an answer). nginx and
    # waitress see the end of the stream and close without passing the request on; the app
    # itself answers 400 to a body shorter than its framing (test_service_hooks.py).
    body = _csv_rows(sample, 40_000)
    cut = body[: len(body) // 2]
    chunked = {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"}
    sized = {"Content-Type": "text/csv", "Content-Length": str(len(body))}
    for headers, sent in ((chunked, _chunked(cut, last=False)), (sized, cut)):
        status, answer = _post(service, headers, sent, close_write=True)
        assert status in (400, None) and b"predictions" not in answer, (headers, status, answer[:300])


def test_a_malformed_chunk_size_is_400(service, sample):
    body = _csv_rows(sample, 1000)
    framed = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
    status, answer = _post(service, {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"}, framed)
    assert status == 400, answer[:300]


# ---------------------------------------------------------------- slow clients


@contextmanager
def _slow_clients(service: Service, count: int) -> Iterator[list[socket.socket]]:
    """``count`` each of: idle sockets, sockets that sent headers and stopped, bodies trickled a byte at a time."""
    idle = [_connect(service) for _ in range(count)]
    head = b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\n"
    stalled = [_connect(service) for _ in range(count)]
    trickled = [_connect(service) for _ in range(count)]
    for sock in stalled + trickled:
        sock.sendall(head)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.05):
            for sock in trickled:
                sock.send(b"1")

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        yield idle + stalled + trickled
    finally:
        stop.set()
        sender.join()
        for sock in idle + stalled + trickled:
            sock.close()


def _still_connected(sock: socket.socket) -> bool:
    """Nothing received and not closed: the server is still waiting for this client."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def test_idle_and_slow_clients_never_delay_ping_or_a_request(service, sample):
    record = json.dumps(sample[:3]).encode()
    with _slow_clients(service, count=8) as slow:
        for _ in range(3):
            with urllib.request.urlopen(f"{service.url}/ping", timeout=ANSWER_SECONDS) as ping:
                assert ping.status == 200
            request = urllib.request.Request(
                f"{service.url}/invocations", data=record, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=ANSWER_SECONDS) as answer:
                assert len(json.loads(answer.read())["predictions"]) == 3
        # The answers came while every slow client was still connected, not after they were dropped.
        assert all(_still_connected(sock) for sock in slow)


# ---------------------------------------------------------------- values no column can hold


def _error(status_body: tuple[int | None, bytes]) -> tuple[int | None, dict]:
    status, body = status_body
    try:
        return status, json.loads(body)["error"]
    except (ValueError, KeyError):
        return status, {"message": body[:300].decode(errors="replace")}


def test_values_no_column_can_hold_are_400_naming_column_and_row(service, sample):
    row = next(r for r in sample if all(v is not None for v in r.values()))
    names = list(row)
    json_type = {"Content-Type": "application/json"}
    many = [dict(row) for _ in range(60)]  # over the 50 rows the input log writes with json
    many[55]["island"] = "\ud800"
    csv_year = ",".join(names) + "\n" + ",".join("99999999999999999999" if n == "year" else str(row[n]) for n in names)
    cases = [
        # (case, headers, body, column, row, words in the message)
        ("nested 100,000 deep", json_type, b"[" * 100_000 + b"]" * 100_000, None, None, "nested too deeply"),
        (
            "10**400 in a number column",
            json_type,
            _records([dict(row, bill_length_mm=10**400)]),
            "bill_length_mm",
            0,
            "too large",
        ),
        ("2**63 in an integer column", json_type, _records([row, dict(row, year=2**63)]), "year", 1, "out of range"),
        ("1e300 in an integer column", json_type, _records([dict(row, year=1e300)]), "year", 0, "out of range"),
        ("CSV 99999999999999999999 year", {"Content-Type": "text/csv"}, csv_year.encode(), "year", 0, "out of range"),
        ("a lone surrogate in row 55 of 60", json_type, _records(many), "island", 55, "not valid Unicode"),
    ]
    failures = []
    for case, headers, body, column, at, words in cases:
        status, error = _error(_post(service, {**headers, "Content-Length": str(len(body))}, body))
        if (status, error.get("column"), error.get("row")) != (400, column, at) or words not in error["message"]:
            failures.append(f"{case}: got {status} {error}")
    assert not failures, "\n".join(failures)
    # The same 60 rows without the surrogate are scored and logged: the service is fine.
    many[55]["island"] = row["island"]
    status, body = _post(service, {**json_type, "Content-Length": str(len(_records(many)))}, _records(many))
    assert status == 200 and len(json.loads(body)["predictions"]) == 60


def _records(rows: list[dict]) -> bytes:
    return json.dumps(rows).encode()


def _children(pid: int) -> dict[int, str]:
    """The child processes of ``pid`` and their names, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
            if int(fields[1]) == pid:
                found[int(stat.parent.name)] = name
    return found


def test_a_worker_that_exits_leaves_nginx_and_the_service_up(penguins_project, penguins_python, model_path, sample):
    env = {"MODELGEN_SERVER": "gunicorn", "MODELGEN_WORKERS": "2"}
    service = Service(penguins_project, penguins_python, model_path, env=env).start()
    try:
        workers = wait_until(  # /ping answers once one worker is up; the second may still be forking
            lambda: {pid for pid, name in _children(service.proc.pid).items() if name != "nginx"},
            lambda found: len(found) == 2,
            timeout=30,
            message="gunicorn did not start two workers",
        )
        victim = min(workers)
        os.kill(victim, signal.SIGTERM)  # a graceful worker exit, as max-requests or a timeout restart makes
        # gunicorn forks a replacement; the worker's exit must not stop nginx or remove its socket.
        wait_until(
            lambda: {p for p, n in _children(service.proc.pid).items() if n != "nginx"} - {victim},
            lambda now: len(now) == 2,
            timeout=30,
            message="gunicorn did not replace the worker",
        )
        assert service.proc.poll() is None
        assert "nginx" in _children(service.proc.pid).values()
        for _ in range(4):
            assert service.request("GET", "/ping", timeout=5).status == 200
        body = json.dumps(sample[:2]).encode()
        assert service.request("POST", "/invocations", body, {"Content-Type": "application/json"}).status == 200
    finally:
        service.stop()
