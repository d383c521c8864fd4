"""Prometheus metrics of the handler runtime (served by ``streamkit run --metrics-port``).

Every handler metric is labelled with ``handler`` and ``table``; lag is per
``partition`` too. With a relay watched (:meth:`RuntimeMetrics.watch_capture`, done by
``streamkit run`` when it runs the relay), ``streamkit_capture_tables_failing`` counts
the tables whose change capture is set aside and ``streamkit_capture_rows_kept`` their
waiting rows (per ``table``).
The runtime counts in plain attributes (it runs on one event loop: no locks, a few
nanoseconds per update, which matters at tens of thousands of records per second);
a collector turns them into Prometheus metric families when ``/metrics`` is scraped.
Each App has its own registry, so two apps in one process (tests) never collide.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

__all__ = ("BUCKETS", "HandlerMetrics", "RuntimeMetrics")

#: Upper bounds (seconds) of the invocation-duration histogram's buckets.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_COUNTERS = {
    "records_in": "Records read for the handler",
    "processed": "Records the handler processed successfully",
    "filtered": "Records skipped by events, changed= or filter=",
    "failed": "Records in failed invocations (each attempt)",
    "retries": "Invocations retried",
    "dead_lettered": "Records sent to the handler's DLQ",
    "dropped": "Records given up with on_failure='drop'",
}
_NAMES = {
    "records_in": "streamkit_handler_records_in",
    "processed": "streamkit_handler_records_processed",
    "filtered": "streamkit_handler_records_filtered",
    "failed": "streamkit_handler_records_failed",
    "retries": "streamkit_handler_retries",
    "dead_lettered": "streamkit_handler_records_dead_lettered",
    "dropped": "streamkit_handler_records_dropped",
}


class HandlerMetrics:
    """The counts of one handler (plain attributes; read by the collector)."""

    __slots__ = (
        "buckets",
        "dead_lettered",
        "dropped",
        "duration_count",
        "duration_sum",
        "failed",
        "filtered",
        "handler",
        "iterator_age",
        "lag",
        "processed",
        "records_in",
        "retries",
        "table",
    )

    def __init__(self, table: str, handler: str) -> None:
        self.table = table
        self.handler = handler
        self.records_in = 0
        self.processed = 0
        self.filtered = 0
        self.failed = 0
        self.retries = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.iterator_age = 0.0
        self.lag: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0

    def observe(self, seconds: float) -> None:
        """One invocation took ``seconds``."""
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def set_lag(self, partition: int, lag: int) -> None:
        """Records in ``partition`` not yet processed by this handler."""
        self.lag[partition] = lag

    def values(self) -> dict[str, Any]:
        """The counts as plain data."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        out["iterator_age_s"] = self.iterator_age
        out["lag"] = dict(self.lag)
        out["invocations"] = self.duration_count
        return out


class _Collector:
    def __init__(self, owner: RuntimeMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        handlers = list(self.owner.handlers.values())
        labels = ["handler", "table"]
        for attr, doc in _COUNTERS.items():
            family = CounterMetricFamily(_NAMES[attr], doc, labels=labels)
            for h in handlers:
                family.add_metric([h.handler, h.table], getattr(h, attr))
            yield family
        hist = HistogramMetricFamily(
            "streamkit_handler_invocation_seconds",
            "Duration of one handler invocation",
            labels=labels,
        )
        for h in handlers:
            running = 0
            buckets = []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], h.buckets, strict=True):
                running += n
                buckets.append((bound, running))
            hist.add_metric([h.handler, h.table], buckets, h.duration_sum)
        yield hist
        age = GaugeMetricFamily(
            "streamkit_handler_iterator_age_seconds",
            "Now minus the creation time of the newest record processed",
            labels=labels,
        )
        for h in handlers:
            age.add_metric([h.handler, h.table], h.iterator_age)
        yield age
        lag = GaugeMetricFamily(
            "streamkit_handler_lag_records",
            "Records in the partition not yet processed by the handler",
            labels=[*labels, "partition"],
        )
        for h in handlers:
            for p, n in sorted(dict(h.lag).items()):
                lag.add_metric([h.handler, h.table, str(p)], n)
        yield lag
        capture = self.owner.capture
        if capture is not None:
            failing = dict(capture.failing)
            yield GaugeMetricFamily(
                "streamkit_capture_tables_failing",
                "Tables whose change capture is set aside: their topic cannot be made, "
                "their rows are kept in storage and not published",
                value=len(failing),
            )
            kept = GaugeMetricFamily(
                "streamkit_capture_rows_kept",
                "Rows of a set-aside table kept in storage, waiting to be published",
                labels=["table"],
            )
            for table, info in sorted(failing.items()):
                kept.add_metric([table], info.get("rows_kept", 0))
            yield kept


class RuntimeMetrics:
    """The runtime's metrics in their own Prometheus registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.handlers: dict[str, HandlerMetrics] = {}
        self.capture: Any = None  # a RelayStatus (its ``failing`` tables), when watched
        self.registry.register(_Collector(self))

    def watch_capture(self, status: Any) -> None:
        """Export the capture gauges from a relay's ``RelayStatus`` (``app.relay.status``)."""
        self.capture = status

    def handler(self, table: str, handler: str) -> HandlerMetrics:
        """The metrics of one handler (created on first use, then the same object)."""
        m = self.handlers.get(handler)
        if m is None:
            m = self.handlers[handler] = HandlerMetrics(table, handler)
        return m

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` over HTTP in a background thread; returns the server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def text(self) -> str:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
