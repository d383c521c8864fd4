"""The SQLite storage engine (``sqlite:///path.db`` and ``memory://``).

Threads, not the event loop, touch SQLite for writes and long reads: one writer
thread owns the only write connection, one reader thread serves scans and queries,
and a checkpointer thread keeps the WAL short (WAL lets them run side by side).
Callers enqueue work and await an asyncio future; each thread drains everything
queued, so under load many writes share one transaction and one commit (group
commit) and many reads one wake-up.

Point reads (``get``, ``get_many``) of a file store skip the thread hop: one more,
read-only connection runs them on the calling thread (a WAL reader never waits for
the writer, and a primary-key lookup costs a few microseconds, less than the hop's
wake-ups). It has no busy timeout: if SQLite says busy (a recovery, another process
holding the file exclusively) or another thread is using it, the read goes to the
reader thread instead, so the event loop never waits on a lock. Each statement is its
own read transaction, started when it runs, so it sees every commit acknowledged
before the call.

Crash safety: WAL mode; a job's item rows and change records are written in
the same transaction, so after a crash either both are there or neither.
``synchronous=NORMAL`` (the default here) survives a killed process; pass
``?synchronous=FULL`` in the URL to also survive power loss (with ``NORMAL``,
power loss may drop the last commits, whose sequence numbers the relay may
already have published: they are then handed out again).

The file: before anything is written, the file is looked at over a read-only
connection; one that exists and is not a streamkit store (a SQLite database
with other tables and no schema row, or no SQLite database at all) raises
ConfigurationError and is left untouched. ``?mode=ro`` opens an existing store
read-only and never creates anything (``mode=rw``: existing, writable).

The WAL: ``journal_size_limit`` (``?wal_limit_mb=``, 64 by default) caps what a
reset WAL keeps, a third thread (the checkpointer, its own connection, so a long
checkpoint never holds up the reads queued on the reader thread) checkpoints
passively every ``_CHECKPOINT_EVERY`` commits, and once the writer has been idle
for ``_IDLE_S`` with the WAL over the limit, it checkpoints the WAL whole
and truncates it (waiting at most ``_SHRINK_WAIT_MS`` for old readers, retried
with backoff), so a snapshot held for a while cannot leave the file large.

This module holds ``SqliteEngine``; its pieces are in ``_sqlite_rows`` (the schema,
``_Rows``, the point reads), ``_sqlite_worker`` (the worker threads, group commit,
checkpoints), ``_sqlite_file`` (the URL, opening and inspecting the file) and
``_sqlite_catalog`` (preparing the schema; the catalog, backup and lease transactions).
"""

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from streamkit._fswatch import CommitPacer
from streamkit.exceptions import StorageError, StreamkitError
from streamkit.storage._archive import archive_rows, current_rows, state_cursor, state_rows
from streamkit.storage._engine import (
    ArchivedRecord,
    ArchiveRow,
    BackupInfo,
    ChangeRow,
    ItemRow,
    RestoreFeed,
    StateRow,
    StoredItem,
    TableRead,
)
from streamkit.storage._spec import TableSpec
from streamkit.storage._sqlite_catalog import (
    _create_backup,
    _delete_backup,
    _delete_table,
    _index_archive,
    _insert_table,
    _list_backups,
    _list_tables,
    _load_table,
    _prepare_schema,
    _prune_changes,
    _release_lease,
    _restore_table,
    _store_spec,
    _try_lease,
    _update_table,
)
from streamkit.storage._sqlite_file import (
    _BUSY_MS,
    _open_file,
    _parse_options,
    _wal_size,
    read_only_url,
)
from streamkit.storage._sqlite_rows import (
    _SCHEMA,  # noqa: F401  (re-exported: the benchmarks import it from here)
    SCHEMA_VERSION,  # noqa: F401  (re-exported, as it was defined here)
    _get_keys,
    _get_one,
    _one_snapshot,
    _Rows,
    max_sequence,
    segment_of,
)
from streamkit.storage._sqlite_worker import (
    _checkpoint,
    _Fallback,
    _is_busy,
    _JobRunner,
    _shrink_wal,
    _Work,
    _Worker,
)
from streamkit.storage._write_ops import Checkpoint, WriteJob, WriteOp, WriteResult
from streamkit.storage._writes import run_effects

