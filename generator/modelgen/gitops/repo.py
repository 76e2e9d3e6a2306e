"""The GitOps repository: fetch it, change ``models/`` on a branch, push, ask for the merge request.

modelgen works in a bare clone kept under ``$MODELGEN_CACHE`` (default ``~/.cache/modelgen``)
and builds every commit without a working tree (see ``git``), so nothing it does can leave a
checkout half-changed; a failed push leaves the clone exactly as the last fetch left it.
Every change goes to a branch ``modelgen/...`` and a merge request; only ``init-gitops`` on
an empty repository pushes to the target branch, since there is nothing to review yet.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from modelgen import __version__
from modelgen.credentials import WHERE_GIT_CREDENTIALS_GO, Transport
from modelgen.engines.record import engine_report
from modelgen.errors import DeployedVersionConflict, GitopsError, ManifestError
from modelgen.gitops.cache import clone_path, locked, prepared
from modelgen.gitops.git import Changes, Entry, Git, GitError, push
from modelgen.gitops.merge_request import GitLabApi, MergeRequest
from modelgen.gitops.scaffold import CONFIG_FILE, GitopsSettings, parse_settings, scaffold
from modelgen.manifest import Manifest, load_text
from modelgen.render.pipeline import project_files
from modelgen.render.templates import RECORD, Files, template_files, template_version

log = logging.getLogger(__name__)

MODELS = "models"
# What a later environment runs, in its overlay (written by gitops.promotion).
RELEASE_FILE = "release.json"
# Every template version a model in the repository was rendered from, so that `upgrade` can
# re-render what was generated before and merge the hand edits made since.
STORE = ".modelgen/templates"
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


@dataclass(frozen=True)
class Published:
    """What a command did to the GitOps repository."""

    message: str
    branch: str | None = None
    commit: str | None = None
    merge_request: MergeRequest | None = None
    merge_request_url: str | None = None
    changed: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pushed(self) -> bool:
        return self.commit is not None


def blob_sha(data: bytes) -> str:
    """The id git gives ``data`` as a blob, computed without asking git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def normalize(url_or_path: str | Path) -> str:
    """A remote as git should see it: URLs as given, local paths made absolute."""
    text = str(url_or_path)
    return text if _URL.match(text) else str(Path(text).expanduser().resolve())


