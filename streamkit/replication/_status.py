"""Where a global table's replication stands, and its Prometheus metrics.

``app.replication_status(table)`` and ``streamkit replicas TABLE`` show, per peer: the
lag (records of the peer's table topic this region's replicator has not committed past,
and the age in seconds of the oldest of them), the conflicts last-writer-wins resolved
against the peer's writes (stored with the writes, so exact across restarts), whether
the replicator is running (in this process, or from its heartbeat in the store when
another process runs it), and why it waits, if it does (settings that differ, an
unreachable log).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from streamkit._names import handler_group, table_topic
from streamkit.exceptions import StreamkitError, ValidationError
from streamkit.log import ChangeLog, from_url
from streamkit.replication._config import replicator_name
from streamkit.replication._replicator import conflicts_key, heartbeat_key

if TYPE_CHECKING:
    from streamkit.replication._replicator import Replication
    from streamkit.storage._store import Store

__all__ = ("ReplicationCollector", "peer_lag", "replication_status")

_STALE_MS = 15_000  # a heartbeat older than this: the replicator is not running


async def peer_lag(log: ChangeLog, topic: str, group: str) -> tuple[int, float]:
    """``(records, seconds)``: records of ``topic`` that ``group`` has not committed
    past, and the age of the oldest of them."""
    await log.open()
    if await log.describe_topic(topic) is None:
        return 0, 0.0
    reader = log.reader(topic, group=group)
    try:
        ends = await reader.end_offsets()
        begins = await reader.beginning_offsets()
        committed = await reader.committed()
    finally:
        await reader.close()
    lag = 0
    oldest: int | None = None
    for p in sorted(ends):
        start = max(committed.get(p, begins.get(p, 0)), begins.get(p, 0))
        n = max(0, ends[p] - start)
        lag += n
        if n:
            one = log.reader(topic, partitions=[p])
            try:
                await one.seek(p, start)
                got = await one.fetch(max_records=1, timeout=0.5)
            finally:
                await one.close()
            if got:
                oldest = got[0].timestamp_ms if oldest is None else min(oldest, got[0].timestamp_ms)
    age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
    return lag, round(age, 3)


async def replication_status(
    store: Store, namespace: str, table: str, replication: Replication | None
) -> dict[str, Any]:
    """The replication status of ``table`` (see the module docstring).

    Raises:
        TableNotFound: no such table. ValidationError: the table has no replicas.
    """
    await store.reload()
    spec = await store.spec(table)
    if not spec.replicas:
        raise ValidationError(
            f"table {table!r} is not a global table: create it with replicas={{region: log_url}}"
        )
    region = spec.region or ""
    keys = []
    for peer, _ in spec.replicas:
        if peer != region:
            keys += [conflicts_key(namespace, spec, peer), heartbeat_key(namespace, spec, peer)]
    meta = await store.read_meta(tuple(keys))
    now_ms = int(time.time() * 1000)
    peers: list[dict[str, Any]] = []
    for peer, url in spec.replicas:
        if peer == region:
            continue
        beat_text = meta.get(heartbeat_key(namespace, spec, peer))
        beat: dict[str, Any] = json.loads(beat_text) if beat_text else {}
        rep = None if replication is None else replication.get(table, peer)
        if rep is not None:
            running = rep.running
            error, problem = rep.error, rep.problem
        else:
            fresh = now_ms - int(beat.get("at_ms", 0)) < _STALE_MS
            running = bool(fresh and beat.get("running"))
            error = beat.get("error") if fresh else None
            problem = beat.get("problem") if fresh else None
        entry: dict[str, Any] = {
            "peer": peer,
            "log": url,
            "running": running,
            "conflicts": int(meta.get(conflicts_key(namespace, spec, peer), 0)),
            "lag_records": None,
            "lag_seconds": None,
            "waiting_for": problem,
            "error": error,
            "last_heartbeat_ms": beat.get("at_ms"),
        }
        group = handler_group(namespace, table, replicator_name(peer, region))
        log = replication.peer_log(url) if replication is not None else from_url(url)
        try:
            entry["lag_records"], entry["lag_seconds"] = await peer_lag(
                log, table_topic(namespace, table), group
            )
        except StreamkitError as e:
            entry["error"] = entry["error"] or f"peer log unreachable: {e}"
        finally:
            if replication is None:
                await log.close()
        peers.append(entry)
    return {
        "table": table,
        "region": region,
        "replicas": dict(spec.replicas),
        "peers": peers,
    }


class ReplicationCollector:
    """Prometheus metrics of the replicators of one App (registered in ``app.metrics``):
    ``streamkit_replication_conflicts_total`` (writes last-writer-wins discarded, per
    table and peer), ``streamkit_replication_running`` and
    ``streamkit_replication_lag_records`` (from the replicator's partition lags)."""

    def __init__(self, replication: Replication) -> None:
        self.replication = replication

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["table", "peer"]
        conflicts = CounterMetricFamily(
            "streamkit_replication_conflicts",
            "Replicated writes discarded by last-writer-wins (an older write than the item's)",
            labels=labels,
        )
        running = GaugeMetricFamily(
            "streamkit_replication_running", "1 while the replicator runs", labels=labels
        )
        lag = GaugeMetricFamily(
            "streamkit_replication_lag_records",
            "Records of the peer's table topic not yet applied here",
            labels=labels,
        )
        for rep in list(self.replication.replicators.values()):
            conflicts.add_metric([rep.table, rep.peer], rep.conflicts)
            running.add_metric([rep.table, rep.peer], 1.0 if rep.running else 0.0)
            m = None if rep.runner is None else rep.runner.metrics
            lag.add_metric([rep.table, rep.peer], sum(m.lag.values()) if m is not None else 0)
        yield conflicts
        yield running
        yield lag
