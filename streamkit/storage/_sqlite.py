"""The SQLite storage engine (``sqlite:///path.db`` and ``memory://``).

Threads, not the event loop, touch SQLite for writes and long reads: one writer
thread owns the only write connection and one reader thread serves scans, queries
and maintenance (WAL lets them run side by side). Callers enqueue work and await
an asyncio future; each thread drains everything queued, so under load many writes
share one transaction and one commit (group commit) and many reads one wake-up.

Point reads (``get``, ``get_many``) of a file store skip the thread hop: a third,
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
reset WAL keeps, the reader thread checkpoints passively every
``_CHECKPOINT_EVERY`` commits, and once the writer has been idle for
``_IDLE_S`` with the WAL over the limit, the reader thread checkpoints it whole
and truncates it (waiting at most ``_SHRINK_WAIT_MS`` for old readers, retried
with backoff), so a snapshot held for a while cannot leave the file large.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from streamkit._fswatch import CommitPacer
from streamkit.exceptions import (
    BackupNotFound,
    ConfigurationError,
    StorageError,
    StreamkitError,
    TableExists,
    TableNotFound,
)
from streamkit.storage._archive import (
    archive_rows,
    backup_rows,
    compact,
    copy_backup,
    current_rows,
    migrate_2_to_3,
    state_rows,
)
from streamkit.storage._engine import (
    ArchivedRecord,
    ArchiveRow,
    BackupInfo,
    ChangeRow,
    ItemRow,
    StateRow,
    StoredItem,
    new_backup_id,
)
from streamkit.storage._indexes import index_rows
from streamkit.storage._spec import TableSpec
from streamkit.storage._writes import (
    Checkpoint,
    StaleCatalog,
    WriteJob,
    WriteOp,
    WriteResult,
    run_effects,
    run_job,
)

__all__ = ("SqliteEngine", "read_only_url")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sk_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sk_tables (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sk_items (
    tid     INTEGER NOT NULL,
    pk      BLOB NOT NULL,
    sk      BLOB NOT NULL,
    data    BLOB NOT NULL,
    size    INTEGER NOT NULL,
    expires REAL,
    PRIMARY KEY (tid, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sk_items_expires ON sk_items (tid, expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS sk_changes (
    seq        INTEGER PRIMARY KEY,
    tid        INTEGER NOT NULL,
    tname      TEXT NOT NULL,
    event      TEXT NOT NULL,
    txn        INTEGER,
    key        BLOB NOT NULL,
    record     BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    publish    INTEGER NOT NULL,
    image      BLOB,
    ipk        BLOB,
    isk        BLOB
);
CREATE TABLE IF NOT EXISTS sk_archive_base (
    tid INTEGER NOT NULL,
    ipk BLOB NOT NULL,
    isk BLOB NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tid, ipk, isk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sk_backups (
    id         TEXT PRIMARY KEY,
    tname      TEXT NOT NULL,
    spec       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    items      INTEGER NOT NULL,
    bytes      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sk_backup_items (
    bid  TEXT NOT NULL,
    pk   BLOB NOT NULL,
    sk   BLOB NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (bid, pk, sk)
) WITHOUT ROWID;
"""
SCHEMA_VERSION = "3"
_INSERT_CHANGE = (
    "INSERT INTO sk_changes (seq, tid, tname, event, txn, key, record, created_ms, publish, image,"
    " ipk, isk) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)

_MAX_GROUP = 1024  # jobs per group commit
_CHECKPOINT_EVERY = 100  # commits between passive checkpoints (run by the reader thread)
_WAL_LIMIT_MB = 64  # default journal_size_limit, and the size the idle shrink aims below
# the watcher of other processes' commits: poll step, idle wait between file events,
# and how long to look closely after one
_WATCH_STEP = 0.002
_WATCH_IDLE = 0.5
_WATCH_HOT = 0.05
_logger = logging.getLogger("streamkit.storage")
_IDLE_S = 1.0  # writer idle this long after a commit: shrink the WAL if it is over the limit
_IDLE_MAX_S = 8.0  # the longest wait between shrink attempts while old readers hold it
_SHRINK_WAIT_MS = 50  # how long a truncating checkpoint waits for readers (holding the lock)
_BUSY_MS = 30_000  # every connection's busy timeout otherwise
_DIRECT_YIELD = 64  # point reads on the calling thread between two yields to the event loop
_GET = "SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?"
_SIZES_KEPT = 65_536  # item collection sizes a writer connection keeps (``_Rows``)
_MODES = ("ro", "rw", "rwc")  # like SQLite's URI mode: read-only / existing / create
_HEADER = b"SQLite format 3\x00"
# streamkit's own tables: a file holding only (some of) these is a store whose creation
# was interrupted, not a foreign database
_OWN_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))

