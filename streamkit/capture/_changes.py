"""Reading a table's change stream back from the log (``app.changes``, ``streamkit tail``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

from streamkit._names import table_topic
from streamkit.exceptions import ValidationError
from streamkit.records import ChangeRecord, decode_record

if TYPE_CHECKING:
    from streamkit.log import ChangeLog, LogReader

__all__ = ("Start", "read_changes")

Start = str | datetime | int
"""``"trim_horizon"`` | ``"latest"`` | a datetime | a sequence number."""


def _check_start(start: Start) -> None:
    if isinstance(start, bool) or not (
        start in ("trim_horizon", "latest") or isinstance(start, (datetime, int))
    ):
        raise ValidationError(
            f"start={start!r} must be 'trim_horizon', 'latest', a datetime or a sequence number"
        )
    if isinstance(start, datetime) and start.tzinfo is None:
        raise ValidationError("start= datetimes must be timezone-aware (e.g. UTC)")


async def _position(reader: LogReader, start: Start) -> None:
    if start == "latest":
        await reader.seek_to_end()
    elif isinstance(start, datetime):
        ms = int(start.timestamp() * 1000)
        # end offsets first: a record appended between the lookups is found by time or
        # lies after that end, never skipped
        ends = await reader.end_offsets()
        for p in await reader.partitions():
            offset = await reader.offset_for_time(p, ms)
            await reader.seek(p, ends[p] if offset is None else offset)
    else:  # trim_horizon, or a sequence number (skipped up to below)
        await reader.seek_to_beginning()


async def read_changes(
    log: ChangeLog,
    namespace: str,
    table: str,
    *,
    start: Start = "trim_horizon",
    follow: bool = True,
    poll: float = 0.5,
) -> AsyncIterator[ChangeRecord]:
    """Yield a table's change records from the log, each item's in commit order.

    Args:
        start: where to begin: the oldest kept record, only new ones, the first at or
            after a time, or the first with at least that sequence number.
        follow: keep waiting for new records; with False, stop at the end as it was
            when the iteration began.
        poll: seconds to wait per fetch.
    """
    _check_start(start)
    min_seq = start if isinstance(start, int) and not isinstance(start, bool) else None
    topic = table_topic(namespace, table)
    await log.open()
    while await log.describe_topic(topic) is None:
        if not follow:
            return  # nothing has been published for this table yet
        await asyncio.sleep(poll)
    reader = log.reader(topic)
    try:
        await _position(reader, start)
        ends = None if follow else await reader.end_offsets(settled=True)
        while True:
            if ends is not None:
                positions = {p: await reader.position(p) for p in ends}
                if all(positions[p] >= end for p, end in ends.items()):
                    return
            batch = await reader.fetch(max_records=500, timeout=poll)
            for rec in batch:
                if ends is not None and rec.offset >= ends.get(rec.partition, 0):
                    continue
                record = decode_record(rec.value)
                if min_seq is not None and record.sequence_number < min_seq:
                    continue
                yield record
    finally:
        await reader.close()
