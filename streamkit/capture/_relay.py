"""The capture relay: committed change records, from the storage outbox to the change log.

Exactly once, in commit order, crash-safe (see docs/design/capture.md):

1. Read the relay's state from storage: ``done`` (every outbox row up to it is in
   the log, or belongs to a table set aside) and ``intent`` (the last row of the
   batch that was being published).
2. If ``intent > done``, that batch may or may not have reached the log. A batch
   is one log transaction, so it is all there or not at all; the relay is the
   only writer of these topics, so it is there exactly when the tail of one of
   its partitions holds the batch's last published record. Resolved before the
   next batch, never guessed.
3. Loop: take the next rows after ``done`` (never splitting a storage
   transaction), store ``intent``, append them in ONE transactional append
   (records of one storage transaction become visible together), store
   ``done``. A newer relay with the same transactional id fences this one.

A table whose topic cannot be made (a name too long for Kafka, a reserved or
colliding name, a topic the broker refuses for good) does not stop the others: it
is **set aside** ("parked"). Its rows stay in storage (the archive is never pruned
past them), the relay moves on, and the table shows as failing
(``app.capture_status()``, ``streamkit status``, the endpoint's health check, the
``streamkit_capture_tables_failing`` metric). The parked state is kept in storage
(``relay.{namespace}.parked/{table}/{table_id}``: the position ``after`` which its
rows wait, the error), is written with the batch that set the table aside, and is
retried at start-up and every :data:`PARKED_RETRY_INTERVAL`: once the topic can be
made, the kept rows up to ``done`` are published in order with the same
intent / settle-in-doubt scheme, then the table is unparked. A parked table that was
deleted (or re-created under another id) is dropped; its rows are left to pruning.

The relay wakes when the storage commits (a doorbell rung by the writer thread),
so an idle write is published within milliseconds; under load it batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streamkit._names import (
    EVENT_HEADER,
    SEQUENCE_HEADER,
    check_table_topic,
    parse_relay_key,
    relay_done_key,
    relay_intent_key,
    relay_lease,
    relay_parked_key,
    relay_parked_prefix,
    relay_transactional_id,
    table_topic,
)
from streamkit.exceptions import LogError, StorageError, ValidationError
from streamkit.log import Fenced, LogUnavailable, OutRecord, TopicConfig, TopicMismatch
from streamkit.storage._engine import ChangeRow
from streamkit.storage._transaction import MAX_ACTIONS

if TYPE_CHECKING:
    from streamkit.log import ChangeLog, LogProducer
    from streamkit.storage._store import Store

__all__ = ("Parked", "Relay", "RelayStatus", "table_topic")

_TAIL_WINDOW = 64  # records read back from a partition's end to resolve an in-doubt batch
_RESOLVE_TIMEOUT = 30.0  # seconds to read that tail before giving up (the relay then retries)
PRUNE_INTERVAL = 60.0  # seconds between archive prunes while relaying
# ...and while a prune still deletes rows (each examines at most 10,000 archive rows, so
# once a minute capped compaction at ~167 changes/s: a busy PITR store fell behind)
PRUNE_CATCHUP = 1.0
LEASE_SECONDS = 10.0  # a relay that stops renewing is replaced within this long


class _LeaseLost(Exception):
    """Another relay holds the namespace's lease now (this one paused for too long)."""


PARKED_RETRY_INTERVAL = 30.0  # seconds between attempts to resume set-aside tables
_SCAN = 5000  # outbox rows read per step while collecting a parked table's rows


def _logger() -> Any:
    # structlog is imported only when something is logged: `import streamkit` stays fast
    import structlog

    return structlog.get_logger("streamkit.capture")


def headers_of(row: ChangeRow) -> tuple[tuple[str, bytes], ...]:
    """The Kafka headers of a change record: its event and sequence number."""
    return ((EVENT_HEADER, row.event.encode()), (SEQUENCE_HEADER, str(row.seq).encode()))


