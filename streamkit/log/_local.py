"""The embedded change log (``local://path``): Kafka's model in one SQLite file.

Topics with partitions, dense offsets from 0, murmur2 partitioning, read-committed
readers, consumer-group offsets, timestamp lookup, retention that deletes, and
transactional producers fenced by an epoch per transactional id, all in
``<path>/log.db`` (WAL), a file of its own, never the table store's.

Threads, not the event loop, touch SQLite. Each :class:`LocalLog` has a writer
thread (appends, topic changes, commits, pruning) and a reader thread (fetches,
offset queries), each with its own connection, so WAL lets reads run beside the
writer. The writer drains every queued append into one transaction, one
savepoint per append (group commit), so one failing append never takes another
with it and concurrent producers share a commit.

An append is one SQLite transaction: readers, which run each fetch in one read
transaction, see all of its records or none, in every partition at once. Readers
in this process are woken by the writer as soon as it commits. Appends made by
other processes are noticed within ``poll_interval`` (2 ms by default): while a
reader waits, one watcher thread per file and process reads SQLite's
``PRAGMA data_version`` (a counter that changes when another connection commits;
reading it costs microseconds and reads no table) and wakes the readers of the
topics whose offsets moved. On Linux it only looks for a moment after inotify says
the log's files were written, so a waiting reader costs next to no CPU; elsewhere
it looks every ``poll_interval`` (a few % of a core on a VM with costly timer
wake-ups: raise ``poll_interval`` there if that matters). Nothing runs while no
reader waits.

URL: ``local://path[?synchronous=NORMAL|FULL&poll_interval=0.002&prune_interval=60]``.
``synchronous=NORMAL`` survives a killed process; ``FULL`` also survives power loss
(one fsync per commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

from streamkit.exceptions import (
    ConfigurationError,
    LogError,
    NotYetAvailable,
    ValidationError,
)
from streamkit.log._base import (
    Fenced,
    LogRecord,
    OutRecord,
    RebalanceListener,
    StartPosition,
    TopicConfig,
    TopicMismatch,
    UrlOptions,
    check_consumer_options,
    check_max_records,
    check_offset,
    check_reader_options,
    check_records,
    check_topic_name,
    check_transactional_id,
    now_ms,
    partition_for_key,
)
from streamkit.log._local_db import (
    DEFAULT_POLL_INTERVAL,
    Hub,
    Worker,
    append_records,
    decode_headers,
    hub_for,
    partition_bounds,
    prune_expired,
    require_topic,
    setup_schema,
    sqlite_errors,
    topic_row,
)

if TYPE_CHECKING:
    from streamkit.log._local_consumer import LocalConsumer

__all__ = ("LocalLog", "LocalProducer", "LocalReader")

T = TypeVar("T")

_OPTIONS = ("synchronous", "poll_interval", "prune_interval")
# a waiting reader also looks by itself this often: a safety net should the watcher
# thread be unable to read the file for a while (it logs a warning then)
_RECHECK_INTERVAL = 1.0


# --- the log ------------------------------------------------------------------------------
class LocalLog:
    """The embedded change log in ``<path>/log.db``. See the module docstring.

    Args:
        url: ``local://path[?synchronous=NORMAL|FULL&poll_interval=0.002&prune_interval=60]``;
            ``poll_interval`` is how often, while a reader waits, the log checks for
            appends made by other processes (a read of ``PRAGMA data_version``),
            ``prune_interval`` how often retention runs by itself.
    """

    def __init__(self, url: str) -> None:
        if not url.startswith("local://"):
            raise ConfigurationError(f"not a local:// change-log URL: {url!r}")
        rest = url[len("local://") :]
        path, _, query = rest.partition("?")
        if not path:
            raise ConfigurationError(f"change-log URL {url!r} names no directory")
        opts = UrlOptions(url, query, _OPTIONS)
        synchronous = opts.get_str("synchronous", "NORMAL").upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigurationError(f"synchronous={synchronous!r} must be NORMAL or FULL")
        self.poll_interval = opts.get_float("poll_interval", DEFAULT_POLL_INTERVAL)
        self.prune_interval = opts.get_float("prune_interval", 60.0)
        if not 0.001 <= self.poll_interval <= 60:
            raise ConfigurationError("poll_interval must be 0.001-60 seconds")
        if self.prune_interval < 0.01:
            raise ConfigurationError("prune_interval must be at least 0.01 seconds")
        self.url = url
        self.path = Path(path)
        self.db_path = self.path / "log.db"
        self._synchronous = synchronous
        self._writer: Worker | None = None
        self._reader: Worker | None = None
        self._hub: Hub | None = None
        self._open_lock = asyncio.Lock()
        # strong references: a reader dropped without close() still holds connections
        # (Kafka) or a wake-up registration (local) that close() must release
        self._children: set[LocalProducer | LocalReader | LocalConsumer] = set()

    def __repr__(self) -> str:
        return f"LocalLog({self.url!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- lifecycle ---
    async def open(self) -> None:
        """Create the directory and database if needed and start the threads. Idempotent."""
        async with self._open_lock:
            if self._writer is not None:
                return
            try:
                await asyncio.to_thread(self.path.mkdir, parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigurationError(f"cannot create the log directory {self.path}: {e}") from e
            self._hub = hub_for(self.db_path)
            writer = Worker(
                f"streamkit-log-writer:{self.path}",
                self.db_path,
                synchronous=self._synchronous,
                setup=setup_schema,
                periodic=self._prune_now,
                interval=self.prune_interval,
            )
            await writer.started()
            reader = Worker(
                f"streamkit-log-reader:{self.path}", self.db_path, synchronous=self._synchronous
            )
            try:
                await reader.started()
            except BaseException:
                await writer.stop()
                raise
            self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Close this log's producers and readers, then stop its threads."""
        for child in list(self._children):
            await child.close()
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None:
            await reader.stop()
        if writer is not None:
            await writer.stop()

    def _workers(self) -> tuple[Worker, Worker]:
        if self._writer is None or self._reader is None:
            raise LogError(f"the local log {self.path} is not open: await log.open() first")
        return self._writer, self._reader

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        mode: str = "write",
        on_commit: Callable[[T], None] | None = None,
    ) -> T:
        return await self._workers()[0].submit(fn, mode, on_commit)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._workers()[1].submit(fn, "read")

    def _notify(self, topics: set[str]) -> None:
        if self._hub is not None and topics:
            self._hub.notify(topics)

    # --- topics ---
    async def ensure_topic(self, name: str, config: TopicConfig) -> None:
        """Create the topic if missing; raise TopicMismatch if it differs."""
        check_topic_name(name)
        if config.cleanup_policy != "delete":
            raise NotYetAvailable(
                f"local:// does not compact topics (cleanup_policy={config.cleanup_policy!r}); "
                "use 'delete'"
            )

        def run(conn: sqlite3.Connection) -> None:
            row = topic_row(conn, name)
            if row is not None:
                actual = TopicConfig(row[1], row[2], row[3])
                if actual != config:
                    raise TopicMismatch(name, wanted=config, actual=actual)
                return
            cur = conn.execute(
                "INSERT INTO log_topics (name, partitions, retention_ms, cleanup_policy, "
                "created_ms) VALUES (?,?,?,?,?)",
                (name, config.partitions, config.retention_ms, config.cleanup_policy, now_ms()),
            )
            conn.executemany(
                "INSERT INTO log_partitions (tid, part, start_offset, next_offset, max_ts) "
                "VALUES (?,?,0,0,-1)",
                [(cur.lastrowid, p) for p in range(config.partitions)],
            )

        await self._write(run)

    async def describe_topic(self, name: str) -> TopicConfig | None:
        """The topic's settings, or None if it does not exist."""
        row = await self._read(lambda conn: topic_row(conn, name))
        return None if row is None else TopicConfig(row[1], row[2], row[3])

    async def delete_topic(self, name: str) -> None:
        """Delete the topic, its records and its groups' offsets; missing is fine."""

        def run(conn: sqlite3.Connection) -> set[str]:
            row = topic_row(conn, name)
            if row is None:
                return set()
            tid = row[0]
            conn.execute("DELETE FROM log_records WHERE tid=?", (tid,))
            conn.execute("DELETE FROM log_partitions WHERE tid=?", (tid,))
            conn.execute("DELETE FROM log_group_offsets WHERE topic=?", (name,))
            conn.execute("DELETE FROM log_members WHERE topic=?", (name,))
            conn.execute("DELETE FROM log_owners WHERE topic=?", (name,))
            conn.execute("DELETE FROM log_topics WHERE id=?", (tid,))
            return {name}

        await self._write(run, on_commit=self._notify)

    def partition_for(self, topic_partitions: int, key: bytes) -> int:
        """Kafka's default (murmur2) partition for ``key``."""
        return partition_for_key(topic_partitions, key)

    # --- retention ---
    async def prune(self, now_ms: int | None = None) -> int:
        """Delete records past their topic's retention now; returns how many went.

        Also runs by itself every ``prune_interval`` seconds. ``now_ms`` lets tests
        and tools ask "what if it were later".
        """
        at = now_ms
        return await self._write(lambda conn: self._prune_sync(conn, at), mode="raw")

    def _prune_sync(self, conn: sqlite3.Connection, at: int | None) -> int:
        return prune_expired(conn, now_ms() if at is None else at)

    def _prune_now(self, conn: sqlite3.Connection) -> None:
        with sqlite_errors(self.path):
            prune_expired(conn, now_ms())

    # --- producers and readers ---
    def producer(self, transactional_id: str) -> LocalProducer:
        """A transactional producer; ``await start()`` before appending."""
        check_transactional_id(transactional_id)
        p = LocalProducer(self, transactional_id)
        self._children.add(p)
        return p

    def reader(
        self,
        topic: str,
        *,
        group: str | None = None,
        partitions: Sequence[int] | None = None,
        start: StartPosition = "earliest",
    ) -> LocalReader:
        """A read-committed reader of ``topic``; see :class:`~streamkit.log.LogReader`."""
        check_reader_options(start, group)
        r = LocalReader(self, topic, group=group, partitions=partitions, start=start)
        self._children.add(r)
        return r

    def consumer(
        self,
        topic: str,
        *,
        group: str,
        listener: RebalanceListener,
        start: StartPosition = "earliest",
        session_timeout: float = 10.0,
    ) -> LocalConsumer:
        """A consumer-group member; see :class:`~streamkit.log.LogConsumer`."""
        from streamkit.log._local_consumer import LocalConsumer

        check_consumer_options(start, group, session_timeout)
        c = LocalConsumer(
            self,
            topic,
            group=group,
            listener=listener,
            start=start,
            session_timeout=session_timeout,
        )
        self._children.add(c)
        return c


