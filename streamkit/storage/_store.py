"""The table store: one storage engine, its table catalog and capacity buckets.

``Store`` is what ``Table`` handles and transactions share. It opens the
engine lazily on first use, caches table specs, and keeps one token bucket
per provisioned table and direction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from streamkit.exceptions import StorageError, TableNotFound
from streamkit.storage._capacity import (
    Provisioned,
    TokenBucket,
    record_collection,
    record_consumed,
    unmetered,
)
from streamkit.storage._engine import ChangeRow, StorageEngine, engine_for
from streamkit.storage._spec import TableSpec
from streamkit.storage._write_ops import (
    ITEM_COLLECTION_LIMIT,
    Checkpoint,
    WriteJob,
    WriteOp,
    WriteResult,
)
from streamkit.storage._writes import StaleCatalog

if TYPE_CHECKING:
    from streamkit.storage._cache import CacheEngine

__all__ = ("Store",)

_DAY_MS = 86_400_000
_SPEC_RETRIES = 20  # reads of a table's settings before a change gives up
_MAX_WINDOW_MS = 35 * _DAY_MS


class Store:
    """Shared state behind every Table handle of one App."""

    def __init__(
        self,
        url: str,
        *,
        origin: str | None = None,
        cache: CacheEngine | None = None,
        item_collection_limit: int = ITEM_COLLECTION_LIMIT,
    ) -> None:
        self.engine: StorageEngine = engine_for(url)
        self.origin = origin
        # bytes per item collection of a table with local indexes (DynamoDB: 10 GB)
        self.item_collection_limit = item_collection_limit
        self.cache = cache  # the item and query cache (``sk.Cache``), if the App has one
        self._specs: dict[str, TableSpec] = {}
        self._catalog_clock = 0  # counts this process's own catalog changes
        self._changed_at: dict[str, int] = {}  # table name -> clock of its last change
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._opened = False
        self._lock: asyncio.Lock | None = None

    async def ensure_open(self) -> None:
        """Open the engine and load the catalog, once."""
        if self._opened:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._opened:
                return
            await self.engine.open()
            for spec in await self.engine.list_tables():
                self._specs[spec.name] = spec
            self._opened = True
            if self.cache is not None:
                await self.cache.attach(self)  # follows the store's changes from now on

    async def close(self) -> None:
        """Close the engine (a later call reopens it)."""
        if self._opened:
            self._opened = False
            if self.cache is not None:
                await self.cache.detach()
            await self.engine.close()

    @property
    def is_open(self) -> bool:
        """Whether the engine has been opened."""
        return self._opened

    def known(self, name: str) -> TableSpec | None:
        """The cached spec of a table, without I/O (None if not cached or not open)."""
        return self._specs.get(name) if self._opened else None

    async def spec(self, name: str) -> TableSpec:
        """The spec of a table, reloading the catalog once if it is not known here."""
        if not self._opened:
            await self.ensure_open()
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        await self.reload()
        spec = self._specs.get(name)
        if spec is None:
            raise TableNotFound(f"table {name!r} does not exist", table=name)
        return spec

    async def reload(self) -> None:
        """Re-read the catalog (another process may have created or deleted tables).

        A table this process created, changed or deleted while the catalog was being read
        keeps this process's view of it: the read may predate that change (a TTL sweep's
        reload racing an UpdateTimeToLive must not bring the old settings back)."""
        await self.ensure_open()
        mark = self._catalog_clock
        specs = await self.engine.list_tables()
        fresh = {s.name: s for s in specs}
        if self._catalog_clock != mark:
            for name, when in self._changed_at.items():
                if when > mark:
                    if name in self._specs:
                        fresh[name] = self._specs[name]
                    else:
                        fresh.pop(name, None)
        self._specs = fresh
        if self.cache is not None:
            self.cache.catalog(list(fresh.values()))

    def _changed(self, name: str) -> None:
        self._catalog_clock += 1
        self._changed_at[name] = self._catalog_clock

    def remember(self, spec: TableSpec) -> None:
        """Cache a created or updated spec."""
        self._changed(spec.name)
        old = self._specs.get(spec.name)
        self._specs[spec.name] = spec
        if self.cache is not None:
            self.cache.drop_table(spec.table_id)
            if old is not None and old.table_id != spec.table_id:
                self.cache.drop_table(old.table_id)
        self._drop_buckets(spec.name)

    def forget(self, name: str) -> None:
        """Drop a deleted table from the cache."""
        self._changed(name)
        old = self._specs.pop(name, None)
        if old is not None and self.cache is not None:
            self.cache.drop_table(old.table_id)
        self._drop_buckets(name)

    async def change_spec(
        self,
        name: str,
        change: Callable[[TableSpec], TableSpec | None],
        *,
        store: Callable[[TableSpec, TableSpec], Awaitable[TableSpec]] | None = None,
    ) -> TableSpec:
        """Change a table's settings without undoing anyone else's: read them, apply
        ``change`` (it returns the new spec, or None for "nothing to change"; its errors
        go to the caller), and store the result only if the stored settings are still
        the ones read (their ``epoch``); if another request or process stored settings
        in between, read them again and re-apply ``change`` to those. This is the one
        read-modify-write of table settings (tags, capacity, streams, indexes, TTL,
        PITR, replicas); returns the spec as stored (or as it is, when unchanged).

        ``store(read, changed)`` stores ``changed`` instead of a plain
        ``engine.update_table(changed, only_if_epoch=read.epoch)`` (it must raise
        StaleCatalog in the same case).

        Raises:
            TableNotFound: no such table.
            StorageError: (retriable) the settings changed under each of 20 attempts.
        """
        for _ in range(_SPEC_RETRIES):
            spec = await self.spec(name)
            changed = change(spec)
            if changed is None or changed == spec:
                return spec
            try:
                if store is not None:
                    stored = await store(spec, changed)
                else:
                    stored = await self.engine.update_table(changed, only_if_epoch=spec.epoch)
            except StaleCatalog:
                await self.reload()  # another request's or process's change: read it
                continue
            self.remember(stored)
            return stored
        raise StorageError(
            f"the settings of table {name!r} kept changing under this change; retry it",
            retriable=True,
        )

    def _drop_buckets(self, name: str) -> None:
        for key in [k for k in self._buckets if k[0] == name or k[0].startswith(name + "\0")]:
            del self._buckets[key]

    async def write(self, job: WriteJob) -> list[WriteResult]:
        """Run a write job; when it was built with a table spec older than the stored one
        (an index was added since), reload the catalog and run it again with the new
        spec, so that no write ever skips an index."""
        job.collection_limit = self.item_collection_limit
        for _ in range(5):
            try:
                return self._collections(job, await self.engine.write(job))
            except StaleCatalog:
                await self._refresh_specs(job.ops)
        return self._collections(job, await self.engine.write(job))

    @staticmethod
    def _collections(job: WriteJob, results: list[WriteResult]) -> list[WriteResult]:
        """Report the item collection sizes of the job's writes to open meters."""
        for op, r in zip(job.ops, results, strict=False):
            if r.collection_size is not None:
                name = op.spec.key.partition.name
                key = {name: op.k.key[name]}
                record_collection(op.spec.name, op.k.pk, key, r.collection_size)
        return results

    async def commit_effects(
        self, ops: Sequence[WriteOp], checkpoints: Sequence[Checkpoint], origin: str | None
    ) -> int | None:
        """``StorageEngine.commit_effects``, run again on a newer catalog like :meth:`write`."""
        for _ in range(5):
            try:
                return await self.engine.commit_effects(ops, checkpoints, origin)
            except StaleCatalog:
                await self._refresh_specs(ops)
        return await self.engine.commit_effects(ops, checkpoints, origin)

    async def _refresh_specs(self, ops: Sequence[WriteOp]) -> None:
        await self.reload()
        for op in ops:
            fresh = self._specs.get(op.spec.name)
            if fresh is None or fresh.table_id != op.spec.table_id:
                raise TableNotFound(f"table {op.spec.name!r} does not exist", table=op.spec.name)
            op.spec = fresh

    async def delete_table(self, name: str) -> TableSpec:
        """Delete a table, its items and its index entries (see ``StorageEngine``)."""
        await self.ensure_open()
        spec = await self.engine.delete_table(name)
        self.forget(name)
        return spec

    async def table_names(self) -> list[str]:
        """The names of every table, sorted (other processes' changes included)."""
        await self.reload()
        return [s.name for s in self.known_specs]

    @property
    def known_specs(self) -> list[TableSpec]:
        """Specs cached now, by name."""
        return [self._specs[n] for n in sorted(self._specs)]

    def _bucket(self, spec: TableSpec, direction: str) -> TokenBucket | None:
        cap = spec.capacity
        if not isinstance(cap, Provisioned):
            return None
        b = self._buckets.get((spec.name, direction))
        if b is None:
            rate = cap.read if direction == "read" else cap.write
            b = self._buckets[(spec.name, direction)] = TokenBucket(rate, spec.name)
        return b

    def _index_bucket(self, spec: TableSpec, index: str) -> TokenBucket | None:
        """The write bucket of a provisioned global index of a provisioned table."""
        if not isinstance(spec.capacity, Provisioned):
            return None
        ix = next((x for x in spec.indexes if x.name == index), None)
        if ix is None or ix.capacity is None:
            return None
        key = (f"{spec.name}\0{index}", "write")
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(ix.capacity.write, f"{spec.name}/index/{index}")
        return b

    def admit(self, spec: TableSpec, *, read: float = 0.0, write: float = 0.0) -> None:
        """Raise ThroughputExceeded unless the table has the units a call needs (a write
        also needs a unit on every provisioned global index: an index whose write
        capacity is used up throttles the table's writes, as DynamoDB's do)."""
        if unmetered():
            return
        if read:
            b = self._bucket(spec, "read")
            if b is not None:
                b.admit(read, "read")
        if write:
            b = self._bucket(spec, "write")
            if b is not None:
                b.admit(write, "write")
            for ix in spec.indexes:
                ib = self._index_bucket(spec, ix.name) if ix.capacity is not None else None
                if ib is not None:
                    ib.admit(1.0, "write")

    def charge(
        self,
        spec: TableSpec,
        *,
        read: float = 0.0,
        write: float = 0.0,
        indexes: Mapping[str, float] | None = None,
    ) -> None:
        """Take the units a call consumed (``indexes``: write units per index), and
        report them to open meters."""
        if unmetered():
            return
        if read:
            b = self._bucket(spec, "read")
            if b is not None:
                b.charge(read)
        if write:
            b = self._bucket(spec, "write")
            if b is not None:
                b.charge(write)
        if indexes:
            for name, units in indexes.items():
                ib = self._index_bucket(spec, name)
                if ib is not None:
                    ib.charge(units)
        record_consumed(spec.name, read, write, indexes)

    async def read_meta(self, keys: tuple[str, ...]) -> dict[str, str]:
        """Storage-level settings and positions (the relay's state lives here)."""
        await self.ensure_open()
        return await self.engine.read_meta(keys)

    async def write_meta(self, values: dict[str, str]) -> None:
        """Set storage-level settings and positions, atomically."""
        await self.ensure_open()
        await self.engine.write_meta(values)

    async def read_changes_tail(self) -> int:
        """The sequence number of the newest change record (0 when there is none)."""
        await self.ensure_open()
        return await self.engine.max_sequence()

    async def read_changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        """Change rows (the outbox and archive) after a sequence number, in commit order."""
        await self.ensure_open()
        return await self.engine.changes(after_seq, limit)

    async def prune_archive(
        self, *, published_upto: int, now_ms: int | None = None, limit: int = 10_000
    ) -> int:
        """Prune and compact the change archive.

        Rows up to ``published_upto`` (the position of the slowest relay) may go: rows of
        tables without PITR (and of deleted tables) at once; rows of PITR tables once they
        are older than the table's recovery window *and* a newer row of the same item is
        too (the newest row of an item before the window is kept unless it is a REMOVE,
        so every instant of the window can be rebuilt). The newest row always stays:
        sequence numbers continue from it. Examines at most ``limit`` PITR rows per call;
        returns how many rows it deleted.
        """
        await self.ensure_open()
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return await self.engine.prune_changes(upto=published_upto, now_ms=now, limit=limit)
