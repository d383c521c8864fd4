"""The SQLite writer reads a group's old rows in one statement (``_Rows.prefetch``), and
what it read ahead never stands in for a row written since: by an earlier job of the same
group, by work that wrote SQL of its own, or by another connection before the group."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from tests.unit.storage.helpers import sqlite_engine

_SINGLE = "SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?"


async def test_a_group_reads_its_old_rows_in_one_statement(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        for i in range(0, 64, 2):  # every other key exists
            await items.put({"id": f"k{i}", "n": i})
        statements: list[str] = []
        writer = sqlite_engine(app)._writer
        assert writer is not None and writer.rows is not None
        writer.rows.conn.set_trace_callback(statements.append)
        olds = await asyncio.gather(
            *(items.put({"id": f"k{i}", "n": -i}, returns="ALL_OLD") for i in range(64))
        )
        writer.rows.conn.set_trace_callback(None)
        assert olds == [{"id": f"k{i}", "n": i} if i % 2 == 0 else None for i in range(64)]
        single = [s for s in statements if s.startswith(_SINGLE[:40])]
        ahead = [s for s in statements if s.startswith("WITH k(t, p, s)")]
        assert len(single) <= 1, single[:3]  # (the turn's first write may run alone)
        assert 1 <= len(ahead) <= 2
        assert [await items.get({"id": f"k{i}"}) for i in range(64)] == [
            {"id": f"k{i}", "n": -i} for i in range(64)
        ]
    finally:
        await app.close()


async def test_a_row_another_connection_wrote_between_groups_is_read_again(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    app = sk.App(storage=url, log=f"local://{tmp_path}/log")
    other = sk.App(storage=url, log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        theirs = other.table("Items")
        for rnd in range(5):
            await theirs.put({"id": "shared", "by": "other", "round": rnd})
            olds = await asyncio.gather(
                *(
                    items.put({"id": k, "by": "app", "round": rnd}, returns="ALL_OLD")
                    for k in ("shared", "a", "b", "c")
                )
            )
            assert olds[0] == {"id": "shared", "by": "other", "round": rnd}
    finally:
        await other.close()
        await app.close()


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "update", "delete", "check-put"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 9),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(groups=st.lists(_OPS, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_grouped_writes_see_what_the_jobs_before_them_wrote(
    tmp_path_factory: Any, groups: list[list[tuple[str, str, int]]], seed: int
) -> None:
    """Writes that arrive together (one group, read ahead) return the old items and leave
    the table exactly as the same writes one after another would."""
    tmp = tmp_path_factory.mktemp("g")

    async def run() -> None:
        app = sk.App(storage=f"sqlite:///{tmp}/s.db", log=f"local://{tmp}/log")
        try:
            items = await app.create_table("Items", "id")
            model: dict[str, dict[str, Any]] = {}
            rng = random.Random(seed)
            for ops in groups:
                expected: list[Any] = []
                calls = []
                for op, key, n in ops:
                    old = model.get(key)
                    if op == "put":
                        expected.append(old)
                        model[key] = {"id": key, "n": n}
                        calls.append(items.put({"id": key, "n": n}, returns="ALL_OLD"))
                    elif op == "update":
                        new = dict(old or {"id": key})
                        new["n"] = new.get("n", 0) + n
                        expected.append(new)
                        model[key] = new
                        calls.append(items.update({"id": key}, add={"n": n}, returns="ALL_NEW"))
                    elif op == "delete":
                        expected.append(old)
                        model.pop(key, None)
                        calls.append(items.delete({"id": key}, returns="ALL_OLD"))
                    else:  # a put only where the item is missing: fails where it exists
                        expected.append("failed" if old is not None else None)
                        if old is None:
                            model[key] = {"id": key, "n": n}
                        calls.append(_put_if_missing(items, key, n))
                if rng.random() < 0.3:
                    await items.get({"id": "a"})  # a read between groups
                got = await asyncio.gather(*calls)
                assert got == expected
            for key in ("a", "b", "c"):
                assert await items.get({"id": key}) == model.get(key)
        finally:
            await app.close()

    asyncio.run(run())


async def _put_if_missing(items: sk.Table, key: str, n: int) -> Any:
    try:
        return await items.put(
            {"id": key, "n": n}, condition="attribute_not_exists(id)", returns="ALL_OLD"
        )
    except sk.ConditionFailed:
        return "failed"
