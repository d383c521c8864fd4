"""Adding and deleting a table's global indexes while it is in use (the backfill).

Adding a global index to a table that holds items:

1. the index is stored in the table's spec as ``CREATING``. From then on every write
   (in this process, and in every other once it reloads the catalog) keeps its
   entries, like those of an active index, but reads refuse it;
2. the backfill walks the table in key order, a chunk at a time, and writes each
   item's entry with an :class:`~streamkit.storage._write_ops.IndexOp`: an ordinary
   write job that reads the item *inside* the transaction, so it can only write what
   the item is at that commit — never resurrect an entry a concurrent delete removed,
   never overwrite a newer one (a write that committed first already wrote the same
   entry; one that commits later replaces it);
3. when the walk ends, the index becomes ``ACTIVE``.

A backfill that stops half-way (the process died) is simply run again: every step is
idempotent. ``App.running()`` resumes the backfills of ``CREATING`` indexes.
"""

from __future__ import annotations

import contextlib
import dataclasses

from streamkit.exceptions import TableNotFound, ValidationError
from streamkit.storage._indexes import (
    MAX_GLOBAL_INDEXES,
    GlobalIndex,
    IndexSpec,
    check_unique,
    next_slot,
)
from streamkit.storage._spec import TableSpec
from streamkit.storage._store import Store
from streamkit.storage._write_ops import IndexOp, ItemKey, WriteJob

__all__ = ("BackfillProgress", "add_index", "backfill", "drop_index")

_CHUNK = 256


@dataclasses.dataclass(slots=True)
class BackfillProgress:
    """How far a backfill got: items read, entries written, items left out (an index
    key of the wrong type, as DynamoDB's backfill reports them)."""

    scanned: int = 0
    written: int = 0
    violations: int = 0


async def add_index(store: Store, table: str, index: GlobalIndex) -> TableSpec:
    """Store a new global index as CREATING (written by every write from now on)."""
    if not isinstance(index, GlobalIndex):
        raise ValidationError(
            "only global indexes can be added to an existing table (as DynamoDB): "
            "use sk.GlobalIndex(...)"
        )
    await store.reload()

    def added(spec: TableSpec) -> TableSpec:
        if sum(1 for ix in spec.indexes if ix.kind == "GLOBAL") >= MAX_GLOBAL_INDEXES:
            raise ValidationError(
                "One or more parameter values were invalid: GlobalSecondaryIndex count exceeds "
                f"the per-table limit of {MAX_GLOBAL_INDEXES}"
            )
        if any(ix.name == index.name for ix in spec.indexes):
            raise ValidationError(
                f"Attempting to create an index which already exists: {index.name}"
            )
        if any(ix.status == "CREATING" for ix in spec.indexes):
            raise ValidationError(  # DynamoDB: one index creation at a time per table
                "Subscriber limit exceeded: Only 1 online index can be created or deleted "
                "simultaneously per table"
            )
        slot = next_slot(spec.last_slot)
        new = IndexSpec.build(index, spec.key, slot, "CREATING")
        indexes = (*spec.indexes, new)
        check_unique(indexes)
        return dataclasses.replace(spec, indexes=indexes, last_slot=slot)

    return await store.change_spec(table, added)


async def backfill(store: Store, table: str, index: str) -> BackfillProgress:
    """Write every item's entry of a CREATING index, then make it ACTIVE."""
    progress = BackfillProgress()
    spec = await store.spec(table)
    ix = spec.index(index)
    if ix.status == "ACTIVE":
        return progress
    after: tuple[bytes, bytes] | None = None
    while True:
        rows = await store.engine.scan(
            spec.table_id, after=after, limit=_CHUNK, segment=0, total_segments=1
        )
        if not rows:
            break
        ops = [IndexOp(spec, ItemKey({}, pk, sk, b"", 0, b""), ix) for pk, sk, _ in rows]
        results = await store.write(WriteJob(list(ops)))
        progress.scanned += len(rows)
        progress.violations += sum(1 for r in results if r.units < 0)
        progress.written += sum(1 for r in results if r.units == 0)
        after = (rows[-1][0], rows[-1][1])
    await store.reload()

    def active(latest: TableSpec) -> TableSpec | None:
        if latest.table_id != spec.table_id:
            return None  # the table was deleted (and maybe made again) meanwhile
        done = tuple(
            x.with_status("ACTIVE") if x.name == index and x.slot == ix.slot else x
            for x in latest.indexes
        )
        return dataclasses.replace(latest, indexes=done)

    with contextlib.suppress(TableNotFound):  # the table was deleted meanwhile
        await store.change_spec(table, active)
    return progress


async def drop_index(store: Store, table: str, index: str) -> TableSpec:
    """Delete a global index and its entries."""
    await store.reload()

    def dropped(spec: TableSpec) -> TableSpec:
        ix = spec.index(index)
        if ix.kind != "GLOBAL":
            raise ValidationError(
                f"local secondary index {index} cannot be deleted "
                "(as DynamoDB: only with the table)"
            )
        return dataclasses.replace(spec, indexes=tuple(x for x in spec.indexes if x is not ix))

    async def stored(read: TableSpec, changed: TableSpec) -> TableSpec:
        gone = read.index(index).storage_id(read.table_id)  # its entries go with it
        return await store.engine.update_table(changed, drop=(gone,), only_if_epoch=read.epoch)

    return await store.change_spec(table, dropped, store=stored)
