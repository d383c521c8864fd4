"""Contract: consumer-group members under stress (``ChangeLog.consumer``).

``test_consumer_groups.py`` has the basics (one member, two splitting, a leaver
handing over, refused commits, pause). Here: where a member starts, the callbacks'
timing against fetches (nothing fetched of a partition before its ``on_assigned``
returned or after its ``on_revoked`` began), slow and failing callbacks, pauses
across a move, ``close`` during a rebalance, and members in other processes that
are killed (``SIGKILL``) or frozen (``SIGSTOP``) and lose their partitions after
the session timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamkit.exceptions import LogError
from streamkit.log import (
    ChangeLog,
    LogConsumer,
    LogRecord,
    OutRecord,
    StartPosition,
)
from tests.conformance._helpers import txn_id
from tests.conformance.conftest import NewTopic

ROOT = Path(__file__).resolve().parents[2]
SESSION = 1.5  # seconds; the test broker allows group.min.session.timeout.ms=1000
WITHIN = 20.0  # seconds any expected group change may take


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    who: str
    what: str  # assigning | assigned | revoking | revoked
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Seen:
    at: float
    record: LogRecord


class Member:
    """A consumer with a listener that logs its callbacks and commits what was read.

    ``fetching`` runs a fetch loop in the background (as a runtime does), so fetches
    race the callbacks.
    """

    def __init__(
        self,
        log: ChangeLog,
        topic: str,
        group: str,
        name: str,
        events: list[Event],
        *,
        start: StartPosition = "earliest",
        assign_delay: float = 0.0,
        revoke_delay: float = 0.0,
        failing_revokes: int = 0,
    ) -> None:
        self.name = name
        self.events = events
        self.assign_delay = assign_delay
        self.revoke_delay = revoke_delay
        self.failing_revokes = failing_revokes
        self.seen: list[Seen] = []
        self.done: dict[int, int] = {}  # partition -> next offset to commit
        self.positions: dict[int, int] = {}  # position() when on_assigned returned
        self.consumer: LogConsumer = log.consumer(
            topic, group=group, listener=self, start=start, session_timeout=SESSION
        )
        self._fetcher: asyncio.Task[None] | None = None

    def _note(self, what: str, partitions: list[int]) -> None:
        self.events.append(Event(time.monotonic(), self.name, what, tuple(partitions)))

    async def on_assigned(self, partitions: list[int]) -> None:
        self._note("assigning", partitions)
        await asyncio.sleep(self.assign_delay)
        for p in partitions:
            self.positions[p] = await self.consumer.position(p)
        self._note("assigned", partitions)

    async def on_revoked(self, partitions: list[int]) -> None:
        self._note("revoking", partitions)
        await asyncio.sleep(self.revoke_delay)
        if self.failing_revokes:
            self.failing_revokes -= 1
            self._note("revoked", partitions)
            raise RuntimeError("on_revoked failed (on purpose)")
        commit = {p: self.done.pop(p) for p in partitions if p in self.done}
        if commit:
            await self.consumer.commit(commit)
        self._note("revoked", partitions)

    async def start(self, *, fetching: bool = True) -> None:
        await self.consumer.start()
        if fetching:
            self._fetcher = asyncio.create_task(self._fetch_loop())

    async def _fetch_loop(self) -> None:
        while True:
            records = await self.consumer.fetch(max_records=1000, timeout=0.05)
            at = time.monotonic()
            for r in records:
                self.seen.append(Seen(at, r))
                self.done[r.partition] = r.offset + 1

    async def close(self) -> None:
        """Close the consumer while the fetch loop runs (it may race the revoke)."""
        fetcher, self._fetcher = self._fetcher, None
        try:
            await self.consumer.close()
        finally:
            if fetcher is not None:
                fetcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, LogError):
                    await fetcher

    def values(self) -> list[int]:
        return [int(s.record.value) for s in self.seen]


async def _fill(log: ChangeLog, topic: str, first: int, count: int, partitions: int) -> None:
    """Append values ``first .. first+count-1``, value ``i`` to partition ``i % partitions``."""
    producer = log.producer(txn_id())
    await producer.start()
    await producer.append(
        [
            OutRecord(topic, None, b"%d" % i, partition=i % partitions)
            for i in range(first, first + count)
        ]
    )
    await producer.close()


async def _until(done: Callable[[], bool], what: str, *, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


def _split(members: list[Member], partitions: int) -> Callable[[], bool]:
    """Every member owns something and together exactly all partitions, once each."""

    def done() -> bool:
        owned = [p for m in members for p in m.consumer.assignment()]
        return sorted(owned) == list(range(partitions)) and all(
            m.consumer.assignment() for m in members
        )

    return done


def _never_two_owners(events: list[Event]) -> None:
    """A member starts owning a partition at ``assigning``; it stops at ``revoked``."""
    owner: dict[int, str] = {}
    for e in events:
        for p in e.partitions:
            if e.what == "assigning":
                assert p not in owner, f"partition {p} given to {e.who} while {owner[p]} owns it"
                owner[p] = e.who
            elif e.what == "revoked":
                assert owner.pop(p, None) == e.who, f"{e.who} revoked {p} it did not own"


def _fetched_only_when_ready(member: Member, events: list[Event]) -> None:
    """Each record came after its partition's ``on_assigned`` returned and before its
    ``on_revoked`` began."""
    for s in member.seen:
        p = s.record.partition
        ready = False
        for e in events:
            if e.at > s.at:
                break
            if e.who == member.name and p in e.partitions:
                if e.what == "assigned":
                    ready = True
                elif e.what in ("assigning", "revoking"):
                    ready = False
        assert ready, f"{member.name} got {s.record} outside its ownership: {events}"


# --- where a member starts ----------------------------------------------------------------
async def test_start_latest_skips_the_backlog_but_committed_offsets_win(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    await _fill(log, topic, 0, 20, 2)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    a = Member(log, topic, group, "a", events, start="latest")
    await a.start()
    ends = await a.consumer.end_offsets(settled=True)  # Kafka: past the commit markers
    await _until(lambda: len(a.positions) == 2, "a's on_assigned returned")
    assert a.consumer.assignment() == [0, 1]
    assert a.positions == ends  # positions are known inside on_assigned
    await _fill(log, topic, 20, 20, 2)
    await _until(lambda: len(a.seen) >= 20, "a reads what came after it joined")
    assert sorted(a.values()) == list(range(20, 40))
    await a.consumer.commit({0: 3})  # partition 1: never committed
    a.done.clear()
    await a.close()

    b = Member(other_log, topic, group, "b", events, start="latest")
    await b.start()
    ends = await b.consumer.end_offsets(settled=True)
    await _until(lambda: len(b.positions) == 2, "b's on_assigned returned")
    assert b.positions == {0: 3, 1: ends[1]}
    await _until(lambda: len(b.seen) >= 17, "b reads partition 0 from the commit")
    await asyncio.sleep(0.3)
    assert {s.record.partition for s in b.seen} == {0}
    assert b.values() == list(range(6, 40, 2))  # partition 0's from offset 3 on
    await b.close()


# --- the callbacks against fetches ----------------------------------------------------------
async def test_nothing_is_fetched_before_on_assigned_returns(
    log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    await _fill(log, topic, 0, 400, 4)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    # a slow on_assigned (a runtime loading state) while the fetch loop spins
    a = Member(log, topic, group, "a", events, assign_delay=0.5)
    await a.start()
    await _until(lambda: len(a.seen) >= 400, "a reads the backlog")
    _fetched_only_when_ready(a, events)
    assert sorted(a.values()) == list(range(400))  # each once
    for p in range(4):  # each partition read from where on_assigned saw its position
        first = next(s.record.offset for s in a.seen if s.record.partition == p)
        assert first == a.positions[p] == 0
    await a.close()


async def test_a_moving_partition_is_read_exactly_once_while_appends_go_on(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    a = Member(log, topic, group, "a", events, revoke_delay=0.3)
    b = Member(other_log, topic, group, "b", events, revoke_delay=0.3)
    await a.start()
    await _until(lambda: a.consumer.assignment() == [0, 1, 2, 3], "a owns everything")

    appended = 0
    stop = asyncio.Event()

    async def append() -> None:
        nonlocal appended
        producer = log.producer(txn_id())
        await producer.start()
        while not stop.is_set():
            await producer.append(
                [OutRecord(topic, None, b"%d" % (appended + p), partition=p) for p in range(4)]
            )
            appended += 4
            await asyncio.sleep(0.02)
        await producer.close()

    appender = asyncio.create_task(append())
    await _until(lambda: len(a.seen) >= 40, "a reads while appends go on")
    await b.start()
    await _until(_split([a, b], 4), "a and b split the partitions")
    await asyncio.sleep(0.3)
    stop.set()
    await appender
    await _until(lambda: len(a.seen) + len(b.seen) >= appended, "every append is read")
    await asyncio.sleep(0.3)  # nothing more arrives
    assert sorted(a.values() + b.values()) == list(range(appended))  # each exactly once
    _fetched_only_when_ready(a, events)
    _fetched_only_when_ready(b, events)
    _never_two_owners(events)
    await a.close()
    await b.close()


async def test_a_revoke_slower_than_the_session_still_finishes_before_the_move(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    # the member is alive while its listener commits: it keeps heartbeating
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    a = Member(log, topic, group, "a", events, revoke_delay=SESSION + 1.0)
    b = Member(other_log, topic, group, "b", events)
    await a.start()
    await _until(lambda: a.consumer.assignment() == [0, 1], "a owns everything")
    await b.start()
    await _until(_split([a, b], 2), "a and b split the partitions")
    _never_two_owners(events)
    a.revoke_delay = 0.0
    await a.close()
    await b.close()
    _never_two_owners(events)


async def test_a_failing_revoke_does_not_keep_the_partitions(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    # like aiokafka: the listener's error is logged and the rebalance goes on
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    a = Member(log, topic, group, "a", events, failing_revokes=1)
    b = Member(other_log, topic, group, "b", events)
    await a.start()
    await _until(lambda: a.consumer.assignment() == [0, 1], "a owns everything")
    await b.start()
    await _until(_split([a, b], 2), "b gets its share though a's revoke failed", within=10)
    _never_two_owners(events)
    await a.close()
    await b.close()


async def test_a_pause_ends_when_the_partition_is_revoked(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    # Kafka forgets pauses at every rebalance of the partition; so does the local log
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    a = Member(log, topic, group, "a", events)
    await a.start()
    await _until(lambda: len(a.positions) == 2, "a owns everything")
    a.consumer.pause([0, 1])
    paused_at = time.monotonic()
    b = Member(other_log, topic, group, "b", events)
    await b.start()
    await _until(_split([a, b], 2), "a and b split the partitions")
    await b.close()
    await _until(lambda: a.consumer.assignment() == [0, 1], "a owns everything again")
    await _until(lambda: [e.what for e in events if e.who == "a"][-1] == "assigned", "settled")
    await _fill(log, topic, 0, 20, 2)
    moved = {
        p
        for e in events
        if e.who == "a" and e.what == "revoking" and e.at > paused_at
        for p in e.partitions
    }
    assert moved, "a gave b a partition"
    await _until(
        lambda: {s.record.partition for s in a.seen} >= moved, "a reads what came back", within=10
    )
    await asyncio.sleep(0.5)
    assert {s.record.partition for s in a.seen} == moved  # the rest is still paused
    await a.close()


async def test_close_during_a_rebalance_revokes_each_partition_once(
    log: ChangeLog, other_log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    events: list[Event] = []
    a = Member(log, topic, group, "a", events, revoke_delay=0.5)
    b = Member(other_log, topic, group, "b", events)
    await a.start()
    await _until(lambda: a.consumer.assignment() == [0, 1], "a owns everything")
    await b.start()
    await _until(lambda: any(e.what == "revoking" for e in events), "a's revoke began")
    closing = time.monotonic()
    await a.close()
    assert a.consumer.assignment() == []
    mine = [e for e in events if e.who == "a"]
    assert not [e for e in mine if e.what == "assigning" and e.at > closing], mine
    revoked = sorted(p for e in mine if e.what == "revoking" for p in e.partitions)
    assert revoked == [0, 1], f"each partition revoked once: {mine}"
    await _until(lambda: b.consumer.assignment() == [0, 1], "b takes everything over")
    _never_two_owners(events)
    await b.close()


# --- members in other processes -------------------------------------------------------------
_CHILD = """
import asyncio, json, sys
from streamkit.log import CommitRefused, from_url

