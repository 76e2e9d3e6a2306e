"""Write a manifest the way a person does: sections in block style, short lists and mappings on one line.

>>> doc = {"kind": "Model", "spec": {"environments": ["dev", "prod"], "serving": {"replicas": 2}}}
>>> print(manifest_text(doc, header="Written by train.py"), end="")
# Written by train.py
kind: Model
spec:
  environments: [dev, prod]
  serving: {replicas: 2}
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from modelgen.errors import ModelgenError

# A list or mapping goes on one line when that line fits in this many characters.
WIDTH = 120
_MAPPING_INDENT = 2  # keys of a nested mapping
_SEQUENCE_INDENT = 4  # items of a nested list, after "- " (offset 2)
# Plain strings in YAML 1.2, booleans to YAML 1.1 readers (PyYAML, older yq): quoted, so that
# classes [no, yes] read as the strings they are everywhere.
_YAML11_BOOLEANS = {"y", "n", "yes", "no", "on", "off"}


def manifest_text(doc: Mapping[str, Any], header: str | None = None) -> str:
    """The YAML text of ``doc``, preceded by ``header`` as comment lines.

    The document and its sections (``metadata``, ``spec``) are block style; deeper down, every
    list or mapping whose flow form fits on its line within ``WIDTH`` characters is written in flow
    style (``[dev, prod]``, ``{min: 2, max: 6}``), the rest in block style.
    """
    root = CommentedMap((key, _styled(value, 0, section=True)) for key, value in doc.items())
    out = io.StringIO()
    for line in (header or "").splitlines():
        out.write(f"# {line}".rstrip() + "\n")
    _yaml().dump(root, out)
    return out.getvalue()


def dump_manifest(doc: Mapping[str, Any], path: Path, header: str | None = None) -> None:
    """Write ``doc`` to ``path`` as :func:`manifest_text` renders it."""
    Path(path).write_text(manifest_text(doc, header), encoding="utf-8")


def write_handover(
    folder: Path,
    manifest: Mapping[str, Any],
    *,
    artifact: bytes,
    sample: Sequence[Mapping[str, Any]],
    code_from: Path | None = None,
    header: str | None = None,
) -> Path:
    """Write ``model.yaml`` and every file it names into ``folder``, ready for ``modelgen generate``.

    Beside the manifest: ``spec.sample`` (the sample rows as JSON), the ``spec.code`` modules
    (copied from ``code_from``) and a copy of the artifact as ``model.<format>`` with its sha256
    in ``model.sha256`` (as ``sha256sum`` writes it). Returns the manifest's path.
    """
    spec = manifest["spec"]
    folder = Path(folder).resolve()
    modules = spec.get("code", [])
    if modules and code_from is None:
        raise ModelgenError("the manifest names code modules (spec.code): say which folder holds them (code_from)")
    sources = {module: Path(code_from).resolve() / module for module in modules}
    absent = [str(source) for source in sources.values() if not source.is_file()]
    if absent:  # checked before anything is written
        raise ModelgenError(f"code module not found: {', '.join(absent)}")

    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"model.{spec['artifact']['format']}"
    copy.write_bytes(artifact)
    (folder / "model.sha256").write_text(f"{hashlib.sha256(artifact).hexdigest()}  {copy.name}\n", encoding="utf-8")
    (folder / spec["sample"]).write_text(json.dumps(list(sample), indent=2) + "\n", encoding="utf-8")
    for module, source in sources.items():
        if source != (folder / module).resolve():  # the folder may be where the code lives
            (folder / module).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / module)
    path = folder / "model.yaml"
    dump_manifest(manifest, path, header)
    return path


def _yaml() -> YAML:
    yaml = YAML()
    yaml.width = 4096  # never fold a long line: manifests are reviewed in diffs
    yaml.indent(mapping=_MAPPING_INDENT, sequence=_SEQUENCE_INDENT, offset=_SEQUENCE_INDENT - 2)
    return yaml


def _styled(value: Any, key_column: int, *, key: str = "", section: bool = False) -> Any:
    """``value`` as ruamel nodes, flow style where it fits; ``key_column`` is where its key or "- " starts."""
    if not isinstance(value, Mapping | list | tuple):
        return _scalar(value)
    if not section:
        flow = _flow(value)
        room = WIDTH - key_column - (len(key) + 2 if key else 2)  # after "key: " or "- "
        if len(_flow_text(flow)) <= room:
            return flow
    if isinstance(value, Mapping):
        column = key_column + _MAPPING_INDENT
        return CommentedMap((k, _styled(v, column, key=str(k))) for k, v in value.items())
    # A block list's "- " sits one mapping indent further in than its key.
    return CommentedSeq(_styled(v, key_column + _SEQUENCE_INDENT - 2) for v in value)


def _flow(value: Any) -> Any:
    if isinstance(value, Mapping):
        node: CommentedMap | CommentedSeq = CommentedMap((k, _flow(v)) for k, v in value.items())
    elif isinstance(value, list | tuple):
        node = CommentedSeq(_flow(v) for v in value)
    else:
        return _scalar(value)
    node.fa.set_flow_style()
    return node


def _scalar(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in _YAML11_BOOLEANS:
        return SingleQuotedScalarString(value)
    return value


def _flow_text(node: CommentedMap | CommentedSeq) -> str:
    out = io.StringIO()
    _yaml().dump(node, out)
    return out.getvalue().rstrip("\n")


def edited_manifest(text: str, edit: Callable[[CommentedMap], None]) -> str:
    r"""``text`` with ``edit`` applied to its document, the data scientist's comments, key order and
    line layout kept (a round trip, unlike ``manifest_text``).

    >>> print(edited_manifest("metadata:\n  version: 1.0.0  # bumped by retrain\n",
    ...                       lambda doc: doc["metadata"].update(version="1.0.1")), end="")
    metadata:
      version: 1.0.1  # bumped by retrain
    """
    yaml = YAML()
    yaml.width = 4096  # never re-wrap the data scientist's lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(text)
    edit(doc)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
