"""Storage-level behaviours that follow DynamoDB, on every engine (issue #12, part 3):
an update that only removes creates nothing; turning TTL on judges the items already
there; TTL keys may be table or index key attributes."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

import streamkit as sk

pytestmark = pytest.mark.asyncio


async def test_an_update_that_only_removes_creates_no_item(app: sk.App) -> None:
    t = await app.create_table("Users", partition_key="id")
    assert await t.update({"id": "ghost"}, remove=["a", "b"]) is None
    assert await t.update({"id": "ghost"}, expression="REMOVE a.b[1]") is None
    assert await t.update({"id": "ghost"}, delete={"tags": {"x"}}) is None
    got = await t.update({"id": "ghost"}, remove=["a"], returns="ALL_NEW")
    assert got is None
    assert await t.get({"id": "ghost"}) is None
    assert await app.store.read_changes(0, 100) == []  # no record either
    # a REMOVE with a SET still creates it, and one on an existing item changes it
    await t.update({"id": "real"}, set={"x": 1}, remove=["a"])
    assert await t.get({"id": "real"}) == {"id": "real", "x": 1}
    await t.update({"id": "real"}, remove=["x"])
    assert await t.get({"id": "real"}) == {"id": "real"}
    # a key attribute is still refused, item or not
    with pytest.raises(sk.ValidationError):
        await t.update({"id": "ghost"}, remove=["id"])


async def test_enabling_ttl_expires_items_written_before(app: sk.App) -> None:
    t = await app.create_table("Sessions", partition_key="k")
    now = int(time.time())
    await t.put({"k": "old", "exp": now - 60})
    await t.put({"k": "e-notation", "exp": Decimal(f"{(now - 60) // 10}e1")})
    await t.put({"k": "fraction", "exp": Decimal(f"{now - 60}.1234")})
    await t.put({"k": "later", "exp": now + 3600})
    await t.put({"k": "none"})
    await t.put({"k": "other", "until": now - 60})
    assert await app.sweep_expired() == 0  # no TTL yet: nothing expires
    desc = await app.set_ttl("Sessions", "exp")
    assert desc["ttl_attribute"] == "exp"
    assert (await app.describe_table("Sessions"))["ttl_attribute"] == "exp"
    assert await app.sweep_expired() == 3
    assert {i["k"] async for i in t.scan()} == {"later", "none", "other"}
    # moved to another attribute: judged by that one; off: nothing expires
    await app.set_ttl("Sessions", "until")
    await t.put({"k": "old2", "exp": now - 60})
    await app.set_ttl("Sessions", None)
    assert await app.sweep_expired() == 0
    await app.set_ttl("Sessions", "until")
    assert await app.sweep_expired() == 1  # "other"
    assert {i["k"] async for i in t.scan()} == {"later", "none", "old2"}


async def test_set_ttl_refuses_bad_input_and_changes_nothing(app: sk.App) -> None:
    await app.create_table("Sessions", partition_key="k")
    for bad in ("", "x" * 256, 3):
        with pytest.raises(sk.ValidationError):
            await app.set_ttl("Sessions", bad)  # type: ignore[arg-type]
    assert (await app.describe_table("Sessions"))["ttl_attribute"] is None
    with pytest.raises(sk.TableNotFound):
        await app.set_ttl("Nope", "exp")


async def test_writes_racing_a_ttl_change_get_the_new_ttl(app: sk.App) -> None:
    t = await app.create_table("Sessions", partition_key="k")
    past = int(time.time()) - 60
    writes = [t.put({"k": f"k{i}", "exp": past}) for i in range(200)]
    await asyncio.gather(*writes[:100], app.set_ttl("Sessions", "exp"), *writes[100:])
    assert await app.sweep_expired() == 200


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("partition", id="partition-key"),
        pytest.param("sort", id="sort-key"),
        pytest.param("gsi", id="gsi-key"),
        pytest.param("lsi", id="lsi-key"),
    ],
)
async def test_a_key_attribute_can_be_the_ttl_attribute(app: sk.App, key: str) -> None:
    now = int(time.time())
    gsi = sk.GlobalIndex("ByG", partition_key=("g", "N"))
    lsi = sk.LocalIndex("ByL", sort_key=("l", "N"))
    if key == "partition":
        t = await app.create_table("Ttl", partition_key=("exp", "N"))
        old, new = {"exp": now - 60}, {"exp": now + 3600}
        attr = "exp"
    else:
        t = await app.create_table(
            "Ttl",
            partition_key="p",
            sort_key=("s", "N"),
            global_indexes=[gsi],
            local_indexes=[lsi],
        )
        attr = {"sort": "s", "gsi": "g", "lsi": "l"}[key]
        base = {"p": "x", "s": 1, "g": 1, "l": 1}
        old = {**base, "s": 1, attr: now - 60}
        new = {**base, "s": 2, attr: now + 3600}
    await t.put(old)
    await t.put(new)
    await app.set_ttl("Ttl", attr)
    assert await app.sweep_expired() == 1
    assert [i async for i in t.scan()] == [new]
    if key != "partition":
        # the index entries went with the item
        for index in ("ByG", "ByL"):
            got = [i async for i in t.scan(index=index)]
            assert got == [new], index
