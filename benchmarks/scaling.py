"""How cost grows: the same figures at several sizes, so a curve shows, not a point.

* **items** (SQLite file store, a table without a stream, 5-attribute items): get and
  put latency (p50/p99) and throughput with 10,000 items and with a big table —
  200,000 items by default, 1,000,000 with ``STREAMKIT_BENCH_BIG=1`` — measured in
  alternating slices (both tables open at once), gets and puts (overwrites) of random
  existing keys; and the file size per item after the fill (WAL checkpointed).
* **tables** (embedded log): 1, 10 and 50 tables with a stream, ``records`` puts spread
  over them; the relay's start-up (its first start, which makes every table's topic,
  and a second one) and its throughput draining the outbox.
* **handlers** (embedded log, one table, each count in its own process so RSS is its
  own): 1, 10 and 50 no-op ``async`` handlers on the same table, each reading all
  ``records`` change records already in the log; throughput (records delivered per
  second, all handlers together), then the process's idle CPU and RSS with the
  handlers running and nothing to do.
* **scale-out** (Kafka; skipped, with a note, when no broker is given): ``records``
  change records already in a table's topic (8 partitions, the default), then k = 1, 2,
  3, 4 ``streamkit run`` processes of the same app, one handler (a fresh consumer group
  per k, so each k reads the whole backlog); the handler does a fixed ~40-60 µs of CPU
  work per record (``WORK_LOOPS``) and appends the record's sequence number and the
  time to its process's file. Time until the group has delivered every record, the
  rate once all k processes deliver, and a check: each record delivered once, none
  missed. 120,000 records by default.
* **archive** (embedded log, PITR on, ``recovery_days=1``): ``ARCHIVE_KEYS`` items
  overwritten at random until the history holds 100,000 and 300,000 changes (and
  1,000,000 with ``STREAMKIT_BENCH_BIG=1``), each size in a fresh store: the archive's
  size on disk, what the relay's compaction removes now, what it removes once the
  changes are older than the recovery window (``now_ms`` a day ahead), and
  ``restore_to_time`` before and after.

``python -m benchmarks --only scaling [--kafka HOST:PORT]`` (about two and a half
minutes by default; the 1M-item fill alone takes a few minutes). ``python -m benchmarks.scaling
scaleout HOST:PORT``, ``python -m benchmarks.scaling archive [CHANGES ...]`` and
``python -m benchmarks.scaling items N1 N2 ... [--seconds S]`` (tables of N items each,
filled by the engine's bulk load; e.g. 10000 1000000 10000000) run one part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import streamkit as sk
from streamkit._names import table_topic
from streamkit.capture import Relay
from streamkit.cli._bench import _item
from streamkit.log import TopicConfig

BIG_ENV = "STREAMKIT_BENCH_BIG"
KAFKA_ENV = "STREAMKIT_BENCH_KAFKA"
SMALL_ITEMS = 10_000
BIG_ITEMS = 200_000
HUGE_ITEMS = 1_000_000


def _pct(sorted_values: Sequence[float], p: float) -> float:
    i = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[i]


def _file_size(db: str) -> int:
    """The database file and its WAL, in bytes."""
    wal = f"{db}-wal"
    return os.path.getsize(db) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


_ROOT = str(Path(__file__).resolve().parent.parent)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _fill(table: sk.Table, n: int, first: int = 0) -> float:
    """``n`` puts (batch writes of 25, 8 at a time); returns items/s."""
    batches = [range(i, min(i + 25, first + n)) for i in range(first, first + n, 25)]

    async def worker(w: int) -> None:
        for b in batches[w::8]:
            await table.batch_write(puts=[_item(i) for i in b])

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(8)))
    return n / (time.perf_counter() - start)


# --- items in one table ----------------------------------------------------------------------
async def _alternate(
    ops: dict[str, Callable[[int], Awaitable[Any]]], seconds: float, slices: int = 6
) -> dict[str, list[float]]:
    """Per-call latencies (s) of each op, run in alternating slices of ``seconds / slices``."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(slices):
        for name, op in ops.items():
            out = samples[name]
            deadline = time.perf_counter() + seconds / slices / len(ops)
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await op(len(out))
                out.append(time.perf_counter() - t0)
    return samples


