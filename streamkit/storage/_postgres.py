"""The PostgreSQL storage engine (``postgresql://user:password@host:port/database``).

Many processes on many machines may share one store. Each engine keeps a pool of
connections for reads and catalog work, one connection for its group writer, and
(while commit listeners exist) one connection that LISTENs for other processes'
commits. The schema and the statements are in :mod:`streamkit.storage._pg_schema`.

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
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from streamkit.exceptions import (
    BackupNotFound,
    ConfigurationError,
    StorageError,
    StreamkitError,
    TableNotFound,
)
from streamkit.storage import _pg_schema as S
from streamkit.storage._engine import (
    ArchivedRecord,
    ArchiveRow,
    BackupInfo,
    ChangeRow,
    ItemRow,
    StateRow,
    StoredItem,
    new_backup_id,
)
from streamkit.storage._spec import TableSpec
from streamkit.storage._versions import extra_meta_keys, extra_reads
from streamkit.storage._writes import (
    Checkpoint,
    WriteJob,
    WriteOp,
    WriteResult,
    collection_meta_keys,
    run_effects,
    run_job,
)

__all__ = ("PostgresEngine",)

T = TypeVar("T")
_TTL_CHUNK = 5000  # item rows per UPDATE when a table's TTL attribute changes
_log = logging.getLogger("streamkit.storage.postgres")

_MAX_GROUP = 1024  # jobs per group commit
_FIVE_YEARS = 5 * 365 * 86400.0
_LISTEN_PING = 10.0  # seconds between liveness checks of the LISTEN connection


# --- errors: the one place asyncpg and socket errors become streamkit errors -------------


def _is_lost(e: BaseException) -> bool:
    """Whether ``e`` means the connection is gone (or the server is going or coming), or
    is in a state it cannot be trusted in: it is then dropped and the call may retry."""
    if isinstance(e, OSError | asyncpg.PostgresConnectionError | asyncpg.InternalClientError):
        # InternalClientError: asyncpg's protocol lost track of the connection, seen when
        # the server crashes in the middle of a statement
        return True
    if isinstance(e, asyncpg.OperatorInterventionError):
        return not isinstance(e, asyncpg.QueryCanceledError)  # shutdown, crash, starting up
    # asyncpg raises a bare InterfaceError when a closed connection is used
    return isinstance(e, asyncpg.InterfaceError) and "closed" in str(e)


def _wrap(e: BaseException, target: _Target, *, connecting: bool = False) -> BaseException:
    """The streamkit error for ``e`` (``e`` itself when it is not a database error)."""
    if isinstance(e, StreamkitError) or not isinstance(
        e, OSError | asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError
    ):
        return e
    where = target.where
    if connecting:
        err: StreamkitError | None = None
        if isinstance(e, asyncpg.InvalidCatalogNameError):
            err = ConfigurationError(
                f"database {target.database!r} does not exist on {target.server}: create it "
                f"(CREATE DATABASE {target.database}) or fix the storage URL"
            )
        elif isinstance(e, asyncpg.InvalidAuthorizationSpecificationError):
            err = ConfigurationError(
                f"PostgreSQL at {target.server} refused user {target.user!r} ({e}): check the "
                "user name and password in the storage URL"
            )
        elif isinstance(e, asyncpg.InsufficientPrivilegeError):
            err = ConfigurationError(
                f"user {target.user!r} may not use database {where} ({e}): grant it CONNECT "
                "and CREATE, or use another user"
            )
        elif _is_lost(e) or isinstance(e, asyncpg.TooManyConnectionsError):
            err = StorageError(
                f"cannot reach PostgreSQL at {target.server} ({type(e).__name__}: {e}): check "
                "that the server runs and that the host and port of the storage URL are right",
                retriable=True,
            )
        elif isinstance(e, asyncpg.PostgresError | ValueError):
            err = ConfigurationError(f"PostgreSQL refused the connection to {where}: {e}")
        if err is not None:
            err.__cause__ = e
            return err
    retriable = _is_lost(e) or isinstance(
        e, asyncpg.TransactionRollbackError | asyncpg.TooManyConnectionsError
    )
    hint = "; retrying may succeed" if retriable else ""
    err = StorageError(
        f"PostgreSQL storage {where} failed ({type(e).__name__}: {e}){hint}", retriable=retriable
    )
    err.__cause__ = e
    return err


@contextlib.contextmanager
def _guard(target: _Target, *, connecting: bool = False) -> Iterator[None]:
    try:
        yield
    except Exception as e:
        err = _wrap(e, target, connecting=connecting)
        if err is e:
            raise
        raise err from e


@contextlib.asynccontextmanager
async def _dropping_lost(conn: Any) -> AsyncIterator[None]:
    """Close a pool connection that failed as lost, so the pool never hands it out again
    (asyncpg may not have noticed yet) and replaces it with a new one."""
    try:
        yield
    except Exception as e:
        if _is_lost(e):
            # a connection asyncpg saw close is back in the pool already (and detached)
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        raise


# --- the URL -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    dsn: str  # the URL without streamkit's own options, for asyncpg
    user: str
    server: str  # host:port
    database: str
    pool_size: int
    connect_timeout: float

    @property
    def where(self) -> str:
        return f"{self.user}@{self.server}/{self.database}"


def _parse_url(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as e:
        raise ConfigurationError(f"storage URL is malformed ({e}): use {_URL_FORM}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError(f"storage URL scheme {parts.scheme!r} is not PostgreSQL")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigurationError(f"storage URL names no database: use {_URL_FORM}")
    opts = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        pool_size = int(opts.pop("pool_size", "10"))
        timeout = float(opts.pop("connect_timeout", "10"))
    except ValueError as e:
        raise ConfigurationError(f"storage URL option is not a number: {e}") from None
    if pool_size < 1 or timeout <= 0:
        raise ConfigurationError("storage URL: pool_size must be >= 1 and connect_timeout > 0")
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(opts), ""))
    user = unquote(parts.username or "") or os.environ.get("PGUSER", "") or "(default user)"
    host = parts.hostname or "localhost"
    return _Target(dsn, user, f"{host}:{port}", database, pool_size, timeout)


_URL_FORM = "postgresql://user:password@host:port/database[?pool_size=10&connect_timeout=10]"


async def _no_reset(conn: Any) -> None:
    # Pool connections keep no session state (locks are transaction-scoped, LISTEN has
    # its own connection): skip asyncpg's reset query, a round trip per release.
    return None


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


class PostgresEngine:
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

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StorageError(f"storage {self._target.where} is not open (or was closed)")
        return self._pool

    async def _read(self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False) -> T:
        """Run ``fn(conn)`` on a pool connection (in one REPEATABLE READ READ ONLY
        transaction with ``snapshot``); a lost connection is retried once on a new one."""
        pool = self._require_pool()
        with _guard(self._target):
            for attempt in (0, 1):
                try:
                    async with pool.acquire() as conn, _dropping_lost(conn):
                        if not snapshot:
                            return await fn(conn)
                        async with conn.transaction(isolation="repeatable_read", readonly=True):
                            return await fn(conn)
                except Exception as e:
                    if attempt or not _is_lost(e):
                        raise
                    await pool.expire_connections()
        raise AssertionError("unreachable")

    async def _transact(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in a READ COMMITTED write transaction on a pool connection.

        Retried once on a new connection if the old one was lost before COMMIT; a
        connection lost during COMMIT raises a retriable StorageError (outcome unknown).
        """
        pool = self._require_pool()
        with _guard(self._target):
            for attempt in (0, 1):
                committing = False
                try:
                    async with pool.acquire() as conn, _dropping_lost(conn), conn.transaction():
                        result = await fn(conn)
                        committing = True
                    return result
                except Exception as e:
                    if committing or attempt or not _is_lost(e):
                        raise
                    await pool.expire_connections()
        raise AssertionError("unreachable")

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

    # --- item reads --------------------------------------------------------------------
    async def _fetch(self, sql: str, *args: Any, snapshot: bool = False) -> list[Any]:
        return await self._read(lambda conn: conn.fetch(sql, *args), snapshot=snapshot)

    async def get(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        """One item's image bytes and DynamoDB size, or None."""
        rows = await self._fetch(
            "SELECT data, size FROM sk_items WHERE tid=$1 AND pk=$2 AND sk=$3", table_id, pk, sk
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def get_many(
        self, table_id: int, keys: Sequence[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, int]]:
        """The (image, size) of those of ``keys`` that exist, in the order of ``keys``
        (one statement: one snapshot)."""
        rows = await self._fetch(
            "SELECT i.data, i.size FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY "
            "AS k(pk, sk, n) JOIN sk_items i ON i.tid = $1 AND i.pk = k.pk AND i.sk = k.sk "
            "ORDER BY k.n",
            table_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return [(r[0], r[1]) for r in rows]

    async def range(
        self,
        table_id: int,
        pk: bytes,
        *,
        low: bytes | None,
        low_inclusive: bool,
        high: bytes | None,
        high_inclusive: bool,
        reverse: bool,
        limit: int,
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (sort bytes, image bytes) of one partition, in bytewise order
        (bytea compares as unsigned bytes, like SQLite's BLOB)."""
        sql = ["SELECT sk, data FROM sk_items WHERE tid=$1 AND pk=$2"]
        args: list[Any] = [table_id, pk]
        if low is not None:
            args.append(low)
            sql.append(f"AND sk {'>=' if low_inclusive else '>'} ${len(args)}")
        if high is not None:
            args.append(high)
            sql.append(f"AND sk {'<=' if high_inclusive else '<'} ${len(args)}")
        args.append(limit)
        sql.append(f"ORDER BY sk {'DESC' if reverse else 'ASC'} LIMIT ${len(args)}")
        return [(r[0], r[1]) for r in await self._fetch(" ".join(sql), *args)]

    async def scan(
        self,
        table_id: int,
        *,
        after: tuple[bytes, bytes] | None,
        limit: int,
        segment: int,
        total_segments: int,
    ) -> list[ItemRow]:
        """Up to ``limit`` items after ``after`` in key order (of segment
        ``crc32(pk) % total_segments``: ``seg`` holds the crc32)."""
        sql = ["SELECT pk, sk, data FROM sk_items WHERE tid=$1"]
        args: list[Any] = [table_id]
        if after is not None:
            args.extend(after)
            sql.append("AND (pk, sk) > ($2, $3)")
        if total_segments > 1:
            args.extend((total_segments, segment))
            sql.append(f"AND seg % ${len(args) - 1} = ${len(args)}")
        args.append(limit)
        sql.append(f"ORDER BY pk, sk LIMIT ${len(args)}")
        return [(r[0], r[1], r[2]) for r in await self._fetch(" ".join(sql), *args)]

    async def snapshot(self, table_id: int) -> tuple[int, list[ItemRow]]:
        """Every item of a table and the newest sequence number, from one snapshot."""

        async def fn(conn: Any) -> tuple[int, list[ItemRow]]:
            seq = int(await conn.fetchval("SELECT seq FROM sk_counter"))
            return seq, await S.key_rows(conn, "sk_items", "tid", table_id)

        return await self._read(fn, snapshot=True)

    async def snapshots(self, storage_ids: Sequence[int]) -> tuple[int, list[list[ItemRow]]]:
        """The rows of several storage ids and the newest sequence number, from one
        snapshot."""

        async def fn(conn: Any) -> tuple[int, list[list[ItemRow]]]:
            seq = int(await conn.fetchval("SELECT seq FROM sk_counter"))
            return seq, [await S.key_rows(conn, "sk_items", "tid", i) for i in storage_ids]

        return await self._read(fn, snapshot=True)

    async def expired(self, table_id: int, cutoff: float, limit: int) -> list[bytes]:
        """Images of items whose TTL is at or before ``cutoff`` (and under five years old)."""
        rows = await self._fetch(
            "SELECT data FROM sk_items WHERE tid=$1 AND expires IS NOT NULL "
            "AND expires <= $2 AND expires >= $3 ORDER BY expires LIMIT $4",
            table_id,
            cutoff,
            cutoff - _FIVE_YEARS,
            limit,
        )
        return [r[0] for r in rows]

    async def table_stats(self, table_id: int) -> tuple[int, int]:
        """``(item count, total item bytes)`` of a table."""
        ((count, size),) = await self._fetch(
            "SELECT count(*), coalesce(sum(size), 0) FROM sk_items WHERE tid=$1", table_id
        )
        return int(count), int(size)

    # --- the change log ----------------------------------------------------------------
    async def changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        """Change rows after ``after_seq`` in order (numbers follow commit order: no gap
        that an in-flight transaction could fill)."""
        rows = await self._fetch(
            "SELECT seq, tid, tname, event, txn, key, record, created_ms, publish, image "
            "FROM sk_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            after_seq,
            limit,
        )
        return [ChangeRow(*r) for r in rows]

    async def max_sequence(self) -> int:
        """The newest committed change row's sequence number (0 when there is none)."""
        return int((await self._fetch("SELECT seq FROM sk_counter"))[0][0])

    async def archive_rows(
        self,
        table_id: int,
        *,
        after_seq: int,
        since_ms: int,
        until_ms: int,
        before_seq: int | None,
        limit: int,
    ) -> list[ArchivedRecord]:
        """A table's archived records in [since_ms, until_ms) after ``after_seq``."""
        return await self._read(
            lambda c: S.archive_rows(c, table_id, after_seq, since_ms, until_ms, before_seq, limit)
        )

    async def archive_tail(
        self, table_id: int, *, position_key: str, since_ms: int, until_ms: int, limit: int
    ) -> tuple[int, list[ArchivedRecord]]:
        """The position under ``position_key`` and the archive rows after it, one snapshot."""

        async def fn(conn: Any) -> tuple[int, list[ArchivedRecord]]:
            value = await conn.fetchval("SELECT value FROM sk_meta WHERE key=$1", position_key)
            pos = 0 if value is None else int(value)
            return pos, await S.archive_rows(conn, table_id, pos, since_ms, until_ms, None, limit)

        return await self._read(fn, snapshot=True)

    async def state_at(self, table_id: int, at_ms: int) -> list[StateRow]:
        """The newest archive row of every item at ``at_ms`` (REMOVEs left out), key order
        (one statement: one snapshot)."""
        rows = await self._fetch(
            "SELECT ipk, isk, record, image FROM ("
            "  SELECT DISTINCT ON (ipk, isk) ipk, isk, record, image, event FROM sk_changes"
            "  WHERE tid=$1 AND created_ms <= $2 ORDER BY ipk, isk, seq DESC) s "
            "WHERE event <> 'REMOVE' ORDER BY ipk, isk",
            table_id,
            at_ms,
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def prune_changes(self, *, upto: int, now_ms: int, limit: int) -> int:
        """Prune and compact the archive (see :func:`_pg_schema.compact`)."""
        return await self._transact(lambda c: S.compact(c, upto=upto, now_ms=now_ms, limit=limit))

    # --- backups -----------------------------------------------------------------------
    async def create_backup(self, name: str, backup_id: str, kind: str) -> BackupInfo:
        """Copy a table's items into a new backup, as one instant. Raises TableNotFound."""

        async def fn(conn: Any) -> BackupInfo:
            row = await conn.fetchrow("SELECT id FROM sk_tables WHERE name=$1", name)
            if row is not None:
                # keep delete_table out while copying, then look again: it may have won
                await conn.execute(
                    "SELECT pg_advisory_xact_lock_shared($1, $2)", S.LOCK_NS_TABLE, row[0]
                )
                row = await conn.fetchrow("SELECT id, spec FROM sk_tables WHERE id=$1", row[0])
            if row is None:
                raise TableNotFound(f"table {name!r} does not exist", table=name)
            return await S.backup(conn, name, row[0], row[1], backup_id, kind)

        return await self._transact(fn)

    async def list_backups(self, table: str | None = None) -> list[BackupInfo]:
        """Every backup (of one table), oldest first."""
        rows = await self._fetch(
            f"{S.BACKUP_COLUMNS} WHERE $1::text IS NULL OR tname=$1 ORDER BY created_ms, id", table
        )
        return [S.backup_info(r) for r in rows]

    async def backup_items(self, backup_id: str) -> tuple[BackupInfo, list[ItemRow]]:
        """A backup and its items in key order. Raises BackupNotFound."""

        async def fn(conn: Any) -> tuple[BackupInfo, list[ItemRow]]:
            row = await conn.fetchrow(f"{S.BACKUP_COLUMNS} WHERE id=$1", backup_id)
            if row is None:
                raise BackupNotFound(f"backup {backup_id!r} does not exist")
            return S.backup_info(row), await S.key_rows(conn, "sk_backup_items", "bid", backup_id)

        return await self._read(fn, snapshot=True)

    async def delete_backup(self, backup_id: str) -> BackupInfo:
        """Delete a backup and its items. Raises BackupNotFound."""

        async def fn(conn: Any) -> BackupInfo:
            row = await conn.fetchrow(
                f"DELETE FROM sk_backups WHERE id=$1 RETURNING {S.BACKUP_FIELDS}", backup_id
            )
            if row is None:
                raise BackupNotFound(f"backup {backup_id!r} does not exist")
            await conn.execute("DELETE FROM sk_backup_items WHERE bid=$1", backup_id)
            return S.backup_info(row)

        return await self._transact(fn)

    # --- settings, positions and leases ------------------------------------------------
    async def read_meta(self, keys: Sequence[str]) -> dict[str, str]:
        """Values of ``sk_meta`` keys (absent keys are left out)."""
        rows = await self._fetch(
            "SELECT key, value FROM sk_meta WHERE key = ANY($1::text[])", list(keys)
        )
        return {r[0]: r[1] for r in rows}

    async def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every ``sk_meta`` key starting with ``prefix``, with its value."""
        rows = await self._fetch(
            "SELECT key, value FROM sk_meta WHERE left(key, length($1)) = $1", prefix
        )
        return {r[0]: r[1] for r in rows}

    async def write_meta(self, values: dict[str, str]) -> None:
        """Set ``sk_meta`` keys in one transaction, under the keys' advisory locks (so a
        checkpoint read-check-write in a group commit is never interleaved)."""
        if not values:
            return
        locks = sorted({S.meta_lock(k) for k in values})

        async def fn(conn: Any) -> None:
            await conn.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", locks
            )
            await conn.execute(
                "INSERT INTO sk_meta (key, value) SELECT * FROM unnest($1::text[], $2::text[]) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values),
                list(values.values()),
            )

        await self._transact(fn)

    async def try_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew lease ``name`` for ``holder``, by the database's clock: one
        atomic upsert that only overwrites an expired lease or ``holder``'s own."""
        sql = (
            "INSERT INTO sk_leases (name, holder, expires) "
            "VALUES ($1, $2, now() + make_interval(secs => $3)) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
            "WHERE sk_leases.expires <= now() OR sk_leases.holder = excluded.holder "
            "RETURNING holder"
        )
        got = await self._transact(lambda c: c.fetchval(sql, name, holder, float(seconds)))
        return got is not None

    async def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease if ``holder`` holds it."""
        sql = "DELETE FROM sk_leases WHERE name=$1 AND holder=$2"
        await self._transact(lambda c: c.execute(sql, name, holder))


# --- helpers ---------------------------------------------------------------------------------


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)
