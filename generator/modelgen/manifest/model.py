"""The typed manifest: frozen dataclasses built once from a checked document.

Defaults come from one place, the JSON Schema's ``default``s (``with_defaults``). What depends
on other fields — an R model's framework, an environment's replicas, who the drift job
mails — is derived here, next to the field it defaults.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_VERSION = "modelgen/v1"

# Which output types make sense for which task (spec.output.type is required).
OUTPUTS_BY_TASK = {
    "classification": ("probabilities", "label"),
    "regression": ("value",),
    "anomaly-detection": ("score",),
    "clustering": ("cluster",),
}
# spec.monitoring.thresholds keys, and the names the drift job (and its command line) gives them.
THRESHOLD_NAMES = {
    "psi": "psi",
    "pValue": "p_value",
    "missingChange": "missing_change",
    "unseenShare": "unseen_share",
    "cusumH": "cusum_h",
    "cusumK": "cusum_k",
    "cusumBatch": "cusum_batch",
}
# The input log's own fields beside each row's columns (the drift job reads them back).
LOG_TIMESTAMP, LOG_PREDICTION = "__ts", "__prediction"
# spec.framework's default depends on the runtime, which one JSON Schema default cannot say.
DEFAULT_FRAMEWORK = {"python": "sklearn", "r": "stats"}
# System packages a library needs at run time that the runtime's base image lacks, by runtime and
# (normalized) package name: LightGBM's wheel links the system's OpenMP, which python:*-slim
# does not have (XGBoost and scikit-learn bring their own copy).
IMPLIED_SYSTEM_PACKAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "python": {"lightgbm": ("libgomp1",)},
    "r": {},
}


def with_defaults(node: dict[str, Any], value: Any) -> Any:
    """``value`` with the defaults ``node`` (a JSON Schema) states filled in, recursively.

    An absent object is made only when it has no required field and something inside it has a
    default (``spec.serving`` yes, ``spec.monitoring`` no). ``$ref`` is not followed on purpose:
    a referenced part inherits from where it is referenced (an environment's ``autoscaling``
    from ``spec.serving.autoscaling``), not from the schema.
    """
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [with_defaults(node["items"], item) for item in value]
    properties = node.get("properties")
    if not isinstance(value, dict) or not properties:
        return value
    filled = dict(value)
    for key, sub in properties.items():
        if key in filled:
            filled[key] = with_defaults(sub, filled[key])
        elif "default" in sub:
            filled[key] = with_defaults(sub, copy.deepcopy(sub["default"]))
        elif not sub.get("required") and _has_defaults(sub):
            filled[key] = with_defaults(sub, {})
    return filled


def _has_defaults(node: dict[str, Any]) -> bool:
    return any("default" in sub or _has_defaults(sub) for sub in node.get("properties", {}).values())


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False
    categories: tuple[str, ...] | None = None
    strict: bool = False
    description: str = ""
    dtype: str = ""  # the training dtype the service rebuilds; "" for the type's default

    @classmethod
    def of(cls, given: dict[str, Any]) -> Column:
        categories = given.get("categories")
        return cls(
            name=given["name"],
            type=given["type"],
            nullable=given["nullable"],
            categories=tuple(categories) if categories is not None else None,
            strict=given["strict"],
            description=given.get("description", ""),
            dtype=given.get("dtype", ""),
        )


@dataclass(frozen=True)
class OnnxArtifact:
    """The model converted to ONNX: a second artifact, and what the service needs to read it."""

    uri: str
    sha256: str
    output: str
    precision: str
    null_token: str
    converters: dict[str, str]
    parity: dict[str, Any]
    speed: dict[str, float]

    @classmethod
    def of(cls, given: dict[str, Any]) -> OnnxArtifact:
        return cls(
            uri=given["uri"],
            sha256=given["sha256"],
            output=given["output"],
            precision=given["precision"],
            null_token=given["nullToken"],
            converters=dict(given.get("converters", {})),
            parity=dict(given.get("parity", {})),
            speed=dict(given.get("speed", {})),
        )

    def document(self) -> dict[str, Any]:
        """``spec.artifact.onnx`` as the manifest writes it (what ``of`` reads)."""
        return {
            "uri": self.uri,
            "sha256": self.sha256,
            "output": self.output,
            "precision": self.precision,
            "nullToken": self.null_token,
            "converters": dict(self.converters),
            **({"parity": dict(self.parity)} if self.parity else {}),
            **({"speed": dict(self.speed)} if self.speed else {}),
        }


@dataclass(frozen=True)
class Artifact:
    uri: str
    sha256: str
    format: str
    secret: str
    trusted: tuple[str, ...] | None = None  # skops only
    onnx: OnnxArtifact | None = None

    @classmethod
    def of(cls, given: dict[str, Any]) -> Artifact:
        trusted = given.get("trusted")
        onnx = given.get("onnx")
        return cls(
            given["uri"],
            given["sha256"],
            given["format"],
            given["secret"],
            None if trusted is None else tuple(trusted),
            OnnxArtifact.of(onnx) if onnx is not None else None,
        )

    @property
    def filename(self) -> str:
        """What the artifact is called beside the service (``model.<format>``)."""
        return f"model.{self.format}"


@dataclass(frozen=True)
class Output:
    type: str
    classes: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Autoscaling:
    min: int
    max: int
    cpu: int


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str


@dataclass(frozen=True)
class OnnxGates:
    tolerance: float
    speed_gate: bool
    fallback: str  # why engine auto serves native, as the conversion recorded it


@dataclass(frozen=True)
class ModelCache:
    claim: str
    max_age_days: int


@dataclass(frozen=True)
class Serving:
    server: str
    workers: int | None
    max_request_bytes: int
    timeout_seconds: int
    replicas: int
    autoscaling: Autoscaling
    resources: Resources
    host: str
    engine: str  # as asked: native, onnx or auto (Manifest.engine is the one served)
    onnx: OnnxGates
    model_cache: ModelCache | None = None

    @classmethod
    def of(cls, given: dict[str, Any]) -> Serving:
        onnx = given["onnx"]
        return cls(
            server=given["server"],
            workers=given.get("workers"),
            max_request_bytes=given["maxRequestBytes"],
            timeout_seconds=given["timeoutSeconds"],
            replicas=given["replicas"],
            autoscaling=Autoscaling(**given["autoscaling"]),
            resources=Resources(**given["resources"]),
            host=given.get("route", {}).get("host", ""),
            engine=given["engine"],
            onnx=OnnxGates(onnx["tolerance"], onnx["speedGate"], onnx.get("fallback", "")),
            model_cache=ModelCache(cache["claim"], cache["maxAgeDays"]) if (cache := given.get("modelCache")) else None,
        )


@dataclass(frozen=True)
class Environment:
    """One overlay: what it states itself, else what ``spec.serving`` says."""

    name: str
    replicas: int
    autoscaling: Autoscaling
    resources: Resources
    host: str

    @classmethod
    def of(cls, given: str | dict[str, Any], serving: Serving) -> Environment:
        env = {"name": given} if isinstance(given, str) else given
        # Only prod takes spec.serving.route.host: two environments cannot share one route.
        default_host = serving.host if env["name"] == "prod" else ""
        return cls(
            name=env["name"],
            replicas=env.get("replicas", serving.replicas),
            autoscaling=Autoscaling(**{**vars(serving.autoscaling), **env.get("autoscaling", {})}),
            resources=Resources(**{**vars(serving.resources), **env.get("resources", {})}),
            host=env.get("host", default_host),
        )


@dataclass(frozen=True)
class Notify:
    email: tuple[str, ...]
    smtp: str
    webhook: str


@dataclass(frozen=True)
class Monitoring:
    reference: str
    sample_rate: float
    log_size: str
    schedule: str
    window: str
    thresholds: dict[str, float]  # as given: the drift job has its own defaults for the rest
    notify: Notify

    @classmethod
    def of(cls, given: dict[str, Any], owner: str) -> Monitoring:
        notify = given.get("notify", {})
        return cls(
            reference=given["reference"],
            sample_rate=given["sampleRate"],
            log_size=given["logSize"],
            schedule=given["schedule"],
            window=given["window"],
            thresholds=dict(given.get("thresholds", {})),
            # Nobody named: the model's owner hears of drift.
            notify=Notify(tuple(notify.get("email", [owner])), notify.get("smtp", ""), notify.get("webhook", "")),
        )


@dataclass(frozen=True)
class Training:
    script: str
    data: str
    hyperparameters: dict[str, Any]
    image: str
    registry: str
    resources: Resources

    @classmethod
    def of(cls, given: dict[str, Any]) -> Training:
        return cls(
            script=given["script"],
            data=given["data"],
            hyperparameters=dict(given["hyperparameters"]),
            image=given.get("image", ""),
            registry=given.get("registry", ""),
            resources=Resources(**given["resources"]),
        )


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``raw`` is the document as written, ``text`` its bytes as text,
    ``path`` where it was read; every other field has its defaults filled in."""

    path: Path
    raw: dict[str, Any]
    text: str
    sample: list[dict[str, Any]]
    name: str
    version: str
    owner: str
    description: str
    labels: dict[str, str]
    provenance: dict[str, Any]  # where the model comes from; not used to render the service
    runtime: str
    framework: str
    task: str
    artifact: Artifact
    requirements: tuple[str, ...]
    code: tuple[str, ...]
    system_packages: tuple[str, ...]  # as declared; ``apt_packages`` adds what the requirements imply
    columns: tuple[Column, ...]
    output: Output
    serving: Serving
    environments: tuple[Environment, ...]
    monitoring: Monitoring | None
    training: Training | None
    # R only (the schema's defaults are filled in for Python too, and unused there).
    lockfile: str
    r_version: str
    cran: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def engine(self) -> str:
        """The engine the service runs: onnx when asked for (or under auto) and converted, else native."""
        if self.serving.engine != "native" and self.artifact.onnx is not None:
            return "onnx"
        return "native"

    @property
    def engine_reason(self) -> str:
        """Why the engine served is not the one asked for ("" when it is)."""
        if self.serving.engine != "auto" or self.engine == "onnx":
            return ""
        return self.serving.onnx.fallback or "not converted to ONNX yet (modelgen convert)"

    @property
    def apt_packages(self) -> tuple[str, ...]:
        """Every system package the image installs for the model: the declared ones and those
        its pinned libraries are known to need, sorted (the Dockerfile stays deterministic)."""
        implied = IMPLIED_SYSTEM_PACKAGES[self.runtime]
        found = set(self.system_packages)
        for requirement in self.requirements:
            found.update(implied.get(requirement_name(requirement), ()))
        return tuple(sorted(found))

    @classmethod
    def of(cls, document: dict[str, Any], schema: dict[str, Any], **where: Any) -> Manifest:
        """The typed manifest of a schema-valid ``document``; ``where`` gives path, text and sample."""
        filled = with_defaults(schema, document)
        meta, spec = filled["metadata"], filled["spec"]
        serving = Serving.of(spec["serving"])
        monitoring = spec.get("monitoring")
        training = spec.get("training")
        return cls(
            raw=document,
            name=meta["name"],
            version=meta["version"],
            owner=meta["owner"],
            description=meta.get("description", ""),
            labels=dict(meta.get("labels", {})),
            provenance=dict(meta.get("provenance", {})),
            runtime=spec["runtime"],
            framework=spec.get("framework", DEFAULT_FRAMEWORK[spec["runtime"]]),
            task=spec["task"],
            artifact=Artifact.of(spec["artifact"]),
            requirements=tuple(spec["requirements"]),
            code=tuple(spec["code"]),
            system_packages=tuple(spec["systemPackages"]),
            columns=tuple(Column.of(c) for c in spec["input"]),
            output=Output(spec["output"]["type"], tuple(spec["output"].get("classes", ()))),
            serving=serving,
            environments=tuple(Environment.of(e, serving) for e in spec["environments"]),
            monitoring=Monitoring.of(monitoring, meta["owner"]) if monitoring is not None else None,
            training=Training.of(training) if training is not None else None,
            lockfile=spec["lockfile"],
            r_version=spec["rVersion"],
            cran=spec["cran"],
            **where,
        )


def requirement_name(requirement: str) -> str:
    """The package a ``name==version`` pin names, normalized as pip compares names (PEP 503).

    >>> requirement_name("LightGBM[pandas]==4.7.0")
    'lightgbm'
    """
    name = requirement.split("==", 1)[0].split("[", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()
