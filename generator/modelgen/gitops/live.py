"""What each environment of a model runs, as the GitOps repository says, for many models at once.

An environment with an overlay (``models/<name>/deploy/overlays/<env>/``) runs the base, i.e. the
version ``models/<name>/model.yaml`` names, unless promotion pinned a release there: then its
``release.json`` (``gitops.promotion.Release``) says which version, artifact and image, and its
canary. An environment without an overlay (a later one not promoted to yet) runs nothing.
A broken ``release.json`` is reported on its environment instead of hiding the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from modelgen.gitops.promotion import Canary, Release, overlay_dir
from modelgen.gitops.repo import RELEASE_FILE, GitopsRepo, overlays
from modelgen.manifest import Manifest


@dataclass(frozen=True)
class Live:
    """What runs in one environment of one model."""

    environment: str
    version: str
    sha256: str
    release: Release | None = None  # None: the overlay deploys the base
    problem: str = ""  # why release.json could not be read ("" when it could, or there is none)

    @property
    def promoted_from(self) -> str:
        return self.release.promoted_from if self.release else ""

    @property
    def image(self) -> str:
        return self.release.image if self.release else ""

    @property
    def canary(self) -> Canary | None:
        return self.release.canary if self.release else None


def live(repo: GitopsRepo, manifests: Iterable[Manifest], commit: str | None = None) -> dict[str, tuple[Live, ...]]:
    """Per model, what each of its environments runs at ``commit`` (default: the target branch).

    Every ``release.json`` is read with one ``git cat-file``, since the catalog asks for all models.
    """
    manifests = list(manifests)
    environments = {m.name: overlays(repo, m, commit) for m in manifests}
    paths = {(m.name, env): overlay_dir(m.name, env) + RELEASE_FILE for m in manifests for env in environments[m.name]}
    found = repo.read(paths.values(), commit)
    return {
        m.name: tuple(
            live_of(env, m, found.get(paths[m.name, env]), paths[m.name, env]) for env in environments[m.name]
        )
        for m in manifests
    }


def live_of(environment: str, base: Manifest, release: bytes | None, where: str = RELEASE_FILE) -> Live:
    """What ``environment`` runs: the release ``release`` (its ``release.json``) pins, else the base.

    >>> from modelgen.manifest.docs import EXAMPLE
    >>> from modelgen.manifest import load_text
    >>> base = load_text(EXAMPLE, "model.yaml")
    >>> live_of("dev", base, None).version
    '1.2.0'
    >>> r = live_of("prod", base, b'{"version": "1.1.0", "sha256": "ab", "image": "sha256:cd", "promotedFrom": "dev",'
    ...             b' "canary": {"version": "1.2.0", "sha256": "ef", "image": "sha256:01", "weight": 10}}')
    >>> r.version, r.promoted_from, r.canary.version, r.canary.weight
    ('1.1.0', 'dev', '1.2.0', 10)
    """
    if release is None:
        return Live(environment, base.version, base.artifact.sha256)
    try:
        pinned = Release.of(json.loads(release))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        problem = f"{where} is not a release modelgen wrote ({type(err).__name__}: {err})"
        return Live(environment, "?", "", problem=problem)
    return Live(environment, pinned.version, pinned.sha256, pinned)
