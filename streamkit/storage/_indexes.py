"""Secondary indexes: their definitions, and how an item becomes an index entry.

An index is stored like a table, in the engine's item rows, under a storage id of
its own (negative, derived from the table id and the index's slot, so it can never
be a table's id). An entry's key is:

* partition bytes: the order bytes of the item's index partition key value (of a
  multi-attribute partition key: ``esc`` of each attribute's order bytes, in key order);
* sort bytes: ``esc(index sort bytes)`` (when the index has a sort key; of a
  multi-attribute sort key, ``esc`` of each attribute's in key order), then
  ``esc(table partition bytes)``, then the table sort bytes, where ``esc`` doubles
  every zero byte as ``00 FF`` and ends with ``00 01``. The escaping keeps entries in
  index-sort-key order and makes every entry unique (index keys need not be), and a
  bound on the index sort key becomes a byte bound on entries (:func:`entry_bounds`).

An entry's image is the item projected (ALL, KEYS_ONLY or INCLUDE: the table's and
the index's key attributes always). Entries are written by the same write jobs as
their items (:mod:`streamkit.storage._writes`), in the same transaction, and produce
no change records: the index is exactly the table projected, at every commit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from streamkit.exceptions import ValidationError
from streamkit.records._avro import encode_image
from streamkit.records._values import Item, item_size
from streamkit.storage._capacity import Capacity, Provisioned
from streamkit.storage._keys import KeyAttribute, KeySchema, order_bytes

__all__ = (
    "MAX_GLOBAL_INDEXES",
    "MAX_KEY_ATTRIBUTES",
    "MAX_LOCAL_INDEXES",
    "GlobalIndex",
    "IndexSpec",
    "LocalIndex",
    "entry_bounds",
    "entry_sort_bytes",
    "esc",
)

MAX_GLOBAL_INDEXES = 20
MAX_LOCAL_INDEXES = 5
MAX_KEY_ATTRIBUTES = 4  # of a global index's partition key, and of its sort key (DynamoDB)
# storage ids per table: slots 1..1023, never reused (a process that has not yet seen an
# index dropped may still write an entry under its slot; a new index must not see it)
_SLOTS = 1024
_MAX_PROJECTED = 100  # DynamoDB: at most 100 projected (INCLUDE) attributes over all indexes
_INDEX_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_PY_TYPE: dict[str, type] = {"S": str, "N": Decimal, "B": bytes}

Projection = Literal["ALL", "KEYS_ONLY", "INCLUDE"]
KeyGiven = str | tuple[str, str] | list[str | tuple[str, str]]


def _key_attrs(given: KeyGiven, role: str) -> tuple[KeyAttribute, ...]:
    """A key as given (one attribute, or a list of 1-4) as its attributes in order."""
    if not isinstance(given, list):
        return (KeyAttribute.parse(given, role),)
    if not 1 <= len(given) <= MAX_KEY_ATTRIBUTES:
        raise ValidationError(
            f"{role}: a multi-attribute key holds 1 to {MAX_KEY_ATTRIBUTES} attributes, "
            f"got {len(given)}"
        )
    return tuple(KeyAttribute.parse(g, role) for g in given)


def esc(b: bytes) -> bytes:
    """Self-delimiting, order-preserving bytes of one key component."""
    return b.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def _esc_open(b: bytes) -> bytes:
    return b.replace(b"\x00", b"\x00\xff")


def entry_sort_bytes(index_sort: bytes | None, table_pk: bytes, table_sk: bytes) -> bytes:
    """The sort bytes of an index entry (``index_sort``: already escaped, or None)."""
    head = b"" if index_sort is None else index_sort
    return head + esc(table_pk) + table_sk


def prefix_bounds(
    prefix: bytes, bounds: tuple[bytes | None, bool, bytes | None, bool]
) -> tuple[bytes | None, bool, bytes | None, bool]:
    """Entry bounds (:func:`entry_bounds`) under a prefix of whole escaped components
    (the equal leading attributes of a multi-attribute sort key)."""
    if not prefix:
        return bounds
    lo, lo_inc, hi, hi_inc = bounds
    # every entry under the prefix sorts below the prefix with its final 00 01 made 00 02
    return (
        prefix if lo is None else prefix + lo,
        True if lo is None else lo_inc,
        prefix[:-1] + b"\x02" if hi is None else prefix + hi,
        False if hi is None else hi_inc,
    )


def entry_bounds(
    low: bytes | None, low_inclusive: bool, high: bytes | None, high_inclusive: bool
) -> tuple[bytes | None, bool, bytes | None, bool]:
    """Bounds on an index's sort key value (order bytes) as bounds on entry sort bytes.

    Entries whose index sort value equals ``v`` all start with ``esc(v)`` and sort
    between ``_esc_open(v)`` (inclusive) and ``_esc_open(v) + 00 02`` (exclusive).
    """
    lo: bytes | None = None
    lo_inc = True
    hi: bytes | None = None
    hi_inc = False
    if low is not None:
        lo = _esc_open(low) if low_inclusive else _esc_open(low) + b"\x00\x02"
    if high is not None:
        hi = _esc_open(high) + b"\x00\x02" if high_inclusive else _esc_open(high)
    return lo, lo_inc, hi, hi_inc


def _check_index_name(name: object) -> str:
    if not isinstance(name, str) or not _INDEX_NAME.match(name):
        raise ValidationError(
            f"index name {name!r} is invalid: use 3 to 255 characters of A-Z, a-z, 0-9, "
            "'_', '-' and '.'"
        )
    return name


def _projection(value: object) -> tuple[Projection, tuple[str, ...]]:
    if value in ("ALL", "KEYS_ONLY"):
        return value, ()
    if isinstance(value, str):
        raise ValidationError(
            f"projection must be 'ALL', 'KEYS_ONLY' or a list of attribute names, got {value!r}"
        )
    if not isinstance(value, Sequence) or not value:
        raise ValidationError(
            "projection must be 'ALL', 'KEYS_ONLY' or a non-empty list of attribute names"
        )
    names: list[str] = []
    for n in value:
        if not isinstance(n, str) or not n or len(n.encode()) > 255:
            raise ValidationError(f"projected attribute names must be 1-255 bytes, got {n!r}")
        if n in names:
            raise ValidationError(f"projected attribute {n!r} is listed twice")
        names.append(n)
    return "INCLUDE", tuple(names)


@dataclass(frozen=True, slots=True)
class GlobalIndex:
    """A global secondary index: any partition key (and optional sort key) of the items.

    Example:
        ```python
        sk.GlobalIndex("ByStatus", partition_key="Status", sort_key=("Total", "N"),
                       projection="ALL")        # or "KEYS_ONLY", or ["Item", "Qty"]
        ```

    A key of several attributes (DynamoDB's multi-attribute keys: up to four each) is a
    list: ``partition_key=["Tenant", ("Region", "S")], sort_key=[("Year", "N"), "Id"]``.
    A query then gives every partition key attribute with ``=``, and sort key attributes
    left to right, each ``=`` but the last.

    Args:
        name: 3-255 characters of ``A-Z a-z 0-9 _ - .``, unique in the table.
        partition_key: a name (type S) or ``(name, "S"|"N"|"B")``, or a list of 1-4 such.
        sort_key: optional, the same form.
        projection: ``"ALL"``, ``"KEYS_ONLY"`` or a list of attribute names (INCLUDE).
        capacity: ``sk.Provisioned(read=, write=)`` for a provisioned index of a
            provisioned table (None: the table's mode; on-demand is never throttled).
    """

    name: str
    partition_key: KeyGiven
    sort_key: KeyGiven | None = None
    projection: str | Sequence[str] = "ALL"
    capacity: Capacity | None = None


@dataclass(frozen=True, slots=True)
class LocalIndex:
    """A local secondary index: the table's partition key with another sort key.

    Only at table creation (as DynamoDB). Read consistently, like the table.
    """

    name: str
    sort_key: str | tuple[str, str]
    projection: str | Sequence[str] = "ALL"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """An index as stored in the catalog.

    Attributes:
        status: ``"CREATING"`` while a new global index is being backfilled (written
            by every write already, not yet readable), then ``"ACTIVE"``.
        slot: 1-1023, never reused within the table: where its entries are stored.
    """

    name: str
    kind: Literal["GLOBAL", "LOCAL"]
    key: KeySchema
    projection: Projection = "ALL"
    include: tuple[str, ...] = ()
    status: str = "ACTIVE"
    slot: int = 1
    capacity: Provisioned | None = None
    # a multi-attribute key's attributes after the first (``key`` holds the first of each)
    more_hash: tuple[KeyAttribute, ...] = ()
    more_range: tuple[KeyAttribute, ...] = ()

    @property
    def hash_attrs(self) -> tuple[KeyAttribute, ...]:
        """The partition key's attributes, in key order."""
        return (self.key.partition, *self.more_hash)

    @property
    def range_attrs(self) -> tuple[KeyAttribute, ...]:
        """The sort key's attributes, in key order (none without a sort key)."""
        return () if self.key.sort is None else (self.key.sort, *self.more_range)

    @property
    def key_names(self) -> tuple[str, ...]:
        """Every key attribute's name: the partition key's, then the sort key's."""
        return tuple(a.name for a in (*self.hash_attrs, *self.range_attrs))

    @property
    def composite(self) -> bool:
        """Whether a key of the index has more than one attribute."""
        return bool(self.more_hash or self.more_range)

    # --- building -----------------------------------------------------------------------
    @classmethod
    def build(
        cls, index: GlobalIndex | LocalIndex, table_key: KeySchema, slot: int, status: str
    ) -> IndexSpec:
        """Check a user's index definition against the table's key."""
        if isinstance(index, GlobalIndex):
            name = _check_index_name(index.name)
            hashes = _key_attrs(index.partition_key, "index partition_key")
            ranges = () if index.sort_key is None else _key_attrs(index.sort_key, "index sort_key")
            part, sort = hashes[0], (ranges[0] if ranges else None)
            more_hash, more_range = hashes[1:], ranges[1:]
            cap = index.capacity
            if cap is not None and not isinstance(cap, Provisioned):
                cap = None
            kind: Literal["GLOBAL", "LOCAL"] = "GLOBAL"
        elif isinstance(index, LocalIndex):
            name = _check_index_name(index.name)
            part = table_key.partition
            sort = KeyAttribute.parse(index.sort_key, "index sort_key")
            more_hash = more_range = ()
            if table_key.sort is None:
                raise ValidationError(
                    "One or more parameter values were invalid: Table KeySchema does not have "
                    "a range key, which is required when specifying a LocalSecondaryIndex"
                )
            cap = None
            kind = "LOCAL"
        else:
            raise ValidationError(
                f"indexes must be sk.GlobalIndex(...) or sk.LocalIndex(...), got {index!r}"
            )
        attrs = [part, *more_hash, *([] if sort is None else [sort]), *more_range]
        names = [a.name for a in attrs]
        if len(set(names)) < len(names):
            raise ValidationError(
                f"index {name!r}: its sort key must differ from its partition key"
                if not (more_hash or more_range)
                else f"index {name!r}: two of its key attributes have the same name"
            )
        for attr in attrs:
            for table_attr in (table_key.partition, table_key.sort):
                if (
                    table_attr is not None
                    and table_attr.name == attr.name
                    and table_attr.type != attr.type
                ):
                    raise ValidationError(
                        f"index {name!r}: attribute {attr.name!r} is type {table_attr.type} "
                        f"in the table's key, not {attr.type}"
                    )
        # a key attribute listed too is kept (DynamoDB accepts and shows it as given)
        projection, include = _projection(index.projection)
        return cls(
            name,
            kind,
            KeySchema(part, sort),
            projection,
            include,
            status,
            slot,
            cap,
            tuple(more_hash),
            tuple(more_range),
        )

    # --- storage ------------------------------------------------------------------------
    def storage_id(self, table_id: int) -> int:
        """Where this index's entries are stored (never a table's id)."""
        return -(table_id * _SLOTS + self.slot)

    def attribute_names(self, table_key: KeySchema) -> frozenset[str]:
        """The attributes an entry holds, or an empty set for ALL."""
        if self.projection == "ALL":
            return frozenset()
        return frozenset(table_key.names) | frozenset(self.key_names) | frozenset(self.include)

    def check_read(
        self, held: frozenset[str], filtered: frozenset[str], returned: frozenset[str]
    ) -> bool:
        """Check a read of this index (``held``: what its entries hold) that filters on and
        returns these top-level attributes, in DynamoDB's words: neither kind of index
        filters on what it does not hold; a global index returns only what it holds, a
        local one fetches the rest from the table (True: the read must fetch)."""
        unheld = sorted(filtered - held)
        if unheld:
            raise ValidationError(
                f"One or more parameter values were invalid: Secondary index {self.name} "
                f"does not project one or more filter attributes: [{', '.join(unheld)}]"
            )
        missing = sorted(returned - held)
        if missing and self.kind == "GLOBAL":
            raise ValidationError(
                "One or more parameter values were invalid: Global secondary index "
                f"{self.name} does not project [{', '.join(missing)}]"
            )
        return bool(missing)

    def project(self, table_key: KeySchema, item: Item) -> Item:
        """The item as this index stores it."""
        if self.projection == "ALL":
            return item
        names = self.attribute_names(table_key)
        return {k: v for k, v in item.items() if k in names}

    def _value(self, attr: KeyAttribute, item: Item) -> bytes | None:
        if attr.name not in item:
            return None
        v = item[attr.name]  # None is a NULL value: a type mismatch, as DynamoDB
        if type(v) is not _PY_TYPE[attr.type]:
            raise ValidationError(
                "One or more parameter values were invalid: Type mismatch for Index Key "
                f"{attr.name} Expected: {attr.type} Actual: {_type_name(v)} "
                f"IndexName: {self.name}",
                path=attr.name,
            )
        if isinstance(v, (str, bytes)) and not v:
            raise ValidationError(
                "One or more parameter values are not valid. A value specified for a "
                "secondary index key is not supported. The AttributeValue for a key "
                f"attribute cannot contain an empty {'string' if isinstance(v, str) else 'binary'}"
                f" value. IndexName: {self.name}, IndexKey: {attr.name}",
                path=attr.name,
            )
        b = order_bytes(v)
        limit = 2048 if attr is self.key.partition or attr in self.more_hash else 1024
        if len(b) > limit:
            raise ValidationError(
                f"One or more parameter values were invalid: Size of hashkey has exceeded the "
                f"maximum size limit of {limit} bytes for index key {attr.name} of index "
                f"{self.name}",
                path=attr.name,
            )
        return b

    def entry_key(self, item: Item, table_pk: bytes, table_sk: bytes) -> tuple[bytes, bytes] | None:
        """The entry's (partition, sort) bytes, or None when the item is not in the index
        (sparse). Raises ValidationError for an index key of the wrong type or size."""
        if not self.composite:  # the common case, kept short
            pb = self._value(self.key.partition, item)
            sort = self.key.sort
            sb = None if sort is None else self._value(sort, item)
            if pb is None or (sort is not None and sb is None):
                return None
            return pb, entry_sort_bytes(None if sb is None else esc(sb), table_pk, table_sk)
        hashes = [self._value(a, item) for a in self.hash_attrs]
        ranges = [self._value(a, item) for a in self.range_attrs]
        if any(b is None for b in hashes) or any(b is None for b in ranges):
            return None  # sparse: an item without any one key attribute is not in the index
        pb = self.hash_bytes(hashes)  # type: ignore[arg-type]
        head = b"".join(esc(b) for b in ranges if b is not None) if ranges else None
        return pb, entry_sort_bytes(head, table_pk, table_sk)

    def hash_bytes(self, parts: Sequence[bytes]) -> bytes:
        """The partition bytes of an entry whose partition key attributes have these
        order bytes."""
        return parts[0] if not self.more_hash else b"".join(esc(b) for b in parts)

    def entry(
        self, table_key: KeySchema, item: Item, table_pk: bytes, table_sk: bytes
    ) -> tuple[bytes, bytes, bytes, int] | None:
        """``(partition bytes, sort bytes, image, size)`` of the item's entry, or None."""
        k = self.entry_key(item, table_pk, table_sk)
        if k is None:
            return None
        projected = self.project(table_key, item)
        if projected is item:
            return k[0], k[1], b"", -1  # the caller has the item's own image and size
        return k[0], k[1], encode_image(projected), item_size(projected)

    def entry_of_key(self, key: Mapping[str, Any], table_key: KeySchema) -> tuple[bytes, bytes]:
        """The entry coordinates of a paging key (the index's and the table's key
        attributes, as ``LastEvaluatedKey`` carries them)."""
        tpk, tsk = table_key.extract(key)
        k = self.entry_key(dict(key), tpk, tsk)
        if k is None:
            raise ValidationError(
                f"the start key does not hold the key attributes of index {self.name!r}"
            )
        return k

    # --- the catalog --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """For the table's catalog entry."""
        s = self.key.sort
        return {
            "name": self.name,
            "kind": self.kind,
            "partition": [self.key.partition.name, self.key.partition.type],
            "sort": None if s is None else [s.name, s.type],
            "projection": self.projection,
            "include": list(self.include),
            "status": self.status,
            "slot": self.slot,
            "capacity": None
            if self.capacity is None
            else {"read": self.capacity.read, "write": self.capacity.write},
            **(
                {
                    "more_hash": [[a.name, a.type] for a in self.more_hash],
                    "more_range": [[a.name, a.type] for a in self.more_range],
                }
                if self.composite
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IndexSpec:
        """From the table's catalog entry."""
        p, s, cap = d["partition"], d["sort"], d["capacity"]
        return cls(
            name=d["name"],
            kind=d["kind"],
            key=KeySchema(
                KeyAttribute(p[0], p[1]), None if s is None else KeyAttribute(s[0], s[1])
            ),
            projection=d["projection"],
            include=tuple(d["include"]),
            status=d["status"],
            slot=d["slot"],
            capacity=None if cap is None else Provisioned(read=cap["read"], write=cap["write"]),
            more_hash=tuple(KeyAttribute(n, t) for n, t in d.get("more_hash", ())),
            more_range=tuple(KeyAttribute(n, t) for n, t in d.get("more_range", ())),
        )

    def describe(self) -> dict[str, Any]:
        """A plain description (``describe_table``)."""
        s = self.key.sort
        return {
            "name": self.name,
            "kind": self.kind,
            "partition_key": {"name": self.key.partition.name, "type": self.key.partition.type},
            "sort_key": None if s is None else {"name": s.name, "type": s.type},
            "projection": self.projection,
            "include": list(self.include),
            "status": self.status,
            **(
                {
                    "partition_keys": [{"name": a.name, "type": a.type} for a in self.hash_attrs],
                    "sort_keys": [{"name": a.name, "type": a.type} for a in self.range_attrs],
                }
                if self.composite
                else {}
            ),
        }

    def with_status(self, status: str) -> IndexSpec:
        """A copy in another status."""
        return replace(self, status=status)


def _type_name(v: object) -> str:
    from streamkit.records._values import type_of

    return type_of(v)


def build_indexes(
    table_key: KeySchema,
    global_indexes: Sequence[GlobalIndex] | None,
    local_indexes: Sequence[LocalIndex] | None,
) -> tuple[IndexSpec, ...]:
    """The checked index definitions of a new table."""
    gs: list[GlobalIndex | LocalIndex] = list(global_indexes or ())
    ls: list[GlobalIndex | LocalIndex] = list(local_indexes or ())
    if len(gs) > MAX_GLOBAL_INDEXES:
        raise ValidationError(
            f"One or more parameter values were invalid: GlobalSecondaryIndex count exceeds "
            f"the per-table limit of {MAX_GLOBAL_INDEXES}"
        )
    if len(ls) > MAX_LOCAL_INDEXES:
        raise ValidationError(
            f"One or more parameter values were invalid: LocalSecondaryIndex count exceeds "
            f"the per-table limit of {MAX_LOCAL_INDEXES}"
        )
    for g in gs:
        if not isinstance(g, GlobalIndex):
            raise ValidationError(f"global_indexes must hold sk.GlobalIndex(...), got {g!r}")
    for loc in ls:
        if not isinstance(loc, LocalIndex):
            raise ValidationError(f"local_indexes must hold sk.LocalIndex(...), got {loc!r}")
    out = tuple(
        IndexSpec.build(ix, table_key, slot, "ACTIVE")
        for slot, ix in enumerate([*gs, *ls], start=1)
    )
    check_unique(out)
    return out


def check_scalar_updates(indexes: Sequence[IndexSpec], update: Any) -> None:
    """Refuse an update of a nested path under an index key attribute (``SET x.y``,
    ``REMOVE x[0]``): index keys are scalars, as DynamoDB says. ``update``: the
    resolved ``UpdateExpr``."""
    actions = (*update.sets, *update.removes, *update.adds, *update.deletes)
    nested = {a.path.elements[0] for a in actions if len(a.path.elements) > 1}
    for ix in indexes:
        for name in ix.key_names:
            if name in nested:
                raise ValidationError(
                    f"index key attribute {name!r} is a scalar: a nested path under it "
                    "cannot be updated",
                    path=name,
                )


def check_unique(indexes: Sequence[IndexSpec]) -> None:
    """Index names are unique in a table; INCLUDE lists stay within DynamoDB's limit."""
    seen: set[str] = set()
    for ix in indexes:
        if ix.name in seen:
            raise ValidationError(
                f"One or more parameter values were invalid: Duplicate index name: {ix.name}"
            )
        seen.add(ix.name)
    types: dict[str, tuple[str, IndexSpec]] = {}
    for ix in indexes:  # an attribute is a key of one type only (DynamoDB checks writes by it)
        for attr in (*ix.hash_attrs, *ix.range_attrs):
            t, first = types.setdefault(attr.name, (attr.type, ix))
            if t != attr.type:
                raise ValidationError(
                    "One or more parameter values were invalid: Attributes cannot be "
                    "redefined. Please check that your attribute has the same type as "
                    f"previously defined: {attr.name} is {t} in index {first.name}, "
                    f"{attr.type} in index {ix.name}"
                )
    if sum(len(ix.include) for ix in indexes) > _MAX_PROJECTED:
        raise ValidationError(
            "One or more parameter values were invalid: Number of projected attributes in "
            f"all indexes exceeds limit of {_MAX_PROJECTED}"
        )


def next_slot(last_slot: int) -> int:
    """The slot of a table's next index (slots are never reused)."""
    if last_slot + 1 >= _SLOTS:
        raise ValidationError(
            f"the table has had {_SLOTS - 1} indexes: create a new table for more"
        )
    return last_slot + 1


def storage_id_range(table_id: int) -> tuple[int, int]:
    """The lowest and highest storage ids any index of the table can have, with slot 0
    (a replicated table's version rows, ``_versions.py``): what deleting a table deletes."""
    return -(table_id * _SLOTS + _SLOTS - 1), -(table_id * _SLOTS)


def index_rows(
    spec: Any, items: Sequence[tuple[bytes, bytes, bytes, int, float | None]]
) -> list[tuple[int, bytes, bytes, bytes, int]]:
    """``(storage id, pk, sk, image, size)`` of every index entry of ``items`` (stored
    items of the table ``spec``): what a restore loads with them. Items whose index key
    has the wrong type are left out, as a backfill leaves them."""
    from streamkit.records._avro import decode_image

    out: list[tuple[int, bytes, bytes, bytes, int]] = []
    if not spec.indexes:
        return out
    for pk, sk, data, size, _ in items:
        item = decode_image(data)
        for ix in spec.indexes:
            try:
                e = ix.entry(spec.key, item, pk, sk)
            except ValidationError:
                continue
            if e is not None:
                sid = ix.storage_id(spec.table_id)
                out.append((sid, e[0], e[1], data, size) if e[3] < 0 else (sid, *e))
    return out
