"""Manifest in, files out: render a model project as a ``{relative path: bytes}`` mapping.

Nothing here writes outside a private temporary folder; ``output.write_project`` is the one
place that touches the caller's disk.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import asdict
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from typing import Any

from cookiecutter.environment import StrictEnvironment
from jinja2 import Template, TemplateError

from modelgen import __version__
from modelgen.errors import RenderError
from modelgen.manifest import Manifest
from modelgen.manifest.model import THRESHOLD_NAMES
from modelgen.render import contract

PYTHON_VERSION = "3.11"
# Where BuildConfigs clone the model project from; `init-gitops` settings replace it.
DEFAULT_GITOPS_REPO_URL = "https://gitlab.example.com/platform/models.git"
# The image with modelgen that runs the drift job; `init-gitops` settings (ci_image) replace it.
DEFAULT_TOOLS_IMAGE = f"registry.example.com/platform/modelgen-ci:{__version__}"
Files = dict[str, bytes]


# A folder laid out like cookiecutters/ (a platform team's fork of the templates) wins over both.
TEMPLATES_VARIABLE = "MODELGEN_TEMPLATES"


def templates_dir() -> Path:
    """Where the cookiecutter templates are: ``$MODELGEN_TEMPLATES``, the source checkout, else the wheel's.

    The checkout wins over the wheel so that an editable install renders the templates being
    edited, not the copy hatchling put in site-packages when it was installed.
    """
    if os.environ.get(TEMPLATES_VARIABLE):
        return Path(os.environ[TEMPLATES_VARIABLE])
    checkout = Path(__file__).resolve().parents[3] / "cookiecutters"
    if (checkout / COMMON).is_dir():
        return checkout
    return Path(str(resources.files("modelgen"))) / "_templates"


# Parts every runtime shares (deploy/, CI) come from one template, rendered first; the
# runtime's own template is laid over it. ``overlay/`` is rendered once per environment.
COMMON = "common"
OVERLAY = "overlay"
# Files a project takes from the model's folder instead of a template (see _verbatim_files).
RECORD = ".modelgen.json"
SAMPLE = "tests/sample.json"
CODE_DIR = "model_code"
# The reference profile (computed by modelgen.monitoring.reference when the manifest has spec.monitoring)
# and the training script: kept in the project, never re-rendered.
PROFILE = "deploy/base/monitoring/profile.json"
TRAINING_DIR = "training"
TRAINING_JOB = f"{TRAINING_DIR}/job.yaml"  # rendered; the script beside it is copied


def is_verbatim(path: str) -> bool:
    return (
        path in ("model.yaml", SAMPLE, RECORD, PROFILE)
        or path.startswith(f"{CODE_DIR}/")
        or (path.startswith(f"{TRAINING_DIR}/") and path != TRAINING_JOB)
    )


def context(
    manifest: Manifest,
    gitops_repo_url: str = DEFAULT_GITOPS_REPO_URL,
    profile: dict[str, Any] | None = None,
    tools_image: str = DEFAULT_TOOLS_IMAGE,
) -> dict[str, Any]:
    """Everything a template may use, derived from the manifest (and, with monitoring, the
    reference profile computed from it), so output is reproducible."""
    return {
        "name": manifest.name,
        "version": manifest.version,
        "owner": manifest.owner,
        "description": manifest.description,
        "labels": manifest.labels,
        "runtime": manifest.runtime,
        "framework": manifest.framework,
        "task": manifest.task,
        "output": {"type": manifest.output.type, "classes": list(manifest.output.classes)},
        "columns": [asdict(c) for c in manifest.columns],
        "requirements": list(manifest.requirements),
        "code_modules": [Path(p).name for p in manifest.code],
        "system_packages": list(manifest.apt_packages),
        "artifact": contract.artifact_fields(manifest.artifact),
        "onnx": contract.onnx_fields(manifest),
        "artifact_filename": manifest.artifact.filename,
        "serving": _serving_context(manifest),
        "environments": [asdict(e) for e in manifest.environments],
        "example": manifest.sample[:2],
        "gitops_repo_url": gitops_repo_url,
        "tools_image": tools_image,
        "monitoring": _monitoring_context(manifest, profile),
        "training": _training_context(manifest),
        "python_version": PYTHON_VERSION,
        **(_r_context(manifest) if manifest.runtime == "r" else {}),
        "modelgen_version": __version__,
        "contract": contract.build(manifest, profile, __version__),
    }


def render(
    manifest: Manifest,
    *,
    gitops_repo_url: str = DEFAULT_GITOPS_REPO_URL,
    templates: Path | None = None,
    profile: dict[str, Any] | None = None,
    tools_image: str = DEFAULT_TOOLS_IMAGE,
) -> Files:
    """Render the project for ``manifest``; keys are POSIX paths relative to the project root.

    A manifest with ``spec.monitoring`` needs its reference ``profile`` (see
    ``modelgen.monitoring.reference``); ``tools_image`` is the image with modelgen that runs the drift job.

    >>> from modelgen.manifest.docs import write_example
    >>> manifest = write_example()
    >>> from modelgen.manifest import load
    >>> files = render(load(manifest))
    >>> "Dockerfile" in files, "deploy/base/kustomization.yaml" in files, type(files["Dockerfile"])
    (True, True, <class 'bytes'>)
    """
    if manifest.monitoring and profile is None:
        raise RenderError(f"{manifest.path}: spec.monitoring needs the reference profile to render the project")
    root = templates or templates_dir()
    ctx = context(manifest, gitops_repo_url, profile, tools_image)
    files = render_inputs(ctx, root)
    files.update(_verbatim_files(manifest, ctx, template_version(manifest.runtime, root)))
    if profile is not None and manifest.monitoring:
        files[PROFILE] = (json.dumps(profile, indent=1, sort_keys=True) + "\n").encode("utf-8")
    return dict(sorted(files.items()))


# The template context keeps the manifest's own (camelCase) field names: it is recorded in
# .modelgen.json, and upgrades re-render recorded contexts with older templates.


def _serving_context(manifest: Manifest) -> dict[str, Any]:
    s = manifest.serving
    return {
        "server": s.server,
        "workers": s.workers,
        "maxRequestBytes": s.max_request_bytes,
        "timeoutSeconds": s.timeout_seconds,
        "replicas": s.replicas,
        "autoscaling": asdict(s.autoscaling),
        "resources": asdict(s.resources),
        "host": s.host,
        "modelCache": (
            {"claim": s.model_cache.claim, "maxAgeDays": s.model_cache.max_age_days} if s.model_cache else None
        ),
    }


def _monitoring_context(manifest: Manifest, profile: dict[str, Any] | None) -> dict[str, Any] | None:
    monitoring = manifest.monitoring
    if not monitoring or profile is None:
        return None
    return {
        "reference": monitoring.reference,
        "sampleRate": monitoring.sample_rate,
        "logSize": monitoring.log_size,
        "schedule": monitoring.schedule,
        "window": monitoring.window,
        "notify": {**asdict(monitoring.notify), "email": list(monitoring.notify.email)},
        "thresholds": {THRESHOLD_NAMES[k]: v for k, v in sorted(monitoring.thresholds.items())},
        # The missing-rate alert fires per feature over what the reference had, plus the margin.
        "missing": {name: round(f["missing"], 4) for name, f in sorted(profile["features"].items())},
    }


def _training_context(manifest: Manifest) -> dict[str, Any] | None:
    training = manifest.training
    if not training:
        return None
    return {**asdict(training), "script_file": f"{TRAINING_DIR}/{Path(training.script).name}"}


def render_inputs(ctx: dict[str, Any], root: Path) -> Files:
    """The templated part of a project, from a context as ``context`` makes it (or as
    ``.modelgen.json`` recorded it) and the templates under ``root``; upgrades render the
    recorded inputs with the recorded templates to know what was generated before."""
    template = root / f"{ctx['runtime']}-model"
    if not (template / "cookiecutter.json").is_file():
        raise RenderError(f"no template for runtime {ctx['runtime']!r} at {template}")
    common = root / COMMON
    files: Files = {}
    for source in (common, template):
        files.update(_cookiecutter(source, ctx))
    for env in ctx["environments"]:
        files.update(_overlay(common / OVERLAY, ctx, env))
    return files


def _r_context(manifest: Manifest) -> dict[str, Any]:
    """What only the R template needs: the lock file, R's version, the packages as name/version."""
    return {
        "lockfile": manifest.lockfile,
        "r_version": manifest.r_version,
        "cran": manifest.cran,
        "r_packages": [dict(zip(("name", "version"), r.split("=="), strict=True)) for r in manifest.requirements],
        "code_files": [Path(p).name for p in manifest.code],
    }


