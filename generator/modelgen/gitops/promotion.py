"""Environments promoted one after the other, two versions live for a canary, and the way back.

The first environment of a model (first in the repository's ``gitops.yaml`` order) follows the
target branch: its overlay deploys ``deploy/base``, which ``generate`` renders, and its
BuildConfig builds the image. Every later environment runs a *release*:
``deploy/releases/<version>/`` is ``deploy/base`` exactly as it was when that version was on the
target branch, and the environment's overlay deploys that copy without a BuildConfig, with an
ImageStream tag that imports the first environment's image by digest (prod never builds), and
says what it runs in ``release.json``. Only ``promote``, ``canary`` and ``rollback`` change a later
environment, each as a merge request of its own; ``generate`` and ``upgrade`` leave it alone.
A canary is a second release in the same environment (a ``canary/`` kustomization: its objects
suffixed ``-canary``, its pods selected apart), which the Route sends a share of requests to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from modelgen.errors import GitopsError
from modelgen.gitops.merge_request import GitLabApi, MergeRequest
from modelgen.gitops.repo import MODELS, RELEASE_FILE, GitopsRepo, Published, deployed
from modelgen.manifest import Manifest, load_text
from modelgen.render.templates import Files, render_release_overlay

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Canary:
    version: str
    sha256: str
    image: str
    weight: int  # percent of the Route's requests


@dataclass(frozen=True)
class Release:
    """What a later environment runs (its ``release.json``)."""

    version: str
    sha256: str  # the artifact's
    image: str  # the image digest, sha256:...
    promoted_from: str
    forced: bool = False
    canary: Canary | None = None

    def document(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["promotedFrom"] = doc.pop("promoted_from")
        return doc

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Release:
        canary = doc.get("canary")
        return cls(
            version=doc["version"],
            sha256=doc["sha256"],
            image=doc["image"],
            promoted_from=doc.get("promotedFrom", ""),
            forced=bool(doc.get("forced", False)),
            canary=Canary(**canary) if canary else None,
        )


def overlay_dir(name: str, env: str) -> str:
    return f"{MODELS}/{name}/deploy/overlays/{env}/"


def release_dir(name: str, version: str) -> str:
    return f"{MODELS}/{name}/deploy/releases/{version}/"


def environments(repo: GitopsRepo, manifest: Manifest) -> list[str]:
    """The model's environments in the repository's promotion order (first: the one that builds)."""
    order = list(repo.settings.environments)
    return sorted((e.name for e in manifest.environments), key=lambda e: order.index(e) if e in order else len(order))


def kept_paths(repo: GitopsRepo, manifest: Manifest) -> set[str]:
    """What ``generate`` must leave as it is: the releases and the overlays of the later environments."""
    later = environments(repo, manifest)[1:]
    prefix = f"{MODELS}/{manifest.name}/deploy/"
    return {
        path
        for path in repo.entries(prefix=prefix)
        if path.startswith(prefix + "releases/") or any(path.startswith(overlay_dir(manifest.name, e)) for e in later)
    }


def release_of(repo: GitopsRepo, name: str, env: str, commit: str | None = None) -> Release | None:
    """What environment ``env`` runs by promotion, or None when it follows the target branch."""
    path = overlay_dir(name, env) + RELEASE_FILE
    data = repo.read([path], commit).get(path)
    if data is None:
        return None
    try:
        return Release.of(json.loads(data))
    except (ValueError, KeyError, TypeError) as err:
        raise GitopsError(f"{path} is not a release modelgen wrote: {err}") from err


def version_in(repo: GitopsRepo, manifest: Manifest, env: str) -> str | None:
    """The version ``env`` runs: its release's; the target branch's for an overlay of the base (the
    first environment, or one generated before promotion existed); None when it has no overlay."""
    release = release_of(repo, manifest.name, env)
    if release is not None:
        return release.version
    return manifest.version if repo.entries(prefix=overlay_dir(manifest.name, env)) else None


def manifest_at_version(repo: GitopsRepo, name: str, version: str) -> tuple[str, Manifest]:
    """The newest commit of the target branch whose ``models/<name>/model.yaml`` is ``version``, and that manifest."""
    path = f"{MODELS}/{name}/model.yaml"
    commits = repo.git.text("log", "--format=%H", repo.head, "--", path).split()
    for commit in commits:
        data = repo.read([path], commit).get(path)
        if data is None:
            continue
        try:
            manifest = load_text(data.decode("utf-8"), f"{path} at {commit[:12]}")
        except Exception:  # noqa: BLE001 - an unreadable old manifest is simply not the version asked for
            continue
        if manifest.version == version:
            return commit, manifest
    raise GitopsError(f"{name} {version} was never on {repo.target}: there is no such version to promote")


def release_files(repo: GitopsRepo, name: str, commit: str, version: str) -> Files:
    """``deploy/base`` of ``name`` at ``commit``, byte for byte, as ``deploy/releases/<version>/``."""
    base = f"{MODELS}/{name}/deploy/base/"
    files = repo.files(base, commit)
    if not files:
        raise GitopsError(f"{name} has no deploy/base at {commit[:12]}")
    return {release_dir(name, version) + rel: data for rel, data in files.items()}


@dataclass(frozen=True)
class Plan:
    """A change of one environment: the files, and the words for its commit and merge request."""

    changes: dict[str, bytes | None]
    branch: str
    title: str
    description: str


def plan_promotion(
    repo: GitopsRepo,
    name: str,
    env: str,
    *,
    version: str | None = None,
    image: str | None = None,
    force: bool = False,
    cluster_image: Any = None,
) -> Plan:
    """``modelgen promote``: ``env`` runs what the environment before it runs (or ``version``, with ``force``).

    A canary in ``env`` is completed: its version becomes the one served, and it goes.
    ``cluster_image(namespace, name)`` reads a digest off the cluster when ``image`` is not given.
    """
    manifest = _current(repo, name)
    order = environments(repo, manifest)
    _check_later(order, env, "promote to")
    before = order[order.index(env) - 1]
    current = release_of(repo, name, env)
    before_release = release_of(repo, name, before)
    runs_before = version_in(repo, manifest, before)
    canary = current.canary.version if current and current.canary else None
    version = version or canary or runs_before
    if version is None:
        raise GitopsError(f"{before} does not run {name} yet: promote to {before} first (or say --version and --force)")
    # What the environment before runs, or the canary being completed here: anything else skips a step.
    forced = version not in (runs_before, canary)
    if forced and not force:
        raise GitopsError(
            f"{before} runs {name} {runs_before}, not {version}: promote what {before} runs, or say --force "
            "(the merge request will say it skipped an environment)"
        )
    image = image or _image(current, before_release, version, cluster_image, repo, name, order[0])
    commit, at_version = manifest_at_version(repo, name, version)
    release = Release(version, at_version.artifact.sha256, image, promoted_from=before, forced=forced)
    changes = _release_changes(repo, name, env, release, commit, at_version)
    title = f"Promote {name} {version} to {env}" + (f" (was {current.version})" if current else f" (first in {env})")
    description = _describe(repo, name, env, current, release, at_version)
    if release.forced:
        description += f"\n\n**Forced**: {before} runs {runs_before}, not {version}."
    return Plan(changes, f"modelgen/promote-{name}-{env}-{version}", title, description)


def plan_canary(
    repo: GitopsRepo,
    name: str,
    version: str,
    env: str,
    weight: int,
    *,
    image: str | None = None,
    cluster_image: Any = None,
) -> Plan:
    """``modelgen canary``: ``version`` beside the version ``env`` runs, taking ``weight`` percent of its requests."""
    if not 0 < weight < 100:
        raise GitopsError(f"--weight {weight}: a canary takes between 1 and 99 percent of the requests")
    manifest = _current(repo, name)
    order = environments(repo, manifest)
    _check_later(order, env, "run a canary in")
    current = release_of(repo, name, env)
    if current is None:
        raise GitopsError(f"{env} follows the target branch: promote {name} to {env} once before a canary there")
    if version == current.version:
        raise GitopsError(f"{env} already runs {name} {version}: a canary is another version")
    earlier = [release_of(repo, name, e) for e in order[1 : order.index(env)]]
    image = image or _image(None, next((r for r in earlier if r and r.version == version), None), version,
                            cluster_image, repo, name, order[0])  # fmt: skip
    commit, at_version = manifest_at_version(repo, name, version)
    canary = Canary(version=version, sha256=at_version.artifact.sha256, image=image, weight=weight)
    release = replace(current, canary=canary)
    stable_commit, stable = manifest_at_version(repo, name, current.version)
    changes = _release_changes(repo, name, env, release, stable_commit, stable, canary_commit=commit)
    description = (
        f"Canary of {name} {version} in {env}: {weight}% of the requests, {100 - weight}% to {current.version} "
        f"(the Route's alternateBackends). Artifact sha256 `{canary.sha256}`, image `{image}`. "
        f"`modelgen promote {name} --to {env}` completes it; `modelgen rollback {name} --env {env}` ends it."
    )
    description += "\n\n" + _metrics_table(current.version, stable, version, at_version)
    return Plan(
        changes, f"modelgen/canary-{name}-{env}-{version}-{weight}", f"Canary {name} {version} in {env} at {weight}%",
        description,
    )  # fmt: skip


def plan_rollback(repo: GitopsRepo, name: str, env: str) -> Plan:
    """``modelgen rollback``: ``env`` back to what it ran before its last change, byte for byte, from git history.

    A state that ran the version being left as its canary is passed over: rolling back a completed
    canary returns to the stable release before it, not to the canary's share of the requests.
    """
    manifest = _current(repo, name)
    _check_later(environments(repo, manifest), env, "roll back")
    current = release_of(repo, name, env)
    if current is None:
        raise GitopsError(f"{env} has never been promoted: there is nothing to roll back to")
    overlay = overlay_dir(name, env)
    path = overlay + RELEASE_FILE
    for commit in repo.git.text("log", "--format=%H", repo.head, "--", path).split()[1:]:
        previous = release_of(repo, name, env, commit)
        if previous is None or previous == current:
            continue
        if not current.canary and previous.canary and previous.canary.version == current.version:
            continue
        changes = _restore(repo, overlay, commit)
        for version in {previous.version, *([previous.canary.version] if previous.canary else [])}:
            changes.update(_restore(repo, release_dir(name, version), commit))
        changes.update(_pruned(repo, manifest, env, previous, changes))
        what = f"{previous.version}" + (f" (canary {previous.canary.version})" if previous.canary else "")
        description = (
            f"Rolls {name} in {env} back to {what}, as at {commit[:12]}: the overlay and the release, byte for byte. "
            f"It ran {current.version}" + (f" with a canary of {current.canary.version}." if current.canary else ".")
        )
        branch = f"modelgen/rollback-{name}-{env}-{previous.version}"
        return Plan(changes, branch, f"Roll back {name} in {env} to {what}", description)
    raise GitopsError(f"{env} has run {name} {current.version} since it was first promoted: nothing to roll back to")


def publish_plan(repo: GitopsRepo, plan: Plan, *, merge_request: bool, api: GitLabApi | None = None) -> Published:
    from modelgen import __version__

    mr = None
    if merge_request:
        mr = MergeRequest(
            source=plan.branch,
            target=repo.settings.target_revision,
            title=plan.title,
            description=plan.description,
            labels=("modelgen", "promotion"),
        )
    message = f"{plan.title}\n\n{plan.description}\n\nGenerated-By: modelgen {__version__}\n"
    return repo.publish(plan.changes, branch=plan.branch, message=message, merge_request=mr, api=api)


# ---------------------------------------------------------------------------- helpers


def _current(repo: GitopsRepo, name: str) -> Manifest:
    manifest = deployed(repo, name, repo.head)
    if manifest is None:
        raise GitopsError(f"no model {name} on {repo.target} (models: {', '.join(repo.models()) or 'none'})")
    return manifest


def _check_later(order: list[str], env: str, what: str) -> None:
    if env not in order:
        raise GitopsError(f"{env} is not an environment of this model (allowed: {', '.join(order)})")
    if env == order[0]:
        raise GitopsError(
            f"{env} is the first environment: it follows the target branch, there is nothing to {what} "
            f"(later environments: {', '.join(order[1:]) or 'none'})"
        )


def _image(current, source, version, cluster_image, repo, name, first) -> str:
    """The digest of the image that ran ``version``: a release's, else the first environment's on the cluster."""
    for release in (source, current):
        if release and release.version == version:
            return release.image
        if release and release.canary and release.canary.version == version:
            return release.canary.image
    if cluster_image is not None:
        digest = cluster_image(repo.settings.namespace_prefix + first, name)
        if digest:
            return digest
    raise GitopsError(
        f"the image digest of {name} {version} is not known: give --image sha256:... (the digest the "
        f"BuildConfig in {repo.settings.namespace_prefix}{first} pushed), or a kubeconfig that reaches the cluster"
    )


def _release_changes(
    repo: GitopsRepo,
    name: str,
    env: str,
    release: Release,
    commit: str,
    manifest: Manifest,
    *,
    canary_commit: str | None = None,
) -> dict[str, bytes | None]:
    if not DIGEST.match(release.image) or (release.canary and not DIGEST.match(release.canary.image)):
        raise GitopsError(f"an image digest is sha256: and 64 hexadecimal digits, not {release.image!r}")
    settings = repo.settings
    build_namespace = settings.namespace_prefix + environments(repo, manifest)[0]
    overlay = overlay_dir(name, env)
    desired: Files = {}
    for rel, data in render_release_overlay(manifest, env, release.document(), build_namespace).items():
        desired[overlay + rel] = data
    desired[overlay + RELEASE_FILE] = (json.dumps(release.document(), indent=1, sort_keys=True) + "\n").encode()
    desired.update(release_files(repo, name, commit, release.version))
    if release.canary is not None:
        desired.update(release_files(repo, name, canary_commit or commit, release.canary.version))
    existing = repo.read(desired)
    changes: dict[str, bytes | None] = {p: None for p in repo.entries(prefix=overlay) if p not in desired}
    changes.update({path: data for path, data in desired.items() if existing.get(path) != data})
    changes.update(_pruned(repo, manifest, env, release, changes))
    return dict(sorted(changes.items()))


def _pruned(
    repo: GitopsRepo, manifest: Manifest, env: str, release: Release, changes: Mapping[str, Any]
) -> dict[str, None]:
    """Releases no environment runs once ``env`` runs ``release``: removed."""
    name = manifest.name
    wanted = {release.version, *([release.canary.version] if release.canary else [])}
    for other in environments(repo, manifest)[1:]:
        if other == env:
            continue
        running = release_of(repo, name, other)
        if running:
            wanted |= {running.version, *([running.canary.version] if running.canary else [])}
    prefix = f"{MODELS}/{name}/deploy/releases/"
    return {
        path: None for path in repo.entries(prefix=prefix) if path.split("/")[4] not in wanted and path not in changes
    }


def _restore(repo: GitopsRepo, prefix: str, commit: str) -> dict[str, bytes | None]:
    """The files under ``prefix`` as they were at ``commit``: changed back, added back, or removed."""
    then = repo.files(prefix, commit)
    now = repo.entries(prefix=prefix)
    changes: dict[str, bytes | None] = {p: None for p in now if p.removeprefix(prefix) not in then}
    current = repo.files(prefix)
    for rel, data in then.items():
        if current.get(rel) != data:
            changes[prefix + rel] = data
    return changes


def _describe(repo, name, env, current: Release | None, release: Release, manifest: Manifest) -> str:
    old_version = current.version if current else "—"
    old_sha = current.sha256 if current else "—"
    old_image = current.image if current else "—"
    lines = [
        f"Promotes {name} {release.version} to {env}, from {release.promoted_from}. Only {env}'s overlay changes.",
        "",
        "| | before | after |",
        "|---|---|---|",
        f"| version | {old_version} | {release.version} |",
        f"| artifact sha256 | `{old_sha}` | `{release.sha256}` |",
        f"| image | `{old_image}` | `{release.image}` |",
    ]
    if current and current.canary:
        lines.append(f"| canary | {current.canary.version} at {current.canary.weight}% | completed |")
    text = "\n".join(lines)
    if current:
        _, old = manifest_at_version(repo, name, current.version)
        text += "\n\n" + _metrics_table(current.version, old, release.version, manifest)
    else:
        text += "\n\n" + _metrics_table(None, None, release.version, manifest)
    return text


def _metrics_table(old_version: str | None, old: Manifest | None, new_version: str, new: Manifest) -> str:
    old_metrics = dict((old.provenance.get("metrics") or {}) if old else {})
    new_metrics = dict(new.provenance.get("metrics") or {})
    names = sorted(set(old_metrics) | set(new_metrics))
    if not names:
        return "No metrics recorded in the manifests (metadata.provenance.metrics)."
    lines = [f"| metric | {old_version or '—'} | {new_version} |", "|---|---|---|"]
    lines += [f"| {n} | {old_metrics.get(n, '—')} | {new_metrics.get(n, '—')} |" for n in names]
    return "\n".join(lines)
