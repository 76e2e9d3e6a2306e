"""``modelgen retrain NAME``: run the model's training script, and bring the new artifact back
through the same path as ``deploy()`` — registry upload, manifest update, merge request.

The script (``spec.training.script``) is called with the training contract::

    script --hyperparameters FILE --data URI --output DIR

and writes ``model.<format>`` into DIR, optionally ``metrics.json`` (name → number) and a
reference sample (``reference.csv``/``.jsonl``/``.parquet``) for drift monitoring. It runs
locally in a subprocess (``--local``), or in the cluster as the project's
``training/job.yaml``, whose second container calls ``modelgen retrain NAME --from-output``.
Either way the result is a branch and a merge request showing the new metrics beside the old
ones; nothing is ever pushed to the target branch.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import math
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from modelgen.errors import RetrainError
from modelgen.gitops.merge_request import GitLabApi
from modelgen.gitops.repo import MODELS, GitopsRepo, Published, publish_model
from modelgen.manifest import Manifest, load
from modelgen.manifest.writer import edited_manifest
from modelgen.registry.backends import registry_for
from modelgen.render.project import project_manifest

REFERENCES = ("reference.csv", "reference.jsonl", "reference.parquet")


@dataclass(frozen=True)
class Retrained:
    name: str
    old_version: str
    version: str
    uri: str
    sha256: str
    old_metrics: dict[str, float]
    metrics: dict[str, float]
    published: Published


def retrain(
    repo: GitopsRepo,
    name: str,
    *,
    workdir: Path,
    from_output: Path | None = None,
    registry: str | None = None,
    merge_request: bool = False,
    api: GitLabApi | None = None,
) -> Retrained:
    """Retrain model ``name`` of the GitOps repository (or take ``from_output``, a finished run)."""
    files = repo.files(f"{MODELS}/{name}/")
    if not files:
        raise RetrainError(f"no model {name!r} in {repo.url} (see `modelgen list`)")
    with project_manifest(files, f"{MODELS}/{name}") as manifest:
        training = manifest.training
        if training is None:
            raise RetrainError(f"{MODELS}/{name}/model.yaml has no spec.training (script, data, hyperparameters)")
        # The registry first: one that cannot be used (say, credentials in its URL) is refused before training.
        store = registry_for(registry or training.registry or registry_root(manifest.artifact.uri))
        output = from_output or run_script(manifest, workdir / "output")
        artifact_name = manifest.artifact.filename
        artifact = _read(output / artifact_name, f"the training script wrote no {artifact_name} into {output}")
        metrics = read_metrics(output)

        from modelgen.notebook.deploy import next_version

        version = next_version(name, repo, store, manifest.artifact.format)
        published_artifact = store.publish(name, version, artifact_name, artifact)
        reference = None
        if manifest.monitoring:
            reference = _publish_reference(manifest, output, store, version)

        old_metrics = dict(manifest.provenance.get("metrics") or {})
        text = updated_manifest(
            manifest,
            version=version,
            uri=published_artifact.uri,
            sha256=published_artifact.sha256,
            metrics=metrics,
            reference=reference,
        )
        manifest.path.write_text(text, "utf-8")
        new = load(manifest.path)
        notes = metrics_table(manifest.version, old_metrics, version, metrics)
        published = publish_model(repo, new, merge_request=merge_request, api=api, notes=notes)
    uri, sha256 = published_artifact.uri, published_artifact.sha256
    return Retrained(name, manifest.version, version, uri, sha256, old_metrics, metrics, published)


def run_script(manifest: Manifest, output: Path) -> Path:
    """Run ``spec.training.script`` locally with the training contract; returns its output folder."""
    training = manifest.training
    script = manifest.base_dir / training.script
    output.mkdir(parents=True, exist_ok=True)
    hyperparameters = output.parent / "hyperparameters.json"
    hyperparameters.write_text(json.dumps(training.hyperparameters, indent=1) + "\n", "utf-8")
    interpreter = [sys.executable] if manifest.runtime == "python" else ["Rscript"]
    command = [*interpreter, str(script), "--hyperparameters", str(hyperparameters)]
    command += ["--data", training.data, "--output", str(output)]
    print(f"training: {' '.join(command)}", file=sys.stderr)
    try:
        # The script's own output goes to the user's terminal: training logs are theirs to read.
        done = subprocess.run(command, cwd=manifest.base_dir, check=False)
    except OSError as err:
        raise RetrainError(f"cannot run {training.script}: {err}") from err
    if done.returncode != 0:
        raise RetrainError(f"training script {training.script} failed (exit {done.returncode}); nothing published")
    return output


def read_metrics(output: Path) -> dict[str, float]:
    path = output / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except ValueError as err:
        raise RetrainError(f"{path} is not JSON: {err}") from err
    if not isinstance(data, dict) or not all(_number(v) for v in data.values()):
        raise RetrainError(f'{path} must map metric names to numbers, e.g. {{"accuracy": 0.97}}')
    return {str(k): float(v) for k, v in sorted(data.items())}


def registry_root(uri: str) -> str:
    """The registry an artifact URI is in, when it has the registry's ``NAME/VERSION/FILE`` layout."""
    return uri.rsplit("/", 3)[0]