def say(*what):
    print(json.dumps(what), flush=True)

class Listener:
    held = []
    async def on_assigned(self, partitions):
        self.held = partitions
        say("assigned", partitions)
    async def on_revoked(self, partitions):
        say("revoked", partitions)

async def work(consumer):
    while True:
        records = await consumer.fetch(max_records=1000, timeout=0.05)
        done = {}
        for r in records:
            done[r.partition] = r.offset + 1
        if done:
            try:
                await consumer.commit(done)
            except CommitRefused as e:
                say("refused", e.partitions)
            else:
                say("read", len(records))

async def main(url, topic, group, session):
    async with from_url(url) as log:
        listener = Listener()
        consumer = log.consumer(
            topic, group=group, listener=listener, session_timeout=float(session)
        )
        await consumer.start()
        worker = asyncio.create_task(work(consumer))
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            if line == "commit-held":  # commit 0 for what the last on_assigned gave
                try:
                    await consumer.commit(dict.fromkeys(listener.held, 0))
                except CommitRefused as e:
                    say("refused", e.partitions)
                else:
                    say("committed", listener.held)
        await consumer.close()
        worker.cancel()
    say("closed")

asyncio.run(main(*sys.argv[1:]))
"""


class Child:
    """A consumer in another process, saying what happens as JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.said: list[list[Any]] = []
        self.stderr = b""
        self._pump = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, topic: str, group: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            url,
            topic,
            group,
            str(SESSION),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.said.append(json.loads(line))

    def read_count(self) -> int:
        return sum(int(s[1]) for s in self.said if s[0] == "read")

    def last(self, what: str) -> list[Any] | None:
        return next((s for s in reversed(self.said) if s[0] == what), None)

    async def until(self, done: Callable[[], bool], what: str) -> None:
        await _until(
            lambda: done() or self.proc.returncode is not None, f"{what}; child said {self.said}"
        )
        assert self.proc.returncode is None, f"the child exited: {self.said}"

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self) -> None:
        """Close stdin (the child leaves the group) and wait; kill it if it hangs."""
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                async with asyncio.timeout(WITHIN):
                    await self.proc.wait()
            finally:
                if self.proc.returncode is None:
                    self.proc.kill()
                    await self.proc.wait()
        await self._pump
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)


