"""The table store: one storage engine, its table catalog and capacity buckets.

``Store`` is what ``Table`` handles and transactions share. It opens the
engine lazily on first use, caches table specs, and keeps one token bucket
per provisioned table and direction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from streamkit.exceptions import TableNotFound
from streamkit.storage._capacity import Provisioned, TokenBucket, record_consumed
from streamkit.storage._engine import ChangeRow, StorageEngine, engine_for
from streamkit.storage._spec import TableSpec

__all__ = ("Store",)

_DAY_MS = 86_400_000
_MAX_WINDOW_MS = 35 * _DAY_MS


class Store:
    """Shared state behind every Table handle of one App."""

    def __init__(self, url: str, *, origin: str | None = None) -> None:
        self.engine: StorageEngine = engine_for(url)
        self.origin = origin
        self._specs: dict[str, TableSpec] = {}
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

    async def close(self) -> None:
        """Close the engine (a later call reopens it)."""
        if self._opened:
            self._opened = False
            await self.engine.close()

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
        """Re-read the catalog (another process may have created or deleted tables)."""
        await self.ensure_open()
        specs = await self.engine.list_tables()
        self._specs = {s.name: s for s in specs}

    def remember(self, spec: TableSpec) -> None:
        """Cache a created or updated spec."""
        self._specs[spec.name] = spec
        self._drop_buckets(spec.name)

    def forget(self, name: str) -> None:
        """Drop a deleted table from the cache."""
        self._specs.pop(name, None)
        self._drop_buckets(name)

    def _drop_buckets(self, name: str) -> None:
        for key in [k for k in self._buckets if k[0] == name or k[0].startswith(name + "\0")]:
            del self._buckets[key]

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
