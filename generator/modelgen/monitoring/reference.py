"""The reference profile of a manifest with ``spec.monitoring``: its reference rows read, scored
by the generated project's own code, and profiled (``drift.profile``).

Scoring runs the project's batch entry point (``python -m app.batch`` or ``Rscript
app/batch.R``, through ``render.batch``) in a subprocess over a private copy of the project, so the prediction
distribution comes from exactly the code and artifact the service will run. The profile is
then stored in the project (``deploy/base/monitoring/profile.json``) and never recomputed from a
project: upgrades and validation need neither the reference file nor the model.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelgen.errors import ModelgenError
from modelgen.manifest import Manifest
from modelgen.render.batch import run_batch, scoring_project
from modelgen.render.contract import MONITORED, NUMERIC_FIELDS
from modelgen.render.templates import Files


def reference_profile(manifest: Manifest) -> dict[str, Any]:
    """Profile ``spec.monitoring.reference`` of ``manifest``, predictions included."""
    from modelgen.monitoring.drift import profile

    rows, where = reference_rows(manifest)
    columns = profile_columns(manifest, rows, f"spec.monitoring.reference {where}")
    if not len(rows):
        raise ModelgenError(f"{manifest.path}: spec.monitoring.reference {where} has no rows")
    predictions = score(manifest, scoring_project(manifest), rows[[c["name"] for c in columns]])
    return profile(rows, columns, predictions)


def profile_columns(manifest: Manifest, rows: Any, where: str) -> list[dict[str, Any]]:
    """The input columns as ``drift.profile`` takes them, once ``rows`` (named by ``where``) has each."""
    columns = [{"name": c.name, "type": c.type, "categories": list(c.categories or [])} for c in manifest.columns]
    missing = [c["name"] for c in columns if c["name"] not in rows.columns]
    if missing:
        raise ModelgenError(
            f"{manifest.path}: {where} has no column(s) {', '.join(missing)} "
            "(allowed: a file with every input column of spec.input)"
        )
    return columns


def reference_rows(manifest: Manifest) -> tuple[Any, str]:
    """The reference rows as a DataFrame, and where they came from (for messages)."""
    from modelgen.monitoring.inputs import read_rows

    reference = manifest.monitoring.reference
    parts = urlsplit(reference)
    if parts.scheme in ("http", "https"):
        import requests

        from modelgen.registry.backends import PASSWORD_VARIABLE, USERNAME_VARIABLE

        # The registry's credentials if set (else requests falls back to ~/.netrc).
        user, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
        try:
            response = requests.get(reference, timeout=60, auth=(user, password) if user and password else None)
        except requests.RequestException as err:
            raise ModelgenError(f"{manifest.path}: spec.monitoring.reference {reference}: {err}") from err
        if response.status_code != 200:
            raise ModelgenError(
                f"{manifest.path}: spec.monitoring.reference {reference} answered HTTP {response.status_code}"
            )
        with tempfile.TemporaryDirectory(prefix="modelgen-reference-") as tmp:
            path = Path(tmp) / Path(parts.path).name
            path.write_bytes(response.content)
            return read_rows(path), reference
    path = Path(parts.path) if parts.scheme == "file" else manifest.base_dir / reference
    if not path.is_file():
        raise ModelgenError(
            f"{manifest.path}: spec.monitoring.reference: file {reference!r} not found "
            "(allowed: a .csv, .jsonl or .parquet file relative to the manifest, file:// or http(s):// URI)"
        )
    return read_rows(path), reference


def score(manifest: Manifest, project: Files, rows: Any) -> list[Any]:
    """The monitored prediction of each reference row, from the project's batch entry point."""
    from modelgen.registry.backends import fetch

    artifact = manifest.artifact
    data = fetch(artifact.uri, artifact.sha256)
    done = run_batch(project, manifest.runtime, data, artifact.format, rows.to_csv(index=False).encode("utf-8"), ".csv")
    if done.returncode == -1:
        raise ModelgenError(f"{manifest.path}: cannot score the monitoring reference: {done.error}")
    if done.returncode != 0 or done.predictions is None:
        raise ModelgenError(
            f"{manifest.path}: scoring spec.monitoring.reference with the model failed "
            f"(exit {done.returncode}): {done.error}. The profile needs the model's {manifest.runtime} "
            "requirements installed where modelgen runs."
        )
    column = MONITORED[manifest.output.type]
    values = [record[column] for record in csv.DictReader(io.StringIO(done.predictions))]
    if column in NUMERIC_FIELDS:
        return [float(v) for v in values]
    return values
