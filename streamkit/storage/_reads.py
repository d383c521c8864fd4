"""How a query or scan reads: its plan (key condition -> byte range), where it reads
(the table or one of its indexes), and how a page of rows becomes a :class:`Page`.

:class:`~streamkit.storage._table.Table` builds a :class:`QueryPlan` (or a reader for a
scan) and runs it against the engine; everything here is pure planning and decoding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import ValidationError
from streamkit.records._avro import decode_image
from streamkit.records._values import Item, item_size, normalize_value
from streamkit.storage._expressions import (
    ExpressionContext,
    compile_composite_key_condition,
    compile_condition,
    compile_key_condition,
    compile_projection,
)
from streamkit.storage._indexes import entry_bounds, esc, prefix_bounds
from streamkit.storage._keys import KeyAttribute, KeySchema, order_bytes
from streamkit.storage._writes import ttl_expiry

if TYPE_CHECKING:
    from streamkit.storage._conditions import Condition
    from streamkit.storage._expressions import CompiledCondition, Projection
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = (
    "Page",
    "QueryPlan",
    "Reader",
    "fetch_items",
    "fill_page",
    "is_expired",
    "partition_condition",
    "reader_for",
)

_PAGE_BYTES = 1024 * 1024  # DynamoDB stops a query or scan page at 1 MB read


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


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))


def is_expired(spec: TableSpec, item: Item, now: float) -> bool:
    """Whether the item's TTL attribute says it expired by ``now`` (the sweeper may not
    have deleted it yet)."""
    exp = ttl_expiry(spec, item)
    return exp is not None and exp <= now


@dataclass(slots=True)
class QueryPlan:
    pk: bytes
    low: bytes | None
    low_inclusive: bool
    high: bytes | None
    high_inclusive: bool
    filter: CompiledCondition | None
    projection: Projection | None
    reader: Reader

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
        reader: Reader,
    ) -> QueryPlan:
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
                cond = partition_condition(ix, partition)
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
        reader: Reader,
    ) -> QueryPlan:
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


def partition_condition(ix: IndexSpec, partition: Any) -> Condition:
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


def fill_page(
    spec: TableSpec,
    datas: list[bytes],
    want: int,
    flt: CompiledCondition | None,
    proj: Projection | None,
    hide_expired: bool,
    reader: Reader | None = None,
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
        if not (hide_expired and is_expired(spec, item, now)) and (
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


_SELECTS = frozenset({"ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"})


@dataclass(slots=True)
class Reader:
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


def reader_for(spec: TableSpec, index: str | None, consistent: bool, select: str | None) -> Reader:
    if select is not None and select not in _SELECTS:
        raise ValidationError(f"Invalid Select value: {select}")
    if index is None:
        if select == "ALL_PROJECTED_ATTRIBUTES":
            raise ValidationError(
                "One or more parameter values were invalid: Select type "
                "ALL_PROJECTED_ATTRIBUTES is supported only for index queries"
            )
        return Reader(spec.key, spec.table_id)
    ix = spec.index(index)
    if ix.kind == "GLOBAL":
        if consistent:
            raise ValidationError("Consistent reads are not supported on global secondary indexes")
        if ix.status != "ACTIVE":
            raise ValidationError(f"Cannot read from backfilling global secondary index: {ix.name}")
    attrs = ix.attribute_names(spec.key)
    rd = Reader(ix.key, ix.storage_id(spec.table_id), ix, False, attrs)
    if select == "ALL_ATTRIBUTES" and attrs:
        if ix.kind == "GLOBAL":
            raise ValidationError(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not "
                f"supported for global secondary index {ix.name} because its projection type "
                "is not ALL"
            )
        rd.fetch = True
    return rd


async def fetch_items(store: Store, spec: TableSpec, datas: list[bytes]) -> list[bytes]:
    """The table's current image of each index entry's item (a local index read of
    attributes it does not project); items deleted since are left out."""
    coords = [spec.key.extract(decode_image(d)) for d in datas]
    found = await store.engine.get_many(spec.table_id, coords)
    return [d for d, _ in found]
