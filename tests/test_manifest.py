"""The manifest: a valid one is typed right; every broken one is reported exactly, line by line.

Broken cases are small edits of ``manifests/valid/model.yaml`` (line numbers below refer to that
file, which is printed with numbers when a case fails), run in a copy of its folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelgen.cli import main
from modelgen.errors import ManifestError
from modelgen.manifest import (
    PATTERN_MEANINGS,
    Artifact,
    Column,
    Environment,
    Output,
    Serving,
    docs,
    load,
    load_text,
    named_files,
    schema,
)
from modelgen.manifest.model import Autoscaling, Monitoring, Notify, OnnxGates, Resources, Training

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "manifests"
VALID = FIXTURES / "valid"
VALID_TEXT = (VALID / "model.yaml").read_text("utf-8")

# The "allowed" halves of messages, spelled out here rather than imported, so a change shows.
NAME_RULE = (
    "a DNS-1123 label: lower-case letters, digits and '-', starting with a letter, "
    "ending with a letter or digit, at most 40 characters"
)
ENV_RULE = (
    "a DNS-1123 label: lower-case letters, digits and '-', starting with a letter, "
    "ending with a letter or digit, at most 20 characters"
)
VERSION_RULE = (
    "a semantic version MAJOR.MINOR.PATCH without leading zeros, optionally -prerelease, e.g. 1.2.0 or 2.0.0-rc.1"
)
SHA_RULE = "64 lower-case hexadecimal digits (0-9, a-f)"
TYPES = "number, integer, string, boolean, datetime"
PIN_RULE = "a package pinned to one version, name==version or name[extra]==version, e.g. scikit-learn==1.5.2"
SHAPE = "a YAML mapping with apiVersion, kind, metadata and spec"
TASKS = "classification, regression, anomaly-detection, clustering"
SPEC_FIELDS = (
    "artifact, code, cran, environments, framework, input, lockfile, monitoring, output, rVersion, requirements, "
    "runtime, sample, serving, systemPackages, task, training"
)
ENV_FIELDS = "autoscaling, host, name, replicas, resources"
OUTSIDE = "points outside the manifest's folder (allowed: a relative path inside the folder of model.yaml)"
QUOTE = "(allowed: a string; put the value in quotes)"
SAMPLE = "model.yaml:26: spec.sample: sample.json: "

GOOD_ROW = '{"island": "Biscoe", "bill_length_mm": 39.1, "year": 2007, "sex": "male"}'


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A copy of manifests/valid as the working directory, so messages say ``model.yaml``."""
    target = tmp_path / "model"
    shutil.copytree(VALID, target)
    monkeypatch.chdir(target)
    return target


def problems(path: str = "model.yaml") -> list[str]:
    with pytest.raises(ManifestError) as info:
        load(path)
    text = str(info.value)
    assert "Traceback" not in text
    assert [str(p) for p in info.value.problems] == text.splitlines()
    return text.splitlines()


# ---------------------------------------------------------------------------- valid manifests


def test_valid_manifest_is_typed_with_defaults(folder):
    m = load("model.yaml")
    assert (m.name, m.version, m.owner) == ("penguin-species", "1.2.0", "jane.doe@example.com")
    assert m.description == "Species of a Palmer penguin from its measurements."
    assert m.labels == {"team": "data-science"}
    assert (m.runtime, m.framework, m.task) == ("python", "xgboost", "classification")
    assert m.base_dir == folder
    assert m.artifact == Artifact(
        secret="model-registry",
        uri="https://nexus.example.com/repository/models/penguin-species/1.2.0/model.joblib",
        sha256="0123456789abcdef" * 4,
        format="joblib",
    )
    assert m.requirements == ("scikit-learn==1.5.2", "xgboost==2.1.1")
    assert m.code == ("features.py",)
    assert m.system_packages == m.apt_packages == ()  # nothing declared, and no library needs one
    assert m.columns == (
        Column("island", "string", nullable=True, categories=("Biscoe", "Dream", "Torgersen")),
        Column("bill_length_mm", "number", nullable=True),
        Column("year", "integer"),
        Column("sex", "string", categories=("female", "male"), strict=True),
    )
    assert m.output == Output("probabilities", ("Adelie", "Chinstrap", "Gentoo"))
    assert m.serving == Serving(
        server="gunicorn",
        workers=None,
        max_request_bytes=10485760,
        timeout_seconds=60,
        replicas=3,
        autoscaling=Autoscaling(min=2, max=6, cpu=70),
        resources=Resources(cpu="500m", memory="1Gi"),
        host="penguins.apps.example.com",
        engine="native",
        onnx=OnnxGates(tolerance=1e-06, speed_gate=True, fallback=""),
    )
    assert (m.engine, m.engine_reason, m.artifact.onnx) == ("native", "", None)
    assert m.environments == (
        Environment(
            name="dev",
            replicas=3,
            autoscaling=Autoscaling(min=2, max=6, cpu=70),
            resources=Resources(cpu="500m", memory="1Gi"),
            host="",
        ),
        Environment(
            name="prod",
            replicas=4,
            autoscaling=Autoscaling(min=3, max=6, cpu=70),
            resources=Resources(cpu="500m", memory="2Gi"),
            host="penguins.apps.example.com",
        ),
    )
    assert m.sample[1] == {"island": None, "bill_length_mm": None, "year": 2008.0, "sex": "female"}
    assert m.text == VALID_TEXT
    assert type(m.raw["spec"]["serving"]["replicas"]) is int  # plain types, not ruamel's


