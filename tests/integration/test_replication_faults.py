"""Global tables under faults: a region down while 10,000 changes pile up in another,
then its replicator process killed with SIGKILL while it catches up, restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

import streamkit as sk
from tests.unit.replication.helpers import items, records, region_apps

US, EU = "us-east-1", "eu-west-1"
KEYS, CHANGES_PER_KEY = 100, 100  # 10,000 changes

_REGION = """
import asyncio, sys
import streamkit as sk

async def main() -> None:
    app = sk.App(storage=sys.argv[1], log=sys.argv[2], region=sys.argv[3])
    async with app.running(handlers=[]):
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def _replicated(app: sk.App) -> int:
    return sum(1 for r in await records(app, "Items") if r.origin_region == US)


async def _spawn(script: Path, app: sk.App, err: Path) -> asyncio.subprocess.Process:
    with err.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            app.storage_url,
            app.log_url,
            EU,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = (await proc.stdout.readline()).decode().strip()
    assert line == "ready", err.read_bytes()[-3000:]  # noqa: ASYNC240 - a failing test's report
    return proc


@pytest.mark.timeout(300)
async def test_a_region_down_catches_up_10000_changes_once_in_order_across_kill_9(
    tmp_path: Path,
) -> None:
    apps, logs = region_apps(tmp_path, (EU, US))
    us, eu = apps[US], apps[EU]
    for app in apps.values():
        await app.create_table("Items", partition_key="K", replicas=logs)
    await eu.close()  # the EU region is down: only its store file and log exist

    async def writer(key: int) -> None:
        t = us.table("Items")
        for n in range(CHANGES_PER_KEY):
            await t.put({"K": f"k{key:03d}", "n": n})

    script = tmp_path / "region.py"
    script.write_text(_REGION)
    err = tmp_path / "region.err"
    try:
        async with us.running(handlers=[]):
            await asyncio.gather(*(writer(k) for k in range(KEYS)))
            await us.drain(timeout=120)
            # the EU region comes back and catches up; killed -9 twice on the way
            for threshold in (1500, 6000):
                proc = await _spawn(script, eu, err)
                deadline = time.monotonic() + 120
                while await _replicated(eu) < threshold:
                    assert time.monotonic() < deadline, await _replicated(eu)
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            proc = await _spawn(script, eu, err)
            try:
                deadline = time.monotonic() + 180
                while await _replicated(eu) < KEYS * CHANGES_PER_KEY:
                    assert time.monotonic() < deadline, await _replicated(eu)
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # anything applied twice would show by now
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
            expected = await items(us, "Items")
        history = [r for r in await records(eu, "Items") if r.origin_region == US]
        final = await items(eu, "Items")
    finally:
        for app in apps.values():
            await app.close()
    # every change arrived, once
    assert len(history) == KEYS * CHANGES_PER_KEY
    assert len({(r.keys["K"], r.new_image["n"]) for r in history}) == len(history)  # type: ignore[index]
    # in per-item order
    by_key: dict[str, list[int]] = {}
    for r in history:
        by_key.setdefault(r.keys["K"], []).append(int(r.new_image["n"]))  # type: ignore[index]
    assert all(ns == list(range(CHANGES_PER_KEY)) for ns in by_key.values())
    assert final == expected


@pytest.mark.timeout(300)
async def test_a_region_killed_while_it_applies_a_seed_ends_with_every_item_once(
    tmp_path: Path,
) -> None:
    """A region joins a table holding 20,000 items; its process is killed with SIGKILL
    part-way through applying the seed (some items in, not all), twice; the next run
    applies the seed again (last-writer-wins: what is in already is a duplicate) and
    then the changes made after it."""
    apps, logs = region_apps(tmp_path, (EU, US))
    us, eu = apps[US], apps[EU]
    t = await us.create_table("Items", partition_key="K")
    items_n = 20_000
    for start in range(0, items_n, 25):
        await t.batch_write(puts=[{"K": f"k{i:05d}", "n": i} for i in range(start, start + 25)])
    await eu.create_table("Items", partition_key="K", replicas=logs)
    script = tmp_path / "region.py"
    script.write_text(_REGION)
    err = tmp_path / "region.err"

    async def copied() -> int:
        return len(await items(eu, "Items"))

    kills = 0
    try:
        async with us.running(handlers=[]):
            await us.update_table("Items", replicas=logs)  # publishes the seed
            for _ in range(2):
                proc = await _spawn(script, eu, err)
                deadline = time.monotonic() + 120
                while (n := await copied()) == 0:
                    assert time.monotonic() < deadline, "nothing copied"
                    await asyncio.sleep(0.01)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kills += n < items_n  # killed with the seed part-applied
            await t.put({"K": "after", "n": -1})  # a change after the seed
            proc = await _spawn(script, eu, err)
            try:
                deadline = time.monotonic() + 180
                while await copied() < items_n + 1:
                    assert time.monotonic() < deadline, await copied()
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # anything applied twice would show by now
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
            expected = await items(us, "Items")
        history = await records(eu, "Items")
        final = await items(eu, "Items")
    finally:
        for app in apps.values():
            await app.close()
    assert kills >= 1, "the seed was applied whole before a kill"
    assert final == expected
    # each item reached the region once: one INSERT per key
    assert sorted(r.keys["K"] for r in history) == sorted(expected)
    assert all(r.event_name == "INSERT" for r in history)
