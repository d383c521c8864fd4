"""How cost grows: the same figures at several sizes, so a curve shows, not a point.

* **items** (SQLite file store, a table without a stream, 5-attribute items): get and
  put latency (p50/p99) and throughput with 10,000 items and with a big table —
  200,000 items by default, 1,000,000 with ``STREAMKIT_BENCH_BIG=1`` — measured in
  alternating slices (both tables open at once), gets and puts (overwrites) of random
  existing keys; and the file size per item after the fill (WAL checkpointed).
* **tables** (embedded log): 1, 10 and 50 tables with a stream, ``records`` puts spread
  over them; the relay's start-up (its first start, which makes every table's topic,
  and a second one) and its throughput draining the outbox.
* **handlers** (embedded log, one table, each count in its own process so RSS is its
  own): 1, 10 and 50 no-op ``async`` handlers on the same table, each reading all
  ``records`` change records already in the log; throughput (records delivered per
  second, all handlers together), then the process's idle CPU and RSS with the
  handlers running and nothing to do.

``python -m benchmarks --only scaling`` (about a minute and a half by default; the
1M-item fill alone takes a few minutes).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import streamkit as sk
from streamkit.capture import Relay
from streamkit.cli._bench import _item

BIG_ENV = "STREAMKIT_BENCH_BIG"
SMALL_ITEMS = 10_000
BIG_ITEMS = 200_000
HUGE_ITEMS = 1_000_000


def _pct(sorted_values: Sequence[float], p: float) -> float:
    i = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[i]


def _file_size(db: str) -> int:
    """The database file and its WAL, in bytes."""
    wal = f"{db}-wal"
    return os.path.getsize(db) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


_ROOT = str(Path(__file__).resolve().parent.parent)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _fill(table: sk.Table, n: int, first: int = 0) -> float:
    """``n`` puts (batch writes of 25, 8 at a time); returns items/s."""
    batches = [range(i, min(i + 25, first + n)) for i in range(first, first + n, 25)]

    async def worker(w: int) -> None:
        for b in batches[w::8]:
            await table.batch_write(puts=[_item(i) for i in b])

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(8)))
    return n / (time.perf_counter() - start)


# --- items in one table ----------------------------------------------------------------------
async def _alternate(
    ops: dict[str, Callable[[int], Awaitable[Any]]], seconds: float, slices: int = 6
) -> dict[str, list[float]]:
    """Per-call latencies (s) of each op, run in alternating slices of ``seconds / slices``."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(slices):
        for name, op in ops.items():
            out = samples[name]
            deadline = time.perf_counter() + seconds / slices / len(ops)
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await op(len(out))
                out.append(time.perf_counter() - t0)
    return samples


def _summary(latencies: list[float]) -> dict[str, Any]:
    s = sorted(latencies)
    return {
        "per_s": round(len(s) / sum(s)),
        "p50_us": round(_pct(s, 50) * 1e6, 1),
        "p99_us": round(_pct(s, 99) * 1e6, 1),
    }


async def items_figures(seconds: float, big: int | None = None) -> dict[str, Any]:
    """Gets and puts with 10k vs ``big`` items, side by side; file size per item."""
    if big is None:
        big = HUGE_ITEMS if os.environ.get(BIG_ENV) == "1" else BIG_ITEMS
    sizes = {"small": SMALL_ITEMS, "big": big}
    out: dict[str, Any] = {"items": sizes}
    with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
        apps: dict[str, sk.App] = {}
        tables: dict[str, sk.Table] = {}
        try:
            for name, n in sizes.items():
                app = apps[name] = sk.App(
                    storage=f"sqlite:///{d}/{name}.db", log=f"local://{d}/{name}-log"
                )
                tables[name] = await app.create_table("Users", partition_key="UserID", stream=None)
                out[f"fill_{name}_items_per_s"] = round(await _fill(tables[name], n))
            rng = random.Random(7)
            ops: dict[str, Callable[[int], Awaitable[Any]]] = {}
            for name, n in sizes.items():
                t = tables[name]

                async def get(_: int, t: sk.Table = t, n: int = n) -> None:
                    assert await t.get({"UserID": f"user-{rng.randrange(n):08d}"}) is not None

                async def put(i: int, t: sk.Table = t, n: int = n) -> None:
                    item = _item(rng.randrange(n))
                    item["Age"] = i  # a real change: a MODIFY, not a no-op
                    await t.put(item)

                ops[f"get_{name}"] = get
                ops[f"put_{name}"] = put
            samples = await _alternate(ops, 4 * seconds)
        finally:
            for app in apps.values():
                await app.close()  # the last connection checkpoints the WAL into the file
        for op, lat in samples.items():
            out[op] = _summary(lat)
        for name, n in sizes.items():
            out[f"file_{name}_bytes_per_item"] = round(_file_size(f"{d}/{name}.db") / n)
        for what in ("get", "put"):
            s, b = out[f"{what}_small"], out[f"{what}_big"]
            out[f"{what}_big_vs_small_per_s"] = round(b["per_s"] / s["per_s"], 2)
    return out