def _get_put_ops(
    tables: dict[str, tuple[sk.Table, int]],
) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """``get_<name>`` and ``put_<name>`` of each table of ``n`` items ``_item(0..n-1)``:
    a get of a random existing key, an overwrite (a real MODIFY) of one."""
    rng = random.Random(7)
    ops: dict[str, Callable[[int], Awaitable[Any]]] = {}
    for name, (t, n) in tables.items():

        async def get(_: int, t: sk.Table = t, n: int = n) -> None:
            assert await t.get({"UserID": f"user-{rng.randrange(n):08d}"}) is not None

        async def put(i: int, t: sk.Table = t, n: int = n) -> None:
            item = _item(rng.randrange(n))
            item["Age"] = i  # a real change: a MODIFY, not a no-op
            await t.put(item)

        ops[f"get_{name}"] = get
        ops[f"put_{name}"] = put
    return ops


def _scan_page_ops(
    tables: dict[str, tuple[sk.Table, int]],
) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """``scan_<name>``: one 100-item scan page starting after a random existing key (a
    page deep in a big table must cost what one near its start costs)."""
    rng = random.Random(11)
    ops: dict[str, Callable[[int], Awaitable[Any]]] = {}
    for name, (t, n) in tables.items():

        async def page(_: int, t: sk.Table = t, n: int = n) -> None:
            start = {"UserID": f"user-{rng.randrange(n - 200):08d}"}
            got = await t.scan_page(limit=100, start_key=start)
            assert len(got.items) == 100

        ops[f"scan_{name}"] = page
    return ops


def _summary(latencies: list[float]) -> dict[str, Any]:
    s = sorted(latencies)
    return {
        "per_s": round(len(s) / sum(s)),
        "p50_us": round(_pct(s, 50) * 1e6, 1),
        "p99_us": round(_pct(s, 99) * 1e6, 1),
    }


async def items_figures(seconds: float, big: int | None = None) -> dict[str, Any]:
    """Gets and puts with 10k vs ``big`` items, side by side; file size per item."""
    if big is None:
        big = HUGE_ITEMS if os.environ.get(BIG_ENV) == "1" else BIG_ITEMS
    sizes = {"small": SMALL_ITEMS, "big": big}
    out: dict[str, Any] = {"items": sizes}
    with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
        apps: dict[str, sk.App] = {}
        tables: dict[str, sk.Table] = {}
        try:
            for name, n in sizes.items():
                app = apps[name] = sk.App(
                    storage=f"sqlite:///{d}/{name}.db", log=f"local://{d}/{name}-log"
                )
                tables[name] = await app.create_table("Users", partition_key="UserID", stream=None)
                out[f"fill_{name}_items_per_s"] = round(await _fill(tables[name], n))
            ops = _get_put_ops({name: (tables[name], n) for name, n in sizes.items()})
            samples = await _alternate(ops, 4 * seconds)
        finally:
            for app in apps.values():
                await app.close()  # the last connection checkpoints the WAL into the file
        for op, lat in samples.items():
            out[op] = _summary(lat)
        for name, n in sizes.items():
            out[f"file_{name}_bytes_per_item"] = round(_file_size(f"{d}/{name}.db") / n)
        for what in ("get", "put"):
            s, b = out[f"{what}_small"], out[f"{what}_big"]
            out[f"{what}_big_vs_small_per_s"] = round(b["per_s"] / s["per_s"], 2)
    return out