def test_minimal_manifest_takes_every_default(folder):
    (folder / "model.yaml").write_text(
        "apiVersion: modelgen/v1\n"
        "kind: Model\n"
        "metadata: {name: tiny, version: 0.1.0, owner: a@b.io}\n"
        "spec:\n"
        "  runtime: python\n"
        "  task: regression\n"
        "  artifact: {uri: 'file:///m.pkl', sha256: '" + "a" * 64 + "', format: pickle}\n"
        "  requirements: [scikit-learn==1.5.2]\n"
        "  input: [{name: x, type: number}]\n"
        "  output: {type: value}\n"
        "  sample: data/rows.json\n"
    )
    (folder / "data").mkdir()
    (folder / "data" / "rows.json").write_text('[{"x": 1.5}]')
    m = load("model.yaml")
    assert (m.framework, m.code, m.description, m.labels) == ("sklearn", (), "", {})
    assert m.artifact.secret == "model-registry"
    assert m.columns == (Column("x", "number"),)
    assert m.serving == Serving(
        server="gunicorn",
        workers=None,
        max_request_bytes=10 * 1024 * 1024,
        timeout_seconds=60,
        replicas=2,
        autoscaling=Autoscaling(min=2, max=10, cpu=70),
        resources=Resources(cpu="1", memory="1Gi"),
        host="",
        engine="native",
        onnx=OnnxGates(tolerance=1e-06, speed_gate=True, fallback=""),
    )
    default = {"replicas": 2, "autoscaling": Autoscaling(min=2, max=10, cpu=70)}
    resources = Resources(cpu="1", memory="1Gi")
    assert m.environments == (
        Environment(name="dev", **default, resources=resources, host=""),
        Environment(name="prod", **default, resources=resources, host=""),
    )
    assert (m.monitoring, m.training) == (None, None)
    assert m.sample == [{"x": 1.5}]


def test_defaults_come_from_the_schema(folder, monkeypatch):
    # One source: change a default in the schema and the typed manifest follows.
    from modelgen.manifest import validate

    changed = json.loads(json.dumps(schema()))
    changed["properties"]["spec"]["properties"]["serving"]["properties"]["timeoutSeconds"]["default"] = 7
    monkeypatch.setattr(validate, "schema", lambda: changed)
    from modelgen.manifest import loader

    monkeypatch.setattr(loader, "schema", lambda: changed)
    assert load("model.yaml").serving.timeout_seconds == 7


def test_training_and_monitoring_take_their_own_defaults(folder):
    edit(
        folder,
        [
            (
                "  environments:",
                "  monitoring: {reference: sample.json}\n"
                "  training: {script: features.py, data: s3://x}\n"
                "  environments:",
            )
        ],
    )
    m = load("model.yaml")
    assert m.training == Training("features.py", "s3://x", {}, "", "", Resources(cpu="1", memory="2Gi"))
    assert m.monitoring == Monitoring(
        "sample.json", 0.1, "1Gi", "0 6 * * *", "24h", {}, Notify(("jane.doe@example.com",), "", "")
    )


def test_a_manifest_read_without_its_files(folder):
    # As `list` reads one at a commit of the GitOps repository: files are not there, rules are.
    text = edit(folder, [("{name: year, type: integer}", "{name: year, type: integer, categories: [a]}")])
    with pytest.raises(ManifestError, match="categories on a integer column"):
        load_text(text, "models/x/model.yaml")
    m = load_text(VALID_TEXT, "models/x/model.yaml")
    assert (m.name, m.sample, m.code) == ("penguin-species", [], ("features.py",))
    assert m.path == Path("models/x/model.yaml")


def test_yaml_anchors_and_merge_keys_are_allowed(folder):
    edit(
        folder,
        [
            ("    autoscaling: {max: 6}", "    autoscaling: &scaling {max: 6}"),
            ("      autoscaling: {min: 3}", "      autoscaling: {<<: *scaling, min: 3}"),
        ],
    )
    assert load("model.yaml").environments[1].autoscaling == Autoscaling(min=3, max=6, cpu=70)


# ---------------------------------------------------------------------------- broken manifests


@dataclass
class Case:
    id: str
    expected: list[str]
    edits: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None  # the whole model.yaml instead of edits
    files: dict[str, str | None] = field(default_factory=dict)  # None deletes


def sample_of(*rows: str) -> dict[str, str | None]:
    return {"sample.json": "[\n" + ",\n".join(rows) + "\n]\n"}


