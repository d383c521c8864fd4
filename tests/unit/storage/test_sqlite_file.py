"""What the SQLite engine does with the file a URL names: foreign files are refused and
left untouched; ``mode=ro`` / ``mode=rw`` open existing stores only."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.exceptions import ConfigurationError, StorageError
from streamkit.storage._sqlite import SqliteEngine, read_only_url


def _state(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` with a digest of its bytes."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _foreign(path: Path, journal_mode: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()


async def _make_store(path: Path, tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    try:
        users = await app.create_table("Users", "UserID")
        await users.put({"UserID": "1", "Name": "Ada"})
    finally:
        await app.close()


async def _open(url: str, tmp_path: Path) -> list[str]:
    app = sk.App(storage=url, log=f"local://{tmp_path}/log")
    try:
        return await app.list_tables()
    finally:
        await app.close()


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
@pytest.mark.parametrize("mode", ["", "?mode=ro", "?mode=rw"])
async def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(
    tmp_path: Path, journal_mode: str, mode: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "app.db"
    _foreign(path, journal_mode)
    before = _state(data)

    with pytest.raises(ConfigurationError) as info:
        await _open(f"sqlite:///{path}{mode}", tmp_path)

    message = str(info.value)
    assert str(path) in message
    assert "not a streamkit store" in message
    assert "users" in message
    # not a byte changed, no -wal / -shm file left next to it, the journal mode kept
    assert _state(data) == before
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal_mode
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert tables == {"users"}
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["", "?mode=ro"])
async def test_a_file_that_is_not_sqlite_is_refused_and_left_unchanged(
    tmp_path: Path, mode: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)
    before = _state(data)

    with pytest.raises(ConfigurationError, match="not a streamkit store") as info:
        await _open(f"sqlite:///{path}{mode}", tmp_path)

    assert str(path) in str(info.value)
    assert _state(data) == before


async def test_an_empty_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    assert await _open(f"sqlite:///{path}", tmp_path) == []
    await _make_store(path, tmp_path)
    assert await _open(f"sqlite:///{path}", tmp_path) == ["Users"]


async def test_a_sqlite_file_without_tables_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=7")  # a valid database file holding no table
    conn.close()
    assert path.stat().st_size > 0
    await _make_store(path, tmp_path)
    assert await _open(f"sqlite:///{path}", tmp_path) == ["Users"]


async def test_a_store_whose_creation_was_cut_short_is_finished(tmp_path: Path) -> None:
    path = tmp_path / "half.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE sk_tables (id INTEGER PRIMARY KEY, name TEXT, spec TEXT)")
    conn.commit()
    conn.close()
    await _make_store(path, tmp_path)
    assert await _open(f"sqlite:///{path}", tmp_path) == ["Users"]


@pytest.mark.parametrize("mode", ["ro", "rw"])
async def test_mode_ro_and_rw_never_create_a_store(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "typo" / "deeper" / "stor.db"
    with pytest.raises(ConfigurationError, match="no streamkit store at") as info:
        await _open(f"sqlite:///{path}?mode={mode}", tmp_path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "typo").exists()

    # an empty file is no store either: it stays empty
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(ConfigurationError, match="no streamkit store at"):
        await _open(f"sqlite:///{empty}?mode={mode}", tmp_path)
    assert empty.stat().st_size == 0
    assert list(_state(tmp_path)) == ["empty.db"]


async def test_mode_ro_reads_a_store_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    await _make_store(path, tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    app = sk.App(storage=read_only_url(f"sqlite:///{path}"), log=f"local://{tmp_path}/log")
    try:
        assert await app.list_tables() == ["Users"]
        assert (await app.describe_table("Users"))["name"] == "Users"
        assert await app.table("Users").get({"UserID": "1"}) == {"UserID": "1", "Name": "Ada"}
        assert [i async for i in app.table("Users").scan()] == [{"UserID": "1", "Name": "Ada"}]
        status = await app.capture_status()
        assert status["latest_committed"] == 1
        assert app.store.engine.storage_id  # read from the store, not made up

        with pytest.raises(StorageError, match="read-only") as info:
            await app.table("Users").put({"UserID": "2"})
        assert not info.value.retriable
        with pytest.raises(StorageError, match="read-only"):
            await app.create_table("Orders", "OrderID")
    finally:
        await app.close()

    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert await _open(f"sqlite:///{path}", tmp_path) == ["Users"]


async def test_mode_ro_sees_what_a_running_app_commits(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    writer = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    reader = sk.App(storage=f"sqlite:///{path}?mode=ro", log=f"local://{tmp_path}/log")
    try:
        users = await writer.create_table("Users", "UserID")
        await users.put({"UserID": "1"})
        assert await reader.table("Users").get({"UserID": "1"}) == {"UserID": "1"}
        await users.put({"UserID": "2"})
        assert await reader.table("Users").get({"UserID": "2"}) == {"UserID": "2"}
        await users.put({"UserID": "3"})  # a read-only reader does not hold the writer up
    finally:
        await reader.close()
        await writer.close()


async def test_mode_rw_opens_an_existing_store_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    await _make_store(path, tmp_path)
    app = sk.App(storage=f"sqlite:///{path}?mode=rw", log=f"local://{tmp_path}/log")
    try:
        await app.table("Users").put({"UserID": "2"})
        assert await app.table("Users").get({"UserID": "2"}) == {"UserID": "2"}
    finally:
        await app.close()


async def test_mode_ro_refuses_a_store_it_would_have_to_migrate(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await _make_store(path, tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sk_meta SET value='9' WHERE key='schema'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match="schema version 9"):
        await _open(f"sqlite:///{path}?mode=ro", tmp_path)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite:///x.db?mode=bogus", "mode="),
        ("memory://?mode=ro", "in-memory store is always new"),
        ("sqlite:///:memory:?mode=rw", "in-memory store is always new"),
        ("sqlite:///x.db?wal_limit_mb=lots", "wal_limit_mb"),
        ("sqlite:///x.db?wal_limit_mb=-1", "wal_limit_mb"),
    ],
)
def test_bad_url_options_are_configuration_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SqliteEngine(url)


def test_read_only_url() -> None:
    assert read_only_url("sqlite:///shop.db") == "sqlite:///shop.db?mode=ro"
    assert read_only_url("sqlite:////abs/shop.db") == "sqlite:////abs/shop.db?mode=ro"
    assert (
        read_only_url("sqlite:///shop.db?synchronous=FULL&mode=rwc")
        == "sqlite:///shop.db?synchronous=FULL&mode=ro"
    )
    assert read_only_url("memory://") == "memory://"
    assert read_only_url("sqlite:///:memory:") == "sqlite:///:memory:"
    assert read_only_url("postgresql://u:p@host/db") == "postgresql://u:p@host/db"
    SqliteEngine(read_only_url("sqlite:///shop.db"))  # what it makes is a valid URL
