"""The change archive in SQLite: compaction, reading a table as of an instant, backups.

``sk_changes`` is both the capture outbox and the point-in-time archive. Every row
carries its item's key bytes (``ipk``/``isk``), so the archive can answer "what was
this item at instant T": the item's newest row created at or before T (absent if
that row is a REMOVE, or if there is none).

**Compaction** keeps that answer right for every T inside a table's recovery window
while letting storage stay proportional to the data: once a row is older than its
table's window (and published), every older row of the same item is deleted, and
the row itself too if it is a REMOVE. What stays beyond the window is at most one
row per live item (``sk_archive_base`` remembers which). Rows of tables without
PITR (and of deleted tables) go as soon as they are published.

All functions here run on an engine thread with its connection, inside the
engine's transaction (writes) or read snapshot (reads).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

from streamkit.records._avro import decode_record

__all__ = (
    "archive_rows",
    "backup_rows",
    "compact",
    "copy_backup",
    "current_rows",
    "migrate_2_to_3",
    "state_rows",
)

_PRUNED = "archive.pruned"  # rows of tables without an archive are gone up to here
_COMPACTED = "archive.compacted"  # PITR rows are compacted up to here


def migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Give every change row its item's key bytes (schema 2 rows had only the message key)."""
    from streamkit.storage._spec import TableSpec

    cols = {r[1] for r in conn.execute("PRAGMA table_info(sk_changes)")}
    if "ipk" not in cols:
        conn.execute("ALTER TABLE sk_changes ADD COLUMN ipk BLOB")
        conn.execute("ALTER TABLE sk_changes ADD COLUMN isk BLOB")
    specs = {
        tid: TableSpec.from_json(name, tid, text)
        for tid, name, text in conn.execute("SELECT id, name, spec FROM sk_tables")
    }
    updates = []
    for seq, tid, record in conn.execute("SELECT seq, tid, record FROM sk_changes"):
        spec = specs.get(tid)
        if spec is not None:
            pk, sk = spec.key.extract(dict(decode_record(record).keys))
            updates.append((pk, sk, seq))
    conn.executemany("UPDATE sk_changes SET ipk=?, isk=? WHERE seq=?", updates)
    conn.execute("UPDATE sk_meta SET value='3' WHERE key='schema'")


