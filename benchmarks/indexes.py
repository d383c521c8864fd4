"""Secondary index and PartiQL figures, each a ratio against its peer in the same run.

* a 100-item query of a global index vs the same-size query of the table;
* sequential puts to a table with 2 global and 1 local index vs a table without, beside
  the floor of that ratio: raw sqlite3 writing the same rows (the item, its three index
  entries and its change row vs the item and its change row), one transaction per put;
* an online backfill of a global index over N items (``STREAMKIT_BENCH_BACKFILL``,
  default 100,000): items/s, and the latency of writes made while it runs vs before;
* PartiQL ``SELECT`` by full key vs ``get``.

Runs on the SQLite file store, and on PostgreSQL when a server URL is given.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import streamkit as sk
from benchmarks._floors import _side_by_side, raw_store
from streamkit.storage._sqlite import SqliteEngine

BACKFILL_ENV = "STREAMKIT_BENCH_BACKFILL"


def _indexed() -> dict[str, Any]:
    return {
        "global_indexes": [
            sk.GlobalIndex("ByStatus", partition_key="Status", sort_key=("Total", "N")),
            sk.GlobalIndex("ByItem", partition_key="Item", projection="KEYS_ONLY"),
        ],
        "local_indexes": [sk.LocalIndex("ByTotal", sort_key=("Total", "N"), projection=["Item"])],
    }


async def _writes(app: sk.App, seconds: float) -> dict[str, Any]:
    plain = await app.create_table("Plain", "UserID", "OrderDate")
    indexed = await app.create_table("Indexed", "UserID", "OrderDate", **_indexed())

    def writer(t: sk.Table) -> Callable[[int], Awaitable[Any]]:
        async def put(n: int) -> Any:
            return await t.put(
                {
                    "UserID": f"u{n % 1000}",
                    "OrderDate": f"{n:09d}",
                    "Status": f"s{n % 7}",
                    "Total": n % 500,
                    "Item": f"item-{n % 300}",
                    "Note": "x" * 60,
                }
            )

        return put

    base, with_ix = await _side_by_side(writer(plain), writer(indexed), 2 * seconds)
    out = {
        "puts_per_s_no_index": round(base),
        "puts_per_s_2_gsi_1_lsi": round(with_ix),
        "ratio": round(with_ix / base, 2),
        "goal": ">= 0.6",
    }
    if isinstance(app.store.engine, SqliteEngine):
        with tempfile.TemporaryDirectory() as d:
            raw_base, raw_ix = await _side_by_side(*_raw_writers(d), 2 * seconds)
        out["raw_sqlite_floor_ratio"] = round(raw_ix / raw_base, 2)
    return out


def _raw_writers(
    directory: str,
) -> tuple[Callable[[int], Awaitable[None]], Callable[[int], Awaitable[None]]]:
    """Raw sqlite3 on a WAL file of streamkit's schema, one transaction per put: the
    rows a put to the plain table writes, and those of a put to the indexed one (the
    item, an entry in each of the three indexes, the change row). Their ratio is the
    floor of streamkit's: four B-tree inserts in four places cost what they cost."""
    conn = raw_store(f"{directory}/raw.db")
    item, entry, key_only, record = (
        os.urandom(150),
        os.urandom(100),
        os.urandom(40),
        os.urandom(330),
    )
    seq = iter(range(1, 1 << 62))

    def put(n: int, tid: int, indexed: bool) -> None:
        pk, sk = f"u{n % 1000}".encode(), f"{n:09d}".encode()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT max(seq) FROM sk_changes").fetchone()
        conn.execute("SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?", (tid, pk, sk))
        rows = [(tid, pk, sk, item, 150)]
        if indexed:
            total = f"{n % 500:05d}".encode()
            rows += [
                (-(tid * 1024 + 1), f"s{n % 7}".encode(), total + pk + sk, entry, 100),
                (-(tid * 1024 + 2), f"item-{n % 300}".encode(), pk + sk, key_only, 40),
                (-(tid * 1024 + 3), pk, total + sk, entry, 100),
            ]
        conn.executemany(
            "INSERT OR REPLACE INTO sk_items (tid, pk, sk, data, size, expires) "
            "VALUES (?,?,?,?,?,NULL)",
            rows,
        )
        conn.execute(
            "INSERT INTO sk_changes (seq, tid, tname, event, txn, key, record, created_ms, "
            "publish, image, ipk, isk) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (next(seq), tid, "T", "INSERT", None, pk + sk, record, 0, 1, None, pk, sk),
        )
        conn.execute("COMMIT")

    async def plain(n: int) -> None:
        put(n, 1, False)

    async def indexed(n: int) -> None:
        put(n, 2, True)

    return plain, indexed


