"""Storage figures next to their baselines: raw sqlite3 (the floor) and moto (mock_aws).

The streamkit figures are the same functions ``streamkit bench`` runs. The raw
sqlite3 floor does the same work per put as streamkit's writer does in SQL (read
the old row, upsert the item, append the change record, one transaction per
put; and grouped 100 per transaction, of the keys the 100 writers write, for the
concurrent case), with no Python around it beyond the loop.

``puts_side_by_side`` measures sequential puts and that floor, and
``writers_side_by_side`` 100 concurrent writers and the grouped floor, in alternating
slices of one run (so a load that comes and goes weighs on both alike); ``point_reads_side_by_side``
puts uncached sequential ``get`` calls next to the raw
point-read floor (``SELECT data, size ... WHERE tid=? AND pk=? AND sk=?`` on a
sqlite3 connection of the same file, same keys), in alternating slices.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from benchmarks._floors import _side_by_side, raw_store
from streamkit.cli._bench import (
    _fresh_app,
    _item,
    bench_concurrent_puts,
    bench_gets,
    bench_puts,
    bench_query,
)


def raw_sqlite_puts(
    directory: str, seconds: float, group: int = 1, *, writers_keys: bool = False
) -> float:
    """The floor: the same SQL per put on a WAL file, ``group`` puts per transaction.

    With ``writers_keys``, each transaction writes the keys ``bench_concurrent_puts``'s
    ``group`` writers write at once (writer ``w``'s ``i``-th put is user ``w * 10**7 + i``,
    so one group touches ``group`` places in the key order, as streamkit's group commit
    of those writers does); else the keys follow one another (fewer pages per commit).
    """
    conn = raw_store(f"{directory}/raw.db")
    data = os.urandom(120)
    record = os.urandom(330)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        turn = n // group
        keys = [
            f"user-{w * 10_000_000 + turn if writers_keys else n + w:08d}".encode()
            for w in range(group)
        ]
        _raw_put_transaction(conn, keys, n, data, record)
        n += group
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def _raw_put_transaction(
    conn: sqlite3.Connection, keys: list[bytes], n: int, data: bytes, record: bytes
) -> None:
    """One transaction of the floor: read the sequence, then per key read the old row,
    upsert the item and append its change record (changes numbered from ``n + 1``)."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("SELECT max(seq) FROM sk_changes").fetchone()
    for pk in keys:
        conn.execute(
            "SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?", (1, pk, b"")
        ).fetchone()
        conn.execute(
            "INSERT OR REPLACE INTO sk_items (tid, pk, sk, data, size, expires) "
            "VALUES (?,?,?,?,?,?)",
            (1, pk, b"", data, 100, None),
        )
        n += 1
        conn.execute(
            "INSERT INTO sk_changes "
            "(seq, tid, tname, event, txn, key, record, created_ms, publish, image) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (n, 1, "Users", "INSERT", None, pk, record, 0, 1, None),
        )
    conn.execute("COMMIT")


@contextlib.asynccontextmanager
async def _beside_raw(
    directory: str,
) -> AsyncIterator[tuple[Any, Callable[[list[bytes], int], None]]]:
    """streamkit's ``Users`` table and, beside it, ``raw_put(keys, n)``: one transaction of
    the raw floor on a file of its own (changes numbered from ``n + 1``)."""
    app = await _fresh_app(directory)
    raw = raw_store(f"{directory}/raw.db")
    data = os.urandom(120)
    record = os.urandom(330)

    def raw_put(keys: list[bytes], n: int) -> None:
        _raw_put_transaction(raw, keys, n, data, record)

    try:
        yield app.table("Users"), raw_put
    finally:
        raw.close()
        await app.close()


async def puts_side_by_side(directory: str, seconds: float) -> dict[str, Any]:
    """Awaited sequential puts vs the raw floor (one transaction per put), alternating
    slices of each in one run: two files side by side, each written by its own side."""
    async with _beside_raw(directory) as (users, raw_put):
        for i in range(200):  # warm up, as bench_puts does
            await users.put(_item(1_000_000_000 + i))

        async def put(n: int) -> None:
            await users.put(_item(n))

        async def raw_one(n: int) -> None:
            raw_put([f"user-{n:08d}".encode()], n)

        ours, floor = await _side_by_side(put, raw_one, seconds)
    return {
        "puts_per_s": round(ours),
        "raw_sqlite_puts_per_s": round(floor),
        "of_raw_floor": round(ours / floor, 2),
        "goal": ">= 0.6",
    }


