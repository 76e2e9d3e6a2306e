"""modelgen: a trained tabular model in, a GitOps-managed prediction service out.

``modelgen.generate(manifest_path, output_dir)`` writes the project a manifest (``model.yaml``)
describes; ``modelgen.deploy(pipeline, name, sample)`` ships a fitted model from a notebook: it
infers the manifest, uploads the artifact and pushes the project for review. Their docstrings
hold examples that run.
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelgen.api import generate  # noqa: E402
from modelgen.errors import ManifestError, ModelgenError  # noqa: E402
from modelgen.manifest import load  # noqa: E402
from modelgen.notebook.deploy import Deployment, deploy  # noqa: E402

__all__ = ["Deployment", "ManifestError", "ModelgenError", "__version__", "deploy", "generate", "load"]