__all__ = ("SqliteEngine", "read_only_url")

T = TypeVar("T")

_CHECKPOINT_EVERY = 100  # commits between passive checkpoints (the checkpointer thread's)
# the watcher of other processes' commits: poll step, idle wait between file events,
# and how long to look closely after one
_WATCH_STEP = 0.002
_WATCH_IDLE = 0.5
_WATCH_HOT = 0.05
_logger = logging.getLogger("streamkit.storage")
_IDLE_S = 1.0  # writer idle this long after a commit: shrink the WAL if it is over the limit
_IDLE_MAX_S = 8.0  # the longest wait between shrink attempts while old readers hold it
_DIRECT_YIELD = 64  # point reads (or lone writes) on the calling thread between two yields


_NOTHING: Any = object()


def _nothing_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether no callback is queued to run on ``loop`` before it next waits for I/O.

    Read from asyncio's own loop (its ``_ready`` queue); another loop (uvloop) does
    not say, and is taken as busy.
    """
    ready = getattr(loop, "_ready", None)
    return ready is not None and not ready


def _wrap(e: BaseException) -> BaseException:
    if isinstance(e, StreamkitError) or not isinstance(e, Exception):
        return e
    if isinstance(e, sqlite3.Error):
        err = StorageError(f"storage failed: {e}")
        err.__cause__ = e
        return err
    return e


class SqliteEngine:
    """Tables, items and change records in one SQLite database.

    URL options: ``synchronous`` (OFF, NORMAL (default), FULL, EXTRA); ``mode`` —
    ``rwc`` (default: open the file, or create it, its directory and the schema),
    ``rw`` (open an existing store only) or ``ro`` (an existing store, read-only:
    nothing is created or written); ``wal_limit_mb`` (64): the size the WAL is kept
    to (``journal_size_limit``, and the idle shrink).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self._synchronous, self._mode, self._wal_limit = _parse_options(url)
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None
        # a file opened read-write: the thread that checkpoints and shrinks the WAL, so
        # a long checkpoint never holds up the reads queued on the reader thread
        self._keeper: _Worker | None = None
        # point reads on the calling thread (file stores; see the module docstring)
        self._direct: sqlite3.Connection | None = None
        self._direct_lock = threading.Lock()
        # per event loop, the turn's first write while it is alone, None once another
        # came (see write)
        self._held: dict[asyncio.AbstractEventLoop, _Work | None] = {}
        self._direct_reads = 0
        self._direct_writes = 0  # lone writes run at once since the loop last had a turn
        self._open_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._watcher: threading.Thread | None = None
        self._commits = 0
        # the idle WAL shrink (writer thread; `_shrinking` is cleared by the checkpointer thread)
        self._wal_due = False  # a commit since the WAL was last seen within its limit
        self._wal_wait = _IDLE_S
        self._shrinking = False
        self._checkpoint_queued = False  # a passive checkpoint waits on the checkpointer
        self.storage_id = ""  # set when the writer opens the database

    @property
    def read_only(self) -> bool:
        """Opened with ``mode=ro``: reads only, nothing is created or written."""
        return self._mode == "ro"

    # --- lifecycle ---------------------------------------------------------------------
    def _connect(self, *, write: bool) -> sqlite3.Connection:
        """The writer's connection (``write``: the first one, which checks the file and
        the schema), or the reader's."""
        if self.path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            conn = _open_file(
                self.path,
                first=write,
                mode=self._mode,
                url=self.url,
                synchronous=self._synchronous,
                wal_limit=self._wal_limit,
            )
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.create_function("sk_segment", 2, segment_of, deterministic=True)
            if write and not self.read_only:
                self.storage_id = _prepare_schema(conn, self.url)
            else:
                conn.execute("PRAGMA query_only=ON")
                if write:  # a read-only store: its id is read, never set
                    row = conn.execute("SELECT value FROM sk_meta WHERE key='storage_id'")
                    self.storage_id = next((str(v) for (v,) in row), "")
        except BaseException:
            conn.close()
            raise
        return conn

    async def open(self) -> None:
        """Start the worker threads (idempotent)."""
        if self._writer is not None:
            return
        with self._open_lock:
            if self._writer is not None:
                return
            # a file opened read-write gets a reader thread, a checkpointer thread and the
            # idle WAL shrink; a read-only one (and memory) a single thread
            two = self.path is not None and not self.read_only
            # a WAL left large by an earlier run shrinks too, once the writer is idle
            self._wal_due, self._wal_wait, self._shrinking = two, _IDLE_S, False
            self._checkpoint_queued = False
            started: list[_Worker] = []
            writer = await self._start(
                _Worker(
                    "streamkit-sqlite-writer",
                    lambda: self._connect(write=True),
                    self,
                    idle=two,
                    in_place=True,
                ),
                started,
            )
            reader, keeper = writer, None
            if two:

                def connect() -> sqlite3.Connection:
                    return self._connect(write=False)

                reader = await self._start(
                    _Worker("streamkit-sqlite-reader", connect, self), started
                )
                keeper = await self._start(
                    _Worker("streamkit-sqlite-checkpointer", connect, self), started
                )
            direct = None
            if self.path is not None:
                try:
                    direct = await asyncio.to_thread(self._connect_direct)
                except BaseException:
                    for w in started:
                        w.queue.put(None)
                    raise
            self._writer, self._reader, self._keeper = writer, reader, keeper
            self._direct = direct

    async def _start(self, worker: _Worker, started: list[_Worker]) -> _Worker:
        """Start ``worker`` and wait for its connection; if that fails, stop the workers
        ``started`` before it and raise. Appends it to ``started``."""
        worker.start()
        await asyncio.to_thread(worker.ready.wait)
        if worker.error is not None:
            for w in started:
                w.queue.put(None)
            raise self.wrap(worker.error)
        started.append(worker)
        return worker

    def _connect_direct(self) -> sqlite3.Connection:
        """The connection for point reads on the calling thread: read-only, never waits."""
        conn = self._connect(write=False)
        conn.execute("PRAGMA busy_timeout=0")
        return conn

    async def close(self) -> None:
        """Finish queued work, stop the threads, close the connections."""
        writer, reader, direct = self._writer, self._reader, self._direct
        keeper = self._keeper
        self._writer = self._reader = self._direct = self._keeper = None
        for w in {writer, reader, keeper}:
            if w is not None:
                w.queue.put(None)
        for w in {writer, reader, keeper}:
            if w is not None:
                await asyncio.to_thread(w.join)
        if direct is not None:
            # last, off the loop: the last connection to close checkpoints the WAL into
            # the file and deletes it; the lock lets a read on another thread finish first
            await asyncio.to_thread(self._close_direct, direct)

    def _close_direct(self, direct: sqlite3.Connection) -> None:
        with self._direct_lock:
            direct.close()

    # --- submitting work ---------------------------------------------------------------
    def _submit(
        self, worker: _Worker | None, write: bool, fn: Callable[[Any], Any]
    ) -> asyncio.Future[Any]:
        if worker is None:
            raise StorageError(f"storage {self.url} is not open (or was closed)")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.queue.put((write, fn, fut))
        return fut

    async def write(self, job: WriteJob) -> list[WriteResult]:
        """Run a write job: in place when it is alone, else in the writer's next group.

        A lone awaiting writer would pay two thread wake-ups per write (the writer
        thread's, then the event loop's). So the first write a loop asks for in a turn is
        held to the end of the turn: if it is still alone then and the writer is idle, it
        runs here, in its own transaction on the writer's connection (under its lock).
        A second write in the same turn sends both, and the rest of the turn's, to the
        writer thread at once, which commits them as one group, as before.

        When nothing else is ready to run on the loop (no callback or task can ask for
        another write before the turn ends), holding it would only cost a loop turn: it
        runs here at once, and the loop gets a turn every ``_DIRECT_YIELD`` such writes.
        """
        writer = self._writer
        if writer is None:
            raise StorageError(f"storage {self.url} is not open (or was closed)")
        loop = asyncio.get_running_loop()
        held = self._held.get(loop, _NOTHING)
        runner = _JobRunner(job)
        if held is _NOTHING and self._direct_writes < _DIRECT_YIELD and _nothing_ready(loop):
            self._direct_writes += 1
            done = self._run_alone(writer, runner)
            if done is not None:
                value, error = done
                if error is not None:
                    raise error
                return value  # type: ignore[no-any-return]
        self._direct_writes = 0
        fut: asyncio.Future[list[WriteResult]] = loop.create_future()
        work: _Work = (True, runner, fut)
        if held is _NOTHING:  # the turn's first write: hold it
            self._held[loop] = work
            loop.call_soon(self._run_held, loop, writer)
        else:  # not alone: the turn's writes go to the writer thread
            if held is not None:
                writer.queue.put(held)
                self._held[loop] = None
            writer.queue.put(work)
        return await fut

    @staticmethod
    def _run_alone(
        writer: _Worker, runner: Callable[[_Rows], Any]
    ) -> tuple[Any, BaseException | None] | None:
        """Run one write job here when the writer is idle: ``(value, error)``, or None when
        it is busy (with queued work, or with another process's lock)."""
        if not writer.queue.empty() or not writer.lock.acquire(blocking=False):
            return None
        try:
            return writer.run_here(runner)
        except _Fallback:
            return None
        finally:
            writer.lock.release()

    def _run_held(self, loop: asyncio.AbstractEventLoop, writer: _Worker) -> None:
        """End of the turn: run a held lone write here (or queue it if the writer is busy)."""
        work = self._held.pop(loop, None)
        if work is None:
            return
        fut = work[2]
        if fut is None or fut.cancelled():
            return
        if self._writer is not writer:
            fut.set_exception(StorageError(f"storage {self.url} is not open (or was closed)"))
            return
        done = self._run_alone(writer, work[1])
        if done is None:
            writer.queue.put(work)
            return
        value, error = done
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)

    async def write_fn(self, fn: Callable[[_Rows], T]) -> T:
        """Run ``fn(rows)`` inside a write transaction (used for DDL and maintenance)."""
        return await self._submit(self._writer, True, fn)  # type: ignore[no-any-return]

    async def read(self, fn: Callable[[_Rows], T]) -> T:
        """Run a read function on the reader thread."""
        return await self._submit(self._reader, False, fn)  # type: ignore[no-any-return]

    async def commit_effects(
        self, ops: Sequence[WriteOp], checkpoints: Sequence[Checkpoint], origin: str | None
    ) -> int | None:
        """Apply ``ops`` and advance ``checkpoints`` in one transaction (see run_effects)."""
        return await self.write_fn(lambda rows: run_effects(rows, ops, checkpoints, origin))

    def _here(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(direct connection, *args)`` on this thread, or :class:`_Fallback`."""
        conn = self._direct
        if conn is None or not self._direct_lock.acquire(blocking=False):
            raise _Fallback
        try:
            return fn(conn, *args)
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.rollback()
            if _is_busy(e):
                raise _Fallback from e
            raise self.wrap(e) from None
        finally:
            self._direct_lock.release()

    async def _yield_now_and_then(self) -> None:
        # a caller that only ever reads on this thread would never let other tasks run;
        # give the loop a turn every so often (the thread hop did it on every read)
        self._direct_reads += 1
        if self._direct_reads >= _DIRECT_YIELD:
            self._direct_reads = 0
            await asyncio.sleep(0)

    # --- item reads --------------------------------------------------------------------
    async def get(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        """One item's image bytes and DynamoDB size, or None."""
        try:
            row: tuple[bytes, int] | None = self._here(_get_one, table_id, pk, sk)
        except _Fallback:
            return await self.read(lambda rows: rows.get(table_id, pk, sk))
        await self._yield_now_and_then()
        return row

    async def get_many(
        self, table_id: int, keys: Sequence[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, int]]:
        """The (image bytes, size) of those of ``keys`` that exist (one read snapshot)."""
        try:
            found = self._here(_get_keys, table_id, keys)
        except _Fallback:
            return await self.read(lambda rows: _get_keys(rows.conn, table_id, keys))
        await self._yield_now_and_then()
        return found

    async def range(
        self,
        table_id: int,
        pk: bytes,
        *,
        low: bytes | None,
        low_inclusive: bool,
        high: bytes | None,
        high_inclusive: bool,
        reverse: bool,
        limit: int,
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (sort bytes, image bytes) of one partition, in sort order."""
        return await self.read(
            lambda rows: rows.range(
                table_id,
                pk,
                low=low,
                low_inclusive=low_inclusive,
                high=high,
                high_inclusive=high_inclusive,
                reverse=reverse,
                limit=limit,
            )
        )

    async def scan(
        self,
        table_id: int,
        *,
        after: tuple[bytes, bytes] | None,
        limit: int,
        segment: int,
        total_segments: int,
    ) -> list[ItemRow]:
        """Up to ``limit`` items in key order after ``after`` (of one segment)."""
        return await self.read(
            lambda rows: rows.scan(
                table_id, after=after, limit=limit, segment=segment, total_segments=total_segments
            )
        )

    async def snapshot(self, table_id: int) -> tuple[int, list[ItemRow]]:
        """Every item and the newest sequence number, from one read transaction."""

        def fn(rows: _Rows) -> tuple[int, list[ItemRow]]:
            with _one_snapshot(rows.conn):
                return rows.max_sequence(), current_rows(rows.conn, table_id)

        return await self.read(fn)

    @contextlib.asynccontextmanager
    async def read_table(self, table_id: int, at_ms: int | None = None) -> AsyncIterator[TableRead]:
        """A table read from one snapshot a chunk at a time (see the protocol): on a
        connection of its own, so the reader thread is not held while the caller works
        between chunks. ``memory://`` has one connection: its rows are read at once."""
        if self.path is None:
            if at_ms is None:
                seq, items = await self.snapshot(table_id)
                yield _ListRead(seq, [(pk, sk, b"", data) for pk, sk, data in items])
            else:

                def fn(rows: _Rows) -> tuple[int, list[StateRow]]:
                    with _one_snapshot(rows.conn):
                        return rows.max_sequence(), state_rows(rows.conn, table_id, at_ms)

                yield _ListRead(*await self.read(fn))
            return
        conn = await asyncio.to_thread(self._connect, write=False)
        try:
            yield await asyncio.to_thread(_CursorRead.start, conn, table_id, at_ms)
        finally:
            await asyncio.to_thread(_end_read, conn)

    async def snapshots(self, storage_ids: Sequence[int]) -> tuple[int, list[list[ItemRow]]]:
        """The rows of several storage ids and the newest sequence number, from one read
        transaction."""

        def fn(rows: _Rows) -> tuple[int, list[list[ItemRow]]]:
            with _one_snapshot(rows.conn):
                return rows.max_sequence(), [current_rows(rows.conn, i) for i in storage_ids]

        return await self.read(fn)

    async def expired(self, table_id: int, cutoff: float, limit: int) -> list[bytes]:
        """Image bytes of items whose TTL has passed (and is not 5+ years old)."""
        return await self.read(lambda rows: rows.expired(table_id, cutoff, limit))

    async def table_stats(self, table_id: int) -> tuple[int, int]:
        """``(item count, total item bytes)`` of a table."""

        def fn(rows: _Rows) -> tuple[int, int]:
            count, size = rows.conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM sk_items WHERE tid=?", (table_id,)
            ).fetchone()
            return int(count), int(size)

        return await self.read(fn)

    # --- the change log ------------------------------------------------------------------
    async def changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        """Change rows after ``after_seq``, in order (a single writer: no gaps to wait for)."""
        return await self.read(lambda rows: rows.changes(after_seq, limit))

    async def archive_rows(
        self,
        table_id: int,
        *,
        after_seq: int,
        since_ms: int,
        until_ms: int,
        before_seq: int | None,
        limit: int,
    ) -> list[ArchivedRecord]:
        """A table's archived records in [since_ms, until_ms) after ``after_seq``."""
        return await self.read(
            lambda rows: archive_rows(
                rows.conn,
                table_id,
                after_seq=after_seq,
                since_ms=since_ms,
                until_ms=until_ms,
                before_seq=before_seq,
                limit=limit,
            )
        )

    async def archive_tail(
        self, table_id: int, *, position_key: str, since_ms: int, until_ms: int, limit: int
    ) -> tuple[int, list[ArchivedRecord]]:
        """A stored position and the archive rows after it, in one read snapshot."""

        def fn(rows: _Rows) -> tuple[int, list[ArchivedRecord]]:
            with _one_snapshot(rows.conn):
                stored = rows.meta_get(position_key)
                position = 0 if stored is None else int(stored)
                tail = archive_rows(
                    rows.conn,
                    table_id,
                    after_seq=position,
                    since_ms=since_ms,
                    until_ms=until_ms,
                    before_seq=None,
                    limit=limit,
                )
                return position, tail

        return await self.read(fn)

    # --- leases ----------------------------------------------------------------------------
    async def try_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew a lease (kept in ``sk_meta`` as ``holder expiry``)."""
        return await self.write_fn(lambda rows: _try_lease(rows, name, holder, seconds))

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""
        await self.write_fn(lambda rows: _release_lease(rows, name, holder))

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after commits (the capture relay's doorbell): on the writer
        thread for this process's commits, and on a watcher thread for other processes'
        commits to the same file (while any listener is registered)."""
        self._listeners.append(listener)
        if self.path is not None and self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch_other_processes,
                name=f"streamkit-sqlite-watcher:{self.path}",
                daemon=True,
            )
            self._watcher.start()

    def remove_commit_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _watch_other_processes(self) -> None:
        """Ring the listeners when another connection commits to the file.

        ``PRAGMA data_version`` changes when another connection commits (reading it
        takes no lock); on Linux the thread sleeps on inotify events of the file's
        directory and looks closely for a short while after each (a commit's WAL frames
        are written just before it becomes visible), elsewhere it looks every few ms.
        It ends when the last listener is removed or the engine closes.
        """
        assert self.path is not None
        path = Path(self.path)
        pacer = CommitPacer(path.parent.resolve(), hot=_WATCH_HOT, idle=_WATCH_IDLE)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            while self._listeners and self._writer is not None:
                pacer.wait(_WATCH_STEP)
                current = int(conn.execute("PRAGMA data_version").fetchone()[0])
                if current != version:
                    version = current
                    self.notify_commit()
        except sqlite3.Error as e:  # the relay still polls: slower, never stuck
            _logger.warning("the commit watcher of %s stopped: %s", self.path, e)
        finally:
            self._watcher = None
            if conn is not None:
                conn.close()
            pacer.close()

    async def read_meta(self, keys: Sequence[str]) -> dict[str, str]:
        """Values of ``sk_meta`` keys (absent keys are left out)."""

        def fn(rows: _Rows) -> dict[str, str]:
            marks = ",".join("?" * len(keys))
            cur = rows.conn.execute(f"SELECT key, value FROM sk_meta WHERE key IN ({marks})", keys)
            return dict(cur.fetchall())

        return await self.read(fn)

    async def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every ``sk_meta`` key starting with ``prefix``, with its value."""

        def fn(rows: _Rows) -> dict[str, str]:
            cur = rows.conn.execute(
                "SELECT key, value FROM sk_meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            )
            return dict(cur.fetchall())

        return await self.read(fn)

    async def max_sequence(self) -> int:
        """The newest change record's sequence number (0 when there is none)."""
        return await self.read(lambda rows: int(rows.max_sequence()))

    async def prune_changes(self, *, upto: int, now_ms: int, limit: int) -> int:
        """Prune and compact the archive (see :func:`streamkit.storage._archive.compact`),
        then bring its per-table index up to date: its first batch in the same
        transaction, any more a batch per transaction so that other writes go on between."""
        deleted, more = await self.write_fn(
            lambda rows: _prune_changes(rows, upto=upto, now_ms=now_ms, limit=limit)
        )
        while more:
            more = await self.write_fn(_index_archive)
        return deleted

    async def write_meta(self, values: dict[str, str]) -> None:
        """Set ``sk_meta`` keys in one transaction."""

        def fn(rows: _Rows) -> None:
            rows.writes += 1
            rows.conn.executemany(
                "INSERT OR REPLACE INTO sk_meta (key, value) VALUES (?, ?)", list(values.items())
            )

        await self.write_fn(fn)

    def wrap(self, e: BaseException) -> BaseException:
        """A worker's exception as the caller gets it (sqlite3 errors become StorageError)."""
        if (
            self.read_only
            and isinstance(e, sqlite3.Error)
            and getattr(e, "sqlite_errorname", "").startswith("SQLITE_READONLY")
        ):
            err = StorageError(f"storage {self.url} is open read-only (mode=ro): {e}")
            err.__cause__ = e
            return err
        return _wrap(e)

    def committed(self) -> None:
        """Count a commit (writer thread); every so often ask the checkpointer thread for
        a passive checkpoint."""
        self._commits += 1
        self._wal_due = True
        self._wal_wait = _IDLE_S
        keeper = self._keeper
        if self._commits >= _CHECKPOINT_EVERY and keeper is not None:
            self._commits = 0
            if not self._checkpoint_queued:  # one waiting checkpoint serves every request
                self._checkpoint_queued = True
                keeper.queue.put((False, self._passive_checkpoint, None))

    def _passive_checkpoint(self, rows: _Rows) -> None:
        """Checkpointer thread: a passive checkpoint (commits from now on may ask again)."""
        self._checkpoint_queued = False
        _checkpoint(rows)

    def idle_wait(self) -> float | None:
        """Seconds the writer thread may wait for work before calling :meth:`idle`."""
        return self._wal_wait if self._wal_due else None

    def idle(self) -> None:
        """The writer has had nothing to do for ``idle_wait()`` seconds (writer thread).

        While the WAL is over ``wal_limit_mb``, ask the checkpointer thread to checkpoint
        and truncate it, off the write path; while old readers keep it, try again after
        twice the wait (up to ``_IDLE_MAX_S``).
        """
        path, keeper = self.path, self._keeper
        if path is None or _wal_size(path) <= self._wal_limit:
            self._wal_due = False
            return
        self._wal_wait = min(self._wal_wait * 2, _IDLE_MAX_S)
        if keeper is not None and not self._shrinking:
            self._shrinking = True
            keeper.queue.put((False, self._shrink, None))

    def _shrink(self, rows: _Rows) -> bool:
        """Checkpointer thread: checkpoint and truncate the WAL (see :func:`_shrink_wal`)."""
        try:
            return _shrink_wal(rows.conn)
        finally:
            self._shrinking = False

    def notify_commit(self) -> None:
        """Ring every commit listener."""
        for listener in tuple(self._listeners):
            listener()

    # --- catalog ---------------------------------------------------------------------
    async def create_table(self, spec: TableSpec) -> TableSpec:
        """Add a table; raises TableExists."""
        return await self.write_fn(lambda rows: _insert_table(rows, spec))

    async def load_table(
        self, spec: TableSpec, items: Sequence[StoredItem], archive: ArchiveRow | None
    ) -> TableSpec:
        """Create a table already holding ``items`` ((pk, sk, data, size, expires)), in one
        transaction: it appears whole or not at all. With ``archive`` (PITR), each item
        also gets an INSERT row in the archive, unpublished (a restore is not a change
        handlers see, as in DynamoDB): ``archive(spec, index, seq, now_ms)`` returns its
        (message key, record)."""
        return await self.write_fn(lambda rows: _load_table(rows, spec, items, archive))

    async def restore_table(self, spec: TableSpec, feed: RestoreFeed) -> TableSpec:
        """Create a table holding what ``feed`` reads and converts, in one transaction (see
        :class:`~streamkit.storage._engine.RestoreFeed`)."""
        return await self.write_fn(lambda rows: _restore_table(rows, spec, feed))

    # --- backups -----------------------------------------------------------------------
    async def create_backup(self, name: str, backup_id: str, kind: str) -> BackupInfo:
        """Copy a table's items into a new backup, consistently (one transaction)."""
        return await self.write_fn(lambda rows: _create_backup(rows, name, backup_id, kind))

    async def list_backups(self, table: str | None = None) -> list[BackupInfo]:
        """Every backup (of one table), oldest first."""
        return await self.write_fn(lambda rows: _list_backups(rows, table))

    async def delete_backup(self, backup_id: str) -> BackupInfo:
        """Delete a backup and its items."""
        return await self.write_fn(lambda rows: _delete_backup(rows, backup_id))

    async def delete_table(self, name: str) -> TableSpec:
        """Remove a table and all its items (its change records stay in the archive)."""
        return await self.write_fn(lambda rows: _delete_table(rows, name))

    async def update_table(
        self, spec: TableSpec, drop: Sequence[int] = (), *, only_if_epoch: int | None = None
    ) -> TableSpec:
        """Store changed settings of an existing table, and delete every row stored
        under the ids ``drop`` (a deleted index's entries), in one transaction."""
        return await self.write_fn(lambda rows: _update_table(rows, spec, drop, only_if_epoch))

    async def set_ttl(self, spec: TableSpec) -> int:
        """Store ``spec`` and recompute the TTL of every item of the table, in one
        transaction of the one writer (so every write queued before it is in, and every
        write after it sees the new TTLs)."""
        from streamkit.storage._ttl import image_ttl

        def fn(rows: _Rows) -> int:
            rows.writes += 1
            conn = rows.conn
            _store_spec(rows, spec, spec.epoch)  # StaleCatalog if changed since it was read
            tid = spec.table_id
            if spec.ttl_attribute is None:
                conn.execute(
                    "UPDATE sk_items SET expires=NULL WHERE tid=? AND expires IS NOT NULL", (tid,)
                )
                return 0
            updates: list[tuple[float | None, int, bytes, bytes]] = []
            with_ttl = 0
            for pk, sk, data, old in conn.execute(
                "SELECT pk, sk, data, expires FROM sk_items WHERE tid=?", (tid,)
            ):  # read lazily; the (small) updates are applied once the read is done
                expires = image_ttl(spec, data)
                with_ttl += expires is not None
                if expires != old:
                    updates.append((expires, tid, pk, sk))
            conn.executemany("UPDATE sk_items SET expires=? WHERE tid=? AND pk=? AND sk=?", updates)
            return with_ttl

        return await self.write_fn(fn)

    async def list_tables(self) -> Sequence[TableSpec]:
        """Every table, by name."""
        # the writer sees its own latest catalog even before the reader's snapshot moves
        return await self.write_fn(_list_tables)