CASES = [
    # ---- not a manifest at all
    Case(
        "not-yaml-unclosed-bracket",
        [
            "model.yaml:4: (document): not valid YAML: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence)"
        ],
        text="apiVersion: modelgen/v1\nkind: Model\nmetadata:\n  labels: [a, b\n",
    ),
    Case(
        "not-yaml-tab-indent",
        [
            "model.yaml:11: (document): not valid YAML: found character '\\t' that cannot start "
            "any token (while scanning for the next token)"
        ],
        edits=[("  runtime: python", "\truntime: python")],
    ),
    Case(
        "not-yaml-duplicate-key",
        [
            'model.yaml:14: (document): not valid YAML: found duplicate key "task" with value '
            '"regression" (original value: "classification") (while constructing a mapping)'
        ],
        edits=[("  task: classification\n", "  task: classification\n  task: regression\n")],
    ),
    Case(
        "not-yaml-control-character",
        ["model.yaml:8: (document): not valid YAML: special characters are not allowed"],
        edits=[("from its measurements", "from its \x07measurements")],
    ),
    Case(
        "not-yaml-two-documents",
        [
            "model.yaml:2: (document): not valid YAML: expected a single document in the stream "
            "but found another document"
        ],
        text="apiVersion: modelgen/v1\n---\nkind: Model\n",
    ),
    Case(
        "not-a-mapping-list",
        [f"model.yaml:2: (document): a list is not a mapping (allowed: {SHAPE})"],
        text="# a list\n- apiVersion: modelgen/v1\n- kind: Model\n",
    ),
    Case(
        "not-a-mapping-scalar",
        [f'model.yaml:2: (document): "hello world" is not a mapping (allowed: {SHAPE})'],
        text="# a string\nhello world\n",
    ),
    Case("empty-file", [f"model.yaml:1: (document): the file is empty (allowed: {SHAPE})"], text=""),
    Case(
        "only-comments",
        [f"model.yaml:1: (document): the file is empty (allowed: {SHAPE})"],
        text="# apiVersion: modelgen/v1\n\n",
    ),
    # ---- top level
    Case(
        "wrong-apiVersion",
        ['model.yaml:2: apiVersion: "modelgen/v2" is not allowed (allowed: modelgen/v1)'],
        edits=[("apiVersion: modelgen/v1", "apiVersion: modelgen/v2")],
    ),
    Case(
        "wrong-kind",
        ['model.yaml:3: kind: "Service" is not allowed (allowed: Model)'],
        edits=[("kind: Model", "kind: Service")],
    ),
    Case(
        "unknown-top-level-field",
        ["model.yaml:38: status: unknown field (allowed here: apiVersion, kind, metadata, spec)"],
        edits=[("      resources: {memory: 2Gi}\n", "      resources: {memory: 2Gi}\nstatus: ok\n")],
    ),
    Case(
        "missing-spec",
        ["model.yaml:2: spec: required field is missing (allowed: a mapping)"],
        text="# no spec\napiVersion: modelgen/v1\nkind: Model\nmetadata: {name: tiny, version: 0.1.0, owner: a@b.io}\n",
    ),
    Case(
        "unknown-nested-field-typo",
        [
            f"model.yaml:10: spec.task: required field is missing (allowed: {TASKS})",
            f"model.yaml:13: spec.tsak: unknown field, did you mean task? (allowed here: {SPEC_FIELDS})",
        ],
        edits=[("  task: classification", "  tsak: classification")],
    ),
    Case(
        "unknown-deeply-nested-field",
        ["model.yaml:29: spec.serving.autoscaling.target: unknown field (allowed here: cpu, max, min)"],
        edits=[("autoscaling: {max: 6}", "autoscaling: {max: 6, target: 80}")],
    ),
    Case(
        "null-and-boolean-keys",
        [
            "model.yaml:10: null: unknown field (allowed here: apiVersion, kind, metadata, spec)",
            "model.yaml:11: true: unknown field (allowed here: apiVersion, kind, metadata, spec)",
        ],
        edits=[("spec:\n", "null: 1\ntrue: 2\nspec:\n")],
    ),
    Case(
        "yaml-tags-are-values-not-code",
        [
            "model.yaml:5: metadata.name: binary data has the wrong type (allowed: a string)",
            "model.yaml:13: spec.task: a value tagged tag:yaml.org,2002:python/object:os.system "
            f"is not allowed (allowed: {TASKS})",
        ],
        edits=[
            ("name: penguin-species", "name: !!binary aGVsbG8="),
            ("task: classification", "task: !!python/object:os.system echo"),
        ],
    ),
    Case(
        "integer-key",
        [
            "model.yaml:9: metadata.404: unknown field "
            "(allowed here: description, labels, name, owner, provenance, version)"
        ],
        edits=[("  labels: {team: data-science}", "  404: gone")],
    ),
    # ---- metadata
    Case(
        "missing-metadata-name",
        [
            "model.yaml:4: metadata.name: required field is missing (DNS-1123 label of at most 40 "
            "characters (lower-case letters, digits, '-'; starts with a letter); becomes the name "
            "of every Kubernetes object)"
        ],
        edits=[("  name: penguin-species\n", "")],
    ),
    Case(
        "name-upper-case",
        [f'model.yaml:5: metadata.name: "Penguin-Species" is not valid: has upper-case letters (allowed: {NAME_RULE})'],
        edits=[("name: penguin-species", "name: Penguin-Species")],
    ),
    Case(
        "name-underscore",
        [f'model.yaml:5: metadata.name: "penguin_species" is not valid: contains "_" (allowed: {NAME_RULE})'],
        edits=[("name: penguin-species", "name: penguin_species")],
    ),
    Case(
        "name-too-long",
        [
            f'model.yaml:5: metadata.name: "{"penguin-" * 5}species" is not valid: '
            f"is 47 characters long (allowed: {NAME_RULE})"
        ],
        edits=[("name: penguin-species", f"name: {'penguin-' * 5}species")],
    ),
    Case(
        "name-starts-with-digit",
        [
            f'model.yaml:5: metadata.name: "3-penguins" is not valid: does not start with a letter '
            f"(allowed: {NAME_RULE})"
        ],
        edits=[("name: penguin-species", "name: 3-penguins")],
    ),
    Case(
        "input-named-like-the-input-logs-own-field",
        [
            'model.yaml:23: spec.input[2].name: "__ts" is the input log\'s own field '
            "(allowed: any name but __ts and __prediction)"
        ],
        edits=[("{name: year, type: integer}", "{name: __ts, type: integer}")],
        files=sample_of(
            '{"island": "Biscoe", "bill_length_mm": 39.1, "__ts": 2007, "sex": "male"}',
        ),
    ),
    Case(
        "reference-outside-the-folder",
        [
            'model.yaml:32: spec.monitoring.reference: "/etc/passwd" points outside the manifest\'s folder '
            "(allowed: a relative path inside the folder of model.yaml, or a file:// or http(s):// URI)"
        ],
        edits=[("  environments:", "  monitoring: {reference: /etc/passwd}\n  environments:")],
    ),
    # A pattern's final $ is the end of the string (JSON Schema's meaning), not "before a final newline".
    Case(
        "name-with-a-trailing-newline",
        [f'model.yaml:5: metadata.name: "penguin-species\\n" is not valid: contains "\\n" (allowed: {NAME_RULE})'],
        edits=[("name: penguin-species", "name: |\n    penguin-species")],
    ),
    Case(
        "sha256-with-a-trailing-newline",
        [
            f'model.yaml:16: spec.artifact.sha256: "{"0123456789abcdef" * 4}\\n" is not valid: '
            f"has 65 characters, has characters other than 0-9 and a-f (allowed: {SHA_RULE})"
        ],
        edits=[('abcdef"\n    format', 'abcdef\\n"\n    format')],
    ),
    Case(
        "version-with-a-trailing-newline",
        [f'model.yaml:6: metadata.version: "1.2.0\\n" is not valid (allowed: {VERSION_RULE})'],
        edits=[("version: 1.2.0\n", 'version: "1.2.0\\n"\n')],
    ),
    Case(
        "a-number-longer-than-python-reads",
        [
            "model.yaml:28: (document): not valid YAML: a number too long to read "
            "(Exceeds the limit (4300 digits) for integer string conversion)"
        ],
        edits=[("replicas: 3", "replicas: " + "9" * 5000)],
    ),
    Case(
        "name-ends-with-dash-and-has-space",
        [
            f'model.yaml:5: metadata.name: "penguin species-" is not valid: contains " ", '
            f"ends with '-' (allowed: {NAME_RULE})"
        ],
        edits=[("name: penguin-species", "name: penguin species-")],
    ),
    Case(
        "version-not-semver",
        [f'model.yaml:6: metadata.version: "1.2" is not valid (allowed: {VERSION_RULE})'],
        edits=[("version: 1.2.0", 'version: "1.2"')],
    ),
    Case(
        "version-read-as-number",
        ["model.yaml:6: metadata.version: YAML read this unquoted value as the number 1.2 " + QUOTE],
        edits=[("version: 1.2.0", "version: 1.2")],
    ),
    Case(
        "owner-not-an-email",
        [
            'model.yaml:7: metadata.owner: "jane.doe-at-example.com" is not valid '
            "(allowed: an e-mail address, e.g. jane.doe@example.com)"
        ],
        edits=[("owner: jane.doe@example.com", "owner: jane.doe-at-example.com")],
    ),
    Case(
        "owner-empty",
        ["model.yaml:7: metadata.owner: has no value (allowed: a string)"],
        edits=[("owner: jane.doe@example.com", "owner:")],
    ),
    Case(
        "label-value-with-space",
        [
            'model.yaml:9: metadata.labels.team: "data science" is not valid (allowed: empty, or '
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"
        ],
        edits=[("{team: data-science}", "{team: data science}")],
    ),
    Case(
        "label-key-upper-case",
        [
            'model.yaml:9: metadata.labels.Team: "Team" is not a valid key (allowed: lower-case '
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
            "at most 63 characters)"
        ],
        edits=[("{team: data-science}", "{Team: data-science}")],
    ),
    Case(
        "labels-not-a-mapping",
        ["model.yaml:9: metadata.labels: a list has the wrong type (allowed: a mapping)"],
        edits=[("{team: data-science}", "[data-science]")],
    ),
    # ---- spec: enums and types
    Case(
        "unknown-runtime",
        ['model.yaml:11: spec.runtime: "julia" is not allowed (allowed: python, r)'],
        edits=[("runtime: python", "runtime: julia")],
    ),
    Case(
        "r-runtime-with-python-values",
        [
            'model.yaml:12: spec.framework: "xgboost" is not a r framework '
            "(allowed: caret, mlr, mlr3, recipes, glmnet, stats)",
            'model.yaml:17: spec.artifact.format: "joblib" is not a r format (allowed: rds)',
            'model.yaml:19: spec.code[0]: "features.py" is not r code (allowed: .R files)',
        ],
        edits=[("runtime: python", "runtime: r")],
    ),
    Case(
        "unknown-framework",
        [
            'model.yaml:12: spec.framework: "tensorflow" is not allowed '
            "(allowed: sklearn, xgboost, caret, mlr, mlr3, recipes, glmnet, stats)"
        ],
        edits=[("framework: xgboost", "framework: tensorflow")],
    ),
    Case(
        "unknown-task",
        [f'model.yaml:13: spec.task: "classify" is not allowed (allowed: {TASKS})'],
        edits=[("task: classification", "task: classify")],
    ),
    Case(
        "task-empty",
        [f"model.yaml:13: spec.task: has no value (allowed: {TASKS})"],
        edits=[("task: classification", "task:")],
    ),
    Case(
        "unknown-format",
        ['model.yaml:17: spec.artifact.format: "onnx" is not allowed (allowed: joblib, pickle, skops, rds)'],
        edits=[("format: joblib", "format: onnx")],
    ),
    Case(
        "replicas-not-an-integer",
        ['model.yaml:28: spec.serving.replicas: "two" has the wrong type (allowed: an integer)'],
        edits=[("replicas: 3", "replicas: two")],
    ),
    Case(
        "replicas-a-float",
        ["model.yaml:28: spec.serving.replicas: 2.0 has the wrong type (allowed: an integer)"],
        edits=[("replicas: 3", "replicas: 2.0")],
    ),
    Case(
        "replicas-out-of-range",
        ["model.yaml:28: spec.serving.replicas: 500 is too large (allowed: at most 100)"],
        edits=[("replicas: 3", "replicas: 500")],
    ),
    Case(
        "memory-without-unit",
        [
            'model.yaml:30: spec.serving.resources.memory: "2048" is not valid '
            "(allowed: a whole number with the unit Ki, Mi or Gi, e.g. 512Mi or 1Gi)"
        ],
        edits=[("resources: {cpu: 500m}", 'resources: {cpu: 500m, memory: "2048"}')],
    ),
    # ---- artifact
    Case(
        "missing-sha256",
        [
            "model.yaml:14: spec.artifact.sha256: required field is missing (SHA-256 of the "
            "artifact bytes, 64 lower-case hex digits; the service refuses any other bytes)"
        ],
        edits=[('    sha256: "' + "0123456789abcdef" * 4 + '"\n', "")],
    ),
    Case(
        "sha256-too-short",
        [f'model.yaml:16: spec.artifact.sha256: "0123abc" is not valid: has 7 characters (allowed: {SHA_RULE})'],
        edits=[("0123456789abcdef" * 4, "0123abc")],
    ),
    Case(
        "sha256-upper-case",
        [
            f'model.yaml:16: spec.artifact.sha256: "{"0123456789ABCDEF" * 4}" is not valid: '
            f"has upper-case letters (allowed: {SHA_RULE})"
        ],
        edits=[("0123456789abcdef" * 4, "0123456789ABCDEF" * 4)],
    ),
    Case(
        "sha256-all-zeros-read-as-int",
        ["model.yaml:16: spec.artifact.sha256: YAML read this unquoted value as the number 0 " + QUOTE],
        edits=[('"' + "0123456789abcdef" * 4 + '"', "0" * 64)],
    ),
    Case(
        "sha256-all-digits-read-as-int",
        [
            f"model.yaml:16: spec.artifact.sha256: YAML read this unquoted value as the number "
            f"{'1234567890' * 6}1234 {QUOTE}"
        ],
        edits=[('"' + "0123456789abcdef" * 4 + '"', "1234567890" * 6 + "1234")],
    ),
    Case(
        "artifact-uri-no-scheme",
        [
            'model.yaml:15: spec.artifact.uri: "nexus.example.com/model.joblib" is not valid '
            "(allowed: an http://, https:// or file:// URL without spaces)"
        ],
        edits=[
            (
                "uri: https://nexus.example.com/repository/models/penguin-species/1.2.0/model.joblib",
                "uri: nexus.example.com/model.joblib",
            )
        ],
    ),
    # ---- requirements
    Case(
        "unpinned-requirement",
        [
            f'model.yaml:18: spec.requirements[0]: "scikit-learn>=1.0" is not valid: '
            f"is not pinned with == (allowed: {PIN_RULE})"
        ],
        edits=[("[scikit-learn==1.5.2,", "[scikit-learn>=1.0,")],
    ),
    Case(
        "duplicate-requirement",
        [
            'model.yaml:18: spec.requirements[1]: "scikit-learn==1.5.2" is a duplicate of '
            "spec.requirements[0] (allowed: each item once)"
        ],
        edits=[("xgboost==2.1.1]", "scikit-learn==1.5.2]")],
    ),
    Case(
        "no-requirements",
        [
            "model.yaml:18: spec.requirements: is empty, but a Python model needs the libraries it was trained "
            "with (allowed: at least one pin such as scikit-learn==1.5.2; only an R model may need none)"
        ],
        edits=[("[scikit-learn==1.5.2, xgboost==2.1.1]", "[]")],
    ),
    # ---- engines
    Case(
        "onnx-engine-without-the-converted-model",
        [
            "model.yaml:28: spec.serving.engine: onnx needs spec.artifact.onnx, the converted model (allowed: "
            'native or auto; or convert it with `modelgen convert` or deploy(engine="onnx"))'
        ],
        edits=[("    replicas: 3\n", "    engine: onnx\n")],
    ),
    Case(
        "unknown-engine",
        ['model.yaml:28: spec.serving.engine: "tensorrt" is not allowed (allowed: native, onnx, auto)'],
        edits=[("    replicas: 3\n", "    engine: tensorrt\n")],
    ),
    # ---- system packages (a line added after the last one, 37)
    Case(
        "system-package-not-a-debian-name",
        [
            'model.yaml:38: spec.systemPackages[1]: "libgomp1; rm -rf /" is not valid (allowed: a Debian package '
            "name: lower-case letters, digits, '+', '-' and '.', starting with a letter or digit, e.g. libgomp1)",
            'model.yaml:38: spec.systemPackages[2]: "LibXML2" is not valid (allowed: a Debian package '
            "name: lower-case letters, digits, '+', '-' and '.', starting with a letter or digit, e.g. libgomp1)",
        ],
        edits=[
            (
                "      resources: {memory: 2Gi}\n",
                '      resources: {memory: 2Gi}\n  systemPackages: [libpq5, "libgomp1; rm -rf /", LibXML2]\n',
            )
        ],
    ),
    # ---- input columns
    Case(
        "duplicate-input-column",
        [
            'model.yaml:23: spec.input[2].name: duplicate column "island" (first at spec.input[0]; '
            "allowed: each column name once)"
        ],
        edits=[("{name: year, type: integer}", "{name: island, type: integer}")],
        files=sample_of(GOOD_ROW.replace('"year": 2007, ', "")),
    ),
    Case(
        "empty-column-name",
        ["model.yaml:23: spec.input[2].name: is empty (allowed: a non-empty string)"],
        edits=[("{name: year, type: integer}", '{name: "", type: integer}')],
        files=sample_of(GOOD_ROW.replace('"year"', '""')),
    ),
    Case(
        "column-name-with-a-control-character",
        [
            'model.yaml:23: spec.input[2].name: column "year\\u0007\\u2028" contains the control character(s) '
            "U+0007, U+2028 (allowed: any text without control characters, line or paragraph separators)"
        ],
        edits=[("{name: year, type: integer}", r'{name: "year\a\L", type: integer}')],
        files=sample_of(GOOD_ROW.replace('"year"', r'"year\u0007\u2028"')),
    ),
    Case(
        "column-names-equal-after-nfc",
        [
            'model.yaml:23: spec.input[2].name: duplicate column "e\u0301" after Unicode NFC normalisation '
            "('\\xe9' and 'e\\u0301' are the same text) (first at spec.input[0]; allowed: each column name once)"
        ],
        edits=[
            ("{name: island, type: string,", r'{name: "\u00e9", type: string,'),
            ("{name: year, type: integer}", r'{name: "e\u0301", type: integer}'),
        ],
        files=sample_of(GOOD_ROW.replace('"island"', r'"\u00e9"').replace('"year"', r'"e\u0301"')),
    ),
    Case(
        "categories-on-number-column",
        ["model.yaml:22: spec.input[1].categories: categories on a number column (allowed: only on string columns)"],
        edits=[("type: number, nullable: true}", "type: number, nullable: true, categories: [a]}")],
    ),
    Case(
        "strict-without-categories",
        ["model.yaml:23: spec.input[2].strict: strict without categories (allowed: only with a categories list)"],
        edits=[("{name: year, type: integer}", "{name: year, type: integer, strict: true}")],
    ),
    Case(
        "column-type-unknown",
        [f'model.yaml:22: spec.input[1].type: "float" is not allowed (allowed: {TYPES})'],
        edits=[("type: number", "type: float")],
    ),
    Case(
        "column-type-missing",
        [f"model.yaml:23: spec.input[2].type: required field is missing (allowed: {TYPES})"],
        edits=[("{name: year, type: integer}", "{name: year}")],
    ),
    Case(
        "column-nullable-as-string",
        ['model.yaml:22: spec.input[1].nullable: "yes" has the wrong type (allowed: true or false)'],
        edits=[("type: number, nullable: true", 'type: number, nullable: "yes"')],
    ),
    # ---- output
    Case(
        "output-type-does-not-fit-task",
        ['model.yaml:25: spec.output.type: "value" does not fit task classification (allowed: probabilities, label)'],
        edits=[("output: {type: probabilities,", "output: {type: value,")],
    ),
    Case(
        "classification-without-classes",
        [
            "model.yaml:25: spec.output.classes: required field is missing for classification "
            "(allowed: the model's classes_, in order)"
        ],
        edits=[("{type: probabilities, classes: [Adelie, Chinstrap, Gentoo]}", "{type: label}")],
    ),
    Case(
        "classes-on-regression",
        ["model.yaml:25: spec.output.classes: classes on a regression model (allowed: only for classification)"],
        edits=[
            ("task: classification", "task: regression"),
            ("{type: probabilities,", "{type: value,"),
        ],
    ),
    Case(
        "one-class",
        ["model.yaml:25: spec.output.classes: has 1 item(s) (allowed: at least 2)"],
        edits=[("classes: [Adelie, Chinstrap, Gentoo]", "classes: [Adelie]")],
    ),
    # ---- serving and environments
    Case(
        "autoscaling-min-above-max",
        ["model.yaml:29: spec.serving.autoscaling.min: min 8 is larger than max 6 (allowed: min <= max)"],
        edits=[("autoscaling: {max: 6}", "autoscaling: {min: 8, max: 6}")],
    ),
    Case(
        "autoscaling-min-above-default-max",
        [
            "model.yaml:29: spec.serving.autoscaling.min: min 12 is larger than max 10 "
            "(max is the default; allowed: min <= max)"
        ],
        edits=[("autoscaling: {max: 6}", "autoscaling: {min: 12}")],
    ),
    Case(
        "environment-min-above-inherited-max",
        [
            "model.yaml:36: spec.environments[1].autoscaling.min: min 7 is larger than max 6 "
            "(max from spec.serving.autoscaling; allowed: min <= max)"
        ],
        edits=[("autoscaling: {min: 3}", "autoscaling: {min: 7}")],
    ),
    Case(
        "duplicate-environment-names",
        ['model.yaml:34: spec.environments[1]: "dev" is a duplicate of spec.environments[0] (allowed: each item once)'],
        edits=[("    - dev\n", "    - dev\n    - dev\n")],
    ),
    Case(
        "duplicate-environment-name-and-mapping",
        [
            'model.yaml:34: spec.environments[1]: duplicate environment "dev" '
            "(first at spec.environments[0]; allowed: each name once)"
        ],
        edits=[("    - name: prod", "    - name: dev")],
    ),
    Case(
        "bad-environment-name",
        [
            f'model.yaml:33: spec.environments[0]: "Dev_1" is not valid: has upper-case letters, '
            f'contains "_" (allowed: {ENV_RULE})'
        ],
        edits=[("    - dev\n", "    - Dev_1\n")],
    ),
    Case(
        "environment-name-too-long",
        [
            f'model.yaml:34: spec.environments[1].name: "production-europe-west" is not valid: '
            f"is 22 characters long (allowed: {ENV_RULE})"
        ],
        edits=[("    - name: prod", "    - name: production-europe-west")],
    ),
    Case(
        "environment-neither-name-nor-mapping",
        ["model.yaml:33: spec.environments[0]: 5 has the wrong type (allowed: a string or a mapping)"],
        edits=[("    - dev\n", "    - 5\n")],
    ),
    Case(
        "environment-mapping-with-two-problems",
        [
            "model.yaml:35: spec.environments[1].replicas: -1 is too small (allowed: at least 0)",
            "model.yaml:37: spec.environments[1].resource: unknown field, did you mean resources? "
            f"(allowed here: {ENV_FIELDS})",
        ],
        edits=[
            ("replicas: 4", "replicas: -1"),
            ("resources: {memory: 2Gi}", "resource: {memory: 2Gi}"),
        ],
    ),
    Case(
        "environment-mapping-without-name",
        [
            f"model.yaml:34: spec.environments[1].name: required field is missing (allowed: {ENV_RULE})",
            f"model.yaml:34: spec.environments[1].title: unknown field (allowed here: {ENV_FIELDS})",
        ],
        edits=[("    - name: prod", "    - title: prod")],
    ),
    Case(
        "environment-merge-key-brings-unknown-field",
        [f"model.yaml:34: spec.environments[1].cpu: unknown field (allowed here: {ENV_FIELDS})"],
        edits=[
            ("    resources: {cpu: 500m}", "    resources: &res {cpu: 500m}"),
            ("      resources: {memory: 2Gi}", "      <<: *res"),
        ],
    ),
    # ---- sample
    Case(
        "sample-file-missing",
        ['model.yaml:26: spec.sample: file "sample.json" not found (paths are relative to the folder of model.yaml)'],
        files={"sample.json": None},
    ),
    Case(
        "sample-not-json",
        [
            "model.yaml:26: spec.sample: sample.json is not valid JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 3 (char 2) "
            "(allowed: a JSON list of input records)"
        ],
        files={"sample.json": "[{'island': 'Biscoe'}]"},
    ),
    Case(
        "sample-not-a-list",
        [SAMPLE + "a mapping is not a sample (allowed: a non-empty JSON list of records)"],
        files={"sample.json": GOOD_ROW},
    ),
    Case(
        "sample-empty-list",
        [SAMPLE + "an empty list is not a sample (allowed: a non-empty JSON list of records)"],
        files={"sample.json": "[]"},
    ),
    Case(
        "sample-rows-do-not-match-input",
        [
            SAMPLE + 'row 1: column "year" is missing (allowed: an integer)',
            SAMPLE + 'row 2: column "species" is not an input column (allowed: island, bill_length_mm, year, sex)',
            SAMPLE + 'row 3: column "year": "2007" is not an integer',
            SAMPLE + 'row 4: column "sex": null is not allowed (column is not nullable)',
            SAMPLE + 'row 5: column "sex": "unknown" is not a known category (allowed: female, male)',
            SAMPLE + 'row 6: column "bill_length_mm": true is not a number',
            SAMPLE + "row 7: a list is not a record (allowed: an object mapping column names to values)",
            SAMPLE + 'row 8: column "island" is missing (allowed: a string or null)',
        ],
        files=sample_of(
            GOOD_ROW,
            GOOD_ROW.replace('"year": 2007, ', ""),
            GOOD_ROW.replace("}", ', "species": "Adelie"}'),
            GOOD_ROW.replace("2007", '"2007"'),
            GOOD_ROW.replace('"male"', "null"),
            GOOD_ROW.replace('"male"', '"unknown"'),
            GOOD_ROW.replace("39.1", "true"),
            '["Biscoe", 39.1, 2007, "male"]',
            GOOD_ROW.replace('"island": "Biscoe", ', ""),
        ),
    ),
    Case(
        "sample-escapes-folder",
        [f'model.yaml:26: spec.sample: "../x.json" {OUTSIDE}'],
        edits=[("sample: sample.json", "sample: ../x.json")],
        files={"../x.json": "[" + GOOD_ROW + "]"},
    ),
    Case(
        "sample-absolute-path",
        [f'model.yaml:26: spec.sample: "/x.json" {OUTSIDE}'],
        edits=[("sample: sample.json", "sample: /x.json")],
    ),
    Case(
        "sample-not-json-suffix",
        [
            'model.yaml:26: spec.sample: "sample.csv" is not valid: does not end in .json '
            "(allowed: a path relative to the manifest's folder, ending in .json)"
        ],
        edits=[("sample: sample.json", "sample: sample.csv")],
    ),
    # ---- code
    Case(
        "code-escapes-folder",
        [f'model.yaml:19: spec.code[0]: "../evil.py" {OUTSIDE}'],
        edits=[("code: [features.py]", "code: [../evil.py]")],
        files={"../evil.py": "import os\n"},
    ),
    Case(
        "code-escapes-through-subfolder",
        [f'model.yaml:19: spec.code[0]: "src/../../evil.py" {OUTSIDE}'],
        edits=[("code: [features.py]", "code: [src/../../evil.py]")],
        files={"../evil.py": "import os\n", "src/keep.py": ""},
    ),
    Case(
        "code-file-missing",
        [
            'model.yaml:19: spec.code[0]: file "transformers.py" not found '
            "(paths are relative to the folder of model.yaml)"
        ],
        edits=[("code: [features.py]", "code: [transformers.py]")],
    ),
    Case(
        "code-absolute-path",
        [
            'model.yaml:19: spec.code[0]: "/tmp/evil.py" is not valid: is an absolute path '
            "(allowed: a path relative to the manifest's folder, ending in .py (Python) or .R (R))"
        ],
        edits=[("code: [features.py]", "code: [/tmp/evil.py]")],
    ),
    Case(
        "code-hides-standard-module",
        [
            'model.yaml:19: spec.code[1]: "json.py" would hide the standard module json '
            "(allowed: a module name of your own)"
        ],
        edits=[("code: [features.py]", "code: [features.py, json.py]")],
        files={"json.py": ""},
    ),
    Case(
        "code-not-a-module-name",
        [
            'model.yaml:19: spec.code[0]: "my-features.py" is not an importable module name '
            "(allowed: letters, digits and '_', not starting with a digit, plus .py)"
        ],
        edits=[("code: [features.py]", "code: [my-features.py]")],
        files={"my-features.py": ""},
    ),
    Case(
        "code-same-module-twice",
        [
            'model.yaml:19: spec.code[1]: "src/features.py" has the same module name as '
            "spec.code[0] (allowed: distinct file names)"
        ],
        edits=[("code: [features.py]", "code: [features.py, src/features.py]")],
        files={"src/features.py": ""},
    ),
]


