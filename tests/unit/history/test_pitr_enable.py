"""Turning point-in-time recovery on for a table in use (``app.set_pitr`` / the endpoint's
UpdateContinuousBackups): every item already there is entered in the archive while
writes go on, restores reach back to that moment and not before, on every engine."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

import streamkit as sk
from streamkit.history._archive import start_pitr

pytestmark = pytest.mark.asyncio


async def _items(table: sk.Table) -> dict[str, dict[str, object]]:
    return {str(i["id"]): i async for i in table.scan()}


@pytest.mark.parametrize("stream", [None, sk.StreamView.KEYS_ONLY])
async def test_items_there_before_pitr_was_turned_on_are_restored(
    app: sk.App, stream: sk.StreamView | None
) -> None:
    t = await app.create_table("Things", partition_key="id", pitr=False, stream=stream)
    for i in range(300):
        await t.put({"id": f"k{i:03d}", "v": i})
    await t.delete({"id": "k007"})
    before = datetime.now(UTC)
    with pytest.raises(sk.HistoryUnavailable):
        await app.restore_to_time("Things", at=before, target="Nope")
    desc = await app.set_pitr("Things", recovery_days=3)
    assert desc["pitr"] is True and desc["recovery_days"] == 3
    await asyncio.sleep(0.01)
    await t.put({"id": "k001", "v": "changed"})
    await t.delete({"id": "k002"})
    now = datetime.now(UTC)
    restored = await app.restore_to_time("Things", at=now, target="Now")
    assert await _items(restored) == await _items(t)
    # before PITR was turned on there is nothing to rebuild from: refused, as DynamoDB
    with pytest.raises(sk.HistoryUnavailable):
        await app.restore_to_time("Things", at=before, target="Before")
    # off, then on again: restores start afresh
    await app.set_pitr("Things", False)
    with pytest.raises(sk.HistoryUnavailable):
        await app.restore_to_time("Things", at=datetime.now(UTC), target="Off")
    await app.set_pitr("Things")
    again = await app.restore_to_time("Things", at=datetime.now(UTC), target="Again")
    assert await _items(again) == await _items(t)


async def test_writes_racing_the_seeding_are_all_in_the_restore(app: sk.App) -> None:
    """Writers change, delete and add items while the archive is being seeded: a restore
    at the end equals the table, whichever came first for each item."""
    t = await app.create_table("Things", partition_key="id", pitr=False, stream=None)
    for i in range(1500):
        await t.put({"id": f"k{i:04d}", "v": 0})
    rng = random.Random(5)
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"k{rng.randrange(1700):04d}"
            if rng.random() < 0.2:
                await t.delete({"id": key})
            else:
                await t.put({"id": key, "v": f"{w}-{n}"})
            n += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(writer(w)) for w in range(3)]
    try:
        await asyncio.sleep(0.05)
        await app.set_pitr("Things")
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    await asyncio.sleep(0.002)  # the last write's millisecond is past
    restored = await app.restore_to_time("Things", at=datetime.now(UTC), target="Now")
    assert await _items(restored) == await _items(t)


async def test_a_table_left_enabling_refuses_restores_and_is_finished_by_running(
    app: sk.App,
) -> None:
    """A process that stopped while seeding leaves PITR ENABLING: restores are refused
    until ``App.running()`` finishes the seeding (as it finishes index backfills)."""
    t = await app.create_table("Things", partition_key="id", pitr=False, stream=None)
    for i in range(50):
        await t.put({"id": f"k{i}", "v": i})
    spec = await start_pitr(app.store, "Things")  # on, not seeded: a process that died here
    assert spec.pitr_enabling
    with pytest.raises(sk.HistoryUnavailable, match="being turned on"):
        await app.restore_to_time("Things", at=datetime.now(UTC), target="Early")
    async with app.running(handlers=[], ttl=False):
        for _ in range(200):
            await app.store.reload()
            if not (await app.store.spec("Things")).pitr_enabling:
                break
            await asyncio.sleep(0.02)
    restored = await app.restore_to_time("Things", at=datetime.now(UTC), target="Later")
    assert await _items(restored) == await _items(t)
