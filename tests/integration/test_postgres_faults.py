"""PostgreSQL storage under faults, against the real server (``STREAMKIT_TEST_POSTGRES``).

- writer *processes* killed with SIGKILL at random points: every write they saw
  acknowledged is in the store, with its change record, and the log holds each
  record exactly once, per item in commit order;
- relay processes killed with SIGKILL at random points while two relays race for
  the same store (a lease lets one publish at a time; the log's producer fencing
  backs it up): exactly once, no gap;
- the PostgreSQL server killed with SIGKILL and restarted mid-stream while a writer
  and the relay run: writes in between fail with a retriable ``StorageError`` and
  are retried; nothing acknowledged is lost, nothing published twice;
- two App processes moving money between accounts with conditions: the total
  holds, and the change records add up to the final balances.

Each test gets its own database on the server. The server-restart test needs the
server started by compose/postgres/pg-up.sh (it finds the postmaster from its data
directory); it is what ``make test`` runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.records import decode_record
from tests import postgres_env
from tests.integration.test_capture_faults import (
    RUNNER,
    RelayProcess,
    Writer,
    _check_log_matches_outbox,
    _create_tables,
)

pytestmark = [pytest.mark.slow, postgres_env.needs_postgres]

KILLS = max(10, int(os.environ.get("STREAMKIT_FAULT_KILLS", "10")))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))
_LOCAL = "poll_interval=0.02"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    server = postgres_env.postgres_url()
    assert server is not None
    url = await postgres_env.fresh_database(server)
    try:
        yield url
    finally:
        await postgres_env.drop_database(url)


def _app(pg_url: str, tmp_path: Path, namespace: str | None = None) -> sk.App:
    return sk.App(
        storage=pg_url,
        log=f"local://{tmp_path}/log?{_LOCAL}",
        namespace=namespace or f"pgfaults-{uuid.uuid4().hex[:8]}",
    )


# --- 1. writer processes killed ---------------------------------------------------------------
WRITER = """
import asyncio, sys
import streamkit as sk