# Templates from before the one contract (no app/contract.json in common/) had R's /openapi.json
# and /schema rendered apart, by code no stored template holds: see ``legacy_documents``.
LEGACY_R_DOCUMENTS = ("app/openapi.json", "app/schema.json")


def legacy_documents(ctx: dict[str, Any], root: Path) -> tuple[str, ...]:
    """The files a project rendered from the templates under ``root`` had that those templates
    cannot render again (R's documents before the one contract); an upgrade takes them as they are."""
    if ctx["runtime"] != "r" or (root / COMMON / "{{cookiecutter.name}}" / "app" / "contract.json").is_file():
        return ()
    return LEGACY_R_DOCUMENTS


def template_files(runtime: str, root: Path | None = None) -> Files:
    """The template sources a ``runtime`` project is rendered from, keyed ``common/...`` and
    ``<runtime>-model/...``: what a GitOps repository stores to re-render old projects."""
    root = root or templates_dir()
    files: Files = {}
    for name in (COMMON, f"{runtime}-model"):
        for rel, data in _read_tree(root / name).items():
            files[f"{name}/{rel}"] = data
    return files


def template_version(runtime: str, root: Path | None = None) -> str:
    """A digest of the templates a ``runtime`` project is rendered from (16 hex digits)."""
    digest = hashlib.sha256()
    for rel, data in sorted(template_files(runtime, root).items()):
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def _cookiecutter(template: Path, ctx: dict[str, Any]) -> Files:
    """What cookiecutter's ``generate_files`` writes for ``template``, computed in memory.

    Same rules as cookiecutter (rendered paths, ``_copy_without_render`` globs, binary files
    copied, each file's newline style kept; a test holds the two byte-identical), but each
    template source is compiled once per process: compiling is most of cookiecutter's time, and
    ``upgrade --all`` renders every model twice.
    """
    declared = json.loads((template / "cookiecutter.json").read_text("utf-8"))
    verbatim = declared.get("_copy_without_render", [])
    context = {"cookiecutter": {**ctx, "_template": template.name, "_copy_without_render": verbatim}}
    projects = [d for d in template.iterdir() if d.is_dir() and "cookiecutter" in d.name and "{{" in d.name]
    if len(projects) != 1:
        raise RenderError(f"template {template} must hold one {{{{cookiecutter...}}}} folder, found {len(projects)}")
    files: Files = {}
    try:
        for rel, data in _read_tree(projects[0]).items():
            out = _compiled(rel).render(context)
            if not out or out.endswith("/") or "//" in out:
                continue  # a name that renders empty: cookiecutter skips the file
            if not any(fnmatch(rel, pattern) for pattern in verbatim):
                data = _render_text(data, context)
            files[out] = data
    except TemplateError as err:
        raise RenderError(f"rendering template {template.name} failed: {type(err).__name__} {err}") from err
    return files


