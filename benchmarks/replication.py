"""Global-table figures: replication lag between two regions, and catch-up throughput.

Two regions (``us-east-1``, ``eu-west-1``), each its own SQLite store and its own
embedded log (``local://``), in one process, the table created with replicas in both.

- **lag** (``lag_local``; ``lag_kafka`` when ``STREAMKIT_BENCH_KAFKA`` and
  ``STREAMKIT_BENCH_KAFKA2`` name two brokers, one per region): both regions running;
  puts of new items in ``us-east-1`` paced at ``rate``/s (``STREAMKIT_BENCH_REPLICATION_RATE``)
  for ``seconds``; a poller in ``eu-west-1`` reads the pending keys with ``batch_get``
  every millisecond. Lag = first seen by a get in ``eu-west-1`` - the put's return in
  ``us-east-1`` (``time.perf_counter``), p50/p99/max in ms. It includes ``us-east-1``'s
  relay (store → log), the replicator (log → ``eu-west-1``'s store) and the poll step.

- **catch-up throughput**: ``records`` changes (env
  ``STREAMKIT_BENCH_REPLICATION_RECORDS``, 20,000 by default; 1,000 items updated in
  turn) committed and published in ``us-east-1`` while ``eu-west-1`` is down; then
  ``eu-west-1`` starts (its relay and replicators) and is timed from ``running()`` to
  every change applied and drained: ``replicator_records_per_s``. The same records
  read by a per-record **no-op handler** (an App on ``us-east-1``'s log whose handler
  does nothing): ``noop_handler_records_per_s``; ``replicator_of_noop`` is the ratio.
  The replicator does much more per record (decode, re-encode the image, a
  last-writer-wins write with its version row, a change record, the checkpoint, and
  ``eu-west-1``'s relay publishing what it applied), so the ratio is what replication
  costs over reading the log alone.

One run on this machine: no repeats, no best-of.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import streamkit as sk
from benchmarks.capture import _percentile

US, EU = "us-east-1", "eu-west-1"
RECORDS_ENV = "STREAMKIT_BENCH_REPLICATION_RECORDS"
RATE_ENV = "STREAMKIT_BENCH_REPLICATION_RATE"  # lag: puts per second (200 by default)
# lag on Kafka too when both are set: each region on its own broker
KAFKA_ENV, KAFKA2_ENV = "STREAMKIT_BENCH_KAFKA", "STREAMKIT_BENCH_KAFKA2"


def _regions(
    tmp: Path, kafka: tuple[str, str] | None = None
) -> tuple[sk.App, sk.App, dict[str, str]]:
    if kafka is None:
        logs = {US: f"local://{tmp}/{US}-log", EU: f"local://{tmp}/{EU}-log"}
        ns: dict[str, Any] = {}
    else:  # each region on its own broker, fresh topics
        logs = {US: f"kafka://{kafka[0]}", EU: f"kafka://{kafka[1]}"}
        ns = {"namespace": f"benchrepl{uuid.uuid4().hex[:8]}"}
    us = sk.App(storage=f"sqlite:///{tmp}/{US}.db", log=logs[US], region=US, **ns)
    eu = sk.App(storage=f"sqlite:///{tmp}/{EU}.db", log=logs[EU], region=EU, **ns)
    return us, eu, logs


async def lag_figures(
    seconds: float, rate: float = 200.0, kafka: tuple[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sk-bench-repl-") as d:
        us, eu, logs = _regions(Path(d), kafka)
        for app in (us, eu):
            await app.create_table("Items", partition_key="K", replicas=logs)
        lags: list[float] = []
        pending: dict[str, float] = {}
        try:
            async with us.running(handlers=[]), eu.running(handlers=[]):
                # warm up: the first item also waits for the replicators to join
                await us.table("Items").put({"K": "warm"})
                while await eu.table("Items").get({"K": "warm"}) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                done = asyncio.Event()

                async def poll() -> None:
                    t = eu.table("Items")
                    while not (done.is_set() and not pending):
                        keys = list(pending)[:100]
                        if keys:
                            got = await eu.batch_get({t: [{"K": k} for k in keys]})
                            now = time.perf_counter()
                            for item in got["Items"]:
                                start = pending.pop(item["K"], None)
                                if start is not None:
                                    lags.append((now - start) * 1000)
                        await asyncio.sleep(0.001)

                poller = asyncio.create_task(poll())
                t = us.table("Items")
                n = int(seconds * rate)
                begin = time.perf_counter()
                for i in range(n):
                    key = f"k{i}"
                    await t.put({"K": key, "n": i})
                    pending[key] = time.perf_counter()
                    delay = begin + (i + 1) / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                done.set()
                async with asyncio.timeout(60):
                    await poller
        finally:
            await us.close()
            await eu.close()
    lags.sort()
    return {
        "writes": len(lags),
        "rate_per_s": rate,
        "p50_ms": round(_percentile(lags, 50), 1),
        "p99_ms": round(_percentile(lags, 99), 1),
        "max_ms": round(lags[-1], 1) if lags else None,
    }


async def _drained(app: sk.App, timeout: float = 600.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        try:
            await app.drain(timeout=max(1.0, deadline - time.monotonic()))
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


async def _replicated_records(app: sk.App) -> int:
    """Change records of ``us-east-1``'s writes in a region's archive."""
    from streamkit.records import decode_record

    n, after = 0, 0
    while rows := await app.store.read_changes(after, 5000):
        n += sum(1 for r in rows if decode_record(r.record).origin_region == US)
        after = rows[-1].seq
    return n


async def throughput_figures(records: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sk-bench-repl-") as d:
        tmp = Path(d)
        us, eu, logs = _regions(tmp)
        for app in (us, eu):
            await app.create_table("Items", partition_key="K", replicas=logs)
        await eu.close()
        items = 1000
        try:
            t = us.table("Items")

            async def writer(k: int) -> None:
                for n in range(records // items):
                    await t.put({"K": f"k{k:04d}", "n": n, "pad": "x" * 100})

            async with us.running(handlers=[]):
                await asyncio.gather(*(writer(k) for k in range(items)))
                await _drained(us)
            # the replicator catching up the backlog
            eu = sk.App(storage=f"sqlite:///{tmp}/{EU}.db", log=logs[EU], region=EU)
            started = time.perf_counter()
            async with eu.running(handlers=[]):
                await _drained(eu)
                while True:
                    status = await eu.replication_status("Items")
                    if status["peers"][0]["lag_records"] == 0:
                        break
                    await _drained(eu)
            replicator_s = time.perf_counter() - started
            applied = await _replicated_records(eu)
            # a no-op handler over the same records
            noop = sk.App(storage="memory://", log=logs[US], namespace=us.namespace)
            await noop.create_table("Items", partition_key="K")
            seen = 0

            @noop.on_change("Items", name="noop")
            async def handle(record: sk.ChangeRecord) -> None:
                nonlocal seen
                seen += 1

            started = time.perf_counter()
            async with noop.running(relay=False, ttl=False):
                while seen < records:  # noqa: ASYNC110 - a handler counts; we look
                    await asyncio.sleep(0.005)
            noop_s = time.perf_counter() - started
            await noop.close()
        finally:
            await us.close()
            with contextlib.suppress(Exception):
                await eu.close()
    return {
        "records": records,
        "applied_records": applied,
        "replicator_seconds": round(replicator_s, 2),
        "replicator_records_per_s": round(records / replicator_s),
        "noop_handler_seconds": round(noop_s, 2),
        "noop_handler_records_per_s": round(records / noop_s),
        "replicator_of_noop": round(noop_s / replicator_s, 3),
    }


async def run(seconds: float) -> dict[str, Any]:
    records = int(os.environ.get(RECORDS_ENV, "20000"))
    rate = float(os.environ.get(RATE_ENV, "200"))
    out = {
        "lag_local": await lag_figures(max(5.0, seconds), rate),
        "catch_up_local": await throughput_figures(records),
    }
    brokers = os.environ.get(KAFKA_ENV, ""), os.environ.get(KAFKA2_ENV, "")
    if all(brokers):
        out["lag_kafka"] = await lag_figures(max(5.0, seconds), rate, brokers)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run(5.0)), indent=2))
