"""The values a write job is made of: what an engine offers it, its operations, the job,
and what each operation returns.

* :class:`Rows` — what a storage engine offers a write job inside one open transaction;
* :class:`ItemKey` and the operations (:class:`PutOp`, :class:`UpdateOp`,
  :class:`DeleteOp`, :class:`CheckOp`, :class:`IndexOp`, :class:`ArchiveOp`, and the
  replication ops of ``_versions.py``), :data:`WriteOp` their union;
* :class:`WriteJob` (operations that commit together), :class:`WriteResult` (what one
  operation returns) and :class:`Checkpoint` (a consumer's position stored with its writes);
* ``_Plan``: one planned operation, what the plan phase hands the apply phase.

How a job runs (plan, then apply) is in :mod:`streamkit.storage._writes`, which
re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from streamkit.records import UserIdentity
from streamkit.records._avro import encode_image
from streamkit.records._values import Item, item_size
from streamkit.storage._keys import message_key
from streamkit.storage._versions import ReplicaOp, TombstonePruneOp

if TYPE_CHECKING:
    from streamkit.storage._expressions import CompiledCondition, CompiledUpdate
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._spec import TableSpec

__all__ = (
    "ITEM_COLLECTION_LIMIT",
    "ArchiveOp",
    "CheckOp",
    "Checkpoint",
    "DeleteOp",
    "IndexOp",
    "ItemKey",
    "PutOp",
    "Rows",
    "UpdateOp",
    "WriteJob",
    "WriteOp",
    "WriteResult",
)

ITEM_COLLECTION_LIMIT = 10 * 1024**3
"""DynamoDB's item collection size limit (10 GB) for tables with local secondary indexes."""


