"""The item collection size limit of tables with local secondary indexes, on every engine.

The central property: after any sequence of writes, the size counter of every item
collection equals the real size of the collection — the sizes of the items with that
partition key value plus those of their local index entries — as reads see it.
"""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.records._values import item_size
from streamkit.storage._item_collections import collection_key
from streamkit.storage._keys import order_bytes
from streamkit.storage._sqlite import SqliteEngine

LSI_ALL = sk.LocalIndex("ByTotal", sort_key=("Total", "N"))
LSI_INCLUDE = sk.LocalIndex("ByItem", sort_key="Item", projection=["Note"])
GSI = sk.GlobalIndex("ByStatus", partition_key="Status")


async def _orders(app: sk.App, name: str = "Orders") -> sk.Table:
    return await app.create_table(
        name,
        partition_key="UserID",
        sort_key="OrderDate",
        local_indexes=[LSI_ALL, LSI_INCLUDE],
        global_indexes=[GSI],
    )


async def real_sizes(t: sk.Table) -> dict[bytes, int]:
    """Each partition's collection size as reads see it: items plus local index entries."""
    sizes: dict[bytes, int] = {}
    async for it in t.scan():
        pk = order_bytes(it["UserID"])
        sizes[pk] = sizes.get(pk, 0) + item_size(it)
    for ix in ("ByTotal", "ByItem"):
        async for e in t.scan(index=ix):
            pk = order_bytes(e["UserID"])
            sizes[pk] = sizes.get(pk, 0) + item_size(e)
    return sizes


async def counters(app: sk.App, t: sk.Table) -> dict[bytes, int]:
    """Each partition's collection size as the write path knows it: PostgreSQL's counter
    rows; on SQLite, the sizes the writer keeps (summed once, then kept up to date by
    the writes), each read by summing if the writer does not hold it."""
    spec = await t.spec()
    engine = app.store.engine
    if isinstance(engine, SqliteEngine):
        writer = engine._writer
        assert writer is not None and writer.rows is not None
        kept = {pk: n for (tid, pk), n in writer.rows._sizes.items() if tid == spec.table_id}
        partitions = set(await real_sizes(t)) - set(kept)

        def summed(rows: Any) -> dict[bytes, int]:
            return {pk: rows.collection_size(spec, pk) for pk in partitions}

        return {pk: n for pk, n in {**kept, **await engine.write_fn(summed)}.items() if n}
    prefix = collection_key(spec.table_id, b"")
    stored = await engine.meta_with_prefix(prefix)
    return {bytes.fromhex(k[len(prefix) :]): int(v) for k, v in stored.items() if int(v)}


def _random_item(rng: random.Random) -> dict[str, Any]:
    item: dict[str, Any] = {
        "UserID": rng.choice(["u1", "u2", "u3"]),
        "OrderDate": rng.choice(["d1", "d2", "d3", "d4"]),
    }
    if rng.random() < 0.7:
        item["Total"] = Decimal(rng.randint(0, 999))
    elif rng.random() < 0.3:
        item["Total"] = "not a number"  # a wrong LSI key type: the write is refused
    if rng.random() < 0.6:
        item["Item"] = rng.choice(["book", "pen", "lamp"])
    if rng.random() < 0.5:
        item["Note"] = "x" * rng.randint(0, 300)
    if rng.random() < 0.5:
        item["Other"] = "y" * rng.randint(0, 300)
    if rng.random() < 0.5:
        item["Status"] = rng.choice(["open", "done"])
    return item


async def _random_write(app: sk.App, t: sk.Table, rng: random.Random) -> None:
    kind = rng.choice(["put", "put", "update", "delete", "batch", "txn"])
    it = _random_item(rng)
    key = {"UserID": it["UserID"], "OrderDate": it["OrderDate"]}
    try:
        if kind == "put":
            await t.put(it)
        elif kind == "update":
            sets = {k: v for k, v in it.items() if k not in key}
            remove = [n for n in ("Note", "Total", "Item") if n not in sets and rng.random() < 0.3]
            if sets or remove:
                await t.update(key, set=sets or None, remove=remove or None)
        elif kind == "delete":
            await t.delete(key)
        elif kind == "batch":
            puts = {(i["UserID"], i["OrderDate"]): i for i in (_random_item(rng) for _ in range(3))}
            await t.batch_write(puts=list(puts.values()))
        else:
            async with app.transaction() as tx:
                tx.put(t, it)
                other = _random_item(rng)
                if (other["UserID"], other["OrderDate"]) != (it["UserID"], it["OrderDate"]):
                    tx.delete(t, {"UserID": other["UserID"], "OrderDate": other["OrderDate"]})
    except (sk.ValidationError, sk.TransactionCanceled):
        pass


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(3)])
async def test_the_counter_always_equals_the_real_collection_size(app: sk.App, seed: int) -> None:
    rng = random.Random(seed)
    t = await _orders(app)
    for step in range(60):
        await _random_write(app, t, rng)
        if step % 15 == 14:
            assert await counters(app, t) == await real_sizes(t)
    assert await counters(app, t) == await real_sizes(t)
    # a restore sets the counters of the restored table
    backup = await app.backup("Orders")
    copy = await app.restore_backup(backup.id, target="Copy")
    assert await counters(app, copy) == await real_sizes(copy) == await real_sizes(t)


