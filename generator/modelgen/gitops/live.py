"""Which version of a model each environment runs, as the GitOps repository says.

An environment's overlay (``models/<name>/deploy/overlays/<env>/``) deploys the base, i.e. the
version ``models/<name>/model.yaml`` names, unless the environment was reached by promotion:
then the overlay pins its own release in ``release.json``::

    {"version": "1.0.0", "sha256": "<artifact sha256>", "image": "<image digest>",
     "promotedFrom": "dev", "canary": {"version": "1.0.1", "weight": 10}}   # canary: or null

A broken ``release.json`` is reported on its environment instead of hiding the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelgen.gitops.repo import MODELS, GitopsRepo, overlays
from modelgen.manifest import Manifest

RELEASE = "release.json"


@dataclass(frozen=True)
class Canary:
    version: str
    weight: int  # percent of the Route's traffic


@dataclass(frozen=True)
class Release:
    """What runs in one environment of one model."""

    environment: str
    version: str
    sha256: str
    image: str = ""  # the promoted image's digest; "" when the environment builds the base
    promoted_from: str = ""  # "" when the environment deploys the base
    canary: Canary | None = None
    problem: str = ""  # why release.json could not be read ("" when it could, or there is none)

    @property
    def promoted(self) -> bool:
        return bool(self.promoted_from)


def release_path(name: str, environment: str) -> str:
    return f"{MODELS}/{name}/deploy/overlays/{environment}/{RELEASE}"


def live(repo: GitopsRepo, manifests: Iterable[Manifest], commit: str | None = None) -> dict[str, tuple[Release, ...]]:
    """Per model, what each of its environments runs at ``commit`` (default: the target branch).

    Many models at once, since the catalog asks for all of them: every ``release.json`` is read
    with one ``git cat-file``.
    """
    manifests = list(manifests)
    environments = {m.name: overlays(repo, m, commit) for m in manifests}
    found = repo.read([release_path(name, env) for name, envs in environments.items() for env in envs], commit)
    out: dict[str, tuple[Release, ...]] = {}
    for m in manifests:
        out[m.name] = tuple(
            release_of(env, m, found.get(release_path(m.name, env)), release_path(m.name, env))
            for env in environments[m.name]
        )
    return out


def release_of(environment: str, base: Manifest, data: bytes | None, where: str = RELEASE) -> Release:
    """The release ``data`` (an overlay's ``release.json``, or None) pins; without one, the base.

    >>> from modelgen.manifest.docs import EXAMPLE
    >>> from modelgen.manifest import load_text
    >>> base = load_text(EXAMPLE, "model.yaml")
    >>> release_of("dev", base, None).version
    '1.2.0'
    >>> r = release_of("prod", base, b'{"version": "1.1.0", "sha256": "ab", "image": "sha256:cd", '
    ...                b'"promotedFrom": "dev", "canary": {"version": "1.2.0", "weight": 10}}')
    >>> r.version, r.promoted_from, r.canary
    ('1.1.0', 'dev', Canary(version='1.2.0', weight=10))
    """
    if data is None:
        return Release(environment, base.version, base.artifact.sha256)
    try:
        doc = json.loads(data)
        problem = _problem(doc)
    except ValueError as err:
        problem = f"not JSON ({err})"
    if problem:
        return Release(environment, "?", "", problem=f"{where}: {problem}")
    canary = doc.get("canary")
    return Release(
        environment,
        doc["version"],
        doc["sha256"],
        image=doc.get("image", ""),
        promoted_from=doc.get("promotedFrom", ""),
        canary=Canary(canary["version"], canary["weight"]) if canary else None,
    )


def _problem(doc: Any) -> str:
    """What makes ``doc`` unusable as a release, or ""."""
    if not isinstance(doc, dict):
        return "a JSON object expected"
    for key in ("version", "sha256"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            return f"{key}: a non-empty string expected"
    for key in ("image", "promotedFrom"):
        if not isinstance(doc.get(key, ""), str):
            return f"{key}: a string expected"
    canary = doc.get("canary")
    if canary is not None:
        weight = canary.get("weight") if isinstance(canary, dict) else None
        if not isinstance(canary, dict) or not isinstance(canary.get("version"), str) or not canary["version"]:
            return "canary: null or {version, weight} expected"
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            return "canary.weight: an integer from 0 to 100 expected"
    return ""
