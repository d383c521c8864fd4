"""The table API on both engines: items, conditions, returns, query, scan, batches."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import streamkit as sk

pytestmark = pytest.mark.asyncio


async def test_put_get_roundtrip_every_type(app: sk.App) -> None:
    users = await app.create_table("Users", partition_key="UserID")
    item = {
        "UserID": "u1",
        "s": "text",
        "n": 12.5,
        "big": Decimal("12345678901234567890123456789012345678"),
        "b": b"\x00\xff",
        "t": True,
        "none": None,
        "l": [1, "a", [b"x"], {"k": False}],
        "m": {"nested": {"deep": [Decimal("1E-130")]}},
        "ss": {"a", "b"},
        "ns": {1, 2.5},
        "bs": {b"1", b"2"},
    }
    await users.put(item)
    got = await users.get({"UserID": "u1"})
    assert got == {
        **item,
        "n": Decimal("12.5"),
        "l": [Decimal(1), "a", [b"x"], {"k": False}],
        "ns": {Decimal(1), Decimal("2.5")},
    }
    assert type(got["t"]) is bool  # type: ignore[index]
    assert await users.get({"UserID": "absent"}) is None


async def test_table_lifecycle(app: sk.App) -> None:
    await app.create_table("Orders", partition_key="UserID", sort_key=("Seq", "N"), stream=None)
    with pytest.raises(sk.TableExists):
        await app.create_table("Orders", partition_key="UserID")
    assert await app.list_tables() == ["Orders"]
    desc = await app.describe_table("Orders")
    assert desc["sort_key"] == {"name": "Seq", "type": "N"}
    assert desc["stream"] is None
    await app.delete_table("Orders")
    assert await app.list_tables() == []
    with pytest.raises(sk.TableNotFound):
        await app.table("Orders").get({"UserID": "x", "Seq": 1})
    with pytest.raises(sk.TableNotFound):
        await app.delete_table("Orders")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"name": "ab", "partition_key": "k"}, "table name", id="short-name"),
        pytest.param({"name": "a b c", "partition_key": "k"}, "table name", id="space"),
        pytest.param({"name": "Tab", "partition_key": ("k", "X")}, "type", id="bad-type"),
        pytest.param({"name": "Tab", "partition_key": "k", "sort_key": "k"}, "differ", id="same"),
        pytest.param({"name": "Tab", "partition_key": "k", "stream": "ALL"}, "stream", id="stream"),
        pytest.param(
            {"name": "Tab", "partition_key": "k", "recovery_days": 36}, "recovery", id="pitr"
        ),
    ],
)
async def test_create_table_validation(app: sk.App, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(sk.ValidationError, match=match):
        await app.create_table(**kwargs)  # type: ignore[arg-type]
    assert await app.list_tables() == []


async def test_key_validation(app: sk.App) -> None:
    t = await app.create_table("Orders", partition_key="UserID", sort_key=("Seq", "N"))
    with pytest.raises(sk.ValidationError, match="missing key attribute 'Seq'"):
        await t.put({"UserID": "u"})
    with pytest.raises(sk.ValidationError, match="must be of type N"):
        await t.put({"UserID": "u", "Seq": "1"})
    with pytest.raises(sk.ValidationError, match="must not be empty"):
        await t.put({"UserID": "", "Seq": 1})
    with pytest.raises(sk.ValidationError, match="not part of the table's key"):
        await t.get({"UserID": "u", "Seq": 1, "Other": 2})
    assert await t.count() == 0


@pytest.mark.parametrize(
    ("item", "match"),
    [
        pytest.param({"k": "a", "v": set()}, "empty sets", id="empty-set"),
        pytest.param({"k": "a", "v": {1, "a"}}, "one type", id="mixed-set"),
        pytest.param({"k": "a", "v": float("nan")}, "finite", id="nan"),
        pytest.param({"k": "a", "v": Decimal("1" * 39)}, "38", id="too-many-digits"),
        pytest.param({"k": "a", "v": Decimal("1E+126")}, "out of range", id="too-big"),
        pytest.param({"k": "a", "v": object()}, "unsupported type", id="object"),
        pytest.param({"k": "a", "": 1}, "non-empty", id="empty-name"),
        pytest.param({"k": "a", "v": "x" * (400 * 1024)}, "400 KB", id="too-large"),
    ],
)
async def test_bad_items_change_nothing(app: sk.App, item: dict[str, object], match: str) -> None:
    t = await app.create_table("Things", partition_key="k")
    with pytest.raises(sk.ValidationError, match=match):
        await t.put(item)
    assert await t.get({"k": "a"}) is None
    from tests.unit.storage.helpers import committed_records

    assert await committed_records(app) == []


async def test_conditions_and_returns(app: sk.App) -> None:
    users = await app.create_table("Users", partition_key="UserID")
    assert await users.put({"UserID": "1", "Name": "A", "Age": 30}, returns="ALL_OLD") is None
    old = await users.put({"UserID": "1", "Name": "B", "Age": 31}, returns="ALL_OLD")
    assert old == {"UserID": "1", "Name": "A", "Age": Decimal(30)}

    with pytest.raises(sk.ConditionFailed) as err:
        await users.put(
            {"UserID": "1", "Name": "C"},
            condition=sk.attr("Age").lt(18),
            return_old_on_condition_failure=True,
        )
    assert err.value.item == {"UserID": "1", "Name": "B", "Age": Decimal(31)}
    assert (await users.get({"UserID": "1"}))["Name"] == "B"  # type: ignore[index]

    new = await users.update(
        {"UserID": "1"},
        expression="SET #n = :n ADD Age :one",
        names={"#n": "Name"},
        values={":n": "Jane", ":one": 1},
        condition="attribute_exists(UserID)",
        returns="ALL_NEW",
    )
    assert new == {"UserID": "1", "Name": "Jane", "Age": Decimal(32)}
    upd_old = await users.update({"UserID": "1"}, set={"Age": 40}, returns="UPDATED_OLD")
    assert upd_old == {"Age": Decimal(32)}
    upd_new = await users.update({"UserID": "1"}, remove=["Name"], returns="UPDATED_NEW")
    assert upd_new == {}
    deleted = await users.delete({"UserID": "1"}, returns="ALL_OLD")
    assert deleted == {"UserID": "1", "Age": Decimal(40)}
    with pytest.raises(sk.ConditionFailed):
        await users.delete({"UserID": "1"}, condition=sk.attr("UserID").exists())


async def test_update_creates_missing_item_and_refuses_key_updates(app: sk.App) -> None:
    users = await app.create_table("Users", partition_key="UserID")
    await users.update({"UserID": "9"}, add={"Visits": 1})
    assert await users.get({"UserID": "9"}) == {"UserID": "9", "Visits": Decimal(1)}
    with pytest.raises(sk.ValidationError, match="part of the table's key"):
        await users.update({"UserID": "9"}, set={"UserID": "10"})
    with pytest.raises(sk.ValidationError):
        await users.update({"UserID": "9"}, expression="SET a = :v")  # :v missing
    with pytest.raises(sk.ValidationError):
        await users.update({"UserID": "9"}, set={"a": 1}, expression="SET b = :b", values={":b": 1})
    with pytest.raises(sk.ValidationError, match="returns"):
        await users.put({"UserID": "9"}, returns="ALL_NEW")


async def test_query_sort_conditions_paging_and_reverse(app: sk.App) -> None:
    orders = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    dates = [f"2026-{m:02d}-{d:02d}" for m in (1, 2, 3) for d in (1, 15)]
    for i, d in enumerate(dates):
        await orders.put({"UserID": "123", "OrderDate": d, "Qty": i})
    await orders.put({"UserID": "999", "OrderDate": "2026-02-01", "Qty": 100})

    feb = [
        o["OrderDate"]
        async for o in orders.query("123", sort=sk.key("OrderDate").begins_with("2026-02"))
    ]
    assert feb == ["2026-02-01", "2026-02-15"]
    between = [
        o["OrderDate"]
        async for o in orders.query(
            "123", sort=sk.key("OrderDate").between("2026-01-15", "2026-03-01")
        )
    ]
    assert between == ["2026-01-15", "2026-02-01", "2026-02-15", "2026-03-01"]
    rev = [o["OrderDate"] async for o in orders.query("123", reverse=True, limit=2)]
    assert rev == ["2026-03-15", "2026-03-01"]
    expr = [
        o["Qty"]
        async for o in orders.query(
            key_condition="UserID = :u AND OrderDate > :d",
            filter="Qty >= :q",
            values={":u": "123", ":d": "2026-02-01", ":q": 4},
        )
    ]
    assert expr == [Decimal(4), Decimal(5)]

    # DynamoDB paging: Limit counts items read before the filter; resume from last_key
    seen: list[str] = []
    page = await orders.query_page("123", limit=4, filter=sk.attr("Qty").gte(1))
    assert page.scanned_count == 4 and page.count == 3 and page.last_key is not None
    seen += [i["OrderDate"] for i in page.items]
    page = await orders.query_page("123", limit=4, start_key=page.last_key)
    assert page.last_key is None
    seen += [i["OrderDate"] for i in page.items]
    assert seen == dates[1:]
    proj = [o async for o in orders.query("123", projection="Qty", limit=1)]
    assert proj == [{"Qty": Decimal(0)}]


async def test_query_numeric_sort_key_order(app: sk.App) -> None:
    t = await app.create_table("Series", partition_key="p", sort_key=("n", "N"))
    values = [Decimal(v) for v in ("-10", "-2.5", "-2", "0", "0.5", "3", "20", "1E+30")]
    for v in reversed(values):
        await t.put({"p": "x", "n": v})
    got = [i["n"] async for i in t.query("x")]
    assert got == values
    gt = [i["n"] async for i in t.query("x", sort=sk.key("n").gt(0))]
    assert gt == values[4:]
    with pytest.raises(sk.ValidationError, match="begins_with"):
        [i async for i in t.query("x", sort=sk.key("n").begins_with(1))]


async def test_scan_filter_segments_and_paging(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.batch_write(puts=[{"k": f"k{i:03d}", "v": i} for i in range(25)])
    await t.batch_write(puts=[{"k": f"k{i:03d}", "v": i} for i in range(25, 50)])
    assert await t.count() == 50
    odd = [i async for i in t.scan(filter="v > :x AND attribute_exists(k)", values={":x": 44})]
    assert sorted(i["v"] for i in odd) == [45, 46, 47, 48, 49]
    segments = [{i["k"] async for i in t.scan(segment=s, total_segments=4)} for s in range(4)]
    assert sum(len(s) for s in segments) == 50
    assert set().union(*segments) == {f"k{i:03d}" for i in range(50)}
    with pytest.raises(sk.ValidationError, match="segment"):
        await t.scan_page(segment=4, total_segments=4)
    page = await t.scan_page(limit=10)
    assert page.count == 10 and page.last_key == {"k": "k009"}


async def test_batches(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.batch_write(puts=[{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    assert await t.batch_get([{"k": "b"}, {"k": "zz"}, {"k": "a"}]) == [
        {"k": "b", "v": Decimal(2)},
        {"k": "a", "v": Decimal(1)},
    ]
    got = await app.batch_get({"Things": [{"k": "a"}]})
    assert got == {"Things": [{"k": "a", "v": Decimal(1)}]}
    await t.batch_write(deletes=[{"k": "a"}], puts=[{"k": "c"}])
    assert await t.count() == 2
    with pytest.raises(sk.ValidationError, match="25"):
        await t.batch_write(puts=[{"k": str(i)} for i in range(26)])
    with pytest.raises(sk.ValidationError, match="more than once"):
        await t.batch_write(puts=[{"k": "x"}], deletes=[{"k": "x"}])
    with pytest.raises(sk.ValidationError, match="100"):
        await t.batch_get([{"k": str(i)} for i in range(101)])
    with pytest.raises(sk.ValidationError):
        await t.batch_write(puts=[{"k": "ok"}, {"k": "bad", "v": set()}])
    assert await t.get({"k": "ok"}) is None  # a bad batch writes nothing


async def test_transactions_all_or_nothing(app: sk.App) -> None:
    users = await app.create_table("Users", partition_key="UserID")
    orders = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    await users.put({"UserID": "1", "OrderCount": 0})
    async with app.transaction() as tx:
        tx.put(orders, {"UserID": "1", "OrderDate": "d1"})
        tx.update(users, {"UserID": "1"}, add={"OrderCount": 1})
    assert (await users.get({"UserID": "1"}))["OrderCount"] == 1  # type: ignore[index]

    with pytest.raises(sk.TransactionCanceled) as err:
        async with app.transaction() as tx:
            tx.put(orders, {"UserID": "1", "OrderDate": "d2"})
            tx.update(users, {"UserID": "1"}, add={"OrderCount": 1})
            tx.condition_check(users, {"UserID": "2"}, sk.attr("OrderCount").gt(5))
            tx.delete("Orders", {"UserID": "1", "OrderDate": "d1"})
    assert [r.code for r in err.value.reasons] == ["None", "None", "ConditionalCheckFailed", "None"]
    assert await orders.get({"UserID": "1", "OrderDate": "d2"}) is None
    assert (await users.get({"UserID": "1"}))["OrderCount"] == 1  # type: ignore[index]

    with pytest.raises(sk.ValidationError, match="same item"):
        async with app.transaction() as tx:
            tx.put(users, {"UserID": "1"})
            tx.delete(users, {"UserID": "1"})
    with pytest.raises(sk.ValidationError, match="100"):
        async with app.transaction() as tx:
            for i in range(101):
                tx.put(users, {"UserID": str(i)})

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with app.transaction() as tx:
            tx.put(users, {"UserID": "x"})
            raise Boom
    assert await users.get({"UserID": "x"}) is None


async def test_provisioned_capacity_throttles_and_reports(app: sk.App) -> None:
    t = await app.create_table("Slow", partition_key="k", capacity=sk.Provisioned(read=10, write=1))
    with sk.measure_capacity() as used:
        await t.put({"k": "a", "v": "x" * 1500})  # 2 KB -> 2 units, allowed with 1 in the bucket
    assert used.write_units == 2.0
    with pytest.raises(sk.ThroughputExceeded) as err:
        await t.put({"k": "b"})
    assert err.value.retry_after > 0
    assert await t.get({"k": "b"}, consistent=True) is None
    with sk.measure_capacity() as used:
        await t.get({"k": "a"}, consistent=True)
        await t.get({"k": "a"})
    assert used.read_units == 1.5

    free = await app.create_table("Free", partition_key="k")
    with sk.measure_capacity() as used:
        for i in range(50):
            await free.put({"k": str(i)})
    assert used.write_units == 50.0


async def test_a_task_made_free_uses_no_provisioned_capacity(app: sk.App) -> None:
    """What ImportTable's writes run under: no waiting for and no taking of a provisioned
    table's units, in that task only."""
    from streamkit.storage._capacity import free

    t = await app.create_table("Slow", partition_key="k", capacity=sk.Provisioned(read=1, write=1))

    async def load() -> None:
        free()
        for i in range(10):
            await t.batch_write(puts=[{"k": f"{i}-{j}", "v": "x" * 2000} for j in range(25)])

    await asyncio.create_task(load())
    assert len([i async for i in t.scan()]) == 250
    await t.put({"k": "mine"})  # the table's own unit is still there for this task
    with pytest.raises(sk.ThroughputExceeded):
        await t.put({"k": "more"})


