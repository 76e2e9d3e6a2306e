"""Rules JSON Schema cannot state, one small function per concern.

Each rule looks only at values the schema check found usable (``Checked.get``) and reports
through ``Checked.add``, so one broken field gives one problem, not a cascade. ``RULES`` runs
in order; the loader sorts what they find by line.
"""

from __future__ import annotations

import json
import keyword
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelgen.credentials import WHERE_REGISTRY_CREDENTIALS_GO, has_credentials, redacted
from modelgen.errors import Problem
from modelgen.manifest.document import MISSING, FieldPath, dotted, line_of, one_line
from modelgen.manifest.messages import show
from modelgen.manifest.model import LOG_PREDICTION, LOG_TIMESTAMP, OUTPUTS_BY_TASK
from modelgen.manifest.validate import default
from modelgen.manifest.values import sample_problems

# What each runtime accepts where the schema lists both runtimes' values.
RUNTIME_VALUES = {
    "python": {"framework": ("sklearn", "xgboost"), "format": ("joblib", "pickle", "skops"), "code": ".py"},
    "r": {"framework": ("caret", "mlr", "mlr3", "recipes", "glmnet", "stats"), "format": ("rds",), "code": ".R"},
}
R_ONLY = ("lockfile", "rVersion", "cran")
TRAINING_SCRIPT_SUFFIXES = {"python": (".py",), "r": (".R", ".r")}
# Unicode categories a column name may not contain: C0/C1 controls, line and paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# At most this many sample-row problems are listed; a broken sample would flood the output.
MAX_SAMPLE_PROBLEMS = 20


@dataclass
class Checked:
    """A schema-checked document as the rules see it.

    ``base`` is the manifest's folder, or None when the manifest is read without its files
    (a manifest at a commit of the GitOps repository): rules about files then do not run.
    """

    doc: Any  # for line numbers
    plain: Any  # the same document as plain values
    label: str
    bad: set[FieldPath]
    base: Path | None
    manifest_name: str
    problems: list[Problem] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: FieldPath, message: str) -> None:
        self.problems.append(Problem(self.label, line_of(self.doc, path), dotted(path), message))

    def get(self, *path: str | int) -> Any:
        """The value at ``path`` if it is there and passed the schema check, else MISSING."""
        if any(b[: len(path)] == path or path[: len(b)] == b for b in self.bad):
            return MISSING
        node = self.plain
        for key in path:
            if not isinstance(node, (dict, list)):
                return MISSING
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return MISSING
        return node

    def spec_list(self, key: str) -> list[Any]:
        """``spec.<key>`` as written (even if some items failed the schema check), or []."""
        node = self.plain["spec"].get(key)
        return node if isinstance(node, list) else []


Rule = Callable[[Checked], None]


def check(checked: Checked) -> Checked:
    """Run every rule on ``checked`` (a document with a usable ``spec``); its problems and sample fill in."""
    if isinstance(checked.plain.get("spec"), dict):
        for rule in RULES:
            rule(checked)
    return checked


# ---------------------------------------------------------------------------- spec.input


def column_name_characters(c: Checked) -> None:
    """Names travel in JSON, CSV headers, Prometheus labels and YAML: any text but control characters."""
    for i, _ in enumerate(c.spec_list("input")):
        name = c.get("spec", "input", i, "name")
        if isinstance(name, str):
            bad = sorted({ch for ch in name if unicodedata.category(ch) in CONTROL_CATEGORIES})
            if bad:
                shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad)
                c.add(
                    ("spec", "input", i, "name"),
                    f"column {show(name)} contains the control character(s) {shown} "
                    "(allowed: any text without control characters, line or paragraph separators)",
                )


def unique_columns(c: Checked) -> None:
    # NFC: "é" typed as one code point or as "e" + a combining accent looks the same to every
    # person and many tools (a CSV header saved by an editor may change form), so both cannot be columns.
    seen: dict[str, int] = {}
    for i, _ in enumerate(c.spec_list("input")):
        name = c.get("spec", "input", i, "name")
        if isinstance(name, str):
            key = unicodedata.normalize("NFC", name)
            if key in seen:
                first = seen[key]
                earlier = c.get("spec", "input", first, "name")
                same = (
                    ""
                    if earlier == name
                    else (f" after Unicode NFC normalisation ({ascii(earlier)} and {ascii(name)} are the same text)")
                )
                c.add(
                    ("spec", "input", i, "name"),
                    f"duplicate column {show(name)}{same} (first at spec.input[{first}]; "
                    "allowed: each column name once)",
                )
            seen.setdefault(key, i)


