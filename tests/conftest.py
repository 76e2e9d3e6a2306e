"""Session fixtures: the examples are trained for real once, and their projects generated once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nginx_registry import NginxRegistry, nginx_binary
from support import project_venv, train

from modelgen.api import generate


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Path:
    """The local folder registry (file://) the examples upload to."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def penguins_manifest(tmp_path_factory, registry) -> Path:
    return train("penguins", tmp_path_factory.mktemp("penguins"), registry)


@pytest.fixture(scope="session")
def anomaly_manifest(tmp_path_factory, registry) -> Path:
    return train("penguins-anomaly", tmp_path_factory.mktemp("penguins-anomaly"), registry)


@pytest.fixture(scope="session")
def penguins_project(penguins_manifest, tmp_path_factory) -> Path:
    return generate(penguins_manifest, tmp_path_factory.mktemp("generated")).path


@pytest.fixture(scope="session")
def anomaly_project(anomaly_manifest, tmp_path_factory) -> Path:
    return generate(anomaly_manifest, tmp_path_factory.mktemp("generated")).path


@pytest.fixture(scope="session")
def penguins_python(penguins_project, tmp_path_factory) -> Path:
    """A venv with exactly the penguins project's requirements.txt (and pytest), as its CI job has."""
    return project_venv(penguins_project, tmp_path_factory.mktemp("venv") / "penguins")


@pytest.fixture(scope="session")
def nginx(tmp_path_factory) -> NginxRegistry:
    """nginx from Debian as the HTTP model registry (Nexus' raw repository API)."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: run `make system-deps`")
        pytest.skip("nginx is not installed")
    server = NginxRegistry.start(tmp_path_factory.mktemp("nginx"), binary)
    yield server
    server.stop()


@pytest.fixture
def gitops_cache(tmp_path, monkeypatch) -> Path:
    """A private clone cache for modelgen, and no GitLab, GitOps or template settings from the environment."""
    monkeypatch.setenv("MODELGEN_CACHE", str(tmp_path / "cache"))
    for name in ("GITLAB_URL", "GITLAB_TOKEN", "MODELGEN_GITOPS", "MODELGEN_REGISTRY", "MODELGEN_TEMPLATES"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"
