"""Time to live: delete items whose TTL attribute (epoch seconds) has passed.

Each deletion is a REMOVE change record with the TTL service identity, made in
the writer with a re-check, so an item rewritten with a later TTL after the
sweeper read it is kept. As in DynamoDB, TTL values more than five years in
the past are ignored, deletions cost no capacity, and reads return expired
items until they are swept unless ``hide_expired=True``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from streamkit.records import TTL_IDENTITY
from streamkit.records._avro import decode_image
from streamkit.storage._writes import DeleteOp, ItemKey, WriteJob, WriteOp

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("sweep_expired", "sweep_table")

_BATCH = 500


async def sweep_table(store: Store, spec: TableSpec, *, now: float | None = None) -> int:
    """Delete the expired items of one table; returns how many were deleted."""
    if spec.ttl_attribute is None:
        return 0
    cutoff = time.time() if now is None else now
    deleted = 0
    tid = spec.table_id
    while True:
        datas = await store.engine.expired(tid, cutoff, _BATCH)
        if not datas:
            return deleted
        ops: list[WriteOp] = []
        for data in datas:
            k = ItemKey.of(spec, spec.key.key_of(decode_image(data)))
            ops.append(DeleteOp(spec, k, identity=TTL_IDENTITY, ttl_cutoff=cutoff))
        results = await store.engine.write(WriteJob(ops, origin=store.origin))
        removed = sum(1 for r in results if r.event == "REMOVE")
        deleted += removed
        if len(datas) < _BATCH or removed == 0:
            return deleted


async def sweep_expired(store: Store, *, now: float | None = None) -> int:
    """One TTL pass over every table with a TTL attribute."""
    await store.reload()
    total = 0
    for spec in store.known_specs:
        total += await sweep_table(store, spec, now=now)
    return total
