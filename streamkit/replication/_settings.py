"""Each region's replicated-table settings, published in its own change log.

A region cannot read another's store, only its log. So every region appends the
settings of each of its replicated tables (:func:`~._config.settings_of`: key schema,
stream, TTL attribute, replica set) to one topic of its log,
``__streamkit_replication.{namespace}`` (one partition, kept for ever; outside
``{namespace}.`` so no table or DLQ topic can take its name), whenever its replicators
start and whenever those settings change. A replicator reads its peer's latest entry
for the table and applies nothing while the two differ (the replicator's status names
the difference).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from streamkit.log import OutRecord, TopicConfig

if TYPE_CHECKING:
    from streamkit.log import ChangeLog

__all__ = ("SETTINGS_CONFIG", "publish_settings", "read_settings", "settings_topic")

SETTINGS_CONFIG = TopicConfig(partitions=1, retention_ms=-1, cleanup_policy="delete")


def settings_topic(namespace: str) -> str:
    """The topic of a region's replicated-table settings."""
    return f"__streamkit_replication.{namespace}"


async def publish_settings(log: ChangeLog, namespace: str, settings: dict[str, Any]) -> None:
    """Append one table's settings to this region's settings topic."""
    topic = settings_topic(namespace)
    await log.open()
    await log.ensure_topic(topic, SETTINGS_CONFIG)
    body = dict(settings, at_ms=int(time.time() * 1000))
    producer = log.producer(f"{topic}-{settings['region']}-{settings['table']}")
    await producer.start()
    try:
        await producer.append(
            [
                OutRecord(
                    topic,
                    str(settings["table"]).encode(),
                    json.dumps(body, sort_keys=True).encode(),
                    partition=0,
                )
            ]
        )
    finally:
        await producer.close()


async def read_settings(log: ChangeLog, namespace: str) -> dict[str, dict[str, Any]]:
    """The latest published settings of every table in a region's log, by table."""
    topic = settings_topic(namespace)
    await log.open()
    if await log.describe_topic(topic) is None:
        return {}
    reader = log.reader(topic, partitions=[0])
    out: dict[str, dict[str, Any]] = {}
    try:
        end = (await reader.end_offsets()).get(0, 0)
        await reader.seek_to_beginning(0)
        while await reader.position(0) < end:
            records = await reader.fetch(max_records=1000, timeout=0.5)
            if not records:
                break
            for r in records:
                try:
                    body = json.loads(r.value)
                except ValueError:
                    continue
                if isinstance(body, dict) and isinstance(body.get("table"), str):
                    out[body["table"]] = body
    finally:
        await reader.close()
    return out
