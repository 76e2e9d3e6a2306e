"""What runs, per model and environment, read off the cluster: ``modelgen status``.

For each Argo CD Application the ApplicationSet made (``<model>-<env>`` in Argo CD's namespace,
labelled ``modelgen.io/model`` and ``modelgen.io/environment``): its sync and health; in its
destination namespace, the Deployment ``<model>`` (replicas, the version its pod template is
labelled with, the artifact sha256 its ``model`` container checks), a canary
``<model>-canary`` with the share of requests the Route ``<model>`` sends it, and the newest Job
of the drift CronJob ``<model>-drift``. Objects are listed per namespace by the label every
object of a model carries, not read one by one: five requests per namespace, however many models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from modelgen.cluster.client import api_client, request
from modelgen.errors import NotDeployed
from modelgen.gitops.repo import GitopsRepo, overlay_environments
from modelgen.gitops.scaffold import GitopsSettings
from modelgen.monitoring.drift import EXIT_DRIFT

APPLICATIONS = ("argoproj.io", "v1alpha1", "applications")
ROUTES = ("route.openshift.io", "v1", "routes")
MODEL_LABEL = "modelgen.io/model"
ENV_LABEL = "modelgen.io/environment"
# deploy/base's kustomization labels every object with it, canaries and the drift Jobs' template too.
OWNED = "app.kubernetes.io/part-of=modelgen"
VERSION_LABEL = "app.kubernetes.io/version"
CANARY = "-canary"
DRIFT = "-drift"
DRIFTED, FAILED = "drifted", "failed"

_SETTINGS = {f.name: f.default for f in fields(GitopsSettings)}


@dataclass(frozen=True)
class Scope:
    """Where to look (Argo CD's namespace), in which order to show environments, and what the
    GitOps repository deploys (``(model, environment)`` pairs: each without an Application is a problem).

    >>> Scope().argocd_namespace, Scope().environments
    ('openshift-gitops', ('dev', 'prod'))
    """

    argocd_namespace: str = _SETTINGS["argocd_namespace"]
    namespace_prefix: str = _SETTINGS["namespace_prefix"]
    environments: tuple[str, ...] = _SETTINGS["environments"]
    expected: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @classmethod
    def of(cls, repo: GitopsRepo) -> Scope:
        """What the GitOps repository says: its settings, and an Application for every model overlay."""
        settings = repo.settings  # first: its target branch is the one whose models Argo CD deploys
        expected = frozenset((m, e) for m in repo.models() for e in overlay_environments(repo, m))
        return cls(settings.argocd_namespace, settings.namespace_prefix, settings.environments, expected)


@dataclass(frozen=True)
class Application:
    name: str
    sync: str  # Synced, OutOfSync, Unknown
    health: str  # Healthy, Progressing, Degraded, Suspended, Missing, Unknown
    revision: str  # the commit it compared with
    messages: tuple[str, ...]  # its error conditions, and what its unhealthy resources say


@dataclass(frozen=True)
class Pods:
    """One Deployment of a model: the stable one or its canary."""

    name: str
    version: str
    sha256: str
    replicas: int  # desired
    ready: int
    updated: int  # running the Deployment's current template
    weight: int | None  # percent of the Route's requests; None when there is no Route


@dataclass(frozen=True)
class Drift:
    cron_job: str
    job: str  # "" before its first run
    result: str  # ok, drifted, failed, running, pending, not run yet
    time: datetime | None  # when the newest Job ended (or started, while it runs)
    message: str


@dataclass(frozen=True)
class ModelStatus:
    model: str
    environment: str
    namespace: str
    application: Application | None
    deployment: Pods | None  # the stable release
    canary: Pods | None
    drift: Drift | None  # None: the model has no monitoring
    problems: tuple[str, ...]  # what is degraded, one sentence each

    @property
    def degraded(self) -> bool:
        return bool(self.problems)

    @property
    def drifted(self) -> bool:
        return self.drift is not None and self.drift.result == DRIFTED

    def document(self) -> dict[str, Any]:
        """For ``--json``: the fields, camelCased, with ``degraded`` and ``drifted``."""
        doc = asdict(self)
        if self.drift is not None:
            drift = doc["drift"]
            when = self.drift.time.isoformat() if self.drift.time else None
            doc["drift"] = {"cronJob": drift.pop("cron_job"), **drift, "time": when}
        return {**doc, "degraded": self.degraded, "drifted": self.drifted}


def read_status(
    scope: Scope | None = None, name: str | None = None, env: str | None = None, api: Any = None
) -> list[ModelStatus]:
    """The status of model ``name`` (or every model) in ``env`` (or every environment), sorted by
    model, then environment in promotion order. ``api``: an ``ApiClient`` (default: ``api_client()``)."""
    scope = scope or Scope()
    if api is None:
        with api_client() as api:
            return read_status(scope, name, env, api)
    applications = _applications(api, scope.argocd_namespace, name, env)
    keys = set(applications) | {k for k in scope.expected if name in (None, k[0]) and env in (None, k[1])}
    if not keys:
        raise NotDeployed(_nothing_deployed(scope, name, env))
    namespaces = {k: _destination(applications.get(k)) or scope.namespace_prefix + k[1] for k in keys}
    live = {ns: _Namespace.read(api, ns) for ns in sorted(set(namespaces.values()))}
    order = list(scope.environments)
    return [
        _status(model, e, namespaces[model, e], applications.get((model, e)), live[namespaces[model, e]])
        for model, e in sorted(keys, key=lambda k: (k[0], order.index(k[1]) if k[1] in order else len(order), k[1]))
    ]


def table(statuses: Sequence[ModelStatus]) -> str:
    """The statuses as a table, then each problem on a line of its own.

    >>> print(table([ModelStatus("iris", "dev", "models-dev", None, None, None, None, ("no Deployment iris",))]))
    MODEL  ENV  SYNC     HEALTH  READY  UPDATED  VERSION  SHA256  CANARY  DRIFT
    iris   dev  missing  -       -      -        -        -       -       -
    <BLANKLINE>
    iris/dev: no Deployment iris
    """
    header = ("MODEL", "ENV", "SYNC", "HEALTH", "READY", "UPDATED", "VERSION", "SHA256", "CANARY", "DRIFT")
    rows = [header, *(_row(s) for s in statuses)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    problems = [f"{s.model}/{s.environment}: {p}" for s in statuses for p in s.problems]
    return "\n".join(lines + ([""] + problems if problems else []))


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Namespace:
    """A namespace's modelgen objects, by name (Jobs as a list: they are found by their owner)."""

    deployments: dict[str, Any]
    routes: dict[str, dict[str, Any]]
    cron_jobs: dict[str, Any]
    jobs: list[Any]

    @classmethod
    def read(cls, api: Any, namespace: str) -> _Namespace:
        from kubernetes import client

        apps, batch, custom = client.AppsV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)

        def listed(kind: str, call: Any, *args: str) -> list[Any]:
            found = request(api, f"list {kind} in {namespace}", call, *args, label_selector=OWNED)
            return found["items"] if isinstance(found, dict) else found.items

        return cls(
            deployments={d.metadata.name: d for d in listed("Deployments", apps.list_namespaced_deployment, namespace)},
            routes={
                r["metadata"]["name"]: r
                for r in listed("Routes", custom.list_namespaced_custom_object, *ROUTES[:2], namespace, ROUTES[2])
            },
            cron_jobs={c.metadata.name: c for c in listed("CronJobs", batch.list_namespaced_cron_job, namespace)},
            jobs=listed("Jobs", batch.list_namespaced_job, namespace),
        )