class Rows(Protocol):
    """What a storage engine offers a write job, inside one open transaction."""

    def load(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        """The stored image bytes and DynamoDB size of an item, or None."""

    def store(
        self, table_id: int, pk: bytes, sk: bytes, data: bytes, size: int, expires: float | None
    ) -> None:
        """Insert or replace an item."""

    def remove(self, table_id: int, pk: bytes, sk: bytes) -> None:
        """Delete an item."""

    def next_sequence(self) -> int:
        """The next change sequence number (strictly increasing, commit order)."""

    def append_change(
        self,
        seq: int,
        table_id: int,
        table: str,
        event: str,
        txn: int | None,
        key: bytes,
        record: bytes,
        created_ms: int,
        publish: bool,
        image: bytes | None,
        pk: bytes,
        sk: bytes,
    ) -> None:
        """Append one change record to the outbox/archive (``pk``/``sk``: the item's key
        bytes, by which the archive finds an item's history)."""

    def meta_get(self, key: str) -> str | None:
        """A bookkeeping value (``sk_meta``), or None."""

    def meta_set(self, key: str, value: str) -> None:
        """Set a bookkeeping value in the open transaction."""

    def collection_size(self, spec: TableSpec, pk: bytes) -> int:
        """The size in bytes of one item collection of a table with local indexes (its
        items with partition key bytes ``pk`` and their local index entries), with the
        writes of this transaction so far."""

    def set_collection_size(self, spec: TableSpec, pk: bytes, size: int) -> None:
        """Note a collection's size after this job's writes (an engine that keeps a
        counter stores it; one that sums the stored rows keeps it only as a hint)."""

    def epoch(self, table_id: int) -> int | None:
        """The table's settings epoch as stored now (None: the table is not there): a job
        whose spec has another was built on older settings (before an index was added,
        the TTL attribute or the stream changed), and must not run."""


@dataclass(frozen=True, slots=True)
class ItemKey:
    """An item's key, with everything the writer needs of it computed up front.

    Attributes:
        key: the normalized key attributes.
        pk, sk: the order-preserving bytes of the partition and sort key.
        data: the key as an encoded image (the change record's ``keys``).
        size: the key's DynamoDB size.
        message_key: the Kafka message key (the partition key's plain bytes).
    """

    key: Item
    pk: bytes
    sk: bytes
    data: bytes
    size: int
    message_key: bytes

    @classmethod
    def of(cls, spec: TableSpec, key: Item, coords: tuple[bytes, bytes] | None = None) -> ItemKey:
        """Build from a normalized key (exactly the key attributes); ``coords`` are its
        (partition, sort) bytes when the caller has them already."""
        pk, sk = spec.key.extract(key) if coords is None else coords
        return cls(
            key,
            pk,
            sk,
            encode_image(key),
            item_size(key),
            message_key(key[spec.key.partition.name]),
        )


@dataclass(slots=True)
class PutOp:
    """Put a whole item (``data`` and ``size`` computed by the caller)."""

    spec: TableSpec
    k: ItemKey
    item: Item
    data: bytes
    size: int
    condition: CompiledCondition | None = None
    returns: str = "NONE"
    old_on_failure: bool = False


@dataclass(slots=True)
class UpdateOp:
    """Update (or create) an item from its key."""

    spec: TableSpec
    k: ItemKey
    update: CompiledUpdate
    condition: CompiledCondition | None = None
    returns: str = "NONE"
    old_on_failure: bool = False


@dataclass(slots=True)
class DeleteOp:
    """Delete an item; with ``ttl_cutoff`` only if its TTL is still at or before it."""

    spec: TableSpec
    k: ItemKey
    condition: CompiledCondition | None = None
    returns: str = "NONE"
    old_on_failure: bool = False
    identity: UserIdentity | None = None
    ttl_cutoff: float | None = None


@dataclass(slots=True)
class CheckOp:
    """A transaction's condition check: no write."""

    spec: TableSpec
    k: ItemKey
    condition: CompiledCondition
    old_on_failure: bool = False


@dataclass(slots=True)
class IndexOp:
    """Write one item's entry of one index (a backfill step): no change record.

    Run in a write job like any other op, it reads the item inside the transaction,
    so it can never put back an entry that a concurrent write removed or changed.
    An item whose index key has the wrong type is left out of the index (counted in
    the result's ``units`` as -1), as DynamoDB's backfill does.
    """

    spec: TableSpec
    k: ItemKey
    index: IndexSpec
    condition: CompiledCondition | None = None
    old_on_failure: bool = False


@dataclass(slots=True)
class ArchiveOp:
    """Enter one item, as it is now, in its table's point-in-time archive (PITR turned
    on for a table in use): an unpublished INSERT row, as a restore's are, and no change
    record handlers see. Read inside the transaction like ``IndexOp``: a write racing it
    either came before (its image is the one entered) or after (its own row is newer).
    """

    spec: TableSpec
    k: ItemKey
    condition: CompiledCondition | None = None
    old_on_failure: bool = False


WriteOp = PutOp | UpdateOp | DeleteOp | CheckOp | IndexOp | ArchiveOp | ReplicaOp | TombstonePruneOp


@dataclass(slots=True)
class WriteJob:
    """Operations that commit together; ``transactional`` makes them all-or-nothing."""

    ops: list[WriteOp]
    transactional: bool = False
    origin: str | None = None
    collection_limit: int = ITEM_COLLECTION_LIMIT  # bytes per item collection (``Store``)


@dataclass(slots=True)
class WriteResult:
    """What one operation returns to its caller."""

    item: Item | None
    units: float
    event: str | None  # "INSERT" | "MODIFY" | "REMOVE" | None (no change)
    index_units: dict[str, float] | None = None  # write units per index the write touched
    # set when the write changed the item (the cache's write-through reads them):
    seq: int | None = None  # its change row's sequence number (None: the table keeps none)
    new: Item | None = None  # the item after the write (None: deleted)
    # a table with local indexes: the size of the item's collection after the write
    collection_size: int | None = None


@dataclass(slots=True)
class _Plan:
    op: WriteOp
    old_data: bytes | None
    old_size: int
    old: Item | None
    new: Item | None
    new_data: bytes | None
    new_size: int
    event: str | None
    result: WriteResult
    entries: list[_Entry] | None = None  # the new item's index entries (None: no index)


_Entry = tuple[bytes, bytes, bytes, int] | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A consumer's position stored with the writes its work caused (exactly-once effects).

    Attributes:
        key: the ``sk_meta`` key.
        first: the first offset of the work being committed: the stored value must be
            absent or at most this, else someone already committed this work.
        value: the new position (the offset after the work).
    """

    key: str
    first: int
    value: int
