"""What the kill-again-and-again fault tests share: a ``streamkit``-style runner process
(an App in ``running()``, which resumes the background work a stopped process left:
index backfills, PITR seeding), killed with SIGKILL at random moments while this process
keeps writing, then one last runner left to finish."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import streamkit as sk

RUNNER = """
import asyncio
import sys

import streamkit as sk


async def main() -> None:
    app = sk.App(storage=sys.argv[1], log=sys.argv[2])
    async with app.running(handlers=[]):
        print("running", flush=True)
        await asyncio.sleep(3600)


asyncio.run(main())
"""


async def orders(app: sk.App, n: int = 20000, **kw: Any) -> sk.Table:
    """An Orders table (UserID, OrderDate) holding ``n`` items."""
    t = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate", **kw)
    items = [
        {"UserID": f"u{i % 97}", "OrderDate": f"{i:06d}", "Status": f"s{i % 5}", "Total": i}
        for i in range(n)
    ]
    for start in range(0, len(items), 25):
        await t.batch_write(puts=items[start : start + 25])
    return t


async def write_until(t: sk.Table, rnd: random.Random, stop: asyncio.Event) -> None:
    """Puts, updates and deletes of random Orders items (some new) until ``stop``."""
    n = 0
    while not stop.is_set():
        i = rnd.randrange(22000)
        key = {"UserID": f"u{i % 97}", "OrderDate": f"{i:06d}"}
        if n % 4 == 3:
            await t.delete(key)
        elif n % 4 == 2:
            await t.update(key, set={"Status": f"t{n % 3}"})
        else:
            await t.put({**key, "Status": f"s{n % 7}", "Total": n})
        n += 1
        await asyncio.sleep(0.002)


async def _start(url: str, log: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUNNER, url, log, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"running"
    return proc


async def kill_again_and_again(
    url: str,
    log: str,
    done: Callable[[], Awaitable[bool]],
    rnd: random.Random,
    kills: int,
) -> int:
    """Start a runner, SIGKILL it somewhere in its work, ``kills`` times (or until
    ``done()``); then let one runner finish (``done()``) and stop it. Returns the kills."""
    killed = 0
    for _ in range(kills):
        proc = await _start(url, log)
        await asyncio.sleep(rnd.uniform(0.01, 0.25))  # somewhere in the work
        if await done():
            proc.terminate()
            await proc.wait()
            break
        proc.kill()
        await proc.wait()
        killed += 1
    proc = await _start(url, log)
    try:
        for _ in range(6000):
            if await done():
                break
            await asyncio.sleep(0.02)
        assert await done()
        await asyncio.sleep(0.1)  # writes go on after the work is done too
    finally:
        proc.terminate()
        await proc.wait()
    return killed
