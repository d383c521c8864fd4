"""Shared fixtures: an App on each storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import streamkit as sk

# One profile for the whole suite, loaded at start-up (importing hypothesis late, from
# its terminal-summary hook, trips a CPython 3.11.7 parser bug after the Kafka tests).
settings.register_profile("streamkit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamkit")


@pytest.fixture(
    params=[pytest.param("memory", id="memory"), pytest.param("sqlite", id="sqlite-file")]
)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[sk.App]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/test.db"
    application = sk.App(storage=url, log=f"local://{tmp_path}/log")
    try:
        yield application
    finally:
        await application.close()


@pytest.fixture
async def file_app(tmp_path: Path) -> AsyncIterator[sk.App]:
    application = sk.App(storage=f"sqlite:///{tmp_path}/test.db", log=f"local://{tmp_path}/log")
    try:
        yield application
    finally:
        await application.close()
