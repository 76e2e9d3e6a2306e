"""A rendered project's own batch entry point, run over rows: how modelgen scores with the service's code.

``python -m app.batch IN OUT`` (``Rscript app/batch.R IN OUT`` for R) in a private copy of the
project, with the artifact beside ``app/`` as ``model.<format>``: the same checks of the rows,
the same artifact loading (sha256 pinned by the contract) and the same prediction hooks as the
service. The reference profile scores its rows this way, and ``deploy()`` checks its round trip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgen.manifest import Manifest
from modelgen.render.templates import CODE_DIR, Files, context, render_inputs, render_verbatim, templates_dir

TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class BatchRun:
    """How the entry point ended: its exit code (-1 when it could not run), its CSV, its last error line."""

    returncode: int
    predictions: str | None
    error: str


def scoring_project(manifest: Manifest) -> Files:
    """The files the batch entry point needs: the project rendered without monitoring, and its code modules.

    The service's code does not depend on monitoring, so this scores exactly as the full project.
    """
    project = render_inputs(context(manifest), templates_dir())
    project.update({p: d for p, d in render_verbatim(manifest).items() if p.startswith(f"{CODE_DIR}/")})
    return project


def run_batch(
    project: Files, runtime: str, artifact: bytes, artifact_format: str, rows: bytes, suffix: str
) -> BatchRun:
    """Score ``rows`` (CSV with a header when ``suffix`` is ".csv", else JSON as /invocations takes it)."""
    with tempfile.TemporaryDirectory(prefix="modelgen-batch-") as tmp:
        root = Path(tmp)
        for rel, content in project.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
        (root / f"model.{artifact_format}").write_bytes(artifact)
        (root / f"rows{suffix}").write_bytes(rows)
        if runtime == "python":
            command = [sys.executable, "-m", "app.batch", f"rows{suffix}", "predictions.csv"]
        else:
            command = ["Rscript", "app/batch.R", f"rows{suffix}", "predictions.csv"]
        # The project's own defaults (model.<format> beside app/, the pinned sha256) and only the
        # project on the path: what the service has, not what the caller's environment adds.
        env: dict[str, Any] = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "MODEL_SHA256")}
        env["PYTHONPATH"] = str(root)
        try:
            done = subprocess.run(
                command, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return BatchRun(-1, None, str(err))
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        output = root / "predictions.csv"
        text = output.read_text("utf-8") if done.returncode == 0 and output.is_file() else None
        return BatchRun(done.returncode, text, last)
