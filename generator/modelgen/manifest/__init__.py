"""The manifest (``model.yaml``): its JSON Schema, the one reader that types it, the rules the
schema cannot state, and the writers that produce a manifest from a trained model."""

from modelgen.manifest.loader import Column, Environment, Manifest, load, schema

__all__ = ["Column", "Environment", "Manifest", "load", "schema"]
