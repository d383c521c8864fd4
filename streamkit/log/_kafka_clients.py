"""The Kafka log's transactional producer and read-committed reader.

:class:`KafkaProducer` (one Kafka transaction per append) and :class:`KafkaReader`
(manual partition assignment, ``read_committed``) are made by
:meth:`KafkaLog.producer <streamkit.log._kafka.KafkaLog.producer>` and
:meth:`KafkaLog.reader <streamkit.log._kafka.KafkaLog.reader>`; the module docstring
of ``_kafka.py`` describes how they deal with aiokafka's failure modes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors

from streamkit.exceptions import ConfigurationError, LogError, ValidationError
from streamkit.log._base import (
    Fenced,
    LogRecord,
    OutRecord,
    StartPosition,
    check_max_records,
    check_offset,
    check_records,
    partition_for_key,
)
from streamkit.log._kafka_util import (
    Settler,
    _consume_stray_errors,
    _kafka_errors,
    _quietly,
    _stop_producer,
    _Txn,
    to_log_records,
)

if TYPE_CHECKING:
    from streamkit.log._kafka import KafkaLog

__all__ = ("KafkaProducer", "KafkaReader")

_MAX_BATCH_BYTES = 1_000_000  # below the broker's default message.max.bytes (1 MiB)


class KafkaProducer:
    """A transactional producer on Kafka (see :class:`~streamkit.log.LogProducer`)."""

    def __init__(self, log: KafkaLog, transactional_id: str) -> None:
        self._log = log
        self.transactional_id = transactional_id
        self._producer: Any = None
        self._lock = asyncio.Lock()
        self._started = False
        self._fenced = False
        self._closed = False
        self._stopping: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"KafkaProducer({self.transactional_id!r})"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise LogError("the producer is closed")
        if self._fenced:
            raise Fenced(
                f"producer {self.transactional_id!r} was fenced by a newer one",
                transactional_id=self.transactional_id,
            )

    async def start(self) -> None:
        """Connect and register the transactional id, fencing older producers.

        Raises:
            LogUnavailable: no broker answered within ``append_timeout``.
        """
        self._check_usable()
        async with self._lock:
            if self._started and self._producer is not None:
                return
            with _kafka_errors(f"start producer {self.transactional_id!r}"):
                async with asyncio.timeout(self._log.append_timeout):
                    await self._connect()
            self._started = True

    async def _connect(self) -> Any:
        """A started aiokafka producer holding the current epoch (call under the lock)."""
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            **self._log.client_kwargs(),
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            transaction_timeout_ms=self._log.transaction_timeout_ms,
            linger_ms=0,
            # appends are sent as one batch per partition (see _transaction): let a
            # batch hold a whole relay append's share of a partition
            max_batch_size=_MAX_BATCH_BYTES,
        )
        try:
            await producer.start()
            # An empty transaction waits for InitProducerId, which is what fences the
            # older epochs (and settles their open transactions); aiokafka ends an
            # empty transaction locally, without a request.
            await producer.begin_transaction()
            await producer.abort_transaction()
        except BaseException:
            self._discard(producer)
            raise
        self._producer = producer
        return producer

    def _discard(self, producer: Any) -> None:
        # stopped in the background: with the broker down that takes _STOP_GRACE, and
        # the caller is already late. close() waits for these.
        if producer is self._producer:
            self._producer = None
        task = asyncio.ensure_future(_stop_producer(producer))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append all records in one Kafka transaction (see :class:`LogProducer`).

        Waits at most ``append_timeout`` seconds; then raises :class:`LogUnavailable`,
        whose ``in_doubt`` says whether the commit had been requested.
        """
        recs = check_records(records)
        self._check_usable()
        if not self._started:
            raise LogError("the producer is not started: await producer.start() first")
        if not recs:
            return
        async with self._lock:
            self._check_usable()
            txn = _Txn()
            try:
                with _kafka_errors(f"append to Kafka ({len(recs)} records)", txn=txn):
                    async with asyncio.timeout(self._log.append_timeout):
                        await self._transaction(recs, txn)
            except Fenced:
                self._fenced = True
                if self._producer is not None:
                    self._discard(self._producer)
                raise

    async def _transaction(self, recs: list[OutRecord], txn: _Txn) -> None:
        # group by partition, keeping each partition's order: one aiokafka batch per
        # partition costs far less than one send() per record (profiled: the relay
        # spent most of its time in per-record send bookkeeping)
        counts: dict[str, int] = {}
        by_partition: dict[tuple[str, int], list[OutRecord]] = {}
        for i, r in enumerate(recs):
            n = counts.get(r.topic)
            if n is None:
                with _kafka_errors("append to Kafka", topic=r.topic):
                    n = counts[r.topic] = await self._log.partition_count(r.topic)
            part = partition_for_key(n, r.key) if r.partition is None else r.partition
            if part >= n:
                raise ValidationError(
                    f"records[{i}].partition={part} but topic {r.topic!r} has {n} partitions"
                )
            by_partition.setdefault((r.topic, part), []).append(r)
        producer = await self._connect()
        clean = False
        try:
            await producer.begin_transaction()
            futures = []
            for (topic, part), group in by_partition.items():
                batch = producer.create_batch()
                for r in group:
                    headers = list(r.headers)
                    if (
                        batch.append(
                            timestamp=r.timestamp_ms, key=r.key, value=r.value, headers=headers
                        )
                        is None
                    ):
                        batch.close()
                        futures.append(await producer.send_batch(batch, topic, partition=part))
                        batch = producer.create_batch()
                        if (
                            batch.append(
                                timestamp=r.timestamp_ms, key=r.key, value=r.value, headers=headers
                            )
                            is None
                        ):  # pragma: no cover - check_records bounds record size
                            raise ValidationError(f"a record for {topic!r} does not fit a batch")
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=part))
            await asyncio.wait(futures)
            failed = next((f.exception() for f in futures if f.exception() is not None), None)
            if failed is not None:
                if isinstance(failed, kafka_errors.ProducerFenced):
                    raise failed
                # The broker refused a record (a timestamp too far ahead, a size limit):
                # abort, so none of the others become visible either. The producer is
                # replaced all the same (clean stays False): aiokafka has counted the
                # refused batch's sequence numbers, so its next send to that partition
                # would fail with OutOfOrderSequenceNumber; a new producer id resets them.
                _consume_stray_errors(producer)
                await producer.abort_transaction()
                raise failed
            txn.commit_requested = True
            await producer.commit_transaction()
            clean = True
        finally:
            if not clean:
                # cancelled, timed out or failed mid-transaction: this aiokafka
                # producer's state is unknown (maybe still committing). A new one,
                # same transactional id, settles the old transaction when it starts.
                self._discard(producer)

    async def close(self) -> None:
        """Stop the producer (an open transaction is aborted by the broker)."""
        self._closed = True
        self._log._children.discard(self)
        async with self._lock:
            if self._producer is not None:
                self._discard(self._producer)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


