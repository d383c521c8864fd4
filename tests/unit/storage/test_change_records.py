"""PRODUCT.md section 4: which writes emit which change records, with which images."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

import streamkit as sk
from tests.unit.storage.helpers import committed_records

pytestmark = pytest.mark.asyncio


async def test_insert_modify_remove_with_images(app: sk.App) -> None:
    t = await app.create_table("Users", partition_key="UserID")
    await t.put({"UserID": "1", "Name": "A"})
    await t.put({"UserID": "1", "Name": "B", "Age": 3})
    await t.delete({"UserID": "1"})
    ins, mod, rem = await committed_records(app)
    assert (ins.event_name, mod.event_name, rem.event_name) == ("INSERT", "MODIFY", "REMOVE")
    assert ins.old_image is None and ins.new_image == {"UserID": "1", "Name": "A"}
    assert mod.old_image == {"UserID": "1", "Name": "A"}
    assert mod.new_image == {"UserID": "1", "Name": "B", "Age": Decimal(3)}
    assert set(mod.changed or ()) == {"Name", "Age"}
    assert (
        rem.old_image == {"UserID": "1", "Name": "B", "Age": Decimal(3)} and rem.new_image is None
    )
    assert all(r.keys == {"UserID": "1"} for r in (ins, mod, rem))
    assert ins.sequence_number < mod.sequence_number < rem.sequence_number
    assert all(r.table == "Users" and r.origin == app.region for r in (ins, mod, rem))
    assert all(r.view_type == sk.StreamView.NEW_AND_OLD_IMAGES for r in (ins, mod, rem))
    assert len({r.event_id for r in (ins, mod, rem)}) == 3
    assert all(r.size_bytes > 0 and r.created_at.tzinfo is not None for r in (ins, mod, rem))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            {"k": "a", "m": {"x": 1, "y": 2}}, {"k": "a", "m": {"y": 2, "x": 1}}, id="map-order"
        ),
        pytest.param({"k": "a", "n": 1}, {"k": "a", "n": Decimal("1.0")}, id="number-spelling"),
        pytest.param({"k": "a", "n": 1}, {"k": "a", "n": 1.0}, id="float-int"),
        pytest.param({"k": "a", "s": {1, 2}}, {"k": "a", "s": {2.0, 1}}, id="set-order"),
        pytest.param({"k": "a", "v": 1, "w": "x"}, {"w": "x", "k": "a", "v": 1}, id="attr-order"),
    ],
)
async def test_semantically_equal_put_emits_nothing(
    app: sk.App, first: dict[str, object], second: dict[str, object]
) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.put(first)
    await t.put(second)
    assert [r.event_name for r in await committed_records(app)] == ["INSERT"]


async def test_no_op_writes_emit_nothing(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.put({"k": "a", "v": 1})
    await t.update({"k": "a"}, set={"v": 1})  # same value
    await t.update({"k": "a"}, remove=["absent"])  # remove of an absent attribute
    await t.delete({"k": "nobody"})  # delete of an absent item
    await t.update({"k": "a"}, expression="SET v = v + :z", values={":z": 0})
    with pytest.raises(sk.ConditionFailed):
        await t.put({"k": "a", "v": 2}, condition="attribute_not_exists(k)")
    assert [r.event_name for r in await committed_records(app)] == ["INSERT"]


async def test_bool_and_number_are_different(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.put({"k": "a", "v": True})
    await t.put({"k": "a", "v": 1})
    await t.put({"k": "a", "v": {"x": [1]}})
    await t.put({"k": "a", "v": {"x": [True]}})
    assert [r.event_name for r in await committed_records(app)] == [
        "INSERT",
        "MODIFY",
        "MODIFY",
        "MODIFY",
    ]


async def test_update_of_missing_item_is_insert_also_in_transaction(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.update({"k": "a"}, set={"v": 1})
    async with app.transaction() as tx:
        tx.update(t, {"k": "b"}, add={"n": 1})
        tx.put(t, {"k": "a", "v": 2})
    recs = await committed_records(app)
    assert [(r.event_name, r.keys["k"]) for r in recs] == [
        ("INSERT", "a"),
        ("INSERT", "b"),
        ("MODIFY", "a"),
    ]


@pytest.mark.parametrize(
    ("view", "has_new", "has_old"),
    [
        pytest.param(sk.StreamView.KEYS_ONLY, False, False, id="keys-only"),
        pytest.param(sk.StreamView.NEW_IMAGE, True, False, id="new"),
        pytest.param(sk.StreamView.OLD_IMAGE, False, True, id="old"),
        pytest.param(sk.StreamView.NEW_AND_OLD_IMAGES, True, True, id="both"),
    ],
)
async def test_images_follow_view_type(
    app: sk.App, view: sk.StreamView, has_new: bool, has_old: bool
) -> None:
    t = await app.create_table("Things", partition_key="k", stream=view)
    await t.put({"k": "a", "v": 1})
    await t.put({"k": "a", "v": 2})
    (_, mod) = await committed_records(app)
    assert mod.view_type == view
    assert (mod.new_image is not None) == has_new
    assert (mod.old_image is not None) == has_old
    assert mod.keys == {"k": "a"}


async def test_ttl_deletion_carries_service_identity(app: sk.App) -> None:
    t = await app.create_table("Sessions", partition_key="k", ttl_attribute="exp")
    await t.put({"k": "a", "exp": int(time.time()) - 1})
    await t.delete({"k": "zzz"})
    assert await app.sweep_expired() == 1
    rem = (await committed_records(app))[-1]
    assert rem.event_name == "REMOVE"
    assert rem.user_identity is not None
    assert (rem.user_identity.type, rem.user_identity.principal) == ("Service", "streamkit.ttl")
    assert rem.to_dynamodb_json()["userIdentity"] == {
        "type": "Service",
        "principalId": "dynamodb.amazonaws.com",
    }


async def test_transaction_records_share_a_transaction_marker(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.put({"k": "solo"})
    async with app.transaction() as tx:
        tx.put(t, {"k": "a"})
        tx.put(t, {"k": "b"})
    rows = await app._store.read_changes(0, 100)
    assert rows[0].txn is None
    assert rows[1].txn is not None and rows[1].txn == rows[2].txn


async def test_stream_none_with_pitr_keeps_archive_but_does_not_publish(app: sk.App) -> None:
    t = await app.create_table("Quiet", partition_key="k", stream=None)
    await t.put({"k": "a"})
    rows = await app._store.read_changes(0, 100)
    assert len(rows) == 1 and rows[0].publish is False
    t2 = await app.create_table("Nothing", partition_key="k", stream=None, pitr=False)
    await t2.put({"k": "a"})
    assert len(await app._store.read_changes(0, 100)) == 1


async def test_sequence_numbers_strictly_increase_under_concurrency(app: sk.App) -> None:
    import asyncio

    t = await app.create_table("Things", partition_key="k")

    async def writer(w: int) -> None:
        for i in range(20):
            await t.put({"k": f"{w}", "i": i})

    await asyncio.gather(*(writer(w) for w in range(10)))
    recs = await committed_records(app)
    assert len(recs) == 200
    seqs = [r.sequence_number for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 200
    for w in range(10):  # per item: commit order is write order
        mine = [r.new_image["i"] for r in recs if r.keys["k"] == str(w)]  # type: ignore[index]
        assert mine == list(range(20))


async def test_archive_pruning_keeps_what_recovery_and_the_relay_need(app: sk.App) -> None:
    kept = await app.create_table("Kept", partition_key="k")  # PITR, 35 days
    brief = await app.create_table("Brief", partition_key="k", pitr=False)
    for i in range(3):
        await kept.put({"k": str(i)})
        await brief.put({"k": str(i)})
    rows = await app._store.read_changes(0, 100)
    last = rows[-1].seq
    later = rows[-1].created_ms + 1
    # nothing is published yet: the outbox keeps everything
    assert await app._store.prune_archive(published_upto=0, now_ms=later) == 0
    # published: the non-PITR table's rows go, except the newest row of all
    deleted = await app._store.prune_archive(published_upto=last, now_ms=later)
    remaining = await app._store.read_changes(0, 100)
    assert deleted == 2
    assert [r.table for r in remaining] == ["Kept", "Kept", "Kept", "Brief"]
    assert remaining[-1].seq == last
    # past the 35-day window a PITR table keeps one row per live item (compaction):
    # these three items have one row each, so nothing goes
    far = later + 36 * 86_400_000
    assert await app._store.prune_archive(published_upto=last, now_ms=far) == 0
    # an item changed twice keeps only its newest row; a deleted item keeps none
    await kept.put({"k": "0", "v": 1})
    await kept.put({"k": "0", "v": 2})
    await kept.delete({"k": "1"})
    await brief.put({"k": "after"})  # the newest row of all
    rows = await app._store.read_changes(0, 100)
    last = rows[-1].seq
    far = rows[-1].created_ms + 36 * 86_400_000
    assert await app._store.prune_archive(published_upto=last, now_ms=far) == 5
    remaining = await app._store.read_changes(0, 100)
    assert [(r.table, r.event) for r in remaining] == [
        ("Kept", "INSERT"),  # item 2, unchanged
        ("Kept", "MODIFY"),  # item 0's newest
        ("Brief", "INSERT"),  # the newest row of all stays
    ]
    assert remaining[-1].seq == last
    await brief.put({"k": "new"})
    assert (await app._store.read_changes(0, 100))[-1].seq == last + 1
