"""Prometheus metrics of the handler runtime (served by ``streamkit run --metrics-port``).

Every metric is labelled with ``table`` and ``handler``; lag is per ``partition`` too.
Each App has its own registry, so two apps in one process (tests) never collide.
"""

from __future__ import annotations

from typing import Any

__all__ = ("HandlerMetrics", "RuntimeMetrics")


class HandlerMetrics:
    """The metrics of one handler, with its labels bound."""

    def __init__(self, parent: RuntimeMetrics, table: str, handler: str) -> None:
        labels = {"table": table, "handler": handler}
        self.records_in = parent.records_in.labels(**labels)
        self.processed = parent.processed.labels(**labels)
        self.filtered = parent.filtered.labels(**labels)
        self.failed = parent.failed.labels(**labels)
        self.retries = parent.retries.labels(**labels)
        self.dead_lettered = parent.dead_lettered.labels(**labels)
        self.dropped = parent.dropped.labels(**labels)
        self.batch_duration = parent.batch_duration.labels(**labels)
        self.iterator_age = parent.iterator_age.labels(**labels)
        self._lag = parent.lag
        self._labels = labels

    def set_lag(self, partition: int, lag: int) -> None:
        """Records in ``partition`` not yet processed by this handler."""
        self._lag.labels(partition=str(partition), **self._labels).set(lag)


class RuntimeMetrics:
    """The runtime's metrics in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        lbl = ("table", "handler")

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, lbl, registry=self.registry)

        self.records_in = counter("streamkit_handler_records_in", "Records read for the handler")
        self.processed = counter(
            "streamkit_handler_records_processed", "Records the handler processed successfully"
        )
        self.filtered = counter(
            "streamkit_handler_records_filtered", "Records skipped by events, changed= or filter="
        )
        self.failed = counter(
            "streamkit_handler_records_failed", "Records in failed invocations (each attempt)"
        )
        self.retries = counter("streamkit_handler_retries", "Invocations retried")
        self.dead_lettered = counter(
            "streamkit_handler_records_dead_lettered", "Records sent to the handler's DLQ"
        )
        self.dropped = counter(
            "streamkit_handler_records_dropped", "Records given up with on_failure='drop'"
        )
        self.batch_duration = Histogram(
            "streamkit_handler_invocation_seconds",
            "Duration of one handler invocation",
            lbl,
            registry=self.registry,
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
            ),
        )
        self.iterator_age = Gauge(
            "streamkit_handler_iterator_age_seconds",
            "Now minus the creation time of the newest record processed",
            lbl,
            registry=self.registry,
        )
        self.lag = Gauge(
            "streamkit_handler_lag_records",
            "Records in the partition not yet processed by the handler",
            (*lbl, "partition"),
            registry=self.registry,
        )

    def handler(self, table: str, handler: str) -> HandlerMetrics:
        """The bound metrics of one handler."""
        return HandlerMetrics(self, table, handler)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` over HTTP in a background thread; returns the server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def text(self) -> str:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
