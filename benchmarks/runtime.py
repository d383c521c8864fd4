"""Runtime figures: how fast handlers consume, how soon they see a write, how much memory.

- **throughput** (Kafka): an outbox pre-filled with ``records`` puts (env
  ``STREAMKIT_BENCH_RECORDS``, 200,000 by default) is published by the relay into
  the table topic ``{namespace}.Users`` (8 partitions). Each consumer below then
  reads that same topic from the beginning on its own fresh consumer group, timed
  from the first record it receives to the ``records``-th (joining the group is not
  counted):

  - ``raw_getmany``: a bare ``AIOKafkaConsumer`` (read_committed, manual commits)
    calling a no-op per message and committing after each ``getmany``;
  - ``raw_getmany_decode``: the same, decoding each value into a ``ChangeRecord``
    (what a raw consumer must do to get what a streamkit handler is given);
  - ``streamkit``: a per-record ``async`` no-op ``@app.on_insert`` handler (it reads no
    field, so its records are never decoded: records decode on first field access);
  - ``streamkit_batch``: the same with ``batch_size=1000``;
  - ``streamkit_reading`` / ``streamkit_batch_reading``: the same two reading
    ``record.new_image`` (every record decoded), to compare with ``raw_getmany_decode``;
  - ``faststream`` / ``faststream_batch``: a FastStream ``KafkaBroker`` subscriber
    (fresh group, earliest, read_committed) with a no-op taking the raw bytes, and
    its ``batch=True`` variant. FastStream's defaults otherwise (``AckPolicy.ACK_FIRST``:
    aiokafka's periodic auto-commit), with its per-message access log switched off.

  Ratios: ``streamkit*_of_*`` = streamkit records/s / the other's. Also
  ``decode_record_only_per_s``: ``decode_record`` alone on the same records, no log.

- **latency** (Kafka and the local log): the app running in one process (relay and a
  per-record handler), puts paced at ``rate``/s; latency = the handler's call - the
  put's return (``time.perf_counter``), p50/p99/max in ms. ``relayed_*``: the put's
  return to the end of the relay batch that carried it (capture), ``after_relay_*``:
  from there to the handler's call (the runtime; slightly negative when the handler
  runs before the relay has stored its position).

- **memory** (Kafka): a backlog of ``backlog`` records (env ``STREAMKIT_BENCH_BACKLOG``,
  1,000,000 by default) and a slow per-record handler (1 ms each), in a process of its
  own; its RSS (``VmRSS``) is sampled every second for ``memory_seconds`` of processing.

Every consumer reads the same topic, in one run, on this machine: no repeats, no best-of.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import streamkit as sk
from benchmarks.capture import KAFKA_ENV, _percentile, fill_outbox
from streamkit.capture import Relay, table_topic
from streamkit.cli._bench import _item
from streamkit.log import TopicConfig, from_url
from streamkit.records import decode_record
from streamkit.storage._store import Store

RECORDS_ENV = "STREAMKIT_BENCH_RECORDS"
BACKLOG_ENV = "STREAMKIT_BENCH_BACKLOG"

_JOIN_TIMEOUT = 60.0  # seconds to wait for a consumer's first record
_STALL_TIMEOUT = 30.0  # seconds without progress before a run gives up


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Counter:
    """Counts records; notes the time of the first arrival and of the ``target``-th."""

    __slots__ = ("done", "first", "first_n", "last", "n", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.n = 0
        self.first = 0.0
        self.first_n = 0  # records that came with the first arrival (a batch: several)
        self.last = 0.0
        self.done = asyncio.Event()

    def add(self, k: int = 1) -> None:
        if self.n == 0:
            self.first = time.perf_counter()
            self.first_n = k
        self.n += k
        if self.n >= self.target and not self.done.is_set():
            self.last = time.perf_counter()
            self.done.set()

    async def wait(self) -> None:
        """Until the target is reached; fails when the records stop coming."""
        seen, waited = -1, 0.0
        while not self.done.is_set():
            limit = _JOIN_TIMEOUT if self.n == 0 else _STALL_TIMEOUT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 1.0)
            if self.n != seen:
                seen, waited = self.n, 0.0
            else:
                waited += 1.0
                if waited >= limit:
                    raise TimeoutError(f"stalled at {self.n} of {self.target} records")

    def per_s(self) -> float:
        # the clock starts when the first record (or batch) arrives: count what came after
        return (self.target - self.first_n) / (self.last - self.first)


# --- the topic ------------------------------------------------------------------------------
async def publish_filled(db: Path, log_url: str, namespace: str) -> dict[str, Any]:
    """The relay publishes the outbox at ``db`` into ``{namespace}.Users`` (8 partitions)."""
    config = TopicConfig(partitions=8)
    app = sk.App(storage=f"sqlite:///{db}", log=log_url, namespace=namespace, topic_partitions=8)
    topic = table_topic(namespace, "Users")
    await app.log.open()
    await app.log.ensure_topic(topic, config)
    relay = Relay(app._store, app.log, namespace, topic_config=config)
    await relay._start()
    total = await app._store.read_changes_tail()
    moved = 0
    started = time.perf_counter()
    while n := await relay.relay_once():
        moved += n
    elapsed = time.perf_counter() - started
    await relay._close_producer()
    await app.close()
    assert moved == total, (moved, total)
    return {"records": total, "relay_per_s": total / elapsed}


# --- throughput: the consumers --------------------------------------------------------------
async def raw_getmany(address: str, topic: str, n: int, *, decode: bool) -> float:
    """A bare aiokafka consumer: getmany, a no-op per message, a commit per getmany."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=address,
        group_id=f"bench-raw-{uuid.uuid4()}",
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    counter = _Counter(n)

    def noop(value: Any) -> None:
        pass

    async def consume() -> None:
        while counter.n < n:
            got = await consumer.getmany(timeout_ms=200, max_records=1000)
            for messages in got.values():
                for msg in messages:
                    noop(decode_record(msg.value) if decode else msg.value)
                counter.add(len(messages))
            if got:
                await consumer.commit()

    try:
        consumer.subscribe([topic])
        task = asyncio.create_task(consume())
        try:
            await counter.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await consumer.stop()
    return counter.per_s()


