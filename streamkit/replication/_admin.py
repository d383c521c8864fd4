"""Changing a global table's replica set (``app.update_table(name, replicas=...)``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from streamkit.exceptions import NotYetAvailable
from streamkit.replication._config import check_replicas

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("set_replicas",)


async def set_replicas(
    store: Store, name: str, region: str, log_url: str, replicas: Mapping[str, str]
) -> TableSpec:
    """Store a table's new replica set; ``{}`` makes it a regional table again.

    Removing a region stops this region's replicator from it at the next check (the
    other regions must remove it too; until they agree, each replicator waits and its
    status says why). Adding a region is accepted while the table holds no items here;
    copying the items of a table in use to a new region is not built yet.

    Raises:
        NotYetAvailable: a region is added to a table that has items.
        ConfigurationError, ValidationError: a bad replica set (see ``check_replicas``).
    """
    spec = await store.spec(name)
    if not replicas:
        changed = replace(spec, region=None, replicas=())
    else:
        reps = check_replicas(region, log_url, replicas, spec.stream)
        added = {r for r, _ in reps} - {r for r, _ in spec.replicas} - {region}
        if added:
            count, _ = await store.engine.table_stats(spec.table_id)
            if count:
                raise NotYetAvailable(
                    f"adding region(s) {sorted(added)} to table {name!r}, which holds {count} "
                    "items: copying a table in use to a new region is not built yet. Create "
                    "the table in every region before writing to it, or copy the items into "
                    "the new region's table (a backup restored there) before adding it"
                )
        changed = replace(spec, region=region, replicas=reps)
    stored = await store.engine.update_table(changed)
    store.remember(stored)
    return stored
