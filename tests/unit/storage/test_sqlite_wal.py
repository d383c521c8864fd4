"""The SQLite store's WAL stays bounded: ``journal_size_limit`` and, once the writer is
idle, a truncating checkpoint that never lets an old reader hold the writer up."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.storage._sqlite import SqliteEngine, _Rows

MiB = 1024 * 1024


def _wal(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


async def _pragma(engine: SqliteEngine, name: str, *, writer: bool = False) -> int:
    def fn(rows: _Rows) -> int:
        return int(rows.conn.execute(f"PRAGMA {name}").fetchone()[0])

    return await (engine.write_fn(fn) if writer else engine.read(fn))


@pytest.mark.parametrize(("query", "limit_mb"), [("", 64), ("?wal_limit_mb=5", 5)])
async def test_journal_size_limit_comes_from_the_url(
    tmp_path: Path, query: str, limit_mb: int
) -> None:
    engine = SqliteEngine(f"sqlite:///{tmp_path}/s.db{query}")
    await engine.open()
    try:
        assert await _pragma(engine, "journal_size_limit", writer=True) == limit_mb * MiB
        assert await _pragma(engine, "journal_size_limit") == limit_mb * MiB
    finally:
        await engine.close()


async def test_the_wal_shrinks_once_an_old_reader_lets_go_and_the_writer_is_idle(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    app = sk.App(storage=f"sqlite:///{path}?wal_limit_mb=1", log=f"local://{tmp_path}/log")
    other = sqlite3.connect(path, isolation_level=None)  # another process's long read
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "first"})
        other.execute("BEGIN")
        assert other.execute("SELECT count(*) FROM sk_items").fetchone()[0] == 1

        payload = "x" * 20_000
        for i in range(250):  # one commit each: the reader's passive checkpoints run too
            await items.put({"id": str(i), "payload": payload})
        grown = _wal(path)
        assert grown > 3 * MiB  # the snapshot keeps every frame in the WAL

        # idle past the shrink attempt: the old snapshot keeps the WAL, and a write
        # meanwhile is not held up by the attempt
        await asyncio.sleep(1.5)
        started = time.monotonic()
        await items.put({"id": "during"})
        assert time.monotonic() - started < 0.5
        assert _wal(path) >= grown

        other.execute("COMMIT")  # the reader lets go
        for _ in range(80):  # within 8 s
            if _wal(path) < 1 * MiB:
                break
            await asyncio.sleep(0.1)
        assert _wal(path) < 1 * MiB

        # nothing was lost on the way
        assert await items.get({"id": "249"}) == {"id": "249", "payload": payload}
        assert len([i async for i in items.scan()]) == 252
    finally:
        other.close()
        await app.close()


async def test_a_long_reader_never_blocks_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    app = sk.App(storage=f"sqlite:///{path}?wal_limit_mb=0", log=f"local://{tmp_path}/log")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "first"})
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM sk_items").fetchone()
        # writes with idle gaps: every gap tries (and fails) to shrink the WAL
        slowest = 0.0
        for i in range(4):
            await items.put({"id": str(i), "payload": "y" * 50_000})
            await asyncio.sleep(1.1)
            started = time.monotonic()
            await items.put({"id": f"{i}b"})
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5
        assert _wal(path) > 0
    finally:
        other.execute("COMMIT")
        other.close()
        await app.close()


async def test_a_long_checkpoint_holds_up_neither_scans_nor_writes(tmp_path: Path) -> None:
    """Checkpoints run on a thread of their own: while one is stuck, scans (the reader
    thread's work) and commits (which ask for more checkpoints) go on."""
    import threading

    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        t = await app.create_table("Items", "id")
        for start in (0, 25):
            await t.batch_write(puts=[{"id": f"k{i:03d}"} for i in range(start, start + 25)])
        engine = app._store.engine
        assert isinstance(engine, SqliteEngine)
        keeper = engine._keeper
        assert keeper is not None and keeper is not engine._reader
        started, release = threading.Event(), threading.Event()

        def stuck(rows: _Rows) -> None:
            started.set()
            release.wait(20)

        keeper.queue.put((False, stuck, None))
        assert await asyncio.to_thread(started.wait, 5)
        try:
            for i in range(150):  # past the commits between two checkpoint requests
                await t.put({"id": f"n{i:03d}"})
            page = await asyncio.wait_for(t.scan_page(limit=300), 5)
            assert len(page.items) == 200
            assert not release.is_set()  # all of it while the checkpointer was stuck
        finally:
            release.set()
    finally:
        await app.close()
