"""No credential in Git: a secret planted in every URL modelgen takes is found nowhere it writes or prints.

The GitOps remote may carry credentials (git uses them to push and fetch, through a credential
helper reading them from its environment); every URL that is written — the repository URL Argo CD
and builds clone, registry URLs (they become artifact URIs), the manifest's URIs — is refused
with a message saying where credentials go, and without the secret in it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

import pytest
from git_http import git_http
from gitops_support import Remote, cli, git, variant
from support import Service

from modelgen.credentials import Transport, has_credentials, redacted
from modelgen.errors import GitopsError, ManifestError, ModelgenError, RegistryError
from modelgen.gitops.scaffold import GitopsSettings
from modelgen.manifest import load_text
from modelgen.manifest.docs import EXAMPLE
from modelgen.registry.backends import registry_for

pytestmark = pytest.mark.usefixtures("gitops_cache")
USER = "oauth2"


@pytest.fixture
def secret() -> str:
    return f"planted{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("url", "carries"),
    [
        ("https://oauth2:tok@gitlab.example.com/ml/gitops.git", True),
        ("https://tok@github.com/ml/gitops.git", True),  # a token as the user name
        ("http://user:pw@127.0.0.1:8080/g.git", True),
        ("file://user@localhost/srv/registry", True),
        ("ssh://git@gitlab.example.com/ml/gitops.git", False),
        ("ssh://git:pw@gitlab.example.com/ml/gitops.git", True),
        ("git@gitlab.example.com:ml/gitops.git", False),
        ("https://gitlab.example.com/ml/gitops.git", False),
        ("https://gitlab.example.com/ml/a@b.git", False),  # an @ in the path is no userinfo
        ("/srv/gitops.git", False),
    ],
)
def test_which_urls_carry_credentials(url, carries):
    assert has_credentials(url) is carries
    if carries:
        assert "***@" in redacted(url) and "tok" not in redacted(url) and "pw" not in redacted(url)
    else:
        assert redacted(url) == url


def test_the_transport_splits_credentials_off_and_refuses_an_ssh_password():
    t = Transport.of("https://oauth2:a%3Ab@gitlab.example.com/ml/gitops.git")
    assert (t.url, t.username, t.password) == ("https://gitlab.example.com/ml/gitops.git", "oauth2", "a:b")
    assert "a:b" not in repr(t)
    env = t.env()
    assert "a:b" not in "".join(v for k, v in env.items() if k.startswith("GIT_CONFIG"))
    with pytest.raises(GitopsError, match="SSH key") as err:
        Transport.of("ssh://git:hunter2@gitlab.example.com/ml/gitops.git")
    assert "hunter2" not in str(err.value)


def test_git_gets_the_credentials_as_they_are_through_its_helper_alone(tmp_path):
    # A helper the user configured would be asked first, and asked to store what worked: it is reset.
    (tmp_path / ".gitconfig").write_text(
        '[credential]\n\thelper = "!f() { echo username=wrong; echo password=wrong; }; f"\n'
    )
    password = "a\\b \"c\" $HOME 'e' %41 `id`"
    t = Transport.of(f"https://oauth2:{quote(password, safe='')}@gitlab.example.com/ml/gitops.git")
    assert t.password == password
    done = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=gitlab.example.com\n\n",
        env={
            **os.environ,
            **t.env(),
            "GIT_TERMINAL_PROMPT": "0",
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f"username=oauth2\npassword={password}\n" in done.stdout


@pytest.mark.parametrize("setting", ["repo_url", "registry_url", "gitlab_url", "cluster"])
def test_settings_that_are_written_refuse_credentials(setting, secret):
    values = {"repo_url": "https://gitlab.example.com/ml/gitops.git", setting: f"https://{USER}:{secret}@h.example/x"}
    with pytest.raises(ModelgenError, match=f"gitops setting {setting} https://\\*\\*\\*@h.example/x carries") as err:
        GitopsSettings(**values)
    assert secret not in str(err.value) and "Secret" in str(err.value)


def test_a_registry_url_with_credentials_is_refused_saying_where_they_go(secret):
    with pytest.raises(RegistryError) as err:
        registry_for(f"https://deployer:{secret}@nexus.example.com/repository/models")
    message = str(err.value)
    assert secret not in message
    assert "MODELGEN_REGISTRY_USERNAME" in message and "~/.netrc" in message and "spec.artifact.secret" in message


def test_deploy_refuses_a_registry_url_with_credentials_before_anything_is_uploaded(secret, tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from modelgen.notebook.deploy import deploy

    rows = pd.DataFrame({"bill_length_mm": [39.1, 46.5, 50.0, 38.6], "flipper_length_mm": [181, 192, 196, 190]})
    model = LogisticRegression().fit(rows, ["Adelie", "Chinstrap", "Chinstrap", "Adelie"])
    with pytest.raises(RegistryError) as err:
        deploy(model, "penguin-species", rows, registry=f"http://u:{secret}@127.0.0.1:9/models", gitops=False)
    assert secret not in str(err.value)


def test_webhook_refuses_a_registry_url_with_credentials(secret, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELGEN_WEBHOOK_SECRET", "s")
    url = f"https://u:{secret}@nexus.example.com/repository/models"
    code, out, err = cli(capsys, "webhook", "serve", "--registry", url, "--gitops", tmp_path, "--port", "0")
    assert code == 2 and "MODELGEN_REGISTRY_PASSWORD" in err
    assert secret not in out + err


def test_a_gitlab_url_with_credentials_is_refused_pointing_at_the_token_variable(secret, monkeypatch):
    from modelgen.errors import MergeRequestError
    from modelgen.gitops.merge_request import GitLabApi

    monkeypatch.setenv("GITLAB_TOKEN", "t")
    with pytest.raises(MergeRequestError, match="GITLAB_TOKEN") as err:
        GitLabApi.from_environment(f"https://root:{secret}@gitlab.example.com", "https://gitlab.example.com/ml/g.git")
    assert secret not in str(err.value)


URI_FIELDS = {
    "spec.artifact.uri": ("uri: https://nexus.example.com/", "uri: https://u:{s}@nexus.example.com/"),
    "spec.monitoring.reference": (None, "reference: https://u:{s}@nexus.example.com/ref.csv"),
    "spec.training.registry": (None, "registry: https://u:{s}@nexus.example.com/repository/models"),
    "spec.training.data": (None, "data: postgresql://etl:{s}@db.example.com/penguins"),
    "metadata.provenance.data": (None, "data: s3://AKIA:{s}@bucket.example.com/penguins.csv"),
}


def _with_uris(secret: str) -> str:
    """The reference example with a secret in every URI field of the manifest."""
    text = EXAMPLE.replace(*[part.format(s=secret) for part in URI_FIELDS["spec.artifact.uri"]])
    text = text.replace(
        "  labels: {team: data-science}\n",
        "  labels: {team: data-science}\n  provenance:\n    " + URI_FIELDS["metadata.provenance.data"][1] + "\n",
    )
    text += (
        "  monitoring:\n    " + URI_FIELDS["spec.monitoring.reference"][1] + "\n"
        "  training:\n    script: train.py\n    "
        + URI_FIELDS["spec.training.data"][1]
        + "\n    "
        + URI_FIELDS["spec.training.registry"][1]
        + "\n"
    )
    return text.replace("{s}", secret)


def test_the_manifest_refuses_credentials_in_every_uri_field(secret):
    with pytest.raises(ManifestError) as err:
        load_text(_with_uris(secret), "model.yaml")
    assert sorted(p.path for p in err.value.problems) == sorted(URI_FIELDS)
    for problem in err.value.problems:
        assert "carries credentials" in problem.message and "MODELGEN_REGISTRY_USERNAME" in problem.message
    assert secret not in str(err.value)
    assert load_text(EXAMPLE, "model.yaml").artifact.uri.startswith("https://nexus")


def test_validate_names_the_field_and_never_prints_the_secret(secret, penguins_manifest, capsys, tmp_path):
    manifest = variant(
        penguins_manifest, tmp_path / "m", {"uri: file://": f"uri: http://u:{secret}@registry.example.com/x?file://"}
    )
    code, out, err = cli(capsys, "validate", manifest)
    assert code == 1 and "spec.artifact.uri" in err and "carries credentials" in err
    assert secret not in out + err


def _everything_written(remote: Path, cache: Path) -> str:
    """Every file of every commit, every commit message, the push log and the cache's own files."""
    parts = [
        git("log", "-p", "--all", "--format=%H%n%B", cwd=remote),
        git("for-each-ref", cwd=remote),
        (remote / "push-log.jsonl").read_text(),
        (remote / "config").read_text(),
    ]
    for path in cache.rglob("*"):
        if path.is_file() and "objects" not in path.parts:
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    for clone in (cache / "gitops").glob("*.git"):
        parts.append(subprocess.run(["git", "-C", clone, "log", "-p", "--all"], capture_output=True, text=True).stdout)
    return "\n".join(parts)


