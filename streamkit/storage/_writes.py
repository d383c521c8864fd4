"""Write operations and how they commit, independent of the storage engine.

A write job is one or more operations (a put, an update, a transaction's
actions, a batch) that the engine runs inside one storage transaction. Every
job runs in two phases:

1. **plan** — read the current item, check the condition, compute the new item
   and the event (none / INSERT / MODIFY / REMOVE). Nothing is written; a
   failure here raises and the job changes nothing.
2. **apply** — write the item rows and append the change records (the outbox)
   through the engine's :class:`Rows`, all in the caller's transaction.

The engine runs many jobs in one transaction (group commit); a job that fails
in *plan* is simply left out, since it wrote nothing.

The operations, the job and the results are in :mod:`streamkit.storage._write_ops`,
the item collection accounting of tables with local indexes in
:mod:`streamkit.storage._item_collections`; the names other modules use are
re-exported here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from streamkit.exceptions import (
    CancellationReason,
    ConditionFailed,
    StorageError,
    TransactionCanceled,
    ValidationError,
)
from streamkit.records import StreamView
from streamkit.records._avro import decode_image, encode_image, encode_record
from streamkit.records._values import MAX_ITEM_BYTES, Item, item_size, values_equal
from streamkit.storage._capacity import index_entry_unchanged, write_units
from streamkit.storage._indexes import check_scalar_updates
from streamkit.storage._item_collections import (
    _collections,
)
from streamkit.storage._keys import message_key
from streamkit.storage._versions import (
    ReplicaOp,
    TombstonePruneOp,
    Version,
    decode_version,
    encode_version,
    load_version,
    version_storage_id,
)
from streamkit.storage._write_ops import (
    ArchiveOp,
    Checkpoint,
    DeleteOp,
    IndexOp,
    ItemKey,
    PutOp,
    Rows,
    UpdateOp,
    WriteJob,
    WriteOp,
    WriteResult,
    _Entry,
    _Plan,
)

if TYPE_CHECKING:
    from streamkit.storage._expressions import CompiledUpdate
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._spec import TableSpec

__all__ = (
    "StaleCatalog",
    "archive_record",
    "run_effects",
    "run_job",
    "ttl_expiry",
)

_FIVE_YEARS = 5 * 365 * 86400.0


def _new_entries(spec: TableSpec, k: ItemKey, new: Item) -> list[_Entry] | None:
    """The index entries of a new item (checks its index keys: ValidationError)."""
    if not spec.indexes:
        return None
    return [ix.entry(spec.key, new, k.pk, k.sk) for ix in spec.indexes]


def _old_entry(ix: IndexSpec, old: Item, k: ItemKey) -> tuple[bytes, bytes] | None:
    try:
        return ix.entry_key(old, k.pk, k.sk)
    except ValidationError:  # written before the index existed, and left out of it
        return None


def _maintain_indexes(rows: Rows, p: _Plan) -> None:
    """Keep every index of the plan's table equal to the table projected, and count the
    write units each index consumed (as DynamoDB: a new or removed entry costs its size,
    a changed one both, a moved one the removal plus the insertion)."""
    spec = p.op.spec
    k = p.op.k
    old = p.old
    if old is None and p.old_data is not None:
        old = p.old = decode_image(p.old_data)
    entries = p.entries
    units: dict[str, float] = {}
    for i, ix in enumerate(spec.indexes):
        sid = ix.storage_id(spec.table_id)
        old_k = None if old is None else _old_entry(ix, old, k)
        new_e = None if entries is None else entries[i]
        used = 0.0
        if old_k is not None and (new_e is None or (new_e[0], new_e[1]) != old_k):
            rows.remove(sid, old_k[0], old_k[1])
            assert old is not None
            old_size = (
                p.old_size if ix.projection == "ALL" else item_size(ix.project(spec.key, old))
            )
            used += write_units(old_size)
        if new_e is not None:
            if new_e[3] < 0:  # projection ALL: the entry is the item
                assert p.new_data is not None
                rows.store(sid, new_e[0], new_e[1], p.new_data, p.new_size, None)
                used += write_units(p.new_size)
            else:
                rows.store(sid, new_e[0], new_e[1], new_e[2], new_e[3], None)
                if not index_entry_unchanged(ix, spec.key, old, p.new, old_k, new_e):
                    used += write_units(new_e[3])
        if used:
            units[ix.name] = used
    if units:
        p.result.index_units = units


class StaleCatalog(StorageError):
    """A write was built with a table spec older than the stored one (an index was added
    since, by this or another process): reload the catalog and run it again."""

    def __init__(self, table: str) -> None:
        super().__init__(
            f"the settings of table {table!r} changed while the write was prepared; retry it",
            retriable=True,
        )
        self.table = table


def _check_catalog(rows: Rows, ops: Sequence[WriteOp]) -> None:
    seen: set[int] = set()
    for op in ops:
        spec = op.spec
        if spec.table_id in seen:
            continue
        seen.add(spec.table_id)
        current = rows.epoch(spec.table_id)
        if current is not None and current != spec.epoch:
            raise StaleCatalog(spec.name)


def run_job(rows: Rows, job: WriteJob) -> list[WriteResult]:
    """Plan and apply one job inside the caller's open transaction.

    Raises:
        StaleCatalog: the job's specs are older than the stored ones (nothing written).
        ConditionFailed, ValidationError: a single operation failed (nothing written).
        ItemCollectionSizeLimitExceeded: the job would take an item collection of a table
            with local indexes past ``job.collection_limit`` (nothing written).
        TransactionCanceled: a transactional job failed, with a reason per action.
    """
    _check_catalog(rows, job.ops)
    plans: list[_Plan] = []
    if job.transactional:
        reasons: list[CancellationReason] = []
        failed = False
        for op in job.ops:
            try:
                plans.append(_plan(rows, op))
                reasons.append(CancellationReason("None"))
            except ConditionFailed as e:
                failed = True
                reasons.append(
                    CancellationReason(
                        "ConditionalCheckFailed", "The conditional request failed", e.item
                    )
                )
            except ValidationError as e:
                failed = True
                reasons.append(CancellationReason("ValidationError", str(e)))
        if failed:
            raise TransactionCanceled(reasons)
    else:
        plans = [_plan(rows, op) for op in job.ops]
    sizes = _collections(rows, plans, job)
    _apply(rows, plans, job)
    for spec, pk, size in sizes:
        rows.set_collection_size(spec, pk, size)
    return [p.result for p in plans]


def run_effects(
    rows: Rows, ops: Sequence[WriteOp], checkpoints: Sequence[Checkpoint], origin: str | None
) -> int | None:
    """Apply ``ops`` one after another and advance ``checkpoints``, in the caller's transaction.

    Each op sees the ones before it (two updates of one counter add up). Returns None
    when applied; when a checkpoint is already past its ``first`` offset (the work, or
    part of it, was committed before: by this consumer before a crash, or by the
    partition's previous owner), writes nothing and returns that stored position.

    Raises:
        ConditionFailed, ValidationError: an op failed; the caller rolls back.
    """
    for cp in checkpoints:
        stored = rows.meta_get(cp.key)
        if stored is not None and int(stored) > cp.first:
            return int(stored)
    for op in ops:
        run_job(rows, WriteJob([op], origin=origin))
    for cp in checkpoints:
        rows.meta_set(cp.key, str(cp.value))
    return None


def _decode(data: bytes | None) -> Item | None:
    return None if data is None else decode_image(data)


def _plan(rows: Rows, op: WriteOp) -> _Plan:
    spec = op.spec
    k = op.k
    loaded = rows.load(spec.table_id, k.pk, k.sk)
    old_data, old_size = (None, 0) if loaded is None else loaded
    old: Item | None = None
    decoded = False
    if isinstance(op, UpdateOp):  # refused whatever the item or the condition
        for name in spec.key.names:
            if name in op.update.touched:
                raise ValidationError(
                    f"cannot update attribute {name!r}: it is part of the table's key", path=name
                )
        check_scalar_updates(spec.indexes, op.update.ast)
    if op.condition is not None:
        old = _decode(old_data)
        decoded = True
        if not op.condition.evaluate(old):
            raise ConditionFailed(
                table=spec.name, key=k.key, item=old if op.old_on_failure else None
            )

    if isinstance(op, PutOp):
        if old_data is None:
            event: str | None = "INSERT"
        elif old_data == op.data:
            event = None  # images are canonical: equal bytes <=> semantically equal items
        else:
            event = "MODIFY"
        if op.returns == "ALL_OLD" and not decoded:
            old = _decode(old_data)
        units = write_units(max(op.size, old_size))
        result = WriteResult(old if op.returns == "ALL_OLD" else None, units, event)
        entries = _new_entries(spec, k, op.item)
        return _Plan(op, old_data, old_size, old, op.item, op.data, op.size, event, result, entries)

    if isinstance(op, UpdateOp):
        if not decoded:
            old = _decode(old_data)
        new = op.update.apply(old if old is not None else dict(k.key), item_exists=old is not None)
        ast = op.update.ast
        if old is None and not ast.sets and not ast.adds and (ast.removes or ast.deletes):
            # as DynamoDB: an update that only removes creates no item (and no record)
            result = WriteResult(None, write_units(0), None)
            return _Plan(op, None, 0, None, None, None, 0, None, result)
        new_size = item_size(new)
        if new_size > MAX_ITEM_BYTES:
            raise ValidationError(f"item size {new_size} bytes exceeds the 400 KB limit")
        new_data = encode_image(new)
        event = "INSERT" if old is None else None if new_data == old_data else "MODIFY"
        units = write_units(max(new_size, old_size))
        returned = _update_returns(op.returns, op.update, old, new)
        result = WriteResult(returned, units, event)
        entries = _new_entries(spec, k, new) if event is not None else None
        return _Plan(op, old_data, old_size, old, new, new_data, new_size, event, result, entries)

    if isinstance(op, DeleteOp):
        if op.ttl_cutoff is not None and old_data is not None:
            if not decoded:
                old = _decode(old_data)
                decoded = True
            if not _expired(spec, old, op.ttl_cutoff):  # type: ignore[arg-type]
                old_data, old_size, old = None, 0, None  # rewritten since the sweep saw it: keep
        if op.returns == "ALL_OLD" and not decoded:
            old = _decode(old_data)
        event = None if old_data is None else "REMOVE"
        # TTL deletions are free, as in DynamoDB
        units = 0.0 if op.identity is not None else write_units(old_size)
        result = WriteResult(old if op.returns == "ALL_OLD" else None, units, event)
        return _Plan(op, old_data, old_size, old, None, None, 0, event, result)

    if isinstance(op, IndexOp):
        if old_data is None:
            return _Plan(op, None, 0, None, None, None, 0, None, WriteResult(None, 0.0, None))
        if not decoded:
            old = _decode(old_data)
        assert old is not None
        try:
            entry = op.index.entry(spec.key, old, k.pk, k.sk)
        except ValidationError:
            return _Plan(op, None, 0, None, None, None, 0, None, WriteResult(None, -1.0, None))
        result = WriteResult(None, 0.0, None)
        return _Plan(op, old_data, old_size, old, old, old_data, old_size, None, result, [entry])

    if isinstance(op, ArchiveOp):
        result = WriteResult(None, 0.0, None)
        return _Plan(op, old_data, old_size, None, None, old_data, old_size, None, result)

    if isinstance(op, ReplicaOp):
        return _plan_replica(rows, op, old_data, old_size)
    if isinstance(op, TombstonePruneOp):
        return _Plan(
            op, old_data, old_size, None, None, None, 0, None, WriteResult(None, 0.0, None)
        )

    # CheckOp: the condition was checked above
    result = WriteResult(None, write_units(old_size), None)
    return _Plan(op, old_data, old_size, old, old, old_data, old_size, None, result)


def _plan_replica(rows: Rows, op: ReplicaOp, old_data: bytes | None, old_size: int) -> _Plan:
    """A peer's change: applied only when its version beats the stored one (global
    tables' last writer wins, see ``_versions.py``)."""
    stored = load_version(rows, op.spec, op.k)
    nothing = WriteResult(None, 0.0, None)
    if not op.version.beats(stored):
        same = stored is not None and (stored.ts, stored.region) == (
            op.version.ts,
            op.version.region,
        )
        op.outcome = "duplicate" if same else "conflict"
        return _Plan(op, old_data, old_size, None, None, None, 0, None, nothing)
    op.outcome = "applied"
    if op.item is None:
        event = None if old_data is None else "REMOVE"
        result = WriteResult(None, write_units(old_size), event)
        return _Plan(op, old_data, old_size, None, None, None, 0, event, result)
    event = "INSERT" if old_data is None else None if old_data == op.data else "MODIFY"
    result = WriteResult(None, write_units(max(op.size, old_size)), event)
    entries: list[_Entry] | None = None
    if op.spec.indexes:
        # an item the peer accepted but whose key does not fit an index of this region's
        # is left out of that index (as a backfill leaves it), never refused
        entries = []
        for ix in op.spec.indexes:
            try:
                entries.append(ix.entry(op.spec.key, op.item, op.k.pk, op.k.sk))
            except ValidationError:
                entries.append(None)
    return _Plan(op, old_data, old_size, None, op.item, op.data, op.size, event, result, entries)


def _stamp(rows: Rows, p: _Plan, now_ms: int) -> int | None:
    """Keep the version row of a write to a replicated table (or of a replica or prune
    op); returns the change record's time, or None when the op writes no record."""
    op = p.op
    spec = op.spec
    k = op.k
    sid = version_storage_id(spec.table_id)
    if isinstance(op, TombstonePruneOp):
        got = rows.load(sid, k.pk, k.sk)
        if got is not None and p.old_data is None:
            v = decode_version(got[0])[0]
            if v.tombstone and v.ts < op.before_ms:
                rows.remove(sid, k.pk, k.sk)
        return None
    if isinstance(op, ReplicaOp):
        if op.outcome == "conflict" and op.counter_key is not None:
            n = rows.meta_get(op.counter_key)
            rows.meta_set(op.counter_key, str(int(n or 0) + 1))
        if op.outcome != "applied":
            return None
        v = op.version
        ts = now_ms
    else:
        stored = load_version(rows, spec, k)
        # a hybrid logical clock per item: a local write always beats what it overwrote,
        # even after this region's clock jumped backwards
        ts = now_ms if stored is None else max(now_ms, stored.ts + 1)
        v = Version(ts, spec.region or "local", p.event == "REMOVE")
    tomb = op.item is None if isinstance(op, ReplicaOp) else v.tombstone
    if tomb != v.tombstone:
        v = Version(v.ts, v.region, tomb)
    data = encode_version(v, k.key if tomb else None)
    rows.store(sid, k.pk, k.sk, data, len(data), v.ts / 1000 if tomb else None)
    return ts


def _update_returns(
    returns: str, update: CompiledUpdate, old: Item | None, new: Item
) -> Item | None:
    if returns == "NONE":
        return None
    if returns == "ALL_NEW":
        return new
    if returns == "ALL_OLD":
        return old
    touched, updated = update.touched, update.updated
    if returns == "UPDATED_NEW":
        return updated.apply(new) if updated else {k: new[k] for k in touched if k in new}
    if returns == "UPDATED_OLD":
        if old is None:
            return None
        return updated.apply(old) if updated else {k: old[k] for k in touched if k in old}
    raise ValidationError(f"unknown returns={returns!r}")


def ttl_expiry(spec: TableSpec, item: Item) -> float | None:
    """The item's TTL as epoch seconds, if the table has TTL and the item a numeric value."""
    name = spec.ttl_attribute
    if name is None:
        return None
    v = item.get(name)
    if type(v) is Decimal:
        return float(v)
    return None


def _expired(spec: TableSpec, item: Item, cutoff: float) -> bool:
    exp = ttl_expiry(spec, item)
    return exp is not None and cutoff - _FIVE_YEARS <= exp <= cutoff


def _changed(old: Item, new: Item) -> list[str]:
    names = [k for k in new if k not in old or not values_equal(old[k], new[k])]
    names.extend(k for k in old if k not in new)
    return sorted(names)


_VIEW_NEW = frozenset({StreamView.NEW_IMAGE, StreamView.NEW_AND_OLD_IMAGES})
_VIEW_OLD = frozenset({StreamView.OLD_IMAGE, StreamView.NEW_AND_OLD_IMAGES})


def archive_record(
    spec: TableSpec,
    keys: bytes,
    data: bytes,
    size: int,
    seq: int,
    now_ms: int,
    origin: str | None,
    event_id: str | None = None,
) -> bytes:
    """The record of an item entered in the archive as it is (a restore's items, a PITR
    seed): an INSERT with its whole image, whatever the table's stream view, that no
    handler sees (the row is never published)."""
    return encode_record(
        event_id=os.urandom(16).hex() if event_id is None else event_id,
        event_name="INSERT",
        table=spec.name,
        keys=keys,
        new_image=data,
        old_image=None,
        changed=None,
        sequence_number=seq,
        created_at_ms=now_ms,
        size_bytes=size,
        view_type=(spec.record_view or StreamView.NEW_AND_OLD_IMAGES).value,
        user_identity=None,
        origin=origin,
    )


def _archive_row(
    rows: Rows, spec: TableSpec, k: ItemKey, data: bytes, size: int, now_ms: int, origin: str | None
) -> None:
    """An item's unpublished INSERT row in the archive (see ``ArchiveOp``)."""
    item = decode_image(data)
    key = {name: item[name] for name in spec.key.names}
    seq = rows.next_sequence()
    record = archive_record(
        spec, encode_image(key), data, item_size(key) + size, seq, now_ms, origin
    )
    mkey = message_key(key[spec.key.partition.name])
    rows.append_change(
        seq, spec.table_id, spec.name, "INSERT", None, mkey, record, now_ms, False, None, k.pk, k.sk
    )


def _apply(rows: Rows, plans: list[_Plan], job: WriteJob) -> None:
    now_ms = time.time_ns() // 1_000_000
    txn: int | None = None
    multi = job.transactional and sum(1 for p in plans if p.event is not None) > 1
    for p in plans:
        event = p.event
        op = p.op
        created_ms = now_ms
        if isinstance(op, (ReplicaOp, TombstonePruneOp)) or (
            event is not None and op.spec.replicas
        ):
            stamped = _stamp(rows, p, now_ms)
            if stamped is None:
                continue
            created_ms = stamped
        if isinstance(op, IndexOp):
            e = None if p.entries is None else p.entries[0]
            if e is not None:
                sid = op.index.storage_id(op.spec.table_id)
                if e[3] < 0:
                    assert p.new_data is not None
                    rows.store(sid, e[0], e[1], p.new_data, p.new_size, None)
                else:
                    rows.store(sid, e[0], e[1], e[2], e[3], None)
            continue
        if isinstance(op, ArchiveOp):
            if p.new_data is not None:
                _archive_row(rows, op.spec, op.k, p.new_data, p.new_size, now_ms, job.origin)
            continue
        if event is None:
            continue
        spec = op.spec
        k = op.k
        if spec.indexes:
            _maintain_indexes(rows, p)
        if event == "REMOVE":
            rows.remove(spec.table_id, k.pk, k.sk)
        else:
            assert p.new is not None
            assert p.new_data is not None
            expires = None if spec.ttl_attribute is None else ttl_expiry(spec, p.new)
            rows.store(spec.table_id, k.pk, k.sk, p.new_data, p.new_size, expires)
            p.result.new = p.new
        view = spec.record_view
        if view is None:
            continue
        seq = rows.next_sequence()
        p.result.seq = seq
        if multi and txn is None:
            txn = seq
        size = k.size
        new_img = p.new_data if view in _VIEW_NEW else None
        old_img = p.old_data if view in _VIEW_OLD else None
        if new_img is not None:
            size += p.new_size
        if old_img is not None:
            size += p.old_size
        changed = None
        if event == "MODIFY":
            old = p.old if p.old is not None else decode_image(p.old_data)  # type: ignore[arg-type]
            changed = _changed(old, p.new)  # type: ignore[arg-type]
        identity = op.identity if isinstance(op, (DeleteOp, ReplicaOp)) else None
        origin = job.origin
        if isinstance(op, ReplicaOp):
            origin = op.origin
        elif spec.replicas:
            origin = spec.region
        record = encode_record(
            event_id=os.urandom(16).hex(),
            event_name=event,
            table=spec.name,
            keys=k.data,
            new_image=new_img,
            old_image=old_img,
            changed=changed,
            sequence_number=seq,
            created_at_ms=created_ms,
            size_bytes=size,
            view_type=view.value,
            user_identity=None if identity is None else (identity.type, identity.principal),
            origin=origin,
        )
        # the archive needs every new image for point-in-time restore, whatever the view
        image = p.new_data if (spec.pitr and new_img is None and event != "REMOVE") else None
        rows.append_change(
            seq,
            spec.table_id,
            spec.name,
            event,
            txn,
            k.message_key,
            record,
            created_ms,
            spec.stream is not None,
            image,
            k.pk,
            k.sk,
        )
