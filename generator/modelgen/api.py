"""The public entry points, as one-call pipelines of the steps in their own modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelgen.manifest import load
from modelgen.render.output import write_project
from modelgen.render.pipeline import project_files


@dataclass(frozen=True)
class Generated:
    path: Path
    changed: bool
    files: int


def generate(manifest_path: str | Path, output_dir: str | Path) -> Generated:
    """Validate a manifest, render its project and write it to ``output_dir/<name>``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "sample.json").write_text('[{"tenure_months": 3}]')
    >>> _ = (folder / "model.yaml").write_text('''
    ... apiVersion: modelgen/v1
    ... kind: Model
    ... metadata: {name: churn, version: 1.0.0, owner: jane.doe@example.com}
    ... spec:
    ...   runtime: python
    ...   task: classification
    ...   artifact:
    ...     uri: https://nexus.example.com/repository/models/churn/1.0.0/model.joblib
    ...     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    ...     format: joblib
    ...   requirements: [scikit-learn==1.5.2]
    ...   input: [{name: tenure_months, type: integer}]
    ...   output: {type: probabilities, classes: ["no", "yes"]}
    ...   sample: sample.json
    ... ''')
    >>> generated = generate(folder / "model.yaml", folder / "out")
    >>> generated.path == folder / "out" / "churn", generated.changed, (generated.path / "Dockerfile").is_file()
    (True, True, True)
    >>> generate(folder / "model.yaml", folder / "out").changed  # the same manifest again: nothing to write
    False
    """
    manifest = load(manifest_path)
    files = project_files(manifest)
    target = Path(output_dir) / manifest.name
    return Generated(target, write_project(files, target), len(files))