class _ListRead:
    """A ``TableRead`` of rows already read."""

    def __init__(self, seq: int, rows: list[StateRow]) -> None:
        self.seq = seq
        self._rows = rows
        self._at = 0

    async def chunk(self, n: int) -> list[StateRow]:
        out = self._rows[self._at : self._at + n]
        self._at += len(out)
        return out


class _CursorRead:
    """A ``TableRead`` on a connection of its own, in one read transaction."""

    def __init__(self, seq: int, cursor: sqlite3.Cursor) -> None:
        self.seq = seq
        self._cursor = cursor

    @classmethod
    def start(cls, conn: sqlite3.Connection, table_id: int, at_ms: int | None) -> "_CursorRead":
        conn.execute("BEGIN")  # the snapshot: the sequence number and the rows agree
        seq = max_sequence(conn)
        if at_ms is None:
            cur = conn.execute(
                "SELECT pk, sk, x'', data FROM sk_items WHERE tid=? ORDER BY pk, sk", (table_id,)
            )
        else:
            cur = state_cursor(conn, table_id, at_ms, ordered=False)
        return cls(seq, cur)

    async def chunk(self, n: int) -> list[StateRow]:
        return await asyncio.to_thread(self._cursor.fetchmany, n)


def _end_read(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.rollback()
    finally:
        conn.close()
