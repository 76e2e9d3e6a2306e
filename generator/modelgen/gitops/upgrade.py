"""``modelgen upgrade``: re-render models from the current templates and keep their hand edits.

For each file of a model, three versions meet: what was generated last time (the recorded
inputs rendered with the recorded templates, kept in the repository's template store), what
the current templates generate, and the file as it is now. A change on one side only is taken
as it is; changes on both sides go through ``git merge-file``, and what it cannot reconcile is
committed with conflict markers, listed, and the merge request opened as a draft: never lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgen import __version__
from modelgen.errors import ModelgenError
from modelgen.gitops.git import merge_file
from modelgen.gitops.merge_request import GitLabApi, MergeRequest
from modelgen.gitops.repo import (
    MODELS,
    STORE,
    GitopsError,
    GitopsRepo,
    Published,
    apply,
    changes_under,
    promoted,
    store_changes,
)
from modelgen.render.project import project_manifest, record
from modelgen.render.templates import (
    PROFILE,
    Files,
    context,
    is_verbatim,
    legacy_documents,
    render,
    render_inputs,
    template_version,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conflict:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Upgraded:
    published: Published
    upgraded: tuple[str, ...]
    conflicts: tuple[Conflict, ...]


def merge_project(base: Files, ours: Files, theirs: Files, where: str) -> tuple[Files, list[Conflict]]:
    """The 3-way merge of a project: ``base`` as generated before, ``ours`` as it is, ``theirs`` as generated now."""
    merged: Files = {}
    conflicts: list[Conflict] = []
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or t == b:
            result = o  # nothing new from the templates, or both sides made the same change
        elif o == b:
            result = t  # no hand edit: take the template's change (None deletes)
        elif o is None:
            result = t
            conflicts.append(Conflict(f"{where}/{path}", "deleted by hand, changed by the templates: restored"))
        elif t is None:
            result = o
            conflicts.append(Conflict(f"{where}/{path}", "edited by hand, dropped by the templates: kept"))
        else:
            labels = (f"{where}/{path} (as it is)", "as generated before", f"templates {__version__}")
            result, count = merge_file(o, b or b"", t, labels)
            if count:
                conflicts.append(
                    Conflict(f"{where}/{path}", f"{count} conflicting change(s): see the conflict markers")
                )
        if result is not None:
            merged[path] = result
    return merged, conflicts


def upgrade(
    repo: GitopsRepo,
    names: list[str] | None = None,
    *,
    merge_request: bool = False,
    api: GitLabApi | None = None,
) -> Upgraded:
    """Re-render ``names`` (every model when None) in one commit on one branch."""
    settings = repo.settings
    available = repo.models()
    wanted = available if names is None else names
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise GitopsError(
            f"no model(s) {', '.join(unknown)} on {settings.target_revision} (models: {', '.join(available)})"
        )
    entries = repo.entries()
    everything = repo.files(f"{MODELS}/")
    changes: dict[str, bytes | None] = {}
    conflicts: list[Conflict] = []
    upgraded: list[str] = []
    rendered_from: set[str] = set()  # the templates the upgraded models are rendered from now
    with tempfile.TemporaryDirectory(prefix="modelgen-upgrade-") as tmp:
        stores = _Stores(repo, Path(tmp))
        for name in wanted:
            prefix = f"{MODELS}/{name}/"
            ours = {p.removeprefix(f"{name}/"): d for p, d in everything.items() if p.startswith(f"{name}/")}
            merged, found = _upgrade_one(
                ours, prefix.rstrip("/"), settings.repo_url, settings.ci_image, stores, settings.environments
            )
            if merged is None:
                continue
            model_changes = changes_under(prefix, entries, {prefix + p: d for p, d in merged.items()})
            if model_changes:
                upgraded.append(name)
                changes.update(model_changes)
                conflicts.extend(found)
                now = record(merged, prefix.rstrip("/"))
                rendered_from.add(f"{now['template']}-{now['template_version']}")
    if not changes:
        return Upgraded(Published("every model is up to date with the templates: nothing to do"), (), ())
    changes.update(store_changes(repo, apply(entries, changes)))
    versions = sorted(rendered_from)
    branch = f"modelgen/upgrade-{hashlib.sha256(' '.join(versions).encode()).hexdigest()[:10]}"
    title = f"Upgrade {len(upgraded)} model(s) to modelgen {__version__} templates"
    listed = "\n".join(f"- {c}" for c in conflicts)
    message = (
        f"{title}\n\nModels: {', '.join(upgraded)}\nTemplates: {', '.join(versions)}\n"
        + (f"Conflicts:\n{listed}\n" if conflicts else "")
        + f"Generated-By: modelgen {__version__}\n"
    )
    mr = None
    if merge_request:
        what = (
            f"Conflicts to resolve on this branch: {'; '.join(map(str, conflicts))}." if conflicts else "No conflicts."
        )
        mr = MergeRequest(
            source=branch,
            target=settings.target_revision,
            title=title,
            description=(
                f"Re-renders {', '.join(upgraded)} from templates {', '.join(versions)}, keeping hand edits "
                f"(3-way merge). {what}"
            ),
            labels=("modelgen", "template-upgrade"),
            draft=bool(conflicts),
        )
    published = repo.publish(changes, branch=branch, message=message, merge_request=mr, api=api)
    return Upgraded(published, tuple(upgraded), tuple(conflicts))


def _upgrade_one(
    ours: Files, where: str, repo_url: str, tools_image: str, stores: _Stores, environments: Sequence[str]
) -> tuple[Files | None, list[Conflict]]:
    rec = record(ours, where)
    # The reference profile was computed when the model was generated; an upgrade keeps it.
    profile = json.loads(ours[PROFILE]) if PROFILE in ours else None
    with project_manifest(ours, where) as manifest:
        inputs = _json(context(manifest, repo_url, profile, tools_image))
        installed = template_version(manifest.runtime)
        if rec.get("template_version") == installed and rec.get("modelgen") == __version__ and rec["inputs"] == inputs:
            return None, []  # rendered from these very templates and inputs: nothing to upgrade
        theirs = render(manifest, gitops_repo_url=repo_url, profile=profile, tools_image=tools_image)
        # The later environments' overlays and releases are promotion's: as they are, whatever the templates say.
        owned = promoted([e for e in environments if e in {env.name for env in manifest.environments}])
    old_root = stores.root(rec)
    base = render_inputs(rec["inputs"], old_root)
    # Files taken from the model's folder are not templated, and the few old templates cannot
    # render again: their "before" is what is there.
    kept = legacy_documents(rec["inputs"], old_root)
    base.update({p: d for p, d in ours.items() if is_verbatim(p) or p in kept})
    base, theirs = ({p: d for p, d in files.items() if not p.startswith(owned)} for files in (base, theirs))
    merged, conflicts = merge_project(base, ours, theirs, where)
    return merged, conflicts


class _Stores:
    """Template versions from the repository's store, written out once each to render from."""

    def __init__(self, repo: GitopsRepo, tmp: Path):
        self.repo = repo
        self.tmp = tmp
        self.done: dict[str, Path] = {}

    def root(self, rec: dict[str, Any]) -> Path:
        name = f"{rec.get('template')}-{rec.get('template_version')}"
        if name not in self.done:
            files = self.repo.files(f"{STORE}/{name}/")
            if not files:
                raise ModelgenError(
                    f"the templates {name} this model was generated with are not in {STORE}/ of the repository: "
                    "its hand edits cannot be merged; regenerate it with `modelgen generate --gitops`"
                )
            root = self.tmp / name
            for rel, data in files.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
            self.done[name] = root
        return self.done[name]


def _json(value: Any) -> Any:
    """``value`` as it reads back from ``.modelgen.json`` (tuples become lists, and so on)."""
    return json.loads(json.dumps(value, sort_keys=True))
