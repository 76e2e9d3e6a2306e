"""modelgen: a trained tabular model in, a GitOps-managed prediction service out.

>>> import modelgen
>>> modelgen.generate("model.yaml", "out")  # doctest: +SKIP
PosixPath('out/penguin-species')
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelgen.api import generate  # noqa: E402
from modelgen.errors import ManifestError, ModelgenError  # noqa: E402
from modelgen.manifest import load  # noqa: E402

__all__ = ["ManifestError", "ModelgenError", "__version__", "generate", "load"]
