"""PostgreSQL storage figures next to a raw asyncpg floor measured in the same run.

Every figure runs in a fresh database (``CREATE DATABASE sk_bench_<hex>`` on the server
of ``--postgres`` / ``STREAMKIT_TEST_POSTGRES``, dropped afterwards). The streamkit
tables have a NEW_AND_OLD_IMAGES stream, so every put also commits its change record;
items are ``streamkit bench``'s 5-attribute items, every put a new key.

The raw floor does the work of a put with nothing around it: in streamkit's own tables
(the same DDL), one transaction per put (``conn.transaction()``: BEGIN, an upsert of the
item row, an insert of the outbox row numbered by a SEQUENCE, COMMIT: four round trips),
the item encoded per put with streamkit's ``encode_image`` and an outbox record of the
byte size of streamkit's INSERT record. With many writers it shares an asyncpg pool of
the engine's default ``pool_size`` (no reset query on release, as the engine's pool).

Figures (``ratio`` = streamkit / raw):

- **sequential**: one awaited put after another.
- **writers_100**: 100 asyncio tasks putting distinct items (streamkit groups them into
  one commit per batch; ``puts_per_commit`` is the average group size). The raw loop
  commits each put alone, as asked; ``raw_grouped_100`` is the floor of a group commit
  instead: 100 puts per transaction on one connection, one multi-row statement for the
  items and one for the outbox rows (the shape of streamkit's flush).
- **processes_N**: N writer processes (spawned) on one database, each an App (or a raw
  pool) with 50 concurrent tasks; total puts/s. ``server_waits`` is what the server's
  client backends were doing, sampled from ``pg_stat_activity`` every 10 ms.
- **gets_100_readers**, **query_100_items**: reads of the items written, with the raw
  pool reading the same rows.

``client_cpu`` / ``server_cpu`` / ``machine_cpu`` are CPU cores used over the measured
window (CPU seconds ÷ wall seconds): the benchmark process's from ``time.process_time()``
(all writer processes together for processes_N); the server's from /proc, for the
figure's database (its backends and the server's background processes, when the server
runs on this machine); the whole machine's from /proc/stat (everything else running
there too: on a shared 2-core machine it says how much CPU the figure could get).

``python -m benchmarks.postgres --profile`` runs the sequential and 100-writer figures
under pyinstrument instead (wall clock, event loop thread) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streamkit._app import App
from streamkit.cli._bench import _item
from streamkit.records._avro import encode_image, encode_record

POSTGRES_ENV = "STREAMKIT_TEST_POSTGRES"
WRITERS = 100
PROCESS_TASKS = 50
_PREFIX = "sk_bench_"

_RAW_DDL = "CREATE SEQUENCE raw_outbox_seq"
_RAW_UPSERT = (
    "INSERT INTO sk_items (tid, pk, sk, seg, data, size, expires) "
    "VALUES (1, $1, ''::bytea, $2, $3, $4, NULL) ON CONFLICT (tid, pk, sk) DO UPDATE "
    "SET data = excluded.data, size = excluded.size, expires = excluded.expires"
)
_RAW_OUTBOX = (
    "INSERT INTO sk_changes (seq, tid, tname, event, txn, key, record, created_ms, publish, "
    "image, ipk, isk, seg) VALUES (nextval('raw_outbox_seq'), 1, 'Users', 'INSERT', NULL, $1, "
    "$2, $3, true, NULL, $1, ''::bytea, $4)"
)
_RAW_UPSERT_MANY = (
    "INSERT INTO sk_items (tid, pk, sk, seg, data, size, expires) "
    "SELECT 1, pk, ''::bytea, seg, data, $4, NULL FROM unnest($1::bytea[], $2::bigint[], "
    "$3::bytea[]) AS u(pk, seg, data) ON CONFLICT (tid, pk, sk) DO UPDATE "
    "SET data = excluded.data, size = excluded.size, expires = excluded.expires"
)
_RAW_OUTBOX_MANY = (
    "INSERT INTO sk_changes (seq, tid, tname, event, txn, key, record, created_ms, publish, "
    "image, ipk, isk, seg) SELECT nextval('raw_outbox_seq'), 1, 'Users', 'INSERT', NULL, pk, "
    "$3, $4, true, NULL, pk, ''::bytea, seg FROM unnest($1::bytea[], $2::bigint[]) AS u(pk, seg)"
)
_RAW_GET = "SELECT data, size FROM sk_items WHERE tid=$1 AND pk=$2 AND sk=$3"
_RAW_QUERY = "SELECT sk, data FROM sk_items WHERE tid=$1 AND pk=$2 ORDER BY sk LIMIT $3"


# --- databases -------------------------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def default_pool_size(url: str) -> int:
    """The engine's pool size for ``url`` (its default unless the URL sets ``pool_size``)."""
    from streamkit.storage._postgres_conn import _parse_url

    return _parse_url(url).pool_size


