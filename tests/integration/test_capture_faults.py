"""Capture under faults: the relay process killed with SIGKILL, the Kafka broker crashed.

While a writer keeps committing puts, updates, deletes, batch writes and
transactions to a file-backed SQLite store:

- ``test_relay_killed_mid_stream_publishes_everything_once`` (``local`` and ``kafka``)
  starts a relay *process*, kills it with SIGKILL at a random moment, starts
  another, ... ``STREAMKIT_FAULT_KILLS`` times (default 20), then lets one relay
  finish.
- ``test_relay_rides_out_a_broker_crash`` (``kafka`` only) runs the relay in this
  process (``app.running()``) and kills the broker (``kafka-down.sh --kill``), keeps
  writing while it is down, and starts it again on the same data.

Afterwards every change record committed to the outbox is in its table's topic
exactly once, equal to the stored one, each item's records in commit order, and
nothing else is there. The kafka params are skipped (saying why) when
``STREAMKIT_TEST_KAFKA`` is unset and fail when it is set and the broker is
unreachable. The broker test leaves a broker running (``kafka-up.sh``) whatever
happens; it uses ``KAFKA_PORT`` if set, else the port of ``STREAMKIT_TEST_KAFKA``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.capture import Relay
from streamkit.records import ChangeRecord, decode_record
from tests.kafka_env import KAFKA_ENV, broker, kafka_param, log_url, needs_kafka

KILLS = int(os.environ.get("STREAMKIT_FAULT_KILLS", "20"))
SEED = int(os.environ.get("STREAMKIT_FAULT_SEED", str(random.randrange(1 << 30))))

# Short deadlines: a relay that cannot reach the broker fails over to a retry quickly.
_KAFKA_OPTIONS = "request_timeout_ms=8000&append_timeout=15"
# FULL: each local append waits for an fsync, so (as on Kafka) a relay spends most of
# a batch with it in doubt, and a random kill often leaves one (NORMAL: ~1 kill in 5)
_LOCAL_OPTIONS = "poll_interval=0.02&synchronous=FULL"
STREAMED = ("Users", "Orders")  # tables with a stream; "Quiet" has none

pytestmark = pytest.mark.slow

# The relay process. It imports everything first and waits for "go" on stdin, so the
# test can start the next one while the current one runs (a cold start costs ~0.5 s
# of CPU that would otherwise be spent between a kill and the next relay). It prints
# "ready" once the relay has started (producer started, any batch in doubt resolved),
# and how it resolved a batch left in doubt by the relay killed before it.
RUNNER = """
import asyncio
import os
import sys
import threading

import streamkit as sk
from streamkit.capture import Relay

if sys.argv[2].startswith("kafka://"):
    import streamkit.log._kafka  # noqa: F401


class TracedRelay(Relay):
    async def _resolve_in_doubt(self) -> None:
        done, intent = await self._state()
        await super()._resolve_in_doubt()
        if intent > done:
            after, _ = await self._state()
            outcome = "landed" if after >= intent else "resent"
            print("in-doubt", done, intent, outcome, flush=True)

    async def _settle_parked(self, entry):
        settled = await super()._settle_parked(entry)
        if entry.intent > entry.after:
            outcome = "landed" if settled.after >= entry.intent else "resent"
            print("catch-up-in-doubt", entry.after, entry.intent, outcome, flush=True)
        return settled


