"""What a global table's replica set is, and the checks that keep it sound.

``create_table(..., replicas={region: log_url, ...})`` names every region of the table
(this one included) and where its change log is. A replica set is refused at once —
never discovered later as a divergence — when:

* the App has no region of its own (``region=`` unset: "local" is not a region);
* a region name is not 1-40 characters of ``A-Z a-z 0-9 _ -`` (it names consumer
  groups and checkpoint keys);
* this region's entry names another log than the App's own;
* a peer's log is this region's own log (a peer that is the region itself), or two
  regions share one log;
* the table's stream is not ``NEW_AND_OLD_IMAGES`` (as DynamoDB requires: a replicated
  change carries the whole new item).

Settings that must agree across regions (key schema, stream, TTL attribute, the replica
set) are compared at run time from each region's published *settings* (see
:mod:`streamkit.replication._settings`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamkit.exceptions import ConfigurationError, ValidationError
from streamkit.records import DEFAULT_REGION, StreamView

__all__ = (
    "check_region",
    "check_replicas",
    "replicator_name",
    "same_log",
    "settings_of",
    "settings_problem",
)

_REGION = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def check_region(region: object) -> str:
    """A region name (ConfigurationError if it cannot be one)."""
    if not isinstance(region, str) or not _REGION.match(region):
        raise ConfigurationError(
            f"region {region!r} must be 1-40 characters of A-Z a-z 0-9 _ - "
            "(it names the replicators' consumer groups and checkpoints)"
        )
    return region


def _log_identity(url: str) -> tuple[str, ...]:
    """What makes two log URLs the same log: the resolved path of a local log, the
    sorted broker list of a Kafka cluster."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    if scheme == "local":
        return ("local", str(Path(rest).expanduser().resolve()))
    if scheme == "kafka":
        return ("kafka", *sorted(b.strip().lower() for b in rest.split(",") if b.strip()))
    raise ConfigurationError(
        f"unsupported change-log URL {url!r} in replicas: use local://path or kafka://host:port"
    )


def same_log(a: str, b: str) -> bool:
    """True when two change-log URLs name the same log."""
    return _log_identity(a) == _log_identity(b)


def check_replicas(
    region: str, log_url: str, replicas: Mapping[str, str], stream: StreamView | str | None
) -> tuple[tuple[str, str], ...]:
    """The replica set as stored: ``(region, log URL)`` pairs sorted by region, this
    region included (added with the App's log when the mapping leaves it out).

    Raises:
        ConfigurationError: see the module docstring.
        ValidationError: not a mapping, fewer than two regions, or a stream other
            than NEW_AND_OLD_IMAGES.
    """
    if not isinstance(replicas, Mapping):
        raise ValidationError(
            f"replicas must map region names to change-log URLs, got {type(replicas).__name__}"
        )
    if region == DEFAULT_REGION:
        raise ConfigurationError(
            "a global table needs the App's own region: create the App with "
            "region='us-east-1' (or STREAMKIT_REGION); 'local' is not a region"
        )
    check_region(region)
    if stream not in (StreamView.NEW_AND_OLD_IMAGES, StreamView.NEW_AND_OLD_IMAGES.value):
        raise ValidationError(
            "a global table replicates whole items: its stream must be NEW_AND_OLD_IMAGES "
            f"(as DynamoDB requires), not {stream!r}"
        )
    out: dict[str, str] = {}
    for name, url in replicas.items():
        check_region(name)
        if not isinstance(url, str):
            raise ConfigurationError(f"replicas[{name!r}] must be a log URL, got {url!r}")
        _log_identity(url)
        out[name] = url
    own = out.setdefault(region, log_url)
    if not same_log(own, log_url):
        raise ConfigurationError(
            f"replicas[{region!r}] is {own!r}, but this App (region {region!r}) writes its "
            f"changes to {log_url!r}: this region's entry must name its own log"
        )
    out[region] = log_url
    for name, url in out.items():
        if name == region:
            continue
        if same_log(url, log_url):
            raise ConfigurationError(
                f"replica {name!r} names {url!r}, this region's ({region!r}) own change log: "
                "a peer cannot be the region itself (each region has its own log)"
            )
        for other, other_url in out.items():
            if other < name and other != region and same_log(url, other_url):
                raise ConfigurationError(
                    f"replicas {other!r} and {name!r} name one change log ({url!r}): "
                    "each region has its own"
                )
    if len(out) < 2:
        raise ValidationError(
            "replicas must name at least one other region (a global table has two or more)"
        )
    return tuple(sorted(out.items()))


def replicator_name(peer: str, region: str) -> str:
    """The replicator's handler name: it names its consumer group on the peer's log
    (unique per reading region) and its checkpoints in this region's store (unique per
    peer)."""
    return f"replica-{peer}-to-{region}"


def settings_of(spec: Any) -> dict[str, Any]:
    """The settings of a replicated table that every region must agree on."""
    key = spec.key
    return {
        "table": spec.name,
        "region": spec.region,
        "partition_key": [key.partition.name, key.partition.type],
        "sort_key": None if key.sort is None else [key.sort.name, key.sort.type],
        "stream": None if spec.stream is None else spec.stream.value,
        "ttl_attribute": spec.ttl_attribute,
        "replicas": sorted(r for r, _ in spec.replicas),
    }


def settings_problem(local: Mapping[str, Any], peer: Mapping[str, Any] | None) -> str | None:
    """Why a peer's table cannot be replicated into this one (None: it can)."""
    if peer is None:
        return "the peer has not published this table's settings yet (is it created there?)"
    name = peer.get("region")
    for field in ("partition_key", "sort_key", "stream", "ttl_attribute"):
        if local.get(field) != peer.get(field):
            return (
                f"{field} differs: {peer.get(field)!r} in {name}, {local.get(field)!r} here; "
                "a global table's key schema, stream and TTL must be the same in every region"
            )
    if local.get("replicas") != peer.get("replicas"):
        return (
            f"the replica sets differ: {peer.get('replicas')} in {name}, "
            f"{local.get('replicas')} here; update every region's replicas= to the same set"
        )
    return None
