"""The capture relay: committed change records, from the storage outbox to the change log.

Exactly once, in commit order, crash-safe (see docs/design/capture.md):

1. Read the relay's state from storage: ``done`` (every outbox row up to it is in
   the log) and ``intent`` (the last row of the batch that was being published).
2. If ``intent > done``, that batch may or may not have reached the log. A batch
   is one log transaction, so it is all there or not at all; the relay is the
   only writer of these topics, so it is there exactly when the tail of one of
   its partitions holds the batch's last published record. Resolved before the
   next batch, never guessed.
3. Loop: take the next rows after ``done`` (never splitting a storage
   transaction), store ``intent``, append them in ONE transactional append
   (records of one storage transaction become visible together), store
   ``done``. A newer relay with the same transactional id fences this one.

The relay wakes when the storage commits (a doorbell rung by the writer thread),
so an idle write is published within milliseconds; under load it batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamkit.exceptions import LogError, StorageError
from streamkit.log import Fenced, LogUnavailable, OutRecord, TopicConfig
from streamkit.storage._engine import ChangeRow
from streamkit.storage._transaction import MAX_ACTIONS

if TYPE_CHECKING:
    from streamkit.log import ChangeLog, LogProducer
    from streamkit.storage._store import Store

__all__ = ("Relay", "RelayStatus", "table_topic")

_TAIL_WINDOW = 64  # records read back from a partition's end to resolve an in-doubt batch
_RESOLVE_TIMEOUT = 30.0  # seconds to read that tail before giving up (the relay then retries)
PRUNE_INTERVAL = 60.0  # seconds between archive prunes while relaying


def table_topic(namespace: str, table: str) -> str:
    """The topic of a table's change records: ``{namespace}.{table}``."""
    return f"{namespace}.{table}"


def headers_of(row: ChangeRow) -> tuple[tuple[str, bytes], ...]:
    """The Kafka headers of a change record: its event and sequence number."""
    return (("event", row.event.encode()), ("sequence_number", str(row.seq).encode()))


@dataclass(slots=True)
class RelayStatus:
    """How far the relay has got (``streamkit status`` shows it)."""

    done: int = 0
    latest: int = 0
    published: int = 0
    batches: int = 0
    last_error: str | None = None
    retries: int = 0
    published_at_failure: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def behind(self) -> int:
        """Outbox rows committed but not yet in the log."""
        return max(0, self.latest - self.done)