async def streamkit_handler(
    db: Path, log_url: str, namespace: str, n: int, *, batched: bool, reads: bool = False
) -> float:
    """A no-op streamkit handler on the table topic, in its own (new) consumer group.

    Records are decoded when a handler first reads a field, so a no-op handler never
    decodes; with ``reads`` the handler reads one attribute of the new image (every
    record is decoded), the fair comparison with ``raw_getmany_decode``.
    """
    app = sk.App(storage=f"sqlite:///{db}", log=log_url, namespace=namespace, topic_partitions=8)
    counter = _Counter(n)
    name = f"noop_{uuid.uuid4().hex[:8]}"
    if batched:

        @app.on_insert("Users", batch_size=1000, name=name)
        async def noop_batch(batch: sk.Batch) -> None:
            if reads:
                for r in batch:
                    _ = r.new_image
            counter.add(len(batch))

    else:

        @app.on_insert("Users", name=name)
        async def noop(record: sk.ChangeRecord) -> None:
            if reads:
                _ = record.new_image
            counter.add()

    try:
        async with app.running(relay=False, ttl=False):
            await counter.wait()
    finally:
        await app.close()
    return counter.per_s()


async def faststream_subscriber(address: str, topic: str, n: int, *, batch: bool) -> float:
    """A FastStream subscriber (raw bytes, no-op) on its own new group, in-process."""
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(address, logger=None)
    counter = _Counter(n)
    group = f"bench-faststream-{uuid.uuid4()}"
    if batch:

        @broker.subscriber(
            topic,
            group_id=group,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            batch=True,
            max_records=1000,
        )
        async def noop_batch(body: list[bytes]) -> None:
            counter.add(len(body))

    else:

        @broker.subscriber(
            topic,
            group_id=group,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        async def noop(body: bytes) -> None:
            counter.add()

    await broker.start()
    try:
        await counter.wait()
    finally:
        await broker.stop()
    return counter.per_s()


async def decode_only(db: Path, n: int) -> float:
    """``decode_record`` alone on ``n`` of the same records (no log): the ceiling of any
    consumer that hands out ``ChangeRecord`` objects."""
    store = Store(f"sqlite:///{db}")
    values = [r.record for r in await store.read_changes(0, n) if r.publish]
    await store.close()
    started = time.perf_counter()
    for v in values:
        decode_record(v)
    return len(values) / (time.perf_counter() - started)


# --- latency ---------------------------------------------------------------------------------
async def write_to_handler(
    directory: Path, log_url: str, *, rate: float, seconds: float, batch: int = 1
) -> dict[str, Any]:
    """Paced puts with the app running (relay + one per-record handler, one process).

    ``batch`` > 1: the writes go ``batch`` at a time through ``batch_write`` (at most 25),
    paced so that ``rate`` items a second are written: how one process reaches 10,000
    writes/s (single awaited puts top out near 2,500/s with the relay and a handler).

    Besides put-to-handler, the relay's batches are timed (``relay_once`` wrapped: when
    each returned, and up to which sequence number): ``relayed`` = put's return to the
    end of the relay batch holding its record (an upper bound: the records are readable
    from the log's commit, a storage write before that), ``after_relay`` = the rest.
    """
    namespace = f"bench-{uuid.uuid4()}"
    app = sk.App(
        storage=f"sqlite:///{directory}/latency.db",
        log=log_url,
        namespace=namespace,
        topic_partitions=8,
    )
    users = await app.create_table("Users", partition_key="UserID")
    returned: dict[str, float] = {}
    called: dict[str, tuple[float, int]] = {}  # key: (when, sequence number)
    pending: set[str] = set()
    all_seen = asyncio.Event()
    loop = asyncio.get_running_loop()

    @app.on_insert("Users", start="latest")
    async def note(record: sk.ChangeRecord) -> None:
        key = record.keys["UserID"]
        called[key] = (time.perf_counter(), record.sequence_number)
        if pending:
            pending.discard(key)
            if not pending:
                all_seen.set()

    relay = app.relay
    relay_once = relay.relay_once
    relayed_upto: list[int] = []  # the relay's position after each batch
    relayed_at: list[float] = []

    async def timed_relay_once() -> int:
        moved = await relay_once()
        if moved:
            relayed_upto.append(relay.status.done)
            relayed_at.append(time.perf_counter())
        return moved

    relay.relay_once = timed_relay_once  # type: ignore[method-assign]
    try:
        async with app.running(ttl=False):
            # the handler is in place once it is called for a write made after it started
            deadline = loop.time() + _JOIN_TIMEOUT
            i = 0
            while not called:
                assert loop.time() < deadline, "the handler never got going"
                await users.put({"UserID": f"ready-{i}"})
                i += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            n = round(rate * seconds)
            started = loop.time()
            for i in range(0, n, batch):
                ahead = started + i / rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing
                items = [_item(j) for j in range(i, min(i + batch, n))]
                if batch == 1:
                    await users.put(items[0])
                else:
                    await users.batch_write(puts=items)
                done = time.perf_counter()
                for item in items:
                    returned[item["UserID"]] = done
            wrote_for = loop.time() - started
            pending.update(k for k in returned if k not in called)
            if pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_seen.wait(), 30)
    finally:
        if log_url.startswith("kafka://"):
            with contextlib.suppress(Exception):
                await app.log.delete_topic(table_topic(namespace, "Users"))
        await app.close()
    total: list[float] = []
    relayed: list[float] = []
    after: list[float] = []
    for k, t in returned.items():
        if k not in called:
            continue
        at, seq = called[k]
        total.append((at - t) * 1000)
        b = bisect.bisect_left(relayed_upto, seq)
        if b < len(relayed_at):
            relayed.append((relayed_at[b] - t) * 1000)
            after.append((at - relayed_at[b]) * 1000)
    figures: dict[str, Any] = {"writes_per_s": round(len(returned) / wrote_for)}
    for name, ms in (("", total), ("relayed_", relayed), ("after_relay_", after)):
        ms.sort()
        figures[f"{name}p50_ms"] = round(_percentile(ms, 50), 1)
        figures[f"{name}p99_ms"] = round(_percentile(ms, 99), 1)
        figures[f"{name}max_ms"] = round(ms[-1], 1) if ms else float("nan")
    figures["missing"] = len(returned) - len(total)
    figures["relay_batches"] = len(relayed_at)
    return figures


