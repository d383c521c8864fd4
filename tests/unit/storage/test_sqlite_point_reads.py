"""Point reads of a SQLite file store run on the calling thread (no thread hop), see
every write acknowledged before them, and fall back to the reader thread whenever the
direct connection cannot serve them at once, never blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.storage import _sqlite
from tests.unit.storage.helpers import sqlite_engine


async def test_gets_do_not_hop_to_the_reader_thread(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "a", "n": 1})
        engine = sqlite_engine(app)
        assert engine._direct is not None
        reader = engine._reader
        assert reader is not None
        calls = 0
        real = engine.read

        async def counted(fn):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real(fn)

        engine.read = counted  # type: ignore[method-assign]
        assert await items.get({"id": "a"}) == {"id": "a", "n": 1}
        assert await items.batch_get([{"id": "a"}, {"id": "b"}]) == [{"id": "a", "n": 1}]
        assert calls == 0
    finally:
        await app.close()


async def test_every_acknowledged_write_is_seen_by_the_next_get(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        for i in range(300):
            await items.put({"id": "k", "n": i})
            assert await items.get({"id": "k"}) == {"id": "k", "n": i}
            await items.update({"id": "k"}, set={"n": i + 1000})
            got = await items.batch_get([{"id": "k"}])
            assert got == [{"id": "k", "n": i + 1000}]

        # concurrent writers: each sees its own acknowledged write
        async def writer(w: int) -> None:
            for i in range(50):
                await items.put({"id": f"w{w}", "n": i})
                assert await items.get({"id": f"w{w}"}) == {"id": f"w{w}", "n": i}

        await asyncio.gather(*(writer(w) for w in range(20)))
        await items.delete({"id": "k"})
        assert await items.get({"id": "k"}) is None
    finally:
        await app.close()


async def test_a_write_by_another_connection_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    app = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    other = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log2")
    try:
        items = await app.create_table("Items", "id")
        theirs = other.table("Items")
        for i in range(20):
            await theirs.put({"id": "x", "n": i})
            assert await items.get({"id": "x"}) == {"id": "x", "n": i}
    finally:
        await other.close()
        await app.close()


class _BusyConnection:
    """A connection whose every statement finds the file busy (as during a recovery, or
    while another process holds it exclusively)."""

    in_transaction = False

    def execute(self, *args: object) -> object:
        e = sqlite3.OperationalError("database is locked")
        e.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
        raise e


async def test_a_busy_file_falls_back_to_the_reader_thread(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "a"})
        engine = sqlite_engine(app)
        direct = engine._direct
        assert direct is not None
        # it never waits for a lock on the event loop: busy is answered at once
        assert direct.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        engine._direct = _BusyConnection()  # type: ignore[assignment]
        try:
            assert await items.get({"id": "a"}) == {"id": "a"}
            assert await items.get({"id": "b"}) is None
            assert await items.batch_get([{"id": "a"}, {"id": "b"}]) == [{"id": "a"}]
        finally:
            engine._direct = direct
    finally:
        await app.close()


async def test_other_errors_of_the_direct_connection_are_storage_errors(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        engine = sqlite_engine(app)
        direct = engine._direct

        class Broken(_BusyConnection):
            def execute(self, *args: object) -> object:
                raise sqlite3.DatabaseError("database disk image is malformed")

        engine._direct = Broken()  # type: ignore[assignment]
        try:
            with pytest.raises(sk.StorageError):
                await items.get({"id": "a"})
        finally:
            engine._direct = direct
    finally:
        await app.close()


async def test_a_direct_connection_in_use_elsewhere_sends_the_read_to_the_thread(
    tmp_path: Path,
) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "a"})
        engine = sqlite_engine(app)
        lock: threading.Lock = engine._direct_lock
        with lock:
            assert await items.get({"id": "a"}) == {"id": "a"}
            assert await items.batch_get([{"id": "a"}]) == [{"id": "a"}]
    finally:
        await app.close()


async def test_a_long_run_of_direct_gets_lets_other_tasks_run(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "a"})
        ran = asyncio.Event()

        async def other() -> None:
            ran.set()

        task = asyncio.create_task(other())
        for _ in range(_sqlite._DIRECT_YIELD + 1):
            await items.get({"id": "a"})
        assert ran.is_set()
        await task
    finally:
        await app.close()


async def test_memory_stores_read_on_their_thread(tmp_path: Path) -> None:
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "a"})
        assert sqlite_engine(app)._direct is None
        assert await items.get({"id": "a"}) == {"id": "a"}
    finally:
        await app.close()


def _has_wal(path: Path) -> bool:
    return os.path.exists(f"{path}-wal")


async def test_closing_the_store_still_folds_the_wal_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    app = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    items = await app.create_table("Items", "id", stream=None)
    for i in range(50):
        await items.put({"id": f"k{i}"})
        await items.get({"id": f"k{i}"})
    await app.close()
    assert not _has_wal(path)
