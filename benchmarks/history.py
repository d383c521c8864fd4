"""History figures: replay throughput (from the log and from the archive) and
point-in-time restore time against history length.

* replay: N changes committed, published by the relay; a no-op batch handler
  (batch_size 1,000) replayed over all of them, reading from Kafka (and the local
  log), and over the same changes of a table without a stream (archive only).
* restore: a table of 100,000 items receives updates until its history holds 250k,
  500k and 1M changes; ``restore_to_time`` to now is timed at each length, and to the
  middle of the history at 1M.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import streamkit as sk


async def _fill(t: sk.Table, keys: int, changes: int, start: int = 0) -> None:
    """``changes`` puts over ``keys`` items, 25 per batch write, 8 writers at once."""
    per = 25
    sem = asyncio.Semaphore(8)

    async def one(lo: int) -> None:
        async with sem:
            batch = [
                {"pk": f"item{(lo + j) % keys:07d}", "n": start + lo + j, "pad": "x" * 40}
                for j in range(min(per, changes - lo))
            ]
            # one batch holds distinct keys (a batch may not write an item twice)
            seen: dict[str, dict[str, Any]] = {i["pk"]: i for i in batch}
            await t.batch_write(puts=list(seen.values()))

    await asyncio.gather(*(one(lo) for lo in range(0, changes, per)))


async def _noop(batch: sk.Batch) -> None:
    return None


async def _replay_rate(app: sk.App, table: str, since: datetime) -> dict[str, Any]:
    best: dict[str, Any] = {}
    for _ in range(2):
        s = await app.replay(table, "noop_" + table.lower(), since=since)
        rate = s.records / s.seconds
        if not best or rate > best["records_per_s"]:
            best = {
                "records": s.records,
                "from_log": s.from_log,
                "from_archive": s.from_archive,
                "seconds": round(s.seconds, 2),
                "records_per_s": round(rate),
            }
    return best


async def _raw_kafka(address: str, topic: str, n: int, partitions: int) -> int:
    """The ceiling: an aiokafka consumer reading the same topic, no-op per message."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    best = 0
    for _ in range(2):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=address, isolation_level="read_committed", enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            started = time.perf_counter()
            seen = 0
            while seen < n:
                got = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for msgs in got.values():
                    for m in msgs:
                        seen += 1
                        _ = m.value
            best = max(best, round(seen / (time.perf_counter() - started)))
        finally:
            await consumer.stop()
    return best


async def replay_figures(log_url: str, n: int, tmp: Path) -> dict[str, Any]:
    app = sk.App(
        storage=f"sqlite:///{tmp}/replay-{uuid.uuid4().hex[:6]}.db",
        log=log_url,
        namespace=f"bh{uuid.uuid4().hex[:8]}",
    )
    app.on_change("Streamed", batch_size=1000, name="noop_streamed")(_noop)
    app.on_change("Archived", batch_size=1000, name="noop_archived")(_noop)
    try:
        since = datetime.now(UTC)
        streamed = await app.create_table("Streamed", partition_key="pk")
        archived = await app.create_table("Archived", partition_key="pk", stream=None)
        await _fill(streamed, n // 4, n)
        await _fill(archived, n // 4, n)
        async with app.running(handlers=[]):
            await app.drain(timeout=600)
        out = {
            "from_log": await _replay_rate(app, "Streamed", since),
            "from_archive": await _replay_rate(app, "Archived", since),
        }
        if log_url.startswith("kafka://"):
            topic = f"{app.namespace}.Streamed"
            out["raw_aiokafka_getmany_per_s"] = await _raw_kafka(
                log_url[8:], topic, n, app.topic_config.partitions
            )
        return out
    finally:
        await app.close()


async def restore_figures(tmp: Path, keys: int, lengths: list[int]) -> dict[str, Any]:
    app = sk.App(storage=f"sqlite:///{tmp}/restore.db", log=f"local://{tmp}/rlog")
    out: dict[str, Any] = {"items": keys}
    try:
        t = await app.create_table("Big", partition_key="pk")
        written = 0
        mid: datetime | None = None
        for i, length in enumerate(lengths):
            started = time.perf_counter()
            await _fill(t, keys, length - written, start=written)
            fill_s = time.perf_counter() - started
            written = length
            if i == len(lengths) - 2:
                await asyncio.sleep(0.01)
                mid = datetime.now(UTC)
                await asyncio.sleep(0.01)
            started = time.perf_counter()
            restored = await app.restore_to_time(
                "Big", at=datetime.now(UTC), target=f"Copy{length}"
            )
            took = time.perf_counter() - started
            added = length - (lengths[i - 1] if i else 0)
            out[f"history_{length}"] = {
                "restore_s": round(took, 2),
                "writes_per_s_while_filling": round(added / fill_s),
            }
            await app.delete_table(restored.name)
        if mid is not None:
            started = time.perf_counter()
            await app.restore_to_time("Big", at=mid, target="CopyMid")
            out[f"history_{lengths[-1]}"]["restore_to_middle_s"] = round(
                time.perf_counter() - started, 2
            )
    finally:
        await app.close()
    return out


async def export_figures(tmp: Path, items: int) -> dict[str, Any]:
    """Full exports of a table of ``items`` items to S3 (S3Proxy, when STREAMKIT_TEST_S3 or
    a server on 127.0.0.1:9000 answers) and to a directory, per format."""
    import os

    app = sk.App(storage=f"sqlite:///{tmp}/export.db", log=f"local://{tmp}/elog")
    out: dict[str, Any] = {"items": items}
    targets = {"file": f"file://{tmp}/exports"}
    endpoint = os.environ.get("STREAMKIT_TEST_S3") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        import boto3
        from botocore.config import Config

        os.environ.setdefault("AWS_ENDPOINT_URL_S3", endpoint)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3", config=Config(request_checksum_calculation="when_required")
        ).create_bucket(Bucket=bucket)
        targets["s3"] = f"s3://{bucket}/exports"
    try:
        t = await app.create_table("Big", partition_key="pk")
        await _fill(t, items, items)
        for where, url in targets.items():
            for fmt in ("dynamodb-json", "parquet", "avro"):
                started = time.perf_counter()
                result = await app.export("Big", to=url, format=fmt)
                took = time.perf_counter() - started
                out[f"{where}_{fmt}"] = {
                    "items_per_s": round(result.item_count / took),
                    "seconds": round(took, 2),
                    "bytes": sum(f["sizeBytes"] for f in result.files),
                }
    finally:
        await app.close()
    return out


async def run(*, kafka: str | None, replay_records: int = 200_000) -> dict[str, Any]:
    random.seed(1)
    with tempfile.TemporaryDirectory(prefix="sk-bench-history-") as d:
        tmp = Path(d)
        results: dict[str, Any] = {"replay": {}}
        if kafka:
            results["replay"]["kafka"] = await replay_figures(
                f"kafka://{kafka}", replay_records, tmp
            )
        results["replay"]["local"] = await replay_figures(f"local://{tmp}/log", replay_records, tmp)
        results["export"] = await export_figures(tmp, 200_000)
        results["restore"] = await restore_figures(tmp, 100_000, [250_000, 500_000, 1_000_000])
        return results
