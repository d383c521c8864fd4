"""Time to live: delete items whose TTL attribute (epoch seconds) has passed.

Each deletion is a REMOVE change record with the TTL service identity, made in
the writer with a re-check, so an item rewritten with a later TTL after the
sweeper read it is kept. As in DynamoDB, TTL values more than five years in
the past are ignored, deletions cost no capacity, and reads return expired
items until they are swept unless ``hide_expired=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from streamkit.exceptions import ValidationError
from streamkit.records import TTL_IDENTITY
from streamkit.records._avro import decode_image
from streamkit.storage._write_ops import DeleteOp, ItemKey, WriteJob, WriteOp
from streamkit.storage._writes import ttl_expiry

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("check_ttl_attribute", "image_ttl", "set_ttl", "sweep_expired", "sweep_table")


def image_ttl(spec: TableSpec, data: bytes) -> float | None:
    """The TTL (epoch seconds) of a stored item image under ``spec``'s TTL attribute."""
    if spec.ttl_attribute is None:
        return None
    return ttl_expiry(spec, decode_image(data))


def check_ttl_attribute(name: object) -> str:
    """A TTL attribute name: a string of 1 to 255 characters (DynamoDB's rule)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise ValidationError(
            f"TTL attribute name {name!r} is invalid: use a string of 1 to 255 characters"
        )
    return name


async def set_ttl(
    store: Store,
    name: str,
    attribute: str | None,
    *,
    check: Callable[[TableSpec], None] | None = None,
) -> TableSpec:
    """Turn a table's TTL on (``attribute``), switch it to another attribute, or off (None).

    Items already in the table get their expiry from the new attribute at once, so an
    item written before TTL was enabled and already past its expiry is swept like any
    other. The catalog of this process learns the new attribute *before* the engine
    recomputes the rows: writes submitted from then on compute their TTL with it, and
    the engine commits the ones submitted earlier before it reads the rows.

    Raises:
        TableNotFound: no such table.
        ValidationError: a bad attribute name.
    """
    if attribute is not None:
        check_ttl_attribute(attribute)

    async def stored(read: TableSpec, changed: TableSpec) -> TableSpec:
        store.remember(changed)
        try:  # the engine refuses it (StaleCatalog) if the settings changed since `read`
            await store.engine.set_ttl(changed)
        finally:
            await store.reload()  # the catalog as it really is (with the new settings epoch)
        return await store.spec(name)

    def change(spec: TableSpec) -> TableSpec:
        if check is not None:
            check(spec)  # the caller's rules, against the settings it changes
        return replace(spec, ttl_attribute=attribute)

    return await store.change_spec(name, change, store=stored)


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
        cache = store.cache
        tokens = None if cache is None else cache.before_write(ops)
        results = await store.write(WriteJob(ops, origin=store.origin))
        if tokens is not None:
            assert cache is not None
            cache.wrote(ops, results, tokens)  # expired items: negative entries
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