@pytest.mark.timeout(90)
async def test_a_killed_member_loses_its_partitions_after_the_session_timeout(
    url: str, log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    await _fill(log, topic, 0, 40, 4)
    group = f"g-{txn_id()}"
    child = await Child.start(url, topic, group)
    try:
        await child.until(lambda: child.read_count() >= 40, "the child reads and commits all")
        events: list[Event] = []
        b = Member(log, topic, group, "b", events)
        await b.start()
        await _until(lambda: bool(b.consumer.assignment()), "b gets a share")
        await _until(lambda: len(b.consumer.assignment()) < 4, "the child keeps a share")
        child.signal(signal.SIGKILL)
        killed = time.monotonic()
        await _fill(log, topic, 40, 40, 4)
        await _until(lambda: b.consumer.assignment() == [0, 1, 2, 3], "b takes over")
        took = time.monotonic() - killed
        assert took >= SESSION / 2, f"b took the partitions {took:.2f} s after the kill"
        await _until(lambda: len(b.seen) >= 40, "b reads the new records")
        await asyncio.sleep(0.3)
        # from the dead member's commits: nothing lost, nothing read twice
        assert sorted(b.values()) == list(range(40, 80))
        await b.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.signal(signal.SIGKILL)
        await child.finish()


@pytest.mark.timeout(90)
async def test_a_frozen_member_wakes_up_to_a_refused_commit(
    url: str, log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    group = f"g-{txn_id()}"
    child = await Child.start(url, topic, group)
    try:
        await child.until(lambda: child.last("assigned") == ["assigned", [0, 1]], "child owns all")
        child.signal(signal.SIGSTOP)  # a stalled process: no heartbeats
        events: list[Event] = []
        b = Member(log, topic, group, "b", events)
        await b.start()
        await _until(lambda: b.consumer.assignment() == [0, 1], "b takes over")
        await b.consumer.commit({0: 1, 1: 1})
        await child.send("commit-held")  # read as soon as it runs again
        child.signal(signal.SIGCONT)
        await child.until(lambda: child.last("refused") is not None, "the child's commit")
        assert child.last("refused") == ["refused", [0, 1]]
        assert child.last("committed") is None
        assert await b.consumer.committed() == {0: 1, 1: 1}
        # the child rejoins and the group settles again; b still resumes cleanly
        await child.until(lambda: bool(child.last("revoked")), "the child gives up its partitions")
        await b.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.signal(signal.SIGCONT)
        await child.finish()
    assert child.last("closed") is not None, child.stderr.decode()