def edit(folder: Path, edits: list[tuple[str, str]]) -> str:
    text = VALID_TEXT
    for old, new in edits:
        assert text.count(old) == 1, f"edit {old!r} must match exactly once"
        text = text.replace(old, new)
    (folder / "model.yaml").write_text(text, "utf-8")
    return text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_manifest_is_reported_exactly(folder, case):
    text = edit(folder, case.edits) if case.text is None else case.text
    (folder / "model.yaml").write_text(text, "utf-8")
    for rel, content in case.files.items():
        target = folder / rel
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, "utf-8")
    numbered = "\n".join(f"{n:3} {line}" for n, line in enumerate(text.splitlines(), 1))
    assert problems() == case.expected, f"model.yaml:\n{numbered}"


def test_there_are_enough_broken_cases():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


def test_many_problems_in_one_file_are_all_reported_sorted_by_line(tmp_path, monkeypatch):
    shutil.copy(FIXTURES / "many-problems.yaml", tmp_path / "model.yaml")
    monkeypatch.chdir(tmp_path)
    found = problems()
    assert found == [
        f'model.yaml:5: metadata.name: "Penguin_Species" is not valid: has upper-case letters, '
        f'contains "_" (allowed: {NAME_RULE})',
        f'model.yaml:6: metadata.version: "1.0" is not valid (allowed: {VERSION_RULE})',
        "model.yaml:11: spec.artifact.sha256: required field is missing (SHA-256 of the artifact "
        "bytes, 64 lower-case hex digits; the service refuses any other bytes)",
        'model.yaml:13: spec.artifact.format: "onnx" is not allowed (allowed: joblib, pickle, skops, rds)',
        f'model.yaml:15: spec.requirements[0]: "scikit-learn>=1.0" is not valid: is not pinned '
        f"with == (allowed: {PIN_RULE})",
        f'model.yaml:17: spec.code[0]: "../evil.py" {OUTSIDE}',
        f'model.yaml:20: spec.input[0].type: "text" is not allowed (allowed: {TYPES})',
        "model.yaml:23: spec.input[1].categories: categories on a number column (allowed: only on string columns)",
        'model.yaml:24: spec.input[2].name: duplicate column "island" (first at spec.input[0]; '
        "allowed: each column name once)",
        f"model.yaml:26: spec.input[3].type: required field is missing (allowed: {TYPES})",
        'model.yaml:28: spec.output.type: "probabilities" does not fit task regression (allowed: value)',
        "model.yaml:29: spec.output.classes: classes on a regression model (allowed: only for classification)",
        f'model.yaml:30: spec.sample: "../outside.json" {OUTSIDE}',
        'model.yaml:32: spec.serving.replicas: "two" has the wrong type (allowed: an integer)',
        "model.yaml:33: spec.serving.autoscaling.min: min 8 is larger than max 4 (allowed: min <= max)",
        'model.yaml:34: spec.environments[2]: "dev" is a duplicate of spec.environments[0] (allowed: each item once)',
        f"model.yaml:35: spec.paging: unknown field (allowed here: {SPEC_FIELDS})",
    ]
    lines = (tmp_path / "model.yaml").read_text().splitlines()
    # Each problem points at a line that names its field (or, for a missing one, its parent).
    for problem in found:
        number, path = int(problem.split(":")[1]), problem.split(": ")[1]
        last = path.rsplit(".", 1)[-1].split("[")[0]
        missing = "required field is missing" in problem
        parent = path.rsplit(".", 2)[-2].split("[")[0] if missing else last
        assert f"{parent}:" in lines[number - 1] or lines[number - 1].lstrip().startswith("- ")


