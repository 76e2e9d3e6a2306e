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
# Settings of a project's service that would point it away from its own files in the private copy.
PROJECT_VARIABLES = ("MODEL_PATH", "MODEL_SHA256", "ONNX_PATH", "ONNX_SHA256", "MODELGEN_ENGINE")


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
    if runtime == "python":
        command = [sys.executable, "-m", "app.batch", f"rows{suffix}", "predictions.csv"]
    else:
        command = ["Rscript", "app/batch.R", f"rows{suffix}", "predictions.csv"]
    files = {f"model.{artifact_format}": artifact, f"rows{suffix}": rows}
    # The artifact itself answers: a converted model answers the same (its parity gate said so).
    done = run_in_project(project, files, command, ("predictions.csv",), env={"MODELGEN_ENGINE": "native"})
    written = done.outputs.get("predictions.csv")
    text = written.decode("utf-8") if done.returncode == 0 and written is not None else None
    return BatchRun(done.returncode, text, done.error)


@dataclass(frozen=True)
class ProjectRun:
    """How a command in a private copy of a project ended: exit code (-1: could not run), the files
    it wrote of those asked for, its stdout, its last line on stderr."""

    returncode: int
    outputs: dict[str, bytes]
    stdout: str
    error: str


def run_in_project(
    project: Files,
    files: dict[str, bytes],
    command: list[str],
    outputs: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ProjectRun:
    """Run ``command`` in a private copy of ``project`` with ``files`` (the artifact, rows...) beside
    ``app/``, and ``env`` set; ``outputs`` are the files to bring back."""
    with tempfile.TemporaryDirectory(prefix="modelgen-project-") as tmp:
        root = Path(tmp)
        for rel, content in {**project, **files}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
        # The project's own defaults (model.<format> beside app/, the pinned sha256) and only the
        # project on the path: what the service has, not what the caller's environment adds.
        environment: dict[str, Any] = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
        environment.update(env or {}, PYTHONPATH=str(root))
        try:
            done = subprocess.run(
                command, cwd=root, env=environment, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return ProjectRun(-1, {}, "", str(err))
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        written = {name: (root / name).read_bytes() for name in outputs if (root / name).is_file()}
        return ProjectRun(done.returncode, written, done.stdout, last)