class GitopsRepo:
    """A GitOps repository, as fetched into modelgen's bare clone of it."""

    def __init__(self, url: str, git: Git):
        self.url = url
        self.git = git
        self.target = self._default_branch()
        self.head = git.resolve(f"refs/remotes/origin/{self.target}") if self.target else None
        self._settings: GitopsSettings | None = None
        self._trees: dict[str, dict[str, Entry]] = {}

    @classmethod
    def open(cls, url_or_path: str | Path, *, cache: Path | None = None) -> GitopsRepo:
        """Clone ``url_or_path`` into the cache, or fetch it if it is there already.

        Credentials in the URL are used to fetch and push only: ``url`` is the URL without them.
        """
        transport = Transport.of(normalize(url_or_path))
        url = transport.url
        if not _URL.match(url) and not Path(url).exists():
            raise GitopsError(f"no git repository at {url}")
        if not _URL.match(url) and not _is_repository(Path(url)):
            # said here, in words, before git's fetch fails with a note about access rights
            raise GitopsError(f"{url}: not a git repository ({'a file' if Path(url).is_file() else 'no HEAD or .git'})")
        path = clone_path(url, cache)
        with locked(path):
            git = prepared(path, url, transport.env())
            log.info("fetching %s", url)
            try:
                git.run("fetch", "--prune", "--quiet", "origin")
            except GitError as err:
                hint = ""
                if re.search(r"could not read Username|Authentication failed|401|403", str(err)):
                    hint = f"; give git the credentials with {WHERE_GIT_CREDENTIALS_GO}"
                raise GitopsError(f"cannot fetch the GitOps repository {url}: {err}{hint}") from err
            return cls(url, git)

    def _default_branch(self) -> str | None:
        try:
            self.git.run("remote", "set-head", "origin", "--auto")
            return self.git.text("symbolic-ref", "refs/remotes/origin/HEAD").removeprefix("refs/remotes/origin/")
        except GitError:
            pass
        # The remote's HEAD names no branch it has (a plain git server whose HEAD was left at
        # another branch): the one branch holding gitops.yaml is the repository's.
        branches = self.git.text("for-each-ref", "--format=%(refname)", "refs/remotes/origin/").split()
        holding = [b for b in branches if b != "refs/remotes/origin/HEAD" and self._has(b, CONFIG_FILE)]
        if len(holding) == 1:
            return holding[0].removeprefix("refs/remotes/origin/")
        return None  # an empty repository, or one modelgen cannot tell the target branch of

    def _has(self, ref: str, path: str) -> bool:
        try:
            self.git.run("cat-file", "-e", f"{ref}:{path}")
        except GitError:
            return False
        return True

    @property
    def empty(self) -> bool:
        return self.head is None

    @property
    def settings(self) -> GitopsSettings:
        """The repository's own ``gitops.yaml``; its target branch wins over the remote's default."""
        if self._settings is None:
            data = self.read([CONFIG_FILE]).get(CONFIG_FILE)
            if data is None:
                raise GitopsError(
                    f"{self.url} has no {CONFIG_FILE} on {self.target or 'any branch'}: "
                    "it is not a GitOps repository made by `modelgen init-gitops`"
                )
            self._settings = parse_settings(data.decode("utf-8"), f"{self.url}:{CONFIG_FILE}")
            if self._settings.target_revision != self.target:
                self.target = self._settings.target_revision
                self.head = self.git.resolve(f"refs/remotes/origin/{self.target}")
                if self.head is None:
                    raise GitopsError(f"{self.url} has no branch {self.target} (target_revision in {CONFIG_FILE})")
        return self._settings

    def branch_head(self, branch: str) -> str | None:
        return self.git.resolve(f"refs/remotes/origin/{branch}")

    def entries(self, commit: str | None = None, prefix: str = "") -> dict[str, Entry]:
        """The files at ``commit`` (default: the target branch) under ``prefix``; one ls-tree per commit."""
        commit = commit or self.head
        if commit is None:
            return {}
        if commit not in self._trees:
            self._trees[commit] = self.git.tree(commit)
        tree = self._trees[commit]
        if not prefix:
            return dict(tree)
        prefix = prefix.rstrip("/") + "/"
        return {p: e for p, e in tree.items() if p.startswith(prefix)}

    def read(self, paths: Iterable[str], commit: str | None = None) -> Files:
        tree = self.entries(commit)
        return self.git.read({p: tree[p] for p in paths if p in tree})

    def files(self, prefix: str, commit: str | None = None) -> Files:
        """Every file under ``prefix`` at ``commit`` (default: the target branch), paths relative to it."""
        entries = self.entries(commit, prefix)
        return {p.removeprefix(prefix): data for p, data in self.git.read(entries).items()}

    def models(self, commit: str | None = None) -> list[str]:
        return sorted(
            p.split("/")[1] for p in self.entries(commit, MODELS) if re.fullmatch(r"[^/]+/[^/]+/model\.yaml", p)
        )

    def pending_branches(self) -> list[tuple[str, str]]:
        """``(branch, head)`` of each ``modelgen/`` branch with commits the target branch lacks."""
        if self.head is None:
            return []
        refs = self.git.text("for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/origin/modelgen/")
        found = []
        for line in refs.splitlines():
            ref, head = line.split()
            try:
                merged = self.git.text("merge-base", self.head, head) == head
            except GitError:  # no history in common with the target branch: nothing it could merge
                continue
            if not merged:
                found.append((ref.removeprefix("refs/remotes/origin/"), head))
        return found

    def changed_models(self, commit: str) -> list[str]:
        """The models ``commit`` changes since it left the target branch."""
        base = self.git.text("merge-base", self.head, commit)
        paths = self.git.text("diff", "--name-only", "-z", base, commit, "--", f"{MODELS}/").split("\0")
        return sorted({p.split("/")[1] for p in paths if p.count("/") >= 2})

    def last_commits(self) -> dict[str, str]:
        """``"<hash> <date> <subject>"`` of the last commit that changed each model, from one walk of the history."""
        if self.head is None:
            return {}
        out: dict[str, str] = {}
        log = self.git.text("log", "--format=%x00%h %cs %s", "--name-only", self.head, "--", f"{MODELS}/")
        for record in log.split("\0"):
            header, _, names = record.partition("\n")
            for path in names.split():
                parts = path.split("/")
                if len(parts) > 2:
                    out.setdefault(parts[1], header)
        return out

    def publish(
        self,
        changes: Changes,
        *,
        branch: str,
        message: str,
        merge_request: MergeRequest | None,
        api: GitLabApi | None = None,
    ) -> Published:
        """Commit ``changes`` on top of the target branch as ``branch`` and push it; no-op when nothing changes."""
        commit = self.git.commit(self.head, changes, message)
        existing = self.branch_head(branch)
        if existing and self.git.tree_of(existing) == self.git.tree_of(commit):
            return Published(f"branch {branch} already holds this change: nothing to push", branch=branch)
        options = merge_request.push_options() if merge_request and api is None else ()
        with locked(self.git.path):
            try:
                meanwhile = None if push(self.git, commit, branch, options=options, expect=existing or "") else commit
            except GitError:
                meanwhile = self._pushed_meanwhile(branch, commit)
                if meanwhile is None:
                    raise
            if meanwhile is not None:
                return Published(
                    f"branch {branch} already holds this change, pushed meanwhile ({meanwhile[:12]}): nothing to push",
                    branch=branch,
                )
        url = api.open(merge_request) if merge_request and api else None
        how = ""
        if merge_request:
            how = f"; merge request {url}" if url else f"; merge request into {merge_request.target} requested"
        return Published(
            f"pushed {branch} ({commit[:12]}){how}",
            branch=branch,
            commit=commit,
            merge_request=merge_request,
            merge_request_url=url,
            changed=tuple(sorted(changes)),
        )

    def _pushed_meanwhile(self, branch: str, commit: str) -> str | None:
        """The branch's new head if another run pushed the very tree of ``commit`` to it since the fetch."""
        try:
            self.git.run("fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        except GitError:
            return None
        head = self.branch_head(branch)
        if head is None or self.git.tree_of(head) != self.git.tree_of(commit):
            return None
        return head


def changes_under(prefix: str, current: Mapping[str, Entry], desired: Mapping[str, bytes]) -> dict[str, bytes | None]:
    """What makes the files under ``prefix`` exactly ``desired`` (paths from the repository's root)."""
    out: dict[str, bytes | None] = {p: None for p in current if p.startswith(prefix) and p not in desired}
    for path, data in desired.items():
        entry = current.get(path)
        if entry is None or entry.sha != blob_sha(data):
            out[path] = data
    return dict(sorted(out.items()))


def store_changes(repo: GitopsRepo, after: Mapping[str, Entry | bytes | None]) -> dict[str, bytes | None]:
    """Add the templates the models will reference and drop those none references any more.

    ``after`` is the repository's tree once the other changes are applied (new contents as bytes).
    """
    records = {p: v for p, v in after.items() if p.startswith(f"{MODELS}/") and p.endswith(f"/{RECORD}")}
    stored = {p: e.sha for p, e in repo.entries(prefix=STORE).items()}
    read = repo.git.read({p: v for p, v in records.items() if isinstance(v, Entry)})
    wanted: set[str] = set()
    for path, value in records.items():
        data = value if isinstance(value, bytes) else read.get(path)
        if data is None:
            continue
        try:
            rec = json.loads(data)
            wanted.add(f"{rec['template']}-{rec['template_version']}")
        except (ValueError, KeyError, TypeError):
            log.warning("%s has no template version: upgrades of it cannot keep hand edits", path)
    out: dict[str, bytes | None] = {p: None for p in stored if p.split("/")[2] not in wanted}
    have = {p.split("/")[2] for p in stored}
    for name in sorted(wanted - have):
        template, version = name.rsplit("-", 1)
        runtime = template.removesuffix("-model")
        if template_version(runtime) != version:
            log.warning("templates %s are not stored and not the installed ones: cannot store them", name)
            continue
        for rel, data in template_files(runtime).items():
            out[f"{STORE}/{name}/{rel}"] = data
    return out


def apply(entries: Mapping[str, Entry], changes: Changes) -> dict[str, Entry | bytes | None]:
    after: dict[str, Entry | bytes | None] = dict(entries)
    for path, data in changes.items():
        if data is None:
            after.pop(path, None)
        else:
            after[path] = data
    return after


# --- model commands -------------------------------------------------------------------------


def model_changes(repo: GitopsRepo, manifest: Manifest) -> dict[str, bytes | None]:
    """Every change ``generate`` would make for ``manifest``: its folder, and the stored templates."""
    settings = repo.settings
    missing = [e.name for e in manifest.environments if e.name not in settings.environments]
    if missing:
        raise GitopsError(
            f"{manifest.path}: environment(s) {', '.join(missing)} are not environments of the GitOps repository "
            f"(allowed: {', '.join(settings.environments)}; see its {CONFIG_FILE})"
        )
    listed = [e.name for e in manifest.environments]
    order = [e for e in settings.environments if e in listed]
    if listed != order:
        raise GitopsError(
            f"{manifest.path}: spec.environments lists {', '.join(listed)}; list them in the repository's promotion "
            f"order ({', '.join(order)}; see its {CONFIG_FILE}): the first one builds, the later ones are promoted to"
        )
    files = project_files(manifest, gitops_repo_url=settings.repo_url, tools_image=settings.ci_image)
    prefix = f"{MODELS}/{manifest.name}/"
    # Only the first environment follows the target branch: the later ones' overlays and the
    # releases they run change by promotion (gitops.promotion), never by generate.
    owned = promoted(order)
    files = {p: d for p, d in files.items() if not p.startswith(owned)}
    kept = tuple(prefix + p for p in owned)
    entries = repo.entries()
    current = {p: e for p, e in entries.items() if not p.startswith(kept)}
    changes = changes_under(prefix, current, {prefix + p: d for p, d in files.items()})
    changes.update(store_changes(repo, apply(entries, changes)))
    return dict(sorted(changes.items()))


def publish_model(
    repo: GitopsRepo,
    manifest: Manifest,
    *,
    merge_request: bool = False,
    api: GitLabApi | None = None,
    notes: str = "",
) -> Published:
    """``generate --gitops``: the model's folder on branch ``modelgen/<name>-<version>``, pushed.

    ``notes`` (Markdown) goes at the end of the merge request's description, e.g. retraining metrics.
    """
    settings = repo.settings
    name, version = manifest.name, manifest.version
    branch = f"modelgen/{name}-{version}"
    before = deployed(repo, name, repo.head)
    for where, ref in ((settings.target_revision, repo.head), (branch, repo.branch_head(branch))):
        _refuse_other_artifact(manifest, deployed(repo, name, ref) if ref else None, where)
    changes = model_changes(repo, manifest)
    if not changes:
        return Published(f"{name} {version} is already on {settings.target_revision}: nothing to do")
    change = f"update {before.version} → {version}" if before else "new model"
    artifact = manifest.artifact
    notes = "\n\n".join(part for part in (engine_report(manifest), notes) if part)
    message = (
        f"{name} {version} ({change})\n\n"
        f"Model: {name}\nVersion: {version}\nArtifact: {artifact.uri}\nArtifact-SHA256: {artifact.sha256}\n"
        f"Owner: {manifest.owner}\nGenerated-By: modelgen {__version__}\n"
    )
    if notes:
        message = message.replace("\n\n", f"\n\n{notes}\n\n", 1)
    mr = None
    if merge_request:
        mr = MergeRequest(
            source=branch,
            target=settings.target_revision,
            title=f"{name} {version} ({change})",
            description=(
                f"Deploys model {name} {version} ({change}), owned by {manifest.owner}. "
                f"Artifact {artifact.uri} sha256 {artifact.sha256}. "
                f"Environments: {_environments_text(settings.environments, manifest)}. "
                f"Generated by modelgen {__version__}." + (f"\n\n{notes}" if notes else "")
            ),
            labels=("modelgen", f"model:{name}"),
        )
    return repo.publish(changes, branch=branch, message=message, merge_request=mr, api=api)


def promoted(order: Sequence[str]) -> tuple[str, ...]:
    """What promotion owns in a model's folder, whose environments are ``order``: the overlays of
    all but the first environment, and the releases they run. generate and upgrade leave it alone."""
    return ("deploy/releases/", *(f"deploy/overlays/{env}/" for env in order[1:]))


def _environments_text(order: tuple[str, ...], manifest: Manifest) -> str:
    names = [e for e in order if e in {env.name for env in manifest.environments}]
    if len(names) < 2:
        return ", ".join(names)
    return f"{names[0]} (later ones, {', '.join(names[1:])}, by `modelgen promote`)"


def remove_model(
    repo: GitopsRepo, name: str, *, merge_request: bool = False, api: GitLabApi | None = None
) -> Published:
    """A branch deleting ``models/<name>/``; once merged, Argo CD prunes the model's Applications."""
    settings = repo.settings
    prefix = f"{MODELS}/{name}/"
    entries = repo.entries()
    if not any(p.startswith(prefix) for p in entries):
        raise GitopsError(
            f"there is no model {name} on {settings.target_revision} (models: {', '.join(repo.models())})"
        )
    changes: dict[str, bytes | None] = {p: None for p in entries if p.startswith(prefix)}
    changes.update(store_changes(repo, apply(entries, changes)))
    branch = f"modelgen/remove-{name}"
    mr = None
    if merge_request:
        mr = MergeRequest(
            source=branch,
            target=settings.target_revision,
            title=f"Remove model {name}",
            description=f"Deletes models/{name}/: Argo CD then prunes its Applications and objects in every "
            "environment.",
            labels=("modelgen", f"model:{name}"),
        )
    message = f"Remove model {name}\n\nModel: {name}\nGenerated-By: modelgen {__version__}\n"
    return repo.publish(changes, branch=branch, message=message, merge_request=mr, api=api)


@dataclass(frozen=True)
class Listed:
    name: str
    version: str  # "" when a pending change removes the model
    owner: str
    runtime: str
    environments: tuple[str, ...]  # the overlays Argo CD makes an Application of, with a version pinned there
    sha256: str
    last_commit: str
    branch: str = ""  # the unmerged branch (its merge request's source) of a pending change; "" once merged

    @property
    def state(self) -> str:
        return f"pending:{self.branch}" if self.branch else "merged"


def list_models(repo: GitopsRepo) -> list[Listed]:
    """Every model on the target branch, then every change to one still waiting on a ``modelgen/``
    branch that is not merged (a new version, an upgrade, a removal), branch by branch."""
    repo.settings  # noqa: B018 - fails clearly on a repository init-gitops did not make
    last = repo.last_commits()
    out = [_listed(repo, name, repo.head, last.get(name, "")) for name in repo.models()]
    for branch, head in repo.pending_branches():
        commit = repo.git.text("log", "-1", "--format=%h %cs %s", head)
        for name in repo.changed_models(head):
            out.append(_listed(repo, name, head, commit, branch))
    return out


def _listed(repo: GitopsRepo, name: str, commit: str, last_commit: str, branch: str = "") -> Listed:
    try:
        m = deployed(repo, name, commit)
    except GitopsError as err:  # one broken model must not hide the others
        log.warning("%s", err)
        return Listed(name, "?", "?", "?", (), "?", last_commit, branch)
    if m is None:  # removed on this branch
        return Listed(name, "", "", "", (), "", last_commit, branch)
    overlays = f"{MODELS}/{name}/deploy/overlays/"
    entries = repo.entries(commit, overlays)
    environments = sorted({p[len(overlays) :].split("/")[0] for p in entries})
    # Argo CD's order is the manifest's: list the overlays in it, any other (a hand-made one) after.
    order = [e.name for e in m.environments]
    environments.sort(key=lambda e: (order.index(e) if e in order else len(order), e))
    releases = repo.read([p for p in entries if p.endswith(f"/{RELEASE_FILE}")], commit)
    shown = tuple(_running(env, m.version, releases.get(f"{overlays}{env}/{RELEASE_FILE}")) for env in environments)
    return Listed(m.name, m.version, m.owner, m.runtime, shown, m.artifact.sha256, last_commit, branch)


def _running(env: str, version: str, release: bytes | None) -> str:
    """``env``, with the version it runs when promotion pinned another one, and its canary: prod:1.0.0+1.0.1@10%."""
    if release is None:
        return env
    try:
        doc = json.loads(release)
        shown = env if doc["version"] == version else f"{env}:{doc['version']}"
        canary = doc.get("canary")
        return shown + (f"+{canary['version']}@{canary['weight']}%" if canary else "")
    except (ValueError, KeyError, TypeError):
        return f"{env}:?"


def diff_model(repo: GitopsRepo, manifest: Manifest) -> str:
    """What ``generate`` would change, as a unified diff against the target branch ('' when nothing)."""
    changes = model_changes(repo, manifest)
    old = repo.read([p for p in changes])
    chunks = []
    for path, new in changes.items():
        chunks.append(unified(path, old.get(path), new))
    return "".join(chunks)


def unified(path: str, old: bytes | None, new: bytes | None) -> str:
    try:
        a = old.decode("utf-8").splitlines(keepends=True) if old is not None else []
        b = new.decode("utf-8").splitlines(keepends=True) if new is not None else []
    except UnicodeDecodeError:
        return f"Binary files a/{path} and b/{path} differ\n"
    lines = list(
        difflib.unified_diff(
            a, b, fromfile=f"a/{path}" if old is not None else "/dev/null", tofile=f"b/{path}" if new else "/dev/null"
        )
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


# --- init-gitops -----------------------------------------------------------------------------


def init_gitops(
    url_or_path: str | Path,
    settings: GitopsSettings,
    *,
    merge_request: bool = False,
    api: GitLabApi | None = None,
    cache: Path | None = None,
    branch_given: bool = True,
) -> Published:
    """Scaffold the repository: argocd/, the pipeline, README and gitops.yaml.

    A local path that does not exist yet becomes a new bare repository. An empty repository
    gets the scaffold as its first commit on the target branch; one with history gets a branch.
    ``branch_given`` False: ``settings.target_revision`` is only the default, and an empty
    repository's own default branch (what its HEAD names) wins.
    """
    url = Transport.of(normalize(url_or_path)).url
    if not _URL.match(url) and Path(url).exists() and not Path(url).is_dir():
        raise GitopsError(f"{url} is a file: give a git repository, or a path for a new one")
    existing_local = not _URL.match(url) and Path(url).exists() and any(Path(url).iterdir())
    if not _URL.match(url) and not existing_local:
        Path(url).mkdir(parents=True, exist_ok=True)
        Git(Path(url)).run("init", "--bare", "--quiet", f"--initial-branch={settings.target_revision}")
        # Push options reach the hooks only if the receiving repository advertises them.
        Git(Path(url)).run("config", "receive.advertisePushOptions", "true")
    repo = GitopsRepo.open(url_or_path, cache=cache)
    if repo.empty:
        settings, which = _first_branch(repo, settings, branch_given, local=existing_local)
        files = scaffold(settings)
        commit = repo.git.commit(None, files, "Scaffold the GitOps repository\n\nGenerated-By: modelgen init-gitops\n")
        with locked(repo.git.path):
            push(repo.git, commit, settings.target_revision, expect="")
        return Published(
            f"initialized {url}: branch {settings.target_revision} ({which}) at {commit[:12]}",
            branch=settings.target_revision,
            commit=commit,
            changed=tuple(sorted(files)),
        )
    if not branch_given and repo.target:
        settings = replace(settings, target_revision=repo.target)  # the branch the repository already deploys
    files = scaffold(settings)
    repo.target = settings.target_revision
    repo.head = repo.git.resolve(f"refs/remotes/origin/{repo.target}")
    changes = changes_under("", {p: e for p, e in repo.entries().items() if p in files}, files)
    if not changes:
        return Published(f"{url} is already initialized with these settings: nothing to do")
    mr = None
    if merge_request:
        mr = MergeRequest(
            source="modelgen/init-gitops",
            target=settings.target_revision,
            title="Scaffold the GitOps repository",
            description="Argo CD AppProject and ApplicationSet, the repository's pipeline, README and gitops.yaml.",
        )
    return repo.publish(
        changes,
        branch="modelgen/init-gitops",
        message="Scaffold the GitOps repository\n\nGenerated-By: modelgen init-gitops\n",
        merge_request=mr,
        api=api,
    )


def _first_branch(
    repo: GitopsRepo, settings: GitopsSettings, given: bool, *, local: bool
) -> tuple[GitopsSettings, str]:
    """The branch an empty repository's first commit goes to, and why that one.

    The branch the repository's HEAD names is the one clones check out and the one later
    commands read ``gitops.yaml`` from, so it wins unless a branch is given; a given branch
    becomes a local repository's HEAD, and a remote is told to make it its default.
    """
    head = remote_head(repo)
    wanted = settings.target_revision
    if head is None or head == wanted:
        return settings, "the repository's default branch" if head else "the remote does not name a default branch"
    if not given:
        return replace(settings, target_revision=head), "the repository's default branch"
    if local:
        Git(Path(repo.url)).run("symbolic-ref", "HEAD", f"refs/heads/{wanted}")
        return settings, f"now the repository's default branch, instead of {head}"
    log.warning(
        "%s's default branch is %s, not %s: make %s its default branch (GitLab: Settings > Repository) "
        "so that clones check it out",
        repo.url,
        head,
        wanted,
        wanted,
    )
    return settings, f"as given; the remote's default branch is {head}"


# A name no remote's HEAD has: a throwaway clone whose HEAD is still this was told nothing.
_UNTOLD = "modelgen-no-remote-head"


def remote_head(repo: GitopsRepo) -> str | None:
    """The branch an empty remote's HEAD names (git clone learns it; fetch does not), or None if it does not say."""
    with tempfile.TemporaryDirectory(prefix="modelgen-head-") as tmp:
        probe = Git(Path(tmp), repo.git.env)
        try:
            probe.run("-c", f"init.defaultBranch={_UNTOLD}", "clone", "--bare", "--quiet", repo.url, "probe.git")
            ref = Git(Path(tmp) / "probe.git").text("symbolic-ref", "HEAD")
        except GitError as err:
            log.warning("cannot tell the default branch of %s: %s", repo.url, err)
            return None
    branch = ref.removeprefix("refs/heads/")
    return None if branch == _UNTOLD else branch


# --- helpers ----------------------------------------------------------------------------------


def deployed(repo: GitopsRepo, name: str, commit: str | None) -> Manifest | None:
    """The manifest ``models/<name>/model.yaml`` holds at ``commit`` (read without its files), or None."""
    if commit is None:
        return None
    path = f"{MODELS}/{name}/model.yaml"
    data = repo.read([path], commit).get(path)
    if data is None:
        return None
    where = f"{path} on {commit[:12]}"
    try:
        return load_text(data.decode("utf-8"), where)
    except UnicodeDecodeError as err:
        raise GitopsError(f"{where} is not a readable manifest: {err}") from err
    except ManifestError as err:
        raise GitopsError(f"{where} is not a valid manifest:\n{err}") from err


def _is_repository(path: Path) -> bool:
    """A bare repository or a checkout (git would refuse to fetch from anything else)."""
    return (path / "HEAD").is_file() or (path / ".git").exists()


def _refuse_other_artifact(manifest: Manifest, deployed: Manifest | None, where: str) -> None:
    if deployed and deployed.version == manifest.version and deployed.artifact.sha256 != manifest.artifact.sha256:
        raise DeployedVersionConflict(
            f"{manifest.name} {manifest.version} on {where} has artifact sha256 {deployed.artifact.sha256}, "
            f"this manifest {manifest.artifact.sha256}: a version's artifact never changes; "
            "give the new artifact a new version"
        )