def no_log_field_names(c: Checked) -> None:
    for i, _ in enumerate(c.spec_list("input")):
        name = c.get("spec", "input", i, "name")
        if name in (LOG_TIMESTAMP, LOG_PREDICTION):
            c.add(
                ("spec", "input", i, "name"),
                f"{show(name)} is the input log's own field "
                f"(allowed: any name but {LOG_TIMESTAMP} and {LOG_PREDICTION})",
            )


def categories_on_strings(c: Checked) -> None:
    for i, col in enumerate(c.spec_list("input")):
        p: FieldPath = ("spec", "input", i)
        kind = c.get(*p, "type")
        has_categories = isinstance(col, dict) and "categories" in col
        if has_categories and kind not in (MISSING, "string"):
            c.add((*p, "categories"), f"categories on a {kind} column (allowed: only on string columns)")
        if c.get(*p, "strict") is True and isinstance(col, dict) and not has_categories:
            c.add((*p, "strict"), "strict without categories (allowed: only with a categories list)")


# ---------------------------------------------------------------------------- spec.output


def output_fits_task(c: Checked) -> None:
    task, kind = c.get("spec", "task"), c.get("spec", "output", "type")
    if task is MISSING or kind is MISSING:
        return
    allowed = OUTPUTS_BY_TASK[task]
    if kind not in allowed:
        c.add(("spec", "output", "type"), f"{show(kind)} does not fit task {task} (allowed: {', '.join(allowed)})")


def classes_for_classification(c: Checked) -> None:
    task, output = c.get("spec", "task"), c.get("spec", "output")
    if not isinstance(output, dict):
        return
    if task == "classification" and "classes" not in output:
        c.add(
            ("spec", "output", "classes"),
            "required field is missing for classification (allowed: the model's classes_, in order)",
        )
    if task not in (MISSING, "classification") and "classes" in output:
        c.add(("spec", "output", "classes"), f"classes on a {task} model (allowed: only for classification)")


# ---------------------------------------------------------------------------- serving and environments


def _scaling_defaults() -> tuple[str, dict[str, int]]:
    """The autoscaling bounds a manifest that states none gets, and how messages name them."""
    return "the default", {k: default("spec", "serving", "autoscaling", k) for k in ("min", "max")}


def serving_scaling_bounds(c: Checked) -> None:
    scaling = c.get("spec", "serving", "autoscaling")
    if isinstance(scaling, dict):
        _check_scaling(c, ("spec", "serving", "autoscaling"), [_scaling_defaults(), ("", scaling)])


def unique_environments(c: Checked) -> None:
    names: dict[str, int] = {}
    for i, env in enumerate(c.spec_list("environments")):
        if c.get("spec", "environments", i) is MISSING:
            continue
        name = env if isinstance(env, str) else env["name"]
        if name in names:
            c.add(
                ("spec", "environments", i),
                f"duplicate environment {show(name)} (first at spec.environments[{names[name]}]; "
                "allowed: each name once)",
            )
        names.setdefault(name, i)


def environment_scaling_bounds(c: Checked) -> None:
    scaling = c.get("spec", "serving", "autoscaling")
    inherited = scaling if isinstance(scaling, dict) else {}
    for i, env in enumerate(c.spec_list("environments")):
        if c.get("spec", "environments", i) is MISSING:
            continue
        own = env.get("autoscaling") if isinstance(env, dict) else None
        if own:
            layers = [_scaling_defaults(), ("spec.serving.autoscaling", inherited), ("", own)]
            _check_scaling(c, ("spec", "environments", i, "autoscaling"), layers)


def _check_scaling(c: Checked, path: FieldPath, layers: list[tuple[str, dict[str, Any]]]) -> None:
    """min <= max once ``layers`` (lowest precedence first; "" is the mapping at ``path``) merge."""
    value: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, given in layers:
        for key in ("min", "max"):
            if key in given:
                value[key], origin[key] = given[key], source
    if value["min"] <= value["max"]:
        return
    where = next((k for k in ("min", "max") if origin[k] == ""), None)
    notes = [
        f"{key} is {origin[key]}" if origin[key] == "the default" else f"{key} from {origin[key]}"
        for key in ("min", "max")
        if origin[key]
    ]
    c.add(
        (*path, where) if where else path,
        f"min {value['min']} is larger than max {value['max']} ({'; '.join([*notes, 'allowed: min <= max'])})",
    )


# ---------------------------------------------------------------------------- the runtime's values


