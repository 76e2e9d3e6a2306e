"""How a download from a model registry is retried and when it gives up: written down once, as data.

Three clients fetch artifacts: modelgen's ``HttpRegistry`` and the two init containers of a
generated project (``app/fetch_artifact.py``, ``app/fetch_artifact.R``). ``HttpRegistry`` reads
``DOWNLOAD`` here; ``render.contract`` writes it into ``app/contract.json`` (``download``), where
both init containers read it, so the three cannot drift apart.

Retried: no connection, a connection reset, no byte for ``idleSeconds``, a body cut short (fewer
bytes than its Content-Length, or a chunked body without its last chunk) and the statuses in
``retryStatuses``; the ``backoffSeconds`` wait comes before attempts 2, 3, ... Never retried: any
other status and a complete body with the wrong sha256 (the server would send the same bytes
again). All attempts and waits together end by ``deadlineSeconds``, which the environment
variable each client names overrides. ``encoding``: the only Content-Encoding asked for, since
the sha256 is of the artifact's bytes (a gzip answer anyway is decoded).
"""

from __future__ import annotations

from typing import Any

DOWNLOAD: dict[str, Any] = {
    "attempts": 4,
    "backoffSeconds": [1, 2, 4],
    "retryStatuses": [408, 429, 500, 502, 503, 504],
    "idleSeconds": 30,
    "deadlineSeconds": 300,
    "encoding": "identity",
}
# Each client's override of deadlineSeconds (seconds, a number > 0).
INIT_DEADLINE_VARIABLE = "ARTIFACT_DEADLINE_SECONDS"
REGISTRY_DEADLINE_VARIABLE = "MODELGEN_REGISTRY_DEADLINE_SECONDS"


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
    waits = DOWNLOAD["backoffSeconds"]
    return float(waits[min(attempt, len(waits)) - 1])
