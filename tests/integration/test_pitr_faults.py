"""Turning point-in-time recovery on for a table in use, with the process seeding its
archive killed by SIGKILL again and again while writes go on.

The seeding runs in ``streamkit``-style processes (an App in ``running()``, which
finishes the seeding of every table left ENABLING); the test kills them at random
moments while this process keeps putting, updating and deleting items, then lets one
process finish. Afterwards PITR is ENABLED and a restore to now equals the table:
every item written before PITR was turned on is there once, with its latest value.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.history._archive import start_pitr
from tests.integration.kill_harness import kill_again_and_again, orders, write_until

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("STREAMKIT_FAULT_KILLS", "4"))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))


async def _enabling(app: sk.App) -> bool:
    await app.store.reload()
    return (await app.store.spec("Orders")).pitr_enabling


@pytest.mark.timeout(300)
async def test_a_pitr_seeding_killed_again_and_again_restores_every_item(
    shared_storage_url: str, tmp_path: Path
) -> None:
    rnd = random.Random(SEED)
    log = f"local://{tmp_path}/log"
    app = sk.App(storage=shared_storage_url, log=log)
    t = await orders(app, pitr=False, stream=None)
    # PITR is turned on here (ENABLING); only the runner processes seed the archive
    assert (await start_pitr(app.store, "Orders")).pitr_enabling
    stop = asyncio.Event()
    writing = asyncio.create_task(write_until(t, rnd, stop))

    async def enabled() -> bool:
        return not await _enabling(app)

    try:
        kills = await kill_again_and_again(shared_storage_url, log, enabled, rnd, KILLS)
    finally:
        stop.set()
        await writing
    await asyncio.sleep(0.01)
    restored = await app.restore_to_time("Orders", at=datetime.now(UTC), target="Restored")
    want = {(i["UserID"], i["OrderDate"]): i async for i in t.scan()}
    got = {(i["UserID"], i["OrderDate"]): i async for i in restored.scan()}
    assert got == want, f"seed {SEED}, {kills} kills"
    await app.close()
