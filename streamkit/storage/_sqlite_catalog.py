"""The SQLite engine's schema and catalog work: preparing a store's schema, and the
transactions on its tables and backups, the archive's pruning and the leases.

Each transaction is a function of a ``_Rows`` (the writer's, or the reader's to read a
backup), run by :class:`SqliteEngine` inside the transaction it opens for it: the
role ``_pg_schema`` plays for the PostgreSQL engine (the archive SQL itself is in
``_archive``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from streamkit.exceptions import BackupNotFound, ConfigurationError, TableExists, TableNotFound
from streamkit.storage._archive import (
    compact,
    copy_backup,
    index_archive,
    migrate_2_to_3,
    state_cursor,
)
from streamkit.storage._engine import (
    RESTORE_CHUNK,
    ArchiveRow,
    BackupInfo,
    BackupOf,
    RestoreFeed,
    StoredItem,
    new_backup_id,
)
from streamkit.storage._indexes import index_rows
from streamkit.storage._spec import TableSpec
from streamkit.storage._sqlite_rows import _SCHEMA, SCHEMA_VERSION, _Rows
from streamkit.storage._writes import StaleCatalog


def _version(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone()
    except sqlite3.OperationalError:  # a new file
        return None
    return None if row is None else str(row[0])


def _prepare_schema(conn: sqlite3.Connection, url: str) -> str:
    """Create (or migrate) the schema of the store open on ``conn``, the writer's first
    connection; its storage id."""
    with conn:
        if _version(conn) == "2":
            migrate_2_to_3(conn)
        conn.executescript(_SCHEMA)
    row = conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone()
    if row is None:
        conn.execute("INSERT INTO sk_meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif row[0] != SCHEMA_VERSION:
        raise ConfigurationError(
            f"{url}: storage schema version {row[0]} is not supported "
            f"(this streamkit uses {SCHEMA_VERSION})"
        )
    conn.execute("INSERT OR IGNORE INTO sk_meta VALUES ('storage_id', ?)", (uuid.uuid4().hex[:16],))
    # item collection counters an earlier streamkit kept here: sizes are summed now
    conn.execute("DELETE FROM sk_meta WHERE key >= 'collection/' AND key < 'collection0'")
    storage_id: str = conn.execute("SELECT value FROM sk_meta WHERE key='storage_id'").fetchone()[0]
    return storage_id


# --- tables and backups ---------------------------------------------------------------
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


def _load_table(
    rows: _Rows, spec: TableSpec, items: Sequence[StoredItem], archive: ArchiveRow | None
) -> TableSpec:
    """See :meth:`SqliteEngine.load_table`."""
    done = _insert_table(rows, spec)
    now_ms = time.time_ns() // 1_000_000

    def numbered(token: object, seq: int) -> tuple[bytes, bytes]:
        assert archive is not None
        return archive(done, cast(int, token), seq, now_ms)

    for start in range(0, len(items), RESTORE_CHUNK):
        numbers = range(start, min(len(items), start + RESTORE_CHUNK))
        _load_chunk(
            rows,
            done,
            [(items[i], i) for i in numbers],
            None if archive is None else numbered,
            now_ms,
        )
    return done


def _restore_table(rows: _Rows, spec: TableSpec, feed: RestoreFeed) -> TableSpec:
    """See :meth:`SqliteEngine.restore_table`."""
    source = feed.source
    if isinstance(source, BackupOf):
        _stored_backup(rows, source.backup_id)  # BackupNotFound
        cur = rows.conn.execute(
            "SELECT pk, sk, x'', data FROM sk_backup_items WHERE bid=?", (source.backup_id,)
        )
    else:
        cur = state_cursor(rows.conn, source.table_id, source.at_ms, ordered=False)
    done = _insert_table(rows, spec)
    now_ms = time.time_ns() // 1_000_000
    archive = feed.archive

    def record(token: object, seq: int) -> tuple[bytes, bytes]:
        assert archive is not None
        return archive(done, token, seq, now_ms)

    # the cursor reads the source while the chunks before are written: rows of another
    # table id, which it cannot meet
    while chunk := cur.fetchmany(RESTORE_CHUNK):
        _load_chunk(rows, done, feed.convert(chunk), None if archive is None else record, now_ms)
    return done


def _load_chunk(
    rows: _Rows,
    done: TableSpec,
    items: list[tuple[StoredItem, object]],
    archive: Callable[[object, int], tuple[bytes, bytes]] | None,
    now_ms: int,
) -> None:
    """Write one chunk of a loaded table: its items, their archive rows (with
    ``archive``) and index entries, flushed so that memory holds one chunk at a time."""
    tid = done.table_id
    for (pk, sk, data, size, expires), token in items:
        rows.store(tid, pk, sk, data, size, expires)
        if archive is not None:
            seq = rows.next_sequence()
            key, record = archive(token, seq)
            rows.append_change(
                seq, tid, done.name, "INSERT", None, key, record, now_ms, False, None, pk, sk
            )
    for sid, pk, sk, data, size in index_rows(done, [item for item, _ in items]):
        rows.store(sid, pk, sk, data, size, None)
    rows.flush()


def _create_backup(rows: _Rows, name: str, backup_id: str, kind: str) -> BackupInfo:
    """See :meth:`SqliteEngine.create_backup`."""
    row = rows.conn.execute("SELECT id, spec FROM sk_tables WHERE name=?", (name,)).fetchone()
    if row is None:
        raise TableNotFound(f"table {name!r} does not exist", table=name)
    rows.writes += 1
    return _backup(rows.conn, name, row[0], row[1], backup_id, kind)


def _list_backups(rows: _Rows, table: str | None) -> list[BackupInfo]:
    """See :meth:`SqliteEngine.list_backups`."""
    sql = "SELECT id, tname, spec, kind, created_ms, items, bytes FROM sk_backups"
    args: tuple[Any, ...] = ()
    if table is not None:
        sql += " WHERE tname=?"
        args = (table,)
    return [_backup_info(r) for r in rows.conn.execute(sql + " ORDER BY created_ms", args)]


def _stored_backup(rows: _Rows, backup_id: str) -> BackupInfo:
    """A backup's description; raises BackupNotFound."""
    row = rows.conn.execute(
        "SELECT id, tname, spec, kind, created_ms, items, bytes FROM sk_backups WHERE id=?",
        (backup_id,),
    ).fetchone()
    if row is None:
        raise BackupNotFound(f"backup {backup_id!r} does not exist")
    return _backup_info(row)


