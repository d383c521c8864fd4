"""Point-in-time restore and the compacted archive against a reference model.

For random histories of puts, updates, deletes and transactions, and random instants,
the table rebuilt at an instant equals a plain-Python model's state at that instant —
through ``app.restore_to_time`` and after the archive is compacted at a random cutoff.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.history._archive import _new_image
from streamkit.records._values import normalize_item, values_equal
from tests import postgres_env

KEYS = st.sampled_from(["a", "b", "c", "d"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, st.integers(0, 9)),
        st.tuples(st.just("add"), KEYS, st.integers(1, 3)),
        st.tuples(st.just("delete"), KEYS, st.just(0)),
        st.tuples(st.just("tx"), KEYS, st.integers(0, 9)),
    ),
    min_size=1,
    max_size=25,
)
_DAY_MS = 86_400_000


async def _history(
    app: sk.App, ops: list[tuple[str, str, int]]
) -> tuple[sk.Table, list[tuple[int, dict[str, Any]]]]:
    """Run ``ops``; return the table and, per committed change (in commit order), its
    commit time and the model's state right after it."""
    t = await app.create_table("Things", partition_key="k", sort_key=("s", "N"))
    model: dict[str, dict[str, Any]] = {}
    states: list[tuple[int, dict[str, Any]]] = []
    seen = 0
    for op, k, n in ops:
        key = {"k": k, "s": 1}
        if op == "put":
            await t.put({**key, "v": n, "tag": f"x{n}"})
            model[k] = normalize_item({**key, "v": n, "tag": f"x{n}"})
        elif op == "add":
            await t.update(key, add={"n": n})
            cur = dict(model.get(k, normalize_item(key)))
            cur["n"] = cur.get("n", 0) + n
            model[k] = normalize_item(cur)
        elif op == "delete":
            await t.delete(key)
            model.pop(k, None)
        else:  # a transaction: put this key, delete the next one
            other = chr((ord(k) - ord("a") + 1) % 4 + ord("a"))
            async with app.transaction() as tx:
                tx.put(t, {**key, "v": n})
                tx.delete(t, {"k": other, "s": 1})
            model[k] = normalize_item({**key, "v": n})
            model.pop(other, None)
        rows = await app._store.read_changes(seen, 1000)
        for r in rows:  # a write that changed nothing has no row
            states.append((r.created_ms, {kk: dict(v) for kk, v in model.items()}))
        if rows:
            seen = rows[-1].seq
        # spread the commits over several milliseconds, so instants fall between them
        await asyncio.sleep(0.002 if n % 2 else 0)
    return t, states


def _expected(states: list[tuple[int, dict[str, Any]]], at_ms: int) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for created, snapshot in states:
        if created <= at_ms:
            state = snapshot
    return state


def _settings(described: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in described.items() if k not in ("name", "created_at")}