@dataclass(frozen=True, slots=True)
class Parked:
    """A table set aside by the relay, as kept in storage.

    Attributes:
        table: its name.
        table_id: its storage id (a table re-created under the name has another).
        after: its rows up to this sequence number are settled (published, or not to
            be); its rows after it, up to the relay's ``done``, are kept for it.
        error: why its topic could not be used (the latest attempt's).
        since: when it was set aside (epoch seconds).
        kept: how many of its rows wait (after ``after``, up to the relay's ``done``).
        counted: the last sequence number counted in ``kept`` (a batch sent again does
            not count its rows twice).
        intent: the last row of a catch-up append in flight (0: none).
        intent_rows: how many of the table's rows that append held.
    """

    table: str
    table_id: int
    after: int
    error: str
    since: float
    kept: int = 0
    counted: int = 0
    intent: int = 0
    intent_rows: int = 0

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "table": self.table,
                "table_id": self.table_id,
                "after": self.after,
                "error": self.error,
                "since": self.since,
                "kept": self.kept,
                "counted": self.counted,
                "intent": self.intent,
                "intent_rows": self.intent_rows,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Parked:
        """Read the stored form (raises ValueError when it is not one)."""
        try:
            d = json.loads(text)
            return cls(
                table=str(d["table"]),
                table_id=int(d["table_id"]),
                after=int(d["after"]),
                error=str(d["error"]),
                since=float(d["since"]),
                kept=int(d.get("kept", 0)),
                counted=int(d.get("counted", d["after"])),
                intent=int(d.get("intent", 0)),
                intent_rows=int(d.get("intent_rows", 0)),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a parked-table entry: {text[:200]!r}") from e

    def describe(self) -> dict[str, Any]:
        """Plain data for ``capture_status()`` / ``streamkit status``."""
        return {
            "table": self.table,
            "error": self.error,
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(),
            "rows_kept": self.kept,
        }


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
    failing: dict[str, dict[str, Any]] = field(default_factory=dict)
    standby: bool = False  # waiting for the lease another relay of the namespace holds

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
        lease_seconds: how long the namespace's relay lease lasts unless renewed: a relay
            that dies is replaced by a standby one at most this long after.
    """

    def __init__(
        self,
        store: Store,
        log: ChangeLog,
        namespace: str,
        *,
        topic_config: TopicConfig | None = None,
        max_batch: int = 5000,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._store = store
        self._log = log
        self._namespace = namespace
        self._topic_config = topic_config or TopicConfig()
        self._max_batch = max_batch
        self._topics: set[str] = set()
        self._parked: dict[int, Parked] = {}  # by table id, as stored
        self._announced: set[tuple[int, float]] = set()  # parked tables logged already
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: LogProducer | None = None
        self.status = RelayStatus()
        # who holds the lease: unique per relay object, readable by an operator
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0
        self._lease_seconds = lease_seconds

    # --- state in storage ----------------------------------------------------------------
    async def _state(self) -> tuple[int, int]:
        done_key, intent_key = self.state_keys
        meta = await self._store.read_meta((done_key, intent_key))
        done = int(meta.get(done_key, "0"))
        intent = int(meta.get(intent_key, "0"))
        return done, max(done, intent)

    async def _save(
        self,
        *,
        done: int | None = None,
        intent: int | None = None,
        parked: dict[str, str] | None = None,
    ) -> None:
        done_key, intent_key = self.state_keys
        values = {done_key: done, intent_key: intent}
        out = {k: str(v) for k, v in values.items() if v is not None}
        out.update(parked or {})
        await self._store.write_meta(out)

    async def _slowest_done(self) -> int:
        """The least position of every relay of this store (one per namespace), and of
        every table any of them set aside: the archive may only lose what all of them
        have published."""
        await self._store.ensure_open()
        positions = await self._store.engine.meta_with_prefix("relay.")
        lows = [self.status.done]
        for key, value in positions.items():
            kind = parse_relay_key(key)
            if kind is None or not value:
                continue
            try:
                if kind[0] == "done":
                    lows.append(int(value))
                elif kind[0] == "parked":
                    lows.append(Parked.from_json(value).after)
            except ValueError:
                # unreadable: keep everything rather than lose what it may protect
                return 0
        return min(lows)

    @property
    def state_keys(self) -> tuple[str, str]:
        """Where this relay keeps (done, intent) in storage: per namespace, so two apps
        with different namespaces on one store each publish the whole stream."""
        return relay_done_key(self._namespace), relay_intent_key(self._namespace)

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

        Only the holder of the namespace's lease (in storage) publishes: other relays of
        the same store and namespace, in this process or on other machines, wait on
        standby and take over within ``LEASE_SECONDS`` when the holder stops renewing it.
        A holder that loses the lease (paused too long) or is fenced by the log steps
        back to standby. A table whose topic cannot be made is set aside (see the module
        docstring), never a reason to stop.

        Raises:
            TopicMismatch: a table topic exists with other settings than the App's.
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
                    if not await self._take_lease():
                        self.status.standby = True
                        await asyncio.sleep(self._lease_seconds / 4)
                        continue
                    self.status.standby = False
                    await self._start()
                    if ready is not None:
                        ready.set()
                    await self._relay_forever(idle_poll)
                except (Fenced, _LeaseLost) as e:
                    # another relay took over: step back and wait for the lease again
                    self.status.last_error = f"another relay took over: {e}"
                    self.status.standby = True
                    await self._close_producer()
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
            with contextlib.suppress(Exception):
                # let a standby relay take over now rather than when the lease runs out
                await store.engine.release_lease(relay_lease(self._namespace), self._holder)

    async def _take_lease(self) -> bool:
        """Take or renew the namespace's relay lease."""
        held = await self._store.engine.try_lease(
            relay_lease(self._namespace), self._holder, self._lease_seconds
        )
        if held:
            self._renewed = time.monotonic()
        return held

    async def _start(self) -> None:
        await self._log.open()
        await self._load_parked()
        if self._producer is None:
            producer = self._log.producer(self.transactional_id)
            # starting fences any older relay and resolves its unfinished transaction
            await producer.start()
            self._producer = producer
        await self._resolve_in_doubt()
        await self._check_topics()
        await self._retry_parked()

    async def _check_topics(self) -> None:
        """Create the topics of streamed tables, and refuse (TopicMismatch) any existing
        one whose partitions or retention differ from this app's settings — at start-up,
        not at the first write. A table whose topic cannot be made is set aside."""
        await self._store.reload()
        for spec in self._store.known_specs:
            if spec.stream is None or spec.table_id in self._parked:
                continue
            if table_topic(self._namespace, spec.name) in self._topics:
                continue
            problem = await self._topic_problem(spec.name, spec.table_id)
            if problem is not None:
                # nothing is in doubt here (_resolve_in_doubt ran): done is settled
                done, _ = await self._state()
                entry = self._new_parked(spec.name, spec.table_id, done, problem)
                await self._store.write_meta({self._parked_key(entry): entry.to_json()})
                self._parked[entry.table_id] = entry
                self._announce(entry)
        self._refresh_status()

    async def _topic_problem(self, table: str, table_id: int) -> str | None:
        """Make the table's topic; None when it exists now, else why it cannot.

        Reads the catalog as cached (callers reload it). Raises what is worth a retry
        (an unavailable log) and TopicMismatch (the App's settings are wrong for every
        table, not this one's name).
        """
        topic = table_topic(self._namespace, table)
        older = [
            s.name
            for s in self._store.known_specs
            if s.stream is not None and s.table_id < table_id and s.name != table
        ]
        try:
            check_table_topic(self._namespace, table, older)
            await self._log.ensure_topic(topic, self._topic_config)
        except TopicMismatch:
            raise
        except ValidationError as e:  # a name the log refuses (local:// checks Kafka's rules)
            return str(e)
        except LogError as e:
            if e.retriable:
                raise
            return str(e)
        self._topics.add(topic)
        return None

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.close()

    @property
    def transactional_id(self) -> str:
        """One per storage database: two relays of one storage fence each other."""
        return relay_transactional_id(self._namespace, self._store.engine.storage_id)

    async def _relay_forever(self, idle_poll: float) -> None:
        assert self._wake is not None
        next_prune = 0.0
        next_retry = time.monotonic() + PARKED_RETRY_INTERVAL
        while True:
            self._wake.clear()
            renew = time.monotonic() - self._renewed >= self._lease_seconds / 4
            if renew and not await self._take_lease():
                raise _LeaseLost(f"the lease {relay_lease(self._namespace)!r} has another holder")
            if time.monotonic() >= next_prune:
                # the outbox doubles as the PITR archive: drop what is published and
                # past its table's recovery window
                pruned = await self._store.prune_archive(published_upto=await self._slowest_done())
                next_prune = time.monotonic() + (PRUNE_CATCHUP if pruned else PRUNE_INTERVAL)
            if self._parked and time.monotonic() >= next_retry:
                await self._retry_parked()
                next_retry = time.monotonic() + PARKED_RETRY_INTERVAL
            moved = await self.relay_once()
            if moved:
                continue  # more may be waiting: drain before sleeping
            with contextlib.suppress(TimeoutError):
                # other processes writing to the same file ring no bell: poll as well
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation
                # that arrives just as the bell rings, and the relay would never stop
                async with asyncio.timeout(idle_poll):
                    await self._wake.wait()

    def _record(self, row: ChangeRow) -> OutRecord:
        return OutRecord(
            table_topic(self._namespace, row.table),
            row.key,
            row.record,
            headers_of(row),
            row.created_ms,
        )

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
        # parked tables after this batch; stored with it (with `intent` when there is an
        # append, so that settling the batch later knows which rows were in it)
        parked = dict(self._parked)
        changed: set[int] = set()
        records: list[OutRecord] = []
        reloaded = False
        for r in rows:
            if not r.publish:
                continue
            entry = parked.get(r.table_id)
            topic = table_topic(self._namespace, r.table)
            if entry is None and topic not in self._topics:
                if not reloaded:  # a table new to this relay: read the catalog once
                    await self._store.reload()
                    reloaded = True
                problem = await self._topic_problem(r.table, r.table_id)
                if problem is not None:
                    entry = self._new_parked(r.table, r.table_id, done, problem)
                    parked[r.table_id] = entry
                    changed.add(r.table_id)
            if entry is not None:
                if r.seq > entry.counted:
                    parked[r.table_id] = replace(entry, kept=entry.kept + 1, counted=r.seq)
                    changed.add(r.table_id)
                continue
            records.append(OutRecord(topic, r.key, r.record, headers_of(r), r.created_ms))
        entries = {self._parked_key(parked[t]): parked[t].to_json() for t in changed}
        if records:
            await self._save(intent=last, parked=entries)
            assert self._producer is not None
            await self._producer.append(records)
            await self._save(done=last, intent=last)
        else:
            await self._save(done=last, intent=last, parked=entries)
        self._parked = parked
        if changed:
            for t in changed:
                self._announce(parked[t])
            self._refresh_status()
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
        # rows of tables set aside were not in the append (their entries were stored
        # with the intent)
        published = [r for r in rows if r.publish and r.table_id not in self._parked]
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

    # --- tables set aside ----------------------------------------------------------------
    def _parked_key(self, entry: Parked) -> str:
        return relay_parked_key(self._namespace, entry.table, entry.table_id)

    def _new_parked(self, table: str, table_id: int, after: int, error: str) -> Parked:
        return Parked(table, table_id, after, error, time.time(), kept=0, counted=after)

    def _announce(self, entry: Parked) -> None:
        """Log a table set aside, once per relay and parking."""
        mark = (entry.table_id, entry.since)
        if mark in self._announced or not self._live(entry):
            return
        self._announced.add(mark)
        _logger().error(
            "change capture set aside for a table: its rows are kept, other tables go on",
            table=entry.table,
            error=entry.error,
            since=datetime.fromtimestamp(entry.since, UTC).isoformat(),
            rows_kept=entry.kept,
        )

    def _live(self, entry: Parked) -> bool:
        """Whether the table is in the catalog as last read (a deleted one is dropped at
        the next retry)."""
        return any(
            s.name == entry.table and s.table_id == entry.table_id for s in self._store.known_specs
        )

    def _refresh_status(self) -> None:
        self.status.failing = {
            p.table: p.describe()
            for p in sorted(self._parked.values(), key=lambda p: p.table_id)
            if self._live(p)
        }

    async def _load_parked(self) -> None:
        """Read this namespace's set-aside tables from storage."""
        await self._store.reload()
        raw = await self._store.engine.meta_with_prefix(relay_parked_prefix(self._namespace))
        parked: dict[int, Parked] = {}
        for key, value in sorted(raw.items()):
            if not value:  # cleared: unparked or dropped
                continue
            try:
                entry = Parked.from_json(value)
            except ValueError:
                _logger().error("unreadable parked-table entry; ignored", key=key)
                continue
            parked[entry.table_id] = entry
        self._parked = parked
        for entry in parked.values():
            self._announce(entry)
        self._refresh_status()

    async def failing(self) -> list[dict[str, Any]]:
        """The tables set aside now, read from storage (any process may ask); entries
        of tables deleted since (dropped by the relay's next retry) are left out."""
        await self._store.ensure_open()
        raw = await self._store.engine.meta_with_prefix(relay_parked_prefix(self._namespace))
        entries = []
        for value in raw.values():
            if value:
                with contextlib.suppress(ValueError):
                    entries.append(Parked.from_json(value))
        if not entries:
            return []
        await self._store.reload()
        live = {s.name: s.table_id for s in self._store.known_specs}
        return [
            e.describe()
            for e in sorted(entries, key=lambda e: e.table)
            if live.get(e.table) == e.table_id
        ]

    async def _clear_parked(self, entry: Parked) -> None:
        await self._store.write_meta({self._parked_key(entry): ""})
        self._parked.pop(entry.table_id, None)
        self._refresh_status()

    async def _store_parked(self, entry: Parked) -> None:
        await self._store.write_meta({self._parked_key(entry): entry.to_json()})
        self._parked[entry.table_id] = entry
        self._refresh_status()

    async def _retry_parked(self) -> None:
        """Drop set-aside tables that are gone; catch up those whose topic can be made."""
        if not self._parked:
            return
        await self._store.reload()
        live = {s.name: s for s in self._store.known_specs}
        for entry in list(self._parked.values()):
            spec = live.get(entry.table)
            if spec is None or spec.table_id != entry.table_id:
                await self._clear_parked(entry)
                _logger().warning(
                    "set-aside table is gone: its kept rows are left to pruning",
                    table=entry.table,
                    rows_kept=entry.kept,
                )
                continue
            problem = await self._topic_problem(entry.table, entry.table_id)
            if problem is not None:
                if problem != entry.error:
                    await self._store_parked(replace(entry, error=problem))
                continue
            await self._catch_up(entry)

    async def _catch_up(self, entry: Parked) -> None:
        """Publish a parked table's kept rows (after ``entry.after``, up to ``done``) in
        order, exactly once, then unpark it. Its topic exists (``_topic_problem`` said
        so); the main loop is not running meanwhile (same task), so ``done`` stays.

        Each append is guarded like a main batch: its last row is stored as the entry's
        ``intent`` first, and ``after`` moves past it once it is in, so a relay killed in
        between settles it next time (:meth:`_settle_parked`).
        """
        assert self._producer is not None
        done, _ = await self._state()
        entry = await self._settle_parked(entry)
        limit = self._max_batch + MAX_ACTIONS
        pending: list[ChangeRow] = []  # the table's rows read, not yet published
        scanned = entry.after  # every row of the table up to here is published or pending
        published = 0
        while True:
            while len(pending) < limit and scanned < done:
                rows = await self._store.read_changes(scanned, _SCAN)
                if not rows:
                    scanned = done
                    break
                for r in rows:
                    if r.seq > done:
                        scanned = done
                        break
                    scanned = r.seq
                    if r.table_id == entry.table_id and r.publish:
                        pending.append(r)
            if not pending:
                break
            batch = _whole_transactions(pending[:limit], self._max_batch)
            pending = pending[len(batch) :]
            entry = replace(entry, intent=batch[-1].seq, intent_rows=len(batch))
            await self._store_parked(entry)
            await self._producer.append([self._record(r) for r in batch])
            entry = replace(
                entry,
                after=pending[0].seq - 1 if pending else scanned,
                kept=max(0, entry.kept - len(batch)),
                intent=0,
                intent_rows=0,
            )
            await self._store_parked(entry)
            published += len(batch)
            self.status.published += len(batch)
        await self._clear_parked(entry)
        _logger().warning(
            "set-aside table caught up: its change capture goes on",
            table=entry.table,
            published=published,
        )

    async def _settle_parked(self, entry: Parked) -> Parked:
        """Settle a catch-up append left in doubt, as :meth:`_resolve_in_doubt` does."""
        if entry.intent <= entry.after:
            return entry
        rows = await self._store.read_changes(entry.intent - 1, 1)
        row = rows[0] if rows and rows[0].seq == entry.intent else None
        if row is not None and await self._in_log(row):
            entry = replace(
                entry,
                after=entry.intent,
                kept=max(0, entry.kept - entry.intent_rows),
                intent=0,
                intent_rows=0,
            )
        else:
            entry = replace(entry, intent=0, intent_rows=0)
        await self._store_parked(entry)
        return entry


def _seq_header(headers: tuple[tuple[str, bytes], ...]) -> list[int]:
    return [int(v) for k, v in headers if k == SEQUENCE_HEADER]


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
