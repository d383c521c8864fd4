"""The local backend's own API beyond the contract: explicit pruning, reopening, URLs.

(These are unit tests of ``streamkit/log/_local.py``; they live beside the
conformance suite because they reuse its helpers. Move them to
``tests/unit/log/`` when that package exists.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from streamkit.exceptions import ConfigurationError, LogError, NotYetAvailable
from streamkit.log import OutRecord, TopicConfig, from_url
from streamkit.log._local import LocalLog
from tests.conformance._helpers import drain, txn_id


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_prune_with_a_future_clock_deletes_a_prefix(tmp_path: Path) -> None:
    async with LocalLog(f"local://{tmp_path}/log") as log:
        await log.ensure_topic("t", TopicConfig(partitions=1, retention_ms=60_000))
        producer = log.producer(txn_id())
        await producer.start()
        t = now_ms()
        # an old timestamp after a young one stays: retention deletes a prefix of the
        # partition (Kafka deletes whole segments whose newest record expired)
        stamps = [t - 50_000, t - 40_000, t, t - 48_000, t + 10_000]
        await producer.append(
            [OutRecord("t", None, b"%d" % i, timestamp_ms=s) for i, s in enumerate(stamps)]
        )
        reader = log.reader("t")
        assert await log.prune() == 0
        # cutoff t-45 s: offset 0 goes; offset 3 (t-48 s) is as old but stays behind 2
        assert await log.prune(now_ms=t + 15_000) == 1
        assert await reader.beginning_offsets() == {0: 1}
        assert [r.value for r in await drain(reader, 4)] == [b"1", b"2", b"3", b"4"]
        # cutoff t+5 s: everything before the t+10 s record goes
        assert await log.prune(now_ms=t + 65_000) == 3
        assert await reader.beginning_offsets() == {0: 4}
        assert await log.prune(now_ms=t + 10**9) == 1
        assert await reader.beginning_offsets() == await reader.end_offsets() == {0: 5}
        assert await reader.offset_for_time(0, 0) is None


async def test_retention_runs_under_constant_load(tmp_path: Path) -> None:
    async with LocalLog(f"local://{tmp_path}/log?prune_interval=0.1") as log:
        await log.ensure_topic("t", TopicConfig(partitions=1, retention_ms=200))
        producer = log.producer(txn_id())
        await producer.start()
        reader = log.reader("t")
        started = time.monotonic()
        while (await reader.beginning_offsets())[0] == 0:
            assert time.monotonic() - started < 5, "never pruned while appending"
            await producer.append([OutRecord("t", None, b"x")])  # never idle


async def test_everything_survives_reopening(tmp_path: Path) -> None:
    url = f"local://{tmp_path}/log"
    transactional_id = txn_id()
    async with from_url(url) as log:
        await log.ensure_topic("t", TopicConfig(partitions=2))
        producer = log.producer(transactional_id)
        await producer.start()
        await producer.append([OutRecord("t", b"k", b"%d" % i) for i in range(3)])
        reader = log.reader("t", group="g")
        records = await drain(reader, 3)
        await reader.commit({records[0].partition: records[1].offset + 1})
    async with from_url(url) as log:
        assert await log.describe_topic("t") == TopicConfig(partitions=2)
        reader = log.reader("t", group="g")
        assert [r.value for r in await drain(reader, 1)] == [b"2"]
        successor = log.producer(transactional_id)
        await successor.start()
        await successor.append([OutRecord("t", b"k", b"3")])
        assert [r.value for r in await drain(reader, 1)] == [b"3"]
    # the epochs are kept in the file: the successor got the next one
    with closing(sqlite3.connect(tmp_path / "log" / "log.db")) as db:
        epoch = db.execute(
            "SELECT epoch FROM log_producers WHERE txn_id=?", (transactional_id,)
        ).fetchone()
    assert epoch == (1,)


async def test_in_process_readers_are_woken_within_milliseconds(tmp_path: Path) -> None:
    # a long poll_interval: only the in-process wake-up can make this fast
    async with LocalLog(f"local://{tmp_path}/log?poll_interval=5") as log:
        await log.ensure_topic("t", TopicConfig(partitions=4))
        producer = log.producer(txn_id())
        await producer.start()
        reader = log.reader("t")
        await reader.partitions()
        waits: list[float] = []
        for i in range(20):
            fetch = asyncio.create_task(reader.fetch(timeout=5))
            await asyncio.sleep(0.01)
            await producer.append([OutRecord("t", b"k", b"%d" % i)])
            appended = time.perf_counter()
            assert len(await fetch) == 1
            waits.append(time.perf_counter() - appended)
        waits.sort()
        assert waits[len(waits) // 2] < 0.02, waits


async def test_closed_and_unopened_logs_say_so(tmp_path: Path) -> None:
    log = LocalLog(f"local://{tmp_path}/log")
    with pytest.raises(LogError, match="not open"):
        await log.describe_topic("t")
    await log.open()
    with pytest.raises(NotYetAvailable):
        await log.ensure_topic("t", TopicConfig(cleanup_policy="compact"))
    producer = log.producer(txn_id())
    await producer.start()
    await log.close()
    with pytest.raises(LogError):
        await producer.append([OutRecord("t", b"k", b"v")])


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("local://", id="no-path"),
        pytest.param("local:///tmp/x?synchronous=OFF", id="unsafe-synchronous"),
        pytest.param("local:///tmp/x?poll_interval=0", id="zero-poll"),
        pytest.param("local:///tmp/x?colour=blue", id="unknown-option"),
    ],
)
def test_bad_local_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        from_url(url)