def updated_manifest(
    manifest: Manifest,
    *,
    version: str,
    uri: str,
    sha256: str,
    metrics: dict[str, float],
    reference: str | None,
) -> str:
    """The manifest text with the new version, artifact and provenance; comments and layout kept."""
    training = manifest.training

    def edit(doc: Any) -> None:
        doc["metadata"]["version"] = version
        doc["spec"]["artifact"]["uri"] = uri
        doc["spec"]["artifact"]["sha256"] = sha256
        provenance = doc["metadata"].setdefault("provenance", {})
        provenance["data"] = training.data
        provenance["parameters"] = _flow(training.hyperparameters)
        if metrics:
            provenance["metrics"] = _flow(metrics)
        elif "metrics" in provenance:
            del provenance["metrics"]  # the old model's numbers would be read as the new one's
        provenance["trainedBy"] = f"{getpass.getuser()}@{socket.gethostname()}"
        provenance["trainedAt"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        provenance["source"] = training.script
        if reference is not None:
            doc["spec"]["monitoring"]["reference"] = reference

    return edited_manifest(manifest.text, edit)


def metrics_table(old_version: str, old: dict[str, float], version: str, new: dict[str, float]) -> str:
    """The merge request's comparison, as a Markdown table (GitLab renders it)."""
    names = sorted(set(old) | set(new))
    if not names:
        return "The training script reported no metrics (metrics.json)."
    lines = [f"| metric | {old_version} (now) | {version} (retrained) | change |", "|---|---:|---:|---:|"]
    for metric in names:
        before, after = old.get(metric), new.get(metric)
        change = f"{after - before:+.4g}" if before is not None and after is not None else ""
        lines.append(f"| {metric} | {_show(before)} | {_show(after)} | {change} |")
    return "\n".join(lines)


def _publish_reference(manifest: Manifest, output: Path, store: Any, version: str) -> str | None:
    for filename in REFERENCES:
        if (output / filename).is_file():
            return store.publish(manifest.name, version, filename, (output / filename).read_bytes()).uri
    current = manifest.monitoring.reference
    if current.startswith(("http://", "https://", "file://")):
        return None  # a shared reference the new model is compared with as well
    raise RetrainError(
        f"spec.monitoring.reference is {current!r}, a file beside the original manifest that the GitOps "
        f"repository does not hold: let the training script write one of {', '.join(REFERENCES)} "
        "into its output folder, or point spec.monitoring.reference at a URI"
    )


def _flow(mapping: dict[str, Any]) -> CommentedMap:
    """A small mapping on one line, as modelgen writes manifests (``{accuracy: 0.97}``)."""
    node = CommentedMap(mapping)
    node.fa.set_flow_style()
    return node


def _read(path: Path, missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RetrainError(missing) from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"