def _applications(api: Any, namespace: str, name: str | None, env: str | None) -> dict[tuple[str, str], dict]:
    from kubernetes import client

    selector = ",".join([f"{MODEL_LABEL}={name}" if name else MODEL_LABEL] + ([f"{ENV_LABEL}={env}"] if env else []))
    found = request(
        api,
        f"list Argo CD Applications ({'/'.join(APPLICATIONS[:2])}) in {namespace}",
        client.CustomObjectsApi(api).list_namespaced_custom_object,
        *APPLICATIONS[:2],
        namespace,
        APPLICATIONS[2],
        label_selector=selector,
    )
    out = {}
    for app in found.get("items") or []:
        labels = app["metadata"].get("labels") or {}
        out[labels[MODEL_LABEL], labels.get(ENV_LABEL, "")] = app
    return out


def _nothing_deployed(scope: Scope, name: str | None, env: str | None) -> str:
    what = f"model {name}" if name else "any model"
    where = f" in environment {env}" if env else ""
    known = sorted({m for m, _ in scope.expected})
    hint = (
        f"the GitOps repository has {', '.join(known)}"
        if known
        else "is Argo CD's namespace right? (--argocd-namespace, or --gitops to read gitops.yaml)"
    )
    return (
        f"no Argo CD Application of {what}{where} in namespace {scope.argocd_namespace} "
        f"(labelled {MODEL_LABEL}): {hint}"
    )