class _LazyItems(Sequence[Any]):
    """Items 0..n-1 of ``_item`` as stored rows (pk, sk, image, size, expires), made as
    they are read: the bulk load of a 10M-item table holds none of them in memory."""

    def __init__(self, spec: Any, n: int) -> None:
        self.spec, self.n = spec, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        from streamkit.records import normalize_item
        from streamkit.records._avro import encode_image
        from streamkit.records._values import item_size

        if isinstance(i, slice) or not 0 <= i < self.n:
            raise IndexError(i)
        item = normalize_item(_item(i))
        pk, sk = self.spec.key.extract({"UserID": item["UserID"]})
        return (pk, sk, encode_image(item), item_size(item), None)


async def _bulk_table(app: sk.App, n: int) -> tuple[sk.Table, float]:
    """A ``Users`` table of ``n`` items made by the engine's bulk load (``load_table``,
    the path restores take: one transaction, no change records); returns items/s."""
    from dataclasses import replace

    seed = await app.create_table("Seed", partition_key="UserID", stream=None, pitr=False)
    spec = replace(await seed.spec(), name="Users", table_id=0, created_at=None)
    await app.delete_table("Seed")
    store = app.store
    start = time.perf_counter()
    store.remember(await store.engine.load_table(spec, _LazyItems(spec, n), None))
    return app.table("Users"), n / (time.perf_counter() - start)


async def items_curve(sizes: Sequence[int], seconds: float) -> dict[str, Any]:
    """Gets and overwriting puts of random existing keys in tables of each size, all open
    at once and measured in alternating slices; the bulk load's rate and the file size
    per item (WAL checkpointed). ``python -m benchmarks.scaling items 10000 1000000
    10000000``: the 10M-item file is ~4 GB and its load takes several minutes."""
    out: dict[str, Any] = {"items": list(sizes)}
    with tempfile.TemporaryDirectory(prefix="streamkit-items-") as d:
        apps: dict[int, sk.App] = {}
        tables: dict[int, sk.Table] = {}
        try:
            for n in sizes:
                app = apps[n] = sk.App(storage=f"sqlite:///{d}/{n}.db", log=f"local://{d}/{n}-log")
                tables[n], rate = await _bulk_table(app, n)
                out[f"load_{n}_items_per_s"] = round(rate)
                print(f"loaded {n:,} items at {rate:,.0f}/s", file=sys.stderr)
            named = {str(n): (tables[n], n) for n in sizes}
            ops = {**_get_put_ops(named), **_scan_page_ops(named)}
            samples = await _alternate(ops, 3 * len(sizes) * seconds)
        finally:
            for app in apps.values():
                await app.close()  # the last connection checkpoints the WAL into the file
        for op, lat in samples.items():
            out[op] = _summary(lat)
        for n in sizes:
            out[f"file_{n}_bytes_per_item"] = round(_file_size(f"{d}/{n}.db") / n)
        first = sizes[0]
        for n in sizes[1:]:
            for what in ("get", "put", "scan"):
                ratio = out[f"{what}_{n}"]["per_s"] / out[f"{what}_{first}"]["per_s"]
                out[f"{what}_{n}_vs_{first}_per_s"] = round(ratio, 2)
    return out


