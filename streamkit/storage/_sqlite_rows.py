"""The SQLite engine's schema and its ``_Rows``: the write side of a job (item rows and
change records deferred to one ``executemany`` per statement at the group's commit)
and the read primitives, over one connection; and the point reads, which run on any
connection (the reader thread's, or the read-only one on the calling thread).
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from streamkit.storage._engine import ChangeRow
from streamkit.storage._spec import TableSpec

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
-- sk_changes by table, for reading one table's archive (see _archive.py); filled by
-- compaction up to sk_meta 'archive.indexed', not by each write
CREATE TABLE IF NOT EXISTS sk_changes_by_table (
    tid        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    ipk        BLOB,
    isk        BLOB,
    PRIMARY KEY (tid, seq)
) WITHOUT ROWID;
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
_GET = "SELECT data, size FROM sk_items WHERE tid=? AND pk=? AND sk=?"
# a group's old rows in one statement; a few fixed sizes (a short chunk is padded with its
# first key again) keep the statement texts few, so they stay in sqlite3's statement cache
_PREFETCH_SIZES = (4, 16, 64)


def _prefetch_sql(n: int) -> str:
    return (
        "WITH k(t, p, s) AS (VALUES " + ",".join(["(?,?,?)"] * n) + ") "
        "SELECT k.t, k.p, k.s, i.data, i.size FROM k "
        "JOIN sk_items i ON i.tid = k.t AND i.pk = k.p AND i.sk = k.s"
    )


_PREFETCH_SQL = {n: _prefetch_sql(n) for n in _PREFETCH_SIZES}
_SIZES_KEPT = 65_536  # item collection sizes a writer connection keeps (``_Rows``)


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

    __slots__ = (
        "_changes",
        "_items",
        "_pre",
        "_sizes",
        "_slots",
        "_version",
        "conn",
        "seq",
        "writes",
    )

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.seq = 0
        self.writes = 0
        # (tid, pk, sk) -> (data, size, expires) to store, or None to delete
        self._items: dict[tuple[int, bytes, bytes], tuple[bytes, int, float | None] | None] = {}
        self._changes: list[tuple[Any, ...]] = []
        # rows read ahead for a group's jobs, as they are in this transaction (None: no
        # such row); kept equal to the file by flush, dropped by drop_prefetched
        self._pre: dict[tuple[int, bytes, bytes], tuple[bytes, int] | None] = {}
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
        pre = self._pre
        if pre:
            ident = (table_id, pk, sk)
            if ident in pre:
                return pre[ident]
        return self.get(table_id, pk, sk)

    def prefetch(self, keys: list[tuple[int, bytes, bytes]]) -> None:
        """Read the rows at ``keys`` in as few statements as the group allows, for
        :meth:`load` (the writer, for a group of jobs: one statement instead of one per
        job). Only inside the group's transaction; :meth:`drop_prefetched` at its end."""
        pre = self._pre
        items = self._items
        wanted = list(dict.fromkeys(k for k in keys if k not in pre and k not in items))
        if len(wanted) < 2:
            return
        conn = self.conn
        largest = _PREFETCH_SIZES[-1]
        for start in range(0, len(wanted), largest):
            chunk = wanted[start : start + largest]
            size = next(n for n in _PREFETCH_SIZES if n >= len(chunk))
            chunk += [chunk[0]] * (size - len(chunk))
            params = [v for k in chunk for v in k]
            for k in chunk:
                pre[k] = None
            for t, p, sk, data, n in conn.execute(_PREFETCH_SQL[size], params):
                pre[(t, p, sk)] = (data, n)

    def drop_prefetched(self) -> None:
        """Forget the rows read ahead (the group's transaction ends)."""
        self._pre.clear()

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
            pre = self._pre
            if pre:  # what was read ahead stays what the file now holds
                for k, v in items.items():
                    if k in pre:
                        pre[k] = None if v is None else (v[0], v[1])
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
        self._pre.clear()
        self._version = None

    def max_sequence(self) -> int:
        return max_sequence(self.conn)

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
        self._pre.clear()
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


def max_sequence(conn: sqlite3.Connection) -> int:
    """The newest change record's sequence number (0 when there is none)."""
    return int(conn.execute("SELECT max(seq) FROM sk_changes").fetchone()[0] or 0)


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
