"""A global index's backfill killed with SIGKILL, again and again, while writes go on.

The backfill runs in a ``streamkit``-style process (an App in ``running()``, which
resumes the backfill of every index left ``CREATING``); the test kills it with SIGKILL
at random moments while this process keeps putting, updating and deleting items of
the table, then lets one process finish the backfill. Afterwards the index is
``ACTIVE`` and holds exactly the table's items projected: nothing lost, nothing doubled,
no entry of a deleted item or of an old index key. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.storage._index_admin import add_index
from tests.integration.kill_harness import kill_again_and_again, orders, write_until
from tests.unit.storage.test_indexes import GSI, expected_entries, index_contents

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("STREAMKIT_FAULT_KILLS", "4"))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))


async def _status(app: sk.App) -> str:
    await app.store.reload()
    return str((await app.describe_table("Orders"))["indexes"][0]["status"])


@pytest.mark.timeout(300)
async def test_a_backfill_killed_again_and_again_loses_and_doubles_nothing(
    shared_storage_url: str, tmp_path: Path
) -> None:
    rnd = random.Random(SEED)
    log = f"local://{tmp_path}/log"
    app = sk.App(storage=shared_storage_url, log=log)
    t = await orders(app)
    # the index is defined here; only the runner processes backfill it
    await add_index(app.store, "Orders", GSI)
    stop = asyncio.Event()
    writing = asyncio.create_task(write_until(t, rnd, stop))

    async def active() -> bool:
        return await _status(app) == "ACTIVE"

    try:
        kills = await kill_again_and_again(shared_storage_url, log, active, rnd, KILLS)
        stop.set()
        await writing
        now = [x async for x in t.scan()]
        got = await index_contents(t, "ByStatus")
    finally:
        stop.set()
        await app.close()
    assert kills >= 1, f"the backfill finished before the first kill (seed {SEED})"
    assert sorted(got, key=repr) == sorted(expected_entries(now, "ByStatus"), key=repr), SEED
    assert len(got) == len({(g["UserID"], g["OrderDate"]) for g in got})  # nothing doubled
