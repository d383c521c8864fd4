"""``Table``: the async API of one table (put, get, update, delete, query, scan, batches)."""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import ValidationError
from streamkit.records._avro import decode_image, encode_image
from streamkit.records._values import (
    MAX_ITEM_BYTES,
    Item,
    item_size,
    normalize_item,
    normalize_value,
)
from streamkit.storage._cache import MISS, copy_item
from streamkit.storage._capacity import read_units
from streamkit.storage._expressions import (
    ExpressionContext,
    compile_composite_key_condition,
    compile_condition,
    compile_key_condition,
    compile_projection,
    compile_update,
)
from streamkit.storage._indexes import entry_bounds, esc, prefix_bounds
from streamkit.storage._keys import KeyAttribute, KeySchema, order_bytes
from streamkit.storage._writes import (
    DeleteOp,
    ItemKey,
    PutOp,
    UpdateOp,
    WriteJob,
    WriteOp,
    WriteResult,
    ttl_expiry,
)

if TYPE_CHECKING:
    from streamkit.storage._cache import CacheEngine
    from streamkit.storage._conditions import Condition
    from streamkit.storage._expressions import CompiledCondition, Projection
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("Page", "Table")

_PUT_RETURNS = frozenset({"NONE", "ALL_OLD"})
_UPDATE_RETURNS = frozenset({"NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"})
_PAGE_BYTES = 1024 * 1024  # DynamoDB stops a query or scan page at 1 MB read
_CHUNK = 1000

ConditionArg = "Condition | str | None"


@dataclass(slots=True)
class Page:
    """One page of a query or scan, as DynamoDB returns it.

    Attributes:
        items: the items that passed the filter (projected).
        last_key: pass as ``start_key=`` to continue; None when the range is exhausted.
        count: len(items).
        scanned_count: items read before the filter.
        consumed: read units consumed.
        read_bytes: the size of the items read (before the filter).
        end_key: the key of the last item read, even when the range ends there (DynamoDB
            answers it as ``LastEvaluatedKey`` when a ``Limit`` stopped the page).
    """

    items: list[Item] = field(default_factory=list)
    last_key: Item | None = None
    end_key: Item | None = None
    scanned_count: int = 0
    consumed: float = 0.0
    read_bytes: int = 0

    @property
    def count(self) -> int:
        """How many items passed the filter."""
        return len(self.items)


