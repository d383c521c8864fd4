"""Secondary indexes on every storage engine: reads, writes, backfill, restore.

The central property: after any sequence of writes, deletes, transactions, TTL
expiries, backfills and restores, every index holds exactly the table's items that
have its key attributes, projected as it says, in its key order.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.storage._keys import order_bytes
from tests import postgres_env

GSI = sk.GlobalIndex("ByStatus", partition_key="Status", sort_key=("Total", "N"))
GSI_KEYS = sk.GlobalIndex("ByItem", partition_key="Item", projection="KEYS_ONLY")
LSI = sk.LocalIndex("ByTotal", sort_key=("Total", "N"), projection=["Item"])
# DynamoDB's multi-attribute keys: two partition key and two sort key attributes
PAIR = sk.GlobalIndex(
    "ByPair",
    partition_key=["Status", "Item"],
    sort_key=[("Total", "N"), "OrderDate"],
    projection=["Other"],
)


async def orders_table(app: sk.App, *, composite: bool = False, **kw: Any) -> sk.Table:
    return await app.create_table(
        "Orders",
        partition_key="UserID",
        sort_key="OrderDate",
        global_indexes=[GSI, GSI_KEYS, *([PAIR] if composite else [])],
        local_indexes=[LSI],
        ttl_attribute="Expires",
        **kw,
    )


def expected_entries(items: list[dict[str, Any]], index: str) -> list[dict[str, Any]]:
    """The model: what an index must hold, in the order a scan of it returns."""
    table_keys = ("UserID", "OrderDate")
    if index == "ByPair":
        return _expected_pairs(items)
    if index == "ByStatus":
        pk, sk_, attrs = "Status", "Total", None
    elif index == "ByItem":
        pk, sk_, attrs = "Item", None, {"UserID", "OrderDate", "Item"}
    elif index == "ByOther":  # added to a table in use (backfilled)
        pk, sk_, attrs = "Other", None, {"UserID", "OrderDate", "Other"}
    else:
        pk, sk_, attrs = "UserID", "Total", {"UserID", "OrderDate", "Total", "Item"}
    pk_type = Decimal if index == "ByOther" else str
    out = []
    for it in items:
        if pk not in it or (sk_ is not None and sk_ not in it):
            continue
        if not isinstance(it[pk], pk_type) or (
            sk_ is not None and not isinstance(it[sk_], Decimal)
        ):
            continue
        out.append(it if attrs is None else {k: v for k, v in it.items() if k in attrs})

    def order(it: dict[str, Any]) -> tuple[bytes, ...]:
        return (
            order_bytes(it[pk]),
            b"" if sk_ is None else order_bytes(it[sk_]),
            *(order_bytes(it[k]) for k in table_keys),
        )

    return sorted(out, key=order)


def _expected_pairs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model of ByPair: items with all four key attributes, in the order of their
    partition key attributes, then sort key attributes, then the table's key."""
    keys = ("Status", "Item", "Total", "OrderDate")
    attrs = {"UserID", "OrderDate", "Status", "Item", "Total", "Other"}
    out = [
        {k: v for k, v in it.items() if k in attrs}
        for it in items
        if all(k in it for k in keys) and isinstance(it["Total"], Decimal)
    ]
    return sorted(out, key=lambda it: tuple(order_bytes(it[k]) for k in (*keys, "UserID")))


async def index_contents(t: sk.Table, index: str) -> list[dict[str, Any]]:
    return [x async for x in t.scan(index=index)]


async def assert_indexes_match(t: sk.Table) -> None:
    items = [x async for x in t.scan()]
    names = [ix.name for ix in (await t.spec()).indexes]
    for name in names:
        got = await index_contents(t, name)
        want = expected_entries(items, name)
        # a scan of an index returns entries in (partition bytes, sort bytes) order within
        # the segment; compare as sorted lists of the model's order
        assert sorted(got, key=repr) == sorted(want, key=repr), name
        # and per partition, a query returns them in index sort order
        if name == "ByPair":  # a partition is the values of both partition key attributes
            for pair in {(w["Status"], w["Item"]) for w in want}:
                q = [x async for x in t.query(pair, index=name)]
                assert q == [w for w in want if (w["Status"], w["Item"]) == pair], pair
            continue
        key = {"ByStatus": "Status", "ByItem": "Item", "ByOther": "Other"}.get(name, "UserID")
        for part in {w[key] for w in want}:
            q = [x async for x in t.query(part, index=name)]
            assert q == [w for w in want if w[key] == part], (name, part)


