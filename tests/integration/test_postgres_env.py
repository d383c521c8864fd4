"""The PostgreSQL test server (compose/postgres/pg-up.sh) and tests/postgres_env.py's helpers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.postgres_env import drop_database, fresh_database, postgres_param, postgres_url


@pytest.fixture(params=[postgres_param()])
def server(request: pytest.FixtureRequest) -> str:
    url = postgres_url()
    assert url, "postgres_param() is skipped when the server URL is unset"
    return url


async def _connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn=url, timeout=30)


async def test_server_is_postgresql_15(server: str) -> None:
    conn = await _connect(server)
    try:
        version = await conn.fetchval("SELECT version()")
        assert version.startswith("PostgreSQL 15"), version
        assert await conn.fetchval("SHOW fsync") == "on"
        assert await conn.fetchval("SELECT 1 + 1") == 2
    finally:
        await conn.close()


async def test_fresh_database_is_new_empty_and_dropped(server: str) -> None:
    first = await fresh_database(server)
    second = await fresh_database(server)
    try:
        assert first != second
        name = first.rsplit("/", 1)[1]
        conn = await _connect(first)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
            tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            assert await conn.fetchval(tables) == 0
            await conn.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
            await conn.execute("INSERT INTO t VALUES (1, 'one')")
            assert await conn.fetchval("SELECT v FROM t WHERE k = 1") == "one"
            # dropped while this connection is still open: drop_database terminates it
            await drop_database(first)
        finally:
            await conn.close()
        other = await _connect(second)
        try:
            assert await other.fetchval("SELECT to_regclass('t')") is None  # nothing shared
        finally:
            await other.close()
    finally:
        await drop_database(first)  # already gone: fine
        await drop_database(second)
    admin = await _connect(server)
    try:
        left = await admin.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = ANY($1::text[])",
            [first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]],
        )
        assert left == 0
    finally:
        await admin.close()


async def test_drop_database_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="refusing to drop"):
        await drop_database("postgresql://streamkit:streamkit@127.0.0.1:5432/streamkit")
