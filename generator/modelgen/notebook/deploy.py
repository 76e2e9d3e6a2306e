"""``modelgen.deploy()``: ship a fitted model from a notebook with one call.

serialize → check the artifact in a fresh process (it predicts the sample exactly like the
object in memory) → infer the manifest (input schema from the sample, task and classes from
the estimator, pinned requirements from the libraries the object uses, provenance) → upload
to the registry → ``generate --gitops --merge-request``. Nothing is uploaded or pushed unless
every check before it passed: a failed call leaves nothing behind, and the next one takes the
same version. Bytes identical to a version already shipped return that version's Deployment.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import getpass
import hashlib
import html
import importlib.metadata
import io
import json
import math
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgen import __version__
from modelgen.engines.gate import convert
from modelgen.engines.record import ONNX_FILENAME, onnx_uri, record
from modelgen.errors import DeployError, ManifestError, ModelgenError
from modelgen.manifest import default, load
from modelgen.manifest.infer import input_columns, sample_records
from modelgen.manifest.model import API_VERSION
from modelgen.manifest.writer import write_handover
from modelgen.registry.backends import VERSION, check_name, check_version, registry_for

REGISTRY_VARIABLE = "MODELGEN_REGISTRY"
GITOPS_VARIABLE = "MODELGEN_GITOPS"
OWNER_VARIABLE = "MODELGEN_OWNER"
FORMATS = ("joblib", "skops", "pickle")
# What each output type serves, i.e. what the fresh process must reproduce exactly.
METHOD = {"probabilities": "predict_proba", "label": "predict", "value": "predict", "cluster": "predict"}
# The service itself needs these whatever the model uses (it builds pandas frames).
ALWAYS = ("numpy", "pandas")


@dataclass(frozen=True)
class Deployment:
    """What ``deploy()`` did: the version, where the artifact is, and the merge request."""

    name: str
    version: str
    artifact_uri: str
    sha256: str
    manifest: Path
    branch: str | None
    merge_request_url: str | None
    message: str

    def __repr__(self) -> str:
        lines = [
            f"Deployment {self.name} {self.version}",
            f"  artifact  {self.artifact_uri}",
            f"  sha256    {self.sha256}",
            f"  manifest  {self.manifest}",
        ]
        if self.branch:
            lines.append(f"  branch    {self.branch}")
        if self.merge_request_url:
            lines.append(f"  MR        {self.merge_request_url}")
        lines.append(f"  {self.message}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            ("artifact", self.artifact_uri),
            ("sha256", self.sha256),
            ("manifest", str(self.manifest)),
            ("branch", self.branch or "—"),
            ("merge request", self.merge_request_url or self.message),
        ]
        cells = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in rows
        )
        return f"<b>{html.escape(self.name)} {html.escape(self.version)}</b><table>{cells}</table>"


def deploy(
    model: Any,
    name: str,
    sample: Any,
    *,
    version: str | None = None,
    task: str | None = None,
    owner: str | None = None,
    registry: str | Path | None = None,
    gitops: str | Path | None = None,
    merge_request: bool = True,
    code: Iterable[str | Path] = (),
    requirements: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    format: str = "joblib",
    reference: Any = None,
    columns: Mapping[str, Mapping[str, Any]] | None = None,
    engine: str = "native",
    **unknown: Any,
) -> Deployment:
    """Ship ``model`` (fitted, the whole pipeline) as ``name``; ``sample`` is a DataFrame of raw input rows.

    ``metadata`` may hold ``description``, ``data`` (the training data's reference), ``metrics``
    (name → number), ``source`` (notebook), ``serving``, ``environments`` (default: every environment of the GitOps
    repository) and ``monitoring`` (drift settings of ``spec.monitoring``). ``reference``, a
    DataFrame of raw rows (usually the training rows), turns drift monitoring on: it is uploaded
    beside the artifact and profiled into the project. ``registry``/``gitops``/``owner`` default
    to ``$MODELGEN_REGISTRY``, ``$MODELGEN_GITOPS`` and ``$MODELGEN_OWNER`` (else git's user.email).

    Every input column is nullable unless ``reference`` shows it never missing or ``columns``
    says otherwise: ``columns={"age": {"nullable": False}, "island": {"strict": True}}`` (keys:
    ``nullable``, ``strict``, ``categories``, ``description``).

    ``engine="onnx"`` converts the model to ONNX and serves that (the call fails, naming the step
    or gate, when the conversion cannot serve); ``"auto"`` serves ONNX when the conversion passes
    its gates (the same answers as the artifact on the sample, the reference and edge rows; faster on
    one-row and 1000-row requests) and the artifact itself otherwise, recording why.

    Nothing is uploaded or pushed before every check passed (the manifest as it will be written,
    the round trip through the generated project, the conversion's gates); problems name the
    argument or column to change. Without ``version``, artifact bytes identical to a version the GitOps repository (or
    a pending branch, or the registry) already holds return that version's Deployment unchanged.

    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = pd.DataFrame({"bill_length_mm": [39.1, 46.5, 50.0, 38.6], "flipper_length_mm": [181, 192, 196, 190]})
    >>> pipeline = LogisticRegression().fit(X, ["Adelie", "Chinstrap", "Chinstrap", "Adelie"])
    >>> infer_task(pipeline)  # what the manifest will say of it
    ('classification', {'type': 'probabilities', 'classes': ['Adelie', 'Chinstrap']})

    The call itself needs the registry and the GitOps repository (a GitLab project), so it is not run here:

    >>> deploy(pipeline, "penguin-species", X, metadata={"metrics": {"accuracy": 0.98}})  # doctest: +SKIP
    Deployment penguin-species 1.0.0
      artifact  https://nexus.example.com/repository/models/penguin-species/1.0.0/model.joblib
      ...
    """
    if unknown:
        raise DeployError(_unknown_arguments(unknown))
    meta = _checked_metadata(metadata)
    _check_arguments(name, sample, format, reference)
    if engine not in ENGINES:
        raise DeployError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    store = registry_for(_setting(registry, REGISTRY_VARIABLE, "registry"))
    gitops_url = _setting(gitops, GITOPS_VARIABLE, "gitops") if gitops is not False else None
    owner = owner or os.environ.get(OWNER_VARIABLE) or _git_email()
    if not owner:
        raise DeployError(f"say who owns the model: owner='jane.doe@example.com' (or ${OWNER_VARIABLE})")

    task, output = infer_task(model, task)
    try:
        inputs = input_columns(sample, reference=reference, columns=columns)
    except ModelgenError as err:
        raise DeployError(f"sample/reference/columns: {err}") from None
    records = sample_records(sample, inputs, size=min(20, len(sample)))
    data, trusted = serialize(model, format)
    sha256 = hashlib.sha256(data).hexdigest()
    references = referenced_globals(model)
    modules = local_modules(references, code)
    pins = pin_requirements(references, format, requirements)

    repo = None
    if gitops_url is not None:
        from modelgen.gitops.repo import GitopsRepo

        repo = GitopsRepo.open(gitops_url)
    if version is None:
        # The same bytes as a version already shipped: re-running the notebook cell changes nothing.
        same = already_deployed(name, sha256, repo, store, format)
        if same is not None:
            return same
    version = check_version(version) if version else next_version(name, repo, store, format, data)
    every = list(repo.settings.environments) if repo else default("spec", "environments")

    document = functools.partial(
        _document, model, meta, name=name, owner=owner, task=task, output=output, columns=inputs, pins=pins,
        modules=modules, format=format, trusted=trusted, sha256=sha256,
    )  # fmt: skip
    # Every check before anything is uploaded: the manifest as it will be written (its real
    # version and URIs, schema and rules), then the round trip through the generated project.
    artifact_uri = store.uri(name, version, f"model.{format}")
    monitoring = None
    if reference is not None:
        monitoring = {**dict(meta.get("monitoring") or {}), "reference": store.uri(name, version, "reference.csv")}
    manifest = document(
        version=version, uri=artifact_uri, environments=meta.get("environments") or every, monitoring=monitoring
    )
    rehearsal = document(version="0.0.0", uri=f"file:///round-trip/model.{format}", environments=["dev"])
    conversion = None
    with tempfile.TemporaryDirectory(prefix="modelgen-deploy-") as tmp:
        staged = checked_manifest(_handover(Path(tmp) / "model", manifest, data, records, modules), inputs)
        check_round_trip(model, rehearsal, data, sample, inputs, modules)
        if engine != "native":
            rows = sample_records(sample, inputs, size=len(sample))
            rows += sample_records(reference, inputs, size=len(reference)) if reference is not None else []
            conversion = convert(staged, data, rows, onnx_uri(artifact_uri))
            try:
                record(manifest["spec"], engine, conversion)
            except ModelgenError as err:
                raise DeployError(f"engine={engine!r}: {err}") from None
            checked_manifest(_handover(Path(tmp) / "converted", manifest, data, records, modules), inputs)
    reference_rows = _reference_rows(reference, inputs)

    artifact = store.publish(name, version, f"model.{format}", data)
    if conversion is not None and conversion.passed:
        store.publish(name, version, ONNX_FILENAME, conversion.data)
    if reference_rows is not None:
        store.publish(name, version, "reference.csv", reference_rows)
    out = _out_dir(name, version)
    path = _handover(out, manifest, data, records, modules)
    checked = load(path)

    branch = url = None
    message = f"uploaded {artifact.uri}; manifest at {path}"
    if repo is not None:
        published = _publish(repo, checked, merge_request)
        branch, url, message = published.branch, published.merge_request_url, published.message
    # The registry keeps the whole version (manifest and sample beside the artifact); uploaded
    # after the push, so a registry webhook finds the branch already there.
    for extra in ("model.yaml", "sample.json", *(m.name for m in modules)):
        store.publish(name, version, extra, (out / extra).read_bytes())
    return Deployment(name, version, artifact.uri, artifact.sha256, path, branch, url, message)


ENGINES = ("native", "onnx", "auto")
# What ``metadata`` may hold, and where each goes in the manifest.
METADATA = ("description", "data", "metrics", "source", "serving", "environments", "monitoring")
# deploy()'s keyword arguments, named when an unknown one is given.
ARGUMENTS = (
    "version", "task", "owner", "registry", "gitops", "merge_request", "code", "requirements", "metadata",
    "format", "reference", "columns", "engine",
)  # fmt: skip
# Where a manifest problem comes from in the call, by the manifest path it is reported at.
_CAUSES = (
    ("metadata.name", "name"),
    ("metadata.version", "version"),
    ("metadata.owner", "owner"),
    ("metadata.description", "metadata['description']"),
    ("metadata.provenance", "metadata (data, metrics, source)"),
    ("spec.serving", "metadata['serving']"),
    ("spec.environments", "metadata['environments']"),
    ("spec.monitoring", "metadata['monitoring']"),
    ("spec.requirements", "requirements"),
    ("spec.code", "code"),
    ("spec.task", "task"),
    ("spec.output", "task (the output inferred for it)"),
    ("spec.artifact", "registry"),
)


def _unknown_arguments(unknown: Mapping[str, Any]) -> str:
    names = ", ".join(sorted(unknown))
    hint = ""
    if {"nullable", "required", "strict"} & set(unknown):
        hint = "; say which columns may be null or are strict with columns={'age': {'nullable': False}}"
    return f"deploy() got unknown argument(s) {names} (allowed: {', '.join(ARGUMENTS)}){hint}"


def _checked_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise DeployError(f"metadata must be a mapping of {', '.join(METADATA)}")
    unknown = sorted(str(k) for k in metadata if k not in METADATA)
    if unknown:
        hint = " (strict columns: columns={'island': {'strict': True}})" if "strict" in unknown else ""
        raise DeployError(f"metadata has unknown key(s) {', '.join(unknown)} (allowed: {', '.join(METADATA)}){hint}")
    return dict(metadata)


def checked_manifest(path: Path, columns: Sequence[Mapping[str, Any]]) -> Any:
    """``load(path)``, with each problem told as the argument or column of the call that caused it.

    The file is deploy()'s own staging copy: its path and line mean nothing to the caller.
    """
    try:
        return load(path)
    except ManifestError as err:
        causes = [f"{_cause(p.path, columns)}: {p.message}" for p in err.problems]
        raise DeployError("the manifest deploy() would write is not valid:\n" + "\n".join(causes)) from None


def _cause(path: str, columns: Sequence[Mapping[str, Any]]) -> str:
    if path.startswith("spec.input["):
        index = int(path[len("spec.input[") : path.index("]")])
        rest = path[path.index("]") + 1 :].lstrip(".")
        column = f"column {columns[index]['name']!r}" if index < len(columns) else "sample"
        return f"{column} ({rest})" if rest else column
    for prefix, cause in _CAUSES:
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return f"{cause} ({path})"
    return path or "the manifest"


def already_deployed(name: str, sha256: str, repo: Any, store: Any, format: str) -> Deployment | None:
    """The version already holding these artifact bytes, as the Deployment that shipped it, or None.

    Looked up on the GitOps target branch and the pending ``modelgen/<name>-<version>`` branches;
    without a GitOps repository, in the registry's manifests beside the artifacts.
    """
    for manifest, branch in _known_versions(name, repo, store, format):
        if manifest.artifact.sha256 != sha256:
            continue
        out = _out_dir(name, manifest.version)
        path = out / "model.yaml"
        if not path.is_file():
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(manifest.text, encoding="utf-8")
        where = f"pending on branch {branch}" if branch else ("deployed" if repo is not None else "in the registry")
        message = (
            f"{name} {manifest.version} already ships these artifact bytes ({where}): nothing uploaded or pushed; "
            "to ship the same model with other settings, give it a new version (version=...)"
        )
        return Deployment(name, manifest.version, manifest.artifact.uri, sha256, path, branch, None, message)
    return None


def _known_versions(name: str, repo: Any, store: Any, format: str) -> Iterable[tuple[Any, str | None]]:
    from modelgen.manifest import load_text

    if repo is not None:
        from modelgen.gitops.repo import deployed

        on_target = deployed(repo, name, repo.head) if repo.head else None
        if on_target is not None:
            yield on_target, None
        for version in _branch_versions(name, repo):
            branch = f"modelgen/{name}-{version}"
            pending = deployed(repo, name, repo.branch_head(branch))
            if pending is not None:
                yield pending, branch
        return
    patch = 0
    while store.exists(f"{name}/1.0.{patch}/model.{format}"):
        where = f"{name}/1.0.{patch}/model.yaml"
        text = store.read(where)
        try:
            kept = load_text(text.decode("utf-8"), f"{where} in the registry") if text is not None else None
        except (ManifestError, UnicodeDecodeError):
            kept = None  # an unreadable manifest there ships nothing this call could return
        if kept is not None:
            yield kept, None
        patch += 1


def _branch_versions(name: str, repo: Any) -> list[str]:
    refs = repo.git.text("for-each-ref", "--format=%(refname:short)", f"refs/remotes/origin/modelgen/{name}-*").split()
    tails = [ref.rsplit(f"modelgen/{name}-", 1)[-1] for ref in refs]
    return sorted((t for t in tails if VERSION.fullmatch(t)), key=_triple, reverse=True)


def _document(model: Any, meta: Mapping[str, Any], monitoring: dict[str, Any] | None = None, **given: Any) -> dict:
    """The manifest ``deploy()`` writes, from what it inferred and published (``given``)."""
    fmt, trusted = given["format"], given["trusted"]
    spec = {
        "runtime": "python",
        "framework": "sklearn",
        "task": given["task"],
        "artifact": {
            "uri": given["uri"],
            "sha256": given["sha256"],
            "format": fmt,
            **({"trusted": trusted} if fmt == "skops" and trusted else {}),
        },
        "requirements": given["pins"],
        **({"code": [m.name for m in given["modules"]]} if given["modules"] else {}),
        "input": given["columns"],
        "output": given["output"],
        "sample": "sample.json",
        **({"serving": meta["serving"]} if meta.get("serving") else {}),
        "environments": given["environments"],
        **({"monitoring": monitoring} if monitoring else {}),
    }
    metadata = {
        "name": given["name"],
        "version": given["version"],
        "owner": given["owner"],
        **({"description": meta["description"]} if meta.get("description") else {}),
        "provenance": provenance(model, meta, given["pins"]),
    }
    return {"apiVersion": API_VERSION, "kind": "Model", "metadata": metadata, "spec": spec}


def _check_arguments(name: str, sample: Any, format: str, reference: Any) -> None:
    import pandas as pd

    check_name(name)
    if format not in FORMATS:
        raise DeployError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(sample, pd.DataFrame) or sample.empty:
        raise DeployError("sample must be a non-empty pandas DataFrame of raw input rows (e.g. X_train.head(200))")
    if reference is not None and (not isinstance(reference, pd.DataFrame) or reference.empty):
        raise DeployError("reference must be a non-empty pandas DataFrame of raw input rows (e.g. X_train)")


def _publish(repo: Any, manifest: Any, merge_request: bool) -> Any:
    from modelgen.gitops.merge_request import GitLabApi
    from modelgen.gitops.repo import publish_model

    api = GitLabApi.from_environment(None, repo.settings.repo_url) if merge_request else None
    return publish_model(repo, manifest, merge_request=merge_request, api=api)


# --- what the manifest says, inferred from the object -----------------------------------------


def infer_task(model: Any, task: str | None = None) -> tuple[str, dict[str, Any]]:
    """``spec.task`` and ``spec.output`` from the estimator (scikit-learn's estimator types)."""
    from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor

    if task is None:
        if is_classifier(model):
            task = "classification"
        elif is_regressor(model):
            task = "regression"
        elif is_outlier_detector(model):
            task = "anomaly-detection"
        elif is_clusterer(model):
            task = "clustering"
        else:
            raise DeployError(
                f"cannot tell the task of a {type(model).__name__}: pass task='classification', 'regression', "
                "'anomaly-detection' or 'clustering'"
            )
    if task == "classification":
        classes = [_plain(c) for c in getattr(model, "classes_", [])]
        kind = "probabilities" if hasattr(model, "predict_proba") else "label"
        return task, {"type": kind, **({"classes": classes} if classes else {})}
    if task == "regression":
        return task, {"type": "value"}
    if task == "anomaly-detection":
        if not hasattr(model, "decision_function"):
            raise DeployError(f"an anomaly detector needs decision_function(); {type(model).__name__} has none")
        return task, {"type": "score"}
    if task == "clustering":
        return task, {"type": "cluster"}
    raise DeployError(f"task={task!r} is not one of classification, regression, anomaly-detection, clustering")


def serialize(model: Any, format: str) -> tuple[bytes, list[str]]:
    """The artifact's bytes, and (skops) the types it needs beyond skops' trusted defaults."""
    if format == "skops":
        import skops.io

        data = skops.io.dumps(model)
        return data, sorted(skops.io.get_untrusted_types(data=data))
    if format == "joblib":
        import joblib

        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=3)
        return buffer.getvalue(), []
    return pickle.dumps(model, protocol=5), []


def referenced_globals(model: Any) -> set[tuple[str, str]]:
    """Every (module, name) the pickled object refers to: its classes and functions."""
    found: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found.add((module, name))
            return super().find_class(module, name)

    try:
        Recorder(io.BytesIO(pickle.dumps(model, protocol=5))).load()  # noqa: S301 - our own bytes
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise DeployError(f"the model cannot be pickled: {err}") from err
    main = sorted(name for module, name in found if module == "__main__")
    if main:
        raise DeployError(
            f"{', '.join(main)} is defined in the notebook (__main__): the service could not load it; "
            "move it to a .py file beside the notebook and import it from there"
        )
    return found


def local_modules(references: set[tuple[str, str]], code: Iterable[str | Path]) -> list[Path]:
    """The single-file modules outside any installed distribution that the model refers to, plus ``code``."""
    distributions = importlib.metadata.packages_distributions()
    files: dict[str, Path] = {}
    for module in sorted({m for m, _ in references}):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in distributions:
            continue
        loaded = sys.modules.get(module)
        source = Path(getattr(loaded, "__file__", "") or "")
        if module != top or source.name == "__init__.py" or source.suffix != ".py":
            raise DeployError(
                f"the model uses {module}, which is neither installed as a package nor a single .py file; "
                "install it as a package (and list it in requirements) or make it one module file"
            )
        files[source.name] = source.resolve()
    for extra in code:
        path = Path(extra).resolve()
        if not path.is_file() or path.suffix != ".py":
            raise DeployError(f"code={extra!s}: not a .py file")
        files[path.name] = path
    return [files[n] for n in sorted(files)]


def pin_requirements(
    references: set[tuple[str, str]], format: str, requirements: Sequence[str] | None = None
) -> list[str]:
    """``dist==version`` for every installed distribution the object's classes come from (and the format's)."""
    distributions = importlib.metadata.packages_distributions()
    names = set(ALWAYS)
    if format in ("joblib", "skops"):
        names.add(format)  # what loads the artifact
    for module, _ in references:
        names.update(distributions.get(module.split(".")[0], []))
    names.discard("modelgen")  # the generator, not something the service runs
    pins = {}
    for dist in names:
        try:
            pins[_canonical(dist)] = f"{_display(dist)}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    for requirement in requirements or ():
        if "==" not in requirement:
            raise DeployError(f"requirement {requirement!r} is not pinned (name==version)")
        pins[_canonical(requirement.split("==")[0].split("[")[0])] = requirement
    return [pins[k] for k in sorted(pins)]


def provenance(model: Any, meta: Mapping[str, Any], pins: Sequence[str]) -> dict[str, Any]:
    """``metadata.provenance``: hyperparameters, metrics, data, who/when, library versions."""
    record: dict[str, Any] = {}
    if meta.get("data"):
        record["data"] = str(meta["data"])
    if hasattr(model, "get_params"):
        # deep: a pipeline's hyperparameters are its steps' (step__param); objects are left out.
        params = {k: _json_value(v) for k, v in sorted(model.get_params(deep=True).items())}
        record["parameters"] = {k: v for k, v in params.items() if v is not _SKIP}
    metrics = dict(meta.get("metrics") or {})
    bad = [k for k, v in metrics.items() if not isinstance(v, int | float) or isinstance(v, bool)]
    if bad:
        raise DeployError(f"metrics must be numbers: {', '.join(map(str, bad))}")
    if metrics:
        record["metrics"] = {str(k): float(v) for k, v in sorted(metrics.items())}
    record["trainedBy"] = f"{getpass.getuser()}@{socket.gethostname()}"
    record["trainedAt"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record["libraries"] = {p.split("==")[0]: p.split("==")[1] for p in pins}
    if meta.get("source"):
        record["source"] = str(meta["source"])
    return record


def next_version(name: str, repo: Any, store: Any, format: str, data: bytes | None = None) -> str:
    """One patch above the highest version the GitOps repository or its branches know, and free in the registry.

    A version whose artifact is ``data`` itself but that has no manifest in the registry is taken
    again: an earlier call uploaded it and then failed to push, and it is not left behind.
    """
    known: list[tuple[int, int, int]] = []
    if repo is not None:
        from modelgen.gitops.repo import deployed

        on_target = deployed(repo, name, repo.head) if repo.head else None
        if on_target:
            known.append(_triple(on_target.version))
        known.extend(_triple(v) for v in _branch_versions(name, repo))
    major, minor, patch = max(known) if known else (1, 0, -1)
    while True:
        patch += 1
        candidate = f"{major}.{minor}.{patch}"
        if not store.exists(f"{name}/{candidate}/model.{format}"):
            return candidate
        unfinished = not store.exists(f"{name}/{candidate}/model.yaml")
        if unfinished and data is not None and store.read(f"{name}/{candidate}/model.{format}") == data:
            return candidate


# --- the round trip --------------------------------------------------------------------------


def check_round_trip(
    model: Any,
    manifest: Mapping[str, Any],
    data: bytes,
    sample: Any,
    columns: list[dict[str, Any]],
    modules: list[Path],
) -> None:
    """Score the sample with the generated project's own batch entry point, as the service would,
    and check it answers what ``model`` in memory answers for the rows the service rebuilds.

    The project is rendered from ``manifest`` (the one ``deploy`` will write) into a temporary
    folder: a fresh Python, the service's row checks and artifact loading, its ``model_code/``.
    """
    from modelgen.manifest.infer import service_frame
    from modelgen.render.batch import run_batch, scoring_project

    output = manifest["spec"]["output"]
    records = sample_records(sample, columns, size=len(sample))
    method = METHOD.get(output["type"], "decision_function")
    expected = _service_answer(model, service_frame(records, columns), output, method)
    with tempfile.TemporaryDirectory(prefix="modelgen-roundtrip-") as tmp:
        rehearsal = load(_handover(Path(tmp) / "model", manifest, data, records[:1], modules))
        project = scoring_project(rehearsal)
    done = run_batch(
        project, "python", data, manifest["spec"]["artifact"]["format"], json.dumps(records).encode(), ".json"
    )
    if done.returncode != 0 or done.predictions is None:
        raise DeployError(f"the artifact does not load in a fresh Python process: {done.error}")
    header, *got = csv.reader(io.StringIO(done.predictions))
    # The predictions, without the columns naming the model that made them (model_name, ...).
    width = header.index("model_name") if "model_name" in header else len(header)
    got = [row[:width] for row in got]
    if len(got) != len(expected) or not all(_same_row(a, b) for a, b in zip(expected, got, strict=True)):
        raise DeployError(
            f"the model's {method}() differs when loaded in a fresh process: the artifact would not serve it faithfully"
        )


def _service_answer(model: Any, frame: Any, output: Mapping[str, Any], method: str) -> list[list[Any]]:
    """The CSV rows the service answers for ``frame`` (label and probabilities, a value, a score...)."""
    import numpy as np

    values = getattr(model, method)(frame)
    if output["type"] == "probabilities":
        classes = np.asarray(model.classes_).tolist()
        return [[classes[int(np.argmax(row))], *row] for row in np.asarray(values, dtype=np.float64).tolist()]
    if output["type"] in ("value", "score"):
        numbers = np.asarray(values, dtype=np.float64).ravel().tolist()
        return [[v] if output["type"] == "value" else [str(v < 0).lower(), v] for v in numbers]
    return [[v] for v in np.asarray(values).tolist()]


def _same_row(expected: list[Any], got: list[str]) -> bool:
    if len(expected) != len(got):
        return False
    for want, cell in zip(expected, got, strict=True):
        if isinstance(want, float):
            try:
                value = float(cell)
            except ValueError:
                return False
            if not (value == want or (math.isnan(value) and math.isnan(want))):
                return False
        elif str(want) != cell:
            return False
    return True


def _handover(
    folder: Path, manifest: Mapping[str, Any], data: bytes, records: list[dict[str, Any]], modules: list[Path]
) -> Path:
    """``write_handover`` of ``manifest`` into ``folder``, with the code modules wherever they are."""
    staging = Path(tempfile.mkdtemp(prefix="modelgen-code-"))
    try:
        for module in modules:
            shutil.copyfile(module, staging / module.name)
        return write_handover(
            folder,
            manifest,
            artifact=data,
            sample=records,
            code_from=staging,
            header=f"Written by modelgen.deploy() {__version__}; the GitOps repository keeps the reviewed copy.",
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- helpers ---------------------------------------------------------------------------------


def _reference_rows(reference: Any, columns: Sequence[Mapping[str, Any]]) -> bytes | None:
    """The reference rows as the CSV the registry keeps, with exactly the input columns."""
    if reference is None:
        return None
    names = [c["name"] for c in columns]
    missing = [n for n in names if n not in reference.columns]
    if missing:
        raise DeployError(f"reference lacks the input column(s) {', '.join(missing)}")
    return reference[names].to_csv(index=False).encode("utf-8")


def _setting(value: Any, variable: str, what: str) -> str:
    value = value or os.environ.get(variable)
    if not value:
        raise DeployError(f"say where the {what} is: {what}=... or ${variable}")
    return str(value)


def _git_email() -> str | None:
    try:
        done = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None


def _out_dir(name: str, version: str) -> Path:
    from modelgen.gitops.cache import cache_root

    return cache_root() / "deployments" / name / version


def _triple(version: str) -> tuple[int, int, int]:
    major, minor, patch = version.split("-")[0].split(".")
    return int(major), int(minor), int(patch)


def _plain(value: Any) -> Any:
    # numpy scalars to Python ones (a dtype class such as np.float64 is a parameter value, not a scalar).
    return value.item() if hasattr(value, "item") and not isinstance(value, type) else value


_SKIP = object()


def _json_value(value: Any) -> Any:
    """A hyperparameter as a JSON value, or ``_SKIP`` for estimators and other objects."""
    value = _plain(value)
    if isinstance(value, float) and value != value:
        return None  # NaN (e.g. an imputer's missing_values)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(v is None or isinstance(v, bool | int | float | str) for v in value):
        return list(value)
    return _SKIP


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def _display(dist: str) -> str:
    try:
        return importlib.metadata.metadata(dist)["Name"]
    except importlib.metadata.PackageNotFoundError:
        return dist