def _meta_int(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM sk_meta WHERE key=?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute("INSERT OR REPLACE INTO sk_meta (key, value) VALUES (?, ?)", (key, str(value)))


def compact(conn: sqlite3.Connection, *, upto: int, cutoffs: Mapping[int, int], limit: int) -> int:
    """Prune and compact the archive; returns how many rows were deleted.

    Args:
        upto: rows after this sequence number are not all published yet: untouched.
        cutoffs: for each table keeping an archive (PITR on), the start of its
            recovery window (epoch ms). Rows of other tables go once published.
        limit: at most this many PITR rows are examined per call.
    """
    newest = int(conn.execute("SELECT max(seq) FROM sk_changes").fetchone()[0] or 0)
    bound = min(upto, newest - 1)  # the newest row always stays: numbering goes on from it
    deleted = 0
    kept = sorted(cutoffs)
    marks = ",".join("?" * len(kept))
    pruned = _meta_int(conn, _PRUNED)
    if bound > pruned:
        cur = conn.execute(
            f"DELETE FROM sk_changes WHERE seq > ? AND seq <= ? AND tid NOT IN ({marks})",
            (pruned, bound, *kept),
        )
        deleted += cur.rowcount
        conn.execute(f"DELETE FROM sk_archive_base WHERE tid NOT IN ({marks})", kept)
        _set_meta(conn, _PRUNED, bound)
    position = _meta_int(conn, _COMPACTED)
    doomed: list[tuple[int]] = []
    rows = conn.execute(
        "SELECT seq, tid, event, ipk, isk, created_ms FROM sk_changes "
        "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        (position, bound, limit),
    ).fetchall()
    for seq, tid, event, ipk, isk, created in rows:
        cutoff = cutoffs.get(tid)
        if cutoff is None:  # its table went since the first pass
            doomed.append((seq,))
        elif created >= cutoff:
            break  # inside the window: this row and everything after it stay
        elif ipk is not None:
            base = conn.execute(
                "SELECT seq FROM sk_archive_base WHERE tid=? AND ipk=? AND isk=?", (tid, ipk, isk)
            ).fetchone()
            if base is not None:
                doomed.append((base[0],))
            if event == "REMOVE":
                doomed.append((seq,))
                conn.execute(
                    "DELETE FROM sk_archive_base WHERE tid=? AND ipk=? AND isk=?", (tid, ipk, isk)
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO sk_archive_base (tid, ipk, isk, seq) VALUES (?,?,?,?)",
                    (tid, ipk, isk, seq),
                )
        position = seq
    if doomed:
        conn.executemany("DELETE FROM sk_changes WHERE seq = ?", doomed)
        deleted += len(doomed)
    _set_meta(conn, _COMPACTED, position)
    return deleted


def state_rows(
    conn: sqlite3.Connection, table_id: int, at_ms: int
) -> Iterator[tuple[bytes, bytes, bytes, bytes | None]]:
    """The newest row of every item created at or before ``at_ms``, REMOVEs left out:
    ``(pk, sk, record, image)`` in key order (the table as it was at that instant)."""
    cur = conn.execute(
        "SELECT c.ipk, c.isk, c.record, c.image FROM sk_changes c JOIN ("
        "  SELECT max(seq) AS seq FROM sk_changes WHERE tid=? AND created_ms <= ?"
        "  GROUP BY ipk, isk) m ON c.seq = m.seq "
        "WHERE c.event != 'REMOVE' ORDER BY c.ipk, c.isk",
        (table_id, at_ms),
    )
    yield from cur


def current_rows(conn: sqlite3.Connection, table_id: int) -> list[tuple[bytes, bytes, bytes]]:
    """``(pk, sk, data)`` of every item of a table now, in key order (one read snapshot)."""
    return conn.execute(
        "SELECT pk, sk, data FROM sk_items WHERE tid=? ORDER BY pk, sk", (table_id,)
    ).fetchall()


def archive_rows(
    conn: sqlite3.Connection,
    table_id: int,
    *,
    after_seq: int,
    since_ms: int,
    until_ms: int,
    before_seq: int | None,
    limit: int,
) -> list[tuple[int, int, bytes]]:
    """``(seq, created_ms, record)`` of a table's rows created in [since_ms, until_ms),
    after ``after_seq`` (and before ``before_seq``), in commit order, at most ``limit``."""
    sql = (
        "SELECT seq, created_ms, record FROM sk_changes WHERE seq > ? AND tid = ? "
        "AND created_ms >= ? AND created_ms < ?"
    )
    args: list[Any] = [after_seq, table_id, since_ms, until_ms]
    if before_seq is not None:
        sql += " AND seq < ?"
        args.append(before_seq)
    sql += " ORDER BY seq LIMIT ?"
    args.append(limit)
    return conn.execute(sql, args).fetchall()


def copy_backup(conn: sqlite3.Connection, table_id: int, backup_id: str) -> tuple[int, int]:
    """Copy a table's items into a backup (inside the caller's write transaction, so the
    copy is one consistent instant); returns (items, bytes)."""
    conn.execute(
        "INSERT INTO sk_backup_items (bid, pk, sk, data, size) "
        "SELECT ?, pk, sk, data, size FROM sk_items WHERE tid=?",
        (backup_id, table_id),
    )
    count, size = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM sk_backup_items WHERE bid=?", (backup_id,)
    ).fetchone()
    return int(count), int(size)


def backup_rows(conn: sqlite3.Connection, backup_id: str) -> Iterator[tuple[bytes, bytes, bytes]]:
    """``(pk, sk, data)`` of a backup's items in key order."""
    yield from conn.execute(
        "SELECT pk, sk, data FROM sk_backup_items WHERE bid=? ORDER BY pk, sk", (backup_id,)
    )
