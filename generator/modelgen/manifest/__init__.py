"""The manifest (``model.yaml``): its JSON Schema, the one reader that types it, the rules the
schema cannot state, and the writers that produce a manifest from a trained model.

``loader`` reads (``document`` → ``validate`` → ``rules`` → ``model``); ``messages`` words the
problems; ``infer`` and ``writer`` make a manifest from a trained model; ``docs`` documents it.
"""

from modelgen.manifest.loader import NamedFiles, load, load_text, named_files
from modelgen.manifest.messages import PATTERN_MEANINGS
from modelgen.manifest.model import (
    Artifact,
    Column,
    Environment,
    Manifest,
    Monitoring,
    OnnxArtifact,
    Output,
    Serving,
    Training,
)
from modelgen.manifest.validate import default, schema

__all__ = [
    "PATTERN_MEANINGS",
    "Artifact",
    "Column",
    "Environment",
    "Manifest",
    "Monitoring",
    "NamedFiles",
    "OnnxArtifact",
    "Output",
    "Serving",
    "Training",
    "load",
    "load_text",
    "named_files",
    "default",
    "schema",
]