def check_limit(limit: object) -> None:
    """``limit``: None or a positive integer (ValidationError otherwise)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"limit must be a positive integer, got {limit!r}")


def _check_returns(returns: str, allowed: frozenset[str], call: str) -> None:
    if returns not in allowed:
        raise ValidationError(f"{call}: returns={returns!r} is not one of {sorted(allowed)}")


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))


class Table:
    """A handle to one table. Cheap to create; every call checks the table exists.

    Example:
        ```python
        users = app.table("Users")
        await users.put({"UserID": "1", "Name": "Ann"})
        item = await users.get({"UserID": "1"})
        ```
    """

    __slots__ = ("_store", "name")

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self.name = name

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    async def spec(self) -> TableSpec:
        """The table's settings."""
        return self._store.known(self.name) or await self._store.spec(self.name)

    async def describe(self) -> dict[str, Any]:
        """The table's settings as plain data."""
        return (await self.spec()).describe()

    async def _index_spec(self, spec: TableSpec, index: str | None) -> TableSpec:
        """``spec``, or the stored one when it does not know ``index`` as readable (another
        process may have added it, or finished its backfill, since this one looked)."""
        if index is None or any(ix.name == index and ix.status == "ACTIVE" for ix in spec.indexes):
            return spec
        await self._store.reload()
        return await self._store.spec(self.name)

    # --- building operations (shared with transactions) ---------------------------------
    def _put_op(
        self,
        spec: TableSpec,
        item: Mapping[str, Any],
        condition: Condition | str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        returns: str,
        old_on_failure: bool = False,
    ) -> PutOp:
        _check_returns(returns, _PUT_RETURNS, "put")
        norm = normalize_item(item)
        size = item_size(norm)
        if size > MAX_ITEM_BYTES:
            raise ValidationError(f"item size {size} bytes exceeds the 400 KB limit")
        coords = spec.key.extract(norm)  # the key attributes are there and typed
        k = ItemKey.of(spec, spec.key.key_of(norm), coords)
        cond = _compile_condition_only(condition, names, values)
        return PutOp(spec, k, norm, encode_image(norm), size, cond, returns, old_on_failure)

    def _key(self, spec: TableSpec, key: Mapping[str, Any]) -> ItemKey:
        norm, pk, sk = spec.key.parse_key(key)
        return ItemKey.of(spec, norm, (pk, sk))

    def _update_op(
        self,
        spec: TableSpec,
        key: Mapping[str, Any],
        *,
        expression: str | None,
        set: Mapping[str, Any] | None,
        remove: Iterable[str] | None,
        add: Mapping[str, Any] | None,
        delete: Mapping[str, Any] | None,
        condition: Condition | str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        returns: str,
        old_on_failure: bool = False,
    ) -> UpdateOp:
        _check_returns(returns, _UPDATE_RETURNS, "update")
        k = self._key(spec, key)
        ctx = ExpressionContext(names, values)
        upd = compile_update(ctx, expression, set=set, remove=remove, add=add, delete=delete)
        cond = compile_condition(condition, ctx)
        ctx.check_all_used()
        return UpdateOp(spec, k, upd, cond, returns, old_on_failure)

    def _delete_op(
        self,
        spec: TableSpec,
        key: Mapping[str, Any],
        condition: Condition | str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        returns: str,
        old_on_failure: bool = False,
    ) -> DeleteOp:
        _check_returns(returns, _PUT_RETURNS, "delete")
        k = self._key(spec, key)
        cond = _compile_condition_only(condition, names, values)
        return DeleteOp(spec, k, cond, returns, old_on_failure)

    async def _write_one(self, spec: TableSpec, op: WriteOp) -> Item | None:
        store = self._store
        store.admit(spec, write=1.0)
        cache = store.cache
        tokens = None if cache is None else cache.before_write((op,))
        (result,) = await store.write(WriteJob([op], origin=store.origin))
        if tokens is not None:
            assert cache is not None
            cache.wrote((op,), (result,), tokens)
        store.charge(spec, write=result.units, indexes=result.index_units)
        return result.item

    # --- single-item writes -----------------------------------------------------------
    async def put(
        self,
        item: Mapping[str, Any],
        *,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        returns: str = "NONE",
        return_old_on_condition_failure: bool = False,
    ) -> Item | None:
        """Create or replace an item.

        Args:
            item: the whole item; it must hold the key attributes.
            condition: must hold for the current item (``sk.attr(...)`` or an expression string).
            names: ``#name`` placeholders of an expression string.
            values: ``:value`` placeholders of an expression string.
            returns: "NONE" or "ALL_OLD" (the item it replaced).
            return_old_on_condition_failure: put the current item on ``ConditionFailed.item``.

        Raises:
            ValidationError: a bad item or expression.
            ConditionFailed: the condition was false; nothing was written.
            ThroughputExceeded: provisioned write capacity is used up.
        """
        spec = self._store.known(self.name) or await self._store.spec(self.name)
        op = self._put_op(
            spec, item, condition, names, values, returns, return_old_on_condition_failure
        )
        return await self._write_one(spec, op)

    async def update(
        self,
        key: Mapping[str, Any],
        *,
        set: Mapping[str, Any] | None = None,
        remove: Iterable[str] | None = None,
        add: Mapping[str, Any] | None = None,
        delete: Mapping[str, Any] | None = None,
        expression: str | None = None,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        returns: str = "NONE",
        return_old_on_condition_failure: bool = False,
    ) -> Item | None:
        """Update attributes of an item, creating it if it does not exist (as DynamoDB does).

        Either keyword form (``set=``, ``remove=``, ``add=``, ``delete=``, with literal
        attribute names) or an UpdateExpression string (``expression=``), not both.

        Args:
            returns: "NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD" or "UPDATED_NEW".
        """
        spec = self._store.known(self.name) or await self._store.spec(self.name)
        op = self._update_op(
            spec,
            key,
            expression=expression,
            set=set,
            remove=remove,
            add=add,
            delete=delete,
            condition=condition,
            names=names,
            values=values,
            returns=returns,
            old_on_failure=return_old_on_condition_failure,
        )
        return await self._write_one(spec, op)

    async def delete(
        self,
        key: Mapping[str, Any],
        *,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        returns: str = "NONE",
        return_old_on_condition_failure: bool = False,
    ) -> Item | None:
        """Delete an item (deleting an absent item is not an error and emits no record).

        Args:
            returns: "NONE" or "ALL_OLD" (the deleted item).
        """
        spec = self._store.known(self.name) or await self._store.spec(self.name)
        op = self._delete_op(
            spec, key, condition, names, values, returns, return_old_on_condition_failure
        )
        return await self._write_one(spec, op)

    # --- reads -----------------------------------------------------------------------
    async def get(
        self,
        key: Mapping[str, Any],
        *,
        consistent: bool = False,
        projection: str | Sequence[str] | None = None,
        names: Mapping[str, str] | None = None,
        hide_expired: bool = False,
    ) -> Item | None:
        """The item with this key, or None.

        Args:
            consistent: a strongly consistent read (costs a full read unit; every read
                here is in fact consistent).
            projection: attributes to return (a ProjectionExpression or a list of paths).
            hide_expired: treat items whose TTL has passed as absent, even before the
                sweeper deletes them.
        """
        store = self._store
        spec = store.known(self.name) or await store.spec(self.name)
        _, pk, sk = spec.key.parse_key(key)
        proj = _compile_projection_only(projection, names)
        tid = spec.table_id
        cache = store.cache
        token = None
        if cache is not None and not consistent and cache.item_ttl and cache.serving(spec):
            hit = cache.get_item(tid, pk, sk)  # on the event loop: no I/O, no thread hop
            if hit is not MISS:
                if hit is None or (hide_expired and _is_expired(spec, hit, time.time())):
                    return None
                return hit if proj is None else proj.apply(hit)
            token = cache.token(tid, pk)
        store.admit(spec, read=0.5)
        row = await store.engine.get(tid, pk, sk)
        if row is None:
            if token is not None:
                assert cache is not None
                cache.fill_item(tid, pk, sk, None, 0, token)
            store.charge(spec, read=read_units(0, consistent=consistent))
            return None
        item = decode_image(row[0])
        if token is not None:
            assert cache is not None
            cache.fill_item(tid, pk, sk, item, row[1], token)
            item = copy_item(item)
        store.charge(spec, read=read_units(row[1], consistent=consistent))
        if hide_expired and _is_expired(spec, item, time.time()):
            return None
        return item if proj is None else proj.apply(item)

    async def batch_get(
        self,
        keys: Sequence[Mapping[str, Any]],
        *,
        consistent: bool = False,
        projection: str | Sequence[str] | None = None,
        names: Mapping[str, str] | None = None,
        hide_expired: bool = False,
    ) -> list[Item]:
        """The items of up to 100 keys that exist, in the order of ``keys``."""
        if len(keys) > 100:
            raise ValidationError(f"batch_get takes at most 100 keys, got {len(keys)}")
        store = self._store
        spec = store.known(self.name) or await store.spec(self.name)
        coords = []
        seen = set()
        for key in keys:
            _, pk, sk = spec.key.parse_key(key)
            if (pk, sk) in seen:
                raise ValidationError("batch_get: the same key appears twice")
            seen.add((pk, sk))
            coords.append((pk, sk))
        proj = _compile_projection_only(projection, names)
        cache = store.cache
        if cache is not None and not consistent and cache.item_ttl and cache.serving(spec):
            items = await self._batch_get_cached(spec, coords, cache)
        else:
            store.admit(spec, read=0.5)
            found = await store.engine.get_many(spec.table_id, coords)
            items = [decode_image(data) for data, _ in found]
            units = sum(read_units(size, consistent=consistent) for _, size in found)
            store.charge(spec, read=units)
        if hide_expired:
            now = time.time()
            items = [i for i in items if not _is_expired(spec, i, now)]
        return items if proj is None else [proj.apply(i) for i in items]

    async def _batch_get_cached(
        self, spec: TableSpec, coords: list[tuple[bytes, bytes]], cache: CacheEngine
    ) -> list[Item]:
        """batch_get through the cache: hits from it, the misses in one storage read."""
        tid = spec.table_id
        got: dict[tuple[bytes, bytes], Item | None] = {}
        missing: list[tuple[bytes, bytes]] = []
        tokens = []
        for pk, sk in coords:
            hit = cache.get_item(tid, pk, sk)
            if hit is MISS:
                missing.append((pk, sk))
                tokens.append(cache.token(tid, pk))
            else:
                got[(pk, sk)] = hit
        if missing:
            store = self._store
            store.admit(spec, read=0.5)
            found = await store.engine.get_many(tid, missing)
            read: dict[tuple[bytes, bytes], tuple[Item, int]] = {}
            for data, size in found:
                item = decode_image(data)
                read[spec.key.extract(item)] = (item, size)
            for coord, token in zip(missing, tokens, strict=True):
                entry = read.get(coord)
                if entry is None:
                    cache.fill_item(tid, coord[0], coord[1], None, 0, token)
                    got[coord] = None
                else:
                    cache.fill_item(tid, coord[0], coord[1], entry[0], entry[1], token)
                    got[coord] = copy_item(entry[0])
            store.charge(spec, read=sum(read_units(size, consistent=False) for _, size in found))
        return [i for i in (got[c] for c in coords) if i is not None]

    async def batch_write(
        self,
        *,
        puts: Sequence[Mapping[str, Any]] = (),
        deletes: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Put and delete up to 25 items in one call (no conditions; each item once)."""
        if len(puts) + len(deletes) > 25:
            raise ValidationError(
                f"batch_write takes at most 25 puts and deletes, got {len(puts) + len(deletes)}"
            )
        if not puts and not deletes:
            raise ValidationError("batch_write needs at least one put or delete")
        store = self._store
        spec = store.known(self.name) or await store.spec(self.name)
        ops: list[WriteOp] = [self._put_op(spec, i, None, None, None, "NONE") for i in puts]
        ops.extend(self._delete_op(spec, k, None, None, None, "NONE") for k in deletes)
        if len({(o.k.pk, o.k.sk) for o in ops}) != len(ops):
            raise ValidationError("batch_write: the same key appears more than once")
        store.admit(spec, write=float(len(ops)))
        cache = store.cache
        tokens = None if cache is None else cache.before_write(ops)
        results = await store.write(WriteJob(ops, origin=store.origin))
        if tokens is not None:
            assert cache is not None
            cache.wrote(ops, results, tokens)
        store.charge(spec, write=sum(r.units for r in results), indexes=_index_sum(results, 1.0))

    # --- query and scan ---------------------------------------------------------------
    async def query_page(
        self,
        partition: Any = None,
        *,
        sort: Condition | None = None,
        key_condition: Condition | str | None = None,
        filter: Condition | str | None = None,
        projection: str | Sequence[str] | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        reverse: bool = False,
        limit: int | None = None,
        start_key: Mapping[str, Any] | None = None,
        consistent: bool = False,
        hide_expired: bool = False,
        index: str | None = None,
        select: str | None = None,
    ) -> Page:
        """One page of a query, with DynamoDB's paging: ``limit`` items read (before the
        filter) or 1 MB, whichever comes first; continue with ``start_key=page.last_key``.

        Give the partition key value (and optionally a ``sort=sk.key(...)`` condition), or
        a whole ``key_condition`` (builder or KeyConditionExpression string). With
        ``index=``, the key values and conditions are the index's, and ``page.last_key``
        holds the index's and the table's key attributes. ``select`` as DynamoDB's
        (``"ALL_ATTRIBUTES"`` on a local index with a narrower projection fetches each
        item from the table).
        """
        spec, plan, request = await self._plan_query(
            partition, sort, key_condition, filter, projection, names, values,
            consistent, hide_expired, index, select,
        )  # fmt: skip
        return await self._query_page(
            spec, plan, reverse, limit, start_key, consistent, hide_expired, request
        )

    async def _query_page(
        self,
        spec: TableSpec,
        plan: _QueryPlan,
        reverse: bool,
        limit: int | None,
        start_key: Mapping[str, Any] | None,
        consistent: bool,
        hide_expired: bool,
        request: str | None = None,
    ) -> Page:
        """One page; ``request`` (the query's arguments, as text) makes it cacheable."""
        check_limit(limit)
        store = self._store
        cache = store.cache
        ckey: tuple[Any, ...] | None = None
        dep: bytes | None = None
        gen = (0, 0)
        if request is not None and cache is not None and cache.query_ttl and cache.serving(spec):
            ckey = (spec.table_id, "q", request, reverse, limit, repr(start_key))
            # a table query depends on its partition; an index query on the whole table
            dep = plan.pk if plan.reader.index is None else None
            hit = cache.get_page(ckey, dep)
            if hit is not None:
                return hit
            gen = cache.page_token(spec.table_id, dep)
        low, low_inc, high, high_inc = plan.low, plan.low_inclusive, plan.high, plan.high_inclusive
        rd = plan.reader
        if start_key is not None:
            spk, ssk = rd.start(spec, start_key)
            if spk != plan.pk:
                raise ValidationError("start_key is not in the queried partition")
            if not reverse and (low is None or ssk >= low):
                low, low_inc = ssk, False
            elif reverse and (high is None or ssk <= high):
                high, high_inc = ssk, False
        store.admit(spec, read=0.5)
        pk = plan.pk
        want = limit if limit is not None else _CHUNK
        raw = await store.engine.range(
            rd.storage_id,
            pk,
            low=low,
            low_inclusive=low_inc,
            high=high,
            high_inclusive=high_inc,
            reverse=reverse,
            limit=want + 1,
        )
        datas = [d for _, d in raw]
        if rd.fetch:
            datas = await _fetch_items(store, spec, datas)
        page = _fill_page(spec, datas, want, plan.filter, plan.projection, hide_expired, rd)
        page.consumed = read_units(page.read_bytes, consistent=consistent)
        store.charge(spec, read=page.consumed)
        if ckey is not None:
            assert cache is not None
            cache.fill_page(ckey, dep, page, gen)
        return page

    async def _plan_query(
        self,
        partition: Any,
        sort: Condition | None,
        key_condition: Condition | str | None,
        filter: Condition | str | None,
        projection: str | Sequence[str] | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        consistent: bool,
        hide_expired: bool,
        index: str | None,
        select: str | None,
    ) -> tuple[TableSpec, _QueryPlan, str | None]:
        """The spec, the compiled plan and the cache's request key (None: not cacheable)
        of a query, shared by :meth:`query_page` and :meth:`query`."""
        spec = self._store.known(self.name) or await self._store.spec(self.name)
        plan = _QueryPlan.build(
            spec, partition, sort, key_condition, filter, projection, names, values,
            _reader(await self._index_spec(spec, index), index, consistent, select),
        )  # fmt: skip
        request = None
        if not (consistent or hide_expired):
            request = repr(
                (partition, sort, key_condition, filter, projection, names, values, index, select)
            )
        return spec, plan, request

    async def query(
        self,
        partition: Any = None,
        *,
        sort: Condition | None = None,
        key_condition: Condition | str | None = None,
        filter: Condition | str | None = None,
        projection: str | Sequence[str] | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        reverse: bool = False,
        limit: int | None = None,
        start_key: Mapping[str, Any] | None = None,
        consistent: bool = False,
        hide_expired: bool = False,
        index: str | None = None,
        select: str | None = None,
    ) -> AsyncIterator[Item]:
        """Iterate the items of one partition in sort-key order, across all pages.

        ``limit`` here caps how many items are *yielded*; use :meth:`query_page`
        for DynamoDB's per-page Limit. Bad arguments raise on the first iteration.

        Example:
            ```python
            async for order in orders.query("123", sort=sk.key("OrderDate").begins_with("2026-")):
                ...
            ```
        """
        check_limit(limit)
        spec, plan, request = await self._plan_query(
            partition, sort, key_condition, filter, projection, names, values,
            consistent, hide_expired, index, select,
        )  # fmt: skip
        left = limit
        cursor = start_key
        while True:
            page = await self._query_page(
                spec, plan, reverse, None, cursor, consistent, hide_expired, request
            )
            for item in page.items:
                yield item
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if page.last_key is None:
                return
            cursor = page.last_key

    async def scan_page(
        self,
        *,
        filter: Condition | str | None = None,
        projection: str | Sequence[str] | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        limit: int | None = None,
        start_key: Mapping[str, Any] | None = None,
        segment: int = 0,
        total_segments: int = 1,
        consistent: bool = False,
        hide_expired: bool = False,
        index: str | None = None,
        select: str | None = None,
    ) -> Page:
        """One page of a scan (DynamoDB paging, optional parallel segment); with
        ``index=``, of an index's entries in the index's key order."""
        store = self._store
        spec = store.known(self.name) or await store.spec(self.name)
        rd = _reader(await self._index_spec(spec, index), index, consistent, select)
        check_limit(limit)
        if not (isinstance(total_segments, int) and 1 <= total_segments <= 1_000_000):
            raise ValidationError("total_segments must be an integer from 1 to 1000000")
        if not (isinstance(segment, int) and 0 <= segment < total_segments):
            raise ValidationError(
                f"segment must be from 0 to {total_segments - 1}, got {segment!r}"
            )
        ctx = ExpressionContext(names, values)
        flt = compile_condition(filter, ctx, kind="FilterExpression")
        proj = compile_projection(projection, ctx)
        ctx.check_all_used()
        rd.check_attributes(flt, proj)
        after = None
        if start_key is not None:
            after = rd.start(spec, start_key)
            if total_segments > 1 and zlib.crc32(after[0]) % total_segments != segment:
                raise ValidationError(  # DynamoDB's words
                    "The provided starting key is invalid: Invalid ExclusiveStartKey. Please "
                    "use ExclusiveStartKey with correct Segment. TotalSegments: "
                    f"{total_segments} Segment: {segment}"
                )
        cache = store.cache
        ckey: tuple[Any, ...] | None = None
        gen = (0, 0)
        if (
            not (consistent or hide_expired)
            and cache is not None
            and cache.query_ttl
            and cache.serving(spec)
        ):
            request = repr((filter, projection, names, values, index, select))
            ckey = (spec.table_id, "s", request, limit, repr(start_key), segment, total_segments)
            hit = cache.get_page(ckey, None)
            if hit is not None:
                return hit
            gen = cache.page_token(spec.table_id, None)
        store.admit(spec, read=0.5)
        want = limit if limit is not None else _CHUNK
        raw = await store.engine.scan(
            rd.storage_id,
            after=after,
            limit=want + 1,
            segment=segment,
            total_segments=total_segments,
        )
        datas = [d for _, _, d in raw]
        if rd.fetch:
            datas = await _fetch_items(store, spec, datas)
        page = _fill_page(spec, datas, want, flt, proj, hide_expired, rd)
        page.consumed = read_units(page.read_bytes, consistent=consistent)
        store.charge(spec, read=page.consumed)
        if ckey is not None:
            assert cache is not None
            cache.fill_page(ckey, None, page, gen)
        return page

    async def scan(
        self,
        *,
        filter: Condition | str | None = None,
        projection: str | Sequence[str] | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        limit: int | None = None,
        segment: int = 0,
        total_segments: int = 1,
        consistent: bool = False,
        hide_expired: bool = False,
        index: str | None = None,
        select: str | None = None,
    ) -> AsyncIterator[Item]:
        """Iterate every item (of one segment) that passes the filter; ``limit`` caps the yield."""
        left = limit
        cursor: Mapping[str, Any] | None = None
        while True:
            page = await self.scan_page(
                filter=filter,
                projection=projection,
                names=names,
                values=values,
                start_key=cursor,
                segment=segment,
                total_segments=total_segments,
                consistent=consistent,
                hide_expired=hide_expired,
                index=index,
                select=select,
            )
            for item in page.items:
                yield item
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if page.last_key is None:
                return
            cursor = page.last_key

    async def count(self) -> int:
        """How many items the table holds (a full scan)."""
        n = 0
        cursor: Mapping[str, Any] | None = None
        while True:
            page = await self.scan_page(start_key=cursor, projection=None)
            n += page.count
            if page.last_key is None:
                return n
            cursor = page.last_key


def _compile_condition_only(
    condition: Condition | str | None,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> CompiledCondition | None:
    if condition is None and not names and not values:
        return None
    ctx = ExpressionContext(names, values)
    cond = compile_condition(condition, ctx)
    ctx.check_all_used()
    return cond


def _compile_projection_only(
    projection: str | Sequence[str] | None, names: Mapping[str, str] | None
) -> Projection | None:
    if projection is None and not names:
        return None
    ctx = ExpressionContext(names, None)
    proj = compile_projection(projection, ctx)
    ctx.check_all_used()
    return proj


def _is_expired(spec: TableSpec, item: Item, now: float) -> bool:
    exp = ttl_expiry(spec, item)
    return exp is not None and exp <= now


@dataclass(slots=True)
class _QueryPlan:
    pk: bytes
    low: bytes | None
    low_inclusive: bool
    high: bytes | None
    high_inclusive: bool
    filter: CompiledCondition | None
    projection: Projection | None
    reader: _Reader

    @classmethod
    def build(
        cls,
        spec: TableSpec,
        partition: Any,
        sort: Condition | None,
        key_condition: Condition | str | None,
        filter: Condition | str | None,
        projection: str | Sequence[str] | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        reader: _Reader,
    ) -> _QueryPlan:
        from streamkit.storage._conditions import key as key_builder

        schema = reader.key
        ix = reader.index
        composite = ix is not None and ix.composite
        pname = schema.partition.name
        sname = None if schema.sort is None else schema.sort.name
        ctx = ExpressionContext(names, values)
        if key_condition is not None:
            if partition is not None or sort is not None:
                raise ValidationError(
                    "query: give either key_condition= or a partition value, not both"
                )
            cond: Condition | str = key_condition
        else:
            if partition is None:
                raise ValidationError("query needs the partition key value (or key_condition=)")
            if composite:
                assert ix is not None
                cond = _composite_partition(ix, partition)
            else:
                cond = key_builder(pname).eq(partition)
            if sort is not None:
                cond = cond & sort
        if composite:
            assert ix is not None
            return cls._composite(spec, ix, cond, filter, projection, ctx, reader)
        kc = compile_key_condition(cond, ctx, partition_key=pname, sort_key=sname)
        flt = _query_filter(filter, ctx, schema.names)
        proj = compile_projection(projection, ctx)
        ctx.check_all_used()
        reader.check_attributes(flt, proj)
        pv = schema.check_value(schema.partition, kc.partition_value)
        pk = order_bytes(pv)
        low, low_inc, high, high_inc = _sort_range(schema, schema.sort, kc.sort_op, kc.sort_values)
        if reader.index is not None:
            if reader.index.key.sort is None:
                low = high = None
                low_inc = high_inc = True
            else:
                low, low_inc, high, high_inc = entry_bounds(low, low_inc, high, high_inc)
        return cls(pk, low, low_inc, high, high_inc, flt, proj, reader)

    @classmethod
    def _composite(
        cls,
        spec: TableSpec,
        ix: IndexSpec,
        cond: Condition | str,
        filter: Condition | str | None,
        projection: str | Sequence[str] | None,
        ctx: ExpressionContext,
        reader: _Reader,
    ) -> _QueryPlan:
        """The plan of a query on an index with a multi-attribute key: the partition
        bytes of every partition key value, then a byte range under the escaped bytes of
        the sort key attributes compared with ``=``."""
        hashes, ranges = ix.hash_attrs, ix.range_attrs
        kc = compile_composite_key_condition(
            cond, ctx, hash_keys=[a.name for a in hashes], range_keys=[a.name for a in ranges]
        )
        flt = _query_filter(filter, ctx, ix.key_names)
        proj = compile_projection(projection, ctx)
        ctx.check_all_used()
        reader.check_attributes(flt, proj)
        schema = reader.key
        pk = ix.hash_bytes(
            [
                order_bytes(schema.check_value(a, v))
                for a, v in zip(hashes, kc.hash_values, strict=True)
            ]
        )
        prefix = b"".join(
            esc(order_bytes(schema.check_value(a, v)))
            for a, v in zip(ranges, kc.equal, strict=False)
        )
        bounds: tuple[bytes | None, bool, bytes | None, bool] = (None, True, None, True)
        if kc.sort_op is not None:
            attr = ranges[len(kc.equal)]
            bounds = entry_bounds(*_sort_range(schema, attr, kc.sort_op, kc.sort_values))
        return cls(pk, *prefix_bounds(prefix, bounds), flt, proj, reader)


def _query_filter(
    filter: Condition | str | None, ctx: ExpressionContext, key_names: Sequence[str]
) -> CompiledCondition | None:
    """A query's filter, which may not name a key attribute of what it reads."""
    flt = compile_condition(filter, ctx, kind="FilterExpression")
    if flt is not None:
        keys_used = [n for n in key_names if n in flt.attributes]
        if keys_used:  # DynamoDB's words
            raise ValidationError(
                "Filter Expression can only contain non-primary key attributes: "
                f"Primary key attribute: {keys_used[0]}"
            )
    return flt


def _composite_partition(ix: IndexSpec, partition: Any) -> Condition:
    """``query(partition, index=)`` of an index whose partition key has several
    attributes: ``partition`` holds their values, in key order."""
    from streamkit.storage._conditions import key as key_builder

    names = [a.name for a in ix.hash_attrs]
    if not isinstance(partition, (tuple, list)) or len(partition) != len(names):
        raise ValidationError(
            f"index {ix.name!r} has a partition key of {len(names)} attributes "
            f"({', '.join(names)}): give their values as a tuple, in that order"
        )
    cond: Condition = key_builder(names[0]).eq(partition[0])
    for n, v in zip(names[1:], partition[1:], strict=True):
        cond = cond & key_builder(n).eq(v)
    return cond


def _sort_range(
    schema: KeySchema, attr: KeyAttribute | None, op: str | None, values: Sequence[Any]
) -> tuple[bytes | None, bool, bytes | None, bool]:
    """The range of order bytes a sort key condition reads: (low, inclusive, high,
    inclusive); None bounds are open."""
    low = high = None
    low_inc = high_inc = True
    if op is None:
        return low, low_inc, high, high_inc
    assert attr is not None
    vals = [order_bytes(schema.check_value(attr, v)) for v in values]
    if op == "=":
        low = high = vals[0]
    elif op == "<":
        high, high_inc = vals[0], False
    elif op == "<=":
        high = vals[0]
    elif op == ">":
        low, low_inc = vals[0], False
    elif op == ">=":
        low = vals[0]
    elif op == "between":
        low, high = vals[0], vals[1]
        if low > high:
            raise ValidationError(
                "BETWEEN bounds are reversed: the first must not be greater than the second"
            )
    elif op == "begins_with":
        if attr.type == "N":
            raise ValidationError("begins_with is not allowed on a number sort key")
        low = vals[0]
        high, high_inc = _successor(vals[0]), False
    else:  # pragma: no cover - the compiler only returns the ops above
        raise ValidationError(f"unsupported sort key operator {op!r}")
    return low, low_inc, high, high_inc


_BAD_START = (
    "The provided starting key is invalid: The provided key element does not match the schema"
)


def _fill_page(
    spec: TableSpec,
    datas: list[bytes],
    want: int,
    flt: CompiledCondition | None,
    proj: Projection | None,
    hide_expired: bool,
    reader: _Reader | None = None,
) -> Page:
    """Decode, filter and project up to ``want`` rows (or 1 MB); ``datas`` may hold one extra
    row, whose presence says the range continues."""
    page = Page()
    now = time.time() if hide_expired else 0.0
    last: Item | None = None
    n = min(len(datas), want)
    for i in range(n):
        item = decode_image(datas[i])
        page.read_bytes += item_size(item)
        page.scanned_count += 1
        last = item
        if not (hide_expired and _is_expired(spec, item, now)) and (
            flt is None or flt.evaluate(item)
        ):
            page.items.append(item if proj is None else proj.apply(item))
        if page.read_bytes >= _PAGE_BYTES:
            n = i + 1
            break
    if last is not None:
        page.end_key = spec.key.key_of(last) if reader is None else reader.last_key(spec, last)
        if len(datas) > n:
            page.last_key = page.end_key
    return page


def _index_sum(results: Iterable[WriteResult], factor: float) -> dict[str, float] | None:
    """The write units per index of several results (times ``factor``)."""
    out: dict[str, float] = {}
    for r in results:
        for name, units in (r.index_units or {}).items():
            out[name] = out.get(name, 0.0) + factor * units
    return out or None


_SELECTS = frozenset({"ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"})


@dataclass(slots=True)
class _Reader:
    """Where a query or scan reads: the table itself, or one of its indexes."""

    key: KeySchema
    storage_id: int
    index: IndexSpec | None = None
    fetch: bool = False  # a local index read that needs attributes it does not hold
    attrs: frozenset[str] = frozenset()  # what an entry holds (empty: everything)

    def check_attributes(self, flt: CompiledCondition | None, proj: Projection | None) -> None:
        """What an index read may filter on and return (:meth:`IndexSpec.check_read`): a
        local index fetches from the table what it returns but does not hold."""
        if self.index is not None and self.attrs:
            filtered = frozenset() if flt is None else frozenset(flt.attributes)
            returned = frozenset() if proj is None else proj.attributes
            if self.index.check_read(self.attrs, filtered, returned):
                self.fetch = True

    def start(self, spec: TableSpec, start_key: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """The (partition, sort) bytes of a paging key."""
        if self.index is None:
            try:  # DynamoDB's words for any key that is not the schema's
                return spec.key.extract(spec.key.normalize_key(start_key))
            except ValidationError:
                raise ValidationError(_BAD_START) from None
        if not isinstance(start_key, Mapping):
            raise ValidationError("start_key must be a mapping")
        wanted = set(spec.key.names) | set(self.index.key_names)
        norm = {str(k): normalize_value(v, str(k)) for k, v in start_key.items()}
        if set(norm) != wanted:
            raise ValidationError(
                "The provided starting key is invalid: it must hold the table's and the "
                f"index's key attributes {sorted(wanted)}"
            )
        return self.index.entry_of_key(norm, spec.key)

    def last_key(self, spec: TableSpec, item: Item) -> Item:
        """``LastEvaluatedKey`` of a page that ended at ``item`` (as read, unprojected)."""
        key = spec.key.key_of(item)
        if self.index is not None:
            for n in self.index.key_names:
                key[n] = item[n]
        return key


def _reader(spec: TableSpec, index: str | None, consistent: bool, select: str | None) -> _Reader:
    if select is not None and select not in _SELECTS:
        raise ValidationError(f"Invalid Select value: {select}")
    if index is None:
        if select == "ALL_PROJECTED_ATTRIBUTES":
            raise ValidationError(
                "One or more parameter values were invalid: Select type "
                "ALL_PROJECTED_ATTRIBUTES is supported only for index queries"
            )
        return _Reader(spec.key, spec.table_id)
    ix = spec.index(index)
    if ix.kind == "GLOBAL":
        if consistent:
            raise ValidationError("Consistent reads are not supported on global secondary indexes")
        if ix.status != "ACTIVE":
            raise ValidationError(f"Cannot read from backfilling global secondary index: {ix.name}")
    attrs = ix.attribute_names(spec.key)
    rd = _Reader(ix.key, ix.storage_id(spec.table_id), ix, False, attrs)
    if select == "ALL_ATTRIBUTES" and attrs:
        if ix.kind == "GLOBAL":
            raise ValidationError(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not "
                f"supported for global secondary index {ix.name} because its projection type "
                "is not ALL"
            )
        rd.fetch = True
    return rd


async def _fetch_items(store: Store, spec: TableSpec, datas: list[bytes]) -> list[bytes]:
    """The table's current image of each index entry's item (a local index read of
    attributes it does not project); items deleted since are left out."""
    coords = [spec.key.extract(decode_image(d)) for d in datas]
    found = await store.engine.get_many(spec.table_id, coords)
    return [d for d, _ in found]
