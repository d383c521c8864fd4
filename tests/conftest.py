"""Shared fixtures: an App on each storage engine."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import streamkit as sk
from tests import postgres_env

# One profile for the whole suite, loaded at start-up (importing hypothesis late, from
# its terminal-summary hook, trips a CPython 3.11.7 parser bug after the Kafka tests).
settings.register_profile("streamkit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamkit")

# The same bug hits any module compiled late ("AST constructor recursion depth
# mismatch" importing streamkit.runtime._metrics lazily after the Kafka tests): compile
# every streamkit module now, while the interpreter is fresh.
for _module in pkgutil.walk_packages(sk.__path__, "streamkit."):
    if _module.name != "streamkit.__main__":
        importlib.import_module(_module.name)


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite-file"),
        postgres_env.postgres_param(),
    ]
)
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty store on each storage engine: the engine conformance parameter."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
    else:
        server = postgres_env.postgres_url()
        assert server is not None
        url = await postgres_env.fresh_database(server)
        try:
            yield url
        finally:
            await postgres_env.drop_database(url)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite-file"), postgres_env.postgres_param()])
async def shared_storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh store that two Apps (or processes) can share: every engine but memory://."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.db"
        return
    server = postgres_env.postgres_url()
    assert server is not None
    url = await postgres_env.fresh_database(server)
    try:
        yield url
    finally:
        await postgres_env.drop_database(url)


@pytest.fixture
async def app(storage_url: str, tmp_path: Path) -> AsyncIterator[sk.App]:
    """An App on each storage engine (see ``storage_url``), with an embedded log."""
    application = sk.App(storage=storage_url, log=f"local://{tmp_path}/log")
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