async def test_ttl_sweep_and_hide_expired(app: sk.App) -> None:
    import time

    t = await app.create_table("Sessions", partition_key="k", ttl_attribute="exp")
    now = int(time.time())
    await t.put({"k": "old", "exp": now - 10})
    await t.put({"k": "new", "exp": now + 3600})
    await t.put({"k": "ancient", "exp": now - 6 * 365 * 86400})  # DynamoDB ignores these
    await t.put({"k": "text", "exp": "tomorrow"})  # not a number: never expires
    assert await t.get({"k": "old"}) is not None
    assert await t.get({"k": "old"}, hide_expired=True) is None
    assert await app.sweep_expired() == 1
    assert await t.get({"k": "old"}) is None
    assert {i["k"] async for i in t.scan()} == {"new", "ancient", "text"}
    assert await app.sweep_expired() == 0


async def test_ttl_sweeper_runs_in_background(tmp_path: object) -> None:
    import asyncio
    import time

    app = sk.App(storage="memory://", ttl_interval=0.05)
    t = await app.create_table("Sessions", partition_key="k", ttl_attribute="exp")
    await t.put({"k": "old", "exp": int(time.time()) - 1})
    async with app.running():
        for _ in range(100):
            if await t.get({"k": "old"}) is None:
                break
            await asyncio.sleep(0.02)
    assert await t.get({"k": "old"}) is None
    await app.close()


