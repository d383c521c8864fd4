"""``Table``: the async API of one table (put, get, update, delete, query, scan, batches)."""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import ValidationError
from streamkit.records._avro import decode_image, encode_image
from streamkit.records._values import (
    MAX_ITEM_BYTES,
    Item,
    item_size,
    normalize_item,
)
from streamkit.storage._cache import MISS, copy_item
from streamkit.storage._capacity import read_units
from streamkit.storage._expressions import (
    ExpressionContext,
    compile_condition,
    compile_projection,
    compile_update,
)
from streamkit.storage._reads import (
    Page,
    QueryPlan,
    fetch_items,
    fill_page,
    is_expired,
    reader_for,
)
from streamkit.storage._write_ops import (
    DeleteOp,
    ItemKey,
    PutOp,
    UpdateOp,
    WriteJob,
    WriteOp,
    WriteResult,
)

if TYPE_CHECKING:
    from streamkit.storage._cache import CacheEngine
    from streamkit.storage._conditions import Condition
    from streamkit.storage._expressions import CompiledCondition, Projection
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("Page", "Table")

_PUT_RETURNS = frozenset({"NONE", "ALL_OLD"})
_UPDATE_RETURNS = frozenset({"NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"})
_CHUNK = 1000

ConditionArg = "Condition | str | None"


def check_limit(limit: object) -> None:
    """``limit``: None or a positive integer (ValidationError otherwise)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"limit must be a positive integer, got {limit!r}")


def _check_returns(returns: str, allowed: frozenset[str], call: str) -> None:
    if returns not in allowed:
        raise ValidationError(f"{call}: returns={returns!r} is not one of {sorted(allowed)}")


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
                if hit is None or (hide_expired and is_expired(spec, hit, time.time())):
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
        if hide_expired and is_expired(spec, item, time.time()):
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
            items = [i for i in items if not is_expired(spec, i, now)]
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
        plan: QueryPlan,
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
            datas = await fetch_items(store, spec, datas)
        page = fill_page(spec, datas, want, plan.filter, plan.projection, hide_expired, rd)
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
    ) -> tuple[TableSpec, QueryPlan, str | None]:
        """The spec, the compiled plan and the cache's request key (None: not cacheable)
        of a query, shared by :meth:`query_page` and :meth:`query`."""
        spec = self._store.known(self.name) or await self._store.spec(self.name)
        plan = QueryPlan.build(
            spec, partition, sort, key_condition, filter, projection, names, values,
            reader_for(await self._index_spec(spec, index), index, consistent, select),
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
        rd = reader_for(await self._index_spec(spec, index), index, consistent, select)
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
            datas = await fetch_items(store, spec, datas)
        page = fill_page(spec, datas, want, flt, proj, hide_expired, rd)
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


def _index_sum(results: Iterable[WriteResult], factor: float) -> dict[str, float] | None:
    """The write units per index of several results (times ``factor``)."""
    out: dict[str, float] = {}
    for r in results:
        for name, units in (r.index_units or {}).items():
            out[name] = out.get(name, 0.0) + factor * units
    return out or None
