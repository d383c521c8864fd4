"""Global tables through the endpoint (version 2019.11.21): ``UpdateTable`` with
``ReplicaUpdates`` and ``DescribeTable``'s ``Replicas``.

DynamoDB takes region names only; a streamkit region is an App with its own change
log, so the server must know each peer region's log URL: ``streamkit serve --region R
--peer REGION=LOG_URL ...``. Each region declares the replica set itself (DynamoDB
creates the table in the other region for you; here the other region's endpoint is
called too, with the table created there): until both agree, replication waits and
``streamkit replicas TABLE`` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamkit.server._errors import INVALID, validation

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec

__all__ = ("GLOBAL_TABLE_VERSION", "describe_replicas", "plan_replica_updates")

GLOBAL_TABLE_VERSION = "2019.11.21"


def describe_replicas(spec: TableSpec) -> dict[str, Any]:
    """``DescribeTable``'s global-table fields: the other regions, each ``ACTIVE``."""
    if not spec.replicas:
        return {}
    return {
        "GlobalTableVersion": GLOBAL_TABLE_VERSION,
        "Replicas": [
            {"RegionName": r, "ReplicaStatus": "ACTIVE"}
            for r, _ in spec.replicas
            if r != spec.region
        ],
    }


def plan_replica_updates(
    spec: TableSpec,
    updates: Any,
    *,
    region: str | None,
    log_url: str,
    peers: Mapping[str, str],
) -> dict[str, str]:
    """The replica set ``ReplicaUpdates`` asks for (``{}``: regional again), checked
    before anything changes."""
    if region is None:
        raise validation(
            "ReplicaUpdates need the server's region and its peers' change logs: start it "
            "with --region REGION and --peer OTHER_REGION=LOG_URL for each other region"
        )
    if not isinstance(updates, list) or not updates:
        raise validation(
            "1 validation error detected: Value '[]' at 'replicaUpdates' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    current = dict(spec.replicas) if spec.replicas else {region: log_url}
    seen: set[str] = set()
    for update in updates:
        if not isinstance(update, dict) or len(update) != 1:
            raise validation(
                f"{INVALID}One of Create, Update or Delete must be given for each replica "
                "update, and only one"
            )
        ((action, body),) = update.items()
        name = body.get("RegionName") if isinstance(body, dict) else None
        if action not in ("Create", "Update", "Delete") or not isinstance(name, str) or not name:
            raise validation(
                f"{INVALID}Each replica update needs Create, Update or Delete with a RegionName"
            )
        if name in seen:
            raise validation(f"{INVALID}Region {name} is named by more than one replica update")
        seen.add(name)
        if name == region:
            raise validation(
                f"{INVALID}Region {name} is this endpoint's own region: its replica is this "
                "table (add or remove the other regions)"
            )
        if action == "Update":
            raise validation(
                f"{INVALID}Replica updates (throughput, indexes or table class per replica) "
                "are not supported: every replica has the table's settings"
            )
        if action == "Create":
            if name in current:
                raise validation(f"{INVALID}Region {name} is already a replica of {spec.name}")
            url = peers.get(name)
            if url is None:
                raise validation(
                    f"{INVALID}Region {name} is not a peer of this server: start it with "
                    f"--peer {name}=LOG_URL (the change log of that region's streamkit)"
                )
            current[name] = url
        else:
            if name not in current:
                raise validation(f"{INVALID}Region {name} is not a replica of {spec.name}")
            del current[name]
    return {} if set(current) == {region} else current
