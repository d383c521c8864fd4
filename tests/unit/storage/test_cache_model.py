"""The cache against a model: two Apps (two caches) sharing one store, and a second
process writing to a shared SQLite file.

Every eventually consistent read must return a state the item had at or after the last
change the reading App's follower had applied before the read; every consistent read
the current item.
"""

from __future__ import annotations

import asyncio
import random
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.records._values import values_equal
from tests import postgres_env

KEYS = ["a", "b", "c", "d"]


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite-file"), postgres_env.postgres_param()],
)
async def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store two Apps can share: a SQLite file, or a fresh PostgreSQL database."""
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


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)


class _Model:
    """The items as they are now, and each item's states with the change that made them."""

    def __init__(self) -> None:
        self.current: dict[str, dict[str, Any] | None] = dict.fromkeys(KEYS)
        self.history: dict[str, list[tuple[int, dict[str, Any] | None]]] = {
            k: [(0, None)] for k in KEYS
        }

    def changed(self, key: str, seq: int, state: dict[str, Any] | None) -> None:
        self.current[key] = state
        self.history[key].append((seq, state))

    def allowed(self, key: str, position: int) -> list[dict[str, Any] | None]:
        """The states a read may return after its follower applied changes up to
        ``position``: the state at that position and every later one."""
        hist = self.history[key]
        first = max(i for i, (seq, _) in enumerate(hist) if seq <= position)
        return [state for _, state in hist[first:]]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_caches_on_one_store_follow_the_model(
    shared_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    cache = sk.Cache(item_ttl=300, query_ttl=300, max_bytes=1 << 20)
    apps = [
        sk.App(storage=shared_url, log=f"local://{tmp_path}/log{i}", cache=cache) for i in (0, 1)
    ]
    try:
        await apps[0].create_table("Items", partition_key="k")
        tables = [app.table("Items") for app in apps]
        await tables[1].spec()  # the second App knows the table too
        model = _Model()
        reads = 0
        for _step in range(250):
            i = rng.randrange(2)
            app, table = apps[i], tables[i]
            key = rng.choice(KEYS)
            op = rng.choice(
                ["put", "update", "delete", "cond", "tx", "get", "get", "get", "batch", "query",
                 "consistent", "sleep"]
            )  # fmt: skip
            if op in ("put", "update", "delete", "cond", "tx"):
                tail = await app.store.read_changes_tail()
                v = rng.randrange(5)
                try:
                    if op == "put":
                        await table.put({"k": key, "v": v})
                    elif op == "update":
                        await table.update({"k": key}, add={"n": 1})
                    elif op == "delete":
                        await table.delete({"k": key})
                    elif op == "cond":
                        await table.put(
                            {"k": key, "v": v}, condition=sk.attr("v").eq(rng.randrange(5))
                        )
                    else:
                        async with app.transaction() as tx:
                            tx.put(table, {"k": key, "v": v, "tx": True})
                except sk.ConditionFailed:
                    continue
                after = await app.store.read_changes_tail()
                if after != tail:
                    assert after == tail + 1
                    state = await table.get({"k": key}, consistent=True)
                    model.changed(key, after, state)
            elif op == "sleep":
                await asyncio.sleep(rng.choice([0, 0.001, 0.02]))
            elif op == "consistent":
                got = await table.get({"k": key}, consistent=True)
                assert _same(got, model.current[key]), (got, model.current[key])
            else:
                cache_engine = app.store.cache
                assert cache_engine is not None
                position = cache_engine.position
                if op == "get":
                    got = await table.get({"k": key})
                elif op == "batch":
                    found = await table.batch_get([{"k": key}])
                    got = found[0] if found else None
                else:
                    page = await table.query_page(key)
                    got = page.items[0] if page.items else None
                allowed = model.allowed(key, position)
                assert any(_same(got, s) for s in allowed), (op, key, got, allowed, position)
                reads += 1
        assert reads > 50
        stats = [app.cache_stats() for app in apps]
        assert all(s["hits"] > 0 for s in stats), stats
        assert all(s["invalidations"] > 0 for s in stats), stats
    finally:
        for app in apps:
            await app.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import streamkit as sk

    async def main():
        app = sk.App(storage=sys.argv[1], log=sys.argv[2])
        await app.table("Items").put({"k": "a", "v": 2})
        await app.close()

    asyncio.run(main())
    """
)


async def test_a_write_by_another_process_reaches_the_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    app = sk.App(storage=url, log=f"local://{tmp_path}/log", cache=sk.Cache())
    try:
        items = await app.create_table("Items", partition_key="k")
        await items.put({"k": "a", "v": 1})
        assert (await items.get({"k": "a"}))["v"] == 1  # type: ignore[index]
        assert app.cache_stats()["hits"] == 1  # the old item is cached
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, url, f"local://{tmp_path}/log2"
        )
        assert await proc.wait() == 0
        written = time.monotonic()
        while True:
            item = await items.get({"k": "a"})
            assert item is not None
            if item["v"] == 2:
                break
            assert time.monotonic() - written < 5.0, "the cache kept the old item"
            await asyncio.sleep(0.005)
        assert app.cache_stats()["invalidations"] >= 1
        assert app.cache_stats()["staleness_ms"]["samples"] >= 1
    finally:
        await app.close()
