"""Where each handler stands, read from the log alone (any process may ask).

Per handler: lag (records committed to the table's topic that its group has not
committed past), iterator age (now minus the creation time of the oldest
unprocessed record), DLQ depth, and hours of retention headroom (how long before
the oldest unprocessed record would expire from the topic).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from streamkit._names import handler_group, table_topic
from streamkit.runtime._dlq import DeadLetterQueue

if TYPE_CHECKING:
    from streamkit.log import ChangeLog
    from streamkit.runtime._registry import HandlerSpec

__all__ = ("handler_status",)


async def _oldest_unprocessed_ms(
    log: ChangeLog, topic: str, partition: int, offset: int
) -> int | None:
    reader = log.reader(topic, partitions=[partition])
    try:
        await reader.seek(partition, offset)
        records = await reader.fetch(max_records=1, timeout=0.5)
        return records[0].timestamp_ms if records else None
    finally:
        await reader.close()


async def handler_status(
    log: ChangeLog,
    namespace: str,
    spec: HandlerSpec,
    *,
    retention_ms: int,
    dlq: DeadLetterQueue,
) -> dict[str, Any]:
    """The handler's lag, iterator age, DLQ depth and retention headroom."""
    topic = table_topic(namespace, spec.table)
    out: dict[str, Any] = {
        "handler": spec.name,
        "table": spec.table,
        "group": handler_group(namespace, spec.table, spec.name),
        "lag": 0,
        "partitions": {},
        "iterator_age_s": 0.0,
        "retention_headroom_h": None if retention_ms < 0 else round(retention_ms / 3_600_000, 2),
        "dlq_depth": await dlq.depth(),
        "dlq_topic": dlq.topic,
    }
    await log.open()
    if await log.describe_topic(topic) is None:
        out["note"] = "nothing published for this table yet"
        return out
    reader = log.reader(topic, group=out["group"])
    try:
        ends = await reader.end_offsets()
        begins = await reader.beginning_offsets()
        committed = await reader.committed()
    finally:
        await reader.close()
    now_ms = time.time() * 1000
    oldest: float | None = None
    for p in sorted(ends):
        start = max(committed.get(p, begins.get(p, 0)), begins.get(p, 0))
        lag = max(0, ends[p] - start)
        out["partitions"][p] = {"committed": committed.get(p), "end": ends[p], "lag": lag}
        out["lag"] += lag
        if lag:
            ts = await _oldest_unprocessed_ms(log, topic, p, start)
            if ts is not None:
                oldest = ts if oldest is None else min(oldest, ts)
    if oldest is not None:
        age = max(0.0, now_ms - oldest)
        out["iterator_age_s"] = round(age / 1000, 3)
        if retention_ms >= 0:
            out["retention_headroom_h"] = round(max(0.0, retention_ms - age) / 3_600_000, 2)
    return out