# --- reads ----------------------------------------------------------------------------
async def test_query_a_global_index_with_sort_conditions_reverse_and_paging(app: sk.App) -> None:
    t = await orders_table(app)
    for i in range(12):
        await t.put(
            {
                "UserID": f"u{i % 3}",
                "OrderDate": f"2026-01-{i:02d}",
                "Status": "SHIPPED" if i % 2 else "NEW",
                "Total": i * 10,
                "Item": f"x{i}",
            }
        )
    got = [
        x["Total"] async for x in t.query("SHIPPED", index="ByStatus", sort=sk.key("Total").gt(30))
    ]
    assert got == [50, 70, 90, 110]
    got = [
        x["Total"]
        async for x in t.query(
            "SHIPPED", index="ByStatus", sort=sk.key("Total").lte(30), reverse=True
        )
    ]
    assert got == [30, 10]
    got = [
        x["Total"]
        async for x in t.query("SHIPPED", index="ByStatus", sort=sk.key("Total").between(30, 70))
    ]
    assert got == [30, 50, 70]
    # string key condition, filter on a non-key attribute
    page = await t.query_page(
        key_condition="#s = :s AND #t >= :t",
        filter="begins_with(#i, :x)",
        names={"#s": "Status", "#t": "Total", "#i": "Item"},
        values={":s": "NEW", ":t": 0, ":x": "x1"},
        index="ByStatus",
    )
    assert [x["Item"] for x in page.items] == ["x10"]
    # paging: LastEvaluatedKey carries the index's and the table's key attributes
    seen: list[Any] = []
    start = None
    while True:
        p = await t.query_page("SHIPPED", index="ByStatus", limit=2, start_key=start)
        seen.extend(x["Total"] for x in p.items)
        if p.last_key is None:
            break
        assert set(p.last_key) == {"UserID", "OrderDate", "Status", "Total"}
        start = p.last_key
    assert seen == [10, 30, 50, 70, 90, 110]
    # the same backwards
    seen = []
    start = None
    while True:
        p = await t.query_page("SHIPPED", index="ByStatus", limit=4, start_key=start, reverse=True)
        seen.extend(x["Total"] for x in p.items)
        if p.last_key is None:
            break
        start = p.last_key
    assert seen == [110, 90, 70, 50, 30, 10]


async def test_index_keys_need_not_be_unique_and_sort_by_the_table_key(app: sk.App) -> None:
    t = await orders_table(app)
    for u in ("b", "a", "c"):
        await t.put({"UserID": u, "OrderDate": "d1", "Status": "S", "Total": 5, "Item": "same"})
    got = [x["UserID"] async for x in t.query("S", index="ByStatus")]
    assert got == ["a", "b", "c"]
    got = [x async for x in t.query("same", index="ByItem")]
    assert got == [{"UserID": u, "OrderDate": "d1", "Item": "same"} for u in ("a", "b", "c")]


async def test_sparse_index_and_wrong_type_refused(app: sk.App) -> None:
    t = await orders_table(app)
    await t.put({"UserID": "u", "OrderDate": "1"})  # no index attribute: in no index
    await t.put({"UserID": "u", "OrderDate": "2", "Status": "S"})  # no Total: not in ByStatus
    assert await index_contents(t, "ByStatus") == []
    assert await index_contents(t, "ByTotal") == []
    with pytest.raises(sk.ValidationError, match="Type mismatch for Index Key Status"):
        await t.put({"UserID": "u", "OrderDate": "3", "Status": 7, "Total": 1})
    with pytest.raises(sk.ValidationError, match="Type mismatch for Index Key Total"):
        await t.update({"UserID": "u", "OrderDate": "2"}, set={"Total": "ten"})
    with pytest.raises(sk.ValidationError, match="empty string"):
        await t.put({"UserID": "u", "OrderDate": "4", "Item": ""})
    # nothing was written by the refused calls
    assert await t.get({"UserID": "u", "OrderDate": "3"}) is None
    assert (await t.get({"UserID": "u", "OrderDate": "2"}))["Status"] == "S"  # type: ignore[index]
    await assert_indexes_match(t)


