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
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.history._archive import start_pitr

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
    t = await app.create_table(
        "Orders", partition_key="UserID", sort_key="OrderDate", pitr=False, stream=None
    )
    items = [
        {"UserID": f"u{i % 97}", "OrderDate": f"{i:06d}", "Status": f"s{i % 5}", "Total": i}
        for i in range(20000)
    ]
    for start in range(0, len(items), 25):
        await t.batch_write(puts=items[start : start + 25])
    # PITR is turned on here (ENABLING); only the runner processes seed the archive
    assert (await start_pitr(app.store, "Orders")).pitr_enabling
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
            await asyncio.sleep(rnd.uniform(0.01, 0.25))  # somewhere in the seeding
            if not await _enabling(app):
                proc.terminate()
                await proc.wait()
                break
            proc.kill()
            await proc.wait()
            kills += 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUNNER, shared_storage_url, log, stdout=asyncio.subprocess.PIPE
        )
        try:
            for _ in range(6000):
                if not await _enabling(app):
                    break
                await asyncio.sleep(0.02)
            assert not await _enabling(app)
            await asyncio.sleep(0.1)  # writes go on after PITR is ENABLED too
        finally:
            proc.terminate()
            await proc.wait()
    finally:
        stop.set()
        await writing
    await asyncio.sleep(0.01)
    restored = await app.restore_to_time("Orders", at=datetime.now(UTC), target="Restored")
    want = {(i["UserID"], i["OrderDate"]): i async for i in t.scan()}
    got = {(i["UserID"], i["OrderDate"]): i async for i in restored.scan()}
    assert got == want, f"seed {SEED}, {kills} kills"
    await app.close()
