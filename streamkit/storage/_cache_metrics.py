"""Prometheus metrics of the cache (``streamkit_cache_*``).

The cache counts in plain attributes on the event loop; this collector turns them
into metric families when ``/metrics`` is scraped (as the runtime's metrics do), so a
hit costs no lock. ``App.metrics`` registers it when the App has a cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamkit.storage._cache import CacheEngine

__all__ = ("CacheCollector",)

_COUNTERS = {
    "hits": ("streamkit_cache_hits", "Reads served from the cache"),
    "misses": ("streamkit_cache_misses", "Cacheable reads that went to storage"),
    "evictions": ("streamkit_cache_evictions", "Entries evicted to stay within max_bytes"),
    "invalidations": (
        "streamkit_cache_invalidations",
        "Entries dropped because a change touched them (or their table)",
    ),
    "gaps": (
        "streamkit_cache_gaps",
        "Times the follower found change rows pruned before it read them (cache dropped)",
    ),
}


class CacheCollector:
    """Exports one cache's statistics."""

    def __init__(self, cache: CacheEngine) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Any]:
        """The metric families (called by prometheus_client on a scrape)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.cache.stats()
        for attr, (name, doc) in _COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=stats[attr])
        yield GaugeMetricFamily("streamkit_cache_bytes", "Bytes charged", value=stats["bytes"])
        yield GaugeMetricFamily(
            "streamkit_cache_max_bytes", "The memory budget", value=stats["max_bytes"]
        )
        yield GaugeMetricFamily(
            "streamkit_cache_entries", "Item and query entries held", value=stats["entries"]
        )
        yield GaugeMetricFamily(
            "streamkit_cache_following",
            "1 while the follower applies the store's changes (else nothing is served)",
            value=1 if stats["following"] else 0,
        )
        stale = GaugeMetricFamily(
            "streamkit_cache_staleness_ms",
            "Change committed to entry dropped, over the last changes (milliseconds)",
            labels=["quantile"],
        )
        for q in ("p50", "p99"):
            v = stats["staleness_ms"][q]
            if v is not None:
                stale.add_metric([q[1:] and f"0.{q[1:]}"], v)
        yield stale