async def test_projections_and_select(app: sk.App) -> None:
    t = await orders_table(app)
    item = {
        "UserID": "u",
        "OrderDate": "1",
        "Status": "S",
        "Total": 3,
        "Item": "i",
        "Big": "x" * 10,
    }
    await t.put(item)
    assert [x async for x in t.query("S", index="ByStatus")] == [item]  # ALL
    assert [x async for x in t.query("i", index="ByItem")] == [
        {"UserID": "u", "OrderDate": "1", "Item": "i"}
    ]
    lsi = {"UserID": "u", "OrderDate": "1", "Total": 3, "Item": "i"}
    assert [x async for x in t.query("u", index="ByTotal")] == [lsi]
    # a local index fetches what it does not hold from the table (as DynamoDB)
    assert [x async for x in t.query("u", index="ByTotal", select="ALL_ATTRIBUTES")] == [item]
    assert [x async for x in t.query("u", index="ByTotal", projection=["Big"])] == [
        {"Big": "x" * 10}
    ]
    # ... but a filter may use only what the index holds (as DynamoDB)
    with pytest.raises(sk.ValidationError, match="does not project one or more filter"):
        await t.query_page("u", index="ByTotal", filter=sk.attr("Big").exists())
    with pytest.raises(sk.ValidationError, match="ALL_ATTRIBUTES is not supported for global"):
        await t.query_page("i", index="ByItem", select="ALL_ATTRIBUTES")
    with pytest.raises(sk.ValidationError, match="only for index queries"):
        await t.query_page("u", select="ALL_PROJECTED_ATTRIBUTES")
    with pytest.raises(sk.ValidationError, match="Consistent reads are not supported on global"):
        await t.query_page("S", index="ByStatus", consistent=True)
    await t.query_page("u", index="ByTotal", consistent=True)  # local indexes: fine
    with pytest.raises(sk.ValidationError, match="does not have the specified index: Nope"):
        await t.query_page("u", index="Nope")
    with pytest.raises(sk.ValidationError, match="non-primary key attributes"):
        await t.query_page("S", index="ByStatus", filter=sk.attr("Total").gt(1))


async def test_parallel_scan_of_an_index_covers_it_once(app: sk.App) -> None:
    t = await orders_table(app)
    for i in range(40):
        await t.put({"UserID": f"u{i}", "OrderDate": "d", "Status": f"s{i % 7}", "Total": i})
    parts = [
        [x async for x in t.scan(index="ByStatus", segment=s, total_segments=3)] for s in range(3)
    ]
    flat = [x["UserID"] for p in parts for x in p]
    assert sorted(flat) == sorted(f"u{i}" for i in range(40))
    # paging through a scan of an index
    seen = []
    start = None
    while True:
        p = await t.scan_page(index="ByStatus", limit=7, start_key=start)
        seen.extend(x["UserID"] for x in p.items)
        if p.last_key is None:
            break
        start = p.last_key
    assert sorted(seen) == sorted(flat)


async def test_definitions_are_checked(app: sk.App) -> None:
    with pytest.raises(sk.ValidationError, match="does not have a range key"):
        await app.create_table(
            "Tab1", partition_key="k", local_indexes=[sk.LocalIndex("L1x", sort_key="s")]
        )
    with pytest.raises(sk.ValidationError, match="Duplicate index name"):
        await app.create_table(
            "Tab2",
            partition_key="k",
            global_indexes=[
                sk.GlobalIndex("Gix", partition_key="a"),
                sk.GlobalIndex("Gix", partition_key="b"),
            ],
        )
    with pytest.raises(sk.ValidationError, match="per-table limit of 20"):
        await app.create_table(
            "Tab3",
            partition_key="k",
            global_indexes=[sk.GlobalIndex(f"G{i:02d}", partition_key="a") for i in range(21)],
        )
    with pytest.raises(sk.ValidationError, match="exceeds the per-table limit of 5"):
        await app.create_table(
            "Tab4",
            partition_key="k",
            sort_key="s",
            local_indexes=[sk.LocalIndex(f"L{i:02d}", sort_key="a") for i in range(6)],
        )
    with pytest.raises(sk.ValidationError, match="projection must be"):
        await app.create_table(
            "Tab5",
            partition_key="k",
            global_indexes=[sk.GlobalIndex("Gix", partition_key="a", projection="SOME")],
        )
    assert await app.list_tables() == []


async def test_describe_shows_the_indexes(app: sk.App) -> None:
    await orders_table(app)
    d = await app.describe_table("Orders")
    assert [(i["name"], i["kind"], i["status"], i["projection"]) for i in d["indexes"]] == [
        ("ByStatus", "GLOBAL", "ACTIVE", "ALL"),
        ("ByItem", "GLOBAL", "ACTIVE", "KEYS_ONLY"),
        ("ByTotal", "LOCAL", "ACTIVE", "INCLUDE"),
    ]


