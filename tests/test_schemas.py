"""The JSON schemas vendored in tests/schemas: the files its README lists, licensed, and strict."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest

# The copy in the repository, whatever MODELGEN_SCHEMAS points the other tests at.
VENDORED = Path(__file__).resolve().parent / "schemas"
CHECKSUM = re.compile(r"^([0-9a-f]{64})  (\S+\.json)$", re.MULTILINE)


def listed() -> dict[str, str]:
    return {path: digest for digest, path in CHECKSUM.findall((VENDORED / "README.md").read_text("utf-8"))}


def test_the_readme_lists_every_vendored_schema_with_its_sha256():
    present = {
        p.relative_to(VENDORED).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in VENDORED.rglob("*.json")
    }
    assert present == listed()


@pytest.mark.parametrize("path", sorted(listed()))
def test_each_schema_keeps_its_upstream_license(path):
    licenses = [VENDORED / folder / "LICENSE" for folder in Path(path).parents]
    assert any(p.is_file() for p in licenses), f"no LICENSE beside {path} or in a folder above it"


@pytest.mark.parametrize("path", sorted(listed()))
def test_each_schema_rejects_a_field_it_does_not_know(path):
    # What the tests rely on them for: a misspelt field in a generated manifest is an error.
    schema = json.loads((VENDORED / path).read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
    messages = [e.message for e in validator.iter_errors({"spec": {"replicaz": 1}})]
    assert any("'replicaz' was unexpected" in m for m in messages), messages
