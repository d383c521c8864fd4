"""Test helpers: what the store committed to its outbox, and a SQLite App's engine."""

from __future__ import annotations

import streamkit as sk
from streamkit.records import decode_record
from streamkit.storage._sqlite import SqliteEngine


async def committed_records(app: sk.App, after: int = 0) -> list[sk.ChangeRecord]:
    """Every change record in the outbox after a sequence number, decoded, in commit order."""
    rows = await app._store.read_changes(after, 1_000_000)
    return [decode_record(r.record) for r in rows]


async def last_seq(app: sk.App) -> int:
    rows = await app._store.read_changes(0, 1_000_000)
    return rows[-1].seq if rows else 0


def sqlite_engine(app: sk.App) -> SqliteEngine:
    """The engine of an App on a SQLite file (fails if it is another)."""
    engine = app._store.engine
    assert isinstance(engine, SqliteEngine)
    return engine
