"""Contract: an append is all-or-nothing, and a fenced producer writes nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import pytest

from streamkit.exceptions import LogError
from streamkit.log import ChangeLog, Fenced, LogUnavailable, OutRecord
from tests.conformance._helpers import drain, fetch_until, txn_id
from tests.conformance.conftest import NewTopic

PARTITIONS = 16
PER_PARTITION = 2


async def test_an_append_becomes_visible_whole(log: ChangeLog, new_topic: NewTopic) -> None:
    """A reader racing a writer never sees part of an append in a partition.

    Every append puts PER_PARTITION records in each of PARTITIONS partitions. After
    every fetch, each partition must hold, for every append, none or all of its
    records; in the end every append is there exactly once. (Across partitions, the
    local log also shows an append everywhere at once; Kafka makes each partition's
    share visible when the coordinator's commit marker reaches that partition, a few
    ms apart, so the contract is per partition plus "eventually all".)
    """
    topic = await new_topic(partitions=PARTITIONS)
    producer = log.producer(txn_id())
    await producer.start()
    reader = log.reader(topic)
    await reader.partitions()
    appends = 30
    seen: dict[int, Counter[int]] = defaultdict(Counter)
    torn: list[str] = []
    done = asyncio.Event()

    async def write() -> None:
        for n in range(appends):
            await producer.append(
                [
                    OutRecord(topic, None, b"%d/%d" % (n, i), partition=p)
                    for p in range(PARTITIONS)
                    for i in range(PER_PARTITION)
                ]
            )
        done.set()

    async def read() -> None:
        total = appends * PARTITIONS * PER_PARTITION
        count = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while count < total and loop.time() < deadline:
            for r in await reader.fetch(max_records=100_000, timeout=0.2):
                seen[r.partition][int(r.value.split(b"/")[0])] += 1
                count += 1
            for p, per_append in seen.items():
                torn.extend(
                    f"partition {p}: append {n} has {c} of {PER_PARTITION} records"
                    for n, c in per_append.items()
                    if c != PER_PARTITION
                )

    await asyncio.gather(write(), read())
    assert done.is_set()
    assert not torn, torn[:5]
    for p in range(PARTITIONS):
        assert seen[p] == dict.fromkeys(range(appends), PER_PARTITION), f"partition {p}"
    await reader.close()
    await producer.close()


async def test_a_failed_append_leaves_nothing_visible(log: ChangeLog, new_topic: NewTopic) -> None:
    """The log refuses one record late (a timestamp over an hour ahead, as Kafka 4's
    brokers do): the append's records already written to other partitions and topics
    must never become visible, and the producer must stay usable."""
    topic = await new_topic(partitions=PARTITIONS)
    other = await new_topic(partitions=1)
    producer = log.producer(txn_id())
    await producer.start()
    too_late = time.time_ns() // 1_000_000 + 2 * 3_600_000
    doomed = [OutRecord(topic, None, b"doomed", partition=p) for p in range(PARTITIONS)]
    doomed.append(OutRecord(other, None, b"doomed"))
    doomed.append(OutRecord(topic, None, b"refused", timestamp_ms=too_late, partition=3))
    with pytest.raises(LogError) as info:
        await producer.append(doomed)
    assert not isinstance(info.value, LogUnavailable)
    assert not info.value.retriable

    await producer.append(
        [OutRecord(topic, None, b"after", partition=p) for p in range(PARTITIONS)]
        + [OutRecord(other, None, b"after")]
    )
    for name, count in ((topic, PARTITIONS), (other, 1)):
        reader = log.reader(name)
        records = await drain(reader, count)
        assert {r.value for r in records} == {b"after"}
        await reader.close()
    await producer.close()


async def test_one_append_spans_topics(log: ChangeLog, new_topic: NewTopic) -> None:
    first, second = await new_topic(partitions=2), await new_topic(partitions=3)
    producer = log.producer(txn_id())
    await producer.start()
    await producer.append(
        [OutRecord(first, b"a", b"1"), OutRecord(second, b"b", b"2"), OutRecord(first, b"c", b"3")]
    )
    got_first = await drain(log.reader(first), 2)
    got_second = await drain(log.reader(second), 1)
    assert sorted(r.value for r in got_first) == [b"1", b"3"]
    assert [r.value for r in got_second] == [b"2"]
    await producer.close()


async def test_a_newer_producer_fences_the_older_one(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    transactional_id = txn_id()
    old = log.producer(transactional_id)
    await old.start()
    await old.append([OutRecord(topic, b"k", b"old-1")])

    new = other_log.producer(transactional_id)  # as if in another process
    await new.start()
    for attempt in range(2):
        with pytest.raises(Fenced) as info:
            await old.append([OutRecord(topic, b"k", b"old-%d" % (attempt + 2))])
        assert not info.value.retriable
    await new.append([OutRecord(topic, b"k", b"new-1")])

    records = await drain(log.reader(topic), 2)
    assert [r.value for r in records] == [b"old-1", b"new-1"]
    await old.close()
    await new.close()


async def test_starting_fences_an_idle_older_producer_in_the_same_log(
    log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=1)
    transactional_id = txn_id()
    first = log.producer(transactional_id)
    await first.start()
    second = log.producer(transactional_id)
    await second.start()
    with pytest.raises(Fenced):
        await first.append([OutRecord(topic, b"k", b"never")])
    await second.append([OutRecord(topic, b"k", b"kept")])
    records = await fetch_until(log.reader(topic), bool)
    assert [r.value for r in records] == [b"kept"]
    await first.close()
    await second.close()