# --- writes keep the indexes exact ----------------------------------------------------------
async def test_index_maintenance_writes_no_change_records(app: sk.App, tmp_path: Any) -> None:
    plain = await app.create_table("Plain", partition_key="UserID", sort_key="OrderDate")
    t = await orders_table(app)
    for table in (plain, t):
        await table.put({"UserID": "u", "OrderDate": "1", "Status": "S", "Total": 1, "Item": "i"})
        await table.update({"UserID": "u", "OrderDate": "1"}, set={"Status": "T"})
        await table.delete({"UserID": "u", "OrderDate": "1"})
    rows = await app.store.read_changes(0, 1000)
    per_table = {name: [r.event for r in rows if r.table == name] for name in ("Plain", "Orders")}
    assert per_table["Orders"] == per_table["Plain"] == ["INSERT", "MODIFY", "REMOVE"]


async def test_ttl_expiry_and_transactions_keep_indexes(app: sk.App) -> None:
    t = await orders_table(app)
    now = time.time()
    await t.put(
        {
            "UserID": "a",
            "OrderDate": "1",
            "Status": "S",
            "Total": 1,
            "Item": "i",
            "Expires": int(now) - 10,
        }
    )
    await t.put(
        {
            "UserID": "b",
            "OrderDate": "1",
            "Status": "S",
            "Total": 2,
            "Item": "j",
            "Expires": int(now) + 3600,
        }
    )
    assert await app.sweep_expired() == 1
    await assert_indexes_match(t)
    async with app.transaction() as tx:
        tx.put(t, {"UserID": "c", "OrderDate": "1", "Status": "Q", "Total": 9, "Item": "k"})
        tx.update(t, {"UserID": "b", "OrderDate": "1"}, set={"Status": "Q"})
    await assert_indexes_match(t)
    with pytest.raises(sk.TransactionCanceled):
        async with app.transaction() as tx:
            tx.put(t, {"UserID": "d", "OrderDate": "1", "Status": "Q", "Total": 1})
            tx.put(t, {"UserID": "e", "OrderDate": "1", "Status": 1})  # wrong index key type
    assert await t.get({"UserID": "d", "OrderDate": "1"}) is None
    await assert_indexes_match(t)


_status = st.sampled_from(["A", "B", "C"])
_value = st.one_of(st.none(), _status, st.integers(0, 3))  # ints: a wrong type for Status
_item = st.fixed_dictionaries(
    {
        "UserID": st.sampled_from(["u1", "u2", "u3"]),
        "OrderDate": st.sampled_from(["d1", "d2", "d3"]),
    },
    optional={
        "Status": _value,
        "Total": st.one_of(st.integers(-5, 5), st.sampled_from(["x"])),
        "Item": st.sampled_from(["i1", "i2", ""]),
        "Other": st.one_of(st.integers(0, 9), st.just("nine")),
        "Expires": st.sampled_from([-60, 3600]),  # seconds from now: expired, or not yet
    },
)
_op = st.one_of(
    st.tuples(st.just("put"), _item),
    st.tuples(st.just("delete"), _item),
    st.tuples(st.just("update"), _item),
    st.tuples(st.just("txn"), st.lists(_item, min_size=1, max_size=3)),
    st.tuples(st.just("sweep"), st.none()),  # TTL expiries
    st.tuples(st.just("add_index"), st.none()),  # a backfill of ByOther (once)
)


@pytest.mark.parametrize("engine", postgres_env.ENGINES)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(_op, min_size=1, max_size=25))
def test_an_index_always_equals_the_table_projected(engine: str, ops: list[Any]) -> None:
    async def main() -> None:
        async with postgres_env.throwaway_store(engine) as url, sk.App(storage=url) as app:
            t = await orders_table(app, composite=True)
            for kind, arg in ops:
                await _apply(app, t, kind, arg)
            await assert_indexes_match(t)
            # a restore rebuilds every index, the backfilled one included
            backup = await app.backup("Orders")
            await assert_indexes_match(await app.restore_backup(backup.id, target="Copy"))

    asyncio.run(main())


def _item_of(arg: dict[str, Any]) -> dict[str, Any]:
    item = {k: v for k, v in arg.items() if v is not None}
    if "Expires" in item:
        item["Expires"] = int(time.time()) + item["Expires"]
    return item