class Relay:
    """Moves outbox rows to the change log, exactly once.

    Args:
        store: the table store whose outbox is relayed.
        log: the change log (opened by the relay).
        namespace: the topic prefix.
        topic_config: partitions and retention of the table topics it creates.
        max_batch: the most rows in one log transaction.
    """

    def __init__(
        self,
        store: Store,
        log: ChangeLog,
        namespace: str,
        *,
        topic_config: TopicConfig | None = None,
        max_batch: int = 5000,
    ) -> None:
        self._store = store
        self._log = log
        self._namespace = namespace
        self._topic_config = topic_config or TopicConfig()
        self._max_batch = max_batch
        self._topics: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: LogProducer | None = None
        self.status = RelayStatus()

    # --- state in storage ----------------------------------------------------------------
    async def _state(self) -> tuple[int, int]:
        done_key, intent_key = self.state_keys
        meta = await self._store.read_meta((done_key, intent_key))
        done = int(meta.get(done_key, "0"))
        intent = int(meta.get(intent_key, "0"))
        return done, max(done, intent)

    async def _save(self, *, done: int | None = None, intent: int | None = None) -> None:
        done_key, intent_key = self.state_keys
        values = {done_key: done, intent_key: intent}
        await self._store.write_meta({k: str(v) for k, v in values.items() if v is not None})

    async def _slowest_done(self) -> int:
        """The least position of every relay of this store (one per namespace): the
        archive may only lose what all of them have published."""
        positions = await self._store.engine.meta_with_prefix("relay.")
        return min(
            [self.status.done] + [int(v) for k, v in positions.items() if k.endswith(".done")]
        )

    @property
    def state_keys(self) -> tuple[str, str]:
        """Where this relay keeps (done, intent) in storage: per namespace, so two apps
        with different namespaces on one store each publish the whole stream."""
        return f"relay.{self._namespace}.done", f"relay.{self._namespace}.intent"

    # --- the doorbell ----------------------------------------------------------------------
    def _ring(self) -> None:
        """Called on the storage writer thread after a commit."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    # --- running -------------------------------------------------------------------------
    async def run(self, *, idle_poll: float = 1.0, ready: asyncio.Event | None = None) -> None:
        """Relay until cancelled. Retries with backoff while the log is unavailable.

        Raises:
            Fenced: another relay took over this storage's transactional id.
        """
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        store = self._store
        await store.ensure_open()
        store.engine.add_commit_listener(self._ring)
        backoff = 0.05
        try:
            while True:
                try:
                    await self._start()
                    if ready is not None:
                        ready.set()
                    await self._relay_forever(idle_poll)
                except Fenced:
                    raise
                except (LogError, StorageError) as e:
                    # a log that is down, or a storage file locked by another process for
                    # longer than the busy timeout: wait and start over; nothing is lost
                    if isinstance(e, LogError) and not e.retriable:
                        raise
                    self.status.last_error = str(e)
                    self.status.retries += 1
                    await self._close_producer()
                    if self.status.published_at_failure != self.status.published:
                        backoff = 0.05  # it made progress since the last failure
                    self.status.published_at_failure = self.status.published
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                else:  # pragma: no cover - _relay_forever only returns by raising
                    return
        finally:
            store.engine.remove_commit_listener(self._ring)
            await self._close_producer()

    async def _start(self) -> None:
        await self._log.open()
        await self._check_topics()
        if self._producer is None:
            producer = self._log.producer(self.transactional_id)
            # starting fences any older relay and resolves its unfinished transaction
            await producer.start()
            self._producer = producer
        await self._resolve_in_doubt()

    async def _check_topics(self) -> None:
        """Create the topics of streamed tables, and refuse (TopicMismatch) any existing
        one whose partitions or retention differ from this app's settings — at start-up,
        not at the first write."""
        await self._store.reload()
        for spec in self._store.known_specs:
            if spec.stream is None:
                continue
            topic = table_topic(self._namespace, spec.name)
            if topic not in self._topics:
                await self._log.ensure_topic(topic, self._topic_config)
                self._topics.add(topic)

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.close()

    @property
    def transactional_id(self) -> str:
        """One per storage database: two relays of one storage fence each other."""
        return f"streamkit-relay-{self._namespace}-{self._store.engine.storage_id}"

    async def _relay_forever(self, idle_poll: float) -> None:
        assert self._wake is not None
        next_prune = 0.0
        while True:
            self._wake.clear()
            if time.monotonic() >= next_prune:
                # the outbox doubles as the PITR archive: drop what is published and
                # past its table's recovery window
                await self._store.prune_archive(published_upto=await self._slowest_done())
                next_prune = time.monotonic() + PRUNE_INTERVAL
            moved = await self.relay_once()
            if moved:
                continue  # more may be waiting: drain before sleeping
            with contextlib.suppress(TimeoutError):
                # other processes writing to the same file ring no bell: poll as well
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation
                # that arrives just as the bell rings, and the relay would never stop
                async with asyncio.timeout(idle_poll):
                    await self._wake.wait()

    async def relay_once(self) -> int:
        """Publish the next batch, if any; returns how many outbox rows it covered."""
        # read from storage, not cached: a relay that was fenced without noticing (its
        # batch had nothing to publish) must never move the position backwards
        done, _ = await self._state()
        # a transaction has at most MAX_ACTIONS records: reading that many more lets the
        # batch end on a transaction boundary
        rows = await self._store.read_changes(done, self._max_batch + MAX_ACTIONS)
        if not rows:
            self.status.done = done
            return 0
        rows = _whole_transactions(rows, self._max_batch)
        last = rows[-1].seq
        records = [
            OutRecord(
                table_topic(self._namespace, r.table),
                r.key,
                r.record,
                headers_of(r),
                r.created_ms,
            )
            for r in rows
            if r.publish
        ]
        if records:
            for topic in {r.topic for r in records} - self._topics:
                await self._log.ensure_topic(topic, self._topic_config)
                self._topics.add(topic)
            await self._save(intent=last)
            assert self._producer is not None
            await self._producer.append(records)
        await self._save(done=last, intent=last)
        st = self.status
        st.done = last
        st.published += len(records)
        st.batches += 1
        st.last_error = None
        return len(rows)

    async def _resolve_in_doubt(self) -> None:
        done, intent = await self._state()
        if intent <= done:
            return
        rows = [r for r in await self._store.read_changes(done, intent - done) if r.seq <= intent]
        published = [r for r in rows if r.publish]
        if published and not await self._in_log(published[-1]):
            await self._save(intent=done)  # the batch never landed: it will be sent again
            return
        await self._save(done=intent, intent=intent)

    async def _in_log(self, row: ChangeRow) -> bool:
        """Whether the record of ``row`` is at the tail of its partition."""
        topic = table_topic(self._namespace, row.table)
        described = await self._log.describe_topic(topic)
        if described is None:
            return False
        partition = self._log.partition_for(described.partitions, row.key)
        reader = self._log.reader(topic, partitions=[partition])
        try:
            end = (await reader.end_offsets()).get(partition, 0)
            begin = (await reader.beginning_offsets()).get(partition, 0)
            await reader.seek(partition, max(begin, end - _TAIL_WINDOW))
            # An empty fetch only means "nothing arrived in time" (a slow or recovering
            # broker), never "nothing there": read until the position passes `end`. On
            # Kafka that position also steps over commit markers and aborted records.
            deadline = asyncio.get_running_loop().time() + _RESOLVE_TIMEOUT
            while await reader.position(partition) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise LogUnavailable(
                        f"could not read {topic!r} partition {partition} up to offset {end} "
                        f"within {_RESOLVE_TIMEOUT:.0f} s to settle the batch in doubt"
                    )
                for rec in await reader.fetch(max_records=_TAIL_WINDOW, timeout=0.5):
                    if row.seq in _seq_header(rec.headers):
                        return True
            return False
        finally:
            await reader.close()


def _seq_header(headers: tuple[tuple[str, bytes], ...]) -> list[int]:
    return [int(v) for k, v in headers if k == "sequence_number"]


def _whole_transactions(rows: list[ChangeRow], limit: int) -> list[ChangeRow]:
    """The first ``limit`` rows, extended so that no storage transaction is split across
    two log appends (``rows`` holds up to MAX_ACTIONS more than ``limit``)."""
    if len(rows) <= limit:
        return rows
    end = limit
    txn = rows[end - 1].txn
    if txn is not None:
        while end < len(rows) and rows[end].txn == txn:
            end += 1
    return rows[:end]