class KafkaReader:
    """A read-committed reader on Kafka (see :class:`~streamkit.log.LogReader`)."""

    def __init__(
        self,
        log: KafkaLog,
        topic: str,
        *,
        group: str | None,
        partitions: Sequence[int] | None,
        start: StartPosition,
    ) -> None:
        self._log = log
        self.topic = topic
        self.group = group
        self._wanted = None if partitions is None else sorted(set(partitions))
        self._start: StartPosition = start
        self._consumer: Any = None
        self._partitions: list[int] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self._settler = Settler(log.client_kwargs)

    def __repr__(self) -> str:
        return f"KafkaReader({self.topic!r}, group={self.group!r})"

    async def __aenter__(self) -> Self:
        await self._ensure()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure(self) -> Any:
        if self._closed:
            raise LogError("the reader is closed")
        if self._consumer is not None:
            return self._consumer
        async with self._lock:
            if self._consumer is not None:
                return self._consumer
            n = await self._log.partition_count(self.topic)
            parts = list(range(n)) if self._wanted is None else self._wanted
            bad = [p for p in parts if not 0 <= p < n]
            if bad:
                raise ValidationError(f"topic {self.topic!r} has no partitions {bad} (it has {n})")
            consumer = AIOKafkaConsumer(
                **self._log.client_kwargs(),
                group_id=self.group,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset=self._start,
                fetch_max_wait_ms=self._log.fetch_max_wait_ms,
            )
            try:
                with _kafka_errors(f"start a reader of {self.topic!r}", topic=self.topic):
                    async with self._log._deadline():
                        await consumer.start()
                tps = [TopicPartition(self.topic, p) for p in parts]
                consumer.assign(tps)
                # aiokafka resolves starting positions (committed offset, else reset)
                # lazily, in the background; resolving them here makes a "latest"
                # reader start at the end as of now, and the first fetch's timeout
                # mean the same as every later one's
                with _kafka_errors(f"start a reader of {self.topic!r}", topic=self.topic):
                    async with self._log._deadline():
                        for tp in tps:
                            await consumer.position(tp)
            except BaseException:
                await _quietly(consumer.stop())
                raise
            self._consumer, self._partitions = consumer, parts
            return consumer

    def _tp(self, partition: int) -> TopicPartition:
        if partition not in self._partitions:
            raise ValidationError(
                f"partition {partition} is not read by this reader of {self.topic!r} "
                f"(it reads {self._partitions})"
            )
        return TopicPartition(self.topic, partition)

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _kafka_errors(f"{what} ({self.topic!r})", topic=self.topic)

    async def partitions(self) -> list[int]:
        """The partitions this reader reads, ascending."""
        await self._ensure()
        return list(self._partitions)

    async def position(self, partition: int) -> int:
        """The offset of the next record :meth:`fetch` returns from ``partition``."""
        consumer = await self._ensure()
        tp = self._tp(partition)
        with self._errors("read the position"):
            async with self._log._deadline():
                return int(await consumer.position(tp))

    async def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (reset to ``start`` if out of range)."""
        check_offset(offset)
        consumer = await self._ensure()
        consumer.seek(self._tp(partition), offset)

    async def _seek_bound(self, partition: int | None, to_end: bool) -> None:
        consumer = await self._ensure()
        tps = (
            [self._tp(partition)]
            if partition is not None
            else [TopicPartition(self.topic, p) for p in self._partitions]
        )
        # aiokafka resolves these lazily; resolving now makes position() and the next
        # fetch agree with the offsets as they are at this call
        with self._errors("seek"):
            async with self._log._deadline():
                offsets = await (
                    consumer.end_offsets(tps) if to_end else consumer.beginning_offsets(tps)
                )
        for tp, off in offsets.items():
            consumer.seek(tp, off)

    async def seek_to_beginning(self, partition: int | None = None) -> None:
        """Move to the oldest kept record (of one partition, or all)."""
        await self._seek_bound(partition, to_end=False)

    async def seek_to_end(self, partition: int | None = None) -> None:
        """Move past the last committed record (of one partition, or all)."""
        await self._seek_bound(partition, to_end=True)

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of each partition read."""
        consumer = await self._ensure()
        with self._errors("read the beginning offsets"):
            async with self._log._deadline():
                got = await consumer.beginning_offsets(
                    [TopicPartition(self.topic, p) for p in self._partitions]
                )
        return {tp.partition: int(off) for tp, off in sorted(got.items())}

    async def end_offsets(self, *, settled: bool = False) -> dict[int, int]:
        """The last stable offset (after the last committed record) of each partition.

        With ``settled``: once every transaction with a record below the high watermarks
        as of the call is committed or aborted (see :class:`Settler`), for up to 5 s.
        """
        consumer = await self._ensure()
        tps = [TopicPartition(self.topic, p) for p in self._partitions]
        with self._errors("read the end offsets"):
            if settled:
                got = await self._settler.end_offsets(consumer, tps, self._log._deadline)
            else:
                async with self._log._deadline():
                    got = await consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in sorted(got.items())}

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """The first kept offset with a timestamp >= ``timestamp_ms``; None past the end."""
        consumer = await self._ensure()
        tp = self._tp(partition)
        with self._errors("look up an offset by time"):
            async with self._log._deadline():
                got = await consumer.offsets_for_times({tp: max(0, int(timestamp_ms))})
        found = got.get(tp)
        return None if found is None else int(found.offset)

    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109 - a long-poll wait, as getmany(timeout_ms)
    ) -> list[LogRecord]:
        """The next committed records, waiting up to ``timeout`` s for the first one.

        While the broker is down this returns ``[]`` after ``timeout`` (aiokafka only
        logs connection errors while fetching) and resumes once it is back.
        """
        check_max_records(max_records)
        consumer = await self._ensure()
        with self._errors("fetch"):
            got = await consumer.getmany(
                timeout_ms=max(0, int(timeout * 1000)), max_records=max_records
            )
        return to_log_records(got)

    def _need_group(self) -> str:
        if self.group is None:
            raise ConfigurationError(
                f"this reader of {self.topic!r} has no group: pass group= to log.reader()"
            )
        return self.group

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store the group's next offset to read for each given partition.

        With the broker down this raises LogUnavailable after ``request_timeout_ms``;
        the commit may still land when the broker is back (committing again is safe).
        """
        self._need_group()
        consumer = await self._ensure()
        items = {}
        for p, off in dict(offsets).items():
            check_offset(off, f"offset for partition {p}")
            items[self._tp(p)] = off
        if not items:
            return
        with self._errors("commit offsets"):
            async with self._log._deadline():
                await consumer.commit(items)

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets for the partitions read."""
        self._need_group()
        consumer = await self._ensure()
        tps = [TopicPartition(self.topic, p) for p in self._partitions]
        with self._errors("read committed offsets"):
            async with self._log._deadline():
                got = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        return {tp.partition: int(off) for tp, off in zip(tps, got, strict=True) if off is not None}

    async def close(self) -> None:
        """Stop the consumer."""
        self._closed = True
        self._log._children.discard(self)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _quietly(consumer.stop())
        await self._settler.close()
