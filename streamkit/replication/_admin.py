"""Changing a global table's replica set (``app.update_table(name, replicas=...)``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from streamkit.replication._config import check_replicas
from streamkit.replication._replicator import seed_key
from streamkit.replication._seed import PENDING

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("set_replicas",)


async def set_replicas(
    store: Store,
    name: str,
    region: str,
    log_url: str,
    replicas: Mapping[str, str],
    *,
    namespace: str,
) -> TableSpec:
    """Store a table's new replica set; ``{}`` makes it a regional table again.

    Removing a region stops this region's replicator from it at the next check (the
    other regions must remove it too; until they agree, each replicator waits and its
    status says why). Adding a region marks a *seed* pending for it first: this region's
    replication manager then copies the table's items and version rows to the new region
    through its own log, and the new region's replicator from here applies that copy
    before this region's changes after it (see ``_seed``). Every existing region of the
    table adds the region the same way.

    Raises:
        ConfigurationError, ValidationError: a bad replica set (see ``check_replicas``).
    """
    spec = await store.spec(name)
    if not replicas:
        changed = replace(spec, region=None, replicas=())
    else:
        reps = check_replicas(region, log_url, replicas, spec.stream)
        added = {r for r, _ in reps} - {r for r, _ in spec.replicas} - {region}
        if added:
            # stored before the replica set: the manager never publishes the new set
            # without the pending seed (a crash in between leaves a marker for a region
            # not in the set: ignored)
            await store.write_meta({seed_key(namespace, spec, r): PENDING for r in added})
        changed = replace(spec, region=region, replicas=reps)
    # the replica set is the caller's whole answer; every other setting is the latest
    return await store.change_spec(
        name, lambda latest: replace(latest, region=changed.region, replicas=changed.replicas)
    )