# --- memory -----------------------------------------------------------------------------------
async def memory_under_backlog(
    db: Path, log_url: str, namespace: str, *, seconds: float, delay: float = 0.001
) -> dict[str, Any]:
    """A slow per-record handler on a deep backlog: RSS sampled once a second.

    Run in a process of its own (see ``_memory``), so the RSS is the app's alone.
    """
    app = sk.App(storage=f"sqlite:///{db}", log=log_url, namespace=namespace, topic_partitions=8)
    processed = 0

    @app.on_insert("Users")
    async def slow(record: sk.ChangeRecord) -> None:
        nonlocal processed
        processed += 1
        await asyncio.sleep(delay)

    before = _rss_mb()
    samples: list[float] = []
    try:
        async with app.running(relay=False, ttl=False):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _JOIN_TIMEOUT
            while not processed:
                assert loop.time() < deadline, "the slow handler never got going"
                await asyncio.sleep(0.05)
            first = processed
            started = loop.time()
            for _ in range(round(seconds) + 1):
                samples.append(_rss_mb())
                await asyncio.sleep(1.0)
            rate = (processed - first) / (loop.time() - started)
    finally:
        await app.close()
    return {
        "rss_before_start_mb": round(before, 1),
        "rss_start_mb": round(samples[0], 1),
        "rss_max_mb": round(max(samples), 1),
        "rss_end_mb": round(samples[-1], 1),
        "rss_samples_mb": [round(s) for s in samples],
        "processed": processed,
        "processed_per_s": round(rate),
    }


