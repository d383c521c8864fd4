"""``streamkit bench``: the storage figures, measured on this machine.

Every figure runs against a fresh file-backed SQLite store in a temporary
directory, with a NEW_AND_OLD_IMAGES stream (so each write also commits its
change record). ``benchmarks/`` runs the same functions next to the
baselines (raw sqlite3, moto).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ("bench_concurrent_puts", "bench_gets", "bench_puts", "bench_query", "run_bench")


def _item(i: int) -> dict[str, Any]:
    return {
        "UserID": f"user-{i:08d}",
        "Name": f"Name {i}",
        "Email": f"user{i}@example.com",
        "Age": 20 + i % 50,
        "Active": i % 2 == 0,
    }


async def _fresh_app(directory: str) -> Any:
    from streamkit._app import App

    app = App(storage=f"sqlite:///{directory}/bench.db", log=f"local://{directory}/log")
    await app.create_table("Users", partition_key="UserID")
    return app


async def bench_puts(directory: str, seconds: float) -> float:
    """Awaited single-item puts, one after another: puts per second."""
    app = await _fresh_app(directory)
    users = app.table("Users")
    try:
        for i in range(200):  # warm up
            await users.put(_item(i))
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(200):
                await users.put(_item(n))
                n += 1
            if time.perf_counter() >= deadline:
                break
        return n / (time.perf_counter() - start)
    finally:
        await app.close()


async def bench_concurrent_puts(directory: str, seconds: float, writers: int = 100) -> float:
    """Puts from ``writers`` concurrent tasks: puts per second in total."""
    app = await _fresh_app(directory)
    users = app.table("Users")
    counts = [0] * writers
    stop = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            await users.put(_item(w * 10_000_000 + i))
            i += 1
        counts[w] = i

    try:
        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        return sum(counts) / (time.perf_counter() - start)
    finally:
        await app.close()


async def bench_gets(
    directory: str, seconds: float, readers: int = 1, items: int = 10_000
) -> float:
    """Gets of existing items from ``readers`` concurrent tasks: gets per second."""
    app = await _fresh_app(directory)
    users = app.table("Users")
    try:
        for start_i in range(0, items, 25):
            await users.batch_write(
                puts=[_item(i) for i in range(start_i, min(items, start_i + 25))]
            )
        counts = [0] * readers
        stop = time.perf_counter() + seconds

        async def reader(r: int) -> None:
            i = r
            n = 0
            while time.perf_counter() < stop:
                item = await users.get({"UserID": f"user-{i % items:08d}"})
                assert item is not None
                i += 7919
                n += 1
            counts[r] = n

        start = time.perf_counter()
        await asyncio.gather(*(reader(r) for r in range(readers)))
        return sum(counts) / (time.perf_counter() - start)
    finally:
        await app.close()


async def bench_query(directory: str, seconds: float, size: int = 100) -> dict[str, float]:
    """Latency of a query returning ``size`` items: p50 and p99 in milliseconds."""
    from streamkit._app import App

    app = App(storage=f"sqlite:///{directory}/bench-q.db", log=f"local://{directory}/log")
    orders = await app.create_table("Orders", partition_key="UserID", sort_key=("Seq", "N"))
    try:
        for p in range(10):
            for start_i in range(0, size, 25):
                await orders.batch_write(
                    puts=[
                        {"UserID": f"u{p}", "Seq": i, "Total": i * 3, "Item": f"sku-{i}"}
                        for i in range(start_i, min(size, start_i + 25))
                    ]
                )
        samples: list[float] = []
        stop = time.perf_counter() + seconds
        p = 0
        while time.perf_counter() < stop or len(samples) < 50:
            t0 = time.perf_counter()
            got = [o async for o in orders.query(f"u{p % 10}")]
            samples.append((time.perf_counter() - t0) * 1000)
            assert len(got) == size
            p += 1
        samples.sort()
        return {
            "p50_ms": statistics.median(samples),
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "samples": float(len(samples)),
        }
    finally:
        await app.close()


async def run_bench(seconds: float = 2.0) -> dict[str, Any]:
    """Run every storage figure, each in a fresh temporary directory."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:
        results["puts_per_s_sequential"] = round(await bench_puts(str(Path(d, "a")), seconds))
        results["puts_per_s_100_writers"] = round(
            await bench_concurrent_puts(str(Path(d, "b")), seconds)
        )
        results["gets_per_s_sequential"] = round(await bench_gets(str(Path(d, "c")), seconds))
        results["gets_per_s_100_readers"] = round(
            await bench_gets(str(Path(d, "d")), seconds, readers=100)
        )
        q = await bench_query(str(Path(d, "e")), seconds)
        results["query_100_items_p50_ms"] = round(q["p50_ms"], 3)
        results["query_100_items_p99_ms"] = round(q["p99_ms"], 3)
    return results
