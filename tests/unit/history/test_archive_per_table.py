"""A table's history and restores read that table's archive rows, not every table's.

``sk_changes`` holds every table's change rows in one sequence. On SQLite, compaction
fills ``sk_changes_by_table`` up to a position, and reading one table's archive
(``state_rows`` for a restore, ``archive_rows`` for ``changes_between`` and replay) takes
its rows from there plus a scan of the rows after the position. Checked here:

- the answers are those of a plain scan of ``sk_changes``, whatever was pruned, compacted
  and indexed before (a hypothesis model against the scan queries);
- the cost follows the table's own history, in SQLite virtual-machine steps (a progress
  handler: a count that does not depend on the machine's speed);
- a store made before the index opens, answers by scan, and gets indexed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.storage._archive import archive_rows, compact, index_archive, state_rows
from streamkit.storage._sqlite_rows import _SCHEMA
from tests.unit.storage.helpers import vm_steps

# what the reads answered before the index: plain scans of sk_changes
_SCAN_STATE = (
    "SELECT c.ipk, c.isk, c.record, c.image FROM sk_changes c JOIN ("
    "  SELECT max(seq) AS seq FROM sk_changes WHERE tid=? AND created_ms <= ?"
    "  GROUP BY ipk, isk) m ON c.seq = m.seq "
    "WHERE c.event != 'REMOVE' ORDER BY c.ipk, c.isk"
)
_SCAN_ARCHIVE = (
    "SELECT seq, created_ms, record FROM sk_changes WHERE seq > ? AND tid = ? "
    "AND created_ms >= ? AND created_ms < ? AND seq < ? ORDER BY seq LIMIT ?"
)

_ROW = st.tuples(
    st.integers(1, 3),  # tid
    st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
    st.integers(0, 4),  # item
    st.integers(0, 40),  # created_ms step (clocks may also step back: see below)
)
_STEP = st.one_of(
    st.tuples(st.just("rows"), st.lists(_ROW, min_size=1, max_size=12)),
    st.tuples(st.just("compact"), st.integers(0, 80), st.integers(0, 200), st.integers(1, 6)),
    st.tuples(st.just("index"), st.integers(1, 4)),
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(_STEP, min_size=1, max_size=12),
    at=st.integers(0, 600),
    window=st.tuples(st.integers(0, 300), st.integers(0, 600)),
    after=st.integers(0, 60),
    before=st.one_of(st.none(), st.integers(1, 90)),
    limit=st.integers(1, 12),
    pitr=st.sets(st.integers(1, 3)),
)
def test_reads_through_the_index_answer_what_a_scan_answers(
    steps: list[Any],
    at: int,
    window: tuple[int, int],
    after: int,
    before: int | None,
    limit: int,
    pitr: set[int],
) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(_SCHEMA)
    seq, clock = 0, 0
    for step in steps:
        if step[0] == "rows":
            for tid, event, item, dt in step[1]:
                seq += 1
                clock += dt - 5  # mostly forward, sometimes back (another process's clock)
                conn.execute(
                    "INSERT INTO sk_changes (seq, tid, tname, event, txn, key, record, "
                    "created_ms, publish, image, ipk, isk) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        seq,
                        tid,
                        f"t{tid}",
                        event,
                        None,
                        b"k",
                        f"r{seq}".encode(),
                        clock,
                        1,
                        None,
                        f"p{item}".encode(),
                        b"",
                    ),
                )
        elif step[0] == "compact":
            _, upto, now, lim = step
            compact(conn, upto=upto, cutoffs=dict.fromkeys(pitr, now - 100), limit=lim)
        else:
            for _ in range(step[1]):
                if not index_archive(conn, batch=7):  # small: several batches
                    break
    bound = 10**9 if before is None else before  # the scan's stand-in for no bound
    for tid in (1, 2, 3):
        assert state_rows(conn, tid, at) == conn.execute(_SCAN_STATE, (tid, at)).fetchall()
        since, until = window
        # paged as the history readers page: after the last row of the page before
        pos, pages, scanned = after, [], []
        while True:
            page = archive_rows(
                conn,
                tid,
                after_seq=pos,
                since_ms=since,
                until_ms=until,
                before_seq=before,
                limit=limit,
            )
            expected = conn.execute(_SCAN_ARCHIVE, (pos, tid, since, until, bound, limit))
            assert page == expected.fetchall()
            if not page:
                break
            pages += page
            pos = page[-1][0]
        scanned = conn.execute(_SCAN_ARCHIVE, (after, tid, since, until, bound, 10**6)).fetchall()
        assert pages == scanned


def _steps(conn: sqlite3.Connection, read: Callable[[], Iterable[Any]]) -> tuple[int, int]:
    """(VM steps / 100, rows) of one read on ``conn``."""
    steps, rows = vm_steps(conn, lambda: list(read()))
    return steps, len(rows)


async def _grow(url: str, table: str, changes: int, start: int) -> None:
    """``changes`` puts to ``table`` (300 keys), then compaction as the relay runs it."""
    async with sk.App(storage=url) as app:
        t = app.table(table)
        for i in range(start, start + changes, 25):
            await t.batch_write(puts=[{"k": f"k{(i + j) % 300}", "n": i + j} for j in range(25)])
        await app._store.prune_archive(published_upto=10**9)


async def test_reading_a_small_tables_archive_does_not_grow_with_another_tables(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    async with sk.App(storage=url) as app:
        small = await app.create_table("Small", partition_key="k", stream=None, recovery_days=1)
        await app.create_table("Big", partition_key="k", stream=None, recovery_days=1)
        for i in range(30):
            await small.put({"k": f"s{i % 10}", "n": i})
        small_id = (await app._store.spec("Small")).table_id
    now = time.time_ns() // 1_000_000 + 60_000

    def reads() -> list[tuple[int, int]]:
        conn = sqlite3.connect(tmp_path / "store.db")
        try:
            return [
                _steps(conn, lambda: state_rows(conn, small_id, now)),
                _steps(
                    conn,
                    lambda: archive_rows(
                        conn,
                        small_id,
                        after_seq=0,
                        since_ms=0,
                        until_ms=now,
                        before_seq=None,
                        limit=5000,
                    ),
                ),
            ]
        finally:
            conn.close()

    await _grow(url, "Big", 1_000, 0)
    before = reads()
    await _grow(url, "Big", 9_000, 1_000)
    after = reads()

    assert [rows for _, rows in before] == [10, 30] == [rows for _, rows in after]
    for (b, _), (a, _) in zip(before, after, strict=True):
        # ten times the other table's history: a scan of every table's rows takes ~10x
        # the steps (the test fails so without the index), the index the same
        assert a <= b + 2, (before, after)


async def test_a_store_made_before_the_index_reads_by_scan_then_gets_indexed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    async with sk.App(storage=url) as app:
        t = await app.create_table("Things", partition_key="k", stream=None, recovery_days=1)
        for i in range(40):
            await t.put({"k": f"k{i % 8}", "n": i})
    conn = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    conn.execute("DROP TABLE sk_changes_by_table")  # as a store made before it
    conn.close()

    async def state() -> list[dict[str, Any]]:
        restored = await app.restore_to_time(
            "Things", at=datetime.now(UTC), target=f"Again{time.time_ns()}"
        )
        return sorted([i async for i in restored.scan()], key=lambda i: str(i["k"]))

    async with sk.App(storage=url) as app:
        expected = [{"k": f"k{i}", "n": 32 + i} for i in range(8)]
        assert await state() == expected  # by scan: nothing indexed yet
        await app._store.prune_archive(published_upto=10**9)
        assert await state() == expected  # through the index
    conn = sqlite3.connect(tmp_path / "store.db")
    indexed = conn.execute("SELECT count(*) FROM sk_changes_by_table").fetchone()[0]
    conn.close()
    assert indexed >= 40  # every change row of Things up to the newest but one
