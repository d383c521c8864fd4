"""Contract: consumer-group members (``ChangeLog.consumer``) share a topic's partitions.

One live member owns each partition; members joining and leaving move partitions
through the listener, revoking (and committing) before anyone else is given them;
a member's commit of a partition it no longer owns is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from streamkit.log import ChangeLog, CommitRefused, LogConsumer, LogRecord, OutRecord
from tests.conformance._helpers import txn_id
from tests.conformance.conftest import NewTopic

SESSION = 1.5


class Listener:
    """Records the callbacks (with a clock) and commits what was read on revoke."""

    def __init__(self, name: str, events: list[tuple[float, str, str, list[int]]]) -> None:
        self.name = name
        self.events = events
        self.consumer: LogConsumer | None = None
        self.done: dict[int, int] = {}  # partition -> next offset to commit

    async def on_assigned(self, partitions: list[int]) -> None:
        self.events.append((time.monotonic(), self.name, "assigned", partitions))

    async def on_revoked(self, partitions: list[int]) -> None:
        assert self.consumer is not None
        commit = {p: self.done[p] for p in partitions if p in self.done}
        if commit:
            await self.consumer.commit(commit)
        self.events.append((time.monotonic(), self.name, "revoked", partitions))


async def _fill(log: ChangeLog, topic: str, count: int, partitions: int) -> None:
    producer = log.producer(txn_id())
    await producer.start()
    await producer.append(
        [OutRecord(topic, None, b"%d" % i, partition=i % partitions) for i in range(count)]
    )
    await producer.close()


def _member(
    log: ChangeLog,
    topic: str,
    group: str,
    name: str,
    events: list[tuple[float, str, str, list[int]]],
) -> tuple[LogConsumer, Listener]:
    listener = Listener(name, events)
    consumer = log.consumer(topic, group=group, listener=listener, session_timeout=SESSION)
    listener.consumer = consumer
    return consumer, listener


async def _read(
    members: list[tuple[LogConsumer, Listener]],
    until: Callable[[list[LogRecord]], bool],
    *,
    within: float = 30.0,
) -> list[LogRecord]:
    got: list[LogRecord] = []
    deadline = time.monotonic() + within
    while not until(got):
        assert time.monotonic() < deadline, f"read {len(got)} records in {within} s"
        for consumer, listener in members:
            for r in await consumer.fetch(max_records=1000, timeout=0.05):
                assert r.partition in consumer.assignment()
                got.append(r)
                listener.done[r.partition] = r.offset + 1
    return got


async def _until_assigned(members: list[LogConsumer], partitions: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while sorted(p for m in members for p in m.assignment()) != list(range(partitions)) or not all(
        m.assignment() for m in members
    ):
        assert time.monotonic() < deadline, [m.assignment() for m in members]
        for m in members:
            await m.fetch(timeout=0.05)  # Kafka runs the group protocol inside poll


async def test_one_member_gets_every_partition_and_resumes_from_commits(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    await _fill(log, topic, 40, 4)
    group = f"g-{txn_id()}"
    events: list[tuple[float, str, str, list[int]]] = []
    a = _member(log, topic, group, "a", events)
    await a[0].start()
    got = await _read([a], lambda g: len(g) >= 40)
    assert sorted(int(r.value) for r in got) == list(range(40))
    assert a[0].assignment() == [0, 1, 2, 3]
    # commit the first 5 of each partition only
    await a[0].commit(dict.fromkeys(range(4), 5))
    assert await a[0].committed() == dict.fromkeys(range(4), 5)
    a[1].done.clear()
    await a[0].close()
    assert [e[2] for e in events] == ["assigned", "revoked"]

    b = _member(other_log, topic, group, "b", events)
    await b[0].start()
    rest = await _read([b], lambda g: len(g) >= 20)
    assert sorted(r.offset for r in rest if r.partition == 0) == list(range(5, 10))
    await b[0].close()


async def test_two_members_split_the_partitions_and_a_leaver_hands_over(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    group = f"g-{txn_id()}"
    events: list[tuple[float, str, str, list[int]]] = []
    a = _member(log, topic, group, "a", events)
    b = _member(other_log, topic, group, "b", events)
    await a[0].start()
    await b[0].start()
    await _until_assigned([a[0], b[0]], 4)
    assert set(a[0].assignment()).isdisjoint(b[0].assignment())
    assert a[0].assignment() and b[0].assignment()

    await _fill(log, topic, 80, 4)
    got = await _read([a, b], lambda g: len(g) >= 80)
    assert sorted(int(r.value) for r in got) == list(range(80))  # each once

    await a[0].close()  # revokes (committing what it read), then leaves
    await _until_assigned([b[0]], 4)
    await _fill(log, topic, 8, 4)
    more = await _read([b], lambda g: len(g) >= 8)
    assert sorted(int(r.value) for r in more) == list(range(8))  # nothing read twice
    # never two owners: a partition is assigned only after its last owner revoked it
    owner: dict[int, str] = {}
    for _, who, what, ps in events:
        for p in ps:
            if what == "assigned":
                assert p not in owner, f"partition {p} given to {who} while {owner[p]} owns it"
                owner[p] = who
            else:
                assert owner.pop(p) == who
    await b[0].close()


async def test_commits_of_partitions_not_owned_are_refused(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    events: list[tuple[float, str, str, list[int]]] = []
    a = _member(log, topic, group, "a", events)
    await a[0].start()
    await _until_assigned([a[0]], 2)
    await a[0].commit({0: 0, 1: 0})
    b = _member(other_log, topic, group, "b", events)
    await b[0].start()
    await _until_assigned([a[0], b[0]], 2)
    (moved,) = b[0].assignment()
    with pytest.raises(CommitRefused) as refused:
        await a[0].commit({moved: 1})
    assert refused.value.partitions == [moved]
    assert (await b[0].committed())[moved] == 0
    await a[0].close()
    await b[0].close()


async def test_pause_and_resume(log: ChangeLog, new_topic: NewTopic) -> None:
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    events: list[tuple[float, str, str, list[int]]] = []
    a = _member(log, topic, group, "a", events)
    await a[0].start()
    await _until_assigned([a[0]], 2)
    a[0].pause([0])
    await _fill(log, topic, 20, 2)
    got = await _read([a], lambda g: len(g) >= 10)
    await asyncio.sleep(0.3)
    got += await a[0].fetch(timeout=0.3)
    assert {r.partition for r in got} == {1}
    a[0].resume([0])
    rest = await _read([a], lambda g: len(g) >= 10)
    assert {r.partition for r in rest} == {0}
    await a[0].close()
