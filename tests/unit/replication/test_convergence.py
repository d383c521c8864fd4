"""Three regions, each its own store and embedded log, writing at once: they converge
to the items last-writer-wins gives over the same history."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.records import TTL_IDENTITY
from streamkit.storage._versions import Version
from tests.unit.replication.helpers import (
    REGIONS,
    check_origins,
    converge,
    items,
    lww_reference,
    records,
    region_apps,
    versions,
)

KEYS = [f"k{i}" for i in range(6)]


async def workload(app: sk.App, region: str, seed: int, n: int) -> None:
    """Random puts, updates, deletes, conditional writes and transactions on a small
    key space (so the regions conflict)."""
    rnd = random.Random(seed)
    t = app.table("Items")
    for i in range(n):
        k = rnd.choice(KEYS)
        op = rnd.random()
        try:
            if op < 0.3:
                await t.put({"K": k, "v": rnd.randint(0, 1000), "who": region, "i": i})
            elif op < 0.55:
                await t.update(
                    {"K": k}, set={"v": rnd.randint(0, 1000), "by": region}, add={"n": 1}
                )
            elif op < 0.7:
                await t.delete({"K": k})
            elif op < 0.8:
                await t.update({"K": k}, set={"c": region}, condition=sk.attr("v").exists())
            else:
                a, b = rnd.sample(KEYS, 2)
                async with app.transaction() as tx:
                    tx.put(t, {"K": a, "tx": f"{region}-{i}"})
                    tx.update(t, {"K": b}, add={"n": 10})
        except (sk.ConditionFailed, sk.TransactionCanceled):
            pass
        await asyncio.sleep(rnd.random() * 0.004)


@pytest.mark.timeout(300)
async def test_three_regions_converge_to_last_writer_wins(tmp_path: Path) -> None:
    apps, peers = region_apps(tmp_path)
    for app in apps.values():
        await app.create_table("Items", partition_key="K", replicas=peers)
    us, eu, ap = apps["us-east-1"], apps["eu-west-1"], apps["ap-south-1"]
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(us.running(handlers=[]))
            await stack.enter_async_context(ap.running(handlers=[]))
            eu_run = eu.running(handlers=[])
            await eu_run.__aenter__()
            writers = [
                asyncio.create_task(workload(app, r, seed=j, n=150))
                for j, (r, app) in enumerate(apps.items())
            ]
            # stop eu's replicators (and relay) mid-way: its writes go on, replication
            # to and from it waits; then it starts again and catches up
            await asyncio.sleep(0.3)
            await eu_run.__aexit__(None, None, None)
            await asyncio.sleep(0.5)
            # ap's replicator from us only: killed (cancelled mid-chunk) and restarted
            rep = ap._replication.get("Items", "us-east-1")
            assert rep is not None and rep.task is not None
            rep.task.cancel()
            eu_run = eu.running(handlers=[])
            await eu_run.__aenter__()
            stack.push_async_callback(eu_run.__aexit__, None, None, None)
            await asyncio.gather(*writers)
            await converge(apps, "Items")
            final = {r: await items(a, "Items") for r, a in apps.items()}
            hidden = {r: await versions(a, "Items") for r, a in apps.items()}
            statuses = {r: await a.replication_status("Items") for r, a in apps.items()}
        history = {r: await records(a, "Items") for r, a in apps.items()}
    finally:
        for app in apps.values():
            await app.close()
    assert final["us-east-1"] == final["eu-west-1"] == final["ap-south-1"]
    assert final["us-east-1"] == lww_reference(history, "K")
    assert hidden["us-east-1"] == hidden["eu-west-1"] == hidden["ap-south-1"]
    check_origins(history, "K")
    # conflicts were resolved (a small key space, three writers) and counted
    assert sum(p["conflicts"] for s in statuses.values() for p in s["peers"]) > 0
    assert all(p["running"] for s in statuses.values() for p in s["peers"])


async def test_replicated_writes_are_not_replicated_again(tmp_path: Path) -> None:
    apps, peers = region_apps(tmp_path)
    for app in apps.values():
        await app.create_table("Items", partition_key="K", replicas=peers)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.running(handlers=[]))
            await apps["us-east-1"].table("Items").put({"K": "a", "v": 1})
            await apps["eu-west-1"].table("Items").put({"K": "b", "v": 2})
            await converge(apps, "Items")
            history = {r: await records(a, "Items") for r, a in apps.items()}
    finally:
        for app in apps.values():
            await app.close()
    for r in REGIONS:
        # exactly one record per write in every region: no loop, no echo
        assert sorted((x.origin_region, x.keys["K"]) for x in history[r]) == [
            ("eu-west-1", "b"),
            ("us-east-1", "a"),
        ]


async def test_handlers_can_take_only_local_writes(tmp_path: Path) -> None:
    apps, peers = region_apps(tmp_path, ("eu-west-1", "us-east-1"))
    us, eu = apps["us-east-1"], apps["eu-west-1"]
    seen: dict[str, list[str]] = {"local": [], "any": []}

    @eu.on_change("Items", origin="local")
    async def local_only(record: sk.ChangeRecord) -> None:
        seen["local"].append(record.keys["K"])

    @eu.on_change("Items")
    async def everything(record: sk.ChangeRecord) -> None:
        seen["any"].append(f"{record.keys['K']}@{record.origin_region}")

    for app in apps.values():
        await app.create_table("Items", partition_key="K", replicas=peers)
    try:
        async with us.running(handlers=[]), eu.running():
            await us.table("Items").put({"K": "from-us"})
            await eu.table("Items").put({"K": "from-eu"})
            await converge(apps, "Items")
    finally:
        for app in apps.values():
            await app.close()
    assert seen["local"] == ["from-eu"]
    assert sorted(seen["any"]) == ["from-eu@eu-west-1", "from-us@us-east-1"]


async def test_ttl_deletions_replicate_with_the_service_identity(tmp_path: Path) -> None:
    apps, peers = region_apps(tmp_path, ("eu-west-1", "us-east-1"), ttl_interval=0.05)
    us, eu = apps["us-east-1"], apps["eu-west-1"]
    for app in apps.values():
        await app.create_table("Items", partition_key="K", ttl_attribute="exp", replicas=peers)
    try:
        async with us.running(handlers=[]), eu.running(handlers=[], ttl=False):
            await us.table("Items").put({"K": "a", "exp": int(time.time()) - 10})  # expired
            for _ in range(100):
                if await items(us, "Items") == {}:
                    break
                await asyncio.sleep(0.05)
            await converge(apps, "Items")
            assert await items(eu, "Items") == {}
            eu_records = await records(eu, "Items")
    finally:
        for app in apps.values():
            await app.close()
    remove = [r for r in eu_records if r.event_name == "REMOVE"]
    assert len(remove) == 1
    assert remove[0].user_identity == TTL_IDENTITY
    assert remove[0].origin_region == "us-east-1"


def test_versions_order_by_time_then_region() -> None:
    assert Version(2, "a").beats(Version(1, "z"))
    assert Version(1, "b").beats(Version(1, "a"))
    assert Version(1, "a").beats(None)