async def writers_side_by_side(
    directory: str, seconds: float, writers: int = 100
) -> dict[str, Any]:
    """``writers`` concurrent tasks putting (writer ``w``'s ``i``-th put is user
    ``w * 10**7 + i``, as ``bench_concurrent_puts``) vs the grouped floor (``writers``
    puts per transaction, the keys those writers write at once), in alternating slices
    of one run."""
    done = {"ours": 0, "raw": 0}
    spent = {"ours": 0.0, "raw": 0.0}
    turn = [0] * writers
    raw_turn = 0
    async with _beside_raw(directory) as (users, raw_put):

        async def writer(w: int, deadline: float) -> None:
            while time.perf_counter() < deadline:
                await users.put(_item(w * 10_000_000 + turn[w]))
                turn[w] += 1
                done["ours"] += 1

        for _ in range(6):
            start = time.perf_counter()
            deadline = start + seconds / 12
            await asyncio.gather(*(writer(w, deadline) for w in range(writers)))
            spent["ours"] += time.perf_counter() - start
            start = time.perf_counter()
            deadline = start + seconds / 12
            while time.perf_counter() < deadline:
                raw_put(
                    [f"user-{w * 10_000_000 + raw_turn:08d}".encode() for w in range(writers)],
                    done["raw"],
                )
                done["raw"] += writers
                raw_turn += 1
            spent["raw"] += time.perf_counter() - start
    ours, floor = done["ours"] / spent["ours"], done["raw"] / spent["raw"]
    return {
        "puts_per_s": round(ours),
        "raw_sqlite_grouped_per_s": round(floor),
        "of_grouped_floor": round(ours / floor, 2),
        "goal": ">= 0.5",
    }


async def point_reads_side_by_side(
    directory: str, seconds: float, items: int = 10_000
) -> dict[str, Any]:
    """Uncached sequential gets vs raw sqlite3 point reads of the same rows, alternating."""
    app = await _fresh_app(directory)
    users = app.table("Users")
    raw = sqlite3.connect(f"{directory}/bench.db", isolation_level=None)
    try:
        for start_i in range(0, items, 25):
            await users.batch_write(
                puts=[_item(i) for i in range(start_i, min(items, start_i + 25))]
            )
        spec = await app._store.spec("Users")
        tid = spec.table_id
        keys = [spec.key.parse_key({"UserID": f"user-{i:08d}"})[1:] for i in range(items)]

        async def get(n: int) -> None:
            item = await users.get({"UserID": f"user-{n * 7919 % items:08d}"})
            assert item is not None

        async def raw_get(n: int) -> None:
            pk, sk = keys[n * 7919 % items]
            row = raw.execute(
                "SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?", (tid, pk, sk)
            ).fetchone()
            assert row is not None

        ours, floor = await _side_by_side(get, raw_get, seconds)
    finally:
        raw.close()
        await app.close()
    return {
        "gets_per_s": round(ours),
        "raw_sqlite_point_reads_per_s": round(floor),
        "of_raw_floor": round(ours / floor, 2),
        "goal": ">= 0.3",
    }


def moto_puts(seconds: float) -> float:
    """Sequential boto3 put_item calls against moto's in-process DynamoDB (mock_aws)."""
    import boto3
    from moto import mock_aws

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="Users",
            KeySchema=[{"AttributeName": "UserID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "UserID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        table = resource.Table("Users")
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            table.put_item(Item=_item(n))
            n += 1
        return n / (time.perf_counter() - start)


async def run(seconds: float) -> dict[str, Any]:
    """Every storage figure and its baselines, each in a fresh temporary directory."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:

        def sub(name: str) -> str:
            p = Path(d, name)
            p.mkdir()
            return str(p)

        out["puts_sequential_per_s"] = round(await bench_puts(sub("a"), seconds))
        out["raw_sqlite_puts_per_s"] = round(raw_sqlite_puts(sub("b"), seconds))
        out["moto_puts_per_s"] = round(moto_puts(seconds))
        out["vs_moto"] = round(out["puts_sequential_per_s"] / out["moto_puts_per_s"], 1)
        out["of_raw_sqlite_floor"] = round(
            out["puts_sequential_per_s"] / out["raw_sqlite_puts_per_s"], 2
        )
        out["puts_vs_raw_floor"] = await puts_side_by_side(sub("j"), 2 * seconds)
        out["writers_100_vs_grouped_floor"] = await writers_side_by_side(sub("k"), 2 * seconds)
        out["puts_100_writers_per_s"] = round(await bench_concurrent_puts(sub("c"), seconds))
        out["raw_sqlite_puts_grouped_100_per_s"] = round(
            raw_sqlite_puts(sub("d"), seconds, 100, writers_keys=True)
        )
        out["raw_sqlite_puts_grouped_100_sequential_keys_per_s"] = round(
            raw_sqlite_puts(sub("i"), seconds, 100)
        )
        out["puts_100_writers_of_grouped_floor"] = round(
            out["puts_100_writers_per_s"] / out["raw_sqlite_puts_grouped_100_per_s"], 2
        )
        out["gets_sequential_per_s"] = round(await bench_gets(sub("e"), seconds))
        out["gets_vs_raw_point_reads"] = await point_reads_side_by_side(sub("h"), 2 * seconds)
        out["gets_100_readers_per_s"] = round(await bench_gets(sub("f"), seconds, readers=100))
        q = await bench_query(sub("g"), seconds)
        out["query_100_items_p50_ms"] = round(q["p50_ms"], 3)
        out["query_100_items_p99_ms"] = round(q["p99_ms"], 3)
    return out