def _destination(app: dict | None) -> str | None:
    return ((app or {}).get("spec") or {}).get("destination", {}).get("namespace")


# ---------------------------------------------------------------------------- judging


def _status(model: str, env: str, namespace: str, app: dict | None, live: _Namespace) -> ModelStatus:
    problems: list[str] = []
    application = _application(app) if app else None
    if application is None:
        problems.append(f"no Argo CD Application {model}-{env}: the ApplicationSet has not made it (yet)")
    elif (application.sync, application.health) != ("Synced", "Healthy"):
        said = f": {'; '.join(application.messages)}" if application.messages else ""
        problems.append(f"Application {application.name} is {application.sync} and {application.health}{said}")
    weights = _weights(live.routes.get(model))
    deployment = _pods(live.deployments.get(model), weights)
    canary = _pods(live.deployments.get(model + CANARY), weights)
    if deployment is None:
        problems.append(f"no Deployment {model} in {namespace}")
    for pods in (deployment, canary):
        problems += _replica_problems(pods) if pods else []
    if canary is None and weights.get(model + CANARY):
        share = weights[model + CANARY]
        problems.append(f"the Route sends {share}% of requests to {model}{CANARY}, which has no Deployment")
    drift = _drift(live.cron_jobs.get(model + DRIFT), live.jobs)
    if drift is not None and drift.result == FAILED:
        problems.append(f"drift job {drift.job} failed: {drift.message}")
    return ModelStatus(model, env, namespace, application, deployment, canary, drift, tuple(problems))


def _application(app: dict) -> Application:
    status = app.get("status") or {}
    # Argo CD's error conditions (ComparisonError, SyncError, ...); its warnings are not problems.
    conditions = [c for c in status.get("conditions") or [] if "Error" in c.get("type", "")]
    messages = [f"{c['type']}: {c.get('message', '')}" for c in conditions]
    for resource in status.get("resources") or []:
        health = resource.get("health") or {}
        if health.get("status", "Healthy") != "Healthy":
            said = f": {health['message']}" if health.get("message") else ""
            messages.append(f"{resource.get('kind')} {resource.get('name')} is {health['status']}{said}")
    return Application(
        name=app["metadata"]["name"],
        sync=(status.get("sync") or {}).get("status", "Unknown"),
        health=(status.get("health") or {}).get("status", "Unknown"),
        revision=(status.get("sync") or {}).get("revision", ""),
        messages=tuple(messages),
    )


