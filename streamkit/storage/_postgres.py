"""The PostgreSQL storage engine (``postgresql://user:password@host:port/database``).

Many processes on many machines may share one store. Each engine keeps a pool of
connections for reads and catalog work, one connection for its group writer, and
(while commit listeners exist) one connection that LISTENs for other processes'
commits. The schema and the statements are in :mod:`streamkit.storage._pg_schema`;
the URL and the error mapping in :mod:`streamkit.storage._postgres_conn`; the calls
that run on a pool connection (reads, the change log, backups, settings and leases)
in :mod:`streamkit.storage._postgres_pool`, which this engine's class inherits.

**Writes and group commit.** ``write`` and ``commit_effects`` queue their job; one
writer task drains the queue and commits everything queued in one transaction, in
four round trips: ``BEGIN`` plus the advisory locks, one prefetch query, one flush
statement, ``COMMIT``. The job logic itself (:func:`~streamkit.storage._writes.run_job`)
runs synchronously against an in-memory overlay of the prefetched rows, so no
query is sent per operation. A job that fails (a condition) is undone in the overlay
and left out; if the database refuses the group, it is rolled back and its jobs run
one per transaction, so one bad job cannot fail the others.

**No lost updates.** Before reading, a transaction takes ``pg_advisory_xact_lock`` on
a 64-bit hash of every (table id, partition bytes, sort bytes) it touches, and of
every checkpoint key, in sorted order (so two writers never wait for each other in
a cycle). A lock, unlike ``SELECT ... FOR UPDATE``, also covers a row that does not
exist yet: two processes inserting one new key under ``attribute_not_exists`` run
one after the other, and the second sees the first's row. The prefetch runs after
the locks, so it reads every locked key as last committed. Writers also hold a
shared advisory lock per table, which ``delete_table`` takes exclusively: items are
never written for a table deleted under them.

**Sequence numbers in commit order.** A PostgreSQL SEQUENCE hands out numbers in
call order, not commit order: a transaction that commits later may hold a smaller
number, and a relay that already read past it would skip that row forever. Here the
numbers come from the one-row ``sk_counter``, locked ``FOR UPDATE`` after the key
locks and held until COMMIT, and set to the last number used before COMMIT. The next
writer's ``FOR UPDATE`` waits for that commit and then reads the updated counter, and
PostgreSQL marks a transaction committed (visible to new snapshots) before it releases
its row locks; so every number a writer takes is above every number of every
transaction already visible, and a reader that sees a row also sees every row with a
smaller number. ``changes(after_seq)`` is a plain ``seq > after_seq`` scan. Groups
whose tables keep no change records do not take the counter at all. (The counter is
locked inside the prefetch statement, whose snapshot may predate the previous
holder's commit; that is safe because every row the group reads is under its key
and table locks, which that holder could not have held.)

**Errors.** Every database error is mapped in one place (:func:`_wrap`): a lost
connection, a server shutting down or starting, a serialization failure or deadlock
raise ``StorageError(retriable=True)``; others ``StorageError(retriable=False)``;
the asyncpg error is chained as ``__cause__``. A transaction commits whole or not
at all, but when the connection drops during COMMIT the client cannot know which:
``retriable`` then means "check, and retry if it is not there". A connection lost
before COMMIT was sent is retried once on a new connection (nothing was written),
and reads are retried once; the pool, the writer and the listener reconnect by
themselves after a server restart.

**Distribution (Citus-style), not done here.** Every partition-scoped row already
carries ``seg`` = ``crc32(partition bytes)``, computed by the client the same way on
every engine (it is also the parallel-scan segment). A distributed deployment would:

* distribute ``sk_items`` and ``sk_changes`` by ``seg``
  (``create_distributed_table(..., 'seg')``, co-located), adding ``seg`` to their
  primary keys (a distribution column must be in every unique key): an item and its
  change rows then live on one shard, and a single-partition write job is a
  single-shard transaction; ``sk_archive_base`` and ``sk_backup_items`` get a ``seg``
  column and follow;
* make ``sk_tables``, ``sk_backups`` and ``sk_leases`` reference tables; ``sk_meta``
  too, except the per-partition consumer checkpoints, which would move to a
  distributed table so ``commit_effects`` stays single-shard;
* replace the global ``sk_counter`` by one counter row per shard group (same locking
  rule, so each shard's stream is in commit order) and make the change position a
  (shard, seq) pair: the relay reads every shard's stream in order and merges them,
  which keeps Kafka's per-key order since one key's rows are on one shard;
* take the key advisory locks on the shard's worker (advisory locks are per node), by
  running lock + prefetch + flush as a distributed function co-located on ``seg``;
  multi-shard jobs (transactions across partitions) lock their shards in shard order
  and commit with Citus' two-phase commit;
* keep the ``LISTEN``/``NOTIFY`` doorbell on the coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from streamkit.exceptions import BackupNotFound, StorageError, StreamkitError, TableNotFound
from streamkit.storage import _pg_schema as S
from streamkit.storage._engine import (
    RESTORE_CHUNK,
    ArchiveRow,
    BackupOf,
    RestoreFeed,
    StoredItem,
    new_backup_id,
)
from streamkit.storage._item_collections import collection_meta_keys
from streamkit.storage._postgres_conn import (
    _guard,
    _is_lost,
    _no_reset,
    _parse_url,
    _wrap,
)
from streamkit.storage._postgres_pool import _PostgresPool
from streamkit.storage._spec import TableSpec
from streamkit.storage._versions import extra_meta_keys, extra_reads
from streamkit.storage._write_ops import Checkpoint, WriteJob, WriteOp, WriteResult
from streamkit.storage._writes import run_effects, run_job

__all__ = ("PostgresEngine",)

_TTL_CHUNK = 5000  # item rows per UPDATE when a table's TTL attribute changes
_log = logging.getLogger("streamkit.storage.postgres")

_MAX_GROUP = 1024  # jobs per group commit
_LISTEN_PING = 10.0  # seconds between liveness checks of the LISTEN connection


@dataclass(slots=True)
class _Work:
    """One queued write: its ops (to lock and prefetch), checkpoints, and how to run it."""

    ops: Sequence[WriteOp]
    checkpoints: Sequence[Checkpoint]
    run: Callable[[S.Overlay], Any]
    future: asyncio.Future[Any]


class _Ambiguous(Exception):
    """The connection was lost while COMMIT was in flight."""


# --- the engine ------------------------------------------------------------------------------


class PostgresEngine(_PostgresPool):
    """Tables, items and change records in one PostgreSQL database, shared by many processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._target = _parse_url(url)
        self.storage_id = ""
        self._pool: Any = None
        self._wconn: Any = None
        self._queue: asyncio.Queue[_Work | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[], None]] = []
        self._token = uuid.uuid4().hex  # marks this engine's own NOTIFYs
        self._open_lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------
    async def _connect(self, *, writer: bool = False) -> Any:
        t = self._target
        # The writer runs the same few statements all the time, each with arrays whose
        # length changes per group: one generic plan saves planning them on every group.
        settings = {"plan_cache_mode": "force_generic_plan"} if writer else None
        with _guard(t, connecting=True):
            return await asyncpg.connect(t.dsn, timeout=t.connect_timeout, server_settings=settings)

    async def open(self) -> None:
        """Connect, create the schema in an empty database or check it, start the writer."""
        async with self._open_lock:
            if self._pool is not None:
                return
            t = self._target
            conn = await self._connect(writer=True)
            try:
                with _guard(t, connecting=True):
                    self.storage_id = await S.ensure_schema(conn, t.where)
                    self._pool = await asyncpg.create_pool(
                        t.dsn,
                        min_size=0,
                        max_size=t.pool_size,
                        timeout=t.connect_timeout,
                        reset=_no_reset,
                    )
            except BaseException:
                await conn.close()
                raise
            self._wconn = conn
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._writer = asyncio.create_task(self._write_loop(), name="streamkit-pg-writer")
            if self._listeners:
                self._start_listening()

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        async with self._open_lock:
            writer, self._writer = self._writer, None
            if writer is not None and self._queue is not None:
                self._queue.put_nowait(None)
                await writer
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()
            conn, self._wconn = self._wconn, None
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close()

    # --- writes ------------------------------------------------------------------------
    def _submit(self, work: _Work) -> asyncio.Future[Any]:
        if self._queue is None or self._writer is None:
            raise StorageError(f"storage {self._target.where} is not open (or was closed)")
        self._queue.put_nowait(work)
        return work.future

    async def write(self, job: WriteJob) -> list[WriteResult]:
        """Run one write job atomically, in the next group commit."""
        fut: asyncio.Future[list[WriteResult]] = asyncio.get_running_loop().create_future()
        results: list[WriteResult] = await self._submit(
            _Work(job.ops, (), lambda rows: run_job(rows, job), fut)
        )
        return results

    async def commit_effects(
        self, ops: Sequence[WriteOp], checkpoints: Sequence[Checkpoint], origin: str | None
    ) -> int | None:
        """Apply ``ops`` and advance ``checkpoints`` in one transaction (see run_effects)."""
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        ops_l, cps = list(ops), list(checkpoints)
        stale: int | None = await self._submit(
            _Work(ops_l, cps, lambda rows: run_effects(rows, ops_l, cps, origin), fut)
        )
        return stale

    async def _write_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stop = False
        while not stop:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_GROUP and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            batch = [w for w in batch if not w.future.done()]  # cancelled by their callers
            if not batch:
                continue
            try:
                await self._run_group(batch)
            except Exception as e:  # a caller must never wait forever
                _log.exception("PostgreSQL group writer failed")
                for w in batch:
                    _settle(w.future, None, _wrap(e, self._target))

    async def _run_group(self, batch: list[_Work]) -> None:
        try:
            outcomes, appended = await self._commit_retrying(batch)
        except Exception as e:
            if len(batch) == 1 or isinstance(e, StreamkitError | _Ambiguous) or _is_lost(e):
                err = self._failure(e)
                for w in batch:
                    _settle(w.future, None, err)
                return
            # the database refused the group (not a job's condition: those are undone in
            # the overlay): run each job alone, so only the culprit fails
            appended = False
            for w in batch:
                try:
                    (outcome,), one = await self._commit_retrying([w])
                except Exception as e1:
                    _settle(w.future, None, self._failure(e1))
                    continue
                appended = appended or one
                _settle(w.future, *outcome)
            if appended:
                self._ring()
            return
        for w, outcome in zip(batch, outcomes, strict=True):
            _settle(w.future, *outcome)
        if appended:
            self._ring()

    def _failure(self, e: BaseException) -> BaseException:
        if isinstance(e, _Ambiguous):
            err = StorageError(
                f"PostgreSQL storage {self._target.where}: the connection was lost while "
                "committing, so the write may or may not have been applied: check, and "
                "retry if it is not there",
                retriable=True,
            )
            err.__cause__ = e.__cause__
            return err
        return _wrap(e, self._target)

    async def _commit_retrying(
        self, works: list[_Work]
    ) -> tuple[list[tuple[Any, BaseException | None]], bool]:
        for attempt in (0, 1):
            if self._wconn is None or self._wconn.is_closed():
                self._wconn = None
                self._wconn = await self._connect(writer=True)
            conn = self._wconn
            stage = [False]  # [COMMIT sent]
            try:
                return await self._commit(conn, works, stage)
            except Exception as e:
                await self._abort(conn)
                if stage[0] and _is_lost(e):
                    raise _Ambiguous() from e
                if attempt or not _is_lost(e):
                    raise
        raise AssertionError("unreachable")

    async def _abort(self, conn: Any) -> None:
        if not conn.is_closed():
            try:
                await conn.execute("ROLLBACK")
                return
            except Exception:
                conn.terminate()
        if self._wconn is conn:
            self._wconn = None

    async def _commit(
        self, conn: Any, works: list[_Work], stage: list[bool]
    ) -> tuple[list[tuple[Any, BaseException | None]], bool]:
        """Lock, prefetch, run and flush ``works`` in one transaction; returns each
        job's (value, error) and whether change rows were appended."""
        tids: set[int] = set()
        keys: set[S.ItemKey3] = set()
        meta_keys: set[str] = set()
        counter = False
        for w in works:
            for op in w.ops:
                spec = op.spec
                tids.add(spec.table_id)
                keys.add((spec.table_id, op.k.pk, op.k.sk))
                keys.update(extra_reads(op))  # a replicated table's version row
                meta_keys.update(extra_meta_keys(op))
                meta_keys.update(collection_meta_keys(op))  # an item collection's size
                counter = counter or spec.record_view is not None
            meta_keys.update(cp.key for cp in w.checkpoints)
        rows_, existing = await S.prefetch(conn, keys, meta_keys, tids, counter=counter)
        outcomes: list[tuple[Any, BaseException | None]] = []
        for w in works:
            gone = next((op.spec for op in w.ops if op.spec.table_id not in existing), None)
            if gone is not None:
                err = TableNotFound(f"table {gone.name!r} does not exist", table=gone.name)
                outcomes.append((None, err))
                continue
            mark = rows_.mark()
            try:
                outcomes.append((w.run(rows_), None))
            except Exception as e:  # this job is left out; the others go on
                rows_.undo(mark)
                outcomes.append((None, e))
        args = rows_.flush_args(self._token)
        if args is not None:
            await conn.execute(S.FLUSH, *args)
        stage[0] = True
        await conn.execute("COMMIT")
        return outcomes, bool(rows_.changes)

    # --- commit notifications ----------------------------------------------------------
    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after commits that appended change rows, in this process
        (right after the commit) or another (through LISTEN/NOTIFY)."""
        self._listeners.append(listener)
        loop = self._loop
        if loop is not None and self._pool is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._start_listening)

    def remove_commit_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _ring(self) -> None:
        for listener in tuple(self._listeners):
            try:
                listener()
            except Exception:
                _log.exception("commit listener %r failed", listener)

    def _start_listening(self) -> None:
        if self._listener is None and self._pool is not None:
            self._listener = asyncio.create_task(self._listen_loop(), name="streamkit-pg-listen")

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload != self._token:  # our own commits rang the listeners already
            self._ring()

    async def _listen_loop(self) -> None:
        """Keep a LISTEN connection, reconnecting with back-off when it is lost."""
        delay = 0.2
        while True:
            conn: Any = None
            try:
                conn = await self._connect()
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _, ev=lost: ev.set())
                await conn.add_listener(S.CHANNEL, self._on_notify)
                delay = 0.2
                self._ring()  # commits may have gone by while nobody listened
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), _LISTEN_PING)
                        break
                    # a server that vanished without closing the socket shows up here
                    await conn.execute("SELECT 1", timeout=self._target.connect_timeout)
            except Exception as e:
                _log.debug("LISTEN connection lost (%s); reconnecting in %.1fs", e, delay)
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # --- catalog -----------------------------------------------------------------------
    async def create_table(self, spec: TableSpec) -> TableSpec:
        """Add a table to the catalog. Raises TableExists."""
        return await self._transact(lambda conn: S.insert_table(conn, spec))

    async def update_table(
        self, spec: TableSpec, drop: Sequence[int] = (), *, only_if_epoch: int | None = None
    ) -> TableSpec:
        """Store changed settings of an existing table, and delete every row stored
        under the ids ``drop`` (a deleted index's entries), in one transaction. Raises
        TableNotFound, StaleCatalog (see StorageEngine.update_table)."""

        async def fn(conn: Any) -> TableSpec:
            stored = await S.store_spec(conn, spec, only_if_epoch)
            if drop:
                await conn.execute(
                    "DELETE FROM sk_items WHERE tid = ANY($1::integer[])", list(drop)
                )
            return stored

        return await self._transact(fn)

    async def set_ttl(self, spec: TableSpec) -> int:
        """Store ``spec`` and recompute the TTL of every item of the table, in one
        transaction that holds the table's lock exclusively (writers hold it shared)."""
        from streamkit.storage._ttl import image_ttl

        # a barrier: every job queued before this call (with the old spec) is committed
        # once it returns; the table lock below then keeps every later writer out
        await self.write(WriteJob([]))

        async def fn(conn: Any) -> int:
            await S.store_spec(conn, spec, spec.epoch)  # StaleCatalog if changed since read
            tid = spec.table_id
            if spec.ttl_attribute is None:
                await conn.execute(
                    "UPDATE sk_items SET expires=NULL WHERE tid=$1 AND expires IS NOT NULL", tid
                )
                return 0
            with_ttl = 0
            todo: list[tuple[bytes, bytes, float | None]] = []
            async for pk, sk, data, old in conn.cursor(
                "SELECT pk, sk, data, expires FROM sk_items WHERE tid=$1", tid, prefetch=1000
            ):
                expires = image_ttl(spec, data)
                with_ttl += expires is not None
                if expires != old:
                    todo.append((pk, sk, expires))
            # applied once the read is done (the cursor must not see its own updates)
            for i in range(0, len(todo), _TTL_CHUNK):
                chunk = todo[i : i + _TTL_CHUNK]
                await conn.execute(
                    "UPDATE sk_items AS i SET expires = u.e "
                    "FROM unnest($2::bytea[], $3::bytea[], $4::float8[]) AS u(pk, sk, e) "
                    "WHERE i.tid = $1 AND i.pk = u.pk AND i.sk = u.sk",
                    tid,
                    [c[0] for c in chunk],
                    [c[1] for c in chunk],
                    [c[2] for c in chunk],
                )
            return with_ttl

        return await self._transact(fn)

    async def delete_table(self, name: str) -> TableSpec:
        """Remove a table and its items (a PITR table leaves a SYSTEM backup first)."""

        async def fn(conn: Any) -> TableSpec:
            row = await conn.fetchrow(
                "SELECT id, spec FROM sk_tables WHERE name=$1 FOR UPDATE", name
            )
            if row is None:
                raise TableNotFound(f"table {name!r} does not exist", table=name)
            tid, text = row
            # waits for the group writers writing to it, and keeps new ones out
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", S.LOCK_NS_TABLE, tid)
            spec = TableSpec.from_json(name, tid, text)
            if spec.pitr:  # as DynamoDB does: a system backup of a PITR table it deletes
                await S.backup(conn, name, tid, text, new_backup_id(name), "SYSTEM")
            await conn.execute("DELETE FROM sk_items WHERE tid=$1", tid)
            low, high = spec.index_storage_range()
            await conn.execute("DELETE FROM sk_items WHERE tid BETWEEN $1 AND $2", low, high)
            await conn.execute("DELETE FROM sk_tables WHERE id=$1", tid)
            return spec

        return await self._transact(fn)

    async def list_tables(self) -> Sequence[TableSpec]:
        """Every table in the catalog, by name."""

        async def fn(conn: Any) -> list[TableSpec]:
            rows = await conn.fetch("SELECT id, name, spec FROM sk_tables ORDER BY name")
            return [TableSpec.from_json(n, i, s) for i, n, s in rows]

        return await self._read(fn)

    async def load_table(
        self, spec: TableSpec, items: Sequence[StoredItem], archive: ArchiveRow | None
    ) -> TableSpec:
        """Create a table already holding ``items`` in one transaction (with ``archive``,
        each item also gets an unpublished INSERT row). Raises TableExists."""

        async def fn(conn: Any) -> TableSpec:
            done = await S.insert_table(conn, spec)
            await S.load_rows(conn, done, items, archive, self._token)
            return done

        done = await self._transact(fn)
        if archive is not None and items:
            self._ring()
        return done

    async def restore_table(self, spec: TableSpec, feed: RestoreFeed) -> TableSpec:
        """Create a table holding what ``feed`` reads and converts, in one transaction,
        the source read through a cursor a chunk at a time (see
        :class:`~streamkit.storage._engine.RestoreFeed`). Raises TableExists,
        BackupNotFound."""
        appended = False

        async def fn(conn: Any) -> TableSpec:
            nonlocal appended
            source = feed.source
            if isinstance(source, BackupOf):
                if not await conn.fetchval(
                    "SELECT true FROM sk_backups WHERE id=$1", source.backup_id
                ):
                    raise BackupNotFound(f"backup {source.backup_id!r} does not exist")
                cur = await conn.cursor(S.RESTORE_BACKUP, source.backup_id)
            else:
                cur = await conn.cursor(S.STATE_AT, source.table_id, source.at_ms)
            done = await S.insert_table(conn, spec)
            now_ms = time.time_ns() // 1_000_000
            archive = feed.archive

            def record(token: object, seq: int) -> tuple[bytes, bytes]:
                assert archive is not None
                return archive(done, token, seq, now_ms)

            load = S.Loader(conn, done, None if archive is None else record, now_ms)
            while rows := await cur.fetch(RESTORE_CHUNK):
                chunk = [(r[0], r[1], r[2], r[3]) for r in rows]
                await load.chunk(await asyncio.to_thread(feed.convert, chunk))  # off the loop
            appended = await load.finish(self._token)
            return done

        done = await self._transact(fn)
        if appended:
            self._ring()
        return done


# --- helpers ---------------------------------------------------------------------------------


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)