async def _apply(app: sk.App, t: sk.Table, kind: str, arg: Any) -> None:
    if kind == "sweep":
        await app.sweep_expired()
        return
    if kind == "add_index":
        if not any(ix.name == "ByOther" for ix in (await t.spec()).indexes):
            other = sk.GlobalIndex("ByOther", partition_key=("Other", "N"), projection="KEYS_ONLY")
            await app.update_table("Orders", create_index=other)
        return
    try:
        if kind == "put":
            await t.put(_item_of(arg))
        elif kind == "delete":
            await t.delete({"UserID": arg["UserID"], "OrderDate": arg["OrderDate"]})
        elif kind == "update":
            key = {"UserID": arg["UserID"], "OrderDate": arg["OrderDate"]}
            sets = {k: v for k, v in _item_of(arg).items() if k not in key}
            rem = [k for k, v in arg.items() if v is None]
            if sets or rem:
                await t.update(key, set=sets or None, remove=rem or None)
        else:
            async with app.transaction() as tx:
                seen = set()
                for it in arg:
                    k = (it["UserID"], it["OrderDate"])
                    if k not in seen:
                        seen.add(k)
                        tx.put(t, _item_of(it))
    except (sk.ValidationError, sk.TransactionCanceled):
        pass


# --- adding an index to a table in use ---------------------------------------------------------
async def test_backfill_while_writes_go_on_loses_and_doubles_nothing(app: sk.App) -> None:
    t = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    for i in range(600):
        await t.put(
            {"UserID": f"u{i % 50}", "OrderDate": f"{i:05d}", "Status": f"s{i % 4}", "Total": i}
        )
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            i = (w * 7919 + n * 31) % 800
            key = {"UserID": f"u{i % 50}", "OrderDate": f"{i:05d}"}
            if n % 3 == 2:
                await t.delete(key)
            else:
                await t.put({**key, "Status": f"s{(i + n) % 5}", "Total": n})
            n += 1
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(w)) for w in range(4)]
    await asyncio.sleep(0.05)
    desc = await app.update_table("Orders", create_index=GSI, wait=False)
    assert [i["status"] for i in desc["indexes"]] == ["CREATING"]
    with pytest.raises(sk.ValidationError, match="Cannot read from backfilling"):
        await t.query_page("s1", index="ByStatus")
    for _ in range(3000):
        if (await app.describe_table("Orders"))["indexes"][0]["status"] == "ACTIVE":
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*writers)
    items = [x async for x in t.scan()]
    got = await index_contents(t, "ByStatus")
    assert sorted(got, key=repr) == sorted(expected_entries(items, "ByStatus"), key=repr)
    assert len(got) == len({(g["UserID"], g["OrderDate"]) for g in got})  # nothing doubled


async def test_backfill_leaves_out_wrong_types_and_delete_index_drops_entries(app: sk.App) -> None:
    t = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    await t.put({"UserID": "a", "OrderDate": "1", "Status": "S", "Total": 1})
    await t.put({"UserID": "b", "OrderDate": "1", "Status": 5, "Total": 1})  # no index yet: fine
    await app.update_table("Orders", create_index=GSI)
    assert [x["UserID"] async for x in t.scan(index="ByStatus")] == ["a"]
    # the old item that does not fit can still be rewritten out of the way, not into it
    with pytest.raises(sk.ValidationError):
        await t.update({"UserID": "b", "OrderDate": "1"}, set={"Other": 1})
    await t.update({"UserID": "b", "OrderDate": "1"}, set={"Status": "S"})
    assert [x["UserID"] async for x in t.scan(index="ByStatus")] == ["a", "b"]
    with pytest.raises(sk.ValidationError, match="already exists"):
        await app.update_table("Orders", create_index=GSI)
    with pytest.raises(sk.ValidationError, match="only global indexes"):
        await app.update_table("Orders", create_index=LSI)  # type: ignore[arg-type]
    await app.update_table("Orders", delete_index="ByStatus")
    with pytest.raises(sk.ValidationError, match="does not have the specified index"):
        await t.query_page("S", index="ByStatus")
    # a new index of the same name starts empty, then holds only what is there now
    await t.delete({"UserID": "a", "OrderDate": "1"})
    await app.update_table("Orders", create_index=GSI)
    assert [x["UserID"] async for x in t.scan(index="ByStatus")] == ["b"]
    sid_range = (await app.store.spec("Orders")).index_storage_range()
    assert sid_range[0] < sid_range[1] < 0


