"""How a manifest's problems are told: each schema pattern in words, values shown as the user
wrote them, and what exactly breaks a pattern where that can be said simply."""

from __future__ import annotations

import datetime
import json
import string
import unicodedata
from typing import Any

import jsonschema
from ruamel.yaml.comments import TaggedScalar

# What each ``pattern`` in the schema means, in words; used in messages and in docs/manifest.md.
# tests/test_manifest.py checks that every pattern of the schema is explained here.
PATTERN_MEANINGS: dict[str, str] = {
    "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$": (
        "a DNS-1123 label: lower-case letters, digits and '-', starting with a letter, "
        "ending with a letter or digit, at most 40 characters"
    ),
    "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$": (
        "a semantic version MAJOR.MINOR.PATCH without leading zeros, optionally -prerelease, e.g. 1.2.0 or 2.0.0-rc.1"
    ),
    "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$": "an e-mail address, e.g. jane.doe@example.com",
    "^[A-Za-z_][A-Za-z0-9_.]*$": "a dotted Python name, e.g. sklearn.pipeline.Pipeline",
    "^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$": (
        "lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or "
        "digit, at most 63 characters"
    ),
    "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$": (
        "empty, or letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    ),
    "^(https?|file)://\\S+$": "an http://, https:// or file:// URL without spaces",
    "^[0-9a-f]{64}$": "64 lower-case hexadecimal digits (0-9, a-f)",
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "a DNS-1123 name: lower-case letters, digits and '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z0-9][A-Za-z0-9._-]*(\\[[A-Za-z0-9,._-]+\\])?==[A-Za-z0-9.+!_-]+$": (
        "a package pinned to one version, name==version or name[extra]==version, e.g. scikit-learn==1.5.2"
    ),
    "^[a-z0-9][a-z0-9+.-]+$": (
        "a Debian package name: lower-case letters, digits, '+', '-' and '.', starting with a letter or digit, "
        "e.g. libgomp1"
    ),
    "^[^/\\\\].*\\.(py|R)$": "a path relative to the manifest's folder, ending in .py (Python) or .R (R)",
    "^[0-9]+\\.[0-9]+\\.[0-9]+$": "a version MAJOR.MINOR.PATCH, e.g. 4.2.2",
    "^[1-9][0-9]{0,3}[hd]$": "a number of hours or days, e.g. 24h or 7d",
    "^[A-Za-z0-9.-]+(:[0-9]{1,5})?$": "a host name with an optional port, e.g. smtp.example.com:587",
    "^https?://\\S+$": "an http:// or https:// URL without spaces",
    "^[A-Za-z][A-Za-z0-9_]*(\\[[A-Za-z0-9_, /+:-]+\\])?$": (
        "a dtype name, e.g. float64, Int64, category, datetime64[ns, UTC]"
    ),
    "\\.json$": "a path relative to the manifest's folder, ending in .json",
    "^([0-9]+m|[0-9]+(\\.[0-9]+)?)$": "cores (2, 0.5) or millicores (500m)",
    "^[0-9]+(Ki|Mi|Gi)$": "a whole number with the unit Ki, Mi or Gi, e.g. 512Mi or 1Gi",
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$": (
        "a DNS host name with at least one dot, in lower case, e.g. penguins.apps.example.com"
    ),
    "^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$": (
        "a DNS-1123 label: lower-case letters, digits and '-', starting with a letter, "
        "ending with a letter or digit, at most 20 characters"
    ),
}

# DNS-style patterns: (longest allowed, must start with a letter) to say what exactly is wrong.
_DNS_PATTERNS = {
    "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$": (40, True),
    "^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$": (20, True),
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (None, False),
}


def field_hint(field: dict[str, Any]) -> str:
    """What a missing field should hold, as briefly as the schema allows."""
    if "enum" in field:
        return "allowed: " + ", ".join(map(str, field["enum"]))
    if "const" in field:
        return f"allowed: {field['const']}"
    if field.get("description"):
        return field["description"].rstrip(".")
    if field.get("pattern") in PATTERN_MEANINGS:
        return "allowed: " + PATTERN_MEANINGS[field["pattern"]]
    if "type" in field:
        return "allowed: " + types_text(field["type"])
    return "see docs/manifest.md"


def types_text(types: str | list[str]) -> str:
    return " or ".join(TYPE_NAMES[t] for t in ([types] if isinstance(types, str) else types))


