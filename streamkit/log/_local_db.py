"""The local log's storage: its SQLite schema, its worker threads and its SQL.

Threads, not the event loop, touch SQLite. A :class:`Worker` owns one connection
and runs queued jobs on it, each in a transaction: appends queued together share
one transaction, one savepoint each (group commit), so one failing append never
takes another with it. :class:`Hub` wakes this process's readers when an append
commits: at once for an append made in this process, and within ``poll_interval``
(a few ms) for one made by another process, which its watcher thread notices by
reading ``PRAGMA data_version`` (a counter SQLite changes when another connection
commits; reading it touches no table) — on Linux only after inotify says the
files were written. Everything here runs on a worker thread unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Generic, TypeVar

from streamkit._fswatch import CommitPacer
from streamkit.exceptions import ConfigurationError, LogError, StreamkitError, ValidationError
from streamkit.log._base import (
    MAX_FUTURE_TIMESTAMP_MS,
    Fenced,
    LogUnavailable,
    OutRecord,
    TopicNotFound,
    now_ms,
    partition_for_key,
)

__all__ = (
    "DEFAULT_POLL_INTERVAL",
    "SCHEMA_VERSION",
    "Hub",
    "Worker",
    "append_records",
    "decode_headers",
    "encode_headers",
    "hub_for",
    "partition_bounds",
    "prune_expired",
    "require_topic",
    "setup_schema",
    "sqlite_errors",
    "topic_row",
)

T = TypeVar("T")

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_topics (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    partitions     INTEGER NOT NULL,
    retention_ms   INTEGER NOT NULL,
    cleanup_policy TEXT NOT NULL,
    created_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_partitions (
    tid          INTEGER NOT NULL,
    part         INTEGER NOT NULL,
    start_offset INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    max_ts       INTEGER NOT NULL,
    PRIMARY KEY (tid, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_records (
    seq     INTEGER PRIMARY KEY,
    tid     INTEGER NOT NULL,
    part    INTEGER NOT NULL,
    off     INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    ts_max  INTEGER NOT NULL,
    key     BLOB,
    value   BLOB NOT NULL,
    headers BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS log_records_by_offset ON log_records (tid, part, off);
CREATE INDEX IF NOT EXISTS log_records_by_time ON log_records (tid, part, ts_max, off);
CREATE TABLE IF NOT EXISTS log_group_offsets (
    grp          TEXT NOT NULL,
    topic        TEXT NOT NULL,
    part         INTEGER NOT NULL,
    off          INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_members (
    grp          TEXT NOT NULL,
    topic        TEXT NOT NULL,
    member       TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_owners (
    grp    TEXT NOT NULL,
    topic  TEXT NOT NULL,
    part   INTEGER NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_producers (
    txn_id     TEXT PRIMARY KEY,
    epoch      INTEGER NOT NULL,
    started_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""
# `ts_max` is the largest timestamp in the partition up to and including the record.
# It never decreases along the offsets, so "first offset with ts >= t" (Kafka's
# offsetsForTimes) and "everything older than the retention" (Kafka deletes whole
# segments whose newest record expired, i.e. a prefix) are both one index seek.

_MAX_GROUP = 256  # appends per group commit
_PRUNE_CHUNK = 20_000  # rows deleted per prune transaction, so appends never wait long
_BUSY_TIMEOUT_MS = 10_000  # another process holding the write lock longer is "unavailable"


# --- translating SQLite errors, once ------------------------------------------------------
@contextlib.contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """Turn sqlite3 errors into streamkit's LogError tree, keeping the cause."""
    try:
        yield
    except sqlite3.OperationalError as e:
        text = str(e).lower()
        if "locked" in text or "busy" in text:
            raise LogUnavailable(
                f"the local log {path} is locked by another writer for over "
                f"{_BUSY_TIMEOUT_MS // 1000} s: {e}"
            ) from e
        raise LogError(f"the local log {path} failed: {e}") from e
    except sqlite3.Error as e:
        raise LogError(f"the local log {path} failed: {e}") from e


