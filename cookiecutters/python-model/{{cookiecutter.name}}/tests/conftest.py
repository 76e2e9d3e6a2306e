"""Smoke tests run against the real artifact (MODEL_PATH) and the sample rows from the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.model import load_engine
from app.service import create_app
from app.settings import from_env

SAMPLE = json.loads((Path(__file__).parent / "sample.json").read_text("utf-8"))


@pytest.fixture(scope="session")
def settings():
    return from_env()


@pytest.fixture(scope="session")
def model(settings) -> Any:
    return load_engine(settings)


@pytest.fixture(scope="session")
def client(model, settings):
    app = create_app(
        model,
        settings.contract,
        max_request_bytes=settings.max_request_bytes,
        sha256=settings.model_sha256,
        engine=settings.engine,
    )
    return app.test_client()


@pytest.fixture(scope="session")
def sample() -> list[dict[str, Any]]:
    return SAMPLE