async def main(storage: str, log: str, namespace: str, max_batch: int) -> None:
    if not await asyncio.to_thread(sys.stdin.readline):
        return  # not needed after all
    # the test closing stdin (or dying) ends this relay: none outlives the test
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(3)), daemon=True).start()
    app = sk.App(storage=storage, log=log, namespace=namespace)
    # a short lease: each relay killed here is replaced within a second
    relay = TracedRelay(app._store, app.log, app.namespace, max_batch=max_batch, lease_seconds=1.0)
    ready = asyncio.Event()
    task = asyncio.create_task(relay.run(idle_poll=0.02, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():
        print("ready", flush=True)
    await task  # until killed; a relay that fails exits non-zero with the traceback


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


# --- backends ------------------------------------------------------------------------------
def _log_url(backend: str, tmp_path: Path) -> str:
    return log_url(backend, tmp_path, local_options=_LOCAL_OPTIONS, kafka_options=_KAFKA_OPTIONS)


def _new_app(tmp_path: Path, log_url: str) -> sk.App:
    return sk.App(
        storage=f"sqlite:///{tmp_path}/store.db",
        log=log_url,
        namespace=f"faults-{uuid.uuid4()}",
    )


async def _until(
    what: str, check: Callable[[], Awaitable[bool]], *, within: float, every: float = 0.02
) -> None:
    """Wait until ``check()`` is true; fail, naming ``what``, after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(every)


# --- the writer ----------------------------------------------------------------------------
@dataclass
class Writer:
    """Commits a random mix of writes at a paced rate until stopped."""

    app: sk.App
    rate: float
    rng: random.Random
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ops: Counter[str] = field(default_factory=Counter)
    extra: str | None = None  # a fourth streamed table (key "k") ...
    extra_share: float = 0.2  # ... that this share of the writes go to

    async def run(self) -> None:
        app, rng = self.app, self.rng
        users, orders, quiet = app.table("Users"), app.table("Orders"), app.table("Quiet")
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 0
        while not self.stop.is_set():
            user = f"u{rng.randrange(40)}"
            order = {"OrderID": f"o{rng.randrange(15)}", "Line": rng.randrange(4)}
            pick = rng.random()
            if self.extra is not None and rng.random() < self.extra_share:
                extra, k = app.table(self.extra), {"k": f"l{rng.randrange(20)}"}
                if rng.random() < 0.6:
                    await extra.update(k, add={"n": 1}, set={"last": n})
                else:  # one storage transaction across it and a table that goes on
                    async with app.transaction() as tx:
                        tx.update(extra, k, add={"n": 1}, set={"last": n})
                        tx.put(users, {"UserID": user, "n": n, "extra": True})
                self.ops["extra"] += 1
            elif pick < 0.35:
                await users.put({"UserID": user, "n": n, "pad": "x" * rng.randrange(200)})
                self.ops["put"] += 1
            elif pick < 0.55:
                await orders.update(order, add={"qty": 1}, set={"last": n})
                self.ops["update"] += 1
            elif pick < 0.65:
                await users.delete({"UserID": user})
                self.ops["delete"] += 1
            elif pick < 0.82:
                other = f"u{rng.randrange(40, 80)}"  # never the same item as `user`
                async with app.transaction() as tx:
                    tx.put(users, {"UserID": user, "n": n, "tx": True})
                    tx.delete(users, {"UserID": other})
                    tx.update(orders, order, add={"qty": 2})
                    tx.put(quiet, {"k": user})  # archived, never published
                self.ops["transaction"] += 1
            elif pick < 0.95:
                lines = rng.sample(range(10), rng.randrange(2, 10))
                await orders.batch_write(
                    puts=[{"OrderID": order["OrderID"], "Line": ln, "n": n} for ln in lines]
                )
                self.ops["batch_write"] += 1
            else:
                await quiet.put({"k": user, "n": n})
                self.ops["quiet"] += 1
            n += 1
            ahead = n / self.rate - (loop.time() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing, not waiting for anything


async def _create_tables(app: sk.App) -> None:
    await app.create_table("Users", partition_key="UserID")
    await app.create_table("Orders", partition_key="OrderID", sort_key=("Line", "N"))
    await app.create_table("Quiet", partition_key="k", stream=None)


# --- the check -----------------------------------------------------------------------------
def _item_key(record: ChangeRecord) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return record.table, tuple(sorted(record.keys.items()))


async def _check_log_matches_outbox(
    app: sk.App, *, within: float = 30.0, streamed: tuple[str, ...] = STREAMED
) -> dict[str, int]:
    """Every published outbox record is in its topic once, in per-item order; nothing else.

    Returns the number of records per table.
    """
    tail = await app._store.read_changes_tail()
    rows = await app._store.read_changes(0, tail + 1)
    assert rows, "the writer committed nothing"
    assert [r.seq for r in rows] == list(range(1, tail + 1)), "the outbox has gaps"
    expected: dict[str, list[ChangeRecord]] = defaultdict(list)
    for row in rows:
        if row.publish:
            expected[row.table].append(decode_record(row.record))
    assert set(expected) == set(streamed), f"published tables: {sorted(expected)}"
    unpublished = [r for r in rows if not r.publish]
    assert unpublished, "no unpublished (stream=None) record was written: the check is vacuous"
    assert {r.table for r in unpublished} == {"Quiet"}

    counts: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    for table in streamed:
        want = expected[table]
        # Kafka makes a committed transaction readable a few ms after commit returns
        deadline = loop.time() + within
        while True:
            got = [r async for r in app.changes(table, follow=False)]
            if len(got) >= len(want) or loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
        ids = Counter(r.event_id for r in got)
        twice = [i for i, n in ids.items() if n > 1]
        assert not twice, f"{table}: {len(twice)} records published more than once"
        by_id = {r.event_id: r for r in want}
        missing = [r.sequence_number for r in want if r.event_id not in ids]
        assert not missing, f"{table}: {len(missing)} records never published: {missing[:10]}"
        foreign = [r for r in got if r.event_id not in by_id]
        assert not foreign, f"{table}: {len(foreign)} records that were never committed"
        assert len(got) == len(want)
        for r in got:
            assert r == by_id[r.event_id], f"{table}: record {r.sequence_number} differs"
        per_item_log: dict[Any, list[int]] = defaultdict(list)
        per_item_outbox: dict[Any, list[int]] = defaultdict(list)
        for r in got:
            per_item_log[_item_key(r)].append(r.sequence_number)
        for r in want:
            per_item_outbox[_item_key(r)].append(r.sequence_number)
        assert per_item_log == per_item_outbox, f"{table}: an item's records are out of order"
        counts[table] = len(got)
    assert [r async for r in app.changes("Quiet", follow=False)] == []
    assert await app.log.describe_topic(f"{app.namespace}.Quiet") is None
    return counts


async def _delete_topics(app: sk.App, more: tuple[str, ...] = ()) -> None:
    if app.log_url.startswith("kafka://"):  # a test broker collects no garbage by itself
        for table in (*STREAMED, "Quiet", *more):
            await app.log.delete_topic(f"{app.namespace}.{table}")


# --- 1. kill -9 the relay process ----------------------------------------------------------
@dataclass
class RelayProcess:
    proc: asyncio.subprocess.Process
    stderr: Path

    @classmethod
    async def spawn(cls, runner: Path, app: sk.App, max_batch: int, stderr: Path) -> RelayProcess:
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(runner),
                app.storage_url,
                app.log_url,
                app.namespace,
                str(max_batch),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc, stderr)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def ready(self, within: float) -> list[str]:
        """Wait for "ready"; returns the lines printed before it."""
        assert self.proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(within):
            while (line := (await self.proc.stdout.readline()).decode()) != "ready\n":
                if not line:
                    await self.proc.wait()
                    raise AssertionError(f"relay exited ({self.proc.returncode}): {self}")
                lines.append(line.strip())
        return lines

    async def kill(self) -> list[str]:
        """SIGKILL; returns what it printed."""
        if self.proc.returncode is None:
            self.proc.kill()
        out, _ = await self.proc.communicate()
        return out.decode().split("\n")

    async def retire(self) -> None:
        """Let an unused spare exit (EOF instead of "go")."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # communicate() without input leaves stdin open
        await self.proc.communicate()

    def __str__(self) -> str:
        return self.stderr.read_text()[-3000:]


@pytest.mark.timeout(max(120, 40 + 5 * KILLS))
@pytest.mark.parametrize("backend", [pytest.param("local", id="local"), kafka_param()])
async def test_relay_killed_mid_stream_publishes_everything_once(
    tmp_path: Path, backend: str
) -> None:
    print(f"STREAMKIT_FAULT_SEED={SEED}")  # shown with a failure: the writes repeat
    rng = random.Random(SEED)
    app = _new_app(tmp_path, _log_url(backend, tmp_path))
    await app.log.open()  # a Kafka broker named but unreachable fails the test here
    await _create_tables(app)
    runner = tmp_path / "relay_runner.py"
    runner.write_text(RUNNER)
    # fast enough that a relay started after a kill is busy catching up for a while
    rate = 1000 if backend == "local" else 400
    # small batches keep a local relay (fast) inside its batches most of the time
    batch_sizes = (5, 10, 50) if backend == "local" else (10, 50, 250)
    writer = Writer(app, rate=rate, rng=random.Random(rng.random()))
    writing = asyncio.create_task(writer.run())

    kills = {"after ready": 0, "during start": 0}
    left_in_doubt = advanced = done = 0
    resolutions: Counter[str] = Counter()
    spare = await RelayProcess.spawn(runner, app, rng.choice(batch_sizes), tmp_path / "relay-0.err")
    relay = spare
    try:
        for i in range(KILLS):
            relay, spare = (
                spare,
                await RelayProcess.spawn(
                    runner, app, rng.choice(batch_sizes), tmp_path / f"relay-{i + 1}.err"
                ),
            )
            relay.go()
            printed: list[str] = []
            if i % 5 == 4:
                # now and then while it starts: connecting, fencing, resolving
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                kills["during start"] += 1
            else:
                printed = await relay.ready(within=60)
                await asyncio.sleep(rng.uniform(0.0, 0.5))  # a random point mid-stream
                kills["after ready"] += 1
            printed += await relay.kill()
            assert relay.proc.returncode == -9, f"the relay exited by itself: {relay}"
            resolutions.update(p.split()[-1] for p in printed if p.startswith("in-doubt"))
            done_key, intent_key = app.relay.state_keys
            meta = await app._store.read_meta((done_key, intent_key))
            if int(meta.get(done_key, 0)) > done:
                advanced += 1
            done = int(meta.get(done_key, 0))
            if int(meta.get(intent_key, 0)) > done:
                left_in_doubt += 1
        await spare.retire()
    finally:
        writer.stop.set()
        await writing
        for process in (relay, spare):
            if process.proc.returncode is None:
                await process.kill()

    tail = await app._store.read_changes_tail()
    async with app.running():  # one relay, to the end
        await app.drain(timeout=120)
    try:
        counts = await _check_log_matches_outbox(app)
    finally:
        await _delete_topics(app)
        await app.close()

    report = (
        f"{backend}: seed {SEED}, {KILLS} kills {kills}, writes {dict(writer.ops)}, "
        f"{tail} outbox rows, {counts} published; the killed relays got to {done} and moved on "
        f"in {advanced} runs; kills that left a batch in doubt: {left_in_doubt}, resolved: "
        f"{dict(resolutions)}"
    )
    print(report)
    # the faults were real: relays published between kills and were killed mid-batch
    assert advanced >= KILLS // 4, report
    if KILLS >= 10:
        assert left_in_doubt >= 1, report
        assert sum(resolutions.values()) >= 1, report


# --- 1b. kill -9 the relay while a table is set aside, and while it is caught up ----------
@pytest.mark.timeout(max(150, 60 + 6 * KILLS))
@pytest.mark.parametrize("backend", [pytest.param("local", id="local"), kafka_param()])
async def test_relay_killed_while_a_table_is_set_aside_and_caught_up(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table whose topic Kafka takes for another's ("Late_t" next to "Late.t", made
    before the check existed) is set aside while relay processes are killed and
    writes go on to it and to the others; halfway, "Late.t" and its topic are deleted,
    so the next relays catch "Late_t" up — and are killed while they do. In the end
    every record of every table is in the log once, in per-item order."""
    print(f"STREAMKIT_FAULT_SEED={SEED}")
    rng = random.Random(SEED + 1)
    app = _new_app(tmp_path, _log_url(backend, tmp_path))
    await app.log.open()
    await _create_tables(app)
    await app.create_table("Late.t", partition_key="k")
    with monkeypatch.context() as m:  # an "old" table: made without the topic check
        m.setattr("streamkit.capture._tables.check_table_topic", lambda *a, **k: "")
        await app.create_table("Late_t", partition_key="k")
    runner = tmp_path / "relay_runner.py"
    runner.write_text(RUNNER)
    rate = 800 if backend == "local" else 300
    batch_sizes = (5, 10, 50) if backend == "local" else (10, 50, 250)
    writer = Writer(
        app, rate=rate, rng=random.Random(rng.random()), extra="Late_t", extra_share=0.5
    )
    writing = asyncio.create_task(writer.run())
    kills = max(8, KILLS // 2)
    freed_at = kills // 2
    parked_before: list[int] = []  # rows kept for Late_t, seen between kills
    mid_catch_up = 0  # kills that left Late_t partly caught up
    after_at_freeing = -1
    resolutions: Counter[str] = Counter()
    parked_key = f"relay.{app.namespace}.parked/Late_t/"

    async def parked_entries() -> list[dict[str, Any]]:
        raw = await app.store.engine.meta_with_prefix(parked_key)
        return [json.loads(v) for v in raw.values() if v]

    async def catching_up() -> bool:
        entries = await parked_entries()
        return not entries or entries[0]["after"] > progress_seen

    spare = await RelayProcess.spawn(runner, app, rng.choice(batch_sizes), tmp_path / "r-0.err")
    relay = spare
    progress_seen = -1
    try:
        for i in range(kills):
            if i == freed_at:  # from now on its topic can be made
                await app.delete_table("Late.t")
                await app.log.delete_topic(f"{app.namespace}.Late.t")
                [entry] = await parked_entries()
                after_at_freeing = progress_seen = entry["after"]
            # small batches from then on: the catch-up takes many appends
            size = batch_sizes[0] if i + 1 >= freed_at else rng.choice(batch_sizes)
            relay, spare = (
                spare,
                await RelayProcess.spawn(runner, app, size, tmp_path / f"r-{i + 1}.err"),
            )
            relay.go()
            printed: list[str] = []
            if i in (freed_at, freed_at + 1):
                # while it catches Late_t up (at start-up): once it has made progress,
                # at a random moment of a batch
                await _until("the catch-up progressing", catching_up, within=60, every=0.002)
                await asyncio.sleep(rng.uniform(0.0, 0.02))
            else:
                printed = await relay.ready(within=60)
                await asyncio.sleep(rng.uniform(0.1, 0.5))
            printed += await relay.kill()
            assert relay.proc.returncode == -9, f"the relay exited by itself: {relay}"
            resolutions.update(" ".join(p.split()[::3]) for p in printed if "in-doubt" in p)
            entries = await parked_entries()
            if i < freed_at:
                [status] = (await app.capture_status())["failing"]
                assert status["table"] == "Late_t", status
                parked_before.append(status["rows_kept"])
            elif entries and entries[0]["after"] > after_at_freeing:
                mid_catch_up += 1
                progress_seen = entries[0]["after"]
        await spare.retire()
    finally:
        writer.stop.set()
        await writing
        for process in (relay, spare):
            if process.proc.returncode is None:
                await process.kill()

    from streamkit.capture import _relay

    monkeypatch.setattr(_relay, "PARKED_RETRY_INTERVAL", 0.2)
    try:
        async with app.running():  # one relay, to the end
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while (await app.capture_status())["failing"]:
                assert loop.time() < deadline, "Late_t not caught up within 60 s"
                await asyncio.sleep(0.1)
            await app.drain(timeout=120)
        counts = await _check_log_matches_outbox(app, streamed=(*STREAMED, "Late_t"))
    finally:
        await _delete_topics(app, ("Late_t",))
        await app.close()
    report = (
        f"{backend}: seed {SEED}, {kills} kills (Late.t deleted before kill {freed_at}), "
        f"writes {dict(writer.ops)}, rows kept for Late_t between kills {parked_before}, "
        f"kills that left it partly caught up {mid_catch_up}, in-doubt settled "
        f"{dict(resolutions)}, published {counts}"
    )
    print(report)
    assert parked_before[-1] > parked_before[0] > 0, report  # kept, growing, not published
    assert mid_catch_up >= 1, report  # a relay was killed in the middle of the catch-up
    assert counts["Late_t"] >= parked_before[-1], report


# --- 2. kill -9 the broker -----------------------------------------------------------------
class TracedRelay(Relay):
    """The relay, counting how it settled batches left in doubt."""

    resolutions: Counter[str]

    async def _resolve_in_doubt(self) -> None:
        done, intent = await self._state()
        await super()._resolve_in_doubt()
        if intent > done:
            after, _ = await self._state()
            self.resolutions["landed" if after >= intent else "resent"] += 1


@pytest.mark.kafka
@pytest.mark.exclusive
@pytest.mark.timeout(150)
@needs_kafka
async def test_relay_rides_out_a_broker_crash(tmp_path: Path) -> None:
    # short deadlines, so the relay meets the outage (and retries) within seconds
    url = f"kafka://{os.environ[KAFKA_ENV]}?request_timeout_ms=3000&append_timeout=5"
    app = _new_app(tmp_path, url)
    await app.log.open()
    await _create_tables(app)
    relay = app._relay = TracedRelay(app._store, app.log, app.namespace)
    relay.resolutions = Counter()
    writer = Writer(app, rate=400, rng=random.Random(SEED))
    writing = asyncio.create_task(writer.run())
    store, status = app._store, relay.status

    async def published() -> bool:
        return status.published >= 200

    try:
        async with app.running():
            await _until("the relay publishing before the crash", published, within=60)
            await app.drain(timeout=30)
            retries = status.retries
            killed = await broker("kafka-down.sh", "--kill")
            try:
                at_crash = await store.read_changes_tail()

                async def relay_retrying() -> bool:
                    return status.retries > retries

                async def writes_go_on() -> bool:
                    return await store.read_changes_tail() >= at_crash + 300

                await _until("the relay noticing the outage", relay_retrying, within=60)
                await _until("writes committing while the broker is down", writes_go_on, within=30)
                written_in_outage = await store.read_changes_tail() - at_crash
            finally:
                restarted = await broker("kafka-up.sh")  # whatever happened, leave it running
            await app.drain(timeout=60)  # the relay is back by itself
            writer.stop.set()
            await writing
            await app.drain(timeout=60)
        counts = await _check_log_matches_outbox(app)
    finally:
        writer.stop.set()
        await writing
        await _delete_topics(app)
        await app.close()
    report = (
        f"broker killed in {killed:.1f} s, back in {restarted:.1f} s; {written_in_outage} "
        f"outbox rows committed while it was down; relay retries {status.retries}, "
        f"batches left in doubt and settled: {dict(relay.resolutions)}; published {counts}"
    )
    print(report)
    # the relay tried to publish during the outage (writes kept coming), so the batch it
    # was appending was in doubt when the broker came back, and it was settled
    assert sum(relay.resolutions.values()) >= 1, report