# --- all of it -------------------------------------------------------------------------------
async def _delete_topics(kafka: str, topics: list[str]) -> None:
    """Delete the topics this run created (reported, never raised: the figures stand)."""
    try:
        async with from_url(f"kafka://{kafka}") as log:
            for topic in topics:
                await log.delete_topic(topic)
    except Exception as e:
        print(f"could not delete the benchmark topics {topics}: {e!r}", file=sys.stderr)


async def _figure(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """A section's figures, or the error that stopped it (the others still run)."""
    try:
        return await work
    except Exception as e:
        traceback.print_exc()
        return {"error": repr(e)}


async def raw_produce_to_consume(
    address: str, *, rate: float, seconds: float, transactional: bool
) -> dict[str, Any]:
    """The floor of commit → handler on the same broker: raw aiokafka, no streamkit.

    Messages are made at ``rate`` per second. Transactional: what is waiting is sent
    as one transaction while the previous one commits (as the relay does), and read by
    a ``read_committed`` consumer; otherwise each is sent at once (``acks=all``) and
    read ``read_uncommitted``. Both consumers use ``fetch_max_wait_ms=5``. Latency is
    from the message being made to the consumer's ``getmany`` returning it.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-floor-{uuid.uuid4()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=8, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=address,
        enable_idempotence=True,
        acks="all",
        transactional_id=f"bench-floor-{uuid.uuid4()}" if transactional else None,
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=address,
        isolation_level="read_committed" if transactional else "read_uncommitted",
        fetch_max_wait_ms=5,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    made: dict[int, float] = {}
    seen: dict[int, float] = {}
    n = round(rate * seconds)
    await producer.start()
    await consumer.start()
    try:
        done = asyncio.Event()

        async def consume() -> None:
            while len(seen) < n:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for msgs in batches.values():
                    for m in msgs:
                        seen[int(m.value)] = now
            done.set()

        reader = asyncio.create_task(consume())
        waiting: list[int] = []
        bell = asyncio.Event()

        async def send_transactions() -> None:
            while True:
                await bell.wait()
                bell.clear()
                batch, waiting[:] = list(waiting), []
                async with producer.transaction():
                    for i in batch:
                        await producer.send(topic, str(i).encode(), partition=i % 8)
                if batch and batch[-1] == n - 1:
                    return

        sender = asyncio.create_task(send_transactions()) if transactional else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(n):
            ahead = started + i / rate - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
            made[i] = time.perf_counter()
            if transactional:
                waiting.append(i)
                bell.set()
            else:
                await producer.send(topic, str(i).encode(), partition=i % 8)
        if sender is not None:
            await sender
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    finally:
        await consumer.stop()
        await producer.stop()
        await _delete_topics(address, [topic])
    ms = sorted((seen[i] - made[i]) * 1000 for i in made if i in seen)
    return {
        "p50_ms": round(_percentile(ms, 50), 1),
        "p99_ms": round(_percentile(ms, 99), 1),
        "max_ms": round(ms[-1], 1) if ms else float("nan"),
        "missing": n - len(ms),
    }


async def run(
    seconds: float,
    kafka: str | None,
    *,
    records: int | None = None,
    backlog: int | None = None,
    rate: float = 1000.0,
    memory_seconds: float = 20.0,
) -> dict[str, Any]:
    """Every runtime figure; ``seconds`` is how long the latency runs write (5 s at least).

    Args:
        kafka: a broker ``host:port``; default ``STREAMKIT_TEST_KAFKA``; none: only the
            local-log latency.
        records: records in the throughput topic (default ``STREAMKIT_BENCH_RECORDS``
            or 200,000).
        backlog: records in the memory run's backlog (``STREAMKIT_BENCH_BACKLOG`` or
            1,000,000).
        rate: puts per second in the latency runs.
        memory_seconds: how long the memory run samples.
    """
    kafka = kafka or os.environ.get(KAFKA_ENV) or None
    records = records or int(os.environ.get(RECORDS_ENV) or 200_000)
    backlog = backlog or int(os.environ.get(BACKLOG_ENV) or 1_000_000)
    seconds = max(5.0, seconds)
    out: dict[str, Any] = {}
    created: list[str] = []
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-runtime-") as d:
        root = Path(d)
        url = f"kafka://{kafka}?fetch_max_wait_ms=5" if kafka else None
        try:
            if kafka and url:
                out["throughput"] = await _figure(_throughput(root, kafka, url, records, created))
            latency: dict[str, Any] = {}
            (root / "local").mkdir()
            latency["local"] = await _figure(
                write_to_handler(
                    root / "local", f"local://{root}/local/log", rate=rate, seconds=seconds
                )
            )
            if kafka and url:
                (root / "kafka").mkdir()
                latency["kafka"] = await _figure(
                    write_to_handler(root / "kafka", url, rate=rate, seconds=seconds)
                )
                for name, txn in (("kafka_floor_transactions", True), ("kafka_floor", False)):
                    latency[name] = await _figure(
                        raw_produce_to_consume(kafka, rate=rate, seconds=seconds, transactional=txn)
                    )
            out["latency"] = latency
            if kafka and url:
                out["memory"] = await _figure(_memory(root, url, backlog, memory_seconds, created))
        finally:
            if kafka and created:
                await _delete_topics(kafka, created)
    return out


async def _throughput(
    root: Path, kafka: str, url: str, records: int, created: list[str]
) -> dict[str, Any]:
    db = root / "throughput.db"
    namespace = f"bench-{uuid.uuid4()}"
    fill_per_s = await fill_outbox(db, records)
    topic = table_topic(namespace, "Users")
    created.append(topic)
    published = await publish_filled(db, url, namespace)
    gc.collect()
    per_s: dict[str, float] = {}
    per_s["raw_getmany"] = await raw_getmany(kafka, topic, records, decode=False)
    per_s["raw_getmany_decode"] = await raw_getmany(kafka, topic, records, decode=True)
    per_s["streamkit"] = await streamkit_handler(db, url, namespace, records, batched=False)
    per_s["streamkit_batch"] = await streamkit_handler(db, url, namespace, records, batched=True)
    per_s["streamkit_reading"] = await streamkit_handler(
        db, url, namespace, records, batched=False, reads=True
    )
    per_s["streamkit_batch_reading"] = await streamkit_handler(
        db, url, namespace, records, batched=True, reads=True
    )
    per_s["faststream"] = await faststream_subscriber(kafka, topic, records, batch=False)
    per_s["faststream_batch"] = await faststream_subscriber(kafka, topic, records, batch=True)
    per_s["decode_record_only"] = await decode_only(db, min(records, 50_000))
    sk_, skb = per_s["streamkit"], per_s["streamkit_batch"]
    return {
        "records": records,
        "fill_puts_per_s": round(fill_per_s),
        "relay_per_s": round(published["relay_per_s"]),
        **{f"{k}_per_s": round(v) for k, v in per_s.items()},
        "streamkit_of_raw": round(sk_ / per_s["raw_getmany"], 2),
        "streamkit_of_raw_decode": round(sk_ / per_s["raw_getmany_decode"], 2),
        "streamkit_of_faststream": round(sk_ / per_s["faststream"], 2),
        "streamkit_batch_of_raw": round(skb / per_s["raw_getmany"], 2),
        "streamkit_batch_of_raw_decode": round(skb / per_s["raw_getmany_decode"], 2),
        "streamkit_batch_of_faststream_batch": round(skb / per_s["faststream_batch"], 2),
        "streamkit_reading_of_raw_decode": round(
            per_s["streamkit_reading"] / per_s["raw_getmany_decode"], 2
        ),
        "streamkit_batch_reading_of_raw_decode": round(
            per_s["streamkit_batch_reading"] / per_s["raw_getmany_decode"], 2
        ),
    }


async def _memory(
    root: Path, url: str, backlog: int, seconds: float, created: list[str]
) -> dict[str, Any]:
    db = root / "backlog.db"
    namespace = f"bench-{uuid.uuid4()}"
    started = time.perf_counter()
    await fill_outbox(db, backlog)
    filled = time.perf_counter() - started
    created.append(table_topic(namespace, "Users"))
    await publish_filled(db, url, namespace)
    published = time.perf_counter() - started - filled
    # a process of its own: this one holds the other figures' leftovers (and FastStream)
    result = root / "memory.json"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.runtime",
        "memory",
        str(db),
        url,
        namespace,
        str(seconds),
        str(result),
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await child.wait() == 0, "the memory run failed"
    figures = json.loads(result.read_text())
    return {
        "backlog": backlog,
        "fill_seconds": round(filled, 1),
        "publish_seconds": round(published, 1),
        **figures,
        "grew_mb": round(figures["rss_end_mb"] - figures["rss_start_mb"], 1),
    }


if __name__ == "__main__":  # the memory run's own process
    if len(sys.argv) == 7 and sys.argv[1] == "memory":
        _, _, db_, url_, ns_, seconds_, out_ = sys.argv
        got = asyncio.run(memory_under_backlog(Path(db_), url_, ns_, seconds=float(seconds_)))
        Path(out_).write_text(json.dumps(got))
    elif len(sys.argv) >= 3 and sys.argv[1] == "latency":
        # latency LOG_URL|local [RATE [SECONDS [BATCH]]]: commit -> handler at RATE writes/s
        url_ = sys.argv[2]
        rate_ = float(sys.argv[3]) if len(sys.argv) > 3 else 10_000.0
        secs_ = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
        batch_ = int(sys.argv[5]) if len(sys.argv) > 5 else 25
        with tempfile.TemporaryDirectory(prefix="streamkit-latency-") as d:
            log_ = f"local://{d}/log" if url_ == "local" else url_
            got = asyncio.run(
                write_to_handler(Path(d), log_, rate=rate_, seconds=secs_, batch=batch_)
            )
        print(json.dumps(got, indent=2))
    else:
        sys.exit(
            "usage: python -m benchmarks.runtime memory DB LOG_URL NAMESPACE SECONDS OUT\n"
            "       python -m benchmarks.runtime latency LOG_URL|local [RATE [SECONDS [BATCH]]]"
        )
