"""Dead-letter queues: a handler's failed records, whole, with why they failed.

One topic per handler, ``{namespace}.{table}.dlq.{handler}``, one message per failed
record. The message *is* the change record: its key and value are the original
message's (the Avro record, readable by any Avro consumer), and headers say what
went wrong (``dlq.error.type``, ``dlq.error.message``, ``dlq.traceback``,
``dlq.attempts``, ``dlq.handler``, ``dlq.first_attempt_ms``, ``dlq.failed_ms``, the
source ``dlq.source.partition`` / ``dlq.source.offset``). Lambda's on-failure
destination holds only pointers to the shard; this holds the records.

Which dead letters are still pending is the position of the consumer group
``{namespace}.{table}.dlq.{handler}.redrive``: a redrive moves it past each letter
that the handler has now processed.

No table's topic can be a DLQ's: table names with a ``dlq`` segment are reserved
(``streamkit/_names.py`` holds every name and the rules).
"""

from __future__ import annotations

import traceback as tb
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from streamkit._names import dlq_redrive_group, dlq_topic
from streamkit.log import ChangeLog, LogProducer, LogRecord, OutRecord, TopicConfig
from streamkit.records import ChangeRecord, decode_record
from streamkit.records._record import datetime_from_ms

__all__ = ("DeadLetter", "DeadLetterQueue", "dlq_topic")

DLQ_RETENTION_MS = 14 * 86_400_000  # two weeks, as SQS's longest retention
_MAX_MESSAGE = 4_000
_MAX_TRACE = 16_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record a handler failed to process, as kept in its DLQ.

    Attributes:
        record: the change record (None if its bytes could not be decoded; see ``value``).
        value: the record's bytes as they were in the table's topic.
        key: the message key.
        handler: the handler's name.
        table: the source table.
        error_type: the exception's class name (``RecordExpired`` when
            ``max_record_age`` passed, ``RecordFormatError`` for undecodable bytes).
        error_message: ``str()`` of the exception.
        traceback: the formatted traceback (may be empty).
        attempts: how many times the handler was invoked with the record.
        first_attempt_at: when the first attempt started (UTC).
        failed_at: when the record was given up (UTC).
        source_partition, source_offset: where it was in the table's topic.
        partition, offset: where it is in the DLQ topic.
    """

    record: ChangeRecord | None
    value: bytes
    key: bytes | None
    handler: str
    table: str
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    first_attempt_at: datetime
    failed_at: datetime
    source_partition: int
    source_offset: int
    partition: int
    offset: int

    def describe(self) -> dict[str, object]:
        """Plain data for ``--json`` output and logs."""
        r = self.record
        return {
            "handler": self.handler,
            "table": self.table,
            "event_name": None if r is None else r.event_name,
            "keys": None if r is None else r.to_dynamodb_json()["dynamodb"]["Keys"],
            "sequence_number": None if r is None else r.sequence_number,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "first_attempt_at": self.first_attempt_at.isoformat(),
            "failed_at": self.failed_at.isoformat(),
            "source": f"{self.source_partition}:{self.source_offset}",
            "dlq_offset": f"{self.partition}:{self.offset}",
        }


@dataclass(slots=True)
class Failure:
    """One record to send to the DLQ (built by the runtime)."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int
    attempts: int
    first_attempt_ms: int


def _headers(
    f: Failure, handler: str, table: str, error: BaseException, failed_ms: int
) -> tuple[tuple[str, bytes], ...]:
    trace = "".join(tb.format_exception(error))[-_MAX_TRACE:]
    own = (
        ("dlq.handler", handler.encode()),
        ("dlq.table", table.encode()),
        ("dlq.error.type", type(error).__name__.encode()),
        ("dlq.error.message", str(error)[:_MAX_MESSAGE].encode("utf-8", "replace")),
        ("dlq.traceback", trace.encode("utf-8", "replace")),
        ("dlq.attempts", str(f.attempts).encode()),
        ("dlq.first_attempt_ms", str(f.first_attempt_ms).encode()),
        ("dlq.failed_ms", str(failed_ms).encode()),
        ("dlq.source.partition", str(f.partition).encode()),
        ("dlq.source.offset", str(f.offset).encode()),
    )
    return tuple(h for h in f.headers if not h[0].startswith("dlq.")) + own