async def test_a_table_without_local_indexes_keeps_no_counter(app: sk.App) -> None:
    t = await app.create_table("Plain", partition_key="id", global_indexes=[GSI])
    await t.put({"id": "a", "Status": "x"})
    spec = await t.spec()
    assert await app.store.engine.meta_with_prefix(collection_key(spec.table_id, b"")) == {}


@pytest.fixture
async def small_app(storage_url: str, tmp_path: Path) -> Any:
    application = sk.App(
        storage=storage_url, log=f"local://{tmp_path}/log", item_collection_limit=2_000
    )
    try:
        yield application
    finally:
        await application.close()


async def test_a_write_past_the_limit_is_refused_and_writes_nothing(small_app: sk.App) -> None:
    app = small_app
    t = await _orders(app, f"T{uuid.uuid4().hex[:6]}")
    note = "n" * 300
    written = 0
    with pytest.raises(sk.ItemCollectionSizeLimitExceeded) as err:
        for i in range(20):
            await t.put({"UserID": "u1", "OrderDate": f"d{i:02}", "Total": i, "Note": note})
            written += 1
    assert err.value.table == t.name
    assert err.value.key == {"UserID": "u1", "OrderDate": f"d{written:02}"}
    assert str(err.value) == "Collection size exceeded."
    # nothing of the refused write: no item, no index entry, the counter unchanged
    assert await t.get({"UserID": "u1", "OrderDate": f"d{written:02}"}) is None
    before = await counters(app, t)
    assert before == await real_sizes(t)
    assert 0 < before[order_bytes("u1")] <= 2_000
    # other partitions are separate collections
    await t.put({"UserID": "u2", "OrderDate": "d00", "Total": 1, "Note": note})
    # a write that does not grow the collection is allowed; one that grows it is not
    await t.update({"UserID": "u1", "OrderDate": "d00"}, set={"Note": "short"})
    with pytest.raises(sk.ItemCollectionSizeLimitExceeded):
        await t.batch_write(
            puts=[
                {"UserID": "u2", "OrderDate": "d01"},
                {"UserID": "u1", "OrderDate": "zz", "Note": note * 2},
            ]
        )
    assert await t.get({"UserID": "u2", "OrderDate": "d01"}) is None  # the batch is whole
    # in a transaction: cancelled, with the reason on the action that grew it
    with pytest.raises(sk.TransactionCanceled) as tx_err:
        async with app.transaction() as tx:
            tx.put(t, {"UserID": "u2", "OrderDate": "d02"})
            tx.put(t, {"UserID": "u1", "OrderDate": "zz", "Note": note * 2})
    codes = [r.code for r in tx_err.value.reasons]
    assert codes == ["None", "ItemCollectionSizeLimitExceeded"]
    # deleting frees room
    for i in range(written):
        await t.delete({"UserID": "u1", "OrderDate": f"d{i:02}"})
    await t.put({"UserID": "u1", "OrderDate": "zz", "Note": note * 2})
    assert await counters(app, t) == await real_sizes(t)


async def test_the_limit_must_be_positive() -> None:
    with pytest.raises(sk.ConfigurationError):
        sk.App(storage="memory://", item_collection_limit=0)


async def test_sqlite_sizes_follow_another_process_writes(tmp_path: Path) -> None:
    """Two stores on one SQLite file: each sees the other's writes in the sizes it
    checks (a size kept from before the other's commit is not trusted)."""
    url = f"sqlite:///{tmp_path}/shared.db"
    one = sk.App(storage=url, log=f"local://{tmp_path}/log1", item_collection_limit=2_000)
    two = sk.App(storage=url, log=f"local://{tmp_path}/log2", item_collection_limit=2_000)
    try:
        t1 = await _orders(one)
        t2 = two.table("Orders")
        note = "n" * 400
        await t1.put({"UserID": "u1", "OrderDate": "d1", "Total": 1, "Note": note})
        await t2.put({"UserID": "u1", "OrderDate": "d2", "Total": 2, "Note": note})
        # the first store's size of u1 (one item) is stale now: this write must be refused
        with pytest.raises(sk.ItemCollectionSizeLimitExceeded):
            await t1.put({"UserID": "u1", "OrderDate": "d3", "Total": 3, "Note": note})
        await t2.delete({"UserID": "u1", "OrderDate": "d2"})
        await t1.put({"UserID": "u1", "OrderDate": "d3", "Total": 3, "Note": note})
        assert await counters(one, t1) == await real_sizes(t1)
    finally:
        await one.close()
        await two.close()


async def test_sqlite_drops_the_counter_rows_of_earlier_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    app = sk.App(storage=url, log=f"local://{tmp_path}/log")
    try:
        t = await _orders(app)
        await t.put({"UserID": "u1", "OrderDate": "d1", "Total": 1})
        spec = await t.spec()
        await app.store.engine.write_meta({collection_key(spec.table_id, b"u1"): "999"})
    finally:
        await app.close()
    app = sk.App(storage=url, log=f"local://{tmp_path}/log")
    try:
        t = app.table("Orders")
        await t.put({"UserID": "u2", "OrderDate": "d1", "Total": 1})  # opens the store
        assert await app.store.engine.meta_with_prefix("collection/") == {}
        assert await counters(app, t) == await real_sizes(t)
    finally:
        await app.close()
