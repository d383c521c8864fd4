"""A page of a SQLite scan seeks to where the last one ended: reading a page near the
end of a big table costs what one near its start costs (a page that read the table
from its start made a backfill or a paged scan quadratic in the table's size)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import streamkit as sk
from streamkit.storage._sqlite import _Rows
from tests.unit.storage.helpers import vm_steps


async def test_a_scan_page_costs_the_same_anywhere_in_the_table(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    app = sk.App(storage=f"sqlite:///{path}")
    try:
        t = await app.create_table("Big", "id", ("n", "N"))
        for start in range(0, 6000, 25):
            await t.batch_write(
                puts=[{"id": f"p{i // 10:05d}", "n": i} for i in range(start, start + 25)]
            )
        spec = await t.spec()
    finally:
        await app.close()
    conn = sqlite3.connect(path)
    rows = _Rows(conn)
    first = rows.scan(spec.table_id, after=None, limit=50, segment=0, total_segments=1)

    def steps(after: tuple[bytes, bytes]) -> tuple[int, list[tuple[bytes, bytes, bytes]]]:
        return vm_steps(
            conn,
            lambda: rows.scan(spec.table_id, after=after, limit=50, segment=0, total_segments=1),
        )

    all_rows = rows.scan(spec.table_id, after=None, limit=10_000, segment=0, total_segments=1)
    assert len(all_rows) == 6000
    near_start, page = steps((first[-1][0], first[-1][1]))
    assert page == all_rows[50:100]
    end = all_rows[-101]
    near_end, page = steps((end[0], end[1]))
    assert page == all_rows[-100:-50]
    assert near_end <= 2 * near_start + 5, (near_start, near_end)
    conn.close()