# --- tables with streams: the relay ------------------------------------------------------------
async def _relay_figure(
    d: str, tables: int, records: int, kafka: str | None = None, partitions: int = 8
) -> dict[str, Any]:
    log = f"kafka://{kafka}" if kafka else f"local://{d}/log"
    app = sk.App(
        storage=f"sqlite:///{d}/store.db",
        log=log,
        namespace=f"scale{uuid.uuid4().hex[:10]}",
        topic_partitions=partitions,
    )
    topics = [table_topic(app.namespace, f"T{i:03d}") for i in range(tables)]
    try:
        handles = [
            await app.create_table(f"T{i:03d}", partition_key="UserID") for i in range(tables)
        ]
        per = records // tables
        for i, t in enumerate(handles):
            await _fill(t, per, first=i * per)
        total = per * tables
        await app.log.open()
        starts = []
        relay: Relay | None = None
        for _ in range(2):  # the first start makes the topics; the second finds them
            relay = Relay(
                app._store, app.log, app.namespace, topic_config=TopicConfig(partitions=partitions)
            )
            t0 = time.perf_counter()
            await relay._start()
            starts.append(time.perf_counter() - t0)
            if len(starts) == 1:
                await relay._close_producer()
        assert relay is not None
        moved = 0
        t0 = time.perf_counter()
        while n := await relay.relay_once():
            moved += n
        elapsed = time.perf_counter() - t0
        await relay._close_producer()
        assert moved == total, (moved, total)
        configs = [await app.log.describe_topic(topic) for topic in topics]
        partitions = sum(c.partitions for c in configs if c is not None)
    finally:
        if kafka:
            for topic in topics:
                with contextlib.suppress(Exception):
                    await app.log.delete_topic(topic)
        await app.close()
    return {
        "first_start_ms": round(starts[0] * 1000, 1),
        "second_start_ms": round(starts[1] * 1000, 1),
        "relay_records_per_s": round(total / elapsed),
        "records": total,
        "partitions_created": partitions,
    }


async def tables_figures(
    counts: Sequence[int] = (1, 10, 50, 200),
    records: int = 20_000,
    kafka: str | None = None,
    partitions: int = 8,
) -> dict[str, Any]:
    """Relay start-up and throughput with 1 → 200 streamed tables (same total records),
    on the embedded log, or on Kafka when ``kafka`` is given (its topics deleted after);
    ``partitions`` per table topic (the App's ``topic_partitions``)."""
    out: dict[str, Any] = {}
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
            out[f"{n}_tables"] = await _relay_figure(d, n, records, kafka, partitions)
    return out


# --- handlers on one table ---------------------------------------------------------------------
async def _handlers_child(handlers: int, records: int, idle: float) -> dict[str, Any]:
    """One process: ``handlers`` no-op handlers read ``records`` records, then sit idle."""
    with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
        app = sk.App(storage=f"sqlite:///{d}/store.db", log=f"local://{d}/log")
        users = await app.create_table("Users", partition_key="UserID")
        await _fill(users, records)
        relay = Relay(app._store, app.log, app.namespace)
        await relay._start()
        while await relay.relay_once():  # the records are in the log before any handler runs
            pass
        await relay._close_producer()
        counts = [0] * handlers
        done = asyncio.Event()
        finished = 0

        def make(h: int) -> Callable[[sk.ChangeRecord], Awaitable[None]]:
            async def handle(record: sk.ChangeRecord) -> None:
                nonlocal finished
                counts[h] += 1
                if counts[h] == records:
                    finished += 1
                    if finished == handlers:
                        done.set()

            return handle

        for h in range(handlers):
            app.on_insert("Users", name=f"h{h:02d}")(make(h))
        rss_before = _rss_mb()
        t0 = time.perf_counter()
        async with app.running(relay=False, ttl=False):
            await asyncio.wait_for(done.wait(), 600)
            elapsed = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # let the last commits and polls settle
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(idle)
            idle_cpu = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
            rss = _rss_mb()
        await app.close()
    return {
        "records_per_s": round(handlers * records / elapsed),
        "seconds": round(elapsed, 2),
        "idle_cpu_percent": round(idle_cpu, 2),
        "rss_mb": round(rss, 1),
        "rss_before_handlers_mb": round(rss_before, 1),
    }


async def handlers_figures(
    counts: Sequence[int] = (1, 10, 50), records: int = 10_000, idle: float = 3.0
) -> dict[str, Any]:
    """Each handler count in a fresh process (so its RSS is its own)."""
    out: dict[str, Any] = {}
    for n in counts:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.scaling",
            "handlers",
            str(n),
            str(records),
            str(idle),
            stdout=subprocess.PIPE,
            cwd=_ROOT,
        )
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"handlers child ({n}) exited with {proc.returncode}")
        out[f"{n}_handlers"] = json.loads(stdout.decode().strip().splitlines()[-1])
    return out


