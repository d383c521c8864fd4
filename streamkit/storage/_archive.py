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

**Reading one table's archive** (a restore's state at an instant, a table's changes in
a time range) must not read every other table's rows: ``sk_changes`` is in commit order
for the relay, across tables. An index on ``(tid, seq)`` would serve those reads, but it
costs every lone write one more B-tree page in its commit (12 to 34% of the raw put floor,
measured), so the index is kept apart and filled in bulk by compaction instead:
``sk_changes_by_table`` holds ``(tid, seq, created_ms, ipk, isk)`` of every row up to
``archive.indexed``, which compaction advances up to where rows of tables without PITR
are already pruned (so those are never entered). A read takes the table's entries up to
that position from the index and scans only the rows after it (the few since the last
compaction), in one snapshot; a store whose relay never compacted reads by scan, as
before. Up to the position every row has its entry (entered after the row, and numbers
are never reused); a row compaction deletes leaves the index in the same transaction
(an entry whose row is gone would only take space: the reads join the index to
``sk_changes``). Entering rows is a pass of its own after compaction, a batch of
INDEX_BATCH numbers per transaction, so writers are not held for long.

All functions here run on an engine thread with its connection, inside the
engine's transaction (writes) or read snapshot (reads).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from streamkit.records._avro import decode_record
from streamkit.storage._sqlite_rows import _one_snapshot, max_sequence

__all__ = (
    "archive_rows",
    "compact",
    "copy_backup",
    "current_rows",
    "index_archive",
    "migrate_2_to_3",
    "state_cursor",
    "state_rows",
)

_PRUNED = "archive.pruned"  # rows of tables without an archive are gone up to here
_COMPACTED = "archive.compacted"  # PITR rows are compacted up to here
_INDEXED = "archive.indexed"  # every row up to here is in sk_changes_by_table
INDEX_BATCH = 50_000  # sequence numbers entered in the index per compaction call, at most


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
    newest = max_sequence(conn)
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
    doomed: list[tuple[int, int]] = []  # (tid, seq)
    rows = conn.execute(
        "SELECT seq, tid, event, ipk, isk, created_ms FROM sk_changes "
        "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        (position, bound, limit),
    ).fetchall()
    for seq, tid, event, ipk, isk, created in rows:
        cutoff = cutoffs.get(tid)
        if cutoff is None:  # its table went since the first pass
            doomed.append((tid, seq))
        elif created >= cutoff:
            break  # inside the window: this row and everything after it stay
        elif ipk is not None:
            base = conn.execute(
                "SELECT seq FROM sk_archive_base WHERE tid=? AND ipk=? AND isk=?", (tid, ipk, isk)
            ).fetchone()
            if base is not None:
                doomed.append((tid, base[0]))
            if event == "REMOVE":
                doomed.append((tid, seq))
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
        conn.executemany("DELETE FROM sk_changes WHERE seq = ?", [(q,) for _, q in doomed])
        conn.executemany("DELETE FROM sk_changes_by_table WHERE tid = ? AND seq = ?", doomed)
        deleted += len(doomed)
    _set_meta(conn, _COMPACTED, position)
    return deleted


def index_archive(conn: sqlite3.Connection, batch: int = INDEX_BATCH) -> bool:
    """Enter the rows after ``archive.indexed`` in ``sk_changes_by_table``, up to where
    rows of tables without PITR are pruned and at most ``batch`` sequence numbers;
    True when more are left for another call."""
    indexed = _meta_int(conn, _INDEXED)
    pruned = _meta_int(conn, _PRUNED)
    upto = min(pruned, indexed + batch)
    if upto <= indexed:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO sk_changes_by_table (tid, seq, created_ms, ipk, isk) "
        "SELECT tid, seq, created_ms, ipk, isk FROM sk_changes WHERE seq > ? AND seq <= ?",
        (indexed, upto),
    )
    _set_meta(conn, _INDEXED, upto)
    return upto < pruned


def state_rows(
    conn: sqlite3.Connection, table_id: int, at_ms: int
) -> list[tuple[bytes, bytes, bytes, bytes | None]]:
    """The newest row of every item created at or before ``at_ms``, REMOVEs left out:
    ``(pk, sk, record, image)`` in key order (the table as it was at that instant)."""
    with _one_snapshot(conn):
        return state_cursor(conn, table_id, at_ms, ordered=True).fetchall()


def state_cursor(
    conn: sqlite3.Connection, table_id: int, at_ms: int, *, ordered: bool
) -> sqlite3.Cursor:
    """``state_rows`` as a cursor to read a chunk at a time (in the caller's transaction);
    ``ordered=False`` leaves out the final sort, which would hold every row at once."""
    indexed = _meta_int(conn, _INDEXED)
    if not indexed:
        newest = "SELECT max(seq) AS seq FROM sk_changes WHERE tid=? AND created_ms <= ?"
        args: tuple[int, ...] = (table_id, at_ms)
    else:  # the index up to its position, the rows after it
        newest = (
            "SELECT max(seq) AS seq FROM ("
            "  SELECT seq, ipk, isk FROM sk_changes_by_table"
            "   WHERE tid=? AND seq <= ? AND created_ms <= ?"
            "  UNION ALL"
            "  SELECT seq, ipk, isk FROM sk_changes"
            "   WHERE seq > ? AND tid=? AND created_ms <= ?)"
        )
        args = (table_id, indexed, at_ms, indexed, table_id, at_ms)
    order = " ORDER BY c.ipk, c.isk" if ordered else ""
    return conn.execute(
        "SELECT c.ipk, c.isk, c.record, c.image FROM sk_changes c JOIN ("
        f"{newest} GROUP BY ipk, isk) m ON c.seq = m.seq WHERE c.event != 'REMOVE'{order}",
        args,
    )


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

    def where(t: str) -> str:  # the conditions on table alias ``t``
        text = f"{t}tid = ? AND {t}seq > ? AND {t}created_ms >= ? AND {t}created_ms < ?"
        return text if before_seq is None else f"{text} AND {t}seq < ?"

    args: list[Any] = [table_id, after_seq, since_ms, until_ms]
    if before_seq is not None:
        args.append(before_seq)
    with _one_snapshot(conn):
        indexed = _meta_int(conn, _INDEXED)
        found: list[tuple[int, int, bytes]] = []
        if indexed > after_seq:  # the index up to its position...
            found = conn.execute(
                "SELECT c.seq, c.created_ms, c.record FROM sk_changes_by_table x "
                f"JOIN sk_changes c ON c.seq = x.seq WHERE {where('x.')} AND x.seq <= ? "
                "ORDER BY x.seq LIMIT ?",
                [*args, indexed, limit],
            ).fetchall()
            if len(found) == limit:
                return found
            args[1] = indexed  # ...and the rows after it
        tail = conn.execute(
            f"SELECT seq, created_ms, record FROM sk_changes WHERE {where('')} "
            "ORDER BY seq LIMIT ?",
            [*args, limit - len(found)],
        ).fetchall()
        return found + tail


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
