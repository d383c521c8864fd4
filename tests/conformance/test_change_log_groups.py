"""Contract: consumer-group offsets, where readers start, and retention."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamkit.exceptions import ConfigurationError
from streamkit.log import ChangeLog, OutRecord
from tests.conformance._helpers import drain, txn_id
from tests.conformance.conftest import NewTopic


async def _fill(log: ChangeLog, topic: str, count: int, *, partitions: int) -> None:
    producer = log.producer(txn_id())
    await producer.start()
    await producer.append(
        [OutRecord(topic, None, b"%d" % i, partition=i % partitions) for i in range(count)]
    )
    await producer.close()


async def test_a_group_resumes_from_its_committed_offsets(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=3)
    await _fill(log, topic, 30, partitions=3)
    group = f"group-{txn_id()}"

    reader = log.reader(topic, group=group)
    assert await reader.committed() == {}
    first = await drain(reader, 30)
    # commit half of each partition: the next offset to read after the 5th record
    per_partition: dict[int, list[int]] = {}
    for r in first:
        per_partition.setdefault(r.partition, []).append(r.offset)
    commit = {p: offsets[4] + 1 for p, offsets in per_partition.items()}
    await reader.commit(commit)
    assert await reader.committed() == commit
    await reader.close()

    # a new reader of the group (another instance: a restarted process) resumes there
    resumed = other_log.reader(topic, group=group)
    assert await resumed.committed() == commit
    for p, offset in commit.items():
        assert await resumed.position(p) == offset
    rest = await drain(resumed, 15)
    assert sorted(int(r.value) for r in rest) == sorted(
        int(r.value) for r in first if r.offset >= commit[r.partition]
    )
    # committing the end and reopening reads nothing
    await resumed.commit({p: offsets[-1] + 1 for p, offsets in per_partition.items()})
    await resumed.close()
    again = log.reader(topic, group=group)
    assert await again.fetch(timeout=0.5) == []
    await again.close()

    # another group has its own offsets
    stranger = log.reader(topic, group=f"group-{txn_id()}")
    assert len(await drain(stranger, 30)) == 30
    await stranger.close()


async def test_where_a_reader_starts(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=2)
    await _fill(log, topic, 4, partitions=2)
    earliest = log.reader(topic)
    latest = log.reader(topic, start="latest")
    only_one = log.reader(topic, partitions=[1])
    assert await latest.partitions() == [0, 1]
    assert await only_one.partitions() == [1]
    await _fill(log, topic, 2, partitions=2)
    assert len(await drain(earliest, 6)) == 6
    assert len(await drain(latest, 2)) == 2
    assert {r.partition for r in await drain(only_one, 3)} == {1}
    for reader in (earliest, latest, only_one):
        await reader.close()


async def test_commit_needs_a_group(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=1)
    reader = log.reader(topic)
    with pytest.raises(ConfigurationError):
        await reader.commit({0: 0})
    with pytest.raises(ConfigurationError):
        await reader.committed()
    await reader.close()


async def test_records_past_retention_are_deleted(log: ChangeLog, new_topic: NewTopic) -> None:
    """Nobody calls anything: the log deletes expired records by itself.

    Kafka checks every ``log.retention.check.interval.ms`` (10 s on the test broker)
    and deletes the expired segments, the active one included; the local log prunes
    every ``prune_interval`` (0.2 s in these tests).
    """
    topic = await new_topic(partitions=2, retention_ms=1000)
    await _fill(log, topic, 6, partitions=2)
    group = f"group-{txn_id()}"
    reader = log.reader(topic, group=group)
    records = await drain(reader, 6)
    await reader.commit({0: records[0].offset})  # a committed position retention will delete
    end = await reader.end_offsets()
    assert await reader.beginning_offsets() == {0: 0, 1: 0}

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (begin := await reader.beginning_offsets()) != end:
        assert loop.time() < deadline, f"nothing expired in 30 s: {begin} vs end {end}"
        await asyncio.sleep(0.25)
    await reader.close()

    # a reader whose committed offset was deleted starts again at the oldest kept
    # record (auto.offset.reset=earliest), which is the end: nothing is left to read
    resumed = log.reader(topic, group=group)
    assert await resumed.fetch(timeout=0.3) == []
    await resumed.seek(0, 0)
    assert await resumed.fetch(timeout=0.3) == []
    producer = log.producer(txn_id())
    await producer.start()
    await producer.append([OutRecord(topic, None, b"fresh", partition=0)])
    assert [r.value for r in await drain(resumed, 1)] == [b"fresh"]
    await resumed.close()
    await producer.close()


async def test_retention_keeps_what_is_young(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=1, retention_ms=3_600_000)
    producer = log.producer(txn_id())
    await producer.start()
    now = time.time_ns() // 1_000_000
    await producer.append(
        [
            OutRecord(topic, None, b"recent", timestamp_ms=now - 60_000),
            OutRecord(topic, None, b"now"),
        ]
    )
    await asyncio.sleep(0.5)  # more than one local prune pass
    reader = log.reader(topic)
    assert [r.value for r in await drain(reader, 2)] == [b"recent", b"now"]
    await reader.close()
    await producer.close()
