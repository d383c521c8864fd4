"""Cache figures: a cached get and a cached 100-item query next to the same call without
the cache, and the staleness of the cache while a second process writes to the shared
SQLite file (change committed there → the entry dropped here).

Every figure runs on a SQLite file store, sequentially (one caller: the latency of
one call, not a throughput under concurrency).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import streamkit as sk

_ITEMS = 1000


async def _table(app: sk.App) -> sk.Table:
    users = await app.create_table("Users", partition_key="UserID", sort_key=("N", "N"))
    for i in range(_ITEMS):
        await users.put({"UserID": f"user-{i % 10}", "N": i, "Name": "x" * 40, "Age": i})
    return users


async def _timed(call: Callable[[int], Awaitable[Any]], seconds: float) -> list[float]:
    """Per-call latencies (µs) of ``call(i)`` run back to back for ``seconds``."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - t) * 1e6)
        i += 1
    return out


def _p(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _reads(url: str, d: str, cache: sk.Cache | None, seconds: float) -> dict[str, Any]:
    app = sk.App(storage=url, log=f"local://{d}/log", cache=cache)
    try:
        users = app.table("Users")
        keys = [{"UserID": f"user-{i % 10}", "N": i} for i in range(_ITEMS)]
        for k in keys:  # warm (fills the cache when there is one)
            await users.get(k)
        for p in range(10):
            await users.query_page(f"user-{p}", limit=100)

        async def get(i: int) -> None:
            await users.get(keys[i % _ITEMS])

        async def query(i: int) -> None:
            page = await users.query_page(f"user-{i % 10}", limit=100)
            assert len(page.items) == 100

        gets = await _timed(get, seconds)
        queries = await _timed(query, seconds)
        return {
            "get_p50_us": round(statistics.median(gets), 1),
            "get_p99_us": round(_p(gets, 0.99), 1),
            "gets_per_s": round(len(gets) / seconds),
            "query_100_p50_us": round(statistics.median(queries), 1),
            "query_100_p99_us": round(_p(queries, 0.99), 1),
        }
    finally:
        await app.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    import streamkit as sk

    async def main():
        app = sk.App(storage=sys.argv[1], log=sys.argv[2])
        users = app.table("Users")
        deadline = time.monotonic() + float(sys.argv[3])
        i = 0
        while time.monotonic() < deadline:
            await users.update({"UserID": f"user-{i % 10}", "N": i % 1000}, add={"Age": 1})
            i += 1
            await asyncio.sleep(0.005)
        await app.close()
        print(i)

    asyncio.run(main())
    """
)


async def _staleness(url: str, d: str, seconds: float) -> dict[str, Any]:
    """A second process updates items (~200/s) that this App has cached and keeps reading."""
    app = sk.App(storage=url, log=f"local://{d}/log", cache=sk.Cache())
    try:
        users = app.table("Users")
        keys = [{"UserID": f"user-{i % 10}", "N": i} for i in range(_ITEMS)]
        for k in keys:
            await users.get(k)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            url,
            f"local://{d}/log2",
            str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        done = asyncio.ensure_future(proc.communicate())
        i = 0
        while not done.done():
            await users.get(keys[i % _ITEMS])
            i += 1
            if i % 100 == 0:
                await asyncio.sleep(0.001)  # a reading app, not a busy loop
        out, _ = await done
        stats = app.cache_stats()
        return {
            "writes_by_other_process": int(out.decode().strip() or 0),
            "staleness_p50_ms": stats["staleness_ms"]["p50"],
            "staleness_p99_ms": stats["staleness_ms"]["p99"],
            "hit_ratio": round(stats["hits"] / max(1, stats["hits"] + stats["misses"]), 3),
        }
    finally:
        await app.close()


async def run(seconds: float) -> dict[str, Any]:
    """Every cache figure, in a fresh temporary directory."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-cache-") as d:
        url = f"sqlite:///{Path(d, 'cache.db')}"
        setup = sk.App(storage=url, log=f"local://{d}/log")
        await _table(setup)
        await setup.close()
        uncached = await _reads(url, d, None, seconds)
        cached = await _reads(url, d, sk.Cache(), seconds)
        out["uncached"] = uncached
        out["cached"] = cached
        out["get_speedup"] = round(uncached["get_p50_us"] / cached["get_p50_us"], 1)
        out["query_100_speedup"] = round(
            uncached["query_100_p50_us"] / cached["query_100_p50_us"], 1
        )
        out["staleness_sqlite_file"] = await _staleness(url, d, max(3.0, seconds))
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)), indent=2))
