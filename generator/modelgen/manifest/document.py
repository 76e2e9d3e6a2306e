"""The manifest as YAML: parsed with line numbers, turned into plain values, and located.

Every message about a manifest points at a line, so the YAML is read with ruamel's round-trip
loader (which remembers positions) and turned into plain dicts and lists once it is checked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from modelgen.errors import ManifestError, Problem
from modelgen.manifest.messages import show

FieldPath = tuple[str | int, ...]
MISSING = object()  # "no such value" (None is a value: YAML null)


def parse(text: str, label: str) -> CommentedMap:
    """The YAML document as a round-trip mapping (it knows its line numbers), or ManifestError."""
    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except (YAMLError, RecursionError, ValueError) as err:
        raise ManifestError([_unreadable(err, text, label)]) from None
    if doc is None:
        raise ManifestError([Problem(label, 1, "", f"the file is empty (allowed: {_DOCUMENT_SHAPE})")])
    if not isinstance(doc, CommentedMap):
        line = doc.lc.line + 1 if isinstance(doc, CommentedSeq) else _first_content_line(text)
        message = f"{show(plain(doc))} is not a mapping (allowed: {_DOCUMENT_SHAPE})"
        raise ManifestError([Problem(label, line, "", message)])
    check_expansion(doc, label)
    return doc


def _unreadable(err: Exception, text: str, label: str) -> Problem:
    """Why the YAML parser gave up, pointed at the line it gave up on."""
    if isinstance(err, MarkedYAMLError):
        return _marked(err, text, label)
    if isinstance(err, YAMLError):  # e.g. a control character: the reader knows only an offset
        position = getattr(err, "position", None)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else None
        problem = one_line(getattr(err, "reason", None) or str(err).splitlines()[0])
        return Problem(label, line, "", f"not valid YAML: {problem}")
    if isinstance(err, RecursionError):
        return Problem(label, None, "", "not valid YAML: nested too deeply")
    # A ValueError: a scalar the parser could not convert, such as an integer longer than Python
    # reads (4300 digits).
    long_number = re.search(rf"[0-9]{{{_LONGEST_INTEGER},}}", text)
    if long_number is None:
        return Problem(label, None, "", f"not valid YAML: {one_line(str(err))}")
    line = text[: long_number.start()].count("\n") + 1
    return Problem(label, line, "", f"not valid YAML: a number too long to read ({one_line(str(err).split(':')[0])})")


def _marked(err: MarkedYAMLError, text: str, label: str) -> Problem:
    mark = err.problem_mark
    at_end = mark is not None and mark.index >= len(text.rstrip())
    if mark is None or (at_end and err.context_mark):  # point at what was left unclosed
        mark = err.context_mark
    line = mark.line + 1 if mark else None
    problem = one_line(err.problem or "")
    context = one_line(err.context or "")
    if context.startswith("while"):  # "found X (while parsing Y)"
        problem = f"{problem} ({context})"
    elif context:  # "expected X but found Y"
        problem = f"{context} {problem}".strip()
    return Problem(label, line, "", f"not valid YAML: {problem or 'unreadable'}")


_DOCUMENT_SHAPE = "a YAML mapping with apiVersion, kind, metadata and spec"
_LONGEST_INTEGER = 4301  # sys.int_info.str_digits_check_threshold + 1
# A manifest holds hundreds of values; aliases that expand it past this are a "billion laughs".
MAX_VALUES = 100_000


def check_expansion(doc: Any, label: str) -> None:
    """Refuse a document whose aliases expand it past ``MAX_VALUES``, before anything walks it.

    The parser shares one node per anchor, so the document itself is small; ``plain`` and the
    schema check would copy and visit every expansion. Sizes are counted once per shared node.
    """
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        known = sizes.get(id(node))
        if known is None:
            children = node.values() if isinstance(node, dict) else node
            known = sizes[id(node)] = 1 + sum(size(child) for child in children)
        return known

    try:
        total = size(doc)
    except RecursionError:
        raise ManifestError([Problem(label, None, "", "not valid YAML: nested too deeply")]) from None
    if total > MAX_VALUES:
        message = (
            f"the document expands to {total:,} values through YAML aliases "
            f"(allowed: at most {MAX_VALUES:,}; write the values out instead of nesting aliases)"
        )
        raise ManifestError([Problem(label, None, "", message)])


def one_line(text: str) -> str:
    return " ".join(text.split())


def _first_content_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "---", "%")):
            return number
    return 1


def plain(node: Any) -> Any:
    """ruamel's round-trip types → plain Python values, so nothing downstream depends on them."""
    if isinstance(node, dict):
        return {_key_text(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


def line_of(doc: Any, path: FieldPath | list[str | int]) -> int | None:
    """1-based line of the deepest node of ``path`` that exists in the YAML."""
    node, line = doc, None
    for key in path:
        if isinstance(node, CommentedMap):
            found = _key(node, key)
            if found is MISSING:
                break
            try:
                line = node.lc.key(found)[0] + 1
            except KeyError:  # came in through a merge key (<<: *anchor): no position of its own
                line = node.lc.line + 1
            node = node[found]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    if line is None and isinstance(node, (CommentedMap, CommentedSeq)):
        line = node.lc.line + 1
    return line


def _key(node: CommentedMap, key: Any) -> Any:
    """The key of ``node`` that ``_plain`` turned into ``key`` (YAML keys need not be strings)."""
    if isinstance(key, str) and key in node:
        return key
    return next((k for k in node if _key_text(k) == key), MISSING)


def _key_text(key: Any) -> str:
    """A YAML key as a field name: ``null`` and ``true`` as written, not Python's None/True."""
    return json.dumps(key) if key is None or isinstance(key, bool) else str(key)


def dotted(path: FieldPath | list[str | int]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out
