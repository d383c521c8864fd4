"""Item collection accounting for tables with local secondary indexes.

An item collection is one partition key value's items and their local index entries;
DynamoDB caps its size (``ITEM_COLLECTION_LIMIT``, the job's ``collection_limit``). A
write job's plan is checked here before anything is applied (:func:`_collections`, called
by :func:`streamkit.storage._writes.run_job`), so a job that would overfill a collection
writes nothing. An engine that keeps a size counter per collection keeps it in
``sk_meta`` under :func:`collection_key` (:func:`collection_sizes`: the counters of
restored items).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamkit.exceptions import (
    CancellationReason,
    ItemCollectionSizeLimitExceeded,
    TransactionCanceled,
    ValidationError,
)
from streamkit.records._avro import decode_image
from streamkit.records._values import Item
from streamkit.storage._versions import ReplicaOp
from streamkit.storage._write_ops import (
    DeleteOp,
    PutOp,
    Rows,
    UpdateOp,
    WriteJob,
    WriteOp,
    _Entry,
    _Plan,
)

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec

__all__ = (
    "collection_bytes",
    "collection_key",
    "collection_meta_keys",
    "collection_sizes",
)

_COUNTED = (PutOp, UpdateOp, DeleteOp, ReplicaOp)


def _has_local(spec: TableSpec) -> bool:
    return any(ix.kind == "LOCAL" for ix in spec.indexes)


def collection_key(table_id: int, pk: bytes) -> str:
    """The ``sk_meta`` key of the size counter of one item collection (one partition key
    value of a table with local indexes)."""
    return f"collection/{table_id}/{pk.hex()}"


def collection_meta_keys(op: WriteOp) -> list[str]:
    """The ``sk_meta`` keys a write op reads and sets: its item collection's counter."""
    if isinstance(op, _COUNTED) and _has_local(op.spec):
        return [collection_key(op.spec.table_id, op.k.pk)]
    return []


def collection_bytes(
    spec: TableSpec, item: Item, size: int, pk: bytes, sk: bytes, entries: list[_Entry] | None
) -> int:
    """What one stored item adds to its item collection: its size plus the size of its
    local index entries (``entries``: the item's entries when known, in index order)."""
    total = size
    for i, ix in enumerate(spec.indexes):
        if ix.kind != "LOCAL":
            continue
        if entries is not None:
            e = entries[i]
        else:
            try:
                e = ix.entry(spec.key, item, pk, sk)
            except ValidationError:  # left out of the index
                e = None
        if e is not None:
            total += size if e[3] < 0 else e[3]
    return total


def collection_sizes(
    spec: TableSpec, items: Sequence[tuple[bytes, bytes, bytes, int, float | None]]
) -> dict[str, int]:
    """The counter of every item collection of ``items`` (stored items of the table
    ``spec``, ``(pk, sk, image, size, expires)``): what a restore sets with them."""
    if not _has_local(spec):
        return {}
    out: dict[str, int] = {}
    for pk, sk, data, size, _ in items:
        key = collection_key(spec.table_id, pk)
        out[key] = out.get(key, 0) + collection_bytes(spec, decode_image(data), size, pk, sk, None)
    return out


def _collections(
    rows: Rows, plans: list[_Plan], job: WriteJob
) -> list[tuple[TableSpec, bytes, int]]:
    """The new size of every item collection the job changes (read and checked in the
    plan phase, so a refused job writes nothing); sets each result's
    ``collection_size``."""
    groups: dict[tuple[int, bytes], tuple[TableSpec, bytes, list[tuple[_Plan, int]]]] = {}
    for p in plans:
        op = p.op
        if not isinstance(op, _COUNTED) or not _has_local(op.spec):
            continue
        delta = 0
        if p.event is not None:
            spec, k = op.spec, op.k
            if p.new is not None:
                delta += collection_bytes(spec, p.new, p.new_size, k.pk, k.sk, p.entries)
            if p.old_data is not None:
                if p.old is None:
                    p.old = decode_image(p.old_data)
                delta -= collection_bytes(spec, p.old, p.old_size, k.pk, k.sk, None)
        group = (op.spec.table_id, op.k.pk)
        if group not in groups:
            groups[group] = (op.spec, op.k.pk, [])
        groups[group][2].append((p, delta))
    sizes: list[tuple[TableSpec, bytes, int]] = []
    over: set[int] = set()
    for spec, pk, members in groups.values():
        size = rows.collection_size(spec, pk)
        changed = False
        for p, delta in members:
            size = max(0, size + delta)
            changed = changed or delta != 0
            if delta > 0 and size > job.collection_limit and not isinstance(p.op, ReplicaOp):
                over.add(id(p))
            if not isinstance(p.op, ReplicaOp):
                p.result.collection_size = size
        if changed:
            sizes.append((spec, pk, size))
    if over:
        first = next(p for p in plans if id(p) in over)
        if job.transactional:
            raise TransactionCanceled(
                [
                    CancellationReason("ItemCollectionSizeLimitExceeded", _COLLECTION_FULL)
                    if id(p) in over
                    else CancellationReason("None")
                    for p in plans
                ]
            )
        raise ItemCollectionSizeLimitExceeded(table=first.op.spec.name, key=first.op.k.key)
    return sizes


_COLLECTION_FULL = "Collection size exceeded."