# --- tables with streams: the relay ------------------------------------------------------------
async def _relay_figure(d: str, tables: int, records: int) -> dict[str, Any]:
    app = sk.App(storage=f"sqlite:///{d}/store.db", log=f"local://{d}/log")
    try:
        handles = [
            await app.create_table(f"T{i:03d}", partition_key="UserID") for i in range(tables)
        ]
        per = records // tables
        for i, t in enumerate(handles):
            await _fill(t, per, first=i * per)
        total = per * tables
        await app.log.open()
        starts = []
        relay: Relay | None = None
        for _ in range(2):  # the first start makes the topics; the second finds them
            relay = Relay(app._store, app.log, app.namespace)
            t0 = time.perf_counter()
            await relay._start()
            starts.append(time.perf_counter() - t0)
            if len(starts) == 1:
                await relay._close_producer()
        assert relay is not None
        moved = 0
        t0 = time.perf_counter()
        while n := await relay.relay_once():
            moved += n
        elapsed = time.perf_counter() - t0
        await relay._close_producer()
        assert moved == total, (moved, total)
    finally:
        await app.close()
    return {
        "first_start_ms": round(starts[0] * 1000, 1),
        "second_start_ms": round(starts[1] * 1000, 1),
        "relay_records_per_s": round(total / elapsed),
        "records": total,
    }


async def tables_figures(
    counts: Sequence[int] = (1, 10, 50), records: int = 20_000
) -> dict[str, Any]:
    """Relay start-up and throughput with 1, 10, 50 streamed tables (same total records)."""
    out: dict[str, Any] = {}
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
            out[f"{n}_tables"] = await _relay_figure(d, n, records)
    return out


# --- handlers on one table ---------------------------------------------------------------------
async def _handlers_child(handlers: int, records: int, idle: float) -> dict[str, Any]:
    """One process: ``handlers`` no-op handlers read ``records`` records, then sit idle."""
    with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
        app = sk.App(storage=f"sqlite:///{d}/store.db", log=f"local://{d}/log")
        users = await app.create_table("Users", partition_key="UserID")
        await _fill(users, records)
        relay = Relay(app._store, app.log, app.namespace)
        await relay._start()
        while await relay.relay_once():  # the records are in the log before any handler runs
            pass
        await relay._close_producer()
        counts = [0] * handlers
        done = asyncio.Event()
        finished = 0

        def make(h: int) -> Callable[[sk.ChangeRecord], Awaitable[None]]:
            async def handle(record: sk.ChangeRecord) -> None:
                nonlocal finished
                counts[h] += 1
                if counts[h] == records:
                    finished += 1
                    if finished == handlers:
                        done.set()

            return handle

        for h in range(handlers):
            app.on_insert("Users", name=f"h{h:02d}")(make(h))
        rss_before = _rss_mb()
        t0 = time.perf_counter()
        async with app.running(relay=False, ttl=False):
            await asyncio.wait_for(done.wait(), 600)
            elapsed = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # let the last commits and polls settle
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(idle)
            idle_cpu = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
            rss = _rss_mb()
        await app.close()
    return {
        "records_per_s": round(handlers * records / elapsed),
        "seconds": round(elapsed, 2),
        "idle_cpu_percent": round(idle_cpu, 2),
        "rss_mb": round(rss, 1),
        "rss_before_handlers_mb": round(rss_before, 1),
    }


async def handlers_figures(
    counts: Sequence[int] = (1, 10, 50), records: int = 10_000, idle: float = 3.0
) -> dict[str, Any]:
    """Each handler count in a fresh process (so its RSS is its own)."""
    out: dict[str, Any] = {}
    for n in counts:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.scaling",
            "handlers",
            str(n),
            str(records),
            str(idle),
            stdout=subprocess.PIPE,
            cwd=_ROOT,
        )
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"handlers child ({n}) exited with {proc.returncode}")
        out[f"{n}_handlers"] = json.loads(stdout.decode().strip().splitlines()[-1])
    return out


async def run(seconds: float) -> dict[str, Any]:
    """Every scaling figure (see the module docstring)."""
    out: dict[str, Any] = {"items": await items_figures(seconds)}
    out["tables"] = await tables_figures()
    out["handlers"] = await handlers_figures()
    per_s = [out["handlers"][k]["records_per_s"] for k in ("1_handlers", "50_handlers")]
    out["handlers"]["50_vs_1_records_per_s"] = round(per_s[1] / per_s[0], 2)
    relay = [out["tables"][k]["relay_records_per_s"] for k in ("1_tables", "50_tables")]
    out["tables"]["50_vs_1_relay_per_s"] = round(relay[1] / relay[0], 2)
    out["median_fill_items_per_s"] = round(
        statistics.median(v for k, v in out["items"].items() if k.startswith("fill_"))
    )
    return out


def main(argv: Sequence[str]) -> None:
    if argv and argv[0] == "handlers":
        n, records, idle = int(argv[1]), int(argv[2]), float(argv[3])
        print(json.dumps(asyncio.run(_handlers_child(n, records, idle))))
        return
    print(json.dumps(asyncio.run(run(float(argv[0]) if argv else 3.0)), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
