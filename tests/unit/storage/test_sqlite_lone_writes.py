"""A lone write of a SQLite store runs on the calling thread (no hop to the writer thread
and back), at once when nothing else is ready to run (no loop turn), with a loop turn at
least every ``_DIRECT_YIELD`` writes; writes that come together still go to the writer
thread as one group; a file busy with another connection's write never blocks the event
loop; two connections sharing a file never reuse a sequence number."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.storage import _sqlite


@pytest.fixture
def job_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread id each write job ran on."""
    seen: list[int] = []
    real = _sqlite._JobRunner.__call__

    def call(self: Any, rows: Any) -> Any:
        seen.append(threading.get_ident())
        return real(self, rows)

    monkeypatch.setattr(_sqlite._JobRunner, "__call__", call)
    return seen


async def test_a_lone_write_runs_on_the_calling_thread(
    tmp_path: Path, job_threads: list[int]
) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id", stream=sk.StreamView.NEW_AND_OLD_IMAGES)
        job_threads.clear()
        for i in range(50):
            await items.put({"id": f"k{i}", "n": i})
        await items.update({"id": "k1"}, set={"n": 100})
        await items.delete({"id": "k2"})
        assert job_threads == [threading.get_ident()] * 52
        assert await items.get({"id": "k1"}) == {"id": "k1", "n": 100}
        assert await items.get({"id": "k2"}) is None
    finally:
        await app.close()


async def test_a_lone_write_with_nothing_else_ready_costs_no_loop_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    selector: Any = loop._selector  # type: ignore[attr-defined]
    waits = 0
    real = selector.select

    def select(timeout: float | None = None) -> Any:
        nonlocal waits
        waits += 1
        return real(timeout)

    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id", stream=sk.StreamView.NEW_AND_OLD_IMAGES)
        await asyncio.sleep(0.05)  # let the open settle
        monkeypatch.setattr(selector, "select", select)
        for i in range(640):
            await items.put({"id": f"k{i}", "n": i})
        monkeypatch.setattr(selector, "select", real)
        # a loop turn per write would be 640 (or 1,280 with the held write's own turn);
        # one every _DIRECT_YIELD writes is 10, and a background timer may add a few
        assert waits <= 640 // _sqlite._DIRECT_YIELD + 20, waits
        assert len([x async for x in items.scan()]) == 640
    finally:
        await app.close()


async def test_a_run_of_lone_writes_still_gives_the_loop_a_turn(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        written = 0
        fired: list[int] = []

        def note() -> None:
            fired.append(written)
            asyncio.get_running_loop().call_later(0, note)

        asyncio.get_running_loop().call_later(0, note)
        for i in range(10 * _sqlite._DIRECT_YIELD):
            await items.put({"id": f"k{i}"})
            written += 1
        # a timer due at once waits at most _DIRECT_YIELD writes for its turn
        gaps = [b - a for a, b in zip([0, *fired], fired, strict=False)]
        assert len(fired) >= 9 and max(gaps) <= _sqlite._DIRECT_YIELD, fired
    finally:
        await app.close()


async def test_writes_that_come_together_are_grouped_by_the_writer_thread(
    tmp_path: Path, job_threads: list[int]
) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        job_threads.clear()
        await asyncio.gather(*(items.put({"id": f"k{i}"}) for i in range(100)))
        assert threading.get_ident() not in job_threads
        assert len(job_threads) == 100
        assert len([x async for x in items.scan()]) == 100
    finally:
        await app.close()


async def test_a_failed_lone_write_changes_nothing_and_the_next_one_commits(
    tmp_path: Path,
) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id", stream=sk.StreamView.NEW_IMAGE)
        await items.put({"id": "a", "n": 1})
        with pytest.raises(sk.ConditionFailed):
            await items.put({"id": "a", "n": 2}, condition="attribute_not_exists(id)")
        assert await items.get({"id": "a"}) == {"id": "a", "n": 1}
        await items.put({"id": "b", "n": 3})
    finally:
        await app.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    rows = conn.execute("SELECT seq, event FROM sk_changes ORDER BY seq").fetchall()
    conn.close()
    assert [event for _, event in rows] == ["INSERT", "INSERT"]  # nothing of the refused put
    assert rows[1][0] == rows[0][0] + 1  # and it used no number


async def test_a_busy_file_never_blocks_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    app = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    try:
        items = await app.create_table("Items", "id")
        await items.put({"id": "a"})
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        put = asyncio.create_task(items.put({"id": "b"}))
        await asyncio.sleep(0.3)
        assert not put.done()  # it waits for the lock (on the writer thread)...
        assert ticks >= 10  # ...while the loop goes on
        other.execute("COMMIT")
        await asyncio.wait_for(put, 10)
        stop.set()
        await tick_task
        other.close()
        assert await items.get({"id": "b"}) == {"id": "b"}
        # the lone-write path is back once the file is free
        await items.put({"id": "c"})
        assert await items.get({"id": "c"}) == {"id": "c"}
    finally:
        await app.close()


async def test_two_connections_sharing_a_file_never_reuse_a_sequence_number(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    a = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    b = sk.App(storage=f"sqlite:///{path}", log=f"local://{tmp_path}/log")
    try:
        t_a = await a.create_table("Items", "id", stream=sk.StreamView.KEYS_ONLY)
        t_b = b.table("Items")
        for i in range(100):
            await (t_a if i % 3 else t_b).put({"id": f"k{i}"})
        await asyncio.gather(*(t_b.put({"id": f"g{i}"}) for i in range(50)))
        for i in range(20):
            await t_a.put({"id": f"z{i}"})
    finally:
        await b.close()
        await a.close()
    conn = sqlite3.connect(path)
    seqs = [r[0] for r in conn.execute("SELECT seq FROM sk_changes ORDER BY rowid")]
    conn.close()
    assert len(seqs) == 170
    assert seqs == sorted(seqs) and len(set(seqs)) == 170
