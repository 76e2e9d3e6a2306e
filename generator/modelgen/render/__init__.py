"""Manifest in, files out: the template context, the rendered ``{path: bytes}`` of a project,
the one writer that puts it on disk, and a generated project read back."""