def test_a_long_broken_sample_is_cut_short(folder):
    rows = ['{"island": "Biscoe"}'] * 10  # three missing columns per row
    (folder / "sample.json").write_text("[" + ",".join(rows) + "]")
    found = problems()
    assert len(found) == 21
    assert found[0] == SAMPLE + 'row 0: column "bill_length_mm" is missing (allowed: a number or null)'
    assert found[-1] == SAMPLE + "10 more problem(s) not listed"


def test_file_problems(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert problems("missing.yaml") == ["missing.yaml: (document): file not found"]
    (tmp_path / "latin1.yaml").write_bytes(b"description: caf\xe9\n")
    assert problems("latin1.yaml") == [
        "latin1.yaml: (document): cannot read file ('utf-8' codec can't decode byte 0xe9 in "
        "position 16: invalid continuation byte)"
    ]


def test_messages_name_the_file_as_given(folder):
    edit(folder, [("task: classification", "task: classify")])
    with pytest.raises(ManifestError) as info:
        load(folder / "model.yaml")
    assert str(info.value).startswith(f"{folder / 'model.yaml'}:13: spec.task: ")


def test_validate_command_prints_every_problem_and_exits_1(folder, capsys):
    assert main(["validate", "model.yaml"]) == 0
    assert capsys.readouterr().out.startswith("model.yaml: valid (penguin-species 1.2.0")
    edit(folder, [("task: classification", "task: classify"), ("replicas: 3", "replicas: two")])
    assert main(["validate", "model.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f'model.yaml:13: spec.task: "classify" is not allowed (allowed: {TASKS})',
        'model.yaml:28: spec.serving.replicas: "two" has the wrong type (allowed: an integer)',
    ]
    assert "Traceback" not in err


def test_every_schema_pattern_is_explained_in_words():
    patterns = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema())
    assert patterns == set(PATTERN_MEANINGS)


# ---------------------------------------------------------------------------- reference page


def schema_property_paths() -> list[str]:
    """Every property of the schema as a docs path: ``spec.input[].name``."""
    paths: list[str] = []

    def walk(prefix: str, node: dict) -> None:
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            paths.append(path)
            if sub.get("type") == "array":
                sub, path = sub.get("items", {}), path + "[]"
            for branch in [sub, *sub.get("oneOf", [])]:
                walk(path, branch)

    walk("", schema())
    return paths


def test_docs_page_is_the_generated_reference():
    page = (ROOT / "docs" / "manifest.md").read_text("utf-8")
    assert page == docs.manifest_reference(), (
        "docs/manifest.md is stale: run `modelgen docs manifest -o docs/manifest.md`"
    )


def test_docs_page_covers_every_schema_property():
    page = docs.manifest_reference()
    paths = schema_property_paths()
    # spec.input[].dtype, spec.systemPackages, spec.serving.engine/onnx, spec.artifact.onnx (21) and
    # spec.serving.modelCache (3); spec.training.resources has fields of its own (their defaults differ)
    assert len(paths) == 116
    assert "spec.training.resources.memory" in paths
    assert "metadata.provenance.metrics" in paths and "spec.artifact.trusted" in paths
    assert "spec.environments[].host" in paths and "spec.serving.autoscaling.cpu" in paths
    missing = [p for p in paths if f"| `{p}` |" not in page]
    assert missing == []
    for meaning in PATTERN_MEANINGS.values():
        assert meaning in page


def test_docs_reference_is_deterministic():
    assert docs.manifest_reference() == docs.manifest_reference()


def test_docs_example_is_a_valid_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.yaml").write_text(docs.EXAMPLE)
    (tmp_path / "sample.json").write_text(docs.EXAMPLE_SAMPLE)
    (tmp_path / "features.py").write_text("")
    m = load("model.yaml")
    assert (m.name, m.task, [e.name for e in m.environments]) == (
        "penguin-species",
        "classification",
        ["dev", "prod"],
    )
    # The message quoted in the page's introduction is the one validate prints.
    (tmp_path / "model.yaml").write_text(docs.EXAMPLE.replace("task: classification", "task: classify"))
    [message] = problems()
    assert f"```text\n{message}\n```" in docs.manifest_reference()


# ---------------------------------------------------------------------------- hostile files


def test_an_alias_bomb_is_refused_before_it_is_expanded(folder):
    # 10 lists of 10 aliases, 7 deep: 10**7 leaves once expanded, 2 KB as written.
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    (folder / "model.yaml").write_text(VALID_TEXT + "\n".join(lines) + "\n", "utf-8")
    (message,) = problems()  # before the bound, validate spent 24 s walking the expansion
    expanded = re.fullmatch(
        r"model\.yaml: \(document\): the document expands to ([0-9,]+) values through YAML aliases "
        r"\(allowed: at most 100,000; write the values out instead of nesting aliases\)",
        message,
    )
    assert expanded and int(expanded[1].replace(",", "")) > 10**8


def test_a_few_aliases_are_still_fine(folder):
    edit(folder, [("    autoscaling: {max: 6}", "    autoscaling: &scaling {max: 6}")])
    assert load("model.yaml").serving.autoscaling.max == 6


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_manifest_that_is_no_regular_small_file_is_refused_at_once(folder, kind):
    target = folder / "model.yaml"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)  # reading it would block forever
        expected = "model.yaml: (document): not a regular file (allowed: a YAML file)"
    elif kind == "device":
        target.symlink_to("/dev/zero")  # reading it would fill memory
        expected = "model.yaml: (document): not a regular file (allowed: a YAML file)"
    else:
        target.write_text("# padding\n" * 200_000)
        expected = "model.yaml: (document): the file has 2,000,000 bytes (allowed: at most 1,024 KiB)"
    assert problems() == [expected]