def _render_text(data: bytes, context: dict[str, Any]) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # binary: copied as it is
    rendered = _compiled(text).render(context)
    # Jinja reads every newline as "\n"; cookiecutter writes the file's own first newline back.
    first = re.search(r"\r\n|\r|\n", text)
    if first and first.group() != "\n":
        rendered = rendered.replace("\n", first.group())
    return rendered.encode("utf-8")


@functools.cache
def _jinja() -> StrictEnvironment:
    # cookiecutter's environment (its jsonify, slugify... extensions, undefined variables fail).
    return StrictEnvironment(context={"cookiecutter": {}}, keep_trailing_newline=True)


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> Template:
    return _jinja().from_string(source)


def _overlay(source: Path, ctx: dict[str, Any], env: dict[str, Any]) -> Files:
    """One kustomize overlay; cookiecutter cannot repeat a folder per list item, so jinja does."""
    files: Files = {}
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(source).as_posix()
        try:
            text = _compiled(path.read_text("utf-8")).render(
                cookiecutter=ctx, env=env, release=None, build_namespace=""
            )
        except TemplateError as err:
            raise RenderError(f"rendering {path} for environment {env['name']} failed: {err}") from err
        files[f"deploy/overlays/{env['name']}/{rel}"] = text.encode("utf-8")
    return files


def render_release_overlay(
    manifest: Manifest, env: str, release: dict[str, Any], build_namespace: str, templates: Path | None = None
) -> Files:
    """The overlay of a later environment that runs ``release`` (its ``release.json``), keyed
    ``kustomization.yaml`` and, for a canary, ``canary/kustomization.yaml``.

    ``manifest`` is the released version's; ``build_namespace`` holds the image it runs.
    """
    root = templates or templates_dir()
    ctx = context(manifest)
    (settings,) = [e for e in ctx["environments"] if e["name"] == env]
    variables = {"cookiecutter": ctx, "env": settings, "release": release, "build_namespace": build_namespace}
    sources = {"kustomization.yaml": root / COMMON / OVERLAY / "kustomization.yaml"}
    if release.get("canary"):
        sources["canary/kustomization.yaml"] = root / COMMON / f"{OVERLAY}-canary" / "kustomization.yaml"
    files: Files = {}
    for rel, source in sources.items():
        try:
            files[rel] = _compiled(source.read_text("utf-8")).render(**variables).encode("utf-8")
        except TemplateError as err:
            raise RenderError(f"rendering {source} for environment {env} failed: {err}") from err
    return files


def _read_tree(root: Path) -> Files:
    # pip byte-compiles the templates' .py files when it installs the wheel: never ship those.
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def render_verbatim(manifest: Manifest) -> Files:
    """The files a project copies from the model's folder (manifest, sample, code, training script)."""
    files = _verbatim_files(manifest, {}, "")
    del files[RECORD]
    return files


def _verbatim_files(manifest: Manifest, ctx: dict[str, Any], version: str) -> Files:
    """Files copied from the model's folder rather than rendered."""
    files: Files = {
        "model.yaml": manifest.text.encode("utf-8"),
        SAMPLE: (json.dumps(manifest.sample, indent=1) + "\n").encode("utf-8"),
        RECORD: (
            json.dumps(
                {
                    "template": f"{manifest.runtime}-model",
                    "template_version": version,
                    "modelgen": __version__,
                    "inputs": ctx,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        ).encode("utf-8"),
    }
    for rel in manifest.code:
        source = manifest.base_dir / rel
        files[f"{CODE_DIR}/{source.name}"] = source.read_bytes()
    if manifest.training:
        source = manifest.base_dir / manifest.training.script
        files[f"{TRAINING_DIR}/{source.name}"] = source.read_bytes()
    return files
