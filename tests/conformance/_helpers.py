"""Helpers shared by the change-log conformance tests."""

from __future__ import annotations

import asyncio
import uuid

from streamkit.log import LogReader, LogRecord

# Kafka makes a committed transaction visible a few ms after commit returns (the
# coordinator writes the commit markers afterwards); every wait allows for that.
VISIBLE_WITHIN = 10.0


def txn_id() -> str:
    """A fresh transactional id, so tests never fence each other."""
    return f"conformance-{uuid.uuid4().hex}"


async def drain(
    reader: LogReader, count: int, *, within: float = VISIBLE_WITHIN
) -> list[LogRecord]:
    """Fetch until ``count`` records arrived, then check that no more come.

    Fails if fewer arrive within ``within`` seconds or any extra one shows up.
    """
    got: list[LogRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(got) < count:
        left = deadline - loop.time()
        assert left > 0, f"only {len(got)} of {count} records arrived within {within} s"
        got.extend(await reader.fetch(max_records=10_000, timeout=min(left, 0.5)))
    extra = await reader.fetch(max_records=10_000, timeout=0.3)
    assert not extra, f"{len(extra)} records more than the {count} expected: {extra[:3]}"
    assert len(got) == count, f"{len(got)} records, expected {count}"
    return got


async def fetch_until(
    reader: LogReader, done: object, *, within: float = VISIBLE_WITHIN
) -> list[LogRecord]:
    """Fetch until ``done(records_so_far)`` is true; fails after ``within`` seconds."""
    assert callable(done)
    got: list[LogRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done(got):
        left = deadline - loop.time()
        assert left > 0, f"condition not met within {within} s ({len(got)} records read)"
        got.extend(await reader.fetch(max_records=10_000, timeout=min(left, 0.5)))
    return got