def _weights(route: dict | None) -> dict[str, int]:
    """Percent of the Route's requests per Service: the Route's weights are relative (0-256, default 100)."""
    if route is None:
        return {}
    spec = route.get("spec") or {}
    backends = [spec.get("to") or {}, *(spec.get("alternateBackends") or [])]
    weights = {b.get("name", ""): b.get("weight", 100) for b in backends}
    total = sum(weights.values())
    return {service: round(100 * w / total) if total else 0 for service, w in weights.items()}


def _pods(deployment: Any, weights: dict[str, int]) -> Pods | None:
    if deployment is None:
        return None
    template, status = deployment.spec.template, deployment.status
    container = next((c for c in template.spec.containers if c.name == "model"), None)
    env = {e.name: e.value for e in (container.env or [])} if container else {}
    name = deployment.metadata.name
    return Pods(
        name=name,
        version=(template.metadata.labels or {}).get(VERSION_LABEL, ""),
        sha256=env.get("MODEL_SHA256") or "",
        replicas=1 if deployment.spec.replicas is None else deployment.spec.replicas,
        ready=(status.ready_replicas if status else 0) or 0,
        updated=(status.updated_replicas if status else 0) or 0,
        weight=weights.get(name, 0) if weights else None,
    )


def _replica_problems(pods: Pods) -> list[str]:
    problems = []
    if pods.ready < pods.replicas:
        problems.append(f"Deployment {pods.name}: {pods.ready} of {pods.replicas} replicas ready")
    if pods.updated < pods.replicas:
        problems.append(f"Deployment {pods.name}: {pods.updated} of {pods.replicas} replicas updated")
    return problems


def _drift(cron_job: Any, jobs: Iterable[Any]) -> Drift | None:
    if cron_job is None:
        return None
    name = cron_job.metadata.name
    owned = [j for j in jobs if any(r.kind == "CronJob" and r.name == name for r in j.metadata.owner_references or [])]
    if not owned:
        return Drift(name, "", "not run yet", None, "")
    job = max(owned, key=lambda j: j.metadata.creation_timestamp)
    status = job.status
    true = {c.type: c for c in (status.conditions if status else None) or [] if c.status == "True"}
    if "Complete" in true:
        return Drift(name, job.metadata.name, "ok", status.completion_time or true["Complete"].last_transition_time, "")
    if "Failed" in true:
        failed = true["Failed"]
        message = failed.message or ""
        # The drift job's `modelgen monitor --fail-on-drift` exits with EXIT_DRIFT, which its
        # podFailurePolicy turns into a failed Job at once: the condition names the rule and the code.
        drifted = failed.reason == "PodFailurePolicy" and f"exit code {EXIT_DRIFT} " in message
        said = f"{failed.reason}: {message}" if failed.reason and not drifted else message
        return Drift(name, job.metadata.name, DRIFTED if drifted else FAILED, failed.last_transition_time, said)
    if status and status.active:
        return Drift(name, job.metadata.name, "running", status.start_time, "")
    return Drift(name, job.metadata.name, "pending", None, "")


# ---------------------------------------------------------------------------- the table


def _row(s: ModelStatus) -> tuple[str, ...]:
    app, stable = s.application, s.deployment
    return (
        s.model,
        s.environment,
        app.sync if app else "missing",
        app.health if app else "-",
        f"{stable.ready}/{stable.replicas}" if stable else "-",
        f"{stable.updated}/{stable.replicas}" if stable else "-",
        stable.version or "?" if stable else "-",
        stable.sha256[:12] or "?" if stable else "-",
        _canary_cell(s.canary),
        _drift_cell(s.drift),
    )


def _canary_cell(canary: Pods | None) -> str:
    if canary is None:
        return "-"
    share = "?%" if canary.weight is None else f"{canary.weight}%"
    return f"{canary.version or '?'} {share} {canary.ready}/{canary.replicas}"


def _drift_cell(drift: Drift | None) -> str:
    if drift is None:
        return "-"
    when = f" {drift.time:%Y-%m-%d %H:%M}" if drift.time else ""
    return drift.result + when