# --- scale-out: k `streamkit run` processes, one consumer group --------------------------------
WORK_LOOPS = 700  # ~50 µs of pure-Python arithmetic on this machine (measured per run)
# b"%010d %016d\n" (sequence number, wall clock in µs): a fixed width, so a file's size
# says how many records it holds
_SEEN_LINE = 28

SCALE_APP = """
import os
import time

import streamkit as sk

app = sk.App(storage={storage!r}, log={log!r}, namespace={namespace!r})
_fd = os.open(
    os.path.join({seen!r}, "seen-%d.txt" % os.getpid()), os.O_WRONLY | os.O_APPEND | os.O_CREAT
)


@app.on_insert("Events", name={handler!r})
async def work(record: sk.ChangeRecord) -> None:
    x = 1
    for _ in range({loops}):  # a fixed CPU cost per record
        x = (x * 31 + 7) % 1000003
    os.write(_fd, b"%010d %016d\\n" % (record.sequence_number, time.time_ns() // 1000))
"""


def _work_us(loops: int = WORK_LOOPS) -> float:
    """What the handler's work costs here (µs, the best of 200)."""
    best = math.inf
    for _ in range(200):
        t0 = time.perf_counter()
        x = 1
        for _ in range(loops):
            x = (x * 31 + 7) % 1000003
        best = min(best, time.perf_counter() - t0)
    return round(best * 1e6, 1)