async def main(storage: str, who: str, start: int) -> None:
    app = sk.App(storage=storage)  # writes only: the log is never opened
    users, counters = app.table("Users"), app.table("Orders")
    i = start
    while True:
        await users.put({"UserID": f"{who}-{i}", "n": i}, condition=sk.attr("UserID").not_exists())
        print("put", i, flush=True)
        await counters.update({"OrderID": who, "Line": 0}, add={"qty": 1})
        print("add", i, flush=True)
        i += 1

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_killed_writer_processes_lose_no_acknowledged_write(
    pg_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    app = _app(pg_url, tmp_path)
    await _create_tables(app)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    acked_puts: dict[str, set[int]] = defaultdict(set)
    acked_adds: Counter[str] = Counter()
    next_i: Counter[str] = Counter()

    async def one_life(who: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            pg_url,
            who,
            str(next_i[who]),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None

        async def read() -> None:
            assert proc.stdout is not None
            while raw := await proc.stdout.readline():
                line = raw.decode().split()
                if not raw.endswith(b"\n") or len(line) != 2:
                    break  # cut by the kill: not an acknowledgement the test saw whole
                kind, i = line[0], int(line[1])
                if kind == "put":
                    acked_puts[who].add(i)
                else:
                    acked_adds[who] += 1
                next_i[who] = max(next_i[who], i + 1)

        reader = asyncio.create_task(read())
        await asyncio.sleep(rng.uniform(0.4, 1.5))  # a random point mid-write
        proc.kill()
        await proc.wait()
        await reader
        assert proc.returncode == -9, (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
        next_i[who] += 1  # an unacknowledged put may have committed: never reuse its key

    async with app.running():
        for _ in range(KILLS):
            await asyncio.gather(one_life("w1"), one_life("w2"))
        await app.drain(timeout=60)

    users = app.table("Users")
    stored = {i["UserID"] async for i in users.scan()}
    for who, puts in acked_puts.items():
        assert puts, f"{who} never got an acknowledgement: the test is vacuous"
        missing = [i for i in puts if f"{who}-{i}" not in stored]
        assert not missing, f"{who}: acknowledged puts lost: {missing[:10]}"
    for who, adds in acked_adds.items():
        item = await app.table("Orders").get({"OrderID": who, "Line": 0})
        assert item is not None
        # the last add may have committed without its acknowledgement reaching the writer
        assert adds <= item["qty"] <= adds + KILLS, (who, adds, item["qty"])
    counts = await _check_log_matches_outbox_streamed(app)
    assert counts["Users"] == len(stored)
    await app.close()


async def _check_log_matches_outbox_streamed(app: sk.App) -> dict[str, int]:
    """Like the capture fault check, for stores without an unpublished table."""
    rows = await app.store.read_changes(0, 10_000_000)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1)), "the outbox has gaps"
    counts: dict[str, int] = {}
    for table in ("Users", "Orders"):
        want = [decode_record(r.record) for r in rows if r.table == table and r.publish]
        got = [r async for r in app.changes(table, follow=False)]
        ids = Counter(r.event_id for r in got)
        assert all(n == 1 for n in ids.values()), f"{table}: a record published twice"
        assert [r.event_id for r in want] == sorted(
            (r.event_id for r in got), key=[w.event_id for w in want].index
        )
        assert len(got) == len(want), f"{table}: {len(got)} in the log, {len(want)} committed"
        per_item: dict[Any, list[int]] = defaultdict(list)
        for r in got:
            per_item[tuple(sorted(r.keys.items()))].append(r.sequence_number)
        assert all(s == sorted(s) for s in per_item.values()), f"{table}: out of order"
        counts[table] = len(got)
    return counts


# --- 2. two relays racing, killed at random ------------------------------------------------------
async def test_racing_relays_killed_at_random_publish_everything_once(
    pg_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    app = _app(pg_url, tmp_path)
    await _create_tables(app)
    runner = tmp_path / "relay_runner.py"
    runner.write_text(RUNNER)
    writer = Writer(app, rate=300, rng=random.Random(rng.random()))
    writing = asyncio.create_task(writer.run())
    relays: list[RelayProcess] = []
    try:
        for i in range(2):
            r = await RelayProcess.spawn(runner, app, 50, tmp_path / f"relay-{i}.err")
            r.go()
            relays.append(r)
        for i in range(KILLS):
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            victim = rng.randrange(2)
            await relays[victim].kill()
            assert relays[victim].proc.returncode == -9, (
                f"a relay exited by itself: {relays[victim]}"
            )
            fresh = await RelayProcess.spawn(runner, app, 50, tmp_path / f"relay-n{i}.err")
            fresh.go()
            relays[victim] = fresh
    finally:
        writer.stop.set()
        await writing
        for r in relays:
            await r.kill()
    async with app.running():
        await app.drain(timeout=120)
    try:
        await _check_log_matches_outbox(app)
    finally:
        await app.close()


# --- 3. the server killed and restarted ------------------------------------------------------
def _postmaster_pid() -> int:
    port = os.environ.get("PG_PORT", "5432")
    pidfile = postgres_env.SCRIPTS / ".data" / port / "data" / "postmaster.pid"
    if not pidfile.exists():
        found = list((postgres_env.SCRIPTS / ".data" / port).rglob("postmaster.pid"))
        found += list(Path(f"/tmp/streamkit-pg-{port}").rglob("postmaster.pid"))
        assert found, (
            f"no postmaster.pid under compose/postgres/.data/{port}: start the server with pg-up.sh"
        )
        pidfile = found[0]
    return int(pidfile.read_text().split()[0])


class RetryingWriter(Writer):
    """The fault test's writer, retrying writes that fail with a retriable StorageError
    (what an application does while its database restarts); counts the failures."""

    failures: int = 0

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                await super().run()
            except sk.StorageError as e:
                if not e.retriable:
                    raise AssertionError(f"a non-retriable error while it restarts: {e}") from e
                self.failures += 1
                await asyncio.sleep(0.2)


@pytest.mark.exclusive
async def test_server_killed_and_restarted_mid_stream(pg_url: str, tmp_path: Path) -> None:
    app = _app(pg_url, tmp_path)
    await _create_tables(app)
    writer = RetryingWriter(app, rate=300, rng=random.Random(SEED + 2))
    async with app.running():
        writing = asyncio.create_task(writer.run())
        await asyncio.sleep(1.5)
        os.kill(_postmaster_pid(), 9)
        await asyncio.sleep(1.0)
        restart = postgres_env.SCRIPTS / "pg-restart.sh"
        done = await asyncio.to_thread(
            subprocess.run, ["bash", str(restart)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        await asyncio.sleep(2.0)  # writing and relaying resume by themselves
        writer.stop.set()
        await writing
        await app.drain(timeout=120)
    assert writer.failures >= 1, "no write failed while the server was down: the test is vacuous"
    try:
        await _check_log_matches_outbox(app)
    finally:
        await app.close()


# --- 4. two processes moving money ------------------------------------------------------------
TRANSFERS = """
import asyncio, random, sys
import streamkit as sk

async def main(storage: str, seed: int, count: int) -> None:
    app = sk.App(storage=storage)  # writes only: the log is never opened
    accounts = app.table("Accounts")
    rng = random.Random(seed)
    done = refused = 0
    for _ in range(count):
        a, b = rng.sample(range(10), 2)
        amount = rng.randrange(1, 40)
        try:
            async with app.transaction() as tx:
                tx.update(accounts, {"id": f"a{a}"}, add={"balance": -amount},
                          condition=sk.attr("balance").gte(amount))
                tx.update(accounts, {"id": f"a{b}"}, add={"balance": amount},
                          condition=sk.attr("id").exists())
            done += 1
        except sk.TransactionCanceled:
            refused += 1
    print(done, refused, flush=True)
    await app.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_two_processes_transferring_keep_the_total(pg_url: str, tmp_path: Path) -> None:
    app = _app(pg_url, tmp_path)
    accounts = await app.create_table("Accounts", partition_key="id")
    for i in range(10):
        await accounts.put({"id": f"a{i}", "balance": 100})
    script = tmp_path / "transfers.py"
    script.write_text(TRANSFERS)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            pg_url,
            str(SEED + n),
            "300",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(2)
    ]
    results = [await p.communicate() for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    done = sum(int(out.split()[0]) for out, _ in results)
    refused = sum(int(out.split()[1]) for out, _ in results)
    assert done > 100, (done, refused)
    balances = {i["id"]: i["balance"] async for i in accounts.scan()}
    assert sum(balances.values()) == 1000, balances
    assert all(v >= 0 for v in balances.values()), balances
    # the change records add up: replaying each account's records gives its balance
    rows = await app.store.read_changes(0, 10_000_000)
    last: dict[str, Decimal] = {}
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    modifies = 0
    for r in rows:
        rec = decode_record(r.record)
        assert rec.new_image is not None
        if rec.event_name == "MODIFY":
            assert rec.old_image is not None
            assert rec.old_image["balance"] == last[rec.keys["id"]], "a lost update"
            modifies += 1
        last[rec.keys["id"]] = rec.new_image["balance"]
    assert modifies == 2 * done
    assert last == balances
    await app.close()
