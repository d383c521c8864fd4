"""The SQLite engine's worker threads: each owns one connection and runs the work queued
for it, a run of writes as one group commit; a lone write may run in place on the
event loop's thread instead (``_Worker.run_here``). Results go back to each caller's
event loop, once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import StreamkitError
from streamkit.storage._sqlite_file import _BUSY_MS
from streamkit.storage._sqlite_rows import _Rows
from streamkit.storage._write_ops import DeleteOp, PutOp, UpdateOp, WriteJob, WriteResult
from streamkit.storage._writes import run_job

if TYPE_CHECKING:
    from streamkit.storage._sqlite import SqliteEngine

_MAX_GROUP = 1024  # jobs per group commit
_SHRINK_WAIT_MS = 50  # how long a truncating checkpoint waits for readers (holding the lock)

# a queued unit of work: (is_write, fn, future). fn runs on the worker thread.
_Work = tuple[bool, Callable[[Any], Any], "asyncio.Future[Any] | None"]
# a finished unit: (future or None for fire-and-forget work, value, error)
_Result = tuple["asyncio.Future[Any] | None", Any, BaseException | None]


def _deliver_all(out: list[_Result]) -> None:
    """Hand each result to its future's event loop (worker thread)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for r in out:
        if r[0] is not None:
            by_loop.setdefault(r[0].get_loop(), []).append(r)
    for loop, results in by_loop.items():
        # a closed loop raises RuntimeError: nobody is waiting for these results
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_deliver, results)


def _deliver(results: list[_Result]) -> None:
    for fut, value, exc in results:
        if fut is None or fut.cancelled():
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


_READS_OLD = (PutOp, UpdateOp, DeleteOp)


def _keys_read(group: list[_Work]) -> list[tuple[int, bytes, bytes]]:
    """The item rows a group's puts, updates and deletes read first (their old images)."""
    keys = []
    for _, fn, _ in group:
        if isinstance(fn, _JobRunner):
            for op in fn.job.ops:
                if isinstance(op, _READS_OLD):
                    k = op.k
                    keys.append((op.spec.table_id, k.pk, k.sk))
    return keys


class _JobRunner:
    """A write job as queued work (the writer defers its row writes to the group's flush)."""

    __slots__ = ("job",)

    def __init__(self, job: WriteJob) -> None:
        self.job = job

    def __call__(self, rows: _Rows) -> list[WriteResult]:
        return run_job(rows, self.job)


def _checkpoint(rows: _Rows) -> None:
    """Copy committed WAL frames into the database without blocking the writer."""
    rows.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def _shrink_wal(conn: sqlite3.Connection) -> bool:
    """Checkpoint the whole WAL and truncate it to 0 bytes; False if readers of older
    snapshots (or another process's writer) kept it.

    The copying is done first by a PASSIVE checkpoint, which takes no lock; the
    TRUNCATE that follows holds the write lock while it waits for readers, so it
    waits only ``_SHRINK_WAIT_MS``: a long-running reader delays a writer by that
    much at most, and the WAL is left (backfilled as far as it can be) for the next
    try.
    """
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    conn.execute(f"PRAGMA busy_timeout={_SHRINK_WAIT_MS}")
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    return not busy


class _Fallback(Exception):  # a signal, not an error: use a worker thread instead
    """The work cannot run on the calling thread now (the file busy, or the connection in
    use by another thread): the reader or writer thread runs it, waiting as it must."""