async def _group_run(
    d: Path, k: int, records: int, storage: str, log: str, ns: str
) -> dict[str, Any]:
    """Start ``k`` processes of a fresh handler; time until every record is delivered."""
    seen = d / f"seen-k{k}"
    seen.mkdir()
    (d / f"scale_k{k}.py").write_text(
        SCALE_APP.format(
            storage=storage,
            log=log,
            namespace=ns,
            seen=str(seen),
            handler=f"work_k{k}",
            loops=WORK_LOOPS,
        )
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    logs = [os.open(d / f"run-k{k}-{i}.log", flags, 0o644) for i in range(k)]
    t0 = time.time()  # the wall clock: the processes stamp their records with it
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamkit",
            "run",
            f"scale_k{k}:app",
            "--no-relay",
            cwd=d,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
        for f in logs
    ]
    try:
        while True:
            delivered = sum(f.stat().st_size for f in seen.iterdir()) // _SEEN_LINE
            if delivered >= records:
                break
            if time.time() - t0 > 600 or any(p.returncode is not None for p in procs):
                tail = (d / f"run-k{k}-0.log").read_text()[-2000:]
                raise RuntimeError(f"k={k}: {delivered} of {records} delivered\n{tail}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a late duplicate (a redelivery) would show up by now
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            await p.wait()
        for fd in logs:
            os.close(fd)
    return _group_figures(seen, records, t0, k)


def _group_figures(seen: Path, records: int, t0: float, k: int) -> dict[str, Any]:
    """From the processes' files: time to deliver everything, and the rate once all ``k``
    processes were delivering (after the group's last rebalance of the start-up)."""
    firsts: list[float] = []
    stamps: list[float] = []
    per_process: list[int] = []
    seqs: list[int] = []
    for path in sorted(seen.iterdir()):
        fields = path.read_bytes().split()
        got, at = [int(x) for x in fields[::2]], [int(x) / 1e6 for x in fields[1::2]]
        per_process.append(len(got))
        seqs.extend(got)
        stamps.extend(at)
        firsts.append(min(at, default=math.inf))
    end, start = max(stamps), min(stamps)
    distinct = len(set(seqs))
    out: dict[str, Any] = {
        "seconds_from_start": round(end - t0, 2),
        "first_record_after_s": round(start - t0, 2),
        "records_per_s": round(records / (end - t0)),
        "per_process": sorted(per_process, reverse=True),
        "delivered": len(seqs),
        "duplicates": len(seqs) - distinct,
        "missed": records - distinct,
    }
    if len(firsts) == k and max(firsts) < end:
        all_in = max(firsts)  # every process had its partitions from here on
        late = sum(1 for t in stamps if t >= all_in)
        out["all_delivering_after_s"] = round(all_in - t0, 2)
        out["records_with_all_delivering"] = late
        out["records_per_s_all_delivering"] = round(late / (end - all_in))
    return out


async def scaleout_figures(
    kafka: str, records: int = 120_000, counts: Sequence[int] = (1, 2, 3, 4)
) -> dict[str, Any]:
    """1 → 4 ``streamkit run`` processes sharing one handler's consumer group on Kafka."""
    ns = f"bscale{uuid.uuid4().hex[:8]}"
    log = f"kafka://{kafka}"
    out: dict[str, Any] = {"records": records, "partitions": 8, "work_us": _work_us()}
    with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as tmp:
        d = Path(tmp)
        storage = f"sqlite:///{d}/store.db"
        app = sk.App(storage=storage, log=log, namespace=ns, topic_partitions=8)
        try:
            events = await app.create_table("Events", partition_key="UserID")
            async with app.running(handlers=[], ttl=False):  # the relay fills the topic
                await _fill(events, records)
                await app.drain(timeout=600)
        finally:
            await app.close()
        try:
            for k in counts:
                out[f"{k}_processes"] = await _group_run(d, k, records, storage, log, ns)
        finally:
            try:
                from streamkit.log import from_url

                async with from_url(log) as changes:
                    await changes.delete_topic(f"{ns}.Events")
            except Exception as e:  # the figures stand; say what was left behind
                print(f"could not delete the topic {ns}.Events: {e!r}", file=sys.stderr)
    base = out[f"{counts[0]}_processes"]
    for k in counts:
        fig = out[f"{k}_processes"]
        fig["vs_1"] = round(fig["records_per_s"] / base["records_per_s"], 2)
        if "records_per_s_all_delivering" in fig:
            fig["vs_1_all_delivering"] = round(
                fig["records_per_s_all_delivering"] / base["records_per_s_all_delivering"], 2
            )
    return out


# --- the PITR archive after many changes ------------------------------------------------------
ARCHIVE_KEYS = 10_000
ARCHIVE_CHANGES = (100_000, 300_000)
_DAY_MS = 86_400_000


async def _overwrite(t: sk.Table, keys: int, changes: int, seed: int) -> float:
    """``changes`` puts of random existing-or-new keys (25 distinct keys per batch write,
    8 writers); every put changes ``n``, so each is a change record. Returns changes/s."""
    rng = random.Random(seed)
    batches = [rng.sample(range(keys), 25) for _ in range(changes // 25)]

    async def worker(w: int) -> None:
        for b, batch in enumerate(batches[w::8]):
            n = (b * 8 + w) * 25
            await t.batch_write(
                puts=[
                    {"pk": f"k{key:06d}", "n": n + j, "pad": "x" * 40}
                    for j, key in enumerate(batch)
                ]
            )

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(8)))
    return changes / (time.perf_counter() - start)


def _archive_size(db: str, table: str) -> dict[str, int]:
    """Read-only look at the file (closed by the app, so the WAL is folded in): the table's
    archive rows, the archive's B-tree bytes and its per-table index's, the file and its
    free pages."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT count(*) FROM sk_changes WHERE tname=?", (table,)).fetchone()
        btree = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name='sk_changes'").fetchone()
        index = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name='sk_changes_by_table'"
        ).fetchone()
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    return {
        "rows": int(rows[0]),
        "archive_bytes": int(btree[0] or 0),
        "index_bytes": int(index[0] or 0),  # sk_changes_by_table (none before it existed)
        "file_bytes": _file_size(db),
        "free_bytes": int(free) * int(page),
    }


async def _restore(app: sk.App, target: str, keys: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    restored = await app.restore_to_time("Hist", at=datetime.now(UTC), target=target)
    took = time.perf_counter() - t0
    return {"seconds": round(took, 2), "items_per_s": round(keys / took), "table": restored.name}


def _count(record: Any) -> None:
    return None


async def _small_beside(app: sk.App, since: datetime) -> dict[str, Any]:
    """A 100-item table's restore and last 100 changes (replayed from the archive) next
    to the big table's history: what they cost should follow the small table's own."""
    t0 = time.perf_counter()
    restored = await app.restore_to_time("Small", at=datetime.now(UTC), target="SmallAgain")
    restore_s = time.perf_counter() - t0
    await app.delete_table(restored.name)
    t0 = time.perf_counter()
    summary = await app.replay("Small", _count, since=since, dry_run=True)
    replay_s = time.perf_counter() - t0
    return {
        "restore_ms": round(restore_s * 1000, 1),
        "replay_ms": round(replay_s * 1000, 1),
        "replayed": summary.records,
    }


async def _archive_figure(d: str, keys: int, changes: int) -> dict[str, Any]:
    db, log = f"{d}/archive.db", f"local://{d}/log"
    app = sk.App(storage=f"sqlite:///{db}", log=log)
    try:
        hist = await app.create_table("Hist", partition_key="pk", stream=None, recovery_days=1)
        small = await app.create_table("Small", partition_key="pk", stream=None, recovery_days=1)
        for i in range(200):
            await small.put({"pk": f"s{i % 100}", "n": i})
        rate = await _overwrite(hist, keys, changes, seed=changes)
        small_since = datetime.now(UTC)
        for i in range(200, 300):
            await small.put({"pk": f"s{i % 100}", "n": i})
        async with app.running(handlers=[], ttl=False):
            await app.drain(timeout=600)  # the relay settles every row (nothing to publish)
            # the relay's compaction pass (once a minute), which also fills the archive's
            # per-table index up to the rows it has settled
            await app._store.prune_archive(published_upto=await app.relay._slowest_done())
    finally:
        await app.close()
    filled = _archive_size(db, "Hist")
    app = sk.App(storage=f"sqlite:///{db}", log=log)
    try:
        async with app.running(handlers=[], ttl=False):
            await app.drain(timeout=600)
            # what the relay runs every minute: rows inside the window stay
            pruned_now = await app._store.prune_archive(
                published_upto=await app.relay._slowest_done()
            )
            beside = await _small_beside(app, small_since)
            before = await _restore(app, "Before", keys)
            await app.delete_table(before.pop("table"))
            await app.drain(timeout=600)
            # the same call a day later (recovery_days=1): every change is past the window.
            # The relay makes one call (10,000 rows) a minute; here they run back to back.
            later = int(time.time() * 1000) + _DAY_MS + 60_000
            calls = deleted = 0
            t0 = time.perf_counter()
            for _ in range(changes // 10_000 + 5):
                calls += 1
                n = await app._store.prune_archive(
                    published_upto=await app.relay._slowest_done(), now_ms=later
                )
                deleted += n
                if not n:
                    break
            compact_s = time.perf_counter() - t0
    finally:
        await app.close()
    compacted = _archive_size(db, "Hist")
    app = sk.App(storage=f"sqlite:///{db}", log=log)
    try:
        after = await _restore(app, "After", keys)
        after.pop("table")
    finally:
        await app.close()
    return {
        "writes_per_s": round(rate),
        "rows": filled["rows"],
        "archive_bytes": filled["archive_bytes"],
        "archive_bytes_per_change": round(filled["archive_bytes"] / changes),
        "index_bytes": filled["index_bytes"],
        "file_bytes": filled["file_bytes"],
        "relay_prune_now_deleted": pruned_now,
        "small_table_beside_it": beside,
        "restore": before,
        "after_window": {
            "prune_calls": calls,
            "deleted": deleted,
            "seconds": round(compact_s, 2),
            "rows": compacted["rows"],
            "archive_bytes": compacted["archive_bytes"],
            "index_bytes": compacted["index_bytes"],
            "file_bytes": compacted["file_bytes"],
            "free_bytes": compacted["free_bytes"],
            "restore": after,
        },
    }


async def archive_figures(
    keys: int = ARCHIVE_KEYS, sizes: Sequence[int] | None = None
) -> dict[str, Any]:
    """Archive size and restore time at each history length (a fresh store each)."""
    if sizes is None:
        big = os.environ.get(BIG_ENV) == "1"
        sizes = (*ARCHIVE_CHANGES, 1_000_000) if big else ARCHIVE_CHANGES
    out: dict[str, Any] = {"keys": keys}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="streamkit-scaling-") as d:
            out[f"{n}_changes"] = await _archive_figure(d, keys, n)
    return out


async def run(seconds: float, kafka: str | None = None) -> dict[str, Any]:
    """Every scaling figure (see the module docstring); scale-out needs a Kafka broker
    (``kafka``, else ``STREAMKIT_BENCH_KAFKA``)."""
    out: dict[str, Any] = {"items": await items_figures(seconds)}
    out["tables"] = await tables_figures()
    out["handlers"] = await handlers_figures()
    kafka = kafka or os.environ.get(KAFKA_ENV) or None
    if kafka:
        out["tables_kafka"] = await tables_figures(kafka=kafka)
        out["tables_kafka_1_partition"] = await tables_figures(kafka=kafka, partitions=1)
        out["scaleout"] = await scaleout_figures(kafka)
    else:
        print(f"scaling: scale-out skipped (no Kafka: --kafka HOST:PORT or ${KAFKA_ENV})")
    out["archive"] = await archive_figures()
    per_s = [out["handlers"][k]["records_per_s"] for k in ("1_handlers", "50_handlers")]
    out["handlers"]["50_vs_1_records_per_s"] = round(per_s[1] / per_s[0], 2)
    relay = [out["tables"][k]["relay_records_per_s"] for k in ("1_tables", "50_tables")]
    out["tables"]["50_vs_1_relay_per_s"] = round(relay[1] / relay[0], 2)
    out["median_fill_items_per_s"] = round(
        statistics.median(v for k, v in out["items"].items() if k.startswith("fill_"))
    )
    return out


def main(argv: Sequence[str]) -> None:
    if argv and argv[0] == "handlers":
        n, records, idle = int(argv[1]), int(argv[2]), float(argv[3])
        print(json.dumps(asyncio.run(_handlers_child(n, records, idle))))
        return
    if argv and argv[0] == "scaleout":
        kafka = argv[1] if len(argv) > 1 else os.environ.get(KAFKA_ENV, "")
        if not kafka:
            raise SystemExit(f"scaleout needs a broker: HOST:PORT or ${KAFKA_ENV}")
        print(json.dumps(asyncio.run(scaleout_figures(kafka)), indent=2))
        return
    if argv and argv[0] == "tables":  # tables [HOST:PORT]: on Kafka when a broker is given
        broker = argv[1] if len(argv) > 1 else None
        parts = int(argv[2]) if len(argv) > 2 else 8
        print(json.dumps(asyncio.run(tables_figures(kafka=broker, partitions=parts)), indent=2))
        return
    if argv and argv[0] == "items":  # items N1 N2 ... [--seconds S]
        rest = list(argv[1:])
        secs = 3.0
        if "--seconds" in rest:
            i = rest.index("--seconds")
            secs = float(rest[i + 1])
            del rest[i : i + 2]
        sizes = [int(x) for x in rest] or [SMALL_ITEMS, HUGE_ITEMS]
        print(json.dumps(asyncio.run(items_curve(sizes, secs)), indent=2))
        return
    if argv and argv[0] == "archive":  # archive [CHANGES ...]: the history lengths
        sizes = [int(x) for x in argv[1:]] or None
        print(json.dumps(asyncio.run(archive_figures(sizes=sizes)), indent=2))
        return
    print(json.dumps(asyncio.run(run(float(argv[0]) if argv else 3.0)), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
