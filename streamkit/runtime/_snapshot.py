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
from typing import TYPE_CHECKING

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

__all__ = ("deliver_snapshot",)

_MARGIN_MS = 300_000  # commit clocks may step back a little; start reading well before
_READ_CHUNK = 2000  # rows of the table read at a time


async def deliver_snapshot(runner: HandlerRunner, part: _Partition) -> None:
    """Deliver partition ``part``'s snapshot through the handler, then position it.

    The table is read from one consistent snapshot a chunk at a time (the snapshot is
    held while the handler works), so memory holds a chunk and a batch, whatever the
    table's size; the items whose key maps to this partition go to the handler in
    batches of its ``batch_size``."""
    store = runner.store
    consumer = runner.consumer
    assert consumer is not None
    spec_t = await store.spec(runner.spec.table)
    partitions = len(await consumer.end_offsets())
    taken_ms = int(time.time() * 1000)
    view = spec_t.stream or StreamView.NEW_AND_OLD_IMAGES
    names = spec_t.key.names
    pk_name = spec_t.key.partition.name
    pk_is_key = spec_t.key.partition.type in ("S", "B")  # order bytes == message key
    batch = runner.spec.batch_size or 500
    delivery = runner.delivery
    pending: list[Item] = []
    delivered = 0

    async def deliver(items: list[Item]) -> None:
        effects = Effects(store)
        await delivery.deliver(part, 0, delivery.select(part, 0, items), effects)
        if len(effects):
            await effects.commit_with([])

    async with store.engine.read_table(spec_t.table_id) as read:
        seq = read.seq
        while rows := await read.chunk(_READ_CHUNK):
            for pk, _, _, data in rows:
                assert data is not None
                if pk_is_key:  # S or B: the stored key bytes are the message key
                    if runner.log.partition_for(partitions, pk) != part.p:
                        continue  # another partition's item: not even decoded
                    key, item = pk, decode_image(data)
                else:
                    item = decode_image(data)
                    key = message_key(item[pk_name])
                    if runner.log.partition_for(partitions, key) != part.p:
                        continue
                record = ChangeRecord(
                    event_id=f"snapshot-{seq}-{part.p}-{delivered + len(pending)}",
                    event_name="SNAPSHOT",
                    table=runner.spec.table,
                    keys={n: item[n] for n in names},
                    new_image=item,
                    old_image=None,
                    changed=None,
                    sequence_number=seq,
                    created_at=datetime_from_ms(taken_ms),
                    size_bytes=item_size(item),
                    view_type=view,
                )
                pending.append(
                    Item(-1, key, encode_change_record(record), (), taken_ms, record=record)
                )
                if len(pending) == batch:
                    await deliver(pending)
                    delivered += len(pending)
                    pending = []
        if pending:
            await deliver(pending)
            delivered += len(pending)
    runner._log.info("snapshot", partition=part.p, items=delivered, sequence_number=seq)
    end = (await consumer.end_offsets())[part.p]  # first: see _first_position
    found = await consumer.offset_for_time(part.p, taken_ms - _MARGIN_MS)
    offset = end if found is None else found
    await consumer.seek(part.p, offset)
    await store.write_meta({snapshot_key(runner.group, part.p): str(seq)})
    part.snapshot_seq = seq
    await consumer.commit({part.p: offset})
    part.committed = offset
