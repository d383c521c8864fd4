"""What a table is: its key schema, stream, TTL, capacity and recovery settings."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from streamkit.exceptions import ValidationError
from streamkit.records import StreamView
from streamkit.storage._capacity import Capacity, OnDemand, Provisioned
from streamkit.storage._indexes import IndexSpec
from streamkit.storage._keys import KeyAttribute, KeySchema

__all__ = ("PITR_ENABLING", "TableSpec", "check_table_name", "table_name_problems")

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_KEY_NAME = 255  # bytes of a key attribute's name (a table's or an index's)


def table_name_problems(name: str) -> list[str]:
    """The rules a table (or index) name breaks, in DynamoDB's constraint words (empty:
    a good name)."""
    out = []
    if not _NAME_CHARS.match(name):
        out.append("Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")
    if len(name) < 3:
        out.append("Member must have length greater than or equal to 3")
    elif len(name) > 255:
        out.append("Member must have length less than or equal to 255")
    return out


def check_table_name(name: object) -> str:
    """DynamoDB's table-name rule: 3-255 of ``A-Z a-z 0-9 _ - .``."""
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise ValidationError(
            f"table name {name!r} is invalid: use 3 to 255 characters of A-Z, a-z, 0-9, "
            "'_', '-' and '.'"
        )
    return name


PITR_ENABLING = -1  # TableSpec.pitr_from while PITR is being turned on


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table's settings, as stored and as ``describe_table`` reports them."""

    name: str
    key: KeySchema
    stream: StreamView | None = StreamView.NEW_AND_OLD_IMAGES
    ttl_attribute: str | None = None
    capacity: Capacity = field(default_factory=OnDemand)
    pitr: bool = True
    recovery_days: int = 35
    created_at: datetime | None = None
    table_id: int = 0
    indexes: tuple[IndexSpec, ...] = ()
    last_slot: int = 0  # the highest index slot ever used (slots are never reused)
    # bumped by the engine at every settings change: a write prepared with another epoch
    # (an older catalog: no new index, the old TTL attribute, the old stream) is rerun
    epoch: int = 0
    # the label of the table's latest stream once it was turned off or on again after
    # creation (None: the creation time is the label); kept while the stream is off
    stream_label: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # resource tags (key, value), sorted by key
    # global tables: this store's region and every replica's (region, log URL), sorted by
    # region (empty: not replicated); see streamkit/replication/
    region: str | None = None
    replicas: tuple[tuple[str, str], ...] = ()
    # point-in-time recovery turned on after creation: restores reach back to this instant
    # (epoch ms; None: to the table's creation); PITR_ENABLING while the items already
    # there are being entered in the archive (no restore yet)
    pitr_from: int | None = None

    @property
    def pitr_enabling(self) -> bool:
        """Whether PITR was turned on and the archive is still being seeded."""
        return self.pitr and self.pitr_from == PITR_ENABLING

    def index(self, name: str) -> IndexSpec:
        """One of the table's indexes (ValidationError, as DynamoDB, when it has none
        of that name)."""
        for ix in self.indexes:
            if ix.name == name:
                return ix
        raise ValidationError(f"The table does not have the specified index: {name}", path=None)

    def index_storage_range(self) -> tuple[int, int]:
        """The lowest and highest storage ids any index of the table can have had."""
        from streamkit.storage._indexes import storage_id_range

        return storage_id_range(self.table_id)

    @property
    def record_view(self) -> StreamView | None:
        """The view type change records are written with, or None when none are kept.

        A table with no stream but with PITR still keeps full records for its archive.
        """
        if self.stream is not None:
            return self.stream
        return StreamView.NEW_AND_OLD_IMAGES if self.pitr else None

    def with_id(self, table_id: int, created_at: datetime) -> TableSpec:
        """A copy carrying its storage id and creation time."""
        return replace(self, table_id=table_id, created_at=created_at)

    def to_json(self) -> str:
        """Serialize for the catalog."""
        cap = self.capacity
        d: dict[str, Any] = {
            "partition": [self.key.partition.name, self.key.partition.type],
            "sort": None if self.key.sort is None else [self.key.sort.name, self.key.sort.type],
            "stream": None if self.stream is None else self.stream.value,
            "ttl_attribute": self.ttl_attribute,
            "capacity": {"mode": "ON_DEMAND"}
            if isinstance(cap, OnDemand)
            else {"mode": "PROVISIONED", "read": cap.read, "write": cap.write},
            "pitr": self.pitr,
            "recovery_days": self.recovery_days,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "indexes": [ix.to_dict() for ix in self.indexes],
            "last_slot": self.last_slot,
            "epoch": self.epoch,
        }
        if self.stream_label is not None:
            d["stream_label"] = self.stream_label
        if self.tags:
            d["tags"] = [list(t) for t in self.tags]
        if self.replicas:
            d["replication"] = {"region": self.region, "replicas": [list(r) for r in self.replicas]}
        if self.pitr_from is not None:
            d["pitr_from"] = self.pitr_from
        return json.dumps(d)

    @classmethod
    def from_json(cls, name: str, table_id: int, text: str) -> TableSpec:
        """Deserialize from the catalog."""
        d: dict[str, Any] = json.loads(text)
        p = d["partition"]
        s = d["sort"]
        cap_d = d["capacity"]
        capacity: Capacity = (
            OnDemand()
            if cap_d["mode"] == "ON_DEMAND"
            else Provisioned(read=cap_d["read"], write=cap_d["write"])
        )
        return cls(
            name=name,
            key=KeySchema(
                KeyAttribute(p[0], p[1]), None if s is None else KeyAttribute(s[0], s[1])
            ),
            stream=None if d["stream"] is None else StreamView(d["stream"]),
            ttl_attribute=d["ttl_attribute"],
            capacity=capacity,
            pitr=d["pitr"],
            recovery_days=d["recovery_days"],
            created_at=None
            if d["created_at"] is None
            else datetime.fromisoformat(d["created_at"]).astimezone(UTC),
            table_id=table_id,
            indexes=tuple(IndexSpec.from_dict(x) for x in d.get("indexes", ())),
            last_slot=d.get("last_slot", 0),
            epoch=d.get("epoch", 0),
            stream_label=d.get("stream_label"),
            tags=tuple((str(k), str(v)) for k, v in d.get("tags", ())),
            region=d.get("replication", {}).get("region"),
            replicas=tuple(
                (str(r), str(u)) for r, u in d.get("replication", {}).get("replicas", ())
            ),
            pitr_from=d.get("pitr_from"),
        )

    def describe(self) -> dict[str, Any]:
        """A plain description (what ``streamkit tables describe`` prints)."""
        cap = self.capacity
        return {
            "name": self.name,
            "partition_key": {"name": self.key.partition.name, "type": self.key.partition.type},
            "sort_key": None
            if self.key.sort is None
            else {"name": self.key.sort.name, "type": self.key.sort.type},
            "stream": None if self.stream is None else self.stream.value,
            "ttl_attribute": self.ttl_attribute,
            "capacity": "on-demand"
            if isinstance(cap, OnDemand)
            else {"read": cap.read, "write": cap.write},
            "pitr": self.pitr,
            "recovery_days": self.recovery_days,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "indexes": [ix.describe() for ix in self.indexes],
            **({"region": self.region, "replicas": dict(self.replicas)} if self.replicas else {}),
        }