def _delete_backup(rows: _Rows, backup_id: str) -> BackupInfo:
    """See :meth:`SqliteEngine.delete_backup`."""
    info = _stored_backup(rows, backup_id)
    rows.writes += 1
    rows.conn.execute("DELETE FROM sk_backup_items WHERE bid=?", (backup_id,))
    rows.conn.execute("DELETE FROM sk_backups WHERE id=?", (backup_id,))
    return info


def _delete_table(rows: _Rows, name: str) -> TableSpec:
    """See :meth:`SqliteEngine.delete_table`."""
    row = rows.conn.execute("SELECT id, spec FROM sk_tables WHERE name=?", (name,)).fetchone()
    if row is None:
        raise TableNotFound(f"table {name!r} does not exist", table=name)
    rows.writes += 1
    spec = TableSpec.from_json(name, row[0], row[1])
    if spec.pitr:  # as DynamoDB does: a system backup of a PITR table it deletes
        _backup(rows.conn, name, row[0], row[1], new_backup_id(name), "SYSTEM")
    rows.conn.execute("DELETE FROM sk_items WHERE tid=?", (row[0],))
    rows.conn.execute("DELETE FROM sk_items WHERE tid BETWEEN ? AND ?", spec.index_storage_range())
    rows.conn.execute("DELETE FROM sk_tables WHERE id=?", (row[0],))
    return spec


def _update_table(
    rows: _Rows, spec: TableSpec, drop: Sequence[int], only_if_epoch: int | None
) -> TableSpec:
    """See :meth:`SqliteEngine.update_table`."""
    rows.writes += 1
    stored = _store_spec(rows, spec, only_if_epoch)
    for sid in drop:
        rows.conn.execute("DELETE FROM sk_items WHERE tid=?", (sid,))
    return stored


def _list_tables(rows: _Rows) -> list[TableSpec]:
    """See :meth:`SqliteEngine.list_tables`."""
    return [
        TableSpec.from_json(n, i, s)
        for i, n, s in rows.conn.execute("SELECT id, name, spec FROM sk_tables ORDER BY name")
    ]


# --- the archive and leases -----------------------------------------------------------
def _prune_changes(rows: _Rows, *, upto: int, now_ms: int, limit: int) -> tuple[int, bool]:
    """See :meth:`SqliteEngine.prune_changes`: the rows deleted, and whether rows are left
    to enter in the archive's index after the first batch, entered here."""
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
    deleted = compact(rows.conn, upto=upto, cutoffs=cutoffs, limit=limit)
    return deleted, index_archive(rows.conn)


def _index_archive(rows: _Rows) -> bool:
    """See :func:`streamkit.storage._archive.index_archive`."""
    rows.writes += 1
    return index_archive(rows.conn)


def _try_lease(rows: _Rows, name: str, holder: str, seconds: float) -> bool:
    """See :meth:`SqliteEngine.try_lease`."""
    key = f"lease.{name}"
    now = time.time()
    stored = rows.meta_get(key)
    if stored is not None:
        current, _, until = stored.rpartition(" ")
        if current != holder and float(until) > now:
            return False
    rows.meta_set(key, f"{holder} {now + seconds}")
    return True


def _release_lease(rows: _Rows, name: str, holder: str) -> None:
    """See :meth:`SqliteEngine.release_lease`."""
    key = f"lease.{name}"
    stored = rows.meta_get(key)
    if stored is not None and stored.rpartition(" ")[0] == holder:
        rows.writes += 1
        rows.conn.execute("DELETE FROM sk_meta WHERE key=?", (key,))
