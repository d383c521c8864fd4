"""Capture figures: how fast the relay empties the outbox, and how soon a write is readable.

On every backend (``local`` always; ``kafka`` when an address is given, or
``STREAMKIT_TEST_KAFKA`` names one):

- **throughput**: an outbox pre-filled with ``records`` puts (``batch_write`` of 25,
  filled once and copied per backend) is drained by one relay, timed from its first
  batch until the last is committed in the log. The baseline sends the *same* encoded
  records (key, value, headers, timestamp) in transactions of the *same* sizes: a raw
  aiokafka transactional producer on Kafka, streamkit's own ``LocalProducer`` on the
  local log (the relay's floor there). ``of_raw`` = relay / baseline.
- **latency**: puts paced at ``rate`` per second for ``latency_seconds`` with the app
  running (relay in the same process); a reader of the table's changes
  (``app.changes(start="latest")``, same process) notes when each record arrives;
  latency = arrival - the put's return, p50/p99/max in ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamkit as sk
from streamkit.capture import Relay, table_topic
from streamkit.capture._relay import headers_of
from streamkit.cli._bench import _item
from streamkit.log import OutRecord, TopicConfig, from_url
from streamkit.storage._store import Store

KAFKA_ENV = "STREAMKIT_TEST_KAFKA"


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[i]


# --- the outbox ----------------------------------------------------------------------------
async def fill_outbox(db: Path, records: int) -> float:
    """Commit ``records`` puts (batch writes of 25, 8 at a time); returns records/s."""
    app = sk.App(storage=f"sqlite:///{db}", log=f"local://{db.parent}/unused-log")
    users = await app.create_table("Users", partition_key="UserID")
    started = time.perf_counter()
    batches = [range(i, min(i + 25, records)) for i in range(0, records, 25)]

    async def worker(w: int) -> None:
        for b in batches[w::8]:
            await users.batch_write(puts=[_item(i) for i in b])

    await asyncio.gather(*(worker(w) for w in range(8)))
    elapsed = time.perf_counter() - started
    await app.close()
    return records / elapsed


def _copy_db(source: Path, target: Path) -> None:
    """A consistent copy (the backup API: the WAL's committed pages included)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


async def _outbox_records(db: Path, namespace: str) -> list[OutRecord]:
    store = Store(f"sqlite:///{db}")
    rows = await store.read_changes(0, 10**9)
    await store.close()
    return [
        OutRecord(table_topic(namespace, r.table), r.key, r.record, headers_of(r), r.created_ms)
        for r in rows
        if r.publish
    ]


# --- throughput ----------------------------------------------------------------------------
async def relay_throughput(db: Path, log_url: str) -> dict[str, Any]:
    """One relay drains the outbox at ``db`` into the log: records/s and batch sizes."""
    app = sk.App(storage=f"sqlite:///{db}", log=log_url, namespace=f"bench-{uuid.uuid4()}")
    topic = table_topic(app.namespace, "Users")
    await app.log.open()
    await app.log.ensure_topic(topic, TopicConfig())  # topic creation is not capture
    relay = Relay(app._store, app.log, app.namespace)
    await relay._start()  # connecting and fencing are not capture either
    total = await app._store.read_changes_tail()
    sizes: list[int] = []
    started = time.perf_counter()
    while moved := await relay.relay_once():
        sizes.append(moved)
    elapsed = time.perf_counter() - started
    await relay._close_producer()
    assert sum(sizes) == total, (sum(sizes), total)
    if log_url.startswith("kafka://"):
        await app.log.delete_topic(topic)
    await app.close()
    return {"records": total, "seconds": elapsed, "per_s": total / elapsed, "batches": sizes}


async def raw_aiokafka_throughput(
    address: str, records: list[OutRecord], sizes: list[int]
) -> float:
    """A bare aiokafka transactional producer sending the same records in the same
    transactions (same config as streamkit's: idempotent, acks=all, linger_ms=0)."""
    from aiokafka import AIOKafkaProducer

    topic = f"bench-raw-{uuid.uuid4()}"
    async with from_url(f"kafka://{address}") as log:
        await log.ensure_topic(topic, TopicConfig())
        producer = AIOKafkaProducer(
            bootstrap_servers=address,
            transactional_id=f"bench-raw-{uuid.uuid4()}",
            enable_idempotence=True,
            linger_ms=0,
        )
        await producer.start()
        try:
            started = time.perf_counter()
            i = 0
            for size in sizes:
                await producer.begin_transaction()
                for r in records[i : i + size]:
                    await producer.send(
                        topic,
                        value=r.value,
                        key=r.key,
                        headers=list(r.headers),
                        timestamp_ms=r.timestamp_ms,
                    )
                await producer.commit_transaction()
                i += size
            elapsed = time.perf_counter() - started
        finally:
            await producer.stop()
        await log.delete_topic(topic)
    return len(records) / elapsed


async def raw_aiokafka_batches_throughput(
    address: str, records: list[OutRecord], sizes: list[int]
) -> float:
    """The same transactions through aiokafka's ``create_batch``/``send_batch`` (one
    BatchBuilder per partition, no per-record future), as the Kafka backend sends them:
    the ceiling for the relay."""
    from aiokafka import AIOKafkaProducer

    from streamkit.log import partition_for_key

    topic = f"bench-raw-{uuid.uuid4()}"
    config = TopicConfig()
    async with from_url(f"kafka://{address}") as log:
        await log.ensure_topic(topic, config)
        producer = AIOKafkaProducer(
            bootstrap_servers=address,
            transactional_id=f"bench-raw-{uuid.uuid4()}",
            enable_idempotence=True,
            linger_ms=0,
        )
        await producer.start()
        try:
            started = time.perf_counter()
            i = 0
            for size in sizes:
                await producer.begin_transaction()
                builders: dict[int, Any] = {}
                for r in records[i : i + size]:
                    part = partition_for_key(config.partitions, r.key)
                    fields = {
                        "key": r.key,
                        "value": r.value,
                        "timestamp": r.timestamp_ms,
                        "headers": list(r.headers),
                    }
                    builder = builders.get(part)
                    if builder is None:
                        builder = builders[part] = producer.create_batch()
                    if builder.append(**fields) is None:  # full: send it, start another
                        await producer.send_batch(builder, topic, partition=part)
                        builder = builders[part] = producer.create_batch()
                        builder.append(**fields)
                for part, builder in builders.items():
                    await producer.send_batch(builder, topic, partition=part)
                await producer.commit_transaction()
                i += size
            elapsed = time.perf_counter() - started
        finally:
            await producer.stop()
        await log.delete_topic(topic)
    return len(records) / elapsed


async def raw_local_throughput(
    directory: Path, records: list[OutRecord], sizes: list[int]
) -> float:
    """streamkit's LocalProducer appending the same records in the same batches."""
    topic = f"bench-raw-{uuid.uuid4()}"
    async with from_url(f"local://{directory}") as log:
        await log.ensure_topic(topic, TopicConfig())
        producer = log.producer(f"bench-raw-{uuid.uuid4()}")
        await producer.start()
        recs = [OutRecord(topic, r.key, r.value, r.headers, r.timestamp_ms) for r in records]
        started = time.perf_counter()
        i = 0
        for size in sizes:
            await producer.append(recs[i : i + size])
            i += size
        elapsed = time.perf_counter() - started
        await producer.close()
    return len(records) / elapsed


# --- latency -------------------------------------------------------------------------------
async def commit_to_visible(
    directory: Path, log_url: str, *, rate: float, seconds: float
) -> dict[str, Any]:
    """Paced puts with the app running; a change reader notes each record's arrival."""
    app = sk.App(
        storage=f"sqlite:///{directory}/latency.db", log=log_url, namespace=f"bench-{uuid.uuid4()}"
    )
    users = await app.create_table("Users", partition_key="UserID")
    returned: dict[str, float] = {}
    arrived: dict[str, float] = {}
    pending: set[str] = set()  # written, not yet read (filled once writing is over)
    all_read = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def read() -> None:
        async for record in app.changes("Users", start="latest", poll=0.05):
            key = str(record.keys["UserID"])
            arrived[key] = time.perf_counter()
            if pending:
                pending.discard(key)
                if not pending:
                    all_read.set()

    async with app.running():
        await users.put({"UserID": "warm-up"})
        await app.drain()  # the topic exists
        reader = asyncio.create_task(read())
        try:
            # the reader is in place once it sees a write made after it started
            deadline = loop.time() + 30
            i = 0
            while not any(k.startswith("ready-") for k in arrived):
                assert loop.time() < deadline, "the change reader never got going"
                await users.put({"UserID": f"ready-{i}"})
                i += 1
                await asyncio.sleep(0.05)
            n = round(rate * seconds)
            started = loop.time()
            for i in range(n):
                ahead = started + i / rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing
                item = _item(i)
                await users.put(item)
                returned[item["UserID"]] = time.perf_counter()
            wrote_for = loop.time() - started
            pending.update(k for k in returned if k not in arrived)
            if pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_read.wait(), 30)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    if log_url.startswith("kafka://"):
        await app.log.delete_topic(table_topic(app.namespace, "Users"))
    await app.close()
    ms = sorted((arrived[k] - t) * 1000 for k, t in returned.items() if k in arrived)
    return {
        "writes_per_s": round(len(returned) / wrote_for),
        "p50_ms": round(_percentile(ms, 50), 1),
        "p99_ms": round(_percentile(ms, 99), 1),
        "max_ms": round(ms[-1], 1) if ms else float("nan"),
        "missing": len(returned) - len(ms),
    }


