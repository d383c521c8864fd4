"""The PostgreSQL engine where it differs from the others: many processes on one store.

Two ``PostgresEngine`` instances on one database stand for two processes (each has its
own pool, writer connection and LISTEN connection). Real server only
(``STREAMKIT_TEST_POSTGRES``); each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

import streamkit as sk
from streamkit.exceptions import (
    ConditionFailed,
    ConfigurationError,
    StorageError,
    TableNotFound,
)
from streamkit.records import decode_record
from streamkit.storage import _pg_schema as S
from streamkit.storage._postgres import PostgresEngine
from streamkit.storage._write_ops import PutOp, WriteJob, WriteOp
from tests import postgres_env
from tests.unit.storage.test_engine_conformance import Ops, item_of, one, users_spec

pytestmark = postgres_env.needs_postgres


@pytest.fixture
async def db_url() -> AsyncIterator[str]:
    server = postgres_env.postgres_url()
    assert server is not None
    url = await postgres_env.fresh_database(server)
    try:
        yield url
    finally:
        await postgres_env.drop_database(url)


@pytest.fixture
async def engines(db_url: str) -> AsyncIterator[tuple[PostgresEngine, PostgresEngine]]:
    a, b = PostgresEngine(db_url), PostgresEngine(db_url)
    await asyncio.gather(a.open(), b.open())  # two processes opening a new store at once
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def _with(url: str, **parts: Any) -> str:
    return urlunsplit(urlsplit(url)._replace(**parts))


async def _tables(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def _wait_for(check: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


# --- many processes, one store ------------------------------------------------------------


async def test_two_processes_contend_without_lost_updates_or_gaps(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    a, b = engines
    assert a.storage_id == b.storage_id
    await a.create_table(users_spec())
    (spec_b,) = await b.list_tables()  # b learns the table from the shared catalog
    ops_a, ops_b = Ops((await a.list_tables())[0]), Ops(spec_b)
    limit = 80
    outcomes: dict[str, list[Any]] = {"inc": [], "ins": []}

    async def worker(eng: PostgresEngine, ops: Ops, who: str, n: int) -> None:
        rnd = random.Random(f"{who}{n}")
        for i in range(10):
            inc = ops.update(
                {"id": "counter"},
                add={"n": 1},
                condition="attribute_not_exists(n) OR n < :max",
                values={":max": limit},
            )
            new = ops.put({"id": f"k{(n * 10 + i) % 50}", "by": who}, "attribute_not_exists(id)")
            jobs: list[tuple[str, WriteOp]] = [("inc", inc), ("ins", new)]
            rnd.shuffle(jobs)
            for kind, op in jobs:
                try:
                    (r,) = await eng.write(WriteJob([op]))
                    outcomes[kind].append((who, op.k.pk, r))
                except ConditionFailed as e:
                    outcomes[kind].append((who, op.k.pk, e))

    # a relay-like reader polling while the writers run: it must never skip a number
    polled: list[int] = []
    done = asyncio.Event()

    async def poller() -> None:
        after = 0
        while True:
            finished = done.is_set()
            rows = await a.changes(after, 1000)
            polled.extend(r.seq for r in rows)
            if rows:
                after = rows[-1].seq
            elif finished:
                return
            await asyncio.sleep(0)

    reader = asyncio.create_task(poller())
    # 5 workers per process, 10 increments and 10 inserts each: 50 + 50 per process
    await asyncio.gather(
        *(worker(a, ops_a, "a", n) for n in range(5)),
        *(worker(b, ops_b, "b", n + 5) for n in range(5)),
    )
    done.set()
    await reader

    incs = outcomes["inc"]
    assert len(incs) == 100
    assert sum(1 for *_, r in incs if not isinstance(r, ConditionFailed)) == limit
    assert (await item_of(a, ops_a, {"id": "counter"}))["n"] == limit
    ins = outcomes["ins"]
    winners = {pk: who for who, pk, r in ins if not isinstance(r, ConditionFailed)}
    assert len(winners) == 50 and len(ins) == 100  # every key inserted exactly once
    for pk, who in winners.items():
        assert (await item_of(a, ops_a, {"id": pk.decode()}))["by"] == who

    rows = await b.changes(0, 10_000)
    seqs = [r.seq for r in rows]
    assert seqs == list(range(1, limit + 50 + 1))  # no gap, nothing twice
    assert polled == seqs  # the poller, reading during the run, missed nothing
    counter = [decode_record(r.record) for r in rows if r.key == b"counter"]
    assert [r.event_name for r in counter] == ["INSERT"] + ["MODIFY"] * (limit - 1)
    # in sequence order, each change saw the one before it: commit order
    assert [c.new_image["n"] for c in counter if c.new_image] == list(range(1, limit + 1))


async def test_writers_of_disjoint_keys_share_one_commit_ordered_numbering(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    """No key lock orders these writers: only the counter does."""
    a, b = engines
    spec = await a.create_table(users_spec())
    ops = Ops(spec)
    polled: list[int] = []
    done = asyncio.Event()

    async def poller(eng: PostgresEngine) -> None:
        after = 0
        while True:
            finished = done.is_set()
            rows = await eng.changes(after, 1000)
            polled.extend(r.seq for r in rows)
            if rows:
                after = rows[-1].seq
            elif finished:
                return
            await asyncio.sleep(0)

    async def writer(eng: PostgresEngine, who: str) -> None:
        for i in range(40):
            await one(eng, ops.put({"id": f"{who}-{i}"}))

    reader = asyncio.create_task(poller(b))
    await asyncio.gather(*(writer(e, f"{e is a}{n}") for e in (a, b) for n in range(4)))
    done.set()
    await reader
    assert polled == list(range(1, 2 * 4 * 40 + 1))
    assert [r.seq for r in await a.changes(0, 1000)] == polled


async def test_conditional_inserts_of_one_new_key_from_two_processes(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    a, b = engines
    spec = await a.create_table(users_spec())
    ops = Ops(spec)
    for round_ in range(20):
        key = f"new{round_}"
        results = await asyncio.gather(
            *(
                eng.write(WriteJob([ops.put({"id": key, "by": i}, "attribute_not_exists(id)")]))
                for i, eng in enumerate([a, b, a, b])
            ),
            return_exceptions=True,
        )
        ok = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(ok) == 1, results
        assert all(isinstance(r, ConditionFailed) for r in results if isinstance(r, BaseException))
        assert (await item_of(b, ops, {"id": key}))["by"] == ok[0]
    assert [r.event for r in await a.changes(0, 100)] == ["INSERT"] * 20


async def test_commits_of_another_process_ring_the_listeners(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    a, b = engines
    ops = Ops(await a.create_table(users_spec()))
    rang: list[int] = []
    a.add_commit_listener(lambda: rang.append(1))
    await asyncio.sleep(0.3)  # the LISTEN connection is up (it rings once when it starts)
    rang.clear()
    await one(b, ops.put({"id": "x"}))
    await _wait_for(lambda: rang)


async def test_write_to_a_table_deleted_by_another_process(
    engines: tuple[PostgresEngine, PostgresEngine], db_url: str
) -> None:
    a, b = engines
    ops = Ops(await a.create_table(users_spec(pitr=False)))
    await one(a, ops.put({"id": "x"}))
    await b.delete_table("Users")
    with pytest.raises(TableNotFound):
        await one(a, ops.put({"id": "y"}))  # a's cached spec is stale: no orphan rows
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sk_items") == 0
    finally:
        await conn.close()


async def test_a_job_the_database_refuses_fails_alone(db_url: str) -> None:
    eng = PostgresEngine(db_url)
    await eng.open()
    try:
        ops = Ops(await eng.create_table(users_spec()))
        good = [ops.put({"id": f"g{i}"}) for i in range(5)]
        bad = ops.put({"id": "bad"})
        bad = PutOp(bad.spec, bad.k, bad.item, bad.data, 2**40)  # no integer column holds it
        results = await asyncio.gather(
            *(eng.write(WriteJob([op])) for op in [*good[:2], bad, *good[2:]]),
            return_exceptions=True,
        )
        assert isinstance(results[2], StorageError) and not results[2].retriable
        assert all(
            isinstance(r, list) and r[0].event == "INSERT" for i, r in enumerate(results) if i != 2
        )
        assert [r.seq for r in await eng.changes(0, 100)] == [1, 2, 3, 4, 5]
        assert await item_of(eng, ops, {"id": "bad"}) is None
    finally:
        await eng.close()


# --- opening: what is refused and how -------------------------------------------------------


async def test_a_foreign_database_is_refused_and_left_untouched(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("CREATE TABLE foo (id int PRIMARY KEY)")
    finally:
        await conn.close()
    eng = PostgresEngine(db_url)
    with pytest.raises(ConfigurationError, match="not a streamkit store") as info:
        await eng.open()
    assert urlsplit(db_url).path.lstrip("/") in str(info.value)
    assert await _tables(db_url) == ["foo"]
    await eng.close()


async def test_another_schema_version_is_refused(db_url: str) -> None:
    eng = PostgresEngine(db_url)
    await eng.open()
    await eng.close()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE sk_meta SET value = '99' WHERE key = 'schema'")
    finally:
        await conn.close()
    with pytest.raises(ConfigurationError, match="schema version 99"):
        await PostgresEngine(db_url).open()


async def test_wrong_credentials_and_unknown_database_are_configuration_errors(
    db_url: str,
) -> None:
    parts = urlsplit(db_url)
    bad_password = _with(db_url, netloc=f"{parts.username}:wrong@{parts.hostname}:{parts.port}")
    with pytest.raises(ConfigurationError, match="password") as info:
        await PostgresEngine(bad_password).open()
    assert "wrong" not in str(info.value)  # the password is never echoed
    with pytest.raises(ConfigurationError, match="does not exist"):
        await PostgresEngine(_with(db_url, path="/sk_no_such_db")).open()
    with pytest.raises(ConfigurationError, match="no database"):
        PostgresEngine(_with(db_url, path="/"))
    with pytest.raises(ConfigurationError):
        PostgresEngine(_with(db_url, netloc=f"{parts.hostname}:notaport"))
    with pytest.raises(ConfigurationError, match="pool_size"):
        PostgresEngine(db_url + "?pool_size=0")


async def test_an_unreachable_server_is_a_retriable_storage_error(db_url: str) -> None:
    parts = urlsplit(db_url)
    closed = _with(db_url, netloc=f"{parts.username}:{parts.password}@127.0.0.1:1")
    expected = re.escape("cannot reach PostgreSQL at 127.0.0.1:1")
    with pytest.raises(StorageError, match=expected) as info:
        await PostgresEngine(closed + "?connect_timeout=2").open()
    assert info.value.retriable is True
    assert not isinstance(info.value.__cause__, StorageError)


# --- connections lost ---------------------------------------------------------------------


async def _kill_connections(db_url: str) -> int:
    name = urlsplit(db_url).path.lstrip("/")
    conn = await asyncpg.connect(_with(db_url, path="/postgres"))
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return len(rows)
    finally:
        await conn.close()


async def test_connections_killed_by_the_server_recover(
    engines: tuple[PostgresEngine, PostgresEngine], db_url: str
) -> None:
    a, b = engines
    ops = Ops(await a.create_table(users_spec()))
    rang: list[int] = []
    a.add_commit_listener(lambda: rang.append(1))
    await one(a, ops.update({"id": "n"}, add={"n": 1}))
    await asyncio.sleep(0.3)
    # writer, pool and LISTEN connections of both engines
    assert await _kill_connections(db_url) >= 4
    await asyncio.sleep(0.1)
    for eng in (a, b):
        error: StorageError | None = None
        try:
            await one(eng, ops.update({"id": "n"}, add={"n": 1}))
        except StorageError as e:  # allowed, but only as "retry"
            error = e
        if error is not None:
            assert error.retriable, error
            await one(eng, ops.update({"id": "n"}, add={"n": 1}))
    # reads recover too, and every write is there exactly once
    assert (await item_of(b, ops, {"id": "n"}))["n"] == 3
    assert [r.seq for r in await a.changes(0, 10)] == [1, 2, 3]
    # a's LISTEN connection came back: b's commits ring a's listeners again
    await asyncio.sleep(1.0)
    rang.clear()
    await one(b, ops.update({"id": "n"}, add={"n": 1}))
    await _wait_for(lambda: rang)
    assert (await item_of(a, ops, {"id": "n"}))["n"] == Decimal(4)


# --- the archive, per table -----------------------------------------------------------------


async def _plan(conn: Any, sql: str, *args: Any) -> str:
    return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))


async def test_a_tables_archive_is_read_through_its_index(db_url: str, tmp_path: Path) -> None:
    """A restore's and a history read's statements find the table's rows by index: a
    small table beside a busy one does not read the busy one's archive."""
    async with sk.App(storage=db_url, log=f"local://{tmp_path}/log") as app:
        big = await app.create_table("Big", partition_key="k", stream=None, recovery_days=1)
        small = await app.create_table("Small", partition_key="k", stream=None, recovery_days=1)
        for i in range(0, 3000, 25):
            await big.batch_write(puts=[{"k": f"k{(i + j) % 300}", "n": i + j} for j in range(25)])
        for i in range(30):
            await small.put({"k": f"s{i % 10}", "n": i})
        small_id = (await app._store.spec("Small")).table_id
        now = 2**62
        async with app._store.engine.read_table(small_id, now) as read:
            assert len(await read.chunk(100)) == 10
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("ANALYZE sk_changes")
        for plan in (
            await _plan(conn, S.STATE_AT, small_id, now),
            await _plan(conn, S.ARCHIVE_ROWS, 0, small_id, 0, now, None, 5000),
        ):
            assert "sk_changes_table" in plan and "Seq Scan" not in plan, plan
    finally:
        await conn.close()


async def test_a_store_made_without_the_archive_index_gets_it_when_opened(db_url: str) -> None:
    eng = PostgresEngine(db_url)
    await eng.open()
    await eng.close()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("DROP INDEX sk_changes_table")  # as a store made before it
        eng = PostgresEngine(db_url)
        await eng.open()
        await eng.close()
        assert await conn.fetchval("SELECT to_regclass('sk_changes_table') IS NOT NULL")
    finally:
        await conn.close()
