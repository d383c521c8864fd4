"""A restore killed by SIGKILL part-way leaves nothing behind, on SQLite and PostgreSQL.

A restore is one transaction that reads its source and writes the new table a chunk at
a time. Here a process restoring a 20,000-item table is killed at a random moment
inside the restore (timed from a restore measured first, so the kill lands among its
chunks), again and again: every time the target is absent and the source unchanged,
and the store takes writes; then a restore runs to the end and equals the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import streamkit as sk
from tests.integration.kill_harness import orders

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("STREAMKIT_FAULT_KILLS", "4"))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))

RESTORER = """
import asyncio
import sys
from datetime import UTC, datetime

import streamkit as sk


async def main() -> None:
    async with sk.App(storage=sys.argv[1], log=sys.argv[2]) as app:
        await app.open()
        print("restoring", flush=True)
        await app.restore_to_time("Orders", at=datetime.now(UTC), target="Restored")
        print("restored", flush=True)


asyncio.run(main())
"""


async def _items(t: sk.Table) -> dict[tuple[str, str], dict[str, object]]:
    return {(str(i["UserID"]), str(i["OrderDate"])): i async for i in t.scan()}


@pytest.mark.timeout(300)
async def test_a_restore_killed_part_way_leaves_no_table_and_loses_nothing(
    shared_storage_url: str, tmp_path: Path
) -> None:
    rnd = random.Random(SEED)
    log = f"local://{tmp_path}/log"
    app = sk.App(storage=shared_storage_url, log=log)
    t = await orders(app, stream=None, recovery_days=1)
    want = await _items(t)
    started = time.perf_counter()
    probe = await app.restore_to_time("Orders", at=datetime.now(UTC), target="Probe")
    took = time.perf_counter() - started
    assert await _items(probe) == want
    await app.delete_table("Probe")

    mid_restore = 0
    for k in range(KILLS):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RESTORER, shared_storage_url, log, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"restoring"
        await asyncio.sleep(rnd.uniform(0.15, 0.85) * took)  # among the restore's chunks
        with contextlib.suppress(ProcessLookupError):  # it may have ended already
            proc.kill()
        await proc.wait()
        if b"restored" in await proc.stdout.read():  # what it printed before the kill
            await app.delete_table("Restored")  # it ended before the kill: try again
            continue
        mid_restore += 1
        await app.store.reload()
        names = await app.list_tables()
        assert "Restored" not in names, f"seed {SEED}, kill {k}: a half-made table"
        assert await _items(t) == want, f"seed {SEED}, kill {k}"
        await t.put({"UserID": "after", "OrderDate": f"{k:06d}"})  # the store takes writes
        want[("after", f"{k:06d}")] = {"UserID": "after", "OrderDate": f"{k:06d}"}
    assert mid_restore >= 1, f"seed {SEED}: every restore ended before its kill"

    restored = await app.restore_to_time("Orders", at=datetime.now(UTC), target="Restored")
    assert await _items(restored) == want, f"seed {SEED}, {mid_restore} kills mid-restore"
    await app.close()