def runtime_values(c: Checked) -> None:
    runtime = c.get("spec", "runtime")
    if runtime is MISSING:
        return
    allowed = RUNTIME_VALUES[runtime]
    for key, path in (("framework", ("spec", "framework")), ("format", ("spec", "artifact", "format"))):
        value = c.get(*path)
        if value is not MISSING and value not in allowed[key]:
            c.add(path, f"{show(value)} is not a {runtime} {key} (allowed: {', '.join(allowed[key])})")


def r_fields_on_r(c: Checked) -> None:
    if c.get("spec", "runtime") == "python":
        for key in R_ONLY:
            if key in c.plain["spec"]:
                c.add(("spec", key), f"{key} applies to R models only (allowed here: leave it out)")


def python_requirements(c: Checked) -> None:
    # A base-R model (lm, glm) needs no package beyond R; a Python artifact always needs the
    # library that pickled it.
    if c.get("spec", "runtime") == "python" and c.get("spec", "requirements") == []:
        c.add(
            ("spec", "requirements"),
            "is empty, but a Python model needs the libraries it was trained with "
            "(allowed: at least one pin such as scikit-learn==1.5.2; only an R model may need none)",
        )


def engine_has_its_artifact(c: Checked) -> None:
    engine = c.get("spec", "serving", "engine")
    onnx = c.get("spec", "artifact", "onnx")
    if c.get("spec", "runtime") == "r":
        if engine not in (MISSING, "native"):
            c.add(("spec", "serving", "engine"), f"{show(engine)}: an R model is served natively (allowed: native)")
        if onnx is not MISSING:
            c.add(("spec", "artifact", "onnx"), "applies to Python models only (allowed here: leave it out)")
    elif engine == "onnx" and onnx is MISSING:
        fallback = c.get("spec", "serving", "onnx", "fallback")
        why = f" (the conversion said: {fallback})" if isinstance(fallback, str) and fallback else ""
        c.add(
            ("spec", "serving", "engine"),
            f"onnx needs spec.artifact.onnx, the converted model{why} (allowed: native or auto; or convert it "
            'with `modelgen convert` or deploy(engine="onnx"))',
        )


def trusted_only_for_skops(c: Checked) -> None:
    if c.get("spec", "runtime") is MISSING:
        return
    if c.get("spec", "artifact", "trusted") is not MISSING and c.get("spec", "artifact", "format") != "skops":
        c.add(("spec", "artifact", "trusted"), "trusted applies to skops artifacts only (allowed: leave it out)")


def code_of_the_runtime(c: Checked) -> None:
    runtime = c.get("spec", "runtime")
    if runtime is MISSING:
        return
    suffix = RUNTIME_VALUES[runtime]["code"]
    for i, rel in enumerate(c.spec_list("code")):
        if isinstance(rel, str) and c.get("spec", "code", i) is not MISSING and not rel.endswith(suffix):
            c.add(("spec", "code", i), f"{show(rel)} is not {runtime} code (allowed: {suffix} files)")


# ---------------------------------------------------------------------------- credentials


# The fields that hold URIs; the manifest is committed to Git and the artifact URI served on /metadata.
URI_FIELDS: tuple[FieldPath, ...] = (
    ("spec", "artifact", "uri"),
    ("spec", "artifact", "onnx", "uri"),
    ("spec", "monitoring", "reference"),
    ("spec", "training", "registry"),
    ("spec", "training", "data"),
    ("metadata", "provenance", "data"),
)


def no_credentials_in_uris(c: Checked) -> None:
    for path in URI_FIELDS:
        value = c.get(*path)
        if isinstance(value, str) and has_credentials(value):
            c.add(
                path,
                f"{show(redacted(value))} carries credentials, and the manifest goes into Git, the Deployment and "
                f"the service's /metadata (allowed: the URI without user:password@; {WHERE_REGISTRY_CREDENTIALS_GO})",
            )


# ---------------------------------------------------------------------------- files beside the manifest


def code_files(c: Checked) -> None:
    if c.base is None:
        return
    modules: dict[str, int] = {}
    for i, rel in enumerate(c.spec_list("code")):
        if c.get("spec", "code", i) is MISSING:
            continue
        resolved = _file_problem(c, ("spec", "code", i), rel)
        if resolved is None or c.get("spec", "runtime") == "r":  # R files are sourced by path: no module names
            continue
        problem = _module_problem(resolved, rel, modules)
        if problem:
            c.add(("spec", "code", i), problem)
        modules.setdefault(resolved.stem, i)


