"""modelgen: a trained tabular model in, a GitOps-managed prediction service out.

>>> import modelgen
>>> modelgen.generate("model.yaml", "out")  # doctest: +SKIP
PosixPath('out/penguin-species')
>>> modelgen.deploy(pipeline, "penguin-species", X.head(200))  # from a notebook  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelgen.api import generate  # noqa: E402
from modelgen.errors import ManifestError, ModelgenError  # noqa: E402
from modelgen.manifest import load  # noqa: E402
from modelgen.notebook.deploy import Deployment, deploy  # noqa: E402

__all__ = ["Deployment", "ManifestError", "ModelgenError", "__version__", "deploy", "generate", "load"]
