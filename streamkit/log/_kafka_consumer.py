"""Consumer groups on Kafka: aiokafka's group membership behind ``LogConsumer``.

aiokafka runs the classic (eager) group protocol: on every rebalance each member's
``on_partitions_revoked`` is awaited for *all* its partitions before anyone is
assigned anything, then ``on_partitions_assigned`` brings the new assignment. Our
listener's callbacks run inside those, so a member commits its finished work before
a partition can move. ``consumer.stop()`` does not call the revoke callback; our
``close()`` does, before leaving the group.

The callbacks run one at a time (a lock): aiokafka's coordinator task calls them,
and ``close()`` may revoke while the coordinator is in the middle of a rebalance.
Once ``close()`` has begun, an assignment the coordinator still completes is not
passed on: the member is leaving, and every ``on_assigned`` is followed by exactly
one ``on_revoked``. A callback that raises is logged by aiokafka and the rebalance
goes on; partitions whose ``on_assigned`` failed are owned but not fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors

from streamkit.exceptions import LogError
from streamkit.log._base import (
    CommitRefused,
    LogRecord,
    RebalanceListener,
    StartPosition,
    check_max_records,
    check_offset,
)
from streamkit.log._kafka_util import Settler, _kafka_errors, _quietly, to_log_records

if TYPE_CHECKING:
    from streamkit.log._kafka import KafkaLog

__all__ = ("KafkaConsumer",)

_PARTITION_FETCH_BYTES = 1 << 20  # per partition
_FETCH_BYTES = 8 << 20  # per fetch: with a deep backlog, memory stays bounded


class _Adapter(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner._revoked(sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner._assigned(sorted(tp.partition for tp in assigned))


class KafkaConsumer:
    """A consumer-group member on Kafka (see :class:`~streamkit.log.LogConsumer`)."""

    def __init__(
        self,
        log: KafkaLog,
        topic: str,
        *,
        group: str,
        listener: RebalanceListener,
        start: StartPosition,
        session_timeout: float,
    ) -> None:
        self._log = log
        self.topic = topic
        self.group = group
        self._listener = listener
        self._start: StartPosition = start
        self._session_ms = max(1000, int(session_timeout * 1000))
        self._consumer: Any = None
        self._owned: set[int] = set()
        self._ready: set[int] = set()  # owned, and the listener's on_assigned has returned
        self._callbacks = asyncio.Lock()  # one listener callback at a time
        self._closing = False
        self._partitions: list[int] = []
        self._settler = Settler(log.client_kwargs)
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaConsumer({self.topic!r}, group={self.group!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _kafka_errors(f"{what} ({self.topic!r}, group {self.group!r})", topic=self.topic)

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    async def start(self) -> None:
        """Join the group (partitions arrive through the listener)."""
        if self._consumer is not None:
            return
        n = await self._log.partition_count(self.topic)
        self._partitions = list(range(n))
        consumer = AIOKafkaConsumer(
            **self._log.client_kwargs(),
            group_id=self.group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset=self._start,
            fetch_max_wait_ms=self._log.fetch_max_wait_ms,
            max_partition_fetch_bytes=_PARTITION_FETCH_BYTES,
            fetch_max_bytes=_FETCH_BYTES,
            session_timeout_ms=self._session_ms,
            heartbeat_interval_ms=max(100, self._session_ms // 4),
            rebalance_timeout_ms=max(self._session_ms, 60_000),
        )
        try:
            with self._errors("join the group"):
                async with self._log._deadline():
                    await consumer.start()
            consumer.subscribe(topics=[self.topic], listener=_Adapter(self))
        except BaseException:
            await _quietly(consumer.stop())
            raise
        self._consumer = consumer

    async def _assigned(self, partitions: list[int]) -> None:
        async with self._callbacks:
            if self._closing:
                return  # leaving: nothing may be assigned that close() would not revoke
            self._owned = set(partitions)
            self._ready.clear()
            if partitions:
                await self._listener.on_assigned(partitions)
            self._ready = set(partitions)

    async def _revoked(self, partitions: list[int] | None) -> None:
        """Revoke ``partitions`` (None: all) of those still owned."""
        async with self._callbacks:
            owned = self._owned
            mine = sorted(owned if partitions is None else (p for p in partitions if p in owned))
            if not mine:
                return
            self._ready.difference_update(mine)
            try:
                await self._listener.on_revoked(mine)
            finally:
                self._owned.difference_update(mine)

    def _need(self) -> Any:
        if self._consumer is None or self._closed:
            raise LogError("the consumer is not started (or closed)")
        return self._consumer

    def assignment(self) -> list[int]:
        """The partitions owned now."""
        return sorted(self._owned)

    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109 - a long-poll wait, as getmany(timeout_ms)
    ) -> list[LogRecord]:
        """Records of owned, unpaused partitions (``[]`` while the broker is away)."""
        check_max_records(max_records)
        consumer = self._need()
        with self._errors("fetch"):
            got = await consumer.getmany(
                timeout_ms=max(0, int(timeout * 1000)), max_records=max_records
            )
        records = to_log_records(got)
        ready = self._ready
        if any(r.partition not in ready for r in records):
            # aiokafka fetches a partition as soon as it is assigned, before (or while)
            # the listener's on_assigned runs, and stops only after on_revoked began:
            # give such records back (seek to the first of them) instead of losing them
            rewind: dict[int, int] = {}
            for r in records:
                if r.partition not in ready:
                    rewind[r.partition] = min(r.offset, rewind.get(r.partition, r.offset))
            assigned = {tp.partition for tp in consumer.assignment()}
            for p, offset in rewind.items():
                if p in assigned:
                    consumer.seek(self._tp(p), offset)
            records = [r for r in records if r.partition in ready]
        return records

    def pause(self, partitions: Sequence[int]) -> None:
        """Stop returning records of these partitions."""
        consumer = self._need()
        with self._errors("pause"):
            consumer.pause(*(self._tp(p) for p in partitions if p in self._owned))

    def resume(self, partitions: Sequence[int]) -> None:
        """Return records of these partitions again."""
        consumer = self._need()
        with self._errors("resume"):
            consumer.resume(*(self._tp(p) for p in partitions if p in self._owned))

    async def seek(self, partition: int, offset: int) -> None:
        """Read an owned partition from ``offset`` next."""
        check_offset(offset)
        consumer = self._need()
        with self._errors("seek"):
            consumer.seek(self._tp(partition), offset)

    async def position(self, partition: int) -> int:
        """The next offset fetch returns from an owned partition."""
        consumer = self._need()
        with self._errors("read the position"):
            async with self._log._deadline():
                return int(await consumer.position(self._tp(partition)))

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """The first offset with a timestamp at or after ``timestamp_ms``."""
        consumer = self._need()
        tp = self._tp(partition)
        with self._errors("look up an offset by time"):
            async with self._log._deadline():
                got = await consumer.offsets_for_times({tp: max(0, int(timestamp_ms))})
        found = got.get(tp)
        return None if found is None else int(found.offset)

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of every partition."""
        consumer = self._need()
        with self._errors("read the beginning offsets"):
            async with self._log._deadline():
                got = await consumer.beginning_offsets([self._tp(p) for p in self._partitions])
        return {tp.partition: int(off) for tp, off in sorted(got.items())}

    async def end_offsets(self, *, settled: bool = False) -> dict[int, int]:
        """The last stable offset of every partition.

        With ``settled``: once every transaction with a record below the high watermarks
        as of the call is committed or aborted (see :class:`Settler`), for up to 5 s.
        """
        consumer = self._need()
        tps = [self._tp(p) for p in self._partitions]
        with self._errors("read the end offsets"):
            if settled:
                got = await self._settler.end_offsets(consumer, tps, self._log._deadline)
            else:
                async with self._log._deadline():
                    got = await consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in sorted(got.items())}

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store positions of owned partitions; CommitRefused if the group moved them."""
        consumer = self._need()
        items = {}
        for p, off in dict(offsets).items():
            check_offset(off, f"offset for partition {p}")
            items[self._tp(p)] = off
        if not items:
            return
        not_mine = sorted(p for p in offsets if p not in self._owned)
        if not_mine:
            raise CommitRefused(
                f"partitions {not_mine} of {self.topic!r} are not assigned to this member",
                partitions=not_mine,
            )
        try:
            with self._errors("commit offsets"):
                async with self._log._deadline():
                    await consumer.commit(items)
        except LogError as e:
            cause = e.__cause__
            if isinstance(
                cause,
                (
                    kafka_errors.CommitFailedError,
                    kafka_errors.IllegalStateError,
                    kafka_errors.RebalanceInProgressError,
                    kafka_errors.UnknownMemberIdError,
                    kafka_errors.IllegalGenerationError,
                ),
            ):
                raise CommitRefused(
                    f"commit refused: the group rebalanced ({cause!r})",
                    partitions=sorted(offsets),
                ) from cause
            raise

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets for the topic."""
        consumer = self._need()
        tps = [self._tp(p) for p in self._partitions]
        with self._errors("read committed offsets"):
            async with self._log._deadline():
                got = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        return {tp.partition: int(off) for tp, off in zip(tps, got, strict=True) if off is not None}

    async def close(self) -> None:
        """Revoke what is owned (the listener commits), then leave the group."""
        if self._closed or self._closing:
            return
        self._closing = True
        consumer = self._consumer
        try:
            if consumer is not None:
                # waits for a callback the coordinator is running; what it assigns
                # from now on is ignored (_assigned sees _closing)
                await self._revoked(None)
        finally:
            self._closed = True
            self._log._children.discard(self)
            self._consumer = None
            if consumer is not None:
                await _quietly(consumer.stop())
            await self._settler.close()