def _is_busy(e: sqlite3.Error) -> bool:
    """Another connection holds the lock (the file is busy)."""
    return getattr(e, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _in_transaction(rows: _Rows, fn: Callable[[_Rows], Any]) -> Any:
    """``fn(rows)`` in the write transaction just begun, committed; rolled back (and the
    deferred rows forgotten) if anything raises."""
    try:
        rows.read_sequence()
        if not isinstance(fn, _JobRunner):
            rows.forget()  # it may write SQL of its own
        value = fn(rows)
        rows.flush()
        rows.conn.execute("COMMIT")
    except BaseException:
        rows.discard()
        if rows.conn.in_transaction:
            rows.conn.rollback()
        raise
    return value


class _Worker(threading.Thread):
    """A thread that owns one SQLite connection and runs queued work on it."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        engine: SqliteEngine,
        *,
        idle: bool = False,
        in_place: bool = False,
    ):
        super().__init__(name=name, daemon=True)
        self._connect = connect
        self._engine = engine
        self._idle = idle  # the writer of a file: tell the engine when it has been idle
        self._in_place = in_place  # the writer: lone writes also run on the loop's thread
        # a read-only store: a "write" group only reads, and must not take the write lock
        self._begin = "BEGIN" if engine.read_only else "BEGIN IMMEDIATE"
        self.queue: SimpleQueue[_Work | None] = SimpleQueue()
        # held while the connection is in use: by this thread for each batch, or by the
        # event loop's thread for a write run in place (see run_here)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.rows: _Rows | None = None

    def run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as e:  # reported to open()
            self.error = e
            self.ready.set()
            return
        rows = self.rows = _Rows(conn)
        # the writer's connection at rest never waits for another process's lock: a
        # write run in place on the loop's thread (run_here) must not block the loop.
        # This thread waits up to _BUSY_MS while it holds the connection for a batch.
        rest = f"PRAGMA busy_timeout={0 if self._in_place else _BUSY_MS}"
        conn.execute(rest)
        self.ready.set()
        q = self.queue
        engine = self._engine
        try:
            while True:
                wait = engine.idle_wait() if self._idle else None
                try:
                    work = q.get(timeout=wait)
                except Empty:  # idle for `wait` seconds since the last commit
                    engine.idle()
                    continue
                if work is None:
                    return
                batch = [work]
                stop = False
                while len(batch) < _MAX_GROUP:
                    try:
                        nxt = q.get_nowait()
                    except Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                with self.lock:
                    if not self._in_place:
                        out = self._run_batch(rows, batch)
                    else:
                        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
                        try:
                            out = self._run_batch(rows, batch)
                        finally:
                            conn.execute(rest)
                _deliver_all(out)  # after the lock: a woken caller may write in place
                if stop:
                    return
        finally:
            conn.close()

    def _run_batch(self, rows: _Rows, batch: list[_Work]) -> list[_Result]:
        out: list[_Result] = []
        i = 0
        n = len(batch)
        while i < n:
            if batch[i][0]:
                j = i
                while j < n and batch[j][0]:
                    j += 1
                self._run_writes(rows, batch[i:j], out)
                i = j
            else:
                _, fn, fut = batch[i]
                try:
                    out.append((fut, fn(rows), None))
                except BaseException as e:
                    out.append((fut, None, self._engine.wrap(e)))
                i += 1
        return out

    def _run_writes(
        self,
        rows: _Rows,
        group: list[_Work],
        out: list[_Result],
    ) -> None:
        conn = rows.conn
        done: list[_Result] = []
        try:
            conn.execute(self._begin)
            rows.read_sequence()
            if len(group) > 1:
                rows.prefetch(_keys_read(group))
            for _, fn, fut in group:
                if not isinstance(fn, _JobRunner):
                    rows.flush()  # catalog work reads and writes SQL directly
                    rows.forget()
                before = rows.writes
                try:
                    done.append((fut, fn(rows), None))
                except StreamkitError as e:
                    if rows.writes != before:
                        raise  # it failed half-way: roll back the group, then run one by one
                    done.append((fut, None, e))
            rows.flush()
            rows.drop_prefetched()
            conn.execute("COMMIT")
        except BaseException:
            rows.discard()
            if conn.in_transaction:
                conn.rollback()
            self._run_singly(rows, group, out)
            return
        out.extend(done)
        self._engine.committed()
        if any(e is None for _, _, e in done):
            self._engine.notify_commit()

    def run_here(self, runner: Callable[[_Rows], Any]) -> tuple[Any, BaseException | None]:
        """Run one write job in its own transaction on the calling thread (the caller
        holds ``lock``, and the queue was empty): no thread hop for a lone writer.

        The connection never waits for another process's write lock here: busy, the job
        is not run and :class:`_Fallback` is raised, so the caller queues it instead.
        """
        rows = self.rows
        if rows is None:
            raise _Fallback
        conn = rows.conn  # (busy_timeout is 0 while this thread does not hold it)
        try:
            conn.execute(self._begin)
        except sqlite3.OperationalError as e:
            if _is_busy(e):
                raise _Fallback from e
            raise
        try:
            value = _in_transaction(rows, runner)
        except BaseException as e:
            return None, self._engine.wrap(e)
        self._engine.committed()
        self._engine.notify_commit()
        return value, None

    def _run_singly(
        self,
        rows: _Rows,
        group: list[_Work],
        out: list[_Result],
    ) -> None:
        conn = rows.conn
        committed = False
        for _, fn, fut in group:
            try:
                conn.execute(self._begin)
                value = _in_transaction(rows, fn)
                committed = True
                out.append((fut, value, None))
            except BaseException as e:
                if conn.in_transaction:
                    conn.rollback()
                out.append((fut, None, self._engine.wrap(e)))
        if committed:
            self._engine.committed()
            self._engine.notify_commit()
