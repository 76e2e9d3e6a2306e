"""The one reader of ``model.yaml``: parse with line numbers, check against the schema and the
rules, and build the typed ``Manifest``.

Validation reports every problem at once, each as ``FILE:LINE: field.path: what is wrong
(what is allowed)``, so a data scientist fixes a manifest in one round trip.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from modelgen.errors import ManifestError, Problem
from modelgen.manifest import rules
from modelgen.manifest.document import check_expansion, parse, plain
from modelgen.manifest.model import Manifest
from modelgen.manifest.validate import schema, schema_problems


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest with the files it names; raise ``ManifestError`` listing every problem.

    >>> from modelgen.manifest.docs import write_example
    >>> m = load(write_example())
    >>> m.name, m.task, [e.name for e in m.environments], m.serving.server
    ('penguin-species', 'classification', ['dev', 'prod'], 'gunicorn')
    """
    path = Path(path)
    label = str(path)
    text = read_manifest_text(path, label)
    return _checked(text, label, path.resolve().parent, path.name, path.resolve())


# A manifest is a few kilobytes; anything far larger is not one, and is not read whole.
MAX_MANIFEST_BYTES = 1024 * 1024


def read_manifest_text(path: Path, label: str) -> str:
    """The text of the manifest at ``path``: a regular file of at most ``MAX_MANIFEST_BYTES``, in UTF-8.

    A FIFO or a device (a symlink to /dev/zero) is refused before it is opened for reading,
    so neither blocks nor fills memory.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError([Problem(label, None, "", "not a regular file (allowed: a YAML file)")])
        if info.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError([_too_large(label, info.st_size)])
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)  # the file may have grown since stat
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError([_too_large(label, len(data))])
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ManifestError([Problem(label, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError([Problem(label, None, "", f"cannot read file ({err})")]) from None


def _too_large(label: str, size: int) -> Problem:
    limit = MAX_MANIFEST_BYTES // 1024
    return Problem(label, None, "", f"the file has {size:,} bytes (allowed: at most {limit:,} KiB)")


def load_text(text: str, where: str) -> Manifest:
    """A manifest read without the files it names (e.g. one at a commit of the GitOps repository):
    the schema and every rule not about files are checked; ``sample`` is empty.

    >>> from modelgen.manifest.docs import EXAMPLE
    >>> m = load_text(EXAMPLE, "models/penguin-species/model.yaml")
    >>> m.version, m.artifact.format, m.sample
    ('1.2.0', 'joblib', [])
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError([_too_large(where, len(text))])
    return _checked(text, where, None, Path(where).name, Path(where))


def _checked(text: str, label: str, base: Path | None, manifest_name: str, path: Path) -> Manifest:
    doc = parse(text, label)
    values = plain(doc)  # once: the schema check, the rules and the typed manifest all read it
    problems, bad = schema_problems(doc, values, label)
    checked = rules.check(rules.Checked(doc, values, label, bad, base, manifest_name))
    problems.extend(checked.problems)
    if problems:
        unique = list(dict.fromkeys(problems))  # one oneOf branch can repeat a sibling's finding
        unique.sort(key=lambda p: (p.line or 0, p.path))
        raise ManifestError(unique)
    return Manifest.of(values, schema(), path=path, text=text, sample=checked.sample)


@dataclass(frozen=True)
class NamedFiles:
    """The files a manifest names relative to its folder, as written (each may be missing)."""

    sample: str | None
    code: tuple[str, ...]
    script: str | None
    reference: str | None  # None also when the reference is a URI

    def __iter__(self):
        yield from (rel for rel in (self.sample, *self.code, self.script, self.reference) if rel)


def named_files(text: str | bytes) -> NamedFiles:
    """What ``text`` names beside it, read leniently: a manifest too broken to say is ``load``'s to
    report (with its lines), so this answers with nothing rather than an error.

    >>> named_files("spec: {sample: s.json, code: [t.py], monitoring: {reference: https://x/r.csv}}")
    NamedFiles(sample='s.json', code=('t.py',), script=None, reference=None)
    """
    try:
        # Bounded as load() bounds it: the same size limit, and aliases that would expand it refused.
        doc = YAML(typ="safe").load(text) if len(text) <= MAX_MANIFEST_BYTES else None
        if doc is not None:
            check_expansion(doc, "")
    except (YAMLError, ValueError, RecursionError, ManifestError):
        doc = None
    spec = doc.get("spec") if isinstance(doc, dict) else None
    spec = spec if isinstance(spec, dict) else {}

    def text_at(section: str, key: str) -> str | None:
        node = spec.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        return value if isinstance(value, str) and value else None

    sample = spec.get("sample")
    code = spec.get("code")
    reference = text_at("monitoring", "reference")
    return NamedFiles(
        sample=sample if isinstance(sample, str) and sample else None,
        code=tuple(rel for rel in code if isinstance(rel, str) and rel) if isinstance(code, list) else (),
        script=text_at("training", "script"),
        reference=None if reference is None or "://" in reference else reference,
    )
