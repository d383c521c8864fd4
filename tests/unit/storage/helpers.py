"""Test helpers: what the store committed to its outbox, a SQLite App's engine, and the
work SQLite does for a read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import streamkit as sk
from streamkit.records import decode_record
from streamkit.storage._sqlite import SqliteEngine

T = TypeVar("T")


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


def vm_steps(conn: sqlite3.Connection, read: Callable[[], T]) -> tuple[int, T]:
    """``read()``'s result and the SQLite virtual-machine steps it took on ``conn``, in
    hundreds (a progress handler): a cost that does not depend on the machine's speed."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        result = read()
    finally:
        conn.set_progress_handler(None, 0)
    return count[0], result
