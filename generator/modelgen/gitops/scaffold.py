"""Settings in, files out: the Argo CD part of the GitOps repository, rendered from ``gitops/``.

The model projects under ``models/`` come from ``render``; this module renders the files that
deploy them (``argocd/``) and the repository's README. Like ``render`` it never writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from cookiecutter.environment import StrictEnvironment
from jinja2 import TemplateError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from modelgen.credentials import has_credentials, redacted
from modelgen.errors import ModelgenError, RenderError
from modelgen.render.templates import DEFAULT_TOOLS_IMAGE

Files = dict[str, bytes]
CONFIG_FILE = "gitops.yaml"
# A namespace is a DNS-1123 label; the prefix plus an environment name must stay one.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class GitopsSettings:
    """Where the GitOps repository lives and where Argo CD deploys its models.

    >>> s = GitopsSettings("https://gitlab.example.com/platform/models.git", environments=("dev",))
    >>> s.namespaces
    ('models-dev',)
    """

    repo_url: str
    target_revision: str = "main"
    argocd_namespace: str = "openshift-gitops"
    project: str = "models"
    environments: tuple[str, ...] = ("dev", "prod")
    cluster: str = "https://kubernetes.default.svc"
    # Must agree with the namespace the overlays set (cookiecutters/common/overlay/kustomization.yaml).
    namespace_prefix: str = "models-"
    # The image the repository's validate job runs in (built from modelgen's ci/image/Dockerfile).
    ci_image: str = DEFAULT_TOOLS_IMAGE
    # The Kubernetes API the validate job checks rendered objects against (OpenShift 4.17).
    kubernetes_version: str = "1.30.0"
    # The raw repository the Nexus webhook (webhook/) listens to.
    registry_url: str = "https://nexus.example.com/repository/models"
    webhook_namespace: str = "modelgen"
    # Where the webhook opens merge requests through the API; empty: with push options.
    gitlab_url: str = ""

    def __post_init__(self) -> None:
        # A list from YAML or a CLI option becomes a tuple, so settings stay hashable and frozen.
        object.__setattr__(self, "environments", tuple(self.environments))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in OPTIONAL and value == "":
                continue
            items = value if f.name == "environments" else (value,)
            if not items or not all(isinstance(v, str) and v for v in items):
                raise ModelgenError(f"gitops setting {f.name} must be a non-empty {_kind(f.name)}, not {value!r}")
        for name in URL_SETTINGS:
            value = getattr(self, name)
            if has_credentials(value):
                raise ModelgenError(
                    f"gitops setting {name} {redacted(value)} carries credentials, and it is written into the "
                    f"repository (gitops.yaml, argocd/, README, webhook/, every model's BuildConfig): "
                    f"leave user:password@ out; {URL_SETTINGS[name]}"
                )
        if len(set(self.environments)) != len(self.environments):
            raise ModelgenError(f"gitops setting environments lists an environment twice: {list(self.environments)}")
        for namespace in self.namespaces:
            if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
                raise ModelgenError(
                    f"gitops settings namespace_prefix + environment give {namespace!r}, not a valid namespace "
                    "(lower-case letters, digits and '-', at most 63 characters)"
                )
        for name in ("project", "argocd_namespace", "webhook_namespace"):
            if not _DNS_LABEL.fullmatch(getattr(self, name)):
                raise ModelgenError(f"gitops setting {name} must be a DNS-1123 label, not {getattr(self, name)!r}")

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.namespace_prefix + env for env in self.environments)


OPTIONAL = ("gitlab_url",)
# The settings that are URLs, and where the credentials for each go instead.
URL_SETTINGS = {
    "repo_url": "Argo CD reads the repository with a repository Secret, builds with a source Secret "
    "(oc create secret generic ... --type=kubernetes.io/basic-auth), and modelgen pushes with git's credential "
    "helper, ~/.netrc, or credentials in the URL given to the command, which are never written",
    "registry_url": "the webhook reads MODELGEN_REGISTRY_USERNAME/MODELGEN_REGISTRY_PASSWORD from a Secret",
    "gitlab_url": "the token goes in GITLAB_TOKEN (a Secret for the webhook)",
    "cluster": "Argo CD keeps cluster credentials in its cluster Secret",
}


def _kind(name: str) -> str:
    return "list of strings" if name == "environments" else "string"


ALLOWED_KEYS = tuple(f.name for f in fields(GitopsSettings))


def load_settings(path: str | Path | None = None, **options: Any) -> GitopsSettings:
    """Settings from a ``gitops.yaml`` (optional) with ``options`` (e.g. CLI flags) taking precedence.

    Options that are ``None`` are ignored, so a CLI can pass every flag as it is.

    >>> load_settings(None, repo_url="https://gitlab.example.com/platform/models.git").argocd_namespace
    'openshift-gitops'
    """
    values: dict[str, Any] = {}
    where = "options"
    if path is not None:
        where = str(path)
        values.update(read_config(Path(path)))
    unknown = sorted(set(options) - set(ALLOWED_KEYS))
    if unknown:
        raise ModelgenError(f"unknown gitops option(s) {', '.join(unknown)}; allowed: {', '.join(ALLOWED_KEYS)}")
    values.update({k: v for k, v in options.items() if v is not None})
    if not values.get("repo_url"):
        raise ModelgenError(f"no repo_url for the GitOps repository: set it in {CONFIG_FILE} or as an option")
    try:
        return GitopsSettings(**values)
    except ModelgenError as err:
        raise ModelgenError(f"{where}: {err}") from err


def read_config(path: Path) -> dict[str, Any]:
    """The settings a ``gitops.yaml`` holds (unknown keys are an error)."""
    try:
        data = YAML(typ="safe").load(path.read_text("utf-8"))
    except OSError as err:
        raise ModelgenError(f"cannot read {path}: {err.strerror or err}") from err
    except YAMLError as err:
        raise ModelgenError(f"{path} is not valid YAML: {_yaml_problem(err)}") from err
    return _checked(data, str(path))


def _checked(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelgenError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - set(ALLOWED_KEYS))
    if unknown:
        raise ModelgenError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(ALLOWED_KEYS)}")
    return dict(data)


def gitops_dir() -> Path:
    """Where the GitOps repository's templates are: the source checkout's ``gitops/``, else the wheel's copy."""
    return _source("gitops")


