"""Credentials in URLs: found, shown without them, and split off for the one URL that may carry them.

Everything modelgen writes ends up in Git (the GitOps repository, its history, push options) or
behind a public endpoint (the service's ``/metadata``), so a URL with ``user:password@`` in it is
refused wherever it would be written. Only the GitOps remote given to a command may carry them:
git uses them for the transport (``Transport``), and they are stripped before anything is written
or printed.

>>> has_credentials("https://oauth2:s3cret@gitlab.example.com/ml/gitops.git")
True
>>> has_credentials("ssh://git@gitlab.example.com/ml/gitops.git")  # an ssh login name is no secret
False
>>> redacted("https://oauth2:s3cret@gitlab.example.com/ml/gitops.git")
'https://***@gitlab.example.com/ml/gitops.git'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from modelgen.errors import GitopsError

# scheme://[userinfo@]host...: the userinfo is everything before the authority's last "@".
_AUTHORITY = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.IGNORECASE | re.S)
# ssh takes the login name from the URL and the secret from a key: a user alone is no credential.
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
USERNAME_VARIABLE = "MODELGEN_GIT_USERNAME"
PASSWORD_VARIABLE = "MODELGEN_GIT_PASSWORD"  # noqa: S105 - a variable's name, not a password
WHERE_GIT_CREDENTIALS_GO = (
    "git's credential helper (git config credential.helper), ~/.netrc, an SSH key, "
    "or the URL given on the command line only, which modelgen uses to push and fetch and never writes"
)
WHERE_REGISTRY_CREDENTIALS_GO = (
    "set MODELGEN_REGISTRY_USERNAME and MODELGEN_REGISTRY_PASSWORD or add the host to ~/.netrc for modelgen, "
    "and for the pods a Kubernetes Secret (keys username, password) named in spec.artifact.secret"
)


def _split(url: str) -> tuple[str, str | None, str] | None:
    """``(scheme, userinfo, url without it)`` for a ``scheme://`` URL, or None for anything else."""
    match = _AUTHORITY.match(url)
    if match is None:
        return None
    scheme, authority, rest = match["scheme"], match["authority"], match["rest"]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return scheme, None, url
    return scheme, userinfo, f"{scheme}://{host}{rest}"


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a secret: any userinfo, except an ssh URL's login name alone."""
    split = _split(url)
    if split is None or split[1] is None:
        return False
    scheme, userinfo, _ = split
    return not (scheme.lower() in _SSH_SCHEMES and ":" not in userinfo)


def redacted(url: str) -> str:
    """``url`` with its userinfo replaced by ``***``: what a message may show."""
    split = _split(url)
    if split is None or split[1] is None or not has_credentials(url):
        return url
    scheme, _, bare = split
    return bare.replace(f"{scheme}://", f"{scheme}://***@", 1)


@dataclass(frozen=True)
class Transport:
    """A git remote as modelgen uses it: the URL without credentials, and the credentials beside it.

    ``url`` is what is written, printed and kept in the cache's git config; ``env()`` hands the
    credentials to git through a credential helper that reads them from git's own environment,
    so they are in no file and no command line.

    >>> t = Transport.of("https://oauth2:tok%40en@gitlab.example.com/ml/gitops.git")
    >>> t.url, t.username, t.password
    ('https://gitlab.example.com/ml/gitops.git', 'oauth2', 'tok@en')
    >>> Transport.of("git@gitlab.example.com:ml/gitops.git").url
    'git@gitlab.example.com:ml/gitops.git'
    """

    url: str
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def of(cls, url: str) -> Transport:
        if not has_credentials(url):
            return cls(url)
        scheme, userinfo, bare = _split(url)  # type: ignore[misc]
        user, _, password = userinfo.partition(":")  # type: ignore[union-attr]
        if scheme.lower() in _SSH_SCHEMES:
            raise GitopsError(f"{redacted(url)}: ssh takes no password from the URL: use an SSH key (ssh-agent)")
        return cls(bare, unquote(user), unquote(password))

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)

    def env(self) -> dict[str, str]:
        """Environment for git: only this helper answers (a configured one would be asked to store them)."""
        if not self.has_credentials:
            return {}
        count = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
        # printf, not echo: dash's echo would rewrite backslashes in a password.
        helper = (
            '!f() { test "$1" = get || exit 0; '
            f'printf \'username=%s\\npassword=%s\\n\' "${USERNAME_VARIABLE}" "${PASSWORD_VARIABLE}"; }}; f'
        )
        return {
            "GIT_CONFIG_COUNT": str(count + 2),
            f"GIT_CONFIG_KEY_{count}": "credential.helper",
            f"GIT_CONFIG_VALUE_{count}": "",  # empties the list of helpers configured so far
            f"GIT_CONFIG_KEY_{count + 1}": "credential.helper",
            f"GIT_CONFIG_VALUE_{count + 1}": helper,
            USERNAME_VARIABLE: self.username,
            PASSWORD_VARIABLE: self.password,
        }
