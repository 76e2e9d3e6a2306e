"""Bad paths and files given to the real `modelgen` console script: a one-line error naming the
path and a non-zero exit code, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

MODELGEN = Path(sys.executable).with_name("modelgen")
EXIT_INVALID, EXIT_FAILED = 1, 2


def modelgen(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MODELGEN, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess, *names: object, code: int = EXIT_FAILED) -> str:
    """The command failed with ``code`` and said so in one line naming every one of ``names``."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory, penguins_manifest) -> Path:
    """A folder with a file, an empty folder, the penguins' reference profile and drifted rows."""
    root = tmp_path_factory.mktemp("cli-errors")
    (root / "a-file").write_text("not a folder\n")
    (root / "a-folder").mkdir()
    reference = penguins_manifest.parent / "reference.csv"
    done = modelgen("profile", reference, "--manifest", penguins_manifest, "-o", root / "profile.json", cwd=root)
    assert done.returncode == 0, done.stderr
    drifted = pd.read_csv(reference).assign(island="Atlantis")
    drifted.to_csv(root / "drifted.csv", index=False)
    return root


def test_generate_into_a_file(work, penguins_manifest):
    line = assert_one_line_error(modelgen("generate", penguins_manifest, "-o", "a-file", cwd=work), "a-file")
    assert line == "error: cannot write the project: a-file: exists and is not a folder"
    line = assert_one_line_error(modelgen("generate", penguins_manifest, "-o", "a-file/out", cwd=work), "a-file/out")
    assert "is a file, not a folder" in line


def test_monitor_out_a_file(work):
    done = modelgen("monitor", "m", "--profile", "profile.json", "--live", "drifted.csv", "--out", "a-file", cwd=work)
    line = assert_one_line_error(done, "a-file")
    assert line == "error: cannot write the drift report: a-file: exists and is not a folder"


def test_docs_into_a_missing_folder(work):
    target = work / "missing" / "x"
    line = assert_one_line_error(modelgen("docs", "manifest", "-o", target, cwd=work), target)
    assert f"its folder {target.parent} does not exist" in line and not target.parent.exists()
    assert_one_line_error(modelgen("docs", "manifest", "-o", "a-folder", cwd=work), "a-folder", "Is a directory")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", 'a JSON object with "features" expected, not a list'),
        ('{"features": {"island": {"kind": "categorical"}}}', "features.island.frequencies: missing"),
        ('{"features": {"x": {"kind": "ordinal"}}}', "features.x.kind: 'ordinal'"),
        ("{not json", "cannot read the profile"),
    ],
)
def test_monitor_with_a_profile_that_is_not_one(work, tmp_path, content, problem):
    profile = tmp_path / "profile.json"
    profile.write_text(content)
    done = modelgen("monitor", "m", "--profile", profile, "--live", work / "drifted.csv", cwd=tmp_path)
    assert problem in assert_one_line_error(done, profile)
    assert not (tmp_path / "drift-report").exists()


def test_monitor_with_a_folder_or_a_missing_file_as_its_profile(work):
    for profile, reason in (("a-folder", "Is a directory"), ("nothing.json", "No such file or directory")):
        done = modelgen("monitor", "m", "--profile", profile, "--live", "drifted.csv", cwd=work)
        assert_one_line_error(done, profile, reason)


def test_monitor_live_rows_that_are_missing_or_share_no_feature(work, tmp_path):
    done = modelgen("monitor", "m", "--profile", work / "profile.json", "--live", "nothing.csv", cwd=tmp_path)
    assert_one_line_error(done, "nothing.csv", "no such file")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    done = modelgen("monitor", "m", "--profile", work / "profile.json", "--live", "other.csv", cwd=tmp_path)
    assert_one_line_error(done, "other.csv", "none of the profile's features", "island")
    (tmp_path / "empty.csv").write_text("")
    done = modelgen("monitor", "m", "--profile", work / "profile.json", "--live", "empty.csv", cwd=tmp_path)
    assert_one_line_error(done, "empty.csv", "cannot read rows")


