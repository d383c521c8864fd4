"""What the PostgreSQL tests share: the server URL, the backend param, a fresh database per test.

``STREAMKIT_TEST_POSTGRES`` is the server's URL (``make test`` starts one with
compose/postgres/pg-up.sh and sets it). Unset, PostgreSQL params are skipped and say why;
set but unreachable, the tests fail. Each test gets its own database::

    url = await fresh_database(postgres_url())
    try:
        ...
    finally:
        await drop_database(url)

To crash the server in a fault test, ``kill -9`` the pid on the first line of the data
dir's ``postmaster.pid`` (compose/postgres/.data/<port>/) and start it again on the same
data with compose/postgres/pg-restart.sh.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_ENV = "STREAMKIT_TEST_POSTGRES"
SCRIPTS = Path(__file__).resolve().parents[1] / "compose" / "postgres"
SKIP_REASON = (
    f"{POSTGRES_ENV} is not set, so there is no PostgreSQL server to test against: start one "
    f"with compose/postgres/pg-up.sh and set "
    f"{POSTGRES_ENV}=postgresql://streamkit:streamkit@127.0.0.1:5432/streamkit "
    "(`make test` does both)"
)
TEST_DATABASE = re.compile(r"sk_test_[0-9a-f]{12}")
"""The names fresh_database() gives; drop_database() drops nothing else."""

needs_postgres = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=SKIP_REASON)
"""Mark a PostgreSQL-only test: skipped (saying why) without a server, failing if it is down."""


def postgres_url() -> str | None:
    """The test server's URL, or None when ``STREAMKIT_TEST_POSTGRES`` is not set."""
    return os.environ.get(POSTGRES_ENV) or None


def postgres_param() -> Any:
    """The ``"postgres"`` param of a backend fixture, skipped (with the reason) without a server."""
    marks = [] if postgres_url() else [pytest.mark.skip(reason=SKIP_REASON)]
    return pytest.param("postgres", id="postgres", marks=marks)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def _connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn=url, timeout=30)


async def fresh_database(url: str) -> str:
    """Create a new, uniquely named database (``sk_test_<12 hex>``) on the server of
    ``url`` (a role allowed to CREATE DATABASE); returns the URL that names it."""
    name = f"sk_test_{uuid.uuid4().hex[:12]}"
    conn = await _connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(url, name)


async def drop_database(url: str) -> None:
    """Drop the database that ``url`` names (one made by fresh_database), first
    terminating its connections. Connects to the ``STREAMKIT_TEST_POSTGRES`` database
    (else ``postgres``) on the same server to do so. Dropping a missing one is fine."""
    name = _database_of(url)
    if not TEST_DATABASE.fullmatch(name):
        raise ValueError(f"refusing to drop {name!r}: not a database made by fresh_database()")
    admin = _database_of(postgres_url() or "") or "postgres"
    if admin == name:
        admin = "postgres"
    conn = await _connect(_with_database(url, admin))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


ENGINES = [pytest.param("memory", id="memory"), postgres_param()]
"""The ``engine`` params of property tests that run on the embedded and PostgreSQL stores."""


@contextlib.asynccontextmanager
async def throwaway_store(engine: str) -> AsyncIterator[str]:
    """The URL of a new, empty store on ``engine`` ("memory" or "postgres"), removed after."""
    if engine == "memory":
        yield "memory://"
        return
    server = postgres_url()
    assert server is not None, SKIP_REASON
    url = await fresh_database(server)
    try:
        yield url
    finally:
        await drop_database(url)