# --- all of it -----------------------------------------------------------------------------
async def run(
    seconds: float,
    *,
    kafka: str | None = None,
    records: int = 100_000,
    rate: float = 1000.0,
    repeat: int = 3,
) -> dict[str, Any]:
    """Every capture figure, per backend; ``seconds`` is how long the latency run writes.

    Throughputs are the best of ``repeat`` runs, relay and baseline alternating (this
    2-core VM's speed drifts by tens of per cent from minute to minute).

    Args:
        kafka: a broker ``host:port``; default ``STREAMKIT_TEST_KAFKA``; none: local only.
        records: puts in the pre-filled outbox.
        rate: puts per second in the latency run.
        repeat: runs per throughput figure.
    """
    kafka = kafka or os.environ.get(KAFKA_ENV) or None
    out: dict[str, Any] = {"records": records}
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-capture-") as d:
        root = Path(d)
        filled = root / "filled.db"
        out["fill_puts_per_s"] = round(await fill_outbox(filled, records))
        encoded = await _outbox_records(filled, "bench")
        # the baselines' 100k input records would make every GC pass of the relay runs
        # slower (~10%): keep them (and everything before) out of the collector's way
        gc.freeze()
        backends = {"local": f"local://{root}/log"}
        if kafka:
            backends["kafka"] = f"kafka://{kafka}?fetch_max_wait_ms=5"
        for name, url in backends.items():
            relays: list[dict[str, Any]] = []
            raws: list[float] = []
            batched: list[float] = []
            for i in range(repeat):
                work = root / f"{name}-{i}"
                work.mkdir()
                _copy_db(filled, work / "store.db")
                relays.append(await relay_throughput(work / "store.db", url))
                sizes: list[int] = relays[-1]["batches"]
                if kafka and name == "kafka":
                    raws.append(await raw_aiokafka_throughput(kafka, encoded, sizes))
                    batched.append(await raw_aiokafka_batches_throughput(kafka, encoded, sizes))
                else:
                    raws.append(await raw_local_throughput(work / "raw-log", encoded, sizes))
            relay = max(relays, key=lambda r: float(r["per_s"]))
            sizes = relay["batches"]
            latency = await commit_to_visible(root / name, url, rate=rate, seconds=seconds)
            figures: dict[str, Any] = {
                "relay_records_per_s": round(relay["per_s"]),
                "relay_runs_per_s": [round(r["per_s"]) for r in relays],
            }
            if name == "kafka":
                figures["raw_aiokafka_per_s"] = round(max(raws))
                figures["raw_aiokafka_runs_per_s"] = [round(r) for r in raws]
                figures["raw_aiokafka_send_batch_per_s"] = round(max(batched))
            else:
                figures["raw_local_append_per_s"] = round(max(raws))
                figures["raw_local_append_runs_per_s"] = [round(r) for r in raws]
            figures |= {
                "of_raw": round(relay["per_s"] / max(raws), 2),
                "relay_batches": len(sizes),
                "relay_batch_records_max": max(sizes),
                "latency_writes_per_s": latency["writes_per_s"],
                "latency_p50_ms": latency["p50_ms"],
                "latency_p99_ms": latency["p99_ms"],
                "latency_max_ms": latency["max_ms"],
                "latency_missing": latency["missing"],
            }
            out[name] = figures
    gc.unfreeze()
    return out