def ci_dir() -> Path:
    """Where the GitOps repository's pipeline template is: the checkout's ``ci/``, else the wheel's copy."""
    return _source("ci")


def _source(name: str) -> Path:
    checkout = Path(__file__).resolve().parents[3] / name
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("modelgen"))) / f"_{name}"


# ci/ also holds the CI image's Dockerfile, which the platform team builds once; only the
# pipeline goes into the repository.
CI_FILES = {"gitlab-ci.yml": ".gitlab-ci.yml"}


def scaffold(settings: GitopsSettings) -> Files:
    """Render every file of the GitOps repository except ``models/``; keys are POSIX paths from its root.

    >>> files = scaffold(GitopsSettings("https://gitlab.example.com/platform/models.git"))
    >>> sorted(files)  # doctest: +NORMALIZE_WHITESPACE
    ['.gitlab-ci.yml', 'README.md', 'argocd/applicationset.yaml', 'argocd/appproject.yaml', 'gitops.yaml',
     'webhook/deployment.yaml', 'webhook/kustomization.yaml', 'webhook/networkpolicy.yaml', 'webhook/route.yaml',
     'webhook/service.yaml']
    """
    source = gitops_dir()
    if not source.is_dir():
        raise RenderError(f"no GitOps templates at {source}")
    files: Files = {}
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(source).as_posix()] = _render(path, settings)
    for name, target in CI_FILES.items():
        files[target] = _render(ci_dir() / name, settings)
    files[CONFIG_FILE] = settings_text(settings).encode("utf-8")
    return dict(sorted(files.items()))


def _render(path: Path, settings: GitopsSettings) -> bytes:
    # Argo CD's own Go templates ({{.path.basename}}) are escaped with {% raw %} in the sources.
    jinja = StrictEnvironment(keep_trailing_newline=True)
    try:
        return jinja.from_string(path.read_text("utf-8")).render(settings=settings).encode("utf-8")
    except (OSError, TemplateError) as err:
        raise RenderError(f"rendering {path} failed: {type(err).__name__} {err}") from err


def settings_text(settings: GitopsSettings) -> str:
    """``gitops.yaml`` as the repository keeps it: later commands read their settings from it."""
    lines = [
        "# Settings of this GitOps repository, written by `modelgen init-gitops`; modelgen commands",
        "# that change the repository read them from here.",
    ]
    for f in fields(settings):
        value = getattr(settings, f.name)
        shown = "[" + ", ".join(json.dumps(v) for v in value) + "]" if isinstance(value, tuple) else json.dumps(value)
        lines.append(f"{f.name}: {shown}")
    return "\n".join(lines) + "\n"


def parse_settings(text: str, where: str) -> GitopsSettings:
    """Settings from the text of a repository's ``gitops.yaml``."""
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as err:
        raise ModelgenError(f"{where} is not valid YAML: {_yaml_problem(err)}") from err
    return load_settings(None, **_checked(data, where))


def _yaml_problem(err: YAMLError) -> str:
    """ruamel's several-line explanation as one line: where, and what."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return " ".join(str(err).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