async def test_backups_and_restores_carry_and_rebuild_indexes(app: sk.App) -> None:
    t = await orders_table(app)
    for i in range(20):
        await t.put(
            {
                "UserID": f"u{i % 4}",
                "OrderDate": f"{i:03d}",
                "Status": f"s{i % 3}",
                "Total": i,
                "Item": f"i{i % 5}",
            }
        )
    b = await app.backup("Orders")
    await t.delete({"UserID": "u0", "OrderDate": "000"})
    restored = await app.restore_backup(b.id, target="Restored")
    assert [i["name"] for i in (await app.describe_table("Restored"))["indexes"]] == [
        "ByStatus",
        "ByItem",
        "ByTotal",
    ]
    await assert_indexes_match(restored)
    assert len(await index_contents(restored, "ByStatus")) == 20
    await asyncio.sleep(0.01)
    from datetime import UTC, datetime

    pitr = await app.restore_to_time("Orders", at=datetime.now(UTC), target="Pitr")
    await assert_indexes_match(pitr)
    assert len(await index_contents(pitr, "ByStatus")) == 19
    # deleting a table deletes its index entries
    await app.delete_table("Orders")
    low, high = pitr_range = (await app.store.spec("Pitr")).index_storage_range()
    assert pitr_range and low < high
    t2 = await orders_table(app)
    assert await index_contents(t2, "ByStatus") == []


# --- capacity -------------------------------------------------------------------------------
async def test_index_writes_consume_their_own_units(app: sk.App) -> None:
    t = await orders_table(app)
    with sk.measure_capacity() as used:
        await t.put({"UserID": "u", "OrderDate": "1", "Status": "S", "Total": 1, "Item": "i"})
    assert used.by_index == {
        ("Orders", "ByStatus"): (0.0, 1.0),
        ("Orders", "ByItem"): (0.0, 1.0),
        ("Orders", "ByTotal"): (0.0, 1.0),
    }
    assert used.write_units == 4.0  # the table's unit and one per index
    with sk.measure_capacity() as used:  # the ByStatus entry moves: a delete and a put
        await t.update({"UserID": "u", "OrderDate": "1"}, set={"Status": "T"})
    # the entries whose key and projected attributes stay as they were are not written
    # (as DynamoDB: no write activity, no units, on those indexes)
    assert used.by_index == {("Orders", "ByStatus"): (0.0, 2.0)}
    with sk.measure_capacity() as used:  # an attribute no index has: only the ALL index
        await t.update({"UserID": "u", "OrderDate": "1"}, set={"Other": 1})
    assert set(used.by_index) == {("Orders", "ByStatus")}
    with sk.measure_capacity() as used:  # a projected attribute: its index is rewritten
        await t.update({"UserID": "u", "OrderDate": "1"}, set={"Item": "j"})
    assert set(used.by_index) == {
        ("Orders", "ByStatus"),
        ("Orders", "ByItem"),
        ("Orders", "ByTotal"),
    }


async def test_a_provisioned_index_out_of_write_capacity_throttles_the_table(app: sk.App) -> None:
    t = await app.create_table(
        "Orders",
        partition_key="UserID",
        capacity=sk.Provisioned(read=100, write=1000),
        global_indexes=[
            sk.GlobalIndex(
                "ByStatus", partition_key="Status", capacity=sk.Provisioned(read=1, write=1)
            )
        ],
    )
    await t.put({"UserID": "a", "Status": "S"})  # the index's first second of capacity
    with pytest.raises(sk.ThroughputExceeded, match="index/ByStatus"):
        for i in range(5):
            await t.put({"UserID": f"b{i}", "Status": "S"})
    # the refused write wrote nothing
    assert await t.get({"UserID": "b1"}) is None


# --- two processes sharing a store ------------------------------------------------------------
async def test_a_writer_with_an_old_catalog_never_skips_a_new_index(
    shared_storage_url: str,
) -> None:
    """B learned the catalog before A added an index: B's writes are refused as stale
    inside the engine's transaction, B reloads and writes the entries too."""
    a = sk.App(storage=shared_storage_url)
    b = sk.App(storage=shared_storage_url)
    try:
        t_a = await a.create_table("Orders", partition_key="UserID")
        t_b = b.table("Orders")
        await t_b.put({"UserID": "before", "Status": "S"})  # B caches the index-less spec
        stop = asyncio.Event()
        written: list[int] = []

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                await t_b.put({"UserID": f"b{n % 60}", "Status": f"s{n % 3}", "N": n})
                written.append(n)
                n += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.05)
        await a.update_table(
            "Orders", create_index=sk.GlobalIndex("ByStatus", partition_key="Status")
        )
        await asyncio.sleep(0.1)
        stop.set()
        await task
        assert len(written) > 10
        items = [x async for x in t_a.scan()]
        got = [x async for x in t_a.scan(index="ByStatus")]
        assert sorted(got, key=repr) == sorted(items, key=repr)
        assert (await b.store.spec("Orders")).indexes  # B has reloaded
    finally:
        await a.close()
        await b.close()


