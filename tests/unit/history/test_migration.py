"""A storage file written by the previous schema (2) opens, and its history is usable."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import streamkit as sk


async def test_a_schema_2_file_is_migrated_and_restorable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    async with sk.App(storage=url) as app:
        t = await app.create_table("Things", partition_key="k", sort_key=("n", "N"))
        await t.put({"k": "a", "n": 1, "v": "first"})
        await t.put({"k": "b", "n": 2})
        await asyncio.sleep(0.01)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await t.put({"k": "a", "n": 1, "v": "second"})
        await t.delete({"k": "b", "n": 2})
    # make it a schema-2 file, as the previous release wrote it
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("ALTER TABLE sk_changes DROP COLUMN ipk")
    conn.execute("ALTER TABLE sk_changes DROP COLUMN isk")
    for table in ("sk_archive_base", "sk_backups", "sk_backup_items", "sk_changes_by_table"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE sk_meta SET value='2' WHERE key='schema'")
    conn.close()

    async with sk.App(storage=url) as app:
        then = await app.restore_to_time("Things", at=middle, target="Then")
        assert [i async for i in then.scan()] == [
            {"k": "a", "n": 1, "v": "first"},
            {"k": "b", "n": 2},
        ]
        assert (await app.backup("Things")).items == 1
    conn = sqlite3.connect(tmp_path / "old.db")
    try:
        assert conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone() == ("3",)
        assert conn.execute("SELECT count(*) FROM sk_changes WHERE ipk IS NULL").fetchone() == (0,)
    finally:
        conn.close()