def _same(items: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    got = {i["k"]: i for i in items}
    assert got.keys() == expected.keys()
    for k, item in expected.items():
        assert values_equal(got[k], item), (got[k], item)


settings_ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("engine", postgres_env.ENGINES)
@settings_
@given(ops=OPS, picks=st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_restore_to_time_equals_the_model_at_any_instant(
    engine: str, ops: list[tuple[str, str, int]], picks: list[float]
) -> None:
    async def main() -> None:
        async with postgres_env.throwaway_store(engine) as url, sk.App(storage=url) as app:
            t, states = await _history(app, ops)
            spec = await app._store.spec(t.name)
            assert spec.created_at is not None
            first = int(spec.created_at.timestamp() * 1000)
            last = max([first] + [c for c, _ in states]) + 1
            # `last` may still be a millisecond ahead of the clock
            await asyncio.sleep(max(0.0, last / 1000 - time.time()) + 0.001)
            for i, pick in enumerate(picks):
                at_ms = first + int(pick * (last - first))
                at = datetime.fromtimestamp(at_ms / 1000, UTC)
                restored = await app.restore_to_time(t.name, at=at, target=f"Restored{i}")
                _same([i async for i in restored.scan()], _expected(states, at_ms))
                assert _settings(await app.describe_table(restored.name)) == _settings(
                    await app.describe_table(t.name)
                )

    asyncio.run(main())


@pytest.mark.parametrize("engine", postgres_env.ENGINES)
@settings_
@given(ops=OPS, cut=st.floats(0, 1), picks=st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_compaction_keeps_every_instant_of_the_window(
    engine: str, ops: list[tuple[str, str, int]], cut: float, picks: list[float]
) -> None:
    async def main() -> None:
        async with postgres_env.throwaway_store(engine) as url, sk.App(storage=url) as app:
            t, states = await _history(app, ops)
            spec = await app._store.spec(t.name)
            first = min([c for c, _ in states], default=0)
            last = max([c for c, _ in states], default=0) + 1
            cutoff = first + int(cut * (last - first))
            rows_before = len(await app._store.read_changes(0, 100_000))
            newest = (await app._store.read_changes(0, 100_000) or [None])[-1]
            upto = 0 if newest is None else newest.seq
            # compact as if now were recovery_days after the cutoff
            await app._store.prune_archive(
                published_upto=upto, now_ms=cutoff + spec.recovery_days * _DAY_MS
            )
            rows_after = await app._store.read_changes(0, 100_000)
            assert len(rows_after) <= rows_before
            # beyond the window, at most one row per item (plus the newest row of all)
            old = {(r.key, r.seq) for r in rows_after if r.created_ms < cutoff}
            assert len(old) <= 4 + 1
            for pick in picks:
                at_ms = cutoff + int(pick * (last - cutoff))
                async with app._store.engine.read_table(spec.table_id, at_ms) as read:
                    rows = await read.chunk(100_000)
                _same([_new_image(r, d) for _, _, r, d in rows], _expected(states, at_ms))

    asyncio.run(main())


async def test_restore_refuses_instants_outside_the_window_and_changes_nothing() -> None:
    async with sk.App(storage="memory://") as app:
        t = await app.create_table("Things", partition_key="k")
        await t.put({"k": "a"})
        now = datetime.now(UTC)
        with pytest.raises(sk.HistoryUnavailable, match="before what 'Things' keeps"):
            await app.restore_to_time("Things", at=now - timedelta(days=1), target="Old")
        with pytest.raises(sk.HistoryUnavailable, match="in the future"):
            await app.restore_to_time("Things", at=now + timedelta(hours=1), target="Later")
        with pytest.raises(sk.ValidationError, match="timezone-aware"):
            await app.restore_to_time("Things", at=datetime.now(), target="Naive")
        with pytest.raises(sk.TableNotFound):
            await app.restore_to_time("Nope", at=now, target="Xone")
        with pytest.raises(sk.TableExists):
            await app.restore_to_time("Things", at=now, target="Things")
        brief = await app.create_table("Brief", partition_key="k", pitr=False)
        await brief.put({"k": "a"})
        with pytest.raises(sk.HistoryUnavailable, match="pitr=False"):
            await app.restore_to_time("Brief", at=datetime.now(UTC), target="Xtwo")
        assert await app.list_tables() == ["Brief", "Things"]


async def test_a_restored_table_carries_the_settings_and_can_be_restored_in_turn() -> None:
    async with sk.App(storage="memory://") as app:
        t = await app.create_table(
            "Things", partition_key="k", stream="NEW_IMAGE", ttl_attribute="exp", recovery_days=7
        )
        await t.put({"k": "a", "exp": int(time.time()) + 3600})
        await t.put({"k": "b"})
        await asyncio.sleep(0.005)
        at = datetime.now(UTC)
        await asyncio.sleep(0.005)
        await t.delete({"k": "a"})
        r = await app.restore_to_time("Things", at=at, target="Then")
        assert sorted([i["k"] async for i in r.scan()]) == ["a", "b"]
        src, dst = await app.describe_table("Things"), await app.describe_table("Then")
        assert _settings(src) == _settings(dst)
        assert dst["recovery_days"] == 7 and dst["ttl_attribute"] == "exp"
        # the restore is not a change its handlers see: no published rows for "Then"
        rows = await app._store.read_changes(0, 1000)
        assert all(not r.publish for r in rows if r.table == "Then")
        # ... but its archive has the items: restoring the copy works too
        await asyncio.sleep(0.005)
        again = await app.restore_to_time("Then", at=datetime.now(UTC), target="Again")
        assert sorted([i["k"] async for i in again.scan()]) == ["a", "b"]
