"""The generate pipeline: a validated manifest in, every file of its project out.

The one step outside rendering is the reference profile: a manifest with ``spec.monitoring``
has its reference rows scored by the project's own code first (``monitoring.reference``).
"""

from __future__ import annotations

from typing import Any

from modelgen.manifest import Manifest
from modelgen.render.templates import Files, render


def project_files(manifest: Manifest, **options: Any) -> Files:
    """``render`` with the reference profile computed first when the manifest asks for monitoring."""
    from modelgen.monitoring.reference import reference_profile  # scores with pandas: only when asked

    return render(manifest, profile=reference_profile(manifest) if manifest.monitoring else None, **options)
