"""Global tables: every region an App with its own store and log, a replicator per
(table, peer) applying the peers' changes here with last-writer-wins.

See ``docs/design/global-tables.md`` and ``docs/guides/global-tables.md``.
"""

from streamkit.replication._admin import set_replicas
from streamkit.replication._config import check_region, check_replicas, replicator_name
from streamkit.replication._replicator import (
    PeerReplicator,
    ReplicaSettingsMismatch,
    Replication,
    ReplicationOptions,
    prune_tombstones,
)
from streamkit.replication._status import ReplicationCollector, replication_status

__all__ = (
    "PeerReplicator",
    "ReplicaSettingsMismatch",
    "Replication",
    "ReplicationCollector",
    "ReplicationOptions",
    "check_region",
    "check_replicas",
    "prune_tombstones",
    "replication_status",
    "replicator_name",
    "set_replicas",
)
