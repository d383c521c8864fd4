"""Global tables' hidden item versions and last-writer-wins, on every storage engine."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.records import TTL_IDENTITY, decode_record
from streamkit.records._avro import encode_image
from streamkit.records._values import item_size
from streamkit.replication import prune_tombstones
from streamkit.storage import _writes
from streamkit.storage._effects import Checkpoint
from streamkit.storage._versions import ReplicaOp, Version, decode_version, version_storage_id
from streamkit.storage._write_ops import ItemKey, WriteJob

US, EU = "us-east-1", "eu-west-1"


@pytest.fixture
async def us(storage_url: str, tmp_path: Path) -> AsyncIterator[sk.App]:
    app = sk.App(storage=storage_url, log=f"local://{tmp_path}/us", region=US)
    try:
        yield app
    finally:
        await app.close()


def peers(tmp_path: Path) -> dict[str, str]:
    return {US: f"local://{tmp_path}/us", EU: f"local://{tmp_path}/eu"}


async def users(app: sk.App, tmp_path: Path) -> sk.Table:
    return await app.create_table("Users", partition_key="UserID", replicas=peers(tmp_path))


async def version_of(app: sk.App, key: dict[str, Any]) -> Version | None:
    spec = await app.store.spec("Users")
    k = ItemKey.of(spec, key)
    got = await app.store.engine.get(version_storage_id(spec.table_id), k.pk, k.sk)
    return None if got is None else decode_version(got[0])[0]


async def records(app: sk.App) -> list[sk.ChangeRecord]:
    return [decode_record(r.record) for r in await app.store.read_changes(0, 1000)]


def replica(
    spec: Any, key: dict[str, Any], ts: int, region: str, item: dict[str, Any] | None, **kw: Any
) -> ReplicaOp:
    data = None if item is None else encode_image(item)
    size = 0 if item is None else item_size(item)
    v = Version(ts, region, item is None)
    return ReplicaOp(spec, ItemKey.of(spec, key), v, item, data, size, **kw)


async def test_local_writes_keep_a_hidden_version_and_say_where_they_happened(
    us: sk.App, tmp_path: Path
) -> None:
    t = await users(us, tmp_path)
    before = int(time.time() * 1000)
    await t.put({"UserID": "1", "Name": "a"})
    assert await t.get({"UserID": "1"}) == {"UserID": "1", "Name": "a"}  # not in the item
    v = await version_of(us, {"UserID": "1"})
    assert v is not None and v.region == US and not v.tombstone and v.ts >= before
    [rec] = await records(us)
    assert rec.origin_region == US == rec.origin
    assert rec.created_at_ms == v.ts  # the version travels as the record's time
    await t.delete({"UserID": "1"})
    tomb = await version_of(us, {"UserID": "1"})
    assert tomb is not None and tomb.tombstone and tomb.ts > v.ts
    # a write that changes nothing is no change: no record, no new version
    await t.put({"UserID": "2", "Name": "b"})
    v2 = await version_of(us, {"UserID": "2"})
    await t.put({"UserID": "2", "Name": "b"})
    assert await version_of(us, {"UserID": "2"}) == v2
    assert len(await records(us)) == 3


async def test_a_newer_peer_write_applies_an_older_one_is_a_counted_conflict(
    us: sk.App, tmp_path: Path
) -> None:
    t = await users(us, tmp_path)
    spec = await us.store.spec("Users")
    key = {"UserID": "1"}
    await t.put({"UserID": "1", "Name": "local"})
    local = await version_of(us, key)
    assert local is not None
    counter = "replication.test.conflicts"
    older = replica(
        spec, key, local.ts - 5, EU, {"UserID": "1", "Name": "old"}, counter_key=counter
    )
    await us.store.commit_effects([older], [Checkpoint("runtime.r.0.0", 0, 1)], US)
    assert older.outcome == "conflict"
    assert await t.get(key) == {"UserID": "1", "Name": "local"}
    assert (await us.store.read_meta((counter,)))[counter] == "1"
    newer = replica(spec, key, local.ts + 5, EU, {"UserID": "1", "Name": "eu"}, counter_key=counter)
    await us.store.commit_effects([newer], [Checkpoint("runtime.r.0.0", 1, 2)], US)
    assert newer.outcome == "applied"
    assert await t.get(key) == {"UserID": "1", "Name": "eu"}
    assert await version_of(us, key) == Version(local.ts + 5, EU)
    recs = await records(us)
    assert [r.event_name for r in recs] == ["INSERT", "MODIFY"]
    assert recs[-1].origin_region == EU  # the stream says where the write happened
    # the same version again: a duplicate, neither applied nor a conflict
    again = replica(spec, key, local.ts + 5, EU, {"UserID": "1", "Name": "eu"}, counter_key=counter)
    await us.store.write(WriteJob([again]))
    assert again.outcome == "duplicate"
    assert (await us.store.read_meta((counter,)))[counter] == "1"
    # ties on the timestamp: the greater region name wins, everywhere
    assert Version(10, "us-east-1").beats(Version(10, "eu-west-1"))
    assert not Version(10, "eu-west-1").beats(Version(10, "us-east-1"))


async def test_a_tombstone_stops_a_late_older_write_from_resurrecting(
    us: sk.App, tmp_path: Path
) -> None:
    t = await users(us, tmp_path)
    spec = await us.store.spec("Users")
    key = {"UserID": "1"}
    await t.put({"UserID": "1", "Name": "x"})
    await t.delete(key)
    tomb = await version_of(us, key)
    assert tomb is not None and tomb.tombstone
    late = replica(spec, key, tomb.ts - 1, EU, {"UserID": "1", "Name": "late"})
    await us.store.write(WriteJob([late]))
    assert late.outcome == "conflict" and await t.get(key) is None
    # a replicated delete of an absent item keeps a (newer) tombstone and writes no record
    n = len(await records(us))
    gone = replica(spec, {"UserID": "9"}, tomb.ts, EU, None)
    await us.store.write(WriteJob([gone]))
    assert gone.outcome == "applied"
    assert await version_of(us, {"UserID": "9"}) == Version(tomb.ts, EU, True)
    assert len(await records(us)) == n
    # pruned after the horizon, and only then
    assert await prune_tombstones(us.store, spec, before_ms=tomb.ts - 10) == 0
    assert await prune_tombstones(us.store, spec, before_ms=tomb.ts + 10) == 2
    assert await version_of(us, key) is None


async def test_a_replicated_ttl_deletion_keeps_the_service_identity(
    us: sk.App, tmp_path: Path
) -> None:
    t = await users(us, tmp_path)
    spec = await us.store.spec("Users")
    await t.put({"UserID": "1"})
    v = await version_of(us, {"UserID": "1"})
    assert v is not None
    op = replica(spec, {"UserID": "1"}, v.ts + 1, EU, None, identity=TTL_IDENTITY)
    await us.store.write(WriteJob([op]))
    rec = (await records(us))[-1]
    assert rec.event_name == "REMOVE" and rec.user_identity == TTL_IDENTITY
    assert rec.origin_region == EU


async def test_a_clock_that_jumps_backwards_still_writes_newer_versions(
    us: sk.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await users(us, tmp_path)
    await t.put({"UserID": "1", "n": 1})
    first = await version_of(us, {"UserID": "1"})
    assert first is not None
    hour_ago = time.time_ns() - 3600 * 10**9
    monkeypatch.setattr(_writes.time, "time_ns", lambda: hour_ago)
    await t.put({"UserID": "1", "n": 2})
    second = await version_of(us, {"UserID": "1"})
    assert second is not None and second.ts == first.ts + 1
    assert second.beats(first)


async def test_deleting_a_table_deletes_its_versions(us: sk.App, tmp_path: Path) -> None:
    t = await users(us, tmp_path)
    await t.put({"UserID": "1"})
    spec = await us.store.spec("Users")
    await us.delete_table("Users")
    k = ItemKey.of(spec, {"UserID": "1"})
    assert await us.store.engine.get(version_storage_id(spec.table_id), k.pk, k.sk) is None


async def test_tables_without_replicas_keep_no_versions(us: sk.App) -> None:
    t = await us.create_table("Plain", partition_key="k")
    await t.put({"k": "1"})
    spec = await us.store.spec("Plain")
    k = ItemKey.of(spec, {"k": "1"})
    assert await us.store.engine.get(version_storage_id(spec.table_id), k.pk, k.sk) is None
    [row] = await us.store.read_changes(0, 10)
    assert decode_record(row.record).origin_region == US