async def test_data_survives_reopen(file_app: sk.App) -> None:
    t = await file_app.create_table("Things", partition_key="k")
    await t.put({"k": "a", "v": {1, 2}})
    url = file_app.storage_url
    await file_app.close()
    again = sk.App(storage=url)
    try:
        assert await again.table("Things").get({"k": "a"}) == {
            "k": "a",
            "v": {Decimal(1), Decimal(2)},
        }
    finally:
        await again.close()


async def test_update_remove_nested_on_missing_item_creates_nothing(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.update({"k": "a"}, expression="REMOVE a.b")  # no error, as in DynamoDB
    assert await t.get({"k": "a"}) is None  # and, as in DynamoDB, no item either


async def test_query_filter_may_not_use_key_attributes(app: sk.App) -> None:
    t = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    with pytest.raises(sk.ValidationError, match="non-primary key attributes"):
        [o async for o in t.query("u", filter=sk.attr("OrderDate").gt("2026"))]


async def test_non_mapping_placeholders_are_validation_errors(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    with pytest.raises(sk.ValidationError, match="values="):
        await t.put({"k": "a"}, condition="attribute_exists(:v)", values=[1])  # type: ignore[arg-type]


async def test_lone_surrogates_are_validation_errors(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    with pytest.raises(sk.ValidationError):
        await t.put({"k": "\ud800"})
    with pytest.raises(sk.ValidationError):
        await t.put({"k": "a", "v": "\udfff"})
    with pytest.raises(sk.ValidationError):
        await t.get({"k": "\ud800"})
    assert await t.count() == 0
