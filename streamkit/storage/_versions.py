"""Hidden per-item versions of replicated tables (global tables' last writer wins).

Every item of a table with replicas has a *version row*: ``(timestamp ms, region,
tombstone)`` of the write that made it as it is. Version rows are stored like index
entries, in the engine's item rows under a storage id of their own — slot 0 of the
table's index range, ``-(table_id * 1024)``, which no index uses — so they are never
part of the user's item, its size, a scan, a backup or a change record, and
``delete_table`` removes them with the index entries.

* A **local write** (any put, update, delete, transaction action, TTL deletion or
  handler context write that changes the item) stamps its version
  ``max(now, stored timestamp + 1)``: a hybrid logical clock per item, so a write always
  beats the version it overwrote, even when this region's clock jumped backwards. The
  change record's ``created_at`` is that timestamp, which is how the version travels to
  the other regions (no new record field).
* A **replicated write** (:class:`ReplicaOp`, from a peer's change record) applies only
  when its ``(timestamp, region)`` is greater than the stored version: otherwise it is
  a conflict lost to last-writer-wins, counted in ``sk_meta`` (exactly once, in the same
  transaction as the replicator's checkpoint) and nothing is written.
* A **delete** leaves a version row with ``tombstone=True`` (its ``expires`` column is the
  deletion time, so :func:`prune_tombstones` can find old ones with the engine's
  ``expired`` read) holding the item's key, so a late, older write cannot bring the item
  back. Tombstones older than the horizon are pruned (:class:`TombstonePruneOp`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamkit.records._avro import decode_image, encode_image
from streamkit.records._values import Item

if TYPE_CHECKING:
    from streamkit.records import UserIdentity
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._write_ops import ItemKey, Rows

__all__ = (
    "ReplicaOp",
    "TombstonePruneOp",
    "Version",
    "decode_version",
    "encode_version",
    "extra_meta_keys",
    "extra_reads",
    "load_version",
    "version_storage_id",
)

_SLOTS = 1024  # the index slots per table (streamkit.storage._indexes); slot 0 is ours


def version_storage_id(table_id: int) -> int:
    """Where a table's version rows are stored (slot 0 of its index range)."""
    return -(table_id * _SLOTS)


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A write's place in last-writer-wins order: its timestamp, then its region's name
    (so two regions' writes in the same millisecond are ordered the same everywhere)."""

    ts: int
    region: str
    tombstone: bool = False

    def beats(self, other: Version | None) -> bool:
        """True when a write of this version wins over ``other`` (None: no version)."""
        return other is None or (self.ts, self.region) > (other.ts, other.region)


def encode_version(v: Version, key: Item | None = None) -> bytes:
    """A version row's bytes (an item image, like every row; tombstones keep the key)."""
    d: dict[str, Any] = {"t": Decimal(v.ts), "r": v.region, "d": v.tombstone}
    if key is not None:
        d["k"] = key
    return encode_image(d)


def decode_version(data: bytes) -> tuple[Version, Item | None]:
    """A version row's version and, for a tombstone, the item's key."""
    d = decode_image(data)
    key = d.get("k")
    return Version(int(d["t"]), str(d["r"]), bool(d["d"])), (
        dict(key) if isinstance(key, dict) else None
    )


def load_version(rows: Rows, spec: TableSpec, k: ItemKey) -> Version | None:
    """The stored version of an item, in the caller's transaction."""
    got = rows.load(version_storage_id(spec.table_id), k.pk, k.sk)
    return None if got is None else decode_version(got[0])[0]


@dataclass(slots=True)
class ReplicaOp:
    """Apply a peer region's change to an item, if it is newer than the stored version.

    ``item`` is the item after the change (None: the item was deleted). Run like any
    write op (in a replicator's context writes, with its checkpoint): the plan sets
    :attr:`outcome` to ``"applied"`` (it won; the item may still be unchanged when the
    images are equal: no record then), ``"conflict"`` (an older write: discarded and
    counted under ``counter_key``) or ``"duplicate"`` (this very version is stored:
    delivered twice).

    The change record it writes says ``origin`` is the peer, and keeps the peer's
    ``identity`` (a TTL deletion stays a TTL deletion).
    """

    spec: TableSpec
    k: ItemKey
    version: Version
    item: Item | None
    data: bytes | None
    size: int
    identity: UserIdentity | None = None
    counter_key: str | None = None
    outcome: str = ""
    condition: None = None
    returns: str = "NONE"
    old_on_failure: bool = False

    @property
    def origin(self) -> str:
        """The region where the write happened."""
        return self.version.region


@dataclass(slots=True)
class TombstonePruneOp:
    """Remove an item's tombstone if it is still one and older than ``before_ms``."""

    spec: TableSpec
    k: ItemKey
    before_ms: int
    condition: None = None
    returns: str = "NONE"
    old_on_failure: bool = False


def extra_reads(op: Any) -> list[tuple[int, bytes, bytes]]:
    """The rows besides the item's own that a write op reads (an engine that prefetches
    what a group reads, as PostgreSQL's does, adds these): its version row."""
    spec = op.spec
    if not spec.replicas:
        return []
    return [(version_storage_id(spec.table_id), op.k.pk, op.k.sk)]


def extra_meta_keys(op: Any) -> list[str]:
    """The ``sk_meta`` keys a write op reads and sets: a replica op's conflict counter."""
    key = getattr(op, "counter_key", None)
    return [] if key is None else [key]
