"""The handler runtime under faults: workers killed with SIGKILL, workers leaving and joining.

While this process writes updates to 40 items (and runs the capture relay), handler
*processes* come and go:

1. ``STREAMKIT_FAULT_WORKER_KILLS`` times (default 6): a worker starts, runs for a
   random 0.4-1.6 s and is killed with SIGKILL — often mid-batch;
2. two workers run together; one is stopped gracefully (SIGTERM) and a third joins;
3. a last worker runs until the handler's lag is zero.

The handler (batch_size 25) appends ``key seq`` for every record it sees to a file,
and through its context adds 1 to the item's counter in ``Totals`` and puts the
record's sequence number in ``Applied``. Afterwards:

- every record was handled at least once;
- each item's records were seen in commit order: every run of increasing sequence
  numbers is a contiguous stretch of that item's history (a restart may replay from
  the last checkpoint, never skip or reorder);
- the table-writing effects were applied exactly once: ``Totals`` counts each item's
  records exactly, ``Applied`` holds each sequence number once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

import streamkit as sk
from tests.kafka_env import kafka_param, log_url

KILLS = int(os.environ.get("STREAMKIT_FAULT_WORKER_KILLS", "6"))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))
SESSION = 1.5
ROOT = Path(__file__).resolve().parents[2]
ITEMS = 40

pytestmark = pytest.mark.slow

WORKER = """
import asyncio
import os
import signal
import sys

import streamkit as sk

storage, log, namespace, seen_path = sys.argv[1:5]
app = sk.App(storage=storage, log=log, namespace=namespace, session_timeout=float(sys.argv[5]),
             shutdown_timeout=5)
fd = os.open(seen_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


@app.on_change("Users", batch_size=25, retries=1000, retry_delay=0.05)
async def count(batch: sk.Batch, ctx: sk.Context) -> None:
    lines = []
    for record in batch:
        key = record.keys["UserID"]
        lines.append(f"{os.getpid()} {key} {record.sequence_number}\\n")
        ctx.update("Totals", {"UserID": key}, add={"n": 1})
        ctx.put("Applied", {"seq": record.sequence_number})
    os.write(fd, "".join(lines).encode())
    await asyncio.sleep(0.01)  # a batch takes a while: kills land mid-batch


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with app.running(relay=False, ttl=False):
        print("running", flush=True)
        await stop.wait()
    await app.close()


asyncio.run(main())
"""


class Workers:
    def __init__(self, tmp_path: Path, storage: str, log: str, namespace: str) -> None:
        self.script = tmp_path / "worker.py"
        self.script.write_text(WORKER)
        self.args = [storage, log, namespace, str(tmp_path / "seen.txt"), str(SESSION)]
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> asyncio.subprocess.Process:
        root = ROOT
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(self.script),
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        self.procs.append(proc)
        return proc

    async def kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    async def stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"worker exited {proc.returncode}: {err.decode()[-3000:]}")

    async def close(self) -> None:
        for proc in self.procs:
            await self.kill(proc)


def _check_runs(seen: list[tuple[str, int]], history: dict[str, list[int]]) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, seq in seen:
        by_key[key].append(seq)
    for key, expected in history.items():
        got = by_key.get(key, [])
        assert set(got) == set(expected), f"{key}: records never handled"
        index = {s: i for i, s in enumerate(expected)}
        prev: int | None = None
        for seq in got:
            if prev is not None and seq > prev:
                assert index[seq] == index[prev] + 1, f"{key}: {prev} -> {seq} skips records"
            prev = seq


@pytest.mark.parametrize("backend", [pytest.param("local", id="local"), kafka_param()])
async def test_workers_killed_and_rebalanced_lose_nothing_and_apply_once(
    tmp_path: Path, backend: str
) -> None:
    rng = random.Random(SEED)
    print(f"seed={SEED} (STREAMKIT_FAULT_SEED reruns it)")  # shown when the test fails
    url = log_url(
        backend,
        tmp_path,
        local_options="poll_interval=0.02",
        kafka_options="request_timeout_ms=8000&append_timeout=15",
    )
    storage = f"sqlite:///{tmp_path}/store.db"
    namespace = f"rtfault{uuid.uuid4().hex[:10]}"
    app = sk.App(storage=storage, log=url, namespace=namespace, topic_partitions=4)

    @app.on_change("Users", batch_size=25)
    async def count(batch: sk.Batch, ctx: sk.Context) -> None:  # status only; runs elsewhere
        raise AssertionError("not run in the test process")

    users = await app.create_table("Users", partition_key="UserID")
    await app.create_table("Totals", partition_key="UserID", stream=None)
    await app.create_table("Applied", partition_key=("seq", "N"), stream=None)
    workers = Workers(tmp_path, storage, url, namespace)
    stop_writing = asyncio.Event()

    async def write() -> int:
        n = 0
        while not stop_writing.is_set():
            await users.update({"UserID": f"u{n % ITEMS}"}, add={"v": 1})
            n += 1
            await asyncio.sleep(0.002)
        return n

    try:
        async with app.running(handlers=[], ttl=False):
            writer = asyncio.create_task(write())
            for _ in range(KILLS):
                proc = await workers.start()
                await asyncio.sleep(rng.uniform(0.4, 1.6) + 0.6)  # ~0.6 s to start
                await workers.kill(proc)
            a, b = await workers.start(), await workers.start()
            await asyncio.sleep(2.5)
            await workers.stop(a)  # leaves gracefully mid-stream
            c = await workers.start()  # joins mid-stream
            await asyncio.sleep(2.5)
            stop_writing.set()
            written = await writer
            await app.drain(timeout=60)
            for _ in range(600):
                status = (await app.handler_status("count"))[0]
                if status["lag"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert status["lag"] == 0, status
            await workers.stop(b)
            await workers.stop(c)
        assert written > 200
        history: dict[str, list[int]] = defaultdict(list)
        async for record in app.changes("Users", follow=False):
            history[record.keys["UserID"]].append(record.sequence_number)
        assert sum(len(v) for v in history.values()) == written
        lines = (tmp_path / "seen.txt").read_text().split()
        seen = [(lines[i + 1], int(lines[i + 2])) for i in range(0, len(lines), 3)]
        _check_runs(seen, history)
        totals = {item["UserID"]: item["n"] async for item in app.table("Totals").scan()}
        assert totals == {key: len(seqs) for key, seqs in history.items()}, "not exactly once"
        applied = sorted([int(item["seq"]) async for item in app.table("Applied").scan()])
        assert applied == sorted(s for seqs in history.values() for s in seqs)
        print(
            f"seed={SEED} written={written} handled={len(seen)} redelivered={len(seen) - written}"
        )
    finally:
        await workers.close()
        await app.close()