async def _queries(app: sk.App, seconds: float) -> dict[str, Any]:
    t = await app.create_table(
        "Orders",
        "UserID",
        "OrderDate",
        global_indexes=[
            sk.GlobalIndex("ByStatus", partition_key="Status", sort_key=("Total", "N")),
            # a multi-attribute key: two partition and two sort key attributes
            sk.GlobalIndex(
                "ByPair",
                partition_key=["Status", "Region"],
                sort_key=[("Total", "N"), "OrderDate"],
            ),
        ],
    )
    # partition "u0" of the table and partition "S0" (and "S0"/"r0") of the indexes
    # hold the same 100 items
    for i in range(100):
        await t.put(
            {"UserID": "u0", "OrderDate": f"{i:04d}", "Status": "S0", "Region": "r0", "Total": i}
        )
    for i in range(2000):
        await t.put(
            {
                "UserID": f"x{i % 50}",
                "OrderDate": f"{i:05d}",
                "Status": f"T{i % 20}",
                "Region": f"r{i % 3}",
                "Total": i,
            }
        )

    async def table_query(_: int) -> Any:
        page = await t.query_page("u0")
        assert page.count == 100

    async def index_query(_: int) -> Any:
        page = await t.query_page("S0", index="ByStatus")
        assert page.count == 100

    q_table, q_index = await _side_by_side(table_query, index_query, 2 * seconds)

    async def pair_query(_: int) -> Any:
        page = await t.query_page(("S0", "r0"), index="ByPair")
        assert page.count == 100

    q_single, q_pair = await _side_by_side(index_query, pair_query, 2 * seconds)

    async def get(n: int) -> Any:
        return await t.get({"UserID": "u0", "OrderDate": f"{n % 100:04d}"})

    async def select(n: int) -> Any:
        rows = await app.execute(
            "SELECT * FROM Orders WHERE UserID = ? AND OrderDate = ?", ["u0", f"{n % 100:04d}"]
        )
        assert len(rows) == 1

    gets, selects = await _side_by_side(get, select, 2 * seconds)
    return {
        "query_100_table_per_s": round(q_table),
        "query_100_gsi_per_s": round(q_index),
        "gsi_vs_table": round(q_index / q_table, 2),
        "gsi_goal": ">= 0.8",
        "query_100_gsi_2h2r_per_s": round(q_pair),
        "gsi_2h2r_vs_gsi": round(q_pair / q_single, 2),
        "get_per_s": round(gets),
        "partiql_select_by_key_per_s": round(selects),
        "partiql_vs_get": round(selects / gets, 2),
        "partiql_goal": ">= 0.7",
    }


async def _backfill(app: sk.App, items: int) -> dict[str, Any]:
    t = await app.create_table("Big", "UserID")
    batch = []
    for i in range(items):
        batch.append({"UserID": f"u{i:08d}", "City": f"c{i % 97}", "Pad": "y" * 40})
        if len(batch) == 25:
            await t.batch_write(puts=batch)
            batch = []
    if batch:
        await t.batch_write(puts=batch)

    async def timed_put(n: int) -> float:
        start = time.perf_counter()
        await t.put({"UserID": f"w{n % 5000:06d}", "City": f"c{n % 97}", "Pad": "z"})
        return time.perf_counter() - start

    before = [await timed_put(n) for n in range(500)]
    during: list[float] = []
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            during.append(await timed_put(n))
            n += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    start = time.perf_counter()
    await app.update_table("Big", create_index=sk.GlobalIndex("ByCity", partition_key="City"))
    took = time.perf_counter() - start
    stop.set()
    await task

    def ms(xs: list[float], q: float) -> float:
        return round(statistics.quantiles(xs, n=100)[int(q) - 1] * 1000, 2)

    return {
        "items": items,
        "seconds": round(took, 1),
        "items_per_s": round(items / took),
        "writes_during": len(during),
        "write_p50_ms_before": ms(before, 50),
        "write_p50_ms_during": ms(during, 50) if len(during) > 2 else None,
        "write_p99_ms_before": ms(before, 99),
        "write_p99_ms_during": ms(during, 99) if len(during) > 2 else None,
        "write_max_ms_during": round(max(during) * 1000, 1) if during else None,
    }


async def _one(url: Callable[[], str], seconds: float, items: int) -> dict[str, Any]:
    """Each group of figures on a store of its own (``url()`` gives a fresh one)."""
    out: dict[str, Any] = {}
    for name, fn in (
        ("writes", lambda app: _writes(app, seconds)),
        ("reads", lambda app: _queries(app, seconds)),
        ("backfill", lambda app: _backfill(app, items)),
    ):
        app = sk.App(storage=url())
        try:
            out[name] = await fn(app)
        finally:
            await app.close()
    return out


async def run(seconds: float, *, postgres: str | None = None) -> dict[str, Any]:
    """Every figure on the SQLite file store (and on PostgreSQL with a server URL)."""
    items = int(os.environ.get(BACKFILL_ENV, "100000"))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        counter = iter(range(100))
        results["sqlite"] = await _one(
            lambda: f"sqlite:///{d}/ix{next(counter)}.db", seconds, items
        )
    if postgres:
        from tests.postgres_env import drop_database, fresh_database

        urls = [await fresh_database(postgres) for _ in range(3)]
        it = iter(urls)
        try:
            results["postgres"] = await _one(lambda: next(it), seconds, items)
        finally:
            for url in urls:
                await drop_database(url)
    return results
