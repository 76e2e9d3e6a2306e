"""The model cache on a shared volume: the generated init containers (``python -m app.fetch_artifact``
and ``Rscript app/fetch_artifact.R`` with MODEL_CACHE_DIR) against nginx as the registry, several at
once, as pods starting together."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nginx_registry import PASSWORD, USER

from modelgen.api import generate

pytestmark = pytest.mark.slow  # nginx, processes


@pytest.fixture
def published(nginx) -> tuple[str, str, bytes]:
    """A 3 MB artifact on the nginx registry: (uri, sha256, bytes)."""
    data = os.urandom(3 << 20)
    name = f"cached-{time.monotonic_ns()}"
    path = nginx.path(name, "1.0.0", "model.joblib")
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return f"{nginx.base_url}/{name}/1.0.0/model.joblib", hashlib.sha256(data).hexdigest(), data


R_MANIFEST = """\
apiVersion: modelgen/v1
kind: Model
metadata: {name: cached-r, version: 1.0.0, owner: jane.doe@example.com}
spec:
  runtime: r
  task: regression
  artifact: {uri: "https://nexus.example.com/repository/models/cached-r/1.0.0/model.rds", sha256: "%s", format: rds}
  requirements: []
  input: [{name: x, type: number}]
  output: {type: value}
  sample: sample.json
  serving: {modelCache: {claim: model-cache}}
"""


@pytest.fixture(scope="module", params=["python", "r"])
def project(request, tmp_path_factory, penguins_project) -> Path:
    """A generated project of each runtime: its init container is what runs here."""
    if request.param == "python":
        return penguins_project
    folder = tmp_path_factory.mktemp("cached-r")
    (folder / "model.yaml").write_text(R_MANIFEST % ("ab" * 32), "utf-8")
    (folder / "sample.json").write_text(json.dumps([{"x": 1.5}]), "utf-8")
    return generate(folder / "model.yaml", folder / "out").path


def fetchers(project: Path, uri: str, sha256: str, cache: Path, targets: list[Path], **extra: str):
    env = {
        "PATH": "/usr/bin:/bin",
        "ARTIFACT_URI": uri,
        "ARTIFACT_SHA256": sha256,
        "REGISTRY_USERNAME": USER,
        "REGISTRY_PASSWORD": PASSWORD,
        "MODEL_CACHE_DIR": str(cache),
        **extra,
    }
    r = (project / "app" / "fetch_artifact.R").is_file()
    command = ["Rscript", "app/fetch_artifact.R"] if r else [sys.executable, "-m", "app.fetch_artifact"]
    return [
        subprocess.Popen(
            command,
            cwd=project,
            env={**env, "MODEL_PATH": str(target)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for target in targets
    ]


def gets(nginx, uri: str) -> int:
    path = uri.split(f":{nginx.port}", 1)[1]
    return sum(f"GET {path} " in line for line in nginx.logged())


def test_pods_starting_together_download_once_and_all_load_verified_bytes(nginx, published, project, tmp_path):
    uri, sha256, data = published
    cache = tmp_path / "cache"
    targets = [tmp_path / f"pod{i}" / "model.joblib" for i in range(4)]
    processes = fetchers(project, uri, sha256, cache, targets)
    said = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, said
    assert gets(nginx, uri) == 1, said  # one download, whoever got the lock first
    assert sum("downloaded into the cache" in s for s in said) == 1 and sum("cache hit" in s for s in said) == 3, said
    assert all(t.read_bytes() == data for t in targets)
    assert sorted(p.name for p in cache.iterdir()) == [sha256, f"{sha256}.lock"]  # no temporary file left


def test_a_truncated_cache_file_is_replaced_and_said(nginx, published, project, tmp_path):
    uri, sha256, data = published
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / sha256).write_bytes(data[: len(data) // 2])  # a download cut short by a node failure
    (process,) = fetchers(project, uri, sha256, cache, [tmp_path / "pod" / "model.joblib"])
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "replaced a corrupt cache file" in out
    assert (cache / sha256).read_bytes() == data and (tmp_path / "pod" / "model.joblib").read_bytes() == data
    assert gets(nginx, uri) == 1


def test_a_wrong_sha256_never_reaches_the_model_path(nginx, published, project, tmp_path):
    uri, _, _ = published
    cache, target = tmp_path / "cache", tmp_path / "pod" / "model.joblib"
    (process,) = fetchers(project, uri, "0" * 64, cache, [target])
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "sha256 mismatch" in err
    assert not target.exists() and not list(target.parent.glob("*"))  # not even a partial file
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # nothing cached either


def test_files_unused_for_the_max_age_are_pruned_at_start(nginx, published, project, tmp_path):
    uri, sha256, _ = published
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / ("ab" * 32)
    old.write_bytes(b"an artifact of a version nothing runs any more")
    long_ago = time.time() - 40 * 86400
    os.utime(old, (long_ago, long_ago))
    (process,) = fetchers(
        project, uri, sha256, cache, [tmp_path / "pod" / "model.joblib"], MODEL_CACHE_MAX_AGE_DAYS="30"
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"pruned {old}" in out and not old.exists() and (cache / sha256).is_file()