def show(value: Any) -> str:
    """A value as the user would recognise it in a message (JSON style, shortened)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, TaggedScalar):
        return f"a value tagged {value.tag}"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, str) and len(value) > 72:  # a whole sha256 fits
        value = value[:69] + "..."
    try:
        # Letters as written (a column "Größe %" reads as such); control and invisible
        # separator characters escaped, so a message never breaks a line or hides them.
        text = json.dumps(value, ensure_ascii=False)
        return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"


def _yaml_kind(value: Any) -> str | None:
    """What YAML made of an unquoted scalar meant as a string."""
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, (int, float)):
        return "the number"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "the date"
    return None


def explain(err: jsonschema.ValidationError) -> str:
    s, v = err.schema, err.instance
    if err.validator == "oneOf":
        types = [b.get("type") for b in s["oneOf"] if "type" in b]
        return f"{show(v)} has the wrong type (allowed: {' or '.join(types_text(t) for t in types)})"
    if v is None and err.validator in ("type", "enum", "const"):
        return f"has no value (allowed: {explain_hint(err)})"
    if err.validator == "type":
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        kind = _yaml_kind(v)
        if "string" in types and kind:
            return (
                f"YAML read this unquoted value as {kind} {show(v)} "
                f"(allowed: {types_text(types)}; put the value in quotes)"
            )
        return f"{show(v)} has the wrong type (allowed: {types_text(types)})"
    if err.validator in ("enum", "const"):
        return f"{show(v)} is not allowed (allowed: {explain_hint(err)})"
    if err.validator == "pattern":
        faults = pattern_faults(s["pattern"], v)
        why = f": {', '.join(faults)}" if faults else ""
        return f"{show(v)} is not valid{why} (allowed: {explain_hint(err)})"
    if err.validator == "minimum":
        return f"{show(v)} is too small (allowed: at least {err.validator_value})"
    if err.validator == "maximum":
        return f"{show(v)} is too large (allowed: at most {err.validator_value})"
    if err.validator == "minItems":
        return f"has {len(v)} item(s) (allowed: at least {err.validator_value})"
    if err.validator == "minLength":
        if not v:
            return "is empty (allowed: a non-empty string)"
        return f"is {len(v)} characters long (allowed: at least {err.validator_value})"
    if err.validator == "maxLength":
        return f"is {len(v)} characters long (allowed: at most {err.validator_value})"
    return err.message  # pragma: no cover - every keyword the schema uses is handled above


def explain_hint(err: jsonschema.ValidationError) -> str:
    s = err.schema
    if err.validator == "enum":
        return ", ".join(map(str, s["enum"]))
    if err.validator == "const":
        return str(s["const"])
    if err.validator == "pattern":
        return PATTERN_MEANINGS.get(s["pattern"]) or f"must match {s['pattern']}"
    if err.validator == "type":
        return types_text(s["type"])
    return err.message


def pattern_faults(pattern: str, value: str) -> list[str]:
    """What exactly breaks a pattern, for the patterns where that can be said simply."""
    if pattern in _DNS_PATTERNS:
        return _dns_faults(value, *_DNS_PATTERNS[pattern])
    if pattern == "^[0-9a-f]{64}$":
        return _sha256_faults(value)
    if pattern.startswith("^[A-Za-z0-9][A-Za-z0-9._-]*") and "==" not in value:
        return ["is not pinned with =="]
    if pattern in ("^[^/\\\\].*\\.(py|R)$", "\\.json$"):
        return _path_faults(value, (".py", ".R") if "py" in pattern else (".json",))
    return []


def _dns_faults(value: str, longest: int | None, letter_first: bool) -> list[str]:
    if not value:
        return ["is empty"]
    faults = []
    if longest and len(value) > longest:
        faults.append(f"is {len(value)} characters long")
    if any(c.isupper() for c in value):
        faults.append("has upper-case letters")
    others = sorted({c for c in value.lower() if c not in _LOWER_DIGITS_DASH})
    if others:
        faults.append("contains " + " ".join(json.dumps(c) for c in others))
    first = value[0].lower()
    if letter_first and first not in string.ascii_lowercase:
        faults.append("does not start with a letter")
    elif first == "-":
        faults.append("starts with '-'")
    if value.endswith("-"):
        faults.append("ends with '-'")
    return faults


def _sha256_faults(value: str) -> list[str]:
    faults = []
    if len(value) != 64:
        faults.append(f"has {len(value)} characters")
    if any(c.isupper() for c in value):
        faults.append("has upper-case letters")
    if any(c not in string.hexdigits for c in value):
        faults.append("has characters other than 0-9 and a-f")
    return faults


def _path_faults(value: str, suffixes: tuple[str, ...]) -> list[str]:
    faults = []
    if value.startswith(("/", "\\")):
        faults.append("is an absolute path")
    if not value.endswith(suffixes):
        faults.append(f"does not end in {' or '.join(suffixes)}")
    return faults


_LOWER_DIGITS_DASH = set(string.ascii_lowercase + string.digits + "-")

TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "datetime": "an ISO 8601 date or date-time string",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}
