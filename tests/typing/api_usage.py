"""Real API usage that mypy --strict checks: the public names keep their types."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, assert_type

import streamkit as sk


async def usage() -> None:
    app = sk.App(storage="memory://")
    users = await app.create_table("Users", partition_key="UserID", stream=sk.StreamView.KEYS_ONLY)
    assert_type(users, sk.Table)
    item = await users.get({"UserID": "1"})
    assert_type(item, dict[str, Any] | None)
    old = await users.put({"UserID": "1", "n": Decimal(1)}, returns="ALL_OLD")
    cond: sk.Condition = sk.attr("n").gt(1) & ~sk.attr("x").exists()
    await users.update({"UserID": "1"}, add={"n": 1}, condition=cond)
    page = await users.query_page("1", limit=10)
    assert_type(page, sk.Page)
    async for row in users.query("1", sort=sk.key("s").begins_with("a")):
        _ = row
    with sk.measure_capacity() as used:
        assert_type(used, sk.ConsumedCapacity)
    async with app.transaction() as tx:
        assert_type(tx, sk.Transaction)
        tx.put(users, {"UserID": "2"})
    try:
        await users.delete({"UserID": "1"})
    except sk.ConditionFailed as e:
        _ = e.item
    except sk.ThroughputExceeded as e:
        assert_type(e.retry_after, float)
    _ = old
    await app.close()
