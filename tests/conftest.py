"""Shared fixtures: an App on each storage engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import streamkit as sk


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
