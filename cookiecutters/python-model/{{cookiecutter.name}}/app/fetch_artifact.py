"""Init container: download the artifact into the shared volume and check its sha256.

``python -m app.fetch_artifact`` with ARTIFACT_URI, ARTIFACT_SHA256 and MODEL_PATH (and ONNX_URI,
ONNX_SHA256 and ONNX_PATH for a model converted to ONNX); optional REGISTRY_USERNAME /
REGISTRY_PASSWORD for basic auth (from a Secret, never from Git), and MODEL_CACHE_DIR (with
MODEL_CACHE_MAX_AGE_DAYS) for a cache shared by the pods (``fetch_cached``).
Writes to a temporary file and renames it, so the service never sees a partial artifact.

Retries and gives up as ``download`` in contract.json says (modelgen's one policy, which the R
init container and modelgen's HTTP registry follow too): connection failures, a silent server,
a body cut short and the ``retryStatuses`` are tried again after ``backoffSeconds``; everything
ends by ``deadlineSeconds`` (ARTIFACT_DEADLINE_SECONDS overrides it), however slowly the server
sends.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import unquote, urlparse

POLICY = json.loads((Path(__file__).resolve().parent / "contract.json").read_text(encoding="utf-8"))["download"]
DEADLINE_VARIABLE = "ARTIFACT_DEADLINE_SECONDS"
BLOCK = 1 << 16
# Decoders of the encodings a server may send although only POLICY["encoding"] was asked for.
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Retry(Exception):
    """A failure the next attempt may not have."""


class Deadline(BaseException):
    """The overall deadline passed (raised by SIGALRM wherever the download is, even mid-read)."""


def fetch(uri: str, sha256: str, target: Path, username: str = "", password: str = "", deadline: float = 0) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    parsed = urlparse(uri)
    try:
        if parsed.scheme == "file":
            shutil.copyfile(unquote(parsed.path), partial)
        else:
            _download(uri, partial, username, password, deadline or float(POLICY["deadlineSeconds"]))
        got = _sha256_of(partial)
        if got != sha256.lower():
            raise SystemExit(f"sha256 mismatch for {uri}: got {got}, expected {sha256}")
        _fsync(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def fetch_cached(
    uri: str, sha256: str, target: Path, cache: Path, username: str = "", password: str = "", deadline: float = 0
) -> str:
    """``fetch`` through ``cache``, a folder pods share (a ReadWriteMany volume); says how it went.

    Cached files are named by their sha256 and checked on every use. One pod at a time holds a
    file's lock, so pods starting together download it once: the first downloads (to a temporary
    name, fsynced, checked, renamed), the others wait and find it there. A cached file with other
    bytes (truncated, corrupted) is replaced, and said so; what reaches ``target`` is checked again
    while it is copied, so a wrong file never does.
    """
    sha256 = sha256.lower()
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / sha256
    with (cache / f"{sha256}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        how = "cache hit"
        if cached.is_file() and _sha256_of(cached) != sha256:
            cached.unlink()
            how = "replaced a corrupt cache file"
        if not cached.is_file():
            fetch(uri, sha256, cached, username, password, deadline)
            how = "downloaded into the cache" if how == "cache hit" else how
        os.utime(cached)  # in use: pruning keeps it
        _copy_checked(cached, target, sha256)
    return how


def prune(cache: Path, max_age_days: float) -> list[str]:
    """Delete cached files no pod has used for ``max_age_days`` (and not locked now); their names."""
    if not cache.is_dir():
        return []
    limit, pruned = time.time() - max_age_days * 86400, []
    for path in sorted(cache.iterdir()):
        if not re.fullmatch(r"[0-9a-f]{64}", path.name) or path.stat().st_mtime >= limit:
            continue
        with (cache / f"{path.name}.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a pod is fetching it right now
            if path.stat().st_mtime < limit:
                path.unlink()
                pruned.append(path.name)
    return pruned


def _copy_checked(source: Path, target: Path, sha256: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with source.open("rb") as read, partial.open("wb") as write:
            for block in iter(lambda: read.read(1 << 20), b""):
                digest.update(block)
                write.write(block)
        if digest.hexdigest() != sha256:
            raise SystemExit(f"the cached {source} changed while it was copied (sha256 {digest.hexdigest()})")
        _fsync(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def _download(uri: str, partial: Path, username: str, password: str, deadline: float) -> None:
    req = urllib.request.Request(uri, headers={"Accept-Encoding": POLICY["encoding"]})
    if username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    attempts, last = int(POLICY["attempts"]), "none"
    signal.signal(signal.SIGALRM, _deadline)
    signal.setitimer(signal.ITIMER_REAL, deadline)
    attempt = 0
    try:
        for attempt in range(1, attempts + 1):
            try:
                _attempt(req, partial)
                return
            except Retry as err:
                last = str(err)
            if attempt < attempts:
                waits = POLICY["backoffSeconds"]
                time.sleep(waits[min(attempt, len(waits)) - 1])
    except Deadline:
        raise SystemExit(
            f"download of {uri} did not finish within {deadline:g} s ({DEADLINE_VARIABLE}): attempt {attempt} "
            f"of {attempts}; last failure: {last}"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    raise SystemExit(f"download of {uri} failed after {attempts} attempts: {last}")


def _deadline(signum, frame) -> None:
    raise Deadline


def _attempt(req: urllib.request.Request, partial: Path) -> None:
    """One GET into ``partial``; Retry for what the policy retries, SystemExit for what it does not."""
    try:
        with urllib.request.urlopen(req, timeout=float(POLICY["idleSeconds"])) as resp, partial.open("wb") as out:
            encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("identity", *WBITS):
                raise SystemExit(f"download of {req.full_url} failed: unsupported Content-Encoding {encoding!r}")
            decoder = zlib.decompressobj(WBITS[encoding]) if encoding in WBITS else None
            length = resp.headers.get("Content-Length")
            received = 0
            # read1: whatever one read brings, so a trickle of bytes cannot wait out a whole block.
            while block := resp.read1(BLOCK):
                received += len(block)
                out.write(decoder.decompress(block) if decoder else block)
            if length is not None and not resp.chunked and received != int(length):
                raise Retry(f"the body ended after {received} of its {length} bytes (Content-Length)")
            if decoder:
                out.write(decoder.flush())
                if not decoder.eof:
                    raise Retry(f"the {encoding} body ended before its end")
    except urllib.error.HTTPError as err:
        if err.code in POLICY["retryStatuses"]:
            raise Retry(f"HTTP {err.code} {err.reason}") from None
        raise SystemExit(f"download of {req.full_url} failed: HTTP {err.code} {err.reason}") from None
    except http.client.IncompleteRead:
        raise Retry("the chunked body ended before its last chunk") from None
    except zlib.error as err:
        raise Retry(f"the encoded body is corrupt: {err}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        if isinstance(reason, TimeoutError):
            reason = f"no byte within {POLICY['idleSeconds']} s"
        raise Retry(str(reason) or type(err).__name__) from None


def main() -> None:
    env = os.environ
    missing = [k for k in ("ARTIFACT_URI", "ARTIFACT_SHA256", "MODEL_PATH") if not env.get(k)]
    if missing:
        sys.exit(f"missing environment variable(s): {', '.join(missing)}")
    deadline = env.get(DEADLINE_VARIABLE, "")
    try:
        seconds = float(deadline) if deadline else float(POLICY["deadlineSeconds"])
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 1e6:
        sys.exit(f"{DEADLINE_VARIABLE} must be a number of seconds above 0, not {deadline!r}")
    # The ONNX conversion, when there is one, comes too: MODELGEN_ENGINE may switch between the two.
    wanted = [("ARTIFACT_URI", "ARTIFACT_SHA256", "MODEL_PATH")]
    if env.get("ONNX_URI"):
        missing = [k for k in ("ONNX_SHA256", "ONNX_PATH") if not env.get(k)]
        if missing:
            sys.exit(f"ONNX_URI is set, but not {', '.join(missing)}")
        wanted.append(("ONNX_URI", "ONNX_SHA256", "ONNX_PATH"))
    cache = Path(env["MODEL_CACHE_DIR"]) if env.get("MODEL_CACHE_DIR") else None
    if cache is not None:
        max_age = env.get("MODEL_CACHE_MAX_AGE_DAYS") or "30"
        for name in prune(cache, float(max_age)):
            print(f"pruned {cache / name} (unused for {max_age} days)")
    credentials = (env.get("REGISTRY_USERNAME", ""), env.get("REGISTRY_PASSWORD", ""))
    for uri, sha256, path in wanted:
        if cache is None:
            fetch(env[uri], env[sha256], Path(env[path]), *credentials, seconds)
            print(f"fetched {env[uri]} -> {env[path]} (sha256 ok)")
        else:
            how = fetch_cached(env[uri], env[sha256], Path(env[path]), cache, *credentials, seconds)
            print(f"fetched {env[uri]} -> {env[path]} (sha256 ok; {how})")


if __name__ == "__main__":
    main()