# a queued unit of work: (is_write, fn, future). fn runs on the worker thread.
_Work = tuple[bool, Callable[[Any], Any], "asyncio.Future[Any] | None"]
# a finished unit: (future or None for fire-and-forget work, value, error)
_Result = tuple["asyncio.Future[Any] | None", Any, BaseException | None]


def _insert_table(rows: _Rows, spec: TableSpec) -> TableSpec:
    created = datetime.now(UTC)
    try:
        cur = rows.conn.execute(
            "INSERT INTO sk_tables (name, spec) VALUES (?, ?)", (spec.name, "{}")
        )
    except sqlite3.IntegrityError:
        raise TableExists(f"table {spec.name!r} already exists", table=spec.name) from None
    table_id = cur.lastrowid
    assert table_id is not None
    done = spec.with_id(table_id, created)
    rows.writes += 1
    rows.conn.execute("UPDATE sk_tables SET spec=? WHERE id=?", (done.to_json(), table_id))
    return done


def _backup(
    conn: sqlite3.Connection, name: str, tid: int, spec: str, backup_id: str, kind: str
) -> BackupInfo:
    count, size = copy_backup(conn, tid, backup_id)
    created = time.time_ns() // 1_000_000
    conn.execute(
        "INSERT INTO sk_backups (id, tname, spec, kind, created_ms, items, bytes) "
        "VALUES (?,?,?,?,?,?,?)",
        (backup_id, name, spec, kind, created, count, size),
    )
    return _backup_info((backup_id, name, spec, kind, created, count, size))


def _store_spec(rows: _Rows, spec: TableSpec, only_if_epoch: int | None = None) -> TableSpec:
    """Store a table's changed settings with the next settings epoch (writes prepared
    with the old one are refused and rerun: see ``_writes.StaleCatalog``)."""
    row = rows.conn.execute(
        "SELECT coalesce(json_extract(spec, '$.epoch'), 0) FROM sk_tables WHERE id=? AND name=?",
        (spec.table_id, spec.name),
    ).fetchone()
    if row is None:
        raise TableNotFound(f"table {spec.name!r} does not exist", table=spec.name)
    if only_if_epoch is not None and int(row[0]) != only_if_epoch:
        raise StaleCatalog(spec.name)
    stored = dataclasses.replace(spec, epoch=int(row[0]) + 1)
    rows.conn.execute("UPDATE sk_tables SET spec=? WHERE id=?", (stored.to_json(), spec.table_id))
    rows._slots.pop(spec.table_id, None)
    return stored


def _backup_info(row: Sequence[Any]) -> BackupInfo:
    bid, name, spec, kind, created, count, size = row
    return BackupInfo(bid, name, TableSpec.from_json(name, 0, spec), kind, created, count, size)