def test_named_files_tolerates_what_load_refuses():
    assert list(named_files("spec: {sample: [unclosed")) == []
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"b{i}: &b{i} [{', '.join(['*' + ('a' if i == 0 else f'b{i - 1}')] * 10)}]\n" for i in range(6)
    )
    assert list(named_files(bomb + "spec: {sample: s.json}\n")) == []
    assert list(named_files("spec: {sample: s.json, code: [a.py], training: {script: t.py}}")) == [
        "s.json",
        "a.py",
        "t.py",
    ]


def test_a_reference_symlinked_out_of_the_folder_is_refused(folder):
    (folder / "reference.csv").symlink_to("/etc/passwd")
    edit(folder, [("  environments:", "  monitoring: {reference: reference.csv}\n  environments:")])
    assert problems() == [
        'model.yaml:32: spec.monitoring.reference: "reference.csv" points outside the manifest\'s folder '
        "(allowed: a relative path inside the folder of model.yaml, or a file:// or http(s):// URI)"
    ]


def test_a_scalar_yaml_cannot_convert_is_one_line(folder):
    # ruamel turns 2023-13-45 into a date and fails with a ValueError of its own.
    edit(folder, [("  labels: {team: data-science}", "  labels: {team: data-science}\n  when: 2023-13-45")])
    assert problems() == ["model.yaml: (document): not valid YAML: month must be in 1..12"]
