"""A region added to a global table that holds items: a seed (a consistent copy of the
items and their versions) through each peer's log, then the peers' changes after it —
no gap, no duplicate — while every region keeps writing."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from streamkit._names import group_snapshot_key
from streamkit.replication._config import replicator_name
from streamkit.runtime._worker import group_name
from tests.unit.replication.helpers import (
    check_origins,
    converge,
    items,
    lww_reference,
    records,
    region_apps,
    versions,
)
from tests.unit.replication.test_convergence import workload

AP, EU, US = "ap-south-1", "eu-west-1", "us-east-1"


@pytest.mark.timeout(180)
async def test_a_region_joins_a_table_in_use_with_no_gap_and_no_duplicate(
    tmp_path: Path,
) -> None:
    apps, peers = region_apps(tmp_path)
    eu, us, ap = apps[EU], apps[US], apps[AP]
    two = {r: peers[r] for r in (EU, US)}
    for app in (eu, us):
        await app.create_table("Items", partition_key="K", replicas=two)
    kept = [f"old{i}" for i in range(0, 120, 2)]
    gone = [f"old{i}" for i in range(1, 120, 2)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for app in (eu, us):
                await stack.enter_async_context(app.running(handlers=[]))
            # history before the join: items written twice, items deleted (tombstones),
            # and conflicting writes on the workload's keys
            for i, k in enumerate(kept + gone):
                writer = (eu, us)[i % 2]
                await writer.table("Items").put({"K": k, "v": 1})
                await writer.table("Items").update({"K": k}, set={"v": 2})
            for k in gone:
                await us.table("Items").delete({"K": k})
            await asyncio.gather(workload(eu, EU, seed=1, n=40), workload(us, US, seed=2, n=40))
            await converge({EU: eu, US: us}, "Items")

            # the new region joins while both keep writing
            await ap.create_table("Items", partition_key="K", replicas=peers)
            await stack.enter_async_context(ap.running(handlers=[]))
            writers = asyncio.gather(
                workload(eu, EU, seed=3, n=60),
                workload(us, US, seed=4, n=60),
                workload(ap, AP, seed=5, n=30),
            )
            await eu.update_table("Items", replicas=peers)
            await asyncio.sleep(0.05)
            await us.update_table("Items", replicas=peers)
            await writers
            await converge(apps, "Items")
            final = {r: await items(a, "Items") for r, a in apps.items()}
            hidden = {r: await versions(a, "Items") for r, a in apps.items()}
            statuses = {r: await a.replication_status("Items") for r, a in apps.items()}
        history = {r: await records(a, "Items") for r, a in apps.items()}
        snapshots = {
            peer: await ap.store.engine.read_meta(
                [group_snapshot_key(group_name(ap.namespace, "Items", replicator_name(peer, AP)))]
            )
            for peer in (EU, US)
        }
    finally:
        for app in apps.values():
            await app.close()

    assert final[US] == final[EU] == final[AP]
    assert final[US] == lww_reference(history, "K")
    assert hidden[US] == hidden[EU] == hidden[AP]  # tombstones and versions copied too
    check_origins(history, "K")
    for k in kept:
        assert final[AP][k]["v"] == 2
        # one record each: the seed's copy of its last state, not its history replayed
        # (replaying the peer's log would give an INSERT and a MODIFY)
        got = [(r.event_name, r.new_image) for r in history[AP] if r.keys["K"] == k]
        assert got == [("INSERT", {"K": k, "v": 2})], (k, got)
    for k in gone:
        assert k not in final[AP]
        assert not [r for r in history[AP] if r.keys["K"] == k], k
    # each peer's seed position is stored with its replicator's checkpoints
    assert all(len(s) == 1 and int(next(iter(s.values()))) > 0 for s in snapshots.values())
    assert all(p["error"] is None for s in statuses.values() for p in s["peers"])


async def test_a_regional_table_with_items_becomes_global(tmp_path: Path) -> None:
    apps, peers = region_apps(tmp_path, (EU, US))
    eu, us = apps[EU], apps[US]
    try:
        t = await eu.create_table("Items", partition_key="K")
        for i in range(50):
            await t.put({"K": f"k{i}", "n": i})  # no version rows: written while regional
        await us.create_table("Items", partition_key="K", replicas=peers)
        async with eu.running(handlers=[]), us.running(handlers=[]):
            await eu.update_table("Items", replicas=peers)
            await us.table("Items").put({"K": "k1", "n": -1})  # newer than the copy
            await converge(apps, "Items")
            final = {r: await items(a, "Items") for r, a in apps.items()}
            status = await us.replication_status("Items")
    finally:
        for app in apps.values():
            await app.close()
    assert final[EU] == final[US]
    assert len(final[US]) == 50 and final[US]["k1"]["n"] == -1
    assert final[US]["k7"] == {"K": "k7", "n": 7}
    # the copy is no conflict (only writes that lost to newer ones are)
    assert [p["conflicts"] for p in status["peers"]] == [0]


async def test_a_joining_region_waits_for_a_pending_seed(tmp_path: Path) -> None:
    apps, peers = region_apps(tmp_path, (EU, US))
    eu, us = apps[EU], apps[US]
    try:
        t = await eu.create_table("Items", partition_key="K")
        await t.put({"K": "a"})
        await eu.update_table("Items", replicas=peers)  # the seed is published by running()
        await us.create_table("Items", partition_key="K", replicas=peers)
        async with us.running(handlers=[]):
            await asyncio.sleep(0.3)  # eu is not running: nothing published, us waits
            assert await items(us, "Items") == {}
            async with eu.running(handlers=[]):
                await converge(apps, "Items")
                assert await items(us, "Items") == {"a": {"K": "a"}}
    finally:
        for app in apps.values():
            await app.close()