def test_monitor_smtp_port_that_is_not_a_number(work, tmp_path):
    done = modelgen(
        "monitor", "m", "--profile", work / "profile.json", "--live", work / "drifted.csv",
        "--smtp", "localhost:abc", "--mail-to", "jane.doe@example.com", cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(done, "localhost:abc", "'abc' is not a number")


def test_profile_of_a_folder_or_into_a_folder(work, penguins_manifest):
    reference = penguins_manifest.parent / "reference.csv"
    done = modelgen("profile", "a-folder", "--manifest", penguins_manifest, cwd=work)
    assert_one_line_error(done, "a-folder", "is a folder")
    done = modelgen("profile", reference, "--manifest", penguins_manifest, "-o", "a-folder", cwd=work)
    assert_one_line_error(done, "cannot write the profile: a-folder", "Is a directory")
    done = modelgen("profile", reference, "--manifest", penguins_manifest, "-o", "missing/p.json", cwd=work)
    assert_one_line_error(done, "missing/p.json", "its folder missing does not exist")


def test_a_manifest_that_is_a_folder_or_missing(work):
    assert_one_line_error(modelgen("generate", "a-folder", cwd=work), "a-folder", code=EXIT_INVALID)
    assert_one_line_error(modelgen("generate", "no/model.yaml", cwd=work), "no/model.yaml", code=EXIT_INVALID)


def test_gitops_paths_that_are_not_repositories(work):
    for path in ("a-folder", "a-file"):
        done = modelgen("list", "--gitops", path, cwd=work)
        assert_one_line_error(done, work / path, "not a git repository")
    # A URL reaches git, whose several lines of explanation come back as one.
    done = modelgen("list", "--gitops", (work / "a-folder").as_uri(), cwd=work)
    assert_one_line_error(done, (work / "a-folder").as_uri(), "does not appear to be a git repository")
    assert_one_line_error(modelgen("init-gitops", "a-file", cwd=work), work / "a-file", "is a file")
    # A path inside a file reaches the CLI's last resort for OSError: still one line naming it.
    done = modelgen("init-gitops", "a-file/repo", cwd=work)
    assert_one_line_error(done, work / "a-file" / "repo", "is a file, not a folder")


def test_init_gitops_config_that_is_not_yaml(work, tmp_path):
    config = tmp_path / "gitops.yaml"
    config.write_text("repo_url: [unclosed\n")
    done = modelgen("init-gitops", tmp_path / "repo.git", "--config", config, cwd=tmp_path)
    assert_one_line_error(done, config, "is not valid YAML: line 2")
    done = modelgen("init-gitops", tmp_path / "repo.git", "--config", "a-folder", cwd=work)
    assert_one_line_error(done, "a-folder", "Is a directory")


def test_webhook_serve_registry_that_is_not_a_folder_and_a_port_in_use(work):
    secret = {"MODELGEN_WEBHOOK_SECRET": "s"}
    done = modelgen("webhook", "serve", "--registry", "a-file", "--gitops", "a-folder", cwd=work, env=secret)
    assert_one_line_error(done, "--registry a-file", "no such folder")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = modelgen(
            "webhook", "serve", "--registry", "a-folder", "--gitops", "a-folder",
            "--host", "127.0.0.1", "--port", port, cwd=work, env=secret,
        )  # fmt: skip
    assert_one_line_error(done, f"127.0.0.1:{port}", "Address already in use")


def test_the_profile_written_by_modelgen_profile_is_accepted(work, tmp_path):
    # The check refuses what is not a profile, not the real thing: monitor runs on it.
    assert json.loads((work / "profile.json").read_text())["features"]
    done = modelgen("monitor", "m", "--profile", work / "profile.json", "--live", work / "drifted.csv", cwd=tmp_path)
    assert done.returncode == 0 and "drift in island" in done.stdout, done.stderr
