"""The item and query cache (as DAX), kept fresh by the store's own change rows.

``sk.App(cache=sk.Cache(...))`` puts one :class:`CacheEngine` on the App's
:class:`~streamkit.storage._store.Store`. ``Table`` serves eventually consistent
reads from it and writes through it; :func:`follow_changes` (a task started when the
store opens) reads every change row committed to the store, by any process, and drops
what each change touched. See ``docs/design/cache.md``.

One ``OrderedDict`` holds both kinds of entry in LRU order under one byte budget:

* **item entries** ``(table id, partition bytes, sort bytes)``: the decoded item, or
  None (negative caching: the item does not exist). Each remembers the change sequence
  number its value is known to be current at (``seq``): a change row of that item with a
  higher number drops it.
* **query entries** (a query or scan page, keyed by the whole request): the page, and
  the *generation* it was read at. A query of the table depends on its partition's
  generation, a scan and every index query on the table's generation; a change to an
  item bumps both, so every page that could hold it dies. Partition generations live in
  a fixed array of counters indexed by a hash of (table id, partition bytes): memory
  does not grow with the number of partitions (two partitions sharing a counter only
  drop each other's pages a little more often).

Every entry is charged the item's DynamoDB size (``item_size``) plus a fixed overhead,
so the budget holds whatever the shape of the data; nothing is kept per attribute name.

A read that misses fills the cache only if no change touched its partition while it
was reading (the counter did not move): a slow read can never put back a value that a
change committed after it already dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from streamkit.exceptions import StreamkitError, ValidationError
from streamkit.records._avro import decode_record
from streamkit.records._values import Item, item_size
from streamkit.storage._write_ops import ArchiveOp, CheckOp, DeleteOp, IndexOp, PutOp, UpdateOp

if TYPE_CHECKING:
    from streamkit.storage._engine import ChangeRow
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store
    from streamkit.storage._table import Page
    from streamkit.storage._write_ops import WriteOp, WriteResult

__all__ = ("Cache", "CacheEngine", "follow_changes")

#: Bytes charged per entry on top of the item's DynamoDB size: the key tuple, the
#: entry object, the OrderedDict node and an empty dict (measured with tracemalloc:
#: ``tests/unit/storage/test_cache.py``).
ENTRY_OVERHEAD: Final = 400
#: And per value held (each attribute, each element of a list, map or set): a decoded
#: number is a 104-byte ``Decimal`` where DynamoDB counts a byte or two, so without this
#: an item of many small values would hold far more memory than it is charged.
VALUE_OVERHEAD: Final = 80
_MISS: Final = object()
_FOLLOW_BATCH = 1000
_POLL_S = 0.5  # the follower looks for new rows at least this often (missed doorbells)
_CATALOG_S = 1.0  # and re-reads the catalog (tables deleted, changed by others)
_RETRY_S = 1.0
_SAMPLES = 4096  # staleness samples kept for the percentiles
_MAX_OWN = 100_000

_ITEM = 0
_PARTITION = 1  # a query page of the table: depends on its partition's counter
_TABLE = 2  # a scan page or an index query page: depends on the table's counter


@dataclass(frozen=True, slots=True)
class Cache:
    """Settings of an App's item and query cache (as DAX).

    Args:
        item_ttl: seconds an item entry (from get / batch_get) lives; 0 turns the item
            cache off.
        query_ttl: seconds a query or scan page lives; 0 turns the query cache off.
        max_bytes: the memory budget of both, in bytes (items are charged their
            DynamoDB size plus a fixed overhead per entry); least recently used entries
            are evicted beyond it.

    Only eventually consistent reads are served from the cache; every App with a cache
    follows the store's changes (all processes' writes) and drops what they touch.

    Example:
        ```python
        app = sk.App(cache=sk.Cache(item_ttl=300, query_ttl=300, max_bytes=256 << 20))
        ```

    Raises:
        ValidationError: a negative or non-numeric TTL, or a budget that is not a
            positive integer.
    """

    item_ttl: float = 300.0
    query_ttl: float = 300.0
    max_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for name in ("item_ttl", "query_ttl"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValidationError(f"Cache {name} must be a number of seconds, got {v!r}")
            if v < 0:
                raise ValidationError(f"Cache {name} must be 0 (off) or more, got {v!r}")
        mb = self.max_bytes
        if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
            raise ValidationError(f"Cache max_bytes must be a positive integer, got {mb!r}")


class _Entry:
    __slots__ = ("dep", "expires", "gen", "kind", "seq", "size", "value")

    def __init__(
        self, kind: int, value: Any, size: int, expires: float, seq: int, dep: int, gen: int
    ) -> None:
        self.kind = kind
        self.value = value
        self.size = size
        self.expires = expires
        self.seq = seq  # items: the change number the value is current at; pages: epoch
        self.dep = dep  # query entries: the counter they depend on (bucket or table id)
        self.gen = gen  # and its value when the page was read


_IMMUTABLE: Final = frozenset({str, bytes, bool, type(None), Decimal})


def _copy_value(v: Any) -> Any:
    t = type(v)
    if t is dict:
        return {k: _copy_value(x) for k, x in v.items()}
    if t is list:
        return [_copy_value(x) for x in v]
    if t is set:
        return set(v)  # members are str, Decimal or bytes: immutable
    return v  # str, Decimal, bytes, bool, None


def copy_item(item: Item) -> Item:
    """A copy the caller may change without changing the cached item."""
    for v in item.values():
        if type(v) not in _IMMUTABLE:
            return {k: (x if type(x) in _IMMUTABLE else _copy_value(x)) for k, x in item.items()}
    return item.copy()  # only immutable values (the common case): a shallow copy is whole


def _values(v: Any) -> int:
    t = type(v)
    if t is dict:
        return len(v) + sum(_values(x) for x in v.values() if type(x) in _NESTED)
    if t is list:
        return len(v) + sum(_values(x) for x in v if type(x) in _NESTED)
    if t is set:
        return len(v)
    return 0


_NESTED: Final = frozenset({dict, list, set})


def charge(item: Item | None, size: int) -> int:
    """The bytes an entry holding ``item`` (of DynamoDB size ``size``) is charged."""
    return ENTRY_OVERHEAD + size + (0 if item is None else VALUE_OVERHEAD * _values(item))


def _key_bytes(key: tuple[Any, ...]) -> int:
    return sum(len(p) for p in key if isinstance(p, (bytes, str)))


class CacheEngine:
    """The cache of one Store: entries, LRU order, counters and statistics.

    Runs on the event loop only (no locks); every lookup is synchronous.
    """

    def __init__(self, config: Cache) -> None:
        self.config = config
        self.item_ttl = float(config.item_ttl)
        self.query_ttl = float(config.query_ttl)
        self.max_bytes = config.max_bytes
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._per_table: dict[int, int] = {}  # entries per table id (purges skip the rest)
        nbuckets = 1 << max(10, min(16, (config.max_bytes // 4096).bit_length()))
        self._mask = nbuckets - 1
        self._pgen = array("Q", bytes(8 * nbuckets))  # partition counters (hashed)
        # the newest change number applied or written through per partition (hashed), and
        # below which nothing is known (changes skipped by a gap or a restart)
        self._pseq = array("Q", bytes(8 * nbuckets))
        self._floor = 0
        self._tgen: dict[int, int] = {}  # table counters
        self._seen: dict[int, TableSpec] = {}  # the catalog as last read
        self._epoch: dict[int, int] = {}  # moves when a whole table is dropped
        self._own: set[int] = set()  # change numbers this App wrote through (already bumped)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0
        self.gaps = 0
        self.bypassed = 0
        self._staleness: deque[int] = deque(maxlen=_SAMPLES)
        # the follower
        self.active = False  # a follower is applying the change rows: hits are allowed
        self.position = 0  # the newest change row applied
        self._store: Store | None = None
        self._local_only = False  # memory://: no other process can write the store
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._collector: Any = None

    # --- lifecycle ----------------------------------------------------------------------
    async def attach(self, store: Store) -> None:
        """Bind to the open ``store`` and follow its changes from now on (a task on the
        running loop); the cache serves as soon as this returns."""
        self._store = store
        self._local_only = store.engine.url.startswith("memory:")
        with contextlib.suppress(Exception):  # else the follower retries until it can
            await _begin(store, self)
        self._start()

    def _start(self) -> None:
        assert self._store is not None
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(
            follow_changes(self._store), name="streamkit-cache-follower"
        )

    async def detach(self) -> None:
        """Stop following (the store is closing); the cache is emptied."""
        task, self._task = self._task, None
        self.active = False
        if task is not None and not task.done():
            try:
                same = task.get_loop() is asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - called without a loop
                same = False
            task.cancel()
            if same:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.clear()

    def serving(self, spec: TableSpec) -> bool:
        """Whether reads of ``spec``'s table may be served from (and fill) the cache now."""
        if not self.active:
            return False
        if self._loop is not asyncio.get_running_loop():
            # used from another event loop than the follower's (tests that open a store
            # in one asyncio.run and use it in another): follow again from here
            self.clear()
            self.active = False
            self._start()
            return False
        if spec.record_view is None and not self._local_only:
            # no change rows: another process's writes would go unseen
            self.bypassed += 1
            return False
        return True

    # --- LRU ----------------------------------------------------------------------------
    def _insert(self, key: tuple[Any, ...], entry: _Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        else:
            tid = key[0]
            self._per_table[tid] = self._per_table.get(tid, 0) + 1
        if entry.size > self.max_bytes:
            if old is not None:
                self._count_gone(key)
            return
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            k, e = self._entries.popitem(last=False)
            self.bytes -= e.size
            self._count_gone(k)
            self.evictions += 1

    def _remove(self, key: tuple[Any, ...]) -> bool:
        e = self._entries.pop(key, None)
        if e is None:
            return False
        self.bytes -= e.size
        self._count_gone(key)
        return True

    def _count_gone(self, key: tuple[Any, ...]) -> None:
        tid = key[0]
        n = self._per_table[tid] - 1
        if n:
            self._per_table[tid] = n
        else:
            del self._per_table[tid]

    def clear(self) -> None:
        """Drop every entry."""
        if self._entries:
            self.invalidations += len(self._entries)
        self._entries.clear()
        self._per_table.clear()
        self._own.clear()
        self.bytes = 0
        # counters move so pages being read now are not stored
        for tid in list(self._tgen):
            self._tgen[tid] += 1
        self._pgen = array("Q", (g + 1 for g in self._pgen))

    def drop_table(self, table_id: int) -> None:
        """Drop every entry of one table (deleted, re-created, restored, changed)."""
        self._tgen[table_id] = self._tgen.get(table_id, 0) + 1
        self._epoch[table_id] = self._epoch.get(table_id, 0) + 1  # reads in flight too
        if table_id not in self._per_table:
            return
        for key in [k for k in self._entries if k[0] == table_id]:
            self._remove(key)
            self.invalidations += 1

    def catalog(self, specs: Sequence[TableSpec]) -> None:
        """The catalog was read as ``specs``: drop the tables that are gone or whose
        settings changed since it was last read (by another process: this one's own
        changes drop them at once)."""
        now = {s.table_id: s for s in specs}
        before, self._seen = self._seen, now
        for tid in set(self._per_table) | set(before):
            spec = now.get(tid)
            if spec is None or (tid in before and before[tid] != spec):
                self.drop_table(tid)

    # --- counters -----------------------------------------------------------------------
    def _bucket(self, table_id: int, pk: bytes) -> int:
        return hash((table_id, pk)) & self._mask

    def _bump(self, table_id: int, pk: bytes) -> None:
        self._pgen[self._bucket(table_id, pk)] += 1
        self._tgen[table_id] = self._tgen.get(table_id, 0) + 1

    def token(self, table_id: int, pk: bytes) -> tuple[int, int, int]:
        """What a miss remembers before it reads: (partition counter, table epoch,
        position)."""
        return (
            self._pgen[self._bucket(table_id, pk)],
            self._epoch.get(table_id, 0),
            self.position,
        )

    # --- items --------------------------------------------------------------------------
    def get_item(self, table_id: int, pk: bytes, sk: bytes) -> Any:
        """The cached item (a copy), None (known absent), or ``MISS``."""
        key = (table_id, pk, sk)
        e = self._entries.get(key)
        if e is None:
            self.misses += 1
            return _MISS
        if e.expires <= time.monotonic():
            self._remove(key)
            self.misses += 1
            return _MISS
        self._entries.move_to_end(key)
        self.hits += 1
        v = e.value
        return None if v is None else copy_item(v)

    def fill_item(
        self,
        table_id: int,
        pk: bytes,
        sk: bytes,
        item: Item | None,
        size: int,
        token: tuple[int, int, int],
    ) -> None:
        """Store what a miss read (``item`` is not shared with the caller), unless a
        change touched the partition (or the table was dropped) while it was reading."""
        if (
            not self.item_ttl
            or self._pgen[self._bucket(table_id, pk)] != token[0]
            or self._epoch.get(table_id, 0) != token[1]
        ):
            return
        cost = charge(item, size) + len(pk) + len(sk)
        self._insert(
            (table_id, pk, sk),
            _Entry(_ITEM, item, cost, time.monotonic() + self.item_ttl, token[2], 0, 0),
        )

    # --- query pages --------------------------------------------------------------------
    def page_token(self, table_id: int, pk: bytes | None) -> tuple[int, int]:
        """The counter a page read now depends on (its partition's, or the table's), and
        the table's epoch."""
        epoch = self._epoch.get(table_id, 0)
        if pk is None:
            return self._tgen.get(table_id, 0), epoch
        return self._pgen[self._bucket(table_id, pk)], epoch

    def get_page(self, key: tuple[Any, ...], pk: bytes | None) -> Page | None:
        """A copy of the cached page, or None."""
        e = self._entries.get(key)
        if e is None:
            self.misses += 1
            return None
        tid = key[0]
        current = self._tgen.get(tid, 0) if pk is None else self._pgen[e.dep]
        moved = e.gen != current or e.seq != self._epoch.get(tid, 0)
        if moved or e.expires <= time.monotonic():
            if moved:
                self.invalidations += 1
            self._remove(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return _copy_page(e.value)

    def fill_page(
        self, key: tuple[Any, ...], pk: bytes | None, page: Page, token: tuple[int, int]
    ) -> None:
        """Store a page read at ``token`` (:meth:`page_token`) if nothing moved since."""
        if not self.query_ttl:
            return
        tid = key[0]
        if pk is None:
            kind, dep, current = _TABLE, tid, self._tgen.get(tid, 0)
        else:
            dep = self._bucket(tid, pk)
            kind, current = _PARTITION, self._pgen[dep]
        gen, epoch = token
        if current != gen or self._epoch.get(tid, 0) != epoch:
            return
        size = _key_bytes(key) + sum(charge(i, item_size(i)) for i in page.items)
        size += ENTRY_OVERHEAD if page.last_key is None else charge(page.last_key, 0)
        stored = _copy_page(page)
        expires = time.monotonic() + self.query_ttl
        self._insert(key, _Entry(kind, stored, size, expires, epoch, dep, gen))

    # --- writes through this App ----------------------------------------------------------
    def before_write(self, ops: Sequence[WriteOp]) -> list[int]:
        """The partition counters of the written items, before the write."""
        pgen = self._pgen
        return [pgen[self._bucket(op.spec.table_id, op.k.pk)] for op in ops]

    def wrote(
        self, ops: Sequence[WriteOp], results: Sequence[WriteResult], tokens: Sequence[int]
    ) -> None:
        """A write committed: put the new items (write-through; a delete leaves a negative
        entry) and move the counters so dependent pages die.

        An item is only put if no other change touched its partition during the write
        (else it is dropped: the newer state is not known here)."""
        now = time.monotonic()
        for op, result, token in zip(ops, results, tokens, strict=True):
            if result.event is None or isinstance(op, (CheckOp, IndexOp, ArchiveOp)):
                continue
            spec = op.spec
            tid, pk, sk = spec.table_id, op.k.pk, op.k.sk
            bucket = self._bucket(tid, pk)
            seq = result.seq
            if seq is None:  # no change rows (memory:// only): nothing else moved it
                unchanged = self._pgen[bucket] == token
            else:
                # no newer change of the partition was applied or written through here
                unchanged = seq > self._floor and self._pseq[bucket] <= seq
                self._pseq[bucket] = max(self._pseq[bucket], seq)
                if len(self._own) >= _MAX_OWN:
                    self._own.clear()  # only costs the follower a second bump
                self._own.add(seq)
            self._bump(tid, pk)
            key = (tid, pk, sk)
            if not unchanged or not self.item_ttl or not self.active:
                if self._remove(key):
                    self.invalidations += 1
                continue
            if isinstance(op, DeleteOp):
                value: Item | None = None
                size = op.k.size
            else:
                assert isinstance(op, (PutOp, UpdateOp))
                new = op.item if isinstance(op, PutOp) else result.new
                assert new is not None
                value = copy_item(new)
                size = op.size if isinstance(op, PutOp) else item_size(new)
            cost = charge(value, size) + len(pk) + len(sk)
            if seq is None:
                seq = self.position
            else:
                old = self._entries.get(key)
                if old is not None and old.seq > seq:
                    continue  # a newer state is cached already
            self._insert(key, _Entry(_ITEM, value, cost, now + self.item_ttl, seq, 0, 0))

    def invalidate(self, ops: Sequence[WriteOp]) -> None:
        """Writes committed whose results are unknown here (a handler's effects): drop
        their items and move the counters."""
        for op in ops:
            if isinstance(op, (CheckOp, IndexOp, ArchiveOp)):
                continue
            tid, pk = op.spec.table_id, op.k.pk
            self._bump(tid, pk)
            if self._remove((tid, pk, op.k.sk)):
                self.invalidations += 1

    # --- the follower -------------------------------------------------------------------
    def apply(self, rows: Sequence[ChangeRow], specs: dict[int, TableSpec]) -> None:
        """Apply change rows read after :attr:`position` (in order)."""
        if not rows:
            return
        if rows[0].seq > self.position + 1:
            # rows were pruned before we read them: we cannot know what they touched
            self.gaps += 1
            self.clear()
            self._floor = rows[0].seq - 1
        now_ms = time.time_ns() // 1_000_000
        for row in rows:
            seq = row.seq
            self.position = seq
            tid = row.table_id
            own = seq in self._own
            if own:
                self._own.discard(seq)
            else:
                self._staleness.append(max(0, now_ms - row.created_ms))
            spec = specs.get(tid)
            if spec is None:
                # a table this process does not know (any more): nothing of it may stay
                self.drop_table(tid)
                continue
            try:
                keys = decode_record(row.record).keys
                pk, sk = spec.key.extract(keys)
            except (StreamkitError, KeyError, ValueError):  # pragma: no cover - defensive
                self.drop_table(tid)
                continue
            if not own:
                self._bump(tid, pk)
            bucket = self._bucket(tid, pk)
            self._pseq[bucket] = max(self._pseq[bucket], seq)
            key = (tid, pk, sk)
            e = self._entries.get(key)
            if e is not None and e.seq < seq and self._remove(key):
                self.invalidations += 1

    def restart_at(self, position: int) -> None:
        """Following starts (again) after ``position``: what came before is unknown."""
        self._floor = max(self._floor, position)

    def follower_failed(self) -> None:
        """The follower cannot read the changes: stop serving until it can again."""
        self.active = False
        self.clear()

    # --- statistics ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Hits, misses, evictions, bytes, entries, invalidations and staleness."""
        samples = sorted(self._staleness)
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "entries": len(self._entries),
            "invalidations": self.invalidations,
            "gaps": self.gaps,
            "bypassed": self.bypassed,
            "following": self.active,
            "position": self.position,
            "staleness_ms": {
                "p50": _percentile(samples, 0.50),
                "p99": _percentile(samples, 0.99),
                "samples": len(samples),
            },
        }

    @property
    def collector(self) -> Any:
        """A Prometheus collector of :meth:`stats` (register it on a registry)."""
        if self._collector is None:
            from streamkit.storage._cache_metrics import CacheCollector

            self._collector = CacheCollector(self)
        return self._collector

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _percentile(samples: list[int], q: float) -> float | None:
    if not samples:
        return None
    return float(samples[min(len(samples) - 1, int(q * len(samples)))])


def _copy_page(page: Page) -> Page:
    from streamkit.storage._table import Page

    return Page(
        items=[copy_item(i) for i in page.items],
        last_key=None if page.last_key is None else copy_item(page.last_key),
        end_key=None if page.end_key is None else copy_item(page.end_key),
        scanned_count=page.scanned_count,
        consumed=0.0,
        read_bytes=page.read_bytes,
    )


MISS: Final = _MISS


async def follow_changes(store: Store) -> None:
    """Apply every change row committed to ``store`` (by any process) to its cache.

    Woken by the engine's commit doorbell (this process's commits, the SQLite file
    watcher's and PostgreSQL's NOTIFY for others), and every half second regardless.
    The catalog is re-read every second: tables deleted, re-created or changed
    elsewhere are dropped. While the store cannot be read the cache serves nothing.
    """
    cache = store.cache
    assert cache is not None
    engine = store.engine
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def ring() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(wake.set)

    engine.add_commit_listener(ring)
    try:
        while True:
            try:
                if not cache.active:
                    await _begin(store, cache)
                await _follow(store, cache, wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                cache.follower_failed()
                await asyncio.sleep(_RETRY_S)
    finally:
        cache.active = False
        engine.remove_commit_listener(ring)


async def _begin(store: Store, cache: CacheEngine) -> None:
    """Start following from the newest change row, with an empty cache."""
    start = await store.engine.max_sequence()
    await _catalog(store, cache)
    cache.clear()
    cache.position = start
    cache.restart_at(start)
    cache.active = True


async def _follow(store: Store, cache: CacheEngine, wake: asyncio.Event) -> None:
    engine = store.engine
    next_catalog = time.monotonic() + _CATALOG_S
    while True:
        wake.clear()
        rows = await engine.changes(cache.position, _FOLLOW_BATCH)
        if rows:
            specs = {s.table_id: s for s in store.known_specs}
            if any(r.table_id not in specs for r in rows):
                specs = await _catalog(store, cache)
            cache.apply(rows, specs)
            if len(rows) == _FOLLOW_BATCH:
                continue
        if time.monotonic() >= next_catalog:
            await _catalog(store, cache)
            next_catalog = time.monotonic() + _CATALOG_S
        # not wait_for: on 3.11 it can swallow a cancellation that races its timeout
        timer = asyncio.get_running_loop().call_later(_POLL_S, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()


async def _catalog(store: Store, cache: CacheEngine) -> dict[int, TableSpec]:
    specs = list(await store.engine.list_tables())
    cache.catalog(specs)
    return {s.table_id: s for s in specs}