async def test_a_reader_with_an_old_catalog_sees_a_new_index(shared_storage_url: str) -> None:
    a = sk.App(storage=shared_storage_url)
    b = sk.App(storage=shared_storage_url)
    try:
        t_a = await a.create_table("Orders", partition_key="UserID")
        await t_a.put({"UserID": "u", "Status": "S"})
        t_b = b.table("Orders")
        assert await t_b.get({"UserID": "u"})  # B caches the index-less spec
        await a.update_table(
            "Orders", create_index=sk.GlobalIndex("ByStatus", partition_key="Status")
        )
        assert [x["UserID"] async for x in t_b.query("S", index="ByStatus")] == ["u"]
    finally:
        await a.close()
        await b.close()


# --- multi-attribute keys (DynamoDB's composite GSI keys) ---------------------------------------
_pair_item = st.fixed_dictionaries(
    {"UserID": st.sampled_from(["u1", "u2"]), "OrderDate": st.sampled_from(["d1", "d2", "d3"])},
    optional={  # mostly present, so most items are in the index
        "Status": st.sampled_from(["A", "B"]),
        "Item": st.sampled_from(["i1", "i2", "i\x00", "i"]),
        "Total": st.integers(-3, 3),
        "Other": st.integers(0, 9),
    },
)
_pair_op = st.one_of(
    st.tuples(st.just("put"), _pair_item),
    st.tuples(st.just("delete"), _pair_item),
    st.tuples(st.just("update"), _pair_item),
    st.tuples(st.just("txn"), st.lists(_pair_item, min_size=1, max_size=3)),
)
# a sort key condition: equal Total and a condition on OrderDate, or one on Total alone
_pair_cond = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["=", "<", "<=", ">", ">="]), st.integers(-3, 3)),
    st.tuples(st.just("between"), st.integers(-3, 0), st.integers(0, 3)),
    st.tuples(
        st.just("eq+"),
        st.integers(-3, 3),
        st.sampled_from(["=", "<", ">=", "begins_with"]),
        st.sampled_from(["d", "d1", "d2"]),
    ),
)
_OPS = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _pair_query(cond: Any) -> tuple[str, dict[str, Any], Any]:
    """A key condition on ByPair's sort key as (text, values, model predicate)."""
    head = "#s = :s AND #i = :i"  # (Status, Item and Total are reserved words)
    if cond is None:
        return head, {}, lambda it: True
    if cond[0] == "between":
        return (
            f"{head} AND #t BETWEEN :lo AND :hi",
            {":lo": cond[1], ":hi": cond[2]},
            lambda it: cond[1] <= it["Total"] <= cond[2],
        )
    if cond[0] == "eq+":
        _, total, op, date = cond
        if op == "begins_with":
            text, pred = "begins_with(OrderDate, :d)", lambda d: d.startswith(date)
        else:
            text, pred = f"OrderDate {op} :d", lambda d: _OPS[op](d, date)
        return (
            f"{head} AND #t = :t AND {text}",
            {":t": total, ":d": date},
            lambda it: it["Total"] == total and pred(it["OrderDate"]),
        )
    op, v = cond
    return f"{head} AND #t {op} :t", {":t": v}, lambda it: _OPS[op](it["Total"], v)


@pytest.mark.parametrize("engine", postgres_env.ENGINES)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(_pair_op, min_size=1, max_size=25),
    queries=st.lists(st.tuples(_pair_cond, st.booleans()), min_size=1, max_size=4),
)
def test_a_multi_attribute_index_always_equals_the_table_projected(
    engine: str, ops: list[Any], queries: list[Any]
) -> None:
    """Whatever the writes, ByPair holds exactly the items with all four key attributes,
    in (partition key attributes, sort key attributes, table key) order, and a query
    with any allowed key condition returns the model's items in order (and reversed)."""

    async def main() -> None:
        async with postgres_env.throwaway_store(engine) as url, sk.App(storage=url) as app:
            t = await app.create_table(
                "Orders", partition_key="UserID", sort_key="OrderDate", global_indexes=[PAIR]
            )
            for kind, arg in ops:
                await _apply(app, t, kind, arg)
            await assert_indexes_match(t)
            want = _expected_pairs([x async for x in t.scan()])
            for cond, reverse in queries:
                for pair in [("A", "i1"), ("B", "i\x00"), ("A", "i")]:
                    text, values, pred = _pair_query(cond)
                    q = t.query(
                        key_condition=text,
                        values={":s": pair[0], ":i": pair[1], **values},
                        names={
                            "#s": "Status",
                            "#i": "Item",
                            **({"#t": "Total"} if "#t" in text else {}),
                        },
                        index="ByPair",
                        reverse=reverse,
                    )
                    got = [x async for x in q]
                    model = [w for w in want if (w["Status"], w["Item"]) == pair and pred(w)]
                    assert got == (model[::-1] if reverse else model), (pair, cond)

    asyncio.run(main())


