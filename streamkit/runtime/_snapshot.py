"""``start="snapshot"``: every existing item first, then live changes, no gap, no duplicate.

Per partition, when the group has never committed it: one consistent read of the
table gives every item and the newest sequence number *S* at that moment; the items
whose key maps to this partition are delivered as SNAPSHOT records; then reading
starts a margin before the snapshot's time, and live records with a sequence number
at or below *S* (already reflected in the snapshot) are skipped for good (*S* is stored
as ``runtime.{group}.{partition}.snapshot``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from streamkit._names import snapshot_key
from streamkit.records import ChangeRecord, StreamView
from streamkit.records._avro import decode_image, encode_change_record
from streamkit.records._record import datetime_from_ms
from streamkit.records._values import item_size
from streamkit.runtime._delivery import Item
from streamkit.storage._effects import Effects
from streamkit.storage._keys import message_key

if TYPE_CHECKING:
    from streamkit.runtime._tracking import _Partition
    from streamkit.runtime._worker import HandlerRunner
    from streamkit.storage._store import Store

__all__ = ("deliver_snapshot",)

_MARGIN_MS = 300_000  # commit clocks may step back a little; start reading well before


async def _read_snapshot(
    store: Store, table_id: int, pk_name: str, partitions: int, wanted: int, partition_for: Any
) -> tuple[int, list[bytes]]:
    """The newest sequence number and the images of the items of log partition
    ``wanted``, from one consistent snapshot of the table."""
    seq, rows = await store.engine.snapshot(table_id)
    out = []
    for _, _, data in rows:
        item = decode_image(data)
        if partition_for(partitions, message_key(item[pk_name])) == wanted:
            out.append(data)
    return seq, out


async def deliver_snapshot(runner: HandlerRunner, part: _Partition) -> None:
    """Deliver partition ``part``'s snapshot through the handler, then position it."""
    store = runner.store
    consumer = runner.consumer
    assert consumer is not None
    spec_t = await store.spec(runner.spec.table)
    partitions = len(await consumer.end_offsets())
    taken_ms = int(time.time() * 1000)
    seq, images = await _read_snapshot(
        store,
        spec_t.table_id,
        spec_t.key.partition.name,
        partitions,
        part.p,
        runner.log.partition_for,
    )
    view = spec_t.stream or StreamView.NEW_AND_OLD_IMAGES
    names = spec_t.key.names
    records = []
    for i, data in enumerate(images):
        item = decode_image(data)
        keys = {n: item[n] for n in names}
        records.append(
            ChangeRecord(
                event_id=f"snapshot-{seq}-{part.p}-{i}",
                event_name="SNAPSHOT",
                table=runner.spec.table,
                keys=keys,
                new_image=item,
                old_image=None,
                changed=None,
                sequence_number=seq,
                created_at=datetime_from_ms(taken_ms),
                size_bytes=item_size(item),
                view_type=view,
            )
        )
    runner._log.info("snapshot", partition=part.p, items=len(records), sequence_number=seq)
    chunk = runner.spec.batch_size or 500
    for start in range(0, len(records), chunk):
        items = [
            Item(
                -1,
                message_key(r.keys[spec_t.key.partition.name]),
                encode_change_record(r),
                (),
                taken_ms,
                record=r,
            )
            for r in records[start : start + chunk]
        ]
        effects = Effects(store)
        delivery = runner.delivery
        await delivery.deliver(part, 0, delivery.select(part, 0, items), effects)
        if len(effects):
            await effects.commit_with([])
    end = (await consumer.end_offsets())[part.p]  # first: see _first_position
    found = await consumer.offset_for_time(part.p, taken_ms - _MARGIN_MS)
    offset = end if found is None else found
    await consumer.seek(part.p, offset)
    await store.write_meta({snapshot_key(runner.group, part.p): str(seq)})
    part.snapshot_seq = seq
    await consumer.commit({part.p: offset})
    part.committed = offset