def _module_problem(resolved: Path, rel: str, modules: dict[str, int]) -> str | None:
    module = resolved.stem
    if not module.isidentifier() or keyword.iskeyword(module):
        return (
            f"{show(resolved.name)} is not an importable module name (allowed: letters, "
            "digits and '_', not starting with a digit, plus .py)"
        )
    if module in sys.stdlib_module_names or module == "app":
        hidden = "service's package app" if module == "app" else f"standard module {module}"
        return f"{show(resolved.name)} would hide the {hidden} (allowed: a module name of your own)"
    if module in modules:
        return f"{show(rel)} has the same module name as spec.code[{modules[module]}] (allowed: distinct file names)"
    return None


def training_script(c: Checked) -> None:
    script = c.get("spec", "training", "script")
    if not isinstance(script, str):
        return
    runtime = c.get("spec", "runtime")
    expected = TRAINING_SCRIPT_SUFFIXES.get(runtime, ())
    if expected and not script.endswith(expected):
        c.add(("spec", "training", "script"), f"{show(script)} is not a {runtime} script (allowed: {expected[0]})")
    elif c.base is not None:
        _file_problem(c, ("spec", "training", "script"), script)


def reference_inside(c: Checked) -> None:
    """A reference given as a path is read beside the manifest, like the sample: never from elsewhere."""
    reference = c.get("spec", "monitoring", "reference")
    if not isinstance(reference, str) or "://" in reference or c.base is None:
        return
    if _inside(c.base, reference) is None:
        c.add(
            ("spec", "monitoring", "reference"),
            f"{show(reference)} points outside the manifest's folder (allowed: a relative path inside the folder "
            f"of {c.manifest_name}, or a file:// or http(s):// URI)",
        )


def sample_file(c: Checked) -> None:
    rel = c.get("spec", "sample")
    if rel is MISSING or c.base is None:
        return
    resolved = _file_problem(c, ("spec", "sample"), rel)
    if resolved is None:
        return
    try:
        sample = json.loads(resolved.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        c.add(
            ("spec", "sample"), f"{rel} is not valid JSON: {one_line(str(err))} (allowed: a JSON list of input records)"
        )
        return
    except OSError as err:
        c.add(("spec", "sample"), f"cannot read {rel} ({err.strerror or err})")
        return
    c.sample = sample
    columns = c.get("spec", "input")
    names = {col.get("name") for col in columns} if isinstance(columns, list) else set()
    if columns is not MISSING and len(names) == len(columns):  # usable, no duplicates
        found = list(sample_problems(sample, columns))
        for message in found[:MAX_SAMPLE_PROBLEMS]:
            c.add(("spec", "sample"), f"{rel}: {message}")
        if len(found) > MAX_SAMPLE_PROBLEMS:
            c.add(("spec", "sample"), f"{rel}: {len(found) - MAX_SAMPLE_PROBLEMS} more problem(s) not listed")


def _file_problem(c: Checked, path: FieldPath, rel: str) -> Path | None:
    """``rel`` resolved inside the manifest's folder if it names a file there; else reports why not."""
    assert c.base is not None
    resolved = _inside(c.base, rel)
    if resolved is None:
        c.add(
            path,
            f"{show(rel)} points outside the manifest's folder "
            f"(allowed: a relative path inside the folder of {c.manifest_name})",
        )
        return None
    try:
        exists, is_file = resolved.exists(), resolved.is_file()
    except OSError as err:
        c.add(path, f"cannot read {show(rel)} ({err.strerror or err})")
        return None
    if not exists:
        c.add(path, f"file {show(rel)} not found (paths are relative to the folder of {c.manifest_name})")
    elif not is_file:
        c.add(path, f"{show(rel)} is not a file (allowed: a file in the folder of {c.manifest_name})")
    return resolved if is_file else None


def _inside(base: Path, rel: str) -> Path | None:
    try:
        target = (base / rel).resolve()
    except (OSError, ValueError, RuntimeError):  # NUL byte, symlink loop
        return None
    return target if target.is_relative_to(base) else None


RULES: tuple[Rule, ...] = (
    column_name_characters,
    unique_columns,
    no_log_field_names,
    categories_on_strings,
    output_fits_task,
    classes_for_classification,
    serving_scaling_bounds,
    unique_environments,
    environment_scaling_bounds,
    runtime_values,
    r_fields_on_r,
    python_requirements,
    engine_has_its_artifact,
    trusted_only_for_skops,
    code_of_the_runtime,
    code_files,
    training_script,
    reference_inside,
    sample_file,
    no_credentials_in_uris,
)
