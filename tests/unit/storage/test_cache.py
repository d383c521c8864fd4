"""The item and query cache (``sk.Cache``, as DAX): units, write-through, invalidation."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.storage._cache import ENTRY_OVERHEAD, MISS, VALUE_OVERHEAD, Cache, CacheEngine
from streamkit.storage._effects import Effects
from streamkit.storage._engine import ChangeRow
from streamkit.storage._write_ops import WriteResult

# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"item_ttl": -1}, id="negative-item-ttl"),
        pytest.param({"query_ttl": -0.5}, id="negative-query-ttl"),
        pytest.param({"item_ttl": "300"}, id="text-ttl"),
        pytest.param({"item_ttl": True}, id="bool-ttl"),
        pytest.param({"query_ttl": float("inf")}, id="infinite-ttl"),
        pytest.param({"max_bytes": 0}, id="zero-budget"),
        pytest.param({"max_bytes": 1.5}, id="float-budget"),
        pytest.param({"max_bytes": True}, id="bool-budget"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(sk.ValidationError):
        sk.Cache(**kwargs)


def test_defaults_match_dax() -> None:
    c = sk.Cache()
    assert (c.item_ttl, c.query_ttl, c.max_bytes) == (300.0, 300.0, 256 << 20)
    assert sk.Cache is sk.storage.Cache is Cache


def test_app_refuses_something_else_as_cache() -> None:
    with pytest.raises(sk.ConfigurationError):
        sk.App(storage="memory://", cache={"item_ttl": 1})  # type: ignore[arg-type]


def test_stats_without_a_cache_raise() -> None:
    with pytest.raises(sk.ConfigurationError):
        sk.App(storage="memory://").cache_stats()


# --- the engine alone ------------------------------------------------------------------


def _engine(max_bytes: int = 1 << 20, **kw: Any) -> CacheEngine:
    cache = CacheEngine(Cache(max_bytes=max_bytes, **kw))
    cache.active = True
    return cache


def _fill(cache: CacheEngine, i: int, item: dict[str, Any] | None, size: int = 10) -> None:
    pk = f"p{i}".encode()
    cache.fill_item(1, pk, b"", item, size, cache.token(1, pk))


def test_lru_evicts_the_least_recently_used() -> None:
    cost = ENTRY_OVERHEAD + VALUE_OVERHEAD + 2 + 10
    cache = _engine(max_bytes=3 * cost)
    for i in range(3):
        _fill(cache, i, {"v": i})
    assert cache.get_item(1, b"p0", b"") == {"v": 0}  # p0 is now the most recent
    _fill(cache, 3, {"v": 3})
    assert cache.get_item(1, b"p1", b"") is MISS
    assert cache.get_item(1, b"p0", b"") == {"v": 0}
    assert cache.evictions == 1
    assert cache.bytes == 3 * cost
    assert len(cache) == 3


def test_an_entry_larger_than_the_budget_is_not_kept() -> None:
    cache = _engine(max_bytes=1000)
    _fill(cache, 1, {"v": "x"}, size=5000)
    assert len(cache) == 0
    assert cache.bytes == 0


async def test_item_ttl_expires_entries() -> None:
    cache = _engine(item_ttl=0.05)
    _fill(cache, 1, {"v": 1})
    assert cache.get_item(1, b"p1", b"") == {"v": 1}
    await asyncio.sleep(0.08)
    assert cache.get_item(1, b"p1", b"") is MISS
    assert len(cache) == 0


def test_a_ttl_of_zero_turns_that_cache_off() -> None:
    cache = _engine(item_ttl=0)
    _fill(cache, 1, {"v": 1})
    assert len(cache) == 0


def test_a_fill_after_a_change_to_its_partition_is_dropped() -> None:
    cache = _engine()
    token = cache.token(1, b"p1")
    cache.apply([_row(1, b"p1")], {})  # unknown table: dropped whole; counters move
    cache.fill_item(1, b"p1", b"", {"v": "old"}, 10, token)
    assert cache.get_item(1, b"p1", b"") is MISS


def _row(seq: int, _pk: bytes) -> ChangeRow:
    return ChangeRow(seq, 1, "T", "MODIFY", None, b"", b"", 0, True, None)


def test_a_gap_in_the_change_rows_drops_everything() -> None:
    cache = _engine()
    _fill(cache, 1, {"v": 1})
    cache.position = 10
    cache.apply([ChangeRow(15, 99, "Other", "INSERT", None, b"", b"", 0, True, None)], {})
    assert cache.gaps == 1
    assert len(cache) == 0
    assert cache.position == 15


def test_returned_items_are_copies() -> None:
    cache = _engine()
    _fill(cache, 1, {"m": {"l": [1, 2]}, "s": {"a"}})
    got = cache.get_item(1, b"p1", b"")
    got["m"]["l"].append(3)
    got["s"].add("b")
    got["new"] = 1
    assert cache.get_item(1, b"p1", b"") == {"m": {"l": [1, 2]}, "s": {"a"}}


# --- bounded memory --------------------------------------------------------------------


def _cache_memory(fill: Any) -> tuple[CacheEngine, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return cache, after - before


def test_budget_holds_under_100k_distinct_keys() -> None:
    budget = 2 << 20

    def fill() -> CacheEngine:
        cache = _engine(max_bytes=budget)
        for i in range(100_000):
            pk = f"user-{i:08d}".encode()
            item = {"id": f"user-{i:08d}", "n": Decimal(i), "name": "x" * 20}
            cache.fill_item(1, pk, b"", item, sk.records._values.item_size(item), (0, 0, 0))
        return cache

    cache, used = _cache_memory(fill)
    assert cache.bytes <= budget
    assert cache.evictions > 90_000
    # what Python really holds (entries, items, the LRU, the counters) stays near the budget
    assert used < 1.5 * budget, used


def test_budget_holds_under_10k_distinct_attribute_names() -> None:
    budget = 1 << 20

    def fill() -> CacheEngine:
        cache = _engine(max_bytes=budget)
        for i in range(10_000):
            pk = f"k{i}".encode()
            # every item has attribute names no other item has (DAX keeps them all)
            item = {"id": f"k{i}", **{f"attr_{i}_{j}_{'n' * 40}": "v" for j in range(10)}}
            cache.fill_item(1, pk, b"", item, sk.records._values.item_size(item), (0, 0, 0))
        return cache

    cache, used = _cache_memory(fill)
    assert cache.bytes <= budget
    assert cache.evictions > 0
    assert used < 1.5 * budget, used


# --- through an App -------------------------------------------------------------------


@pytest.fixture
async def capp(tmp_path: Path) -> AsyncIterator[sk.App]:
    app = sk.App(storage=f"sqlite:///{tmp_path}/c.db", log=f"local://{tmp_path}/log", cache=Cache())
    try:
        yield app
    finally:
        await app.close()


async def _users(app: sk.App, name: str = "Users", **kw: Any) -> sk.Table:
    return await app.create_table(name, partition_key="id", sort_key="n", **kw)


def _hits(app: sk.App) -> int:
    return int(app.cache_stats()["hits"])


async def test_get_is_served_from_the_cache_without_storage(capp: sk.App) -> None:
    users = await _users(capp)
    await users.put({"id": "a", "n": "1", "v": 1})
    assert await users.get({"id": "a", "n": "1"}) == {"id": "a", "n": "1", "v": 1}
    assert _hits(capp) == 1  # written through: the first get is a hit

    async def no_io(*_: Any, **__: Any) -> Any:
        raise AssertionError("a hit went to storage")

    engine = capp.store.engine
    real = engine.get
    engine.get = no_io  # type: ignore[method-assign]
    try:
        for _ in range(3):
            assert await users.get({"id": "a", "n": "1"}, projection=["v"]) == {"v": 1}
    finally:
        engine.get = real  # type: ignore[method-assign]
    assert _hits(capp) == 4


async def test_write_through_update_and_delete(capp: sk.App) -> None:
    users = await _users(capp)
    key = {"id": "a", "n": "1"}
    await users.put({**key, "v": 1})
    await users.update(key, add={"v": 2})
    assert await users.get(key) == {**key, "v": 3}
    await users.delete(key)
    hits = _hits(capp)
    assert await users.get(key) is None
    assert _hits(capp) == hits + 1  # a negative entry


async def test_missing_items_and_empty_results_are_cached(capp: sk.App) -> None:
    users = await _users(capp)
    assert await users.get({"id": "none", "n": "1"}) is None
    assert await users.get({"id": "none", "n": "1"}) is None
    assert (await users.query_page("none")).items == []
    assert (await users.query_page("none")).items == []
    stats = capp.cache_stats()
    assert stats["hits"] == 2
    assert stats["misses"] == 2


async def test_consistent_reads_bypass_the_cache(capp: sk.App, tmp_path: Path) -> None:
    users = await _users(capp)
    key = {"id": "a", "n": "1"}
    await users.put({**key, "v": 1})
    other = sk.App(storage=capp.storage_url, log=f"local://{tmp_path}/log")
    try:
        await other.table("Users").put({**key, "v": 2})  # bypasses capp's cache
        hits = _hits(capp)
        assert await users.get(key, consistent=True) == {**key, "v": 2}
        assert [i["v"] for i in await users.batch_get([key], consistent=True)] == [2]
        page = await users.query_page("a", consistent=True)
        assert [i["v"] for i in page.items] == [2]
        assert _hits(capp) == hits
    finally:
        await other.close()


async def _settled(app: sk.App) -> None:
    """Wait until the follower has applied every change row."""
    tail = await app.store.read_changes_tail()
    for _ in range(500):
        if app.cache_stats()["position"] >= tail:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the follower did not catch up")


async def test_a_failed_write_leaves_the_cache_alone(capp: sk.App) -> None:
    users = await _users(capp)
    key = {"id": "a", "n": "1"}
    await users.put({**key, "v": 1})
    await _settled(capp)
    assert await users.get(key) == {**key, "v": 1}
    before = capp.cache_stats()
    with pytest.raises(sk.ConditionFailed):
        await users.put({**key, "v": 2}, condition=sk.attr("v").eq(5))
    with pytest.raises(sk.TransactionCanceled):
        async with capp.transaction() as tx:
            tx.update(users, key, set={"v": 3}, condition=sk.attr("v").eq(5))
    await _settled(capp)
    assert capp.cache_stats()["invalidations"] == before["invalidations"]
    assert await users.get(key) == {**key, "v": 1}
    assert _hits(capp) == before["hits"] + 1


async def test_a_throttled_write_leaves_the_cache_alone(capp: sk.App) -> None:
    users = await _users(capp, capacity=sk.Provisioned(read=100, write=1))
    key = {"id": "a", "n": "1"}
    await users.put({**key, "v": 1})
    with pytest.raises(sk.ThroughputExceeded):
        for i in range(50):
            await users.put({**key, "v": 100 + i, "pad": "x" * 3000})
    item = await users.get(key)
    assert item is not None
    assert item == await users.get(key, consistent=True)  # what storage holds


async def test_query_pages_depend_on_their_partition(capp: sk.App) -> None:
    users = await _users(capp)
    for i in range(5):
        await users.put({"id": "a", "n": str(i)})
        await users.put({"id": "b", "n": str(i)})
    assert len((await users.query_page("a")).items) == 5
    assert len((await users.query_page("b")).items) == 5
    await users.put({"id": "b", "n": "9"})  # another partition: a's page stays
    hits = _hits(capp)
    assert len((await users.query_page("a")).items) == 5
    assert _hits(capp) == hits + 1
    assert len((await users.query_page("b")).items) == 6  # b's page was dropped
    assert _hits(capp) == hits + 1
    items = [i async for i in users.query("a", sort=sk.key("n").gt("2"))]
    assert [i["n"] for i in items] == ["3", "4"]


async def test_scans_and_index_queries_depend_on_the_table(capp: sk.App) -> None:
    users = await capp.create_table(
        "Users",
        partition_key="id",
        sort_key="n",
        global_indexes=[sk.GlobalIndex("ByColor", partition_key="color")],
    )
    await users.put({"id": "a", "n": "1", "color": "red"})
    assert len((await users.scan_page()).items) == 1
    assert len((await users.query_page("red", index="ByColor")).items) == 1
    assert await users.count() == 1
    await users.put({"id": "z", "n": "1", "color": "red"})
    assert len((await users.scan_page()).items) == 2
    assert len((await users.query_page("red", index="ByColor")).items) == 2
    assert await users.count() == 2


async def test_transactions_and_batches_write_through(capp: sk.App) -> None:
    users = await _users(capp)
    async with capp.transaction() as tx:
        tx.put(users, {"id": "a", "n": "1", "v": 1})
        tx.update(users, {"id": "b", "n": "1"}, set={"v": 2})
    await users.batch_write(puts=[{"id": "c", "n": "1", "v": 3}], deletes=[{"id": "a", "n": "1"}])
    hits = _hits(capp)
    keys = [{"id": k, "n": "1"} for k in "abc"]
    assert [i["v"] for i in await users.batch_get(keys)] == [2, 3]
    assert _hits(capp) == hits + 3


async def test_handler_effects_drop_what_they_wrote(capp: sk.App) -> None:
    users = await _users(capp)
    key = {"id": "a", "n": "1"}
    await users.put({**key, "v": 1})
    effects = Effects(capp.store)
    effects.update(users, key, add={"v": 1})
    assert await effects.commit_with([]) is None
    assert await users.get(key) == {**key, "v": 2}


async def test_table_deletion_drops_its_entries(capp: sk.App) -> None:
    users = await _users(capp)
    await users.put({"id": "a", "n": "1"})
    assert await users.get({"id": "a", "n": "1"}) is not None
    await capp.delete_table("Users")
    users = await _users(capp)
    assert await users.get({"id": "a", "n": "1"}) is None
    assert (await users.scan_page()).items == []


async def test_tables_without_change_rows_are_not_cached_on_a_shared_store(
    capp: sk.App, tmp_path: Path
) -> None:
    plain = await _users(capp, "Plain", stream=None, pitr=False)
    await plain.put({"id": "a", "n": "1", "v": 1})
    other = sk.App(storage=capp.storage_url, log=f"local://{tmp_path}/log")
    try:
        await other.table("Plain").put({"id": "a", "n": "1", "v": 2})
        assert await plain.get({"id": "a", "n": "1"}) == {"id": "a", "n": "1", "v": 2}
    finally:
        await other.close()
    assert capp.cache_stats()["hits"] == 0
    assert capp.cache_stats()["bypassed"] >= 1


async def test_tables_without_change_rows_are_cached_in_memory() -> None:
    app = sk.App(storage="memory://", cache=Cache())
    try:
        plain = await _users(app, "Plain", stream=None, pitr=False)
        await plain.put({"id": "a", "n": "1", "v": 1})
        assert await plain.get({"id": "a", "n": "1"}) == {"id": "a", "n": "1", "v": 1}
        assert _hits(app) == 1
    finally:
        await app.close()


async def test_writes_of_another_app_are_followed(capp: sk.App, tmp_path: Path) -> None:
    users = await _users(capp)
    key = {"id": "a", "n": "1"}
    await users.put({**key, "v": 1})
    assert len((await users.scan_page()).items) == 1
    other = sk.App(storage=capp.storage_url, log=f"local://{tmp_path}/log")
    try:
        await other.table("Users").put({**key, "v": 2})
        await other.table("Users").put({"id": "b", "n": "1"})
        await _eventually(lambda: users.get(key), {**key, "v": 2})
        await _eventually(lambda: _count(users), 2)
    finally:
        await other.close()
    stats = capp.cache_stats()
    assert stats["invalidations"] >= 1
    assert stats["staleness_ms"]["p50"] is not None


async def _count(table: sk.Table) -> int:
    return len((await table.scan_page()).items)


async def _eventually(read: Any, want: Any, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        got = await read()
        if got == want:
            return
        assert loop.time() < deadline, f"still {got!r}, want {want!r}"
        await asyncio.sleep(0.01)


async def test_prometheus_metrics(capp: sk.App) -> None:
    users = await _users(capp)
    await users.put({"id": "a", "n": "1"})
    await users.get({"id": "a", "n": "1"})
    text = capp.metrics.text()
    assert "streamkit_cache_hits_total 1.0" in text
    assert "streamkit_cache_entries 1.0" in text


async def test_enable_cache_before_use() -> None:
    app = sk.App(storage="memory://")
    app.enable_cache(Cache(item_ttl=1))
    assert app.cache == Cache(item_ttl=1)
    with pytest.raises(sk.ConfigurationError):
        app.enable_cache(Cache())
    await app.close()


async def test_write_through_never_puts_back_an_older_state() -> None:
    app = sk.App(storage="memory://", cache=Cache())
    try:
        users = await _users(app)
        spec = await users.spec()
        cache = app.store.cache
        assert cache is not None
        op = users._put_op(spec, {"id": "a", "n": "1", "v": 1}, None, None, None, "NONE")
        tokens = cache.before_write([op])
        # while it was written, the follower applied a newer change of that partition
        cache.apply([], {})
        cache._pseq[cache._bucket(spec.table_id, op.k.pk)] = 50
        cache.wrote([op], [WriteResult(None, 1.0, "INSERT", seq=40, new=op.item)], tokens)
        assert cache.get_item(spec.table_id, op.k.pk, op.k.sk) is MISS
        # the newest one is put
        cache.wrote([op], [WriteResult(None, 1.0, "MODIFY", seq=60, new=op.item)], tokens)
        assert cache.get_item(spec.table_id, op.k.pk, op.k.sk) == op.item
    finally:
        await app.close()
