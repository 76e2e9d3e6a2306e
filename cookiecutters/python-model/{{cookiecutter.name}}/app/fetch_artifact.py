"""Init container: download the artifact into the shared volume and check its sha256.

``python -m app.fetch_artifact`` with ARTIFACT_URI, ARTIFACT_SHA256 and MODEL_PATH; optional
REGISTRY_USERNAME / REGISTRY_PASSWORD for basic auth (from a Secret, never from Git).
Writes to a temporary file and renames it, so the service never sees a partial artifact.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

RETRIES = 4


def fetch(uri: str, sha256: str, target: Path, username: str = "", password: str = "") -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        shutil.copyfile(unquote(parsed.path), partial)
    else:
        _download(uri, partial, username, password)
    digest = hashlib.sha256()
    with partial.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256.lower():
        partial.unlink()
        raise SystemExit(f"sha256 mismatch for {uri}: got {digest.hexdigest()}, expected {sha256}")
    os.replace(partial, target)


def _download(uri: str, partial: Path, username: str, password: str) -> None:
    req = urllib.request.Request(uri)
    if username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    for attempt in range(1, RETRIES + 1):
        try:
            with urllib.request.urlopen(req, timeout=60) as resp, partial.open("wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
            return
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt == RETRIES:
                raise SystemExit(f"download of {uri} failed: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            if attempt == RETRIES:
                raise SystemExit(f"download of {uri} failed: {err}") from None
        time.sleep(2**attempt)


def main() -> None:
    env = os.environ
    missing = [k for k in ("ARTIFACT_URI", "ARTIFACT_SHA256", "MODEL_PATH") if not env.get(k)]
    if missing:
        sys.exit(f"missing environment variable(s): {', '.join(missing)}")
    fetch(
        env["ARTIFACT_URI"],
        env["ARTIFACT_SHA256"],
        Path(env["MODEL_PATH"]),
        env.get("REGISTRY_USERNAME", ""),
        env.get("REGISTRY_PASSWORD", ""),
    )
    print(f"fetched {env['ARTIFACT_URI']} -> {env['MODEL_PATH']} (sha256 ok)")


if __name__ == "__main__":
    main()