# --- waking readers ------------------------------------------------------------------------
_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]
_logger = logging.getLogger("streamkit.log.local")
DEFAULT_POLL_INTERVAL = 0.002  # the watcher's look for other processes' appends, seconds
_HOT_WINDOW = 0.1  # after the files were written: poll this long (a commit becomes visible)
_IDLE_CHECK = 0.5  # with file events: look anyway this often (and notice readers leaving)


class Hub:
    """Per database file: wakes this process's readers of a topic when an append commits.

    An append made in this process calls :meth:`notify` right after its commit.
    Appends made by other processes are noticed by a watcher thread, which runs while
    any reader waits: it reads ``PRAGMA data_version`` (a counter SQLite changes when
    another connection commits; no table is read, no lock taken) and, when it moved,
    the offsets of the watched topics, and wakes the readers of those that moved.

    How often it looks: on Linux the thread sleeps on inotify events of the log's
    directory (any write to ``log.db`` or its WAL), then looks every ``interval`` (the
    smallest ``poll_interval`` of the waiting readers) for ``_HOT_WINDOW`` — a
    commit's WAL frames are written just before it becomes visible — and every
    ``_IDLE_CHECK`` otherwise: no CPU while nothing is written. Elsewhere (or when
    inotify is unavailable) it looks every ``interval``.
    """

    def __init__(self, db_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[_Waiter, float]] = {}
        self._db_path = db_path
        self._watcher: threading.Thread | None = None

    def register(
        self,
        topic: str,
        loop: asyncio.AbstractEventLoop,
        event: asyncio.Event,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        with self._lock:
            self._waiters.setdefault(topic, {})[(loop, event)] = interval
            if self._db_path is not None and self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch,
                    name=f"streamkit-log-watcher:{self._db_path.parent}",
                    daemon=True,
                )
                self._watcher.start()

    def unregister(self, topic: str, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(topic)
            if waiters is not None:
                waiters.pop((loop, event), None)
                if not waiters:
                    del self._waiters[topic]

    def notify(self, topics: set[str]) -> None:
        with self._lock:
            targets = [w for t in topics for w in self._waiters.get(t, ())]
        for loop, event in targets:
            # a closed loop raises RuntimeError: its reader is gone
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # --- the watcher thread (other processes' appends) ---
    def _watching(self) -> tuple[set[str], float] | None:
        """The watched topics and the poll interval; None (and the thread ends) if none."""
        with self._lock:
            if not self._waiters:
                self._watcher = None
                return None
            interval = min(i for w in self._waiters.values() for i in w.values())
            return set(self._waiters), interval

    def _watch(self) -> None:
        assert self._db_path is not None
        failures = 0
        while True:
            try:
                self._watch_with_connection(self._db_path)
                return  # no reader left
            except Exception as e:
                # the file is busy, gone or broken: readers still look by themselves now
                # and then (LocalReader's recheck); try again, and say so once
                failures += 1
                if failures == 1:
                    _logger.warning("the local log watcher of %s failed: %s", self._db_path, e)
                time.sleep(min(1.0, 0.01 * 2**failures))
                if self._watching() is None:
                    return

    def _watch_with_connection(self, db_path: Path) -> None:
        # mode=rw: a log deleted meanwhile is an error here, never created again
        conn = sqlite3.connect(
            f"{db_path.as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
        )
        pacer: CommitPacer | None = None
        try:
            pacer = CommitPacer(db_path.parent, hot=_HOT_WINDOW, idle=_IDLE_CHECK)
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            watching = self._watching()
            if watching is None:
                return
            topics, interval = watching
            version = _data_version(conn)
            offsets = _topic_offsets(conn, topics)
            # a reader may have looked just before this thread took its baseline
            self.notify(topics)
            pacer.heat()
            while True:
                pacer.wait(interval)
                watching = self._watching()
                if watching is None:
                    return
                topics, interval = watching
                now = _data_version(conn)
                if now == version:
                    continue
                version = now
                latest = _topic_offsets(conn, topics)
                moved = {t for t in topics if latest.get(t) != offsets.get(t)}
                offsets = latest
                if moved:
                    self.notify(moved)
        finally:
            conn.close()
            if pacer is not None:
                pacer.close()


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _topic_offsets(conn: sqlite3.Connection, topics: set[str]) -> dict[str, tuple[int, int]]:
    """Per topic: its id and the sum of its partitions' next offsets (grows on append)."""
    names = sorted(topics)
    marks = ",".join("?" * len(names))
    rows = conn.execute(
        "SELECT t.name, t.id, COALESCE(SUM(p.next_offset), 0) FROM log_topics t "
        f"LEFT JOIN log_partitions p ON p.tid = t.id WHERE t.name IN ({marks}) GROUP BY t.id",
        names,
    ).fetchall()
    return {name: (tid, total) for name, tid, total in rows}


_HUBS: dict[str, Hub] = {}
_HUBS_LOCK = threading.Lock()


def hub_for(db_path: Path) -> Hub:
    # shared by every LocalLog on the same file in this process, so a producer on one
    # LocalLog object wakes a reader on another, and one watcher thread serves them all
    key = str(db_path.resolve())
    with _HUBS_LOCK:
        hub = _HUBS.get(key)
        if hub is None:
            hub = _HUBS[key] = Hub(Path(key))
        return hub


# --- the worker threads -------------------------------------------------------------------
@dataclass(slots=True)
class _Job(Generic[T]):
    """Work for a worker thread. ``fn`` runs on the thread with the connection.

    ``mode``: "write" = own BEGIN IMMEDIATE transaction; "append" = may share a group
    transaction (inside a savepoint); "read" = one read transaction (a snapshot);
    "raw" = fn manages transactions itself.
    """

    fn: Callable[[sqlite3.Connection], T]
    mode: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    on_commit: Callable[[T], None] | None = None


@dataclass(slots=True)
class _Outcome:
    job: _Job[Any]
    value: Any = None
    error: BaseException | None = None


def _deliver(outcomes: list[_Outcome]) -> None:
    for o in outcomes:
        fut = o.job.future
        if fut.cancelled():
            continue
        if o.error is None:
            fut.set_result(o.value)
        else:
            fut.set_exception(o.error)


class Worker(threading.Thread):
    """A thread owning one SQLite connection, running queued jobs in transactions."""

    def __init__(
        self,
        name: str,
        db_path: Path,
        *,
        synchronous: str,
        setup: Callable[[sqlite3.Connection], None] | None = None,
        periodic: Callable[[sqlite3.Connection], None] | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._db_path = db_path
        self._synchronous = synchronous
        self._setup = setup
        self._periodic = periodic
        self._interval = interval
        self._next_periodic = time.monotonic() + (interval or 0.0)
        self._queue: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False

    # event-loop side
    async def started(self) -> None:
        self.start()
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            raise self._error

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        mode: str,
        on_commit: Callable[[T], None] | None = None,
    ) -> asyncio.Future[T]:
        if self._closed:
            raise LogError(f"the local log {self._db_path.parent} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, mode, loop, fut, on_commit))
        return fut

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self.join)

    # thread side
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._db_path, isolation_level=None, check_same_thread=False, timeout=0
        )
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        if self._setup is not None:
            self._setup(conn)
        return conn

    def run(self) -> None:
        try:
            with sqlite_errors(self._db_path.parent):
                conn = self._connect()
        except BaseException as e:  # reported to started()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        q = self._queue
        pending: _Job[Any] | None = None
        while True:
            if pending is not None:
                job: _Job[Any] | None = pending
                pending = None
            else:
                try:
                    job = q.get(timeout=self._interval)
                except Empty:
                    self._run_periodic(conn)
                    continue
            if job is None:
                return
            batch = [job]
            stop = False
            if job.mode == "append":
                while len(batch) < _MAX_GROUP:
                    try:
                        nxt = q.get_nowait()
                    except Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if nxt.mode != "append":
                        pending = nxt
                        break
                    batch.append(nxt)
                outcomes = self._run_group(conn, batch)
            else:
                outcomes = [self._run_one(conn, job)]
            self._post(outcomes)
            if stop:
                return
            # due work also runs between jobs: a log that is never idle still prunes
            self._run_periodic(conn)

    def _run_periodic(self, conn: sqlite3.Connection) -> None:
        if self._periodic is None or self._interval is None:
            return
        now = time.monotonic()
        if now < self._next_periodic:
            return
        self._next_periodic = now + self._interval
        # a failing background prune must not kill the thread; the next one retries
        with contextlib.suppress(Exception):
            self._periodic(conn)

    def _run_one(self, conn: sqlite3.Connection, job: _Job[Any]) -> _Outcome:
        try:
            with sqlite_errors(self._db_path.parent):
                if job.mode == "raw":
                    return _Outcome(job, job.fn(conn))
                conn.execute("BEGIN IMMEDIATE" if job.mode == "write" else "BEGIN")
                try:
                    value = job.fn(conn)
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                return _Outcome(job, value)
        except BaseException as e:
            return _Outcome(job, error=e)

    def _run_group(self, conn: sqlite3.Connection, batch: list[_Job[Any]]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            with sqlite_errors(self._db_path.parent):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for job in batch:
                        conn.execute("SAVEPOINT job")
                        try:
                            outcomes.append(_Outcome(job, job.fn(conn)))
                        except StreamkitError as e:
                            # this append alone is undone; the others in the group stay
                            conn.execute("ROLLBACK TO job")
                            outcomes.append(_Outcome(job, error=e))
                        conn.execute("RELEASE job")
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
        except BaseException as e:
            # the group's transaction failed as a whole: nothing of it was written
            return [_Outcome(job, error=e) for job in batch]
        return outcomes

    def _post(self, outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for o in outcomes:
            if o.error is None and o.job.on_commit is not None:
                with contextlib.suppress(Exception):
                    o.job.on_commit(o.value)
            by_loop.setdefault(o.job.loop, []).append(o)
        for loop, results in by_loop.items():
            # a closed loop raises RuntimeError: nobody is waiting for these results
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, results)


# --- SQL helpers (run on the worker threads) ----------------------------------------------
def encode_headers(headers: tuple[tuple[str, bytes], ...]) -> bytes | None:
    if not headers:
        return None
    out = bytearray()
    for name, value in headers:
        raw = name.encode()
        out += struct.pack(">HI", len(raw), len(value))
        out += raw
        out += value
    return bytes(out)


def decode_headers(blob: bytes | None) -> tuple[tuple[str, bytes], ...]:
    if not blob:
        return ()
    out: list[tuple[str, bytes]] = []
    i = 0
    n = len(blob)
    while i < n:
        name_len, value_len = struct.unpack_from(">HI", blob, i)
        i += 6
        name = blob[i : i + name_len].decode()
        i += name_len
        out.append((name, bytes(blob[i : i + value_len])))
        i += value_len
    return tuple(out)


def topic_row(conn: sqlite3.Connection, name: str) -> tuple[int, int, int, str] | None:
    row: tuple[int, int, int, str] | None = conn.execute(
        "SELECT id, partitions, retention_ms, cleanup_policy FROM log_topics WHERE name=?",
        (name,),
    ).fetchone()
    return row


def require_topic(conn: sqlite3.Connection, name: str) -> tuple[int, int]:
    row = topic_row(conn, name)
    if row is None:
        raise TopicNotFound(f"topic {name!r} does not exist", topic=name)
    return row[0], row[1]


def partition_bounds(conn: sqlite3.Connection, tid: int) -> dict[int, tuple[int, int]]:
    return {
        part: (start, nxt)
        for part, start, nxt in conn.execute(
            "SELECT part, start_offset, next_offset FROM log_partitions WHERE tid=?", (tid,)
        )
    }


def setup_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        row = conn.execute("SELECT value FROM log_meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO log_meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
        elif row[0] != SCHEMA_VERSION:
            raise ConfigurationError(
                f"the local log database has schema version {row[0]}; "
                f"this streamkit reads version {SCHEMA_VERSION}"
            )
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def prune_expired(conn: sqlite3.Connection, now: int) -> int:
    """Delete every record past its topic's retention; returns how many were deleted.

    Runs its own short transactions (``_PRUNE_CHUNK`` rows each), so appends queued
    behind a large prune wait for one chunk, not for the whole deletion.
    """
    deleted = 0
    topics = conn.execute(
        "SELECT id, retention_ms FROM log_topics WHERE retention_ms >= 0"
    ).fetchall()
    for tid, retention_ms in topics:
        cutoff = now - retention_ms
        for (part,) in conn.execute(
            "SELECT part FROM log_partitions WHERE tid=? AND start_offset < next_offset", (tid,)
        ).fetchall():
            while True:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT start_offset, next_offset FROM log_partitions "
                        "WHERE tid=? AND part=?",
                        (tid, part),
                    ).fetchone()
                    if row is None:  # the topic was deleted meanwhile
                        conn.execute("COMMIT")
                        break
                    start, nxt = row
                    keep = conn.execute(
                        "SELECT off FROM log_records WHERE tid=? AND part=? AND ts_max >= ? "
                        "ORDER BY ts_max, off LIMIT 1",
                        (tid, part, cutoff),
                    ).fetchone()
                    target = nxt if keep is None else keep[0]
                    new_start = min(target, start + _PRUNE_CHUNK)
                    if new_start > start:
                        cur = conn.execute(
                            "DELETE FROM log_records WHERE tid=? AND part=? AND off < ?",
                            (tid, part, new_start),
                        )
                        deleted += cur.rowcount
                        conn.execute(
                            "UPDATE log_partitions SET start_offset=? WHERE tid=? AND part=?",
                            (new_start, tid, part),
                        )
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                if new_start >= target:
                    break
    return deleted


def append_records(
    conn: sqlite3.Connection, txn_id: str, epoch: int, records: list[OutRecord]
) -> set[str]:
    row = conn.execute("SELECT epoch FROM log_producers WHERE txn_id=?", (txn_id,)).fetchone()
    if row is None or row[0] != epoch:
        raise Fenced(
            f"producer {txn_id!r} (epoch {epoch}) was fenced by a newer one "
            f"(epoch {None if row is None else row[0]})",
            transactional_id=txn_id,
        )
    now = now_ms()
    topics: dict[str, tuple[int, int]] = {}
    parts: dict[tuple[int, int], list[int]] = {}
    rows: list[tuple[int, int, int, int, int, bytes | None, bytes, bytes | None]] = []
    for i, r in enumerate(records):
        t = topics.get(r.topic)
        if t is None:
            t = topics[r.topic] = require_topic(conn, r.topic)
        tid, n = t
        part = partition_for_key(n, r.key) if r.partition is None else r.partition
        if part >= n:
            raise ValidationError(
                f"records[{i}].partition={part} but topic {r.topic!r} has {n} partitions"
            )
        ts = now if r.timestamp_ms is None else r.timestamp_ms
        if ts > now + MAX_FUTURE_TIMESTAMP_MS:
            # Kafka 4.x brokers refuse these (log.message.timestamp.after.max.ms); so do we
            raise LogError(
                f"records[{i}].timestamp_ms={ts} is more than an hour in the future",
                retriable=False,
            )
        state = parts.get((tid, part))
        if state is None:
            got = conn.execute(
                "SELECT next_offset, max_ts FROM log_partitions WHERE tid=? AND part=?",
                (tid, part),
            ).fetchone()
            state = parts[(tid, part)] = [got[0], got[1]]
        offset = state[0]
        state[0] = offset + 1
        state[1] = max(state[1], ts)
        rows.append((tid, part, offset, ts, state[1], r.key, r.value, encode_headers(r.headers)))
    conn.executemany(
        "INSERT INTO log_records (tid, part, off, ts, ts_max, key, value, headers) "
        "VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.executemany(
        "UPDATE log_partitions SET next_offset=?, max_ts=? WHERE tid=? AND part=?",
        [(s[0], s[1], tid, part) for (tid, part), s in parts.items()],
    )
    return set(topics)