@pytest.mark.slow  # an HTTP git server, several generate runs and the generated service
def test_a_planted_secret_is_nowhere_in_the_repository_its_pushes_outputs_or_metadata(
    secret, penguins_manifest, capsys, caplog, tmp_path, gitops_cache
):
    caplog.set_level(logging.DEBUG)  # every log line too, git's command lines included
    served = tmp_path / "srv"
    remote = Remote.create(served / "gitops.git")
    outputs: list[str] = []

    def run(*args) -> tuple[int, str, str]:
        code, out, err = cli(capsys, *args)
        outputs.extend([out, err])
        return code, out, err

    with git_http(served, USER, secret) as server:
        url = server.url("gitops.git", f"{USER}:{secret}")
        clean = server.url("gitops.git")
        # Written URLs with the secret are refused, and nothing is pushed.
        code, _, err = run("init-gitops", url, "--repo-url", f"https://{USER}:{secret}@gitlab.example.com/g.git")
        assert code == 2 and "repository Secret" in err and remote.pushes() == []
        # The remote's own credentials push the scaffold; gitops.yaml gets the URL without them.
        code, out, err = run("init-gitops", url)
        assert code == 0, err
        assert f"initialized {clean}" in out
        assert f'repo_url: "{clean}"' in remote.show("main", "gitops.yaml")
        assert "right" in server.attempts and "wrong" not in server.attempts
        for field, (old, new) in {
            "spec.artifact.uri": ("uri: file://", f"uri: http://u:{secret}@registry.example.com/x?file://"),
            "spec.monitoring.reference": ("reference: reference.csv", f"reference: https://u:{secret}@h/r.csv"),
            "spec.training.registry": ("  training:\n", f"  training:\n    registry: https://u:{secret}@h/models\n"),
        }.items():
            bad = variant(penguins_manifest, tmp_path / field, {old: new})
            code, _, err = run("generate", bad, "--gitops", url, "--merge-request")
            assert code == 1 and field in err, err
        code, out, err = run("generate", penguins_manifest, "--gitops", url, "--merge-request")
        assert code == 0 and "pushed modelgen/penguin-species-1.0.0" in out, err
        assert any("merge_request.create" in p["options"] for p in remote.pushes())
        for args in (("list",), ("diff", penguins_manifest), ("remove", "nope")):
            run(*args[:1], *args[1:], "--gitops", url)
        code, out, err = run("list", "--gitops", url)
        assert code == 0 and "pending:modelgen/penguin-species-1.0.0" in out and " merged " not in out  # not merged yet
        # Without the credentials git is told where to put them.
        code, _, err = run("list", "--gitops", clean)
        assert code == 2 and "credential helper" in err

    written = _everything_written(remote.path, gitops_cache)
    assert "penguin-species" in written and clean in written
    assert secret not in written
    assert not [o for o in outputs if secret in o]
    assert "$ git" in caplog.text and secret not in caplog.text

    # The service generated on that branch: its public /metadata has nothing of the secret either.
    project = tmp_path / "project"
    project.mkdir()
    archive = subprocess.run(
        ["git", "-C", remote.path, "archive", "modelgen/penguin-species-1.0.0", "models/penguin-species/"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "--strip-components=2", "-C", project], input=archive, check=True)
    uri = next(line.split()[-1] for line in (project / "model.yaml").read_text().splitlines() if "uri:" in line)
    service = Service(project, Path(sys.executable), Path(url2pathname(urlsplit(uri).path))).start()
    try:
        metadata = service.request("GET", "/metadata")
        assert metadata.status == 200 and b"penguin-species" in metadata.body
        assert secret.encode() not in metadata.body
    finally:
        service.stop()