class LocalProducer:
    """A transactional producer on the local log (see :class:`~streamkit.log.LogProducer`).

    ``start()`` raises the transactional id's epoch in the database; every append
    checks, inside its transaction, that the epoch is still this producer's, so a
    producer started later (in any process) fences this one.
    """

    def __init__(self, log: LocalLog, transactional_id: str) -> None:
        self._log = log
        self.transactional_id = transactional_id
        self._epoch: int | None = None
        self._fenced = False
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalProducer({self.transactional_id!r}, epoch={self._epoch})"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Take the transactional id, fencing every producer that had it. Idempotent."""
        if self._closed:
            raise LogError("the producer is closed")
        if self._epoch is not None:
            return
        txn_id = self.transactional_id

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO log_producers (txn_id, epoch, started_ms) VALUES (?, 0, ?) "
                "ON CONFLICT (txn_id) DO UPDATE SET epoch = epoch + 1, "
                "started_ms = excluded.started_ms RETURNING epoch",
                (txn_id, now_ms()),
            ).fetchone()
            return int(row[0])

        self._epoch = await self._log._write(run)

    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append all records in one transaction (see :class:`~streamkit.log.LogProducer`).

        If the awaiting task is cancelled after the append was queued, it may still
        commit (as a request already sent to Kafka may).
        """
        recs = check_records(records)
        if self._closed:
            raise LogError("the producer is closed")
        if self._fenced:
            raise Fenced(
                f"producer {self.transactional_id!r} was fenced by a newer one",
                transactional_id=self.transactional_id,
            )
        if self._epoch is None:
            raise LogError("the producer is not started: await producer.start() first")
        if not recs:
            return
        txn_id, epoch = self.transactional_id, self._epoch

        def run(conn: sqlite3.Connection) -> set[str]:
            return append_records(conn, txn_id, epoch, recs)

        try:
            await self._log._write(run, mode="append", on_commit=self._log._notify)
        except Fenced:
            self._fenced = True
            raise

    async def close(self) -> None:
        """Release the producer (its epoch stays taken until a newer start)."""
        self._closed = True
        self._log._children.discard(self)


@dataclass(slots=True)
class _FetchResult:
    records: list[LogRecord] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)


class LocalReader:
    """A read-committed reader on the local log (see :class:`~streamkit.log.LogReader`)."""

    def __init__(
        self,
        log: LocalLog,
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
        self._partitions: list[int] | None = None
        self._positions: dict[int, int] = {}
        self._rotate = 0  # the partition a fetch starts with, so none is starved
        self._lock = asyncio.Lock()
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalReader({self.topic!r}, group={self.group!r})"

    async def __aenter__(self) -> Self:
        await self._ensure()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure(self) -> list[int]:
        if self._closed:
            raise LogError("the reader is closed")
        if self._partitions is not None:
            return self._partitions
        topic, group, wanted, start = self.topic, self.group, self._wanted, self._start

        def run(conn: sqlite3.Connection) -> tuple[list[int], dict[int, int]]:
            tid, n = require_topic(conn, topic)
            parts = list(range(n)) if wanted is None else wanted
            bad = [p for p in parts if not 0 <= p < n]
            if bad:
                raise ValidationError(f"topic {topic!r} has no partitions {bad} (it has {n})")
            committed: dict[int, int] = {}
            if group is not None:
                committed = dict(
                    conn.execute(
                        "SELECT part, off FROM log_group_offsets WHERE grp=? AND topic=?",
                        (group, topic),
                    ).fetchall()
                )
            bounds = partition_bounds(conn, tid)
            positions = {
                p: committed.get(p, bounds[p][0] if start == "earliest" else bounds[p][1])
                for p in parts
            }
            return parts, positions

        parts, positions = await self._log._read(run)
        if self._partitions is None:
            self._partitions, self._positions = parts, positions
        return self._partitions

    def _check_partition(self, partitions: list[int], partition: int) -> None:
        if partition not in partitions:
            raise ValidationError(
                f"partition {partition} is not read by this reader of {self.topic!r} "
                f"(it reads {partitions})"
            )

    async def partitions(self) -> list[int]:
        """The partitions this reader reads, ascending."""
        return list(await self._ensure())

    async def position(self, partition: int) -> int:
        """The offset of the next record :meth:`fetch` returns from ``partition``."""
        self._check_partition(await self._ensure(), partition)
        return self._positions[partition]

    async def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (reset to ``start`` if out of range)."""
        check_offset(offset)
        self._check_partition(await self._ensure(), partition)
        async with self._lock:
            self._positions[partition] = offset

    async def _seek_bound(self, partition: int | None, index: int) -> None:
        parts = await self._ensure()
        if partition is not None:
            self._check_partition(parts, partition)
        bounds = await self.partition_bounds()
        async with self._lock:
            for p in parts if partition is None else [partition]:
                self._positions[p] = bounds[p][index]

    async def seek_to_beginning(self, partition: int | None = None) -> None:
        """Move to the oldest kept record (of one partition, or all)."""
        await self._seek_bound(partition, 0)

    async def seek_to_end(self, partition: int | None = None) -> None:
        """Move past the newest record (of one partition, or all)."""
        await self._seek_bound(partition, 1)

    async def partition_bounds(self) -> dict[int, tuple[int, int]]:
        topic = self.topic

        def run(conn: sqlite3.Connection) -> dict[int, tuple[int, int]]:
            tid, _ = require_topic(conn, topic)
            return partition_bounds(conn, tid)

        return await self._log._read(run)

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of each partition read."""
        parts = await self._ensure()
        bounds = await self.partition_bounds()
        return {p: bounds[p][0] for p in parts}

    async def end_offsets(self, *, settled: bool = False) -> dict[int, int]:
        """The next offset to be written in each partition read (always settled here)."""
        parts = await self._ensure()
        bounds = await self.partition_bounds()
        return {p: bounds[p][1] for p in parts}

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """The first kept offset with a timestamp >= ``timestamp_ms``; None past the end."""
        self._check_partition(await self._ensure(), partition)
        topic = self.topic

        def run(conn: sqlite3.Connection) -> int | None:
            tid, _ = require_topic(conn, topic)
            row = conn.execute(
                "SELECT off FROM log_records WHERE tid=? AND part=? AND ts_max >= ? "
                "ORDER BY ts_max, off LIMIT 1",
                (tid, partition, timestamp_ms),
            ).fetchone()
            return None if row is None else int(row[0])

        return await self._log._read(run)

    # `timeout` is a long-poll wait for the first record (Kafka's getmany(timeout_ms)),
    # not a deadline for the call, so asyncio.timeout around it would mean something else
    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109
    ) -> list[LogRecord]:
        """The next committed records, waiting up to ``timeout`` s for the first one."""
        check_max_records(max_records)
        return await self.fetch_from(await self._ensure(), max_records=max_records, timeout=timeout)

    async def fetch_from(
        self,
        parts: list[int],
        *,
        max_records: int,
        timeout: float,  # noqa: ASYNC109 - a long-poll wait
    ) -> list[LogRecord]:
        """:meth:`fetch` restricted to ``parts`` (a consumer's owned partitions)."""
        await self._ensure()
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            hub = self._log._hub
            if hub is None:
                raise LogError("the local log is not open")
            if self._event is not None and self._loop is not None:
                hub.unregister(self.topic, self._loop, self._event)
            self._event, self._loop = asyncio.Event(), loop
            hub.register(self.topic, loop, self._event, interval=self._log.poll_interval)
        event = self._event
        deadline = loop.time() + max(0.0, timeout)
        while True:
            # cleared before the query: an append committing after the query's snapshot
            # sets it again, so the wait below cannot miss it
            event.clear()
            records = await self._fetch_once(parts, max_records)
            remaining = deadline - loop.time()
            if records or remaining <= 0:
                return records
            # the hub wakes us: at once for appends of this process, within poll_interval
            # for other processes' (its watcher thread); look by ourselves now and then
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _RECHECK_INTERVAL)):
                    await event.wait()

    async def _fetch_once(self, parts: list[int], max_records: int) -> list[LogRecord]:
        async with self._lock:
            if self._closed:
                raise LogError("the reader is closed")
            positions = dict(self._positions)
            order = parts[self._rotate % len(parts) :] + parts[: self._rotate % len(parts)]
            self._rotate += 1
            topic, reset_to_start = self.topic, self._start == "earliest"

            def run(conn: sqlite3.Connection) -> _FetchResult:
                tid, _ = require_topic(conn, topic)
                bounds = partition_bounds(conn, tid)
                out = _FetchResult()
                left = max_records
                for p in order:
                    start, end = bounds[p]
                    pos = positions[p]
                    if pos < start or pos > end:
                        # deleted by retention, or past the end: Kafka's auto.offset.reset
                        pos = start if reset_to_start else end
                        out.positions[p] = pos
                    if left <= 0 or pos >= end:
                        continue
                    rows = conn.execute(
                        "SELECT off, ts, key, value, headers FROM log_records "
                        "WHERE tid=? AND part=? AND off >= ? ORDER BY off LIMIT ?",
                        (tid, p, pos, left),
                    ).fetchall()
                    for off, ts, key, value, headers in rows:
                        out.records.append(
                            LogRecord(topic, p, off, key, value, decode_headers(headers), ts)
                        )
                    if rows:
                        out.positions[p] = rows[-1][0] + 1
                        left -= len(rows)
                return out

            result = await self._log._read(run)
            self._positions.update(result.positions)
            return result.records

    def _need_group(self) -> str:
        if self.group is None:
            raise ConfigurationError(
                f"this reader of {self.topic!r} has no group: pass group= to log.reader()"
            )
        return self.group

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store the group's next offset to read for each given partition."""
        group = self._need_group()
        parts = await self._ensure()
        items = dict(offsets)
        for p, off in items.items():
            self._check_partition(parts, p)
            check_offset(off, f"offset for partition {p}")
        topic = self.topic

        def run(conn: sqlite3.Connection) -> None:
            require_topic(conn, topic)
            at = now_ms()
            conn.executemany(
                "INSERT INTO log_group_offsets (grp, topic, part, off, committed_ms) "
                "VALUES (?,?,?,?,?) ON CONFLICT (grp, topic, part) DO UPDATE SET "
                "off = excluded.off, committed_ms = excluded.committed_ms",
                [(group, topic, p, off, at) for p, off in items.items()],
            )

        await self._log._write(run)

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets for the partitions read."""
        group = self._need_group()
        parts = await self._ensure()
        topic = self.topic

        def run(conn: sqlite3.Connection) -> dict[int, int]:
            return dict(
                conn.execute(
                    "SELECT part, off FROM log_group_offsets WHERE grp=? AND topic=?",
                    (group, topic),
                ).fetchall()
            )

        got = await self._log._read(run)
        return {p: got[p] for p in parts if p in got}

    async def close(self) -> None:
        """Release the reader."""
        self._closed = True
        self._log._children.discard(self)
        hub = self._log._hub
        if self._event is not None and self._loop is not None and hub is not None:
            hub.unregister(self.topic, self._loop, self._event)
        self._event = None
