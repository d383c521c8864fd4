"""``App``: the facade that wires storage, the change log and (later) handlers together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from streamkit._names import ttl_lease
from streamkit.capture import Relay
from streamkit.capture._changes import Start, read_changes
from streamkit.capture._tables import create_table
from streamkit.exceptions import ConfigurationError, ValidationError
from streamkit.log import ChangeLog, TopicConfig, from_url
from streamkit.records import ChangeRecord, StreamView
from streamkit.records._values import Item
from streamkit.runtime._dlq import DeadLetter, DeadLetterQueue
from streamkit.runtime._registry import HandlerSpec, Registrar
from streamkit.runtime._worker import HandlerRunner, RuntimeOptions
from streamkit.storage import _partiql_exec as partiql
from streamkit.storage._cache import Cache, CacheEngine
from streamkit.storage._capacity import Capacity
from streamkit.storage._indexes import GlobalIndex, LocalIndex
from streamkit.storage._partiql_exec import BatchStatementResult, StatementPage, StatementRequest
from streamkit.storage._spec import TableSpec, check_table_name
from streamkit.storage._store import Store
from streamkit.storage._table import Table, check_limit
from streamkit.storage._transaction import Transaction
from streamkit.storage._ttl import sweep_expired

if TYPE_CHECKING:
    from streamkit.history._backups import Backup
    from streamkit.history._export import ExportResult
    from streamkit.history._replay import ReplaySummary

__all__ = ("DEFAULT_LOG", "DEFAULT_NAMESPACE", "DEFAULT_STORAGE", "App")

DEFAULT_STORAGE = "sqlite:///./streamkit.db"
DEFAULT_LOG = "local://./.streamkit/log"
DEFAULT_NAMESPACE = "streamkit"
DEFAULT_REGION = "local"
_NAMESPACE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _logger() -> Any:
    # structlog (and through it rich) is imported only when something is logged:
    # `import streamkit` stays fast
    import structlog

    return structlog.get_logger("streamkit")


def _check_log_url(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("local", "kafka"):
        raise ConfigurationError(
            f"unsupported change-log URL {url!r}: use local://path or kafka://host:port[,host:port]"
        )
    if scheme == "kafka" and not url[len("kafka://") :].split("?", 1)[0]:
        raise ConfigurationError(f"change-log URL {url!r} names no broker")
    return url


def _statement_requests(
    statements: Sequence[str | tuple[str, Sequence[Any] | None]],
) -> list[StatementRequest]:
    """Statements given as text, or as (text, parameters) pairs."""
    if isinstance(statements, str):
        raise ValidationError("give a list of statements, not one string")
    return [(s, None) if isinstance(s, str) else (s[0], s[1]) for s in statements]


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _logger().error(
            "background task failed", task=task.get_name(), error=repr(task.exception())
        )


class App(Registrar):
    """A streamkit application: tables in a store, their changes in a log, handlers on them.

    Args:
        storage: ``sqlite:///path.db`` or ``memory://``; default ``STREAMKIT_STORAGE`` or
            ``sqlite:///./streamkit.db``.
        log: ``local://path`` or ``kafka://host:port``; default ``STREAMKIT_LOG`` or
            ``local://./.streamkit/log``.
        namespace: the topic prefix; default ``STREAMKIT_NAMESPACE`` or ``streamkit``.
        region: the name written as each record's ``origin``; default ``STREAMKIT_REGION``
            or ``local``.
        ttl_interval: seconds between TTL sweeps while the app is running.
        topic_partitions: partitions of the table topics the relay creates.
        topic_retention_ms: their ``retention.ms`` (24 hours by default; -1 keeps for ever).
        session_timeout: seconds without a heartbeat after which a handler process is
            considered dead and its partitions go to the others.
        shutdown_timeout: seconds a stopping handler may spend finishing in-flight work.
        dlq_retention_ms: how long dead letters are kept (14 days by default).
        cache: an item and query cache in front of the store (``sk.Cache``, as DAX):
            eventually consistent reads are served from it, kept fresh by following
            every process's changes (see ``docs/guides/cache.md``).
        tombstone_horizon: global tables: seconds a deleted item's tombstone is kept so
            that a late, older write from another region cannot bring it back (default:
            the topic retention, at least a day; kept for ever with retention -1).
        item_collection_limit: bytes the items of one partition key value of a table
            with local secondary indexes may take, with their local index entries
            (DynamoDB's 10 GB item collection limit; default 10 GiB).

    Example:
        ```python
        app = sk.App(storage="sqlite:///./shop.db")
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "123", "Name": "John Doe"})
        ```
    """

    def __init__(
        self,
        storage: str | None = None,
        log: str | None = None,
        namespace: str | None = None,
        *,
        region: str | None = None,
        ttl_interval: float = 1.0,
        topic_partitions: int = 8,
        topic_retention_ms: int = 86_400_000,
        session_timeout: float = 10.0,
        shutdown_timeout: float = 30.0,
        dlq_retention_ms: int = 14 * 86_400_000,
        cache: Cache | None = None,
        tombstone_horizon: float | None = None,
        item_collection_limit: int = 10 * 1024**3,
    ) -> None:
        super().__init__()
        self.storage_url = storage or os.environ.get("STREAMKIT_STORAGE") or DEFAULT_STORAGE
        self.log_url = _check_log_url(log or os.environ.get("STREAMKIT_LOG") or DEFAULT_LOG)
        ns = namespace or os.environ.get("STREAMKIT_NAMESPACE") or DEFAULT_NAMESPACE
        if not _NAMESPACE.match(ns):
            raise ConfigurationError(
                f"namespace {ns!r} must be 1-100 characters of A-Z a-z 0-9 . _ - (a topic prefix)"
            )
        self.namespace = ns
        self.region = region or os.environ.get("STREAMKIT_REGION") or DEFAULT_REGION
        if not (isinstance(ttl_interval, (int, float)) and ttl_interval > 0):
            raise ConfigurationError("ttl_interval must be a positive number of seconds")
        self.ttl_interval = float(ttl_interval)
        self.topic_config = TopicConfig(
            partitions=topic_partitions, retention_ms=topic_retention_ms, cleanup_policy="delete"
        )
        if cache is not None and not isinstance(cache, Cache):
            raise ConfigurationError(f"cache must be an sk.Cache, got {type(cache).__name__}")
        if not (isinstance(item_collection_limit, int) and item_collection_limit > 0):
            raise ConfigurationError("item_collection_limit must be a positive number of bytes")
        self._store = Store(
            self.storage_url,
            origin=self.region,
            cache=None if cache is None else CacheEngine(cache),
            item_collection_limit=item_collection_limit,
        )
        self._log: ChangeLog | None = None
        self._relay: Relay | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._relay_ready = asyncio.Event()
        self.runtime_options = RuntimeOptions(
            session_timeout=session_timeout,
            shutdown_timeout=shutdown_timeout,
            dlq_retention_ms=dlq_retention_ms,
        )
        self._runners: dict[str, HandlerRunner] = {}
        self._metrics: Any = None
        self._backfills: set[asyncio.Task[Any]] = set()
        self._replication: Any = None  # the replicators (streamkit.replication), when running
        self._replication_collector: Any = None
        if tombstone_horizon is None and topic_retention_ms >= 0:
            tombstone_horizon = max(topic_retention_ms / 1000, 86_400.0)
        self.tombstone_horizon = tombstone_horizon

    @property
    def metrics(self) -> Any:
        """The runtime's Prometheus metrics (a ``RuntimeMetrics``; created on first use)."""
        if self._metrics is None:
            from streamkit.runtime._metrics import RuntimeMetrics

            self._metrics = RuntimeMetrics()
            if self._store.cache is not None:
                self._metrics.registry.register(self._store.cache.collector)
        return self._metrics

    @property
    def cache(self) -> Cache | None:
        """The cache's settings (None without a cache)."""
        return None if self._store.cache is None else self._store.cache.config

    def enable_cache(self, cache: Cache) -> None:
        """Put a cache in front of the store (what ``App(cache=...)`` does), before the
        App is first used; ``streamkit serve --cache`` calls it.

        Raises:
            ConfigurationError: the App already has a cache or its store is open.
        """
        if not isinstance(cache, Cache):
            raise ConfigurationError(f"cache must be an sk.Cache, got {type(cache).__name__}")
        if self._store.cache is not None:
            raise ConfigurationError("enable_cache: the App already has a cache")
        if self._store.is_open:
            raise ConfigurationError("enable_cache: call it before the App is first used")
        self._store.cache = CacheEngine(cache)

    def cache_stats(self) -> dict[str, Any]:
        """The cache's counters: ``hits``, ``misses``, ``evictions``, ``bytes``,
        ``entries``, ``invalidations``, ``gaps``, and ``staleness_ms`` (``p50``/``p99``
        of change committed → entry dropped, over the last 4096 changes of other
        writers; None before any).

        Raises:
            ConfigurationError: the App has no cache.
        """
        if self._store.cache is None:
            raise ConfigurationError("this App has no cache: pass cache=sk.Cache(...)")
        return self._store.cache.stats()

    @property
    def store(self) -> Store:
        """The table store (its engine behind the ``StorageEngine`` interface): what the
        parts the App wires together — capture, runtime, history, the endpoint — are
        handed instead of the App."""
        return self._store

    @property
    def log(self) -> ChangeLog:
        """The change log (created on first use; opened by whoever reads or writes it)."""
        if self._log is None:
            self._log = from_url(self.log_url)
        return self._log

    @property
    def relay(self) -> Relay:
        """The capture relay of this app's storage (run by ``running()`` / ``run()``)."""
        if self._relay is None:
            self._relay = Relay(
                self._store, self.log, self.namespace, topic_config=self.topic_config
            )
        return self._relay

    def __repr__(self) -> str:
        return (
            f"App(storage={self.storage_url!r}, log={self.log_url!r}, namespace={self.namespace!r})"
        )

    # --- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        """Open the storage (done on first use; calling it is optional)."""
        await self._store.ensure_open()

    async def close(self) -> None:
        """Finish queued writes and close the storage and the log."""
        await self._store.close()
        if self._log is not None:
            await self._log.close()

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- tables --------------------------------------------------------------------------
    async def create_table(
        self,
        name: str,
        partition_key: str | tuple[str, str],
        sort_key: str | tuple[str, str] | None = None,
        *,
        stream: StreamView | str | None = StreamView.NEW_AND_OLD_IMAGES,
        ttl_attribute: str | None = None,
        capacity: Capacity | None = None,
        pitr: bool = True,
        recovery_days: int = 35,
        global_indexes: Sequence[GlobalIndex] | None = None,
        local_indexes: Sequence[LocalIndex] | None = None,
        replicas: Mapping[str, str] | None = None,
    ) -> Table:
        """Create a table and return its handle.

        Args:
            name: 3-255 characters of ``A-Z a-z 0-9 _ - .``; with a stream, short enough
                for its topic ``{namespace}.{name}`` to fit Kafka's 249 characters. Names
                with a ``dlq`` segment (``.dlq.``, ``_dlq_``, ``.dlq_``, ``_dlq.``) and
                ``audit`` are reserved (see ``streamkit/_names.py``).
            partition_key: a name (type S) or ``(name, "S"|"N"|"B")``.
            sort_key: optional, same form.
            stream: the change records' view type, or None for no stream.
            ttl_attribute: the attribute holding an expiry time in epoch seconds.
            capacity: ``sk.OnDemand()`` (default) or ``sk.Provisioned(read=, write=)``.
            pitr: keep the change archive for point-in-time recovery.
            recovery_days: how long the archive is kept (1-35 days, as DynamoDB allows).
            global_indexes: up to 20 ``sk.GlobalIndex(...)``: query and scan the items by
                other keys (``table.query(..., index="Name")``).
            local_indexes: up to 5 ``sk.LocalIndex(...)`` (a table with a sort key): the
                same partition, sorted by another attribute.
            replicas: a global table: ``{region: change-log URL}`` of every region that
                holds it (this App's ``region`` included), created in each region with
                the same settings; ``running()`` runs its replicators (see
                ``docs/guides/global-tables.md``).

        Raises:
            TableExists: a table of that name exists.
            ValidationError: a bad name, key or setting; a reserved name; with a stream,
                a name whose topic cannot exist (too long for the namespace, or the same
                for Kafka as another streamed table's: '.' and '_' are alike there).
        """
        reps: tuple[tuple[str, str], ...] = ()
        if replicas is not None:
            from streamkit.replication import check_replicas

            reps = check_replicas(self.region, self.log_url, replicas, stream)
        await create_table(
            self._store,
            self.namespace,
            name,
            partition_key,
            sort_key,
            stream=stream,
            ttl_attribute=ttl_attribute,
            capacity=capacity,
            pitr=pitr,
            recovery_days=recovery_days,
            global_indexes=global_indexes,
            local_indexes=local_indexes,
            region=self.region,
            replicas=reps,
        )
        return Table(self._store, name)

    async def update_table(
        self,
        name: str,
        *,
        create_index: GlobalIndex | None = None,
        delete_index: str | None = None,
        wait: bool = True,
        replicas: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Add or delete a global index of a table in use; returns its description.

        A new index is filled from the items already there while writes go on (its
        status is ``CREATING`` until then, and reads of it are refused); with ``wait``
        this returns when it is ``ACTIVE``, else at once (the backfill goes on in this
        process, and ``running()`` resumes any that a stopped process left).

        Raises:
            ValidationError: not a global index, a name in use, over 20 global indexes,
                another index still being created, an unknown index to delete.

        ``replicas={region: log_url, ...}`` (alone) changes a global table's replica
        set instead: removing a region stops replicating with it; adding one copies the
        table's items and their versions to it (a seed through this region's log), then
        its changes after that copy (see ``docs/guides/global-tables.md``).
        """
        from streamkit.storage._index_admin import add_index, backfill, drop_index

        if replicas is not None and create_index is None and delete_index is None:
            from streamkit.replication import set_replicas

            spec = await set_replicas(
                self._store, name, self.region, self.log_url, replicas, namespace=self.namespace
            )
            return spec.describe()
        if (create_index is None) == (delete_index is None):
            raise ValidationError("update_table: give one of create_index= or delete_index=")
        await self._store.ensure_open()
        if delete_index is not None:
            return (await drop_index(self._store, name, delete_index)).describe()
        assert create_index is not None
        spec = await add_index(self._store, name, create_index)
        task = asyncio.create_task(
            backfill(self._store, name, create_index.name), name=f"streamkit-backfill-{name}"
        )
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)
        if wait:
            await task
            spec = await self._store.spec(name)
        return spec.describe()

    async def set_ttl(self, name: str, attribute: str | None) -> dict[str, Any]:
        """Turn a table's time to live on (the attribute holding each item's expiry in
        epoch seconds), move it to another attribute, or off (None); returns the table's
        description. Items already in the table are judged by the new attribute at once:
        one already past its expiry is deleted by the next sweep.

        Raises:
            TableNotFound: no such table.
            ValidationError: an attribute name that is not 1 to 255 characters.
        """
        from streamkit.storage._ttl import set_ttl

        return (await set_ttl(self._store, name, attribute)).describe()

    async def set_pitr(
        self, name: str, enabled: bool = True, *, recovery_days: int | None = None
    ) -> dict[str, Any]:
        """Turn a table's point-in-time recovery on or off (and set its recovery period);
        returns the table's description.

        Turning it on for a table in use enters every item already there in the archive
        (while writes go on) before it returns: restores then reach back to that moment,
        not earlier, as in DynamoDB. Turning it off lets the archive go (the relay prunes
        it); turned on again, restores start afresh.

        Raises:
            TableNotFound: no such table.
            ValidationError: a recovery period that is not 1 to 35 days.
        """
        from streamkit.history._archive import enable_pitr, set_recovery

        if recovery_days is not None and (
            isinstance(recovery_days, bool)
            or not isinstance(recovery_days, int)
            or not 1 <= recovery_days <= 35
        ):
            raise ValidationError(f"recovery_days must be 1 to 35, not {recovery_days!r}")
        if enabled:
            return (await enable_pitr(self._store, name, recovery_days)).describe()
        return (await set_recovery(self._store, name, False, recovery_days)).describe()

    async def _resume_backfills(self) -> None:
        """Finish the backfills of indexes left CREATING, and the archive seeding of tables
        whose point-in-time recovery was left ENABLING (by this or another process)."""
        from streamkit.history._archive import seed_archive
        from streamkit.storage._index_admin import backfill

        await self._store.reload()
        for spec in self._store.known_specs:
            for ix in spec.indexes:
                if ix.status == "CREATING":
                    await backfill(self._store, spec.name, ix.name)
            if spec.pitr_enabling:
                await seed_archive(self._store, spec.name)

    def table(self, name: str) -> Table:
        """A handle to an existing table (calls raise TableNotFound if it does not exist)."""
        check_table_name(name)
        return Table(self._store, name)

    async def delete_table(self, name: str) -> None:
        """Delete a table and its items. A table with PITR leaves a system backup of its
        last state (``app.backups()``), as DynamoDB does."""
        await self._store.delete_table(name)

    async def list_tables(self) -> list[str]:
        """The names of every table, sorted."""
        return await self._store.table_names()

    async def describe_table(self, name: str) -> dict[str, Any]:
        """A table's settings as plain data (raises TableNotFound)."""
        return (await self._store.spec(name)).describe()

    # --- cross-table calls ---------------------------------------------------------------
    def transaction(self) -> Transaction:
        """A transaction over any tables: ``async with app.transaction() as tx: ...``."""
        return Transaction(self._store)

    async def batch_get(
        self,
        requests: Mapping[str | Table, Sequence[Mapping[str, Any]]],
        *,
        consistent: bool = False,
    ) -> dict[str, list[Item]]:
        """Get up to 100 keys across tables: ``{table: [key, ...]}`` -> ``{table: [item, ...]}``."""
        total = sum(len(keys) for keys in requests.values())
        if total > 100:
            raise ValidationError(f"batch_get takes at most 100 keys, got {total}")
        out: dict[str, list[Item]] = {}
        for t, keys in requests.items():
            table = t if isinstance(t, Table) else self.table(t)
            out[table.name] = await table.batch_get(keys, consistent=consistent)
        return out

    # --- PartiQL ---------------------------------------------------------------------------
    async def execute(
        self,
        statement: str,
        parameters: Sequence[Any] | None = None,
        *,
        consistent: bool = False,
        limit: int | None = None,
        next_token: str | None = None,
    ) -> list[Item]:
        """Run one PartiQL statement (DynamoDB's SQL) and return its items.

        A SELECT returns every matching item, reading all pages (``limit`` caps how
        many are returned; ``next_token`` starts from a page of :meth:`execute_page`);
        INSERT, UPDATE and DELETE return ``[]``, or the item their ``RETURNING`` asks for.
        Writes go through the table API and emit the same change records.

        Example:
            ```python
            rows = await app.execute("SELECT * FROM Orders WHERE UserID = ?", ["123"])
            ```

        Raises:
            ValidationError: a statement DynamoDB would refuse, in its words.
            DuplicateItem: an INSERT of a key that exists.
            ConditionFailed: an UPDATE of an absent item, or a WHERE that is false.
        """
        check_limit(limit)
        out: list[Item] = []
        token = next_token
        while True:  # (nothing reads the pages' consumed capacity: no meter)
            page = await partiql.execute_page(
                self._store,
                statement,
                parameters,
                consistent=consistent,
                next_token=token,
                measured=False,
            )
            out.extend(page.items)
            if limit is not None and len(out) >= limit:
                return out[:limit]
            if page.next_token is None:
                return out
            token = page.next_token

    async def execute_page(
        self,
        statement: str,
        parameters: Sequence[Any] | None = None,
        *,
        consistent: bool = False,
        limit: int | None = None,
        next_token: str | None = None,
        return_old_on_condition_failure: bool = False,
    ) -> StatementPage:
        """One page of a PartiQL statement, as DynamoDB's ExecuteStatement returns it:
        ``limit`` items evaluated at most; continue with ``next_token=page.next_token``."""
        return await partiql.execute_page(
            self._store,
            statement,
            parameters,
            consistent=consistent,
            limit=limit,
            next_token=next_token,
            return_old_on_condition_failure=return_old_on_condition_failure,
        )

    async def execute_batch(
        self, statements: Sequence[str | tuple[str, Sequence[Any] | None]]
    ) -> list[BatchStatementResult]:
        """Run up to 25 PartiQL statements, all whole-key SELECTs or all writes, each on its
        own: a statement's failure is its result's ``error`` and stops no other."""
        return await partiql.execute_batch(self._store, _statement_requests(statements))

    async def execute_transaction(
        self, statements: Sequence[str | tuple[str, Sequence[Any] | None]]
    ) -> list[Item | None]:
        """Run up to 100 PartiQL statements as one transaction: all whole-key SELECTs (one
        item or None each) or all writes and ``EXISTS(SELECT ...)`` checks, all or nothing
        (raises TransactionCanceled)."""
        return await partiql.execute_transaction(self._store, _statement_requests(statements))

    async def sweep_expired(self) -> int:
        """Run one TTL pass now; returns how many expired items were deleted."""
        return await sweep_expired(self._store)

    # --- running ---------------------------------------------------------------------------
    def _select(self, handlers: Sequence[str] | None) -> list[HandlerSpec]:
        if handlers is None:
            return list(self._handlers.values())
        unknown = [h for h in handlers if h not in self._handlers]
        if unknown:
            raise ValidationError(
                f"no handler named {unknown!r}; registered: {sorted(self._handlers)}"
            )
        return [self._handlers[h] for h in handlers]

    @contextlib.asynccontextmanager
    async def running(
        self,
        *,
        handlers: Sequence[str] | None = None,
        relay: bool = True,
        ttl: bool = True,
    ) -> AsyncIterator[App]:
        """Run the background work for a block: the capture relay, the TTL sweeper and
        the registered handlers.

        Args:
            handlers: run only these handlers (by name); None runs all of them.
            relay: run the capture relay (another process may run it instead).
            ttl: run the TTL sweeper.

        If a background task fails for good (the relay fenced by another, a topic whose
        settings differ from the table's), the failure is logged at once and raised when
        the block ends; ``drain()`` raises it immediately. Leaving the block stops the
        handlers gracefully: in-flight work finishes (up to ``shutdown_timeout``), what
        completed is committed, and the consumer groups are left.
        """
        specs = self._select(handlers)
        if handlers is None and not specs:
            # stdlib logging: it writes to the stderr of the moment, wherever the app runs
            # (the CLI's structlog set-up keeps the stream it was configured with)
            import logging

            logging.getLogger("streamkit").warning(
                "%r runs with no handlers: only the relay and the TTL sweeper run "
                "(pass handlers=[] to say that is meant)",
                self,
            )
        await self.open()
        self._relay_ready = asyncio.Event()
        tasks = []
        if relay:
            tasks.append(
                asyncio.create_task(self.relay.run(ready=self._relay_ready), name="streamkit-relay")
            )
        else:
            self._relay_ready.set()
        if ttl:
            tasks.append(asyncio.create_task(self._sweep_forever(), name="streamkit-ttl-sweeper"))
        tasks.append(asyncio.create_task(self._resume_backfills(), name="streamkit-backfills"))
        self._runners = {}
        for spec in specs:
            runner = HandlerRunner(
                self._store,
                self.log,
                self.namespace,
                spec,
                options=self.runtime_options,
                metrics=self.metrics.handler(spec.table, spec.name),
            )
            self._runners[spec.name] = runner
            tasks.append(asyncio.create_task(runner.run(), name=f"streamkit-handler-{spec.name}"))
        if self.region != DEFAULT_REGION:
            from streamkit.replication import Replication, ReplicationOptions

            self._replication = Replication(
                self._store,
                self.log,
                self.namespace,
                self.region,
                runtime_options=self.runtime_options,
                options=ReplicationOptions(tombstone_horizon=self.tombstone_horizon),
                metrics=self.metrics,
            )
            self._watch_replication(self._replication)
            tasks.append(asyncio.create_task(self._replication.run(), name="streamkit-replication"))
        for task in tasks:
            task.add_done_callback(_report_failure)
        self._tasks = tasks
        try:
            yield self
        finally:
            self._tasks = []
            self._runners = {}
            self._replication = None
            # handlers first (they finish in-flight work and commit), then the relay
            for task in reversed(tasks):
                task.cancel()
            failures = []
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as e:  # raised below, after every task has stopped
                    failures.append(e)
            if failures:
                raise failures[0]

    async def run(self) -> None:
        """Run the background work until cancelled (``streamkit run`` does this).

        Raises:
            ConfigurationError: the app has no handlers (a decorator used without its
                call, a router not included): there would be nothing to run. Use
                ``async with app.running():`` or ``streamkit relay`` for the relay alone.
        """
        if not self._handlers:
            raise ConfigurationError(
                f"{self!r} has no handlers, so there is nothing to run: declare them with "
                '@app.on_insert("Table") / on_modify / on_remove / on_change (with the '
                "parentheses), or include_router(); `streamkit relay` runs the relay alone"
            )
        async with self.running():
            await asyncio.Event().wait()

    async def drain(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a deadline, not I/O
        """Wait until every change committed so far is in the change log and, inside
        ``running()``, every running handler has processed (and committed) it.

        Needs the relay running (``async with app.running():``) or ``relay_once()`` calls.

        Raises:
            TimeoutError: not all changes were published and handled within ``timeout``.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        await self._drain_relay(timeout)
        runners: list[Any] = list(self._runners.values())
        if self._replication is not None:  # its replicators, alike
            runners += self._replication.runners()
        while runners:
            self._raise_failures()
            states = [await r.drained() for r in runners]
            if all(states):
                return
            if asyncio.get_running_loop().time() > deadline:
                late = [r.spec.name for r, ok in zip(runners, states, strict=True) if not ok]
                raise TimeoutError(f"handlers {late} did not drain within {timeout}s")
            await asyncio.sleep(0.01)

    def _raise_failures(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _drain_relay(self, timeout: float) -> None:  # noqa: ASYNC109
        target = await self._store.read_changes_tail()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self._raise_failures()
            standby = self.relay.status.standby  # another process's relay publishes
            if self._tasks and not self._relay_ready.is_set() and not standby:
                # the relay has not finished starting (topic checks, fencing): not drained
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"the relay did not start within {timeout}s")
                await asyncio.sleep(0.005)
                continue
            # the running relay's own count is current; otherwise ask the storage
            running = self._tasks and self._tasks[0].get_name() == "streamkit-relay"
            mine = running and not standby
            done = self.relay.status.done if mine else (await self.relay._state())[0]
            if done >= target:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"the relay has published up to {done}, not {target}, after {timeout}s"
                )
            await asyncio.sleep(0.005)

    def _watch_replication(self, replication: Any) -> None:
        from streamkit.replication import ReplicationCollector

        if self._replication_collector is not None:
            self._replication_collector.replication = replication
            return
        self._replication_collector = ReplicationCollector(replication)
        self.metrics.registry.register(self._replication_collector)

    async def replication_status(self, table: str) -> dict[str, Any]:
        """Where a global table's replication stands, per peer region: ``lag_records``
        and ``lag_seconds`` (the peer's changes not yet applied here, and the age of the
        oldest), ``conflicts`` (the peer's writes last-writer-wins discarded),
        ``running``, and ``waiting_for`` / ``error`` when it cannot go on (settings that
        differ between regions, an unreachable log). Any process may ask
        (``streamkit replicas TABLE`` shows it).

        Raises:
            TableNotFound: no such table. ValidationError: not a global table.
        """
        from streamkit.replication import replication_status

        return await replication_status(self._store, self.namespace, table, self._replication)

    async def capture_status(self) -> dict[str, Any]:
        """How far the relay has published, from the storage (any process may ask).

        Returns ``published_up_to`` and ``latest_committed`` (sequence numbers), ``behind``
        (rows waiting), ``oldest_unpublished_age_s``, ``batch_in_doubt`` and ``failing``:
        the tables whose change capture is set aside because their topic cannot be made
        (each ``{"table", "error", "since", "rows_kept"}``; their rows are kept in the
        storage, every other table's go on being published).
        """
        done, intent = await self.relay._state()
        latest = await self._store.read_changes_tail()
        waiting = await self._store.read_changes(done, 1)
        return {
            "published_up_to": done,
            "latest_committed": latest,
            "behind": max(0, latest - done),
            "oldest_unpublished_age_s": round(time.time() - waiting[0].created_ms / 1000, 3)
            if waiting
            else None,
            "batch_in_doubt": intent > done,
            "failing": await self.relay.failing(),
        }

    def changes(
        self,
        table: str,
        *,
        start: Start = "trim_horizon",
        follow: bool = True,
        poll: float = 0.5,
    ) -> AsyncIterator[ChangeRecord]:
        """Read a table's change stream from the log.

        Args:
            start: "trim_horizon" (oldest kept), "latest", a datetime or a sequence number.
            follow: keep waiting for new records (False: stop at the current end).

        Raises:
            TableNotFound: (on the first iteration) no such table exists and the log holds
                no change stream of it either (a deleted table's stays readable).
            ConfigurationError: with ``follow``, the table has no stream, so nothing
                would ever arrive.

        Example:
            ```python
            async for record in app.changes("Users", follow=False):
                print(record.event_name, record.keys)
            ```
        """
        check_table_name(table)
        return self._changes(table, start=start, follow=follow, poll=poll)

    async def _changes(
        self, table: str, *, start: Start, follow: bool, poll: float
    ) -> AsyncIterator[ChangeRecord]:
        from streamkit.capture._relay import table_topic
        from streamkit.exceptions import TableNotFound

        try:
            spec: TableSpec | None = await self._store.spec(table)
        except TableNotFound:
            spec = None
        if spec is None or spec.stream is None:
            # nothing will ever be published: refuse instead of waiting for ever
            topic = table_topic(self.namespace, table)
            await self.log.open()
            if await self.log.describe_topic(topic) is None:
                if spec is None:
                    raise TableNotFound(
                        f"table {table!r} does not exist, and the log holds no change "
                        f"stream of it (no topic {topic!r})",
                        table=table,
                    )
                if follow:
                    raise ConfigurationError(
                        f"table {table!r} has no stream, so it has no changes to read; "
                        "create it with stream=sk.StreamView.NEW_AND_OLD_IMAGES (or another view)"
                    )
        records = cast(
            "AsyncGenerator[ChangeRecord, None]",
            read_changes(self.log, self.namespace, table, start=start, follow=follow, poll=poll),
        )
        async with contextlib.aclosing(records):
            async for record in records:
                yield record

    async def _sweep_forever(self) -> None:
        # one sweeper of a store and namespace sweeps at a time (two would only repeat
        # each other's reads: a deletion is conditional on the item still being expired)
        holder, lease = f"{os.getpid()}:{uuid.uuid4().hex[:8]}", ttl_lease(self.namespace)
        seconds = max(10.0, 3 * self.ttl_interval)
        while True:
            try:
                if not await self._store.engine.try_lease(lease, holder, seconds):
                    await asyncio.sleep(self.ttl_interval)
                    continue
                n = await self.sweep_expired()
                if n:
                    _logger().debug("ttl sweep", deleted=n)
            except asyncio.CancelledError:
                raise
            except Exception:
                _logger().exception("ttl sweep failed; retrying")
            await asyncio.sleep(self.ttl_interval)

    # --- dead letters ------------------------------------------------------------------------
    def _dlq(self, handler: str) -> DeadLetterQueue:
        spec = self._select([handler])[0]
        return DeadLetterQueue(
            self.log,
            self.namespace,
            spec.table,
            spec.name,
            retention_ms=self.runtime_options.dlq_retention_ms,
        )

    async def dead_letters(
        self, handler: str, *, include_redriven: bool = False
    ) -> AsyncIterator[DeadLetter]:
        """The records ``handler`` gave up on and sent to its DLQ, oldest first.

        Each ``DeadLetter`` carries the record itself, the error (type, message,
        traceback), the attempts, the handler and the times. Letters already redriven
        are left out unless ``include_redriven``.

        Example:
            ```python
            async for letter in app.dead_letters("big_orders"):
                print(letter.record.keys, letter.error_type, letter.attempts)
            ```
        """
        async for letter in self._dlq(handler).pending(include_redriven=include_redriven):
            yield letter

    async def dlq_depth(self, handler: str) -> int:
        """How many dead letters of ``handler`` wait to be redriven."""
        return await self._dlq(handler).depth()

    async def handler_status(self, handler: str | None = None) -> list[dict[str, Any]]:
        """Per handler (all, or one): lag, iterator age, DLQ depth, retention headroom.

        Read from the log's committed positions, so any process can ask, whether or not
        the handlers run here (``streamkit status`` shows this).
        """
        from streamkit.runtime._status import handler_status

        names = None if handler is None else [handler]
        return [
            await handler_status(
                self.log,
                self.namespace,
                spec,
                retention_ms=self.topic_config.retention_ms,
                dlq=self._dlq(spec.name),
            )
            for spec in self._select(names)
        ]

    async def redrive(self, handler: str, *, limit: int | None = None) -> dict[str, int]:
        """Send ``handler``'s pending dead letters back through it, oldest first.

        Each letter is handled with the handler's own retries (writes through its
        context commit as usual); a letter that succeeds is marked redriven. Stops at
        the first letter that still fails, leaving it and the rest pending.

        Returns:
            ``{"redriven": n, "failed": 0 or 1, "pending": left}``.
        """
        from streamkit.runtime._redrive import redrive

        spec = self._select([handler])[0]
        await self.open()
        return await redrive(self._store, self._dlq(handler), spec, limit=limit)

    # --- history ---------------------------------------------------------------------------
    async def replay(
        self,
        table: str,
        handler: str | HandlerSpec | Callable[..., Any],
        *,
        since: datetime,
        until: datetime | None = None,
        dry_run: bool = False,
        progress: Callable[[int], Any] | None = None,
    ) -> ReplaySummary:
        """Re-run a handler over exactly the changes committed to ``table`` in [since, until).

        The records come from the change log while it keeps them and from the
        point-in-time archive beyond it, each item's in commit order. The live handler's
        checkpoint and consumer group are not touched. A range reaching past what is kept
        raises :class:`~streamkit.exceptions.HistoryUnavailable` (never shortened).

        Args:
            handler: a registered handler's name, its spec, or any function taking a
                ``ChangeRecord`` (it receives every event).
            since, until: timezone-aware datetimes; ``until`` defaults to now.
            dry_run: count what the handler would receive; invoke nothing.
            progress: called with the number of records read so far.

        Example:
            ```python
            summary = await app.replay("Orders", "ship_order", since=now - timedelta(hours=1))
            ```
        """
        from streamkit.history._replay import HistoryEnv, replay

        env = HistoryEnv(self._store, self.log, self.namespace, self.handlers)
        return await replay(
            env, table, handler, since=since, until=until, dry_run=dry_run, progress=progress
        )

    async def restore_to_time(self, table: str, *, at: datetime, target: str) -> Table:
        """Restore ``table`` exactly as it was at ``at`` into the new table ``target``.

        ``target`` gets the source's key schema, stream, TTL, capacity and PITR settings;
        it appears whole or not at all. ``at`` may be any instant from the start of the
        table's recovery window (``recovery_days``, or its creation if later) to now.

        Raises:
            HistoryUnavailable: ``at`` is outside the window, or the table has pitr=False.
            TableExists: ``target`` exists already.
        """
        from streamkit.history._archive import restore_to_time

        return await restore_to_time(
            self._store, table, at=at, target=target, namespace=self.namespace
        )

    async def backup(self, table: str) -> Backup:
        """A consistent copy of the table's items (all as of one instant, while writes go
        on), kept in the storage until deleted."""
        from streamkit.history import _backups

        return await _backups.create(self._store, table)

    async def backups(self, table: str | None = None) -> list[Backup]:
        """Every backup (of ``table``), oldest first."""
        from streamkit.history import _backups

        return await _backups.list_backups(self._store, table)

    async def restore_backup(self, backup_id: str, *, target: str) -> Table:
        """Create ``target`` from a backup, with the backed-up table's settings.

        Raises:
            BackupNotFound: no such backup. TableExists: ``target`` exists.
        """
        from streamkit.history import _backups

        return await _backups.restore(
            self._store, backup_id, target=target, namespace=self.namespace
        )

    async def delete_backup(self, backup_id: str) -> Backup:
        """Delete a backup; returns what it was (raises BackupNotFound)."""
        from streamkit.history import _backups

        return await _backups.delete(self._store, backup_id)

    async def export(
        self,
        table: str,
        *,
        to: str,
        format: str = "dynamodb-json",
        since: datetime | None = None,
        until: datetime | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> ExportResult:
        """Export a table to ``file:///dir`` or ``s3://bucket/prefix``.

        Full (``since`` None): the table as of ``until`` (default now). Incremental: the
        changes committed in [since, until). Formats: "dynamodb-json" (gzip, one item per
        line, DynamoDB's export shape), "ion" (gzip, DynamoDB's Amazon Ion shape), "avro",
        "parquet". A manifest listing the files,
        item counts and checksums is written last. Returns an ``ExportResult``.
        """
        from streamkit.history._export import export_table

        return await export_table(
            self._store, table, to=to, format=format, since=since, until=until, progress=progress
        )
