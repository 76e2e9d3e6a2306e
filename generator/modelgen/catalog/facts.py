"""The catalog's facts: every model of the GitOps repository, its versions and history, read once.

Everything comes from git, in a fixed number of git commands whatever the number of models: one
walk of the target branch's first-parent history (``GitopsRepo.history``), one ``cat-file`` for
every manifest version it names, one for the environments' ``release.json``. The current
manifests are typed (``load_text``); those of the past only give their version, artifact and
metrics. Drift reports are
not in the repository (the drift job writes them on its model's input-log volume); they are read
from a folder laid out ``<model>/<environment>/drift-report.json`` when one is given.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelgen.errors import ManifestError, ModelgenError, os_problem
from modelgen.gitops.git import Entry
from modelgen.gitops.live import Live, live
from modelgen.gitops.repo import MODELS, GitopsRepo, Logged
from modelgen.manifest import Manifest, load_text

log = logging.getLogger(__name__)

# Metrics where a smaller value is the better one; any other metric is better larger (accuracy, AUC, R²).
_LOWER_IS_BETTER = re.compile(r"(^|_)(rmse|mse|mae|mape|loss|logloss|error|brier)($|_)", re.IGNORECASE)
# GitLab's merge commit message ends "See merge request group/project!12".
_MERGE_REQUEST = re.compile(r"See merge request \S*?!(\d+)")
REPORT = "drift-report"
_MANIFEST = re.compile(rf"{MODELS}/[^/]+/model\.yaml")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Change:
    """A commit of the target branch that changed the model: a merged merge request, or a direct commit."""

    commit: str
    date: str
    author: str
    subject: str
    merged: str = ""  # for a merge: the subject of the branch's last commit (what the merge request did)
    merge_request: str = ""  # its number, when GitLab's merge commit message names it


@dataclass(frozen=True)
class Version:
    """One version of the model: when it reached the target branch, and what its manifest says."""

    version: str
    date: str
    commit: str
    sha256: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Drift:
    """The last drift report of one environment (``modelgen monitor``'s drift-report.json)."""

    environment: str
    rows: int
    drifted: tuple[str, ...]
    html: bytes | None  # the HTML report beside it, published with the catalog


@dataclass(frozen=True)
class Headline:
    """The model's first metric, and how its last version moved it."""

    metric: str
    value: float
    previous: float | None  # in the version before, if that one had the metric
    previous_version: str

    @property
    def change(self) -> float | None:
        return None if self.previous is None else self.value - self.previous

    @property
    def worse(self) -> bool:
        """The last version lost on this metric (lower is worse, or higher for errors and losses)."""
        if self.change is None or self.change == 0:
            return False
        return (self.change > 0) == bool(_LOWER_IS_BETTER.search(self.metric))


@dataclass(frozen=True)
class ModelFacts:
    manifest: Manifest  # on the target branch
    versions: tuple[Version, ...]  # oldest first
    releases: tuple[Live, ...]  # per environment, in the manifest's order
    changes: tuple[Change, ...]  # newest first
    drift: tuple[Drift, ...]  # per environment that has a report

    @property
    def name(self) -> str:
        return self.manifest.name

    def runs(self, version: str) -> list[str]:
        """Where ``version`` is live: each environment that runs it, or sends a canary share to it."""
        found = [r.environment for r in self.releases if r.version == version]
        found += [
            f"{r.environment} (canary {r.canary.weight}%)"
            for r in self.releases
            if r.canary and r.canary.version == version
        ]
        return found

    @property
    def metric_names(self) -> list[str]:
        """Every metric any version has: the current version's first, in the manifest's order."""
        names = list(self.manifest.provenance.get("metrics", {}))
        for v in reversed(self.versions):
            names += [n for n in v.metrics if n not in names]
        return names

    @property
    def headline(self) -> Headline | None:
        metrics = self.manifest.provenance.get("metrics", {})
        if not metrics:
            return None
        metric = next(iter(metrics))
        before = [v for v in self.versions if v.version != self.manifest.version and metric in v.metrics]
        previous = before[-1] if before else None
        return Headline(
            metric,
            metrics[metric],
            previous.metrics[metric] if previous else None,
            previous.version if previous else "",
        )


@dataclass(frozen=True)
class Catalog:
    repo_url: str
    target: str
    commit: str
    models: tuple[ModelFacts, ...]  # by name
    skipped: tuple[tuple[str, str], ...]  # (model, why) of each model whose manifest cannot be read

    @property
    def web_url(self) -> str:
        """The repository's web page on GitLab, when its URL says where (https://host/group/project.git)."""
        if not self.repo_url.startswith(("https://", "http://")):
            return ""
        return self.repo_url.removesuffix("/").removesuffix(".git")


def collect(repo: GitopsRepo, reports: Path | None = None) -> Catalog:
    """What the catalog shows of ``repo``'s target branch; ``reports`` holds the drift reports, if any."""
    settings = repo.settings
    if repo.head is None:
        raise ModelgenError(f"{repo.url} has no branch {settings.target_revision}")
    history = repo.history()
    head = {name: repo.entries()[_manifest_path(name)] for name in repo.models()}
    blobs = _manifest_blobs(repo, history, head.values())
    current: dict[str, Manifest] = {}
    skipped = []
    for name, entry in head.items():
        try:
            current[name] = load_text(blobs[entry.sha].decode("utf-8"), _manifest_path(name))
        except (ManifestError, UnicodeDecodeError) as err:  # one broken model must not hide the others
            log.warning("%s", err)
            skipped.append((name, str(err).splitlines()[0]))
    past = {sha: _recorded(data) for sha, data in blobs.items()}
    releases = live(repo, current.values())
    merged = _merged_subjects(repo, history)
    models = tuple(
        ModelFacts(
            manifest,
            _versions(name, history, past),
            releases[name],
            _changes(name, history, merged),
            _drift(reports / name, releases[name]) if reports else (),
        )
        for name, manifest in current.items()
    )
    return Catalog(settings.repo_url, settings.target_revision, repo.head, models, tuple(skipped))


def _manifest_path(name: str) -> str:
    return f"{MODELS}/{name}/model.yaml"


def _manifest_blobs(repo: GitopsRepo, history: list[Logged], head: Iterable[Entry]) -> dict[str, bytes]:
    """Every manifest the target branch holds or held, by blob: read with one ``cat-file``."""
    blobs = {e.sha: e for e in head}
    for logged in history:
        for path, entry in logged.changed.items():
            if entry is not None and _MANIFEST.fullmatch(path):
                blobs.setdefault(entry.sha, entry)
    return repo.git.read(blobs)


Recorded = tuple[str, str, dict[str, float]]  # version, artifact sha256, metrics


def _recorded(data: bytes) -> Recorded | None:
    """What the history table needs of a manifest of the past, or None when it does not say.

    Only three fields, read leniently with libyaml: a past manifest is a record, which today's
    schema may no longer accept, and the typed reader (ruamel, with line numbers for its
    messages) costs tens of milliseconds a manifest, too much for every version of every model.
    """
    try:
        doc = yaml.load(data, Loader=_LOADER)  # a safe loader: libyaml's when there is one
        meta = doc["metadata"]
        metrics = (meta.get("provenance") or {}).get("metrics") or {}
        numbers = {str(k): float(v) for k, v in metrics.items() if type(v) in (int, float)}  # bool is no metric
        return str(meta["version"]), str(doc["spec"]["artifact"]["sha256"]), numbers
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None


def _versions(name: str, history: list[Logged], past: dict[str, Recorded | None]) -> tuple[Version, ...]:
    """The versions in the order they reached the target branch; a version whose manifest changed
    later (a hand edit) keeps the date it arrived and shows what its manifest says now."""
    found: dict[str, Version] = {}
    for logged in reversed(history):
        entry = logged.changed.get(_manifest_path(name))
        recorded = past.get(entry.sha) if entry else None
        if recorded is None:
            continue
        version, sha256, metrics = recorded
        first = found.get(version)
        found[version] = Version(
            version,
            first.date if first else logged.date,
            first.commit if first else logged.commit,
            sha256,
            metrics,
        )
    return tuple(found.values())


def _changes(name: str, history: list[Logged], merged: dict[str, str]) -> tuple[Change, ...]:
    prefix = f"{MODELS}/{name}/"
    out = []
    for logged in history:
        if any(path.startswith(prefix) for path in logged.changed):
            number = _MERGE_REQUEST.search(logged.body)
            out.append(
                Change(
                    logged.commit,
                    logged.date,
                    logged.author,
                    logged.subject,
                    merged.get(logged.parents[1], "") if logged.merge else "",
                    number.group(1) if number else "",
                )
            )
    return tuple(out)


def _merged_subjects(repo: GitopsRepo, history: list[Logged]) -> dict[str, str]:
    """The subject of each merged branch's last commit (what its merge request did), in one ``git log``."""
    heads = sorted({logged.parents[1] for logged in history if logged.merge})
    if not heads:
        return {}
    out = repo.git.text("log", "--no-walk=unsorted", "--stdin", "--format=%H %s", input="\n".join(heads).encode())
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _drift(folder: Path, releases: tuple[Live, ...]) -> tuple[Drift, ...]:
    """The drift report of each environment that has one under ``folder`` (``<env>/drift-report.json``)."""
    out = []
    for release in releases:
        where = folder / release.environment
        try:
            doc = json.loads((where / f"{REPORT}.json").read_text("utf-8"))
            html = (where / f"{REPORT}.html").read_bytes() if (where / f"{REPORT}.html").is_file() else None
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            problem = os_problem(err) if isinstance(err, OSError) else f"not JSON: {err}"
            raise ModelgenError(f"cannot read the drift report {where}/{REPORT}.json: {problem}") from err
        if not _is_report(doc):
            raise ModelgenError(f"{where}/{REPORT}.json is not a drift report of modelgen monitor (rows, drifted)")
        out.append(Drift(release.environment, doc["rows"], tuple(doc["drifted"]), html))
    return tuple(out)


def _is_report(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("rows"), int)
        and isinstance(doc.get("drifted"), list)
        and all(isinstance(d, str) for d in doc["drifted"])
    )