async def _admin(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn=url, timeout=30)


async def fresh_database(url: str) -> str:
    """Create ``sk_bench_<12 hex>`` on the server of ``url``; returns its URL."""
    name = f"{_PREFIX}{uuid.uuid4().hex[:12]}"
    conn = await _admin(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(url, name)


async def drop_database(admin_url: str, url: str) -> None:
    """Drop a database made by :func:`fresh_database` (and nothing else)."""
    name = _database_of(url)
    if not name.startswith(_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a benchmark database")
    conn = await _admin(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class _Database:
    """``async with _Database(url) as db_url``: a fresh database for one figure."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.url = ""

    async def __aenter__(self) -> str:
        self.url = await fresh_database(self.admin_url)
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        # the server may be restarting (tests on a shared server crash it on purpose):
        # try for half a minute before leaving the database behind
        import asyncpg

        for attempt in range(30):
            try:
                await drop_database(self.admin_url, self.url)
                return
            except (OSError, asyncpg.CannotConnectNowError):
                if attempt == 29:
                    print(f"could not drop {_database_of(self.url)}: drop it by hand")
                    raise
                await asyncio.sleep(1)


# --- CPU and wait sampling -------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy (every process), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK  # all but idle and iowait


class ServerCpu:
    """CPU seconds used by a local PostgreSQL server for one database: the backends
    connected to it and the server's background processes (WAL writer, checkpointer...),
    not other databases' backends (tests may share the server)."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    @classmethod
    async def find(cls, url: str) -> ServerCpu:
        """Finds the postmaster as the parent of our own backend (None: not on this machine)."""
        host = urlsplit(url).hostname or "localhost"
        conn = await _admin(url)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            stat = _proc_stat(backend) if host in ("127.0.0.1", "localhost", "::1") else None
        finally:
            await conn.close()
        return cls(stat[0] if stat else None)

    def seconds(self, database: str) -> float | None:
        if self.postmaster is None:
            return None
        total = 0.0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _proc_stat(pid)
            if stat is None or (stat[0] != self.postmaster and pid != self.postmaster):
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            # a client backend's title is "postgres: user database host(port) state"
            if "(" not in title or f" {database} " in title:
                total += stat[1]
        return total


@dataclass
class Sample:
    """Counts and CPU seconds summed over one or more measured windows."""

    count: int = 0
    wall: float = 0.0
    client: float = 0.0
    server: float | None = 0.0
    machine: float | None = 0.0

    def add(self, other: Sample) -> None:
        self.count += other.count
        self.wall += other.wall
        self.client += other.client
        self.server = (
            None if self.server is None or other.server is None else self.server + other.server
        )
        self.machine = (
            None if self.machine is None or other.machine is None else self.machine + other.machine
        )

    def figures(self) -> dict[str, Any]:
        """Operations per second and CPU cores used (CPU seconds / wall seconds)."""

        def cores(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds / self.wall, 2)

        def per_op(seconds: float | None) -> float | None:
            return None if seconds is None or not self.count else round(1e6 * seconds / self.count)

        return {
            "per_s": self.count / self.wall,
            "client_cpu": cores(self.client),
            "server_cpu": cores(self.server),
            "machine_cpu": cores(self.machine),
            "client_us_per_op": per_op(self.client),
            "server_us_per_op": per_op(self.server),
        }


class Window:
    """One measured window: wall time, this process's CPU, the server's and the machine's."""

    def __init__(self, server: ServerCpu, url: str) -> None:
        self.server = server
        self.database = _database_of(url)
        # reading /proc takes a few ms: outside the measured wall and CPU time
        self._server = server.seconds(self.database)
        self._machine = _machine_busy()
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def close(self, count: int, client_cpu: float | None = None) -> Sample:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu if client_cpu is None else client_cpu
        end = self.server.seconds(self.database)
        busy = _machine_busy()
        return Sample(
            count,
            wall,
            cpu,
            None if end is None or self._server is None else end - self._server,
            None if busy is None or self._machine is None else busy - self._machine,
        )


async def sample_waits(admin_url: str, database: str, stop: asyncio.Event) -> str:
    """What the database's client backends do, sampled every 10 ms until ``stop``: the
    share of samples per state (backends that were idle throughout are left out)."""
    conn = await _admin(admin_url)
    per_pid: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    try:
        while not stop.is_set():
            for pid, state, wtype, event in await conn.fetch(
                "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = $1 AND backend_type = 'client backend'",
                database,
            ):
                if state == "active":
                    label = f"{wtype}:{event}" if wtype else "running"
                elif state == "idle in transaction":
                    label = "idle in transaction (client's turn)"
                else:
                    label = "idle (between transactions)"
                per_pid[pid][label] += 1
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    total: collections.Counter[str] = collections.Counter()
    for counts in per_pid.values():
        if any(not label.startswith("idle (") for label in counts):
            total.update(counts)
    n = sum(total.values()) or 1
    return ", ".join(f"{label} {100 * c / n:.0f}%" for label, c in total.most_common(5))


# --- streamkit and raw puts ------------------------------------------------------------------


def _normalized(i: int) -> dict[str, Any]:
    """``_item(i)`` as ``normalize_item`` leaves it (numbers are Decimals)."""
    item = _item(i)
    item["Age"] = Decimal(item["Age"])
    return item


def _record_bytes() -> bytes:
    """An outbox record of the size of streamkit's INSERT record for these items."""
    data = encode_image(_normalized(0))
    return encode_record(
        event_id=os.urandom(16).hex(),
        event_name="INSERT",
        table="Users",
        keys=encode_image({"UserID": "user-00000000"}),
        new_image=data,
        old_image=None,
        changed=None,
        sequence_number=1_000_000,
        created_at_ms=time.time_ns() // 1_000_000,
        size_bytes=100,
        view_type="NEW_AND_OLD_IMAGES",
        user_identity=None,
        origin="local",
    )


_RECORD = _record_bytes()


async def raw_put(conn: Any, i: int) -> None:
    """One put of the raw floor on ``conn``: one transaction, item upsert + outbox row."""
    pk = f"user-{i:08d}".encode()
    data = encode_image(_normalized(i))
    seg = zlib.crc32(pk)
    async with conn.transaction():
        await conn.execute(_RAW_UPSERT, pk, seg, data, 63)
        await conn.execute(_RAW_OUTBOX, pk, _RECORD, time.time_ns() // 1_000_000, seg)


async def raw_put_group(conn: Any, first: int, n: int) -> None:
    """``n`` puts of the raw floor in one transaction: one multi-row statement for the items
    and one for the outbox rows (the shape of streamkit's group flush), four round trips."""
    pks = [f"user-{i:08d}".encode() for i in range(first, first + n)]
    data = [encode_image(_normalized(i)) for i in range(first, first + n)]
    segs = [zlib.crc32(pk) for pk in pks]
    async with conn.transaction():
        await conn.execute(_RAW_UPSERT_MANY, pks, segs, data, 63)
        await conn.execute(_RAW_OUTBOX_MANY, pks, segs, _RECORD, time.time_ns() // 1_000_000)


async def _no_reset(conn: Any) -> None:
    return None


async def raw_pool(url: str, size: int) -> Any:
    import asyncpg

    return await asyncpg.create_pool(url, min_size=size, max_size=size, reset=_no_reset)


async def raw_schema(url: str) -> None:
    """streamkit's own tables, plus the raw floor's outbox sequence."""
    from streamkit.storage._pg_schema import _DDL

    conn = await _admin(url)
    try:
        await conn.execute(_DDL + ";" + _RAW_DDL)
    finally:
        await conn.close()


async def streamkit_app(url: str, directory: str) -> App:
    """An App on ``url`` with the Users table (NEW_AND_OLD_IMAGES), opened."""
    app = App(storage=url, log=f"local://{directory}/log")
    await app.create_table("Users", partition_key="UserID")
    return app


def count_groups(app: App) -> list[int]:
    """Wrap the engine's group commit to note each group's size (benchmark-only
    instrumentation: one extra coroutine call per group)."""
    engine: Any = app.store.engine
    inner = engine._commit
    sizes: list[int] = []

    async def commit(conn: Any, works: list[Any], stage: list[bool]) -> Any:
        sizes.append(len(works))
        return await inner(conn, works, stage)

    engine._commit = commit
    return sizes


@dataclass
class Side:
    """One side of a figure: ``writers`` tasks calling ``put(i)`` on the database ``url``.

    Writer ``w`` calls ``put(w * stride + i)`` with ``i`` going on from where its last
    window stopped, so every put is of a new key; each call is ``per_call`` operations.
    """

    put: Callable[[int], Awaitable[Any]]
    writers: int
    url: str
    stride: int = 1_000_000
    per_call: int = 1
    warm_from: int = 99_900_000  # warm-up keys, above every measured one
    groups: list[int] | None = None  # streamkit's group sizes, when counted
    progress: list[int] = field(default_factory=list)

    async def warm(self, calls: int = 200) -> None:
        if self.writers == 1:
            for i in range(calls):
                await self.put(self.warm_from + i)
        else:
            await asyncio.gather(*(self.put(self.warm_from + i) for i in range(calls)))

    async def run(self, seconds: float) -> int:
        """Run the writers for ``seconds``; returns the number of operations."""
        if not self.progress:
            self.progress = [0] * self.writers
        stop = time.perf_counter() + seconds
        done = [0]

        async def writer(w: int) -> None:
            i = self.progress[w]
            while time.perf_counter() < stop:
                await self.put(w * self.stride + i)
                i += 1
            done[0] += i - self.progress[w]
            self.progress[w] = i

        await asyncio.gather(*(writer(w) for w in range(self.writers)))
        return done[0] * self.per_call


async def measure(
    server: ServerCpu,
    sides: list[Side],
    seconds: float,
    profiler: Any = None,
    slices: int | None = None,
) -> list[dict[str, Any]]:
    """Run each side for ``seconds`` in total, alternating between them in slices of about
    half a second, unless ``slices`` says how many (so a change in the machine's load hits
    every side alike); returns each side's figures. With ``profiler``, it runs only while
    the sides do."""
    slices = slices or max(1, round(seconds / 0.5))
    samples = [Sample() for _ in sides]
    groups = [len(s.groups) if s.groups is not None else 0 for s in sides]
    for _ in range(slices):
        for side, sample in zip(sides, samples, strict=True):
            if profiler is not None:
                profiler.start()
            w = Window(server, side.url)
            sample.add(w.close(await side.run(seconds / slices)))
            if profiler is not None:
                profiler.stop()
    out = []
    for side, total, before in zip(sides, samples, groups, strict=True):
        figures = total.figures()
        if side.groups is not None:
            figures["puts_per_commit"] = round(total.count / max(1, len(side.groups) - before), 1)
        out.append(figures)
    return out


@contextlib.asynccontextmanager
async def streamkit_side(admin_url: str, writers: int) -> AsyncIterator[Side]:
    """streamkit puts of ``writers`` tasks, in a fresh database, warmed up."""
    async with _Database(admin_url) as url:
        with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:
            app = await streamkit_app(url, d)
            users = app.table("Users")
            try:
                side = Side(lambda i: users.put(_item(i)), writers, url)
                await side.warm()
                side.groups = count_groups(app)
                yield side
            finally:
                await app.close()


@contextlib.asynccontextmanager
async def raw_side(admin_url: str, writers: int, pool_size: int) -> AsyncIterator[Side]:
    """Raw-floor puts in a fresh database: one connection for one writer, else ``writers``
    tasks sharing a pool of ``pool_size``."""
    import asyncpg

    async with _Database(admin_url) as url:
        await raw_schema(url)
        if writers == 1:
            conn = await asyncpg.connect(url)
            try:
                side = Side(lambda i: raw_put(conn, i), 1, url)
                await side.warm()
                yield side
            finally:
                await conn.close()
            return
        pool = await raw_pool(url, pool_size)
        try:

            async def put(i: int) -> None:
                async with pool.acquire() as c:
                    await raw_put(c, i)

            side = Side(put, writers, url)
            await side.warm()
            yield side
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def raw_grouped_side(admin_url: str, group: int = WRITERS) -> AsyncIterator[Side]:
    """Raw-floor puts ``group`` per transaction, one transaction after another."""
    import asyncpg

    async with _Database(admin_url) as url:
        await raw_schema(url)
        conn = await asyncpg.connect(url)
        try:
            side = Side(
                lambda i: raw_put_group(conn, i * group, group),
                1,
                url,
                per_call=group,
                warm_from=99_900_000 // group,
            )
            await side.warm(2)
            yield side
        finally:
            await conn.close()


# --- writer processes ------------------------------------------------------------------------


def _process_main(
    kind: str, url: str, index: int, seconds: float, tasks: int, pool_size: int, sync: Any, out: Any
) -> None:
    asyncio.run(_process_puts(kind, url, index, seconds, tasks, pool_size, sync, out))


async def _process_puts(
    kind: str,
    url: str,
    index: int,
    seconds: float,
    tasks: int,
    pool_size: int,
    sync: Any,
    out: Any,
) -> None:
    """One writer process: ``tasks`` concurrent tasks for ``seconds`` after the barrier;
    puts (puts, seconds, CPU seconds, group commits) on ``out``, then waits at the barrier
    again (the parent reads the server's CPU while every connection is still open)."""
    base = index * 20_000_000  # keys of process p: [p * 20M, (p + 1) * 20M)
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:
        app: App | None = None
        pool: Any = None
        if kind == "streamkit":
            app = App(storage=url, log=f"local://{d}/log")
            users = app.table("Users")

            async def put(i: int) -> None:
                await users.put(_item(base + i))

        else:
            pool = await raw_pool(url, pool_size)

            async def put(i: int) -> None:
                async with pool.acquire() as c:
                    await raw_put(c, base + i)

        try:
            side = Side(put, tasks, url, stride=200_000, warm_from=19_000_000)
            await side.warm(tasks)
            groups = count_groups(app) if app is not None else []
            sync.wait(timeout=120)  # every process (and the parent) is ready
            cpu = time.process_time()
            start = time.perf_counter()
            n = await side.run(seconds)
            out.put((n, time.perf_counter() - start, time.process_time() - cpu, len(groups)))
            sync.wait(timeout=120)
        finally:
            if app is not None:
                await app.close()
            if pool is not None:
                await pool.close()


async def _meet(sync: Any, procs: list[Any]) -> None:
    """Wait at the barrier with the writer processes; fail (not hang) if one of them dies."""
    waiting = asyncio.ensure_future(asyncio.to_thread(sync.wait, 120))
    while not waiting.done():
        await asyncio.wait([waiting], timeout=0.2)
        if not waiting.done() and any(p.exitcode is not None for p in procs):
            sync.abort()
            with contextlib.suppress(threading.BrokenBarrierError):
                await waiting
            raise RuntimeError("a writer process exited early (its error is above)")
    await waiting


async def process_puts(
    admin_url: str,
    server: ServerCpu,
    kind: str,
    processes: int,
    seconds: float,
    pool_size: int,
    tasks: int = PROCESS_TASKS,
) -> dict[str, Any]:
    """``processes`` spawned writer processes (``kind`` streamkit or raw) on one fresh
    database: total puts/s, CPU, and the server backends' wait states."""
    async with _Database(admin_url) as url:
        if kind == "streamkit":
            with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:
                app = await streamkit_app(url, d)
                await app.close()
        else:
            await raw_schema(url)
        ctx = multiprocessing.get_context("spawn")
        sync = ctx.Barrier(processes + 1)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_main,
                args=(kind, url, p, seconds, tasks, pool_size, sync, results),
                daemon=True,
            )
            for p in range(processes)
        ]
        for p in procs:
            p.start()
        try:
            await _meet(sync, procs)
            w = Window(server, url)
            stop = asyncio.Event()
            waits = asyncio.create_task(sample_waits(admin_url, _database_of(url), stop))
            got = [await asyncio.to_thread(results.get, True, seconds + 60) for _ in procs]
            stop.set()
            out = w.close(sum(g[0] for g in got), client_cpu=sum(g[2] for g in got)).figures()
            await _meet(sync, procs)
            out["per_s"] = sum(g[0] / g[1] for g in got)
            if kind == "streamkit":
                out["puts_per_commit"] = round(
                    sum(g[0] for g in got) / max(1, sum(g[3] for g in got)), 1
                )
            out["server_waits"] = await waits
            return out
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()


# --- reads -----------------------------------------------------------------------------------


async def gets(
    admin_url: str, server: ServerCpu, seconds: float, pool_size: int, items: int = 10_000
) -> dict[str, Any]:
    """Gets from 100 concurrent readers: streamkit and a raw pool (``pool.fetchrow``)
    reading the same rows, alternately."""
    async with _Database(admin_url) as url:
        with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:
            app = await streamkit_app(url, d)
            users = app.table("Users")
            pool = await raw_pool(url, pool_size)
            try:
                for start in range(0, items, 25):
                    await users.batch_write(
                        puts=[_item(i) for i in range(start, min(items, start + 25))]
                    )

                async def get(i: int) -> None:
                    got = await users.get({"UserID": f"user-{(i * 7919) % items:08d}"})
                    assert got is not None

                async def raw_get(i: int) -> None:
                    pk = f"user-{(i * 7919) % items:08d}".encode()
                    assert await pool.fetchrow(_RAW_GET, 1, pk, b"") is not None

                sides = [Side(get, WRITERS, url), Side(raw_get, WRITERS, url)]
                for side in sides:
                    await side.warm()
                sk, raw = await measure(server, sides, seconds)
            finally:
                await pool.close()
                await app.close()
    return _pair(sk, raw)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def query(admin_url: str, seconds: float, size: int = 100) -> dict[str, Any]:
    """Latency of a query returning ``size`` items, one after another (p50/p99 ms), each
    followed by the raw SELECT of the same rows on its own connection."""
    import asyncpg

    async with _Database(admin_url) as url:
        with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as d:
            app = App(storage=url, log=f"local://{d}/log")
            orders = await app.create_table("Orders", partition_key="UserID", sort_key=("Seq", "N"))
            conn = await asyncpg.connect(url)
            try:
                for p in range(10):
                    for start in range(0, size, 25):
                        await orders.batch_write(
                            puts=[
                                {"UserID": f"u{p}", "Seq": i, "Total": i * 3, "Item": f"sku-{i}"}
                                for i in range(start, min(size, start + 25))
                            ]
                        )
                tid = await conn.fetchval("SELECT id FROM sk_tables WHERE name = 'Orders'")
                # a string partition key is stored as its UTF-8 bytes
                partitions = [f"u{p}" for p in range(10)]
                stored = {r[0] for r in await conn.fetch("SELECT DISTINCT pk FROM sk_items")}
                assert stored == {p.encode() for p in partitions}
                sk_ms: list[float] = []
                raw_ms: list[float] = []
                stop = time.perf_counter() + 2 * seconds
                n = 0
                while time.perf_counter() < stop or n < 50:
                    partition = partitions[n % len(partitions)]
                    t0 = time.perf_counter()
                    got = [o async for o in orders.query(partition)]
                    t1 = time.perf_counter()
                    rows = await conn.fetch(_RAW_QUERY, tid, partition.encode(), size + 1)
                    t2 = time.perf_counter()
                    assert len(got) == size
                    assert len(rows) == size
                    sk_ms.append((t1 - t0) * 1000)
                    raw_ms.append((t2 - t1) * 1000)
                    n += 1
            finally:
                await conn.close()
                await app.close()
    sk50, sk99 = _percentiles(sk_ms)
    raw50, raw99 = _percentiles(raw_ms)
    return {
        "streamkit_p50_ms": round(sk50, 2),
        "streamkit_p99_ms": round(sk99, 2),
        "raw_p50_ms": round(raw50, 2),
        "raw_p99_ms": round(raw99, 2),
        "samples": n,
    }


# --- the run ---------------------------------------------------------------------------------


def _pair(sk: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "streamkit_per_s": round(sk["per_s"]),
        "raw_per_s": round(raw["per_s"]),
        "ratio": round(sk["per_s"] / raw["per_s"], 2),
    }
    names = ("client_cpu", "server_cpu", "machine_cpu", "client_us_per_op", "server_us_per_op")
    for name in ("puts_per_commit", *names, "server_waits"):
        if name in sk:
            out[f"streamkit_{name}"] = sk[name]
    for name in (*names, "server_waits"):
        if name in raw:
            out[f"raw_{name}"] = raw[name]
    return out


async def server_info(url: str) -> dict[str, Any]:
    conn = await _admin(url)
    try:
        rows = dict(
            await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["server_version", "fsync", "synchronous_commit", "shared_buffers"],
            )
        )
    finally:
        await conn.close()
    parts = urlsplit(url)
    return {"server": f"{parts.hostname}:{parts.port or 5432}", **rows}


async def run(seconds: float, *, url: str) -> dict[str, Any]:
    """Every PostgreSQL figure and its raw floor, each in a fresh database on ``url``'s server."""
    pool_size = default_pool_size(url)
    server = await ServerCpu.find(url)
    out: dict[str, Any] = {**await server_info(url), "pool_size": pool_size}
    out["cpus"] = os.cpu_count()
    out["load_average_at_start"] = round(os.getloadavg()[0], 1)
    async with streamkit_side(url, 1) as sk, raw_side(url, 1, pool_size) as raw:
        out["sequential"] = _pair(*await measure(server, [sk, raw], seconds))
    async with (
        streamkit_side(url, WRITERS) as sk,
        raw_side(url, WRITERS, pool_size) as raw,
        raw_grouped_side(url) as grouped,
    ):
        sk_f, raw_f, grouped_f = await measure(server, [sk, raw, grouped], seconds)
    out["writers_100"] = _pair(sk_f, raw_f)
    out["writers_100"]["raw_grouped_100_per_s"] = round(grouped_f["per_s"])
    out["writers_100"]["of_raw_grouped"] = round(sk_f["per_s"] / grouped_f["per_s"], 2)
    for name in ("client_cpu", "server_cpu", "machine_cpu", "client_us_per_op", "server_us_per_op"):
        out["writers_100"][f"raw_grouped_{name}"] = grouped_f[name]
    for n in (1, 2, 4):
        out[f"processes_{n}"] = _pair(
            await process_puts(url, server, "streamkit", n, seconds, pool_size),
            await process_puts(url, server, "raw", n, seconds, pool_size),
        )
    out["gets_100_readers"] = await gets(url, server, seconds, pool_size)
    out["query_100_items"] = await query(url, seconds)
    out["load_average_at_end"] = round(os.getloadavg()[0], 1)
    return out


# --- profiling -------------------------------------------------------------------------------


def _category(path: str | None) -> str | None:
    if not path:
        return None
    p = path.replace("\\", "/")
    if "/streamkit/storage/_postgres" in p or p.endswith("/streamkit/storage/_pg_schema.py"):
        return "streamkit's PostgreSQL engine (_postgres*, _pg_schema)"
    if "/streamkit/" in p:
        return "streamkit's put path (validation, encoding, write plan, records)"
    if "/asyncpg/" in p:
        return "asyncpg (Python part)"
    if "/asyncio/" in p or p.endswith("selectors.py"):
        return "asyncio + asyncpg's Cython protocol"
    return None


def breakdown(root: Any) -> dict[str, float]:
    """Shares of the profiled wall time: waiting in the selector (the server and the
    network), else the innermost streamkit / asyncpg / asyncio frame on the stack."""
    shares: collections.Counter[str] = collections.Counter()

    def walk(frame: Any, owner: str, waiting: bool) -> None:
        waiting = waiting or (
            frame.function == "select" and (frame.file_path or "").endswith("selectors.py")
        )
        owner = _category(frame.file_path) or owner
        if not frame.children:
            shares["waiting for the server (select)" if waiting else owner] += frame.time
        for child in frame.children:
            walk(child, owner, waiting)

    walk(root, "other", False)
    total = sum(shares.values()) or 1.0
    return {k: round(100 * v / total, 1) for k, v in shares.most_common()}


class _Profiled:
    """The measured window under pyinstrument (wall clock, the event loop's thread), with
    the server backends' wait states sampled alongside."""

    def __init__(self, admin_url: str) -> None:
        from pyinstrument import Profiler

        self.profiler = Profiler(interval=0.0005, async_mode="disabled")
        self.admin_url = admin_url
        self.database = ""  # the profiled side's
        self.waits: asyncio.Task[str] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self.waits = asyncio.create_task(self._sample())
        self.profiler.start()

    def stop(self) -> None:
        self.profiler.stop()
        self._stop.set()

    async def _sample(self) -> str:
        return await sample_waits(self.admin_url, self.database, self._stop)


async def profile(url: str, seconds: float, out_dir: Path) -> None:
    """Profile streamkit and raw puts (sequential and 100 writers) with pyinstrument."""
    pool_size = default_pool_size(url)
    server = await ServerCpu.find(url)
    cases: list[tuple[str, Callable[[], contextlib.AbstractAsyncContextManager[Side]]]] = [
        ("streamkit-sequential", lambda: streamkit_side(url, 1)),
        ("raw-sequential", lambda: raw_side(url, 1, pool_size)),
        ("streamkit-100-writers", lambda: streamkit_side(url, WRITERS)),
        ("raw-100-writers", lambda: raw_side(url, WRITERS, pool_size)),
    ]
    for name, make in cases:
        hook = _Profiled(url)
        async with make() as side:
            hook.database = _database_of(side.url)
            (figures,) = await measure(server, [side], seconds, hook, slices=1)
        assert hook.waits is not None
        waits = await hook.waits
        html = out_dir / f"postgres-{name}.html"
        html.write_text(hook.profiler.output_html())
        session = hook.profiler.last_session
        assert session is not None
        figures["per_s"] = round(figures["per_s"])
        print(f"\n## {name} (under the profiler): {figures}")
        print(f"server backends: {waits}")
        print(f"profile: {html}")
        for label, share in breakdown(session.root_frame()).items():
            print(f"  {share:5.1f}%  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV), metavar="URL")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--profile", action="store_true", help="profile with pyinstrument")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    if not args.postgres:
        parser.error(f"name a server: --postgres URL or ${POSTGRES_ENV}")
    if args.profile:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        asyncio.run(profile(args.postgres, args.seconds, Path(args.out)))
    else:
        for name, value in asyncio.run(run(args.seconds, url=args.postgres)).items():
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
