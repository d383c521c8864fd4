"""Contract: where records go, what comes back, and finding them by offset and time."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from streamkit.log import ChangeLog, LogRecord, OutRecord, murmur2, partition_for_key
from tests.conformance._helpers import drain, fetch_until, txn_id
from tests.conformance.conftest import NewTopic


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [
        # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed Java ints)
        pytest.param(b"21", -973932308, id="21"),
        pytest.param(b"foobar", -790332482, id="foobar"),
        pytest.param(b"a-little-bit-long-string", -985981536, id="long"),
        pytest.param(b"a-little-bit-longer-string", -1486304829, id="longer"),
        pytest.param(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, id="48"),
        pytest.param(b"abc", 479470107, id="abc"),
    ],
)
def test_murmur2_is_kafkas(key: bytes, java_murmur2: int) -> None:
    assert murmur2(key) == java_murmur2 & 0xFFFFFFFF
    assert partition_for_key(8, key) == (java_murmur2 & 0x7FFFFFFF) % 8


async def test_one_key_one_partition_in_append_order(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=8)
    producer = log.producer(txn_id())
    await producer.start()
    keys = [f"item-{i}".encode() for i in range(16)]
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    for round_ in range(4):
        batch = [OutRecord(topic, k, k + b":%d" % round_) for k in keys]
        for out in batch:
            sent[out.key or b""].append(out.value)
        if round_ % 2:
            await producer.append(batch)  # many keys in one append
        else:
            for out in batch[:8]:
                await producer.append([out])
            await producer.append(batch[8:])
    records = await drain(log.reader(topic), 4 * len(keys))

    by_key: dict[bytes, list[LogRecord]] = defaultdict(list)
    last_offset: dict[int, int] = {}
    for r in records:
        assert r.key is not None
        by_key[r.key].append(r)
        assert r.offset > last_offset.get(r.partition, -1), "offsets go backwards"
        last_offset[r.partition] = r.offset
    assert len({r.partition for r in records}) > 1, "all keys on one partition: no test"
    for key in keys:
        got = by_key[key]
        assert {r.partition for r in got} == {log.partition_for(8, key)}
        assert [r.value for r in got] == sent[key]
    await producer.close()


async def test_record_shapes_round_trip(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=3)
    producer = log.producer(txn_id())
    await producer.start()
    in_2001 = 1_000_000_000_000
    before = time.time_ns() // 1_000_000
    sent = [
        OutRecord(topic, b"plain", b"value"),
        OutRecord(topic, None, b"no key", partition=1),
        OutRecord(topic, b"empty value", b"", partition=1),
        OutRecord(topic, bytes(range(256)), bytes(range(255, -1, -1)), partition=2),
        OutRecord(
            topic,
            b"headers",
            b"v",
            headers=(("event", b"INSERT"), ("seq", b"42"), ("event", b""), ("ключ", b"\x00\xff")),
            partition=0,
        ),
        OutRecord(topic, b"old", b"from 2001", timestamp_ms=in_2001, partition=0),
        OutRecord(topic, b"big", b"x" * 500_000, partition=2),
    ]
    await producer.append(sent[:4])
    await producer.append(sent[4:])
    after = time.time_ns() // 1_000_000

    records = await drain(log.reader(topic), len(sent))
    got = {(r.key, r.value): r for r in records}
    assert len(got) == len(sent)
    for s in sent:
        r = got[(s.key, s.value)]
        assert r.topic == topic
        assert r.headers == s.headers
        if s.partition is not None:
            assert r.partition == s.partition
        else:
            assert s.key is not None
            assert r.partition == log.partition_for(3, s.key)
        if s.timestamp_ms is not None:
            assert r.timestamp_ms == s.timestamp_ms
        else:
            assert before - 1000 <= r.timestamp_ms <= after + 1000
    await producer.close()


async def test_offsets_seek_and_positions(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=2)
    producer = log.producer(txn_id())
    await producer.start()
    for i in range(5):
        await producer.append([OutRecord(topic, None, b"%d" % i, partition=0)])
    reader = log.reader(topic)
    assert await reader.partitions() == [0, 1]
    first = await drain(reader, 5)
    offsets = [r.offset for r in first]
    begin, end = await reader.beginning_offsets(), await reader.end_offsets()
    assert begin == {0: offsets[0], 1: 0}
    assert end[0] > offsets[-1]
    assert end[1] == 0
    # caught up: the position is the end (on Kafka past the commit markers too)
    assert {p: await reader.position(p) for p in (0, 1)} == end

    await reader.seek(0, offsets[2])
    assert await reader.position(0) == offsets[2]
    again = await drain(reader, 3)
    assert [r.value for r in again] == [b"2", b"3", b"4"]

    await reader.seek_to_beginning(0)
    assert [r.value for r in await drain(reader, 5)] == [b"0", b"1", b"2", b"3", b"4"]
    await reader.seek_to_end()
    assert await reader.fetch(timeout=0.3) == []
    await producer.append([OutRecord(topic, None, b"5", partition=0)])
    assert [r.value for r in await drain(reader, 1)] == [b"5"]
    await reader.close()
    await producer.close()


async def test_settled_end_offsets_include_every_returned_append(
    log: ChangeLog, new_topic: NewTopic
) -> None:
    """Kafka writes commit markers after the commit returned; a settled end waits for them
    (``tests/integration/test_kafka_log.py`` holds a transaction open to show the wait)."""
    topic = await new_topic(partitions=2)
    producer = log.producer(txn_id())
    await producer.start()
    reader = log.reader(topic)
    seen = 0
    for i in range(40):
        await producer.append([OutRecord(topic, None, b"%d" % i, partition=i % 2)])
        ends = await reader.end_offsets(settled=True)
        while [p for p, end in ends.items() if await reader.position(p) < end]:
            got = await reader.fetch(timeout=0.5)
            seen += len([r for r in got if r.offset < ends[r.partition]])
        assert seen == i + 1
    await reader.close()
    await producer.close()


async def test_seek_by_time(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=1)
    producer = log.producer(txn_id())
    await producer.start()
    t0 = time.time_ns() // 1_000_000 - 60_000
    # one record out of order (t0+500 after t0+3000), as producers' clocks allow
    stamps = [t0, t0 + 1000, t0 + 2000, t0 + 3000, t0 + 500, t0 + 4000]
    await producer.append(
        [OutRecord(topic, b"k", b"%d" % i, timestamp_ms=t) for i, t in enumerate(stamps)]
    )
    reader = log.reader(topic)
    records = await drain(reader, len(stamps))
    offset_of = {r.timestamp_ms: r.offset for r in records}

    assert await reader.offset_for_time(0, t0 - 5000) == offset_of[t0]
    assert await reader.offset_for_time(0, t0) == offset_of[t0]
    assert await reader.offset_for_time(0, t0 + 1500) == offset_of[t0 + 2000]
    # the first record whose own timestamp is >= t: the late t0+500 does not count
    assert await reader.offset_for_time(0, t0 + 3500) == offset_of[t0 + 4000]
    # nothing that new: None, or (Kafka) the offset of the commit marker after the last
    # record, whose timestamp is the commit's; reading from either returns nothing
    past = await reader.offset_for_time(0, t0 + 4001)
    assert past is None or past > offset_of[t0 + 4000]
    if past is not None:
        await reader.seek(0, past)
        assert await reader.fetch(timeout=0.3) == []
    assert await reader.offset_for_time(0, time.time_ns() // 1_000_000 + 60_000) is None

    at = await reader.offset_for_time(0, t0 + 1500)
    assert at is not None
    await reader.seek(0, at)
    rest = await drain(reader, 4)
    assert [r.timestamp_ms for r in rest] == [t0 + 2000, t0 + 3000, t0 + 500, t0 + 4000]
    await reader.close()
    await producer.close()


async def test_a_waiting_fetch_returns_soon_after_an_append(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    reader = log.reader(topic)
    await reader.partitions()
    producer = other_log.producer(txn_id())  # another instance: as from another process
    await producer.start()

    async def append_later() -> float:
        await asyncio.sleep(0.3)
        await producer.append([OutRecord(topic, b"k", b"hello")])
        return time.perf_counter()

    task = asyncio.create_task(append_later())
    records = await fetch_until(reader, bool, within=5.0)
    latency = time.perf_counter() - await task
    assert [r.value for r in records] == [b"hello"]
    assert latency < 1.0, f"the waiting fetch returned {latency:.3f} s after the append"
    await reader.close()
    await producer.close()
