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
import sys
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.storage._index_admin import add_index
from tests.unit.storage.test_indexes import GSI, expected_entries, index_contents

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("STREAMKIT_FAULT_KILLS", "4"))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))

RUNNER = """
import asyncio
import sys

import streamkit as sk


async def main() -> None:
    app = sk.App(storage=sys.argv[1], log=sys.argv[2])
    async with app.running(handlers=[]):
        print("running", flush=True)
        await asyncio.sleep(3600)


asyncio.run(main())
"""


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
    t = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    items = [
        {"UserID": f"u{i % 97}", "OrderDate": f"{i:06d}", "Status": f"s{i % 5}", "Total": i}
        for i in range(20000)
    ]
    for start in range(0, len(items), 25):
        await t.batch_write(puts=items[start : start + 25])
    # the index is defined here; only the runner processes backfill it
    await add_index(app.store, "Orders", GSI)
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            i = rnd.randrange(22000)
            key = {"UserID": f"u{i % 97}", "OrderDate": f"{i:06d}"}
            if n % 4 == 3:
                await t.delete(key)
            elif n % 4 == 2:
                await t.update(key, set={"Status": f"t{n % 3}"})
            else:
                await t.put({**key, "Status": f"s{n % 7}", "Total": n})
            n += 1
            await asyncio.sleep(0.002)

    writing = asyncio.create_task(writer())
    kills = 0
    try:
        for _ in range(KILLS):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                RUNNER,
                shared_storage_url,
                log,
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"running"
            await asyncio.sleep(rnd.uniform(0.01, 0.25))  # somewhere in the backfill
            if await _status(app) == "ACTIVE":
                proc.terminate()
                await proc.wait()
                break
            proc.kill()
            await proc.wait()
            kills += 1
        # one last process finishes it
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUNNER, shared_storage_url, log, stdout=asyncio.subprocess.PIPE
        )
        try:
            for _ in range(6000):
                if await _status(app) == "ACTIVE":
                    break
                await asyncio.sleep(0.02)
            assert await _status(app) == "ACTIVE"
            await asyncio.sleep(0.1)  # writes go on after the index is ACTIVE too
        finally:
            proc.terminate()
            await proc.wait()
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