def _version(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone()
    except sqlite3.OperationalError:  # a new file
        return None
    return None if row is None else str(row[0])


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


class _Rows:
    """The write-side ``Rows`` of a job and the read primitives, over one connection.

    Writes are deferred: ``store``/``remove``/``append_change`` fill an in-memory
    overlay that ``load`` consults, and ``flush`` hands them to SQLite with one
    ``executemany`` per statement just before COMMIT. A group of jobs then costs
    three statement executions instead of three per job, and every job still
    sees the writes of the jobs before it.

    Item collection sizes (tables with local indexes) are not stored: a collection's
    size is the sum of the ``size`` column over its item rows and local index rows,
    read once and then kept up to date in ``_sizes`` by the jobs of this connection,
    until another connection commits (``data_version``) or a transaction rolls back.
    A counter row per partition would add a page to every write's commit.
    """

    __slots__ = ("_changes", "_items", "_sizes", "_slots", "_version", "conn", "seq", "writes")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.seq = 0
        self.writes = 0
        # (tid, pk, sk) -> (data, size, expires) to store, or None to delete
        self._items: dict[tuple[int, bytes, bytes], tuple[bytes, int, float | None] | None] = {}
        self._changes: list[tuple[Any, ...]] = []
        self._slots: dict[int, int | None] = {}  # settings epoch per table, read once per group
        self._sizes: dict[tuple[int, bytes], int] = {}  # item collection sizes known
        # the file's PRAGMA data_version when seq and _slots were read (None: read again)
        self._version: int | None = None

    # --- write side (writer thread, inside BEGIN IMMEDIATE) ---
    def load(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        items = self._items
        if items:
            ident = (table_id, pk, sk)
            if ident in items:
                pending = items[ident]
                return None if pending is None else (pending[0], pending[1])
        return self.get(table_id, pk, sk)

    def store(
        self, table_id: int, pk: bytes, sk: bytes, data: bytes, size: int, expires: float | None
    ) -> None:
        self.writes += 1
        self._items[(table_id, pk, sk)] = (data, size, expires)

    def remove(self, table_id: int, pk: bytes, sk: bytes) -> None:
        self.writes += 1
        self._items[(table_id, pk, sk)] = None

    def next_sequence(self) -> int:
        self.seq += 1
        return self.seq

    def append_change(
        self,
        seq: int,
        table_id: int,
        table: str,
        event: str,
        txn: int | None,
        key: bytes,
        record: bytes,
        created_ms: int,
        publish: bool,
        image: bytes | None,
        pk: bytes,
        sk: bytes,
    ) -> None:
        self.writes += 1
        self._changes.append(
            (seq, table_id, table, event, txn, key, record, created_ms, int(publish), image, pk, sk)
        )

    def meta_get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM sk_meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def epoch(self, table_id: int) -> int | None:
        slots = self._slots
        if table_id not in slots:
            row = self.conn.execute(
                "SELECT coalesce(json_extract(spec, '$.epoch'), 0) FROM sk_tables WHERE id=?",
                (table_id,),
            ).fetchone()
            slots[table_id] = None if row is None else int(row[0])
        return slots[table_id]

    def collection_size(self, spec: TableSpec, pk: bytes) -> int:
        ident = (spec.table_id, pk)
        size = self._sizes.get(ident)
        if size is None:
            self.flush()  # the rows this transaction wrote so far count too
            tids = [spec.table_id]
            tids += [ix.storage_id(spec.table_id) for ix in spec.indexes if ix.kind == "LOCAL"]
            size = int(
                self.conn.execute(
                    "SELECT coalesce(sum(size), 0) FROM sk_items "
                    f"WHERE tid IN ({','.join('?' * len(tids))}) AND pk=?",
                    (*tids, pk),
                ).fetchone()[0]
            )
            self._note_size(ident, size)
        return size

    def set_collection_size(self, spec: TableSpec, pk: bytes, size: int) -> None:
        self.writes += 1
        self._note_size((spec.table_id, pk), size)

    def _note_size(self, ident: tuple[int, bytes], size: int) -> None:
        sizes = self._sizes
        if len(sizes) >= _SIZES_KEPT and ident not in sizes:
            sizes.clear()  # read again when next written
        sizes[ident] = size

    def meta_set(self, key: str, value: str) -> None:
        self.writes += 1
        self.conn.execute("INSERT OR REPLACE INTO sk_meta (key, value) VALUES (?, ?)", (key, value))

    def flush(self) -> None:
        """Write the deferred rows (inside the open transaction)."""
        items, changes = self._items, self._changes
        if items:
            stores = [
                (t, p, s, v[0], v[1], v[2]) for (t, p, s), v in items.items() if v is not None
            ]
            deletes = [k for k, v in items.items() if v is None]
            if stores:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO sk_items (tid, pk, sk, data, size, expires) "
                    "VALUES (?,?,?,?,?,?)",
                    stores,
                )
            if deletes:
                self.conn.executemany("DELETE FROM sk_items WHERE tid=? AND pk=? AND sk=?", deletes)
            items.clear()
        if changes:
            self.conn.executemany(
                _INSERT_CHANGE,
                changes,
            )
            changes.clear()

    def discard(self) -> None:
        """Forget deferred rows (the transaction is being rolled back)."""
        self._items.clear()
        self._changes.clear()
        self._sizes.clear()
        self._version = None

    def max_sequence(self) -> int:
        return int(self.conn.execute("SELECT max(seq) FROM sk_changes").fetchone()[0] or 0)

    def read_sequence(self) -> None:
        # Read inside every write transaction, so two processes sharing a file never
        # reuse a number. Pruning the archive always keeps the newest row, so the
        # maximum never goes back.
        # Another connection's commit changes the file's data_version; while it stays,
        # the number this connection last used and the epochs it read still hold.
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return
        self.seq = self.max_sequence()
        self._slots.clear()  # and the catalog as it is in this transaction
        self._sizes.clear()  # and the item collections
        self._version = version

    def forget(self) -> None:
        """Read the sequence and the catalog again at the next write transaction (after a
        rollback, or work that wrote SQL of its own)."""
        self._sizes.clear()
        self._version = None

    # --- read side ---
    def get(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        row: tuple[bytes, int] | None = self.conn.execute(
            "SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?", (table_id, pk, sk)
        ).fetchone()
        return row

    def range(
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
        sql = ["SELECT sk, data FROM sk_items WHERE tid=? AND pk=?"]
        args: list[Any] = [table_id, pk]
        if low is not None:
            sql.append("AND sk >= ?" if low_inclusive else "AND sk > ?")
            args.append(low)
        if high is not None:
            sql.append("AND sk <= ?" if high_inclusive else "AND sk < ?")
            args.append(high)
        sql.append("ORDER BY sk DESC LIMIT ?" if reverse else "ORDER BY sk LIMIT ?")
        args.append(limit)
        return self.conn.execute(" ".join(sql), args).fetchall()

    def scan(
        self,
        table_id: int,
        *,
        after: tuple[bytes, bytes] | None,
        limit: int,
        segment: int,
        total_segments: int,
    ) -> list[tuple[bytes, bytes, bytes]]:
        sql = ["SELECT pk, sk, data FROM sk_items WHERE tid=?"]
        args: list[Any] = [table_id]
        if after is not None:
            # a row value, so the primary key index seeks to it: the form
            # "pk > ? OR (pk = ? AND sk > ?)" made every page read the table from its start
            sql.append("AND (pk, sk) > (?, ?)")
            args.extend(after)
        if total_segments > 1:
            sql.append("AND sk_segment(pk, ?) = ?")
            args.extend((total_segments, segment))
        sql.append("ORDER BY pk, sk LIMIT ?")
        args.append(limit)
        return self.conn.execute(" ".join(sql), args).fetchall()

    def expired(self, table_id: int, cutoff: float, limit: int) -> list[bytes]:
        rows = self.conn.execute(
            "SELECT data FROM sk_items WHERE tid=? AND expires IS NOT NULL "
            "AND expires <= ? AND expires >= ? ORDER BY expires LIMIT ?",
            (table_id, cutoff, cutoff - 5 * 365 * 86400.0, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        rows = self.conn.execute(
            "SELECT seq, tid, tname, event, txn, key, record, created_ms, publish, image "
            "FROM sk_changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [
            ChangeRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9])
            for r in rows
        ]


class _JobRunner:
    """A write job as queued work (the writer defers its row writes to the group's flush)."""

    __slots__ = ("job",)

    def __init__(self, job: WriteJob) -> None:
        self.job = job

    def __call__(self, rows: _Rows) -> list[WriteResult]:
        return run_job(rows, self.job)


@contextlib.contextmanager
def _one_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Several reads in one read transaction: one consistent snapshot under WAL (a
    no-op inside a transaction already open, as on ``memory://``'s single connection)."""
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        yield
    finally:
        if began:
            conn.execute("COMMIT")


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


def _ro_uri(path: str, *, immutable: bool = False) -> str:
    """A read-only ``file:`` URI of ``path`` (``immutable``: not even -wal/-shm files)."""
    return Path(path).resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")


def _not_a_store(path: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{path} is not a streamkit store: {why}. It was left unchanged; point the "
        "storage URL at a streamkit store or at a new file"
    )


def _inspect_file(path: str) -> str | None:
    """What is at ``path``, found without changing anything there.

    None for a new store: no file, an empty one, or a SQLite database holding no
    tables but streamkit's (a store whose creation was cut short). Otherwise the
    streamkit schema version stored in it. Raises ConfigurationError for anything
    else: a file that is not a SQLite database, or one with other tables and no
    ``sk_meta`` schema row.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigurationError(f"cannot open {path} as a streamkit store: {e}") from None
    if not header:
        return None
    if len(header) < 100 or not header.startswith(_HEADER):
        raise _not_a_store(path, "not a SQLite database")
    # A WAL database closed cleanly has no -wal file; a mode=ro connection would create
    # -wal and -shm files next to it (and leave them). With no -wal file, the database
    # file is all there is, so reading it as immutable is exact; if that read fails
    # (someone started writing meanwhile), a plain read-only connection decides.
    uris = [_ro_uri(path)]
    if header[18] == 2 and not os.path.exists(f"{path}-wal"):
        uris.insert(0, _ro_uri(path, immutable=True))
    for i, uri in enumerate(uris):
        try:
            return _classify(path, uri)
        except sqlite3.DatabaseError as e:
            if i + 1 < len(uris) and e.sqlite_errorname != "SQLITE_NOTADB":
                continue
            if e.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise _not_a_store(path, f"SQLite cannot read it: {e}") from None
            err = StorageError(
                f"cannot read {path}: {e}",
                retriable=e.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"),
            )
            raise err from e
    raise AssertionError("unreachable")  # pragma: no cover


def _classify(path: str, uri: str) -> str | None:
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000)
    try:
        names = {
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        if "sk_meta" in names:
            try:
                row = conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone()
            except sqlite3.OperationalError:  # a foreign table called sk_meta
                row = None
            if row is not None:
                return str(row[0])
    finally:
        conn.close()
    others = sorted(n for n in names - _OWN_TABLES if not n.startswith("sqlite_"))
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise _not_a_store(path, f"it holds other tables ({shown}) and no streamkit schema")
    return None


_NOTHING: Any = object()


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


def _get_one(conn: sqlite3.Connection, table_id: int, pk: bytes, sk: bytes) -> Any:
    # fetchall, not fetchone: the statement runs to its end and is reset, so no read
    # transaction stays open on the connection after the call
    rows = conn.execute(_GET, (table_id, pk, sk)).fetchall()
    return rows[0] if rows else None


def _get_keys(
    conn: sqlite3.Connection, table_id: int, keys: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, int]]:
    with _one_snapshot(conn):  # one snapshot for the whole batch
        out = []
        for pk, sk in keys:
            rows = conn.execute(_GET, (table_id, pk, sk)).fetchall()
            if rows:
                out.append(rows[0])
        return out


def segment_of(pk: bytes, total: int) -> int:
    """The parallel-scan segment of a partition key (stable across processes)."""
    return zlib.crc32(pk) % total


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


def _wrap(e: BaseException) -> BaseException:
    if isinstance(e, StreamkitError) or not isinstance(e, Exception):
        return e
    if isinstance(e, sqlite3.Error):
        err = StorageError(f"storage failed: {e}")
        err.__cause__ = e
        return err
    return e


def _wal_size(path: str) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0


def _parse_url(url: str) -> tuple[str | None, dict[str, str]]:
    parts = urlsplit(url)
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        return None, opts
    if parts.scheme != "sqlite":
        raise ConfigurationError(
            f"unsupported storage URL {url!r}: use sqlite:///path or memory://"
        )
    path = parts.path
    if parts.netloc:
        raise ConfigurationError(
            f"storage URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs -> /abs
    if not path:
        raise ConfigurationError(f"storage URL {url!r} has no file path")
    if path == ":memory:":
        return None, opts
    return path, opts


def read_only_url(url: str) -> str:
    """``url`` with ``mode=ro`` when it names a SQLite file: for commands that only
    read, so that a mistyped path or a foreign file is reported, never created or
    changed. Other URLs (``memory://``, PostgreSQL) come back unchanged."""
    if urlsplit(url).scheme != "sqlite" or _parse_url(url)[0] is None:
        return url
    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "mode"]
    return f"{base}?{urlencode([*kept, ('mode', 'ro')])}"


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
        self.path, opts = _parse_url(url)
        sync = opts.get("synchronous", "NORMAL").upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(f"synchronous={sync!r} must be OFF, NORMAL, FULL or EXTRA")
        self._synchronous = sync
        mode = opts.get("mode", "rwc").lower()
        if mode not in _MODES:
            raise ConfigurationError(
                f"storage URL {url!r}: mode={mode!r} must be ro (an existing store, "
                "read-only), rw (an existing store) or rwc (create it if absent; the default)"
            )
        if mode != "rwc" and self.path is None:
            raise ConfigurationError(
                f"storage URL {url!r}: mode={mode} needs an existing store; "
                "an in-memory store is always new"
            )
        self._mode = mode
        limit = opts.get("wal_limit_mb", str(_WAL_LIMIT_MB))
        try:
            limit_mb = int(limit)
        except ValueError:
            limit_mb = -1
        if limit_mb < 0:
            raise ConfigurationError(
                f"storage URL {url!r}: wal_limit_mb={limit!r} must be a whole number of MiB >= 0"
            )
        self._wal_limit = limit_mb * 1024 * 1024
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None
        # point reads on the calling thread (file stores; see the module docstring)
        self._direct: sqlite3.Connection | None = None
        self._direct_lock = threading.Lock()
        # per event loop, the turn's first write while it is alone, None once another
        # came (see write)
        self._held: dict[asyncio.AbstractEventLoop, _Work | None] = {}
        self._direct_reads = 0
        self._open_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._watcher: threading.Thread | None = None
        self._commits = 0
        # the idle WAL shrink (writer thread; `_shrinking` is cleared by the reader thread)
        self._wal_due = False  # a commit since the WAL was last seen within its limit
        self._wal_wait = _IDLE_S
        self._shrinking = False
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
            conn = self._connect_file(self.path, first=write)
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.create_function("sk_segment", 2, segment_of, deterministic=True)
            if write and not self.read_only:
                self._prepare_schema(conn)
            else:
                conn.execute("PRAGMA query_only=ON")
                if write:  # a read-only store: its id is read, never set
                    row = conn.execute("SELECT value FROM sk_meta WHERE key='storage_id'")
                    self.storage_id = next((str(v) for (v,) in row), "")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_file(self, path: str, *, first: bool) -> sqlite3.Connection:
        if first:
            # decide what the file is before anything can change it (no WAL switch,
            # no CREATE on a foreign database; no directory or file for a wrong path)
            version = _inspect_file(path)
            if version is None and self._mode != "rwc":
                raise ConfigurationError(
                    f"no streamkit store at {path} (mode={self._mode} opens an existing "
                    "store only; it creates no file, directory or schema)"
                )
            if self.read_only and version != SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.url}: storage schema version {version} cannot be read here "
                    f"(this streamkit uses {SCHEMA_VERSION}; opening it without mode=ro "
                    "migrates a version 2 store)"
                )
        if self._mode == "rwc":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=_BUSY_MS / 1000
            )
        else:
            uri = Path(path).resolve().as_uri() + f"?mode={self._mode}"
            conn = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_MS / 1000,
            )
        try:
            if not self.read_only:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
                # a reset WAL is truncated to this; the idle shrink empties it
                conn.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
                # the reader thread checkpoints (passively, off the write path); this is
                # only the safety net if it falls far behind
                conn.execute("PRAGMA wal_autocheckpoint=20000")
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        with conn:
            if _version(conn) == "2":
                migrate_2_to_3(conn)
            conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone()
        if row is None:
            conn.execute("INSERT INTO sk_meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.url}: storage schema version {row[0]} is not supported "
                f"(this streamkit uses {SCHEMA_VERSION})"
            )
        conn.execute(
            "INSERT OR IGNORE INTO sk_meta VALUES ('storage_id', ?)", (uuid.uuid4().hex[:16],)
        )
        # item collection counters an earlier streamkit kept here: sizes are summed now
        conn.execute("DELETE FROM sk_meta WHERE key >= 'collection/' AND key < 'collection0'")
        self.storage_id = conn.execute(
            "SELECT value FROM sk_meta WHERE key='storage_id'"
        ).fetchone()[0]

    async def open(self) -> None:
        """Start the worker threads (idempotent)."""
        if self._writer is not None:
            return
        with self._open_lock:
            if self._writer is not None:
                return
            # a file opened read-write gets a reader thread and the idle WAL shrink; a
            # read-only one (and memory) a single thread
            two = self.path is not None and not self.read_only
            # a WAL left large by an earlier run shrinks too, once the writer is idle
            self._wal_due, self._wal_wait, self._shrinking = two, _IDLE_S, False
            writer = _Worker(
                "streamkit-sqlite-writer",
                lambda: self._connect(write=True),
                self,
                idle=two,
                in_place=True,
            )
            writer.start()
            await asyncio.to_thread(writer.ready.wait)
            if writer.error is not None:
                raise self.wrap(writer.error)
            reader = writer
            if two:
                reader = _Worker(
                    "streamkit-sqlite-reader", lambda: self._connect(write=False), self
                )
                reader.start()
                await asyncio.to_thread(reader.ready.wait)
                if reader.error is not None:
                    writer.queue.put(None)
                    raise self.wrap(reader.error)
            direct = None
            if self.path is not None:
                try:
                    direct = await asyncio.to_thread(self._connect_direct)
                except BaseException:
                    for w in {writer, reader}:
                        w.queue.put(None)
                    raise
            self._writer, self._reader, self._direct = writer, reader, direct

    def _connect_direct(self) -> sqlite3.Connection:
        """The connection for point reads on the calling thread: read-only, never waits."""
        conn = self._connect(write=False)
        conn.execute("PRAGMA busy_timeout=0")
        return conn

    async def close(self) -> None:
        """Finish queued work, stop the threads, close the connections."""
        writer, reader, direct = self._writer, self._reader, self._direct
        self._writer = self._reader = self._direct = None
        for w in {writer, reader}:
            if w is not None:
                w.queue.put(None)
        for w in {writer, reader}:
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
        """
        writer = self._writer
        if writer is None:
            raise StorageError(f"storage {self.url} is not open (or was closed)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[WriteResult]] = loop.create_future()
        work: _Work = (True, _JobRunner(job), fut)
        held = self._held.get(loop, _NOTHING)
        if held is _NOTHING:  # the turn's first write: hold it
            self._held[loop] = work
            loop.call_soon(self._run_held, loop, writer)
        else:  # not alone: the turn's writes go to the writer thread
            if held is not None:
                writer.queue.put(held)
                self._held[loop] = None
            writer.queue.put(work)
        return await fut

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
        if writer.queue.empty() and writer.lock.acquire(blocking=False):
            try:
                value, error = writer.run_here(work[1])
            except _Fallback:
                pass
            else:
                if error is None:
                    fut.set_result(value)
                else:
                    fut.set_exception(error)
                return
            finally:
                writer.lock.release()
        writer.queue.put(work)

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

    async def state_at(self, table_id: int, at_ms: int) -> list[StateRow]:
        """The newest archive row of every item at ``at_ms`` (REMOVEs left out)."""
        return await self.read(lambda rows: list(state_rows(rows.conn, table_id, at_ms)))

    # --- leases ----------------------------------------------------------------------------
    async def try_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew a lease (kept in ``sk_meta`` as ``holder expiry``)."""

        def fn(rows: _Rows) -> bool:
            key = f"lease.{name}"
            now = time.time()
            stored = rows.meta_get(key)
            if stored is not None:
                current, _, until = stored.rpartition(" ")
                if current != holder and float(until) > now:
                    return False
            rows.meta_set(key, f"{holder} {now + seconds}")
            return True

        return await self.write_fn(fn)

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""

        def fn(rows: _Rows) -> None:
            key = f"lease.{name}"
            stored = rows.meta_get(key)
            if stored is not None and stored.rpartition(" ")[0] == holder:
                rows.writes += 1
                rows.conn.execute("DELETE FROM sk_meta WHERE key=?", (key,))

        await self.write_fn(fn)

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
        """Prune and compact the archive (see :func:`streamkit.storage._archive.compact`)."""

        def fn(rows: _Rows) -> int:
            rows.writes += 1
            # the catalog read in the same transaction: a table another process just
            # created is never mistaken for a deleted one
            cutoffs = {
                s.table_id: now_ms - s.recovery_days * 86_400_000
                for s in (
                    TableSpec.from_json(n, i, t)
                    for i, n, t in rows.conn.execute("SELECT id, name, spec FROM sk_tables")
                )
                if s.pitr
            }
            return compact(rows.conn, upto=upto, cutoffs=cutoffs, limit=limit)

        return await self.write_fn(fn)

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
        """Count a commit (writer thread); every so often ask the reader to checkpoint."""
        self._commits += 1
        self._wal_due = True
        self._wal_wait = _IDLE_S
        reader = self._reader
        if self._commits >= _CHECKPOINT_EVERY and reader is not None and reader is not self._writer:
            self._commits = 0
            reader.queue.put((False, _checkpoint, None))

    def idle_wait(self) -> float | None:
        """Seconds the writer thread may wait for work before calling :meth:`idle`."""
        return self._wal_wait if self._wal_due else None

    def idle(self) -> None:
        """The writer has had nothing to do for ``idle_wait()`` seconds (writer thread).

        While the WAL is over ``wal_limit_mb``, ask the reader thread to checkpoint and
        truncate it, off the write path; while old readers keep it, try again after
        twice the wait (up to ``_IDLE_MAX_S``).
        """
        path, reader = self.path, self._reader
        if path is None or _wal_size(path) <= self._wal_limit:
            self._wal_due = False
            return
        self._wal_wait = min(self._wal_wait * 2, _IDLE_MAX_S)
        if reader is not None and reader is not self._writer and not self._shrinking:
            self._shrinking = True
            reader.queue.put((False, self._shrink, None))

    def _shrink(self, rows: _Rows) -> bool:
        """Reader thread: checkpoint and truncate the WAL (see :func:`_shrink_wal`)."""
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

        def fn(rows: _Rows) -> TableSpec:
            done = _insert_table(rows, spec)
            tid = done.table_id
            now_ms = time.time_ns() // 1_000_000
            for i, (pk, sk, data, size, expires) in enumerate(items):
                rows.store(tid, pk, sk, data, size, expires)
                if archive is not None:
                    seq = rows.next_sequence()
                    key, record = archive(done, i, seq, now_ms)
                    rows.append_change(
                        seq,
                        tid,
                        done.name,
                        "INSERT",
                        None,
                        key,
                        record,
                        now_ms,
                        False,
                        None,
                        pk,
                        sk,
                    )
            for sid, pk, sk, data, size in index_rows(done, items):
                rows.store(sid, pk, sk, data, size, None)
            return done

        return await self.write_fn(fn)

    # --- backups -----------------------------------------------------------------------
    async def create_backup(self, name: str, backup_id: str, kind: str) -> BackupInfo:
        """Copy a table's items into a new backup, consistently (one transaction)."""

        def fn(rows: _Rows) -> BackupInfo:
            row = rows.conn.execute(
                "SELECT id, spec FROM sk_tables WHERE name=?", (name,)
            ).fetchone()
            if row is None:
                raise TableNotFound(f"table {name!r} does not exist", table=name)
            rows.writes += 1
            return _backup(rows.conn, name, row[0], row[1], backup_id, kind)

        return await self.write_fn(fn)

    async def list_backups(self, table: str | None = None) -> list[BackupInfo]:
        """Every backup (of one table), oldest first."""

        def fn(rows: _Rows) -> list[BackupInfo]:
            sql = "SELECT id, tname, spec, kind, created_ms, items, bytes FROM sk_backups"
            args: tuple[Any, ...] = ()
            if table is not None:
                sql += " WHERE tname=?"
                args = (table,)
            return [_backup_info(r) for r in rows.conn.execute(sql + " ORDER BY created_ms", args)]

        return await self.write_fn(fn)

    async def backup_items(self, backup_id: str) -> tuple[BackupInfo, list[ItemRow]]:
        """A backup's description and items ((pk, sk, data), key order)."""

        def fn(rows: _Rows) -> tuple[BackupInfo, list[ItemRow]]:
            row = rows.conn.execute(
                "SELECT id, tname, spec, kind, created_ms, items, bytes FROM sk_backups WHERE id=?",
                (backup_id,),
            ).fetchone()
            if row is None:
                raise BackupNotFound(f"backup {backup_id!r} does not exist")
            return _backup_info(row), list(backup_rows(rows.conn, backup_id))

        return await self.read(fn)

    async def delete_backup(self, backup_id: str) -> BackupInfo:
        """Delete a backup and its items."""

        def fn(rows: _Rows) -> BackupInfo:
            row = rows.conn.execute(
                "SELECT id, tname, spec, kind, created_ms, items, bytes FROM sk_backups WHERE id=?",
                (backup_id,),
            ).fetchone()
            if row is None:
                raise BackupNotFound(f"backup {backup_id!r} does not exist")
            rows.writes += 1
            rows.conn.execute("DELETE FROM sk_backup_items WHERE bid=?", (backup_id,))
            rows.conn.execute("DELETE FROM sk_backups WHERE id=?", (backup_id,))
            return _backup_info(row)

        return await self.write_fn(fn)

    async def delete_table(self, name: str) -> TableSpec:
        """Remove a table and all its items (its change records stay in the archive)."""

        def fn(rows: _Rows) -> TableSpec:
            row = rows.conn.execute(
                "SELECT id, spec FROM sk_tables WHERE name=?", (name,)
            ).fetchone()
            if row is None:
                raise TableNotFound(f"table {name!r} does not exist", table=name)
            rows.writes += 1
            spec = TableSpec.from_json(name, row[0], row[1])
            if spec.pitr:  # as DynamoDB does: a system backup of a PITR table it deletes
                _backup(rows.conn, name, row[0], row[1], new_backup_id(name), "SYSTEM")
            rows.conn.execute("DELETE FROM sk_items WHERE tid=?", (row[0],))
            rows.conn.execute(
                "DELETE FROM sk_items WHERE tid BETWEEN ? AND ?", spec.index_storage_range()
            )
            rows.conn.execute("DELETE FROM sk_tables WHERE id=?", (row[0],))
            return spec

        return await self.write_fn(fn)

    async def update_table(
        self, spec: TableSpec, drop: Sequence[int] = (), *, only_if_epoch: int | None = None
    ) -> TableSpec:
        """Store changed settings of an existing table, and delete every row stored
        under the ids ``drop`` (a deleted index's entries), in one transaction."""

        def fn(rows: _Rows) -> TableSpec:
            rows.writes += 1
            stored = _store_spec(rows, spec, only_if_epoch)
            for sid in drop:
                rows.conn.execute("DELETE FROM sk_items WHERE tid=?", (sid,))
            return stored

        return await self.write_fn(fn)

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

        def fn(rows: _Rows) -> list[TableSpec]:
            return [
                TableSpec.from_json(n, i, s)
                for i, n, s in rows.conn.execute(
                    "SELECT id, name, spec FROM sk_tables ORDER BY name"
                )
            ]

        # the writer sees its own latest catalog even before the reader's snapshot moves
        return await self.write_fn(fn)
