"""What the benchmarks measure streamkit against: a raw sqlite3 store of streamkit's own
schema, and side-by-side rates of two operations."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streamkit.storage._sqlite import _SCHEMA


def raw_store(path: str) -> sqlite3.Connection:
    """A raw sqlite3 connection (autocommit) on a new WAL file of streamkit's schema,
    set as streamkit sets its writer (``synchronous=NORMAL``, checkpoints left to it)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=20000")
    conn.executescript(_SCHEMA)
    return conn


async def _side_by_side(
    a: Callable[[int], Awaitable[Any]], b: Callable[[int], Awaitable[Any]], seconds: float
) -> tuple[float, float]:
    """Rates of ``a`` and ``b`` measured in alternating slices (so a load that comes and
    goes on the machine weighs on both alike)."""
    done = {id(a): 0, id(b): 0}
    spent = {id(a): 0.0, id(b): 0.0}
    for _ in range(6):
        for fn in (a, b):
            n = done[id(fn)]
            start = time.perf_counter()
            deadline = start + seconds / 6
            while time.perf_counter() < deadline:
                for _ in range(10):
                    await fn(n)
                    n += 1
            spent[id(fn)] += time.perf_counter() - start
            done[id(fn)] = n
    return done[id(a)] / spent[id(a)], done[id(b)] / spent[id(b)]