def parse(rec: LogRecord) -> DeadLetter:
    """A DLQ message as a :class:`DeadLetter`."""
    h = dict(rec.headers)

    def text(name: str) -> str:
        return h.get(name, b"").decode("utf-8", "replace")

    def number(name: str) -> int:
        try:
            return int(text(name) or 0)
        except ValueError:
            return 0

    try:
        record: ChangeRecord | None = decode_record(rec.value)
    except Exception:  # a record that could not be decoded is exactly what may be here
        record = None
    return DeadLetter(
        record=record,
        value=rec.value,
        key=rec.key,
        handler=text("dlq.handler"),
        table=text("dlq.table"),
        error_type=text("dlq.error.type"),
        error_message=text("dlq.error.message"),
        traceback=text("dlq.traceback"),
        attempts=number("dlq.attempts"),
        first_attempt_at=datetime_from_ms(number("dlq.first_attempt_ms")),
        failed_at=datetime_from_ms(number("dlq.failed_ms") or rec.timestamp_ms),
        source_partition=number("dlq.source.partition"),
        source_offset=number("dlq.source.offset"),
        partition=rec.partition,
        offset=rec.offset,
    )


class DeadLetterQueue:
    """The DLQ of one handler: send failures, read what is pending, move past letters."""

    def __init__(
        self,
        log: ChangeLog,
        namespace: str,
        table: str,
        handler: str,
        *,
        retention_ms: int = DLQ_RETENTION_MS,
    ) -> None:
        self.log = log
        self.table = table
        self.handler = handler
        self.topic = dlq_topic(namespace, table, handler)
        self.group = dlq_redrive_group(namespace, table, handler)
        self.config = TopicConfig(partitions=1, retention_ms=retention_ms)
        self._producer: LogProducer | None = None

    async def send(self, failures: Sequence[Failure], error: BaseException, now_ms: int) -> None:
        """Append the failed records, all or none (one log transaction)."""
        if not failures:
            return
        if self._producer is None:
            await self.log.ensure_topic(self.topic, self.config)
            producer = self.log.producer(f"{self.topic}.{uuid.uuid4().hex[:12]}")
            await producer.start()
            self._producer = producer
        records = [
            OutRecord(
                self.topic,
                key=f.key,
                value=f.value,
                headers=_headers(f, self.handler, self.table, error, now_ms),
                timestamp_ms=now_ms,
                partition=0,
            )
            for f in failures
        ]
        await self._producer.append(records)

    async def close(self) -> None:
        """Release the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.close()

    async def pending(self, *, include_redriven: bool = False) -> AsyncIterator[DeadLetter]:
        """The dead letters not yet redriven (all kept ones with ``include_redriven``)."""
        await self.log.open()
        if await self.log.describe_topic(self.topic) is None:
            return
        reader = self.log.reader(self.topic, group=self.group)
        try:
            if include_redriven:
                await reader.seek_to_beginning()
            ends = await reader.end_offsets(settled=True)
            while True:
                positions = {p: await reader.position(p) for p in ends}
                if all(positions[p] >= end for p, end in ends.items()):
                    return
                for rec in await reader.fetch(max_records=500, timeout=0.5):
                    if rec.offset < ends.get(rec.partition, 0):
                        yield parse(rec)
        finally:
            await reader.close()

    async def mark_redriven(self, letter: DeadLetter) -> None:
        """Move the pending position past ``letter``."""
        reader = self.log.reader(self.topic, group=self.group)
        try:
            committed = await reader.committed()
            if committed.get(letter.partition, -1) < letter.offset + 1:
                await reader.commit({letter.partition: letter.offset + 1})
        finally:
            await reader.close()

    async def depth(self) -> int:
        """How many dead letters are pending.

        Counted exactly by reading them when at most 10,000 offsets separate the
        position from the end; beyond that, the offset difference (on Kafka an upper
        bound: transaction markers take offsets too).
        """
        await self.log.open()
        if await self.log.describe_topic(self.topic) is None:
            return 0
        reader = self.log.reader(self.topic, group=self.group)
        try:
            ends = await reader.end_offsets()
            begins = await reader.beginning_offsets()
            committed = await reader.committed()
        finally:
            await reader.close()
        span = sum(
            max(0, end - max(committed.get(p, 0), begins.get(p, 0))) for p, end in ends.items()
        )
        if span > 10_000:
            return span
        return sum([1 async for _ in self.pending()])