async def test_multi_attribute_keys_are_checked_and_queried_in_their_order(app: sk.App) -> None:
    t = await app.create_table(
        "Matches",
        partition_key="Id",
        global_indexes=[
            sk.GlobalIndex(
                "ByPlayer",
                partition_key=["Player", ("Season", "N")],
                sort_key=[("Round", "N"), "Opponent", ("Score", "B")],
                projection="KEYS_ONLY",
            )
        ],
    )
    desc = (await t.spec()).indexes[0]
    assert desc.key_names == ("Player", "Season", "Round", "Opponent", "Score")
    rows = [(1, "zed", b"\x01"), (1, "amy", b"\x00"), (2, "bob", b"\x02"), (10, "amy", b"")]
    for i, (rnd, opp, score) in enumerate(rows):
        item = {"Id": f"m{i}", "Player": "p", "Season": 2026, "Round": rnd, "Opponent": opp}
        if score:
            item["Score"] = score
        await t.put(item)
    await t.put(
        {
            "Id": "other",
            "Player": "p",
            "Season": 2025,
            "Round": 1,
            "Opponent": "x",
            "Score": b"\x05",
        }
    )  # another partition
    got = [x async for x in t.query(("p", 2026), index="ByPlayer")]
    # numbers by value, not text (10 after 2); the item without Score is not indexed
    assert [(x["Round"], x["Opponent"]) for x in got] == [(1, "amy"), (1, "zed"), (2, "bob")]
    assert set(got[0]) == {"Id", "Player", "Season", "Round", "Opponent", "Score"}
    vals = {":p": "p", ":s": 2026, ":r": 1, ":o": "b"}
    q = t.query(
        key_condition="Player = :p AND Season = :s AND #r = :r AND Opponent > :o",
        names={"#r": "Round"},
        values=vals,
        index="ByPlayer",
    )
    assert [x["Opponent"] async for x in q] == ["zed"]
    bad = {
        # a partition key attribute missing, or compared with other than =
        "Player = :p AND #r = :r": "every HASH attribute",
        "Player = :p AND Season > :s": "the HASH attribute Season takes only",
        # a gap in the sort key attributes, or an inequality before the last
        "Player = :p AND Season = :s AND Opponent = :o": "Round has none",
        "Player = :p AND Season = :s AND #r > :r AND Opponent = :o": "only the last",
        # a filter-only attribute in the key condition
        "Player = :p AND Season = :s AND Id = :o": "Id is not a key attribute",
    }
    for text, words in bad.items():
        used = {k: v for k, v in vals.items() if k in text}
        with pytest.raises(sk.ValidationError, match=words):
            [
                x
                async for x in t.query(
                    key_condition=text,
                    values=used,
                    index="ByPlayer",
                    names={"#r": "Round"} if "#r" in text else None,
                )
            ]
    with pytest.raises(sk.ValidationError, match="give their values as a tuple"):
        [x async for x in t.query("p", index="ByPlayer")]
    with pytest.raises(sk.ValidationError, match="Filter Expression can only contain non-primary"):
        [
            x
            async for x in t.query(
                ("p", 2026), index="ByPlayer", filter="Opponent = :o", values={":o": "x"}
            )
        ]
    # an item whose key attribute has the wrong type is refused, and nothing is written
    with pytest.raises(sk.ValidationError, match="Type mismatch for Index Key Season"):
        await t.put(
            {
                "Id": "bad",
                "Player": "p",
                "Season": "2026",
                "Round": 1,
                "Opponent": "x",
                "Score": b"\x01",
            }
        )
    assert await t.get({"Id": "bad"}) is None
    for wrong in (["a", "b", "c", "d", "e"], ["a", "a"]):
        with pytest.raises(sk.ValidationError):
            await app.create_table(
                "Refused",
                partition_key="Id",
                global_indexes=[sk.GlobalIndex("Many", partition_key=wrong)],
            )
    with pytest.raises(sk.TableNotFound):
        await app.table("Refused").spec()
