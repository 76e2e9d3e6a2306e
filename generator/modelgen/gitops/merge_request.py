"""Merge requests on GitLab: asked for with push options, or opened through the API when a token is given.

Push options need nothing but git and work with any GitLab; the API (python-gitlab) can also
find a merge request that is already open and return its link. The token only ever comes
from the environment, never from a flag or a file in the repository.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modelgen.credentials import has_credentials, redacted
from modelgen.errors import MergeRequestError

TOKEN_VARIABLE = "GITLAB_TOKEN"
URL_VARIABLE = "GITLAB_URL"


@dataclass(frozen=True)
class MergeRequest:
    source: str
    target: str
    title: str
    description: str
    labels: tuple[str, ...] = ("modelgen",)
    draft: bool = False
    remove_source_branch: bool = True

    @property
    def full_title(self) -> str:
        return f"Draft: {self.title}" if self.draft else self.title

    def push_options(self) -> list[str]:
        """GitLab's ``merge_request.*`` push options (git refuses newlines in them: one line each)."""
        options = [
            "merge_request.create",
            f"merge_request.target={self.target}",
            f"merge_request.title={_one_line(self.full_title)}",
            f"merge_request.description={_one_line(self.description)}",
        ]
        if self.remove_source_branch:
            options.append("merge_request.remove_source_branch")
        options += [f"merge_request.label={label}" for label in self.labels]
        return options


@dataclass(frozen=True)
class GitLabApi:
    """Where to open merge requests through the API: the GitLab URL, the project path, the token."""

    url: str
    project: str
    token: str = field(repr=False)

    @classmethod
    def from_environment(cls, url: str | None, repo_url: str, project: str | None = None) -> GitLabApi | None:
        """The API settings when a GitLab URL is given (option or ``GITLAB_URL``), else None (push options)."""
        url = url or os.environ.get(URL_VARIABLE)
        if not url:
            return None
        if has_credentials(url):
            raise MergeRequestError(
                f"the GitLab URL {redacted(url)} carries credentials, and it is shown in messages: "
                f"leave user:password@ out and put the token in {TOKEN_VARIABLE}"
            )
        token = os.environ.get(TOKEN_VARIABLE)
        if not token:
            raise MergeRequestError(
                f"a GitLab URL ({url}) is given but {TOKEN_VARIABLE} is not set: export the token, "
                "or leave the URL out to open the merge request with push options"
            )
        return cls(url.rstrip("/"), project or project_path(repo_url), token)

    def open(self, mr: MergeRequest) -> str:
        """Open ``mr`` (or find the one already open for its branch); return its web URL."""
        import gitlab  # python-gitlab; only this path needs it

        try:
            gl = gitlab.Gitlab(self.url, private_token=self.token, timeout=30, retry_transient_errors=True)
            project = gl.projects.get(self.project, lazy=True)
            for existing in project.mergerequests.list(source_branch=mr.source, state="opened", get_all=False):
                return existing.web_url
            created = project.mergerequests.create(
                {
                    "source_branch": mr.source,
                    "target_branch": mr.target,
                    "title": mr.full_title,
                    "description": mr.description,
                    "labels": ",".join(mr.labels),
                    "remove_source_branch": mr.remove_source_branch,
                }
            )
            return created.web_url
        except gitlab.exceptions.GitlabError as err:
            raise MergeRequestError(
                f"GitLab at {self.url} did not open the merge request for {mr.source} in {self.project}: "
                f"{err.response_code or ''} {err.error_message}".strip()
            ) from err
        except OSError as err:
            raise MergeRequestError(f"cannot reach GitLab at {self.url}: {err}") from err


def project_path(repo_url: str) -> str:
    """``group/sub/project`` from a clone URL (https, ssh:// or scp-like ``git@host:group/project.git``).

    >>> project_path("git@gitlab.example.com:platform/models.git")
    'platform/models'
    """
    scp = re.match(r"^[\w.-]+@[\w.-]+:(?!//)(.+)$", repo_url)
    path = scp.group(1) if scp else urlsplit(repo_url).path
    path = path.strip("/").removesuffix(".git")
    if not path or "/" not in path:
        raise MergeRequestError(f"cannot tell the GitLab project from {repo_url!r}: pass --gitlab-project")
    return path


def _one_line(text: str) -> str:
    return " ".join(text.split())
