"""The storage engine interface: everything the layers above need from a database.

An engine stores a catalog of tables, item rows (table id, partition bytes, sort
bytes, image bytes, DynamoDB size, TTL), an append-only change log (the capture
outbox, which is also the point-in-time archive), backups, and small named
settings and positions ("meta"). Every method is a coroutine on plain data: no
connection, cursor, SQL or callback crosses this boundary, so capture, the
runtime, history and the endpoint work the same on every engine.

Two engines implement it: SQLite (``sqlite://``, ``memory://``) and PostgreSQL
(``postgresql://``). ``tests/unit/storage`` and the history tests run against
every engine through one parametrized fixture (the engine conformance suite).

Write semantics shared by all engines:

* A :class:`~streamkit.storage._write_ops.WriteJob` runs atomically: its item rows
  and its change rows commit together or not at all (the outbox).
* Sequence numbers are strictly increasing in commit order across the whole
  store: a change row that becomes visible later never has a smaller number than
  one visible before it. The relay relies on this to never skip a row.
* A job that fails (a condition, a cancelled transaction) writes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from streamkit.storage._spec import TableSpec
from streamkit.storage._write_ops import Checkpoint, WriteJob, WriteOp, WriteResult

__all__ = (
    "RESTORE_CHUNK",
    "ArchiveRow",
    "ArchivedRecord",
    "BackupInfo",
    "BackupOf",
    "ChangeRow",
    "ItemRow",
    "RestoreFeed",
    "StateAt",
    "StateRow",
    "StorageEngine",
    "StoredItem",
    "TableRead",
    "new_backup_id",
)

ItemRow = tuple[bytes, bytes, bytes]
"""``(partition bytes, sort bytes, image bytes)`` of one item."""

StoredItem = tuple[bytes, bytes, bytes, int, float | None]
"""``(partition bytes, sort bytes, image bytes, DynamoDB size, TTL epoch seconds)``."""

ArchivedRecord = tuple[int, int, bytes]
"""``(sequence number, created epoch ms, encoded change record)`` from the archive."""

StateRow = tuple[bytes, bytes, bytes, bytes | None]
"""``(partition bytes, sort bytes, newest record, its stored full image or None)``."""

ArchiveRow = Callable[[TableSpec, int, int, int], tuple[bytes, bytes]]
"""``archive(spec, index, seq, now_ms) -> (message key, encoded record)`` for load_table."""

RESTORE_CHUNK = 2000  # source rows a restore converts and writes at a time


@dataclass(frozen=True, slots=True)
class StateAt:
    """A restore's source: the table ``table_id`` as it was at ``at_ms`` (its archive)."""

    table_id: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class BackupOf:
    """A restore's source: the items of the backup ``backup_id``."""

    backup_id: str


@dataclass(frozen=True, slots=True)
class RestoreFeed:
    """What ``restore_table`` loads, read by the engine in the restore's own transaction,
    ``RESTORE_CHUNK`` source rows at a time, so memory stays bounded whatever the size.

    ``convert`` turns source rows (:data:`StateRow`: ``(pk, sk, record, stored image)``;
    a backup's rows come as ``(pk, sk, b"", image)``) into stored items, each with a
    token that ``archive`` gets back (None: no archive rows, the target has no PITR):
    ``archive(target spec, token, seq, now_ms) -> (message key, encoded record)``.
    """

    source: StateAt | BackupOf
    convert: Callable[[Sequence[StateRow]], list[tuple[StoredItem, object]]]
    archive: Callable[[TableSpec, object, int, int], tuple[bytes, bytes]] | None


class TableRead(Protocol):
    """A table read a chunk at a time from one consistent snapshot (``read_table``)."""

    seq: int
    """The newest sequence number in the snapshot: the rows reflect exactly the changes
    up to it."""

    async def chunk(self, n: int) -> list[StateRow]:
        """The next ``n`` rows at most (``[]`` at the end)."""


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One row of the change log as stored."""

    seq: int
    table_id: int
    table: str
    event: str
    txn: int | None
    key: bytes
    record: bytes
    created_ms: int
    publish: bool
    image: bytes | None


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A backup as stored: its id, table, settings and size."""

    id: str
    table: str
    spec: TableSpec
    kind: str  # "USER" | "SYSTEM"
    created_ms: int
    items: int
    bytes: int


def new_backup_id(table: str) -> str:
    """A backup id in DynamoDB's style: ``<table>-<ms since epoch>-<random>``."""
    return f"{table}-{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex[:8]}"


class StorageEngine(Protocol):
    """A transactional store for tables, items, change records, backups and positions."""

    url: str
    storage_id: str  # stable per database; set by open()

    # --- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        """Create or open the database (idempotent).

        Raises:
            ConfigurationError: the URL is wrong, or the database is not a streamkit
                store of a schema version this code reads (nothing is created in it).
            StorageError: the database cannot be reached (``retriable`` says whether
                trying again may help).
        """

    async def close(self) -> None:
        """Finish queued work and release the database."""

    # --- catalog -----------------------------------------------------------------------
    async def create_table(self, spec: TableSpec) -> TableSpec:
        """Add a table to the catalog (returns it with its id and creation time).

        Raises:
            TableExists: a table of that name exists.
        """

    async def delete_table(self, name: str) -> TableSpec:
        """Remove a table, its items and its index entries (a PITR table leaves a SYSTEM
        backup first); its change rows stay in the archive. Raises TableNotFound."""

    async def update_table(
        self, spec: TableSpec, drop: Sequence[int] = (), *, only_if_epoch: int | None = None
    ) -> TableSpec:
        """Store changed settings of an existing table and delete every item row stored
        under the ids ``drop`` (a deleted index's entries), in one transaction; returns
        the spec as stored, with the next settings ``epoch`` (write jobs prepared with
        another epoch are refused: ``_writes.StaleCatalog``). Raises TableNotFound, and
        ``StaleCatalog`` (nothing stored) when ``only_if_epoch`` is given and the stored
        epoch is another: a read-modify-write of the settings lost a race."""

    async def set_ttl(self, spec: TableSpec) -> int:
        """Store ``spec`` (an existing table whose ``ttl_attribute`` changed) and recompute
        the TTL of every item row of the table from the new attribute (none when it is
        None), in one transaction; returns how many items have a TTL now.

        Writes submitted before the call (which carry the old spec) are committed before
        the rows are read, and writes to the table wait until it commits, so no item keeps
        a TTL computed from the old attribute. Raises TableNotFound, and ``StaleCatalog``
        (nothing stored) when the stored settings are no longer at ``spec.epoch``: they
        changed since ``spec`` was read, and the change would undo that."""

    async def list_tables(self) -> Sequence[TableSpec]:
        """Every table in the catalog, by name (including other processes' changes)."""

    async def load_table(
        self, spec: TableSpec, items: Sequence[StoredItem], archive: ArchiveRow | None
    ) -> TableSpec:
        """Create a table already holding ``items`` and its indexes' entries
        (:func:`~streamkit.storage._indexes.index_rows`), in one transaction (whole or
        absent). With ``archive``, each item also gets an unpublished INSERT row in
        the archive. Raises TableExists."""

    async def restore_table(self, spec: TableSpec, feed: RestoreFeed) -> TableSpec:
        """Create a table holding what ``feed`` reads and converts, as ``load_table``
        does (one transaction, whole or absent), a chunk of source rows at a time. Raises
        TableExists, and BackupNotFound for a backup that is not there."""

    # --- writes ------------------------------------------------------------------------
    async def write(self, job: WriteJob) -> list[WriteResult]:
        """Run one write job atomically; many concurrent jobs may share a commit."""

    async def commit_effects(
        self, ops: Sequence[WriteOp], checkpoints: Sequence[Checkpoint], origin: str | None
    ) -> int | None:
        """Apply ``ops`` in order (each sees the ones before) and advance
        ``checkpoints``, all in one transaction; see
        :func:`~streamkit.storage._writes.run_effects` (returns a stale stored position
        instead of writing when the work was committed before)."""

    # --- item reads --------------------------------------------------------------------
    async def get(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        """One item's image bytes and DynamoDB size, or None."""

    async def get_many(
        self, table_id: int, keys: Sequence[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, int]]:
        """The (image bytes, size) of those of ``keys`` that exist, in one read snapshot."""

    async def range(
        self,
        table_id: int,
        pk: bytes,
        *,
        low: bytes | None,
        low_inclusive: bool,
        high: bytes | None,
        high_inclusive: bool,
        reverse: bool,
        limit: int,
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (sort bytes, image bytes) of one partition, in sort order
        (bytewise, unsigned)."""

    async def scan(
        self,
        table_id: int,
        *,
        after: tuple[bytes, bytes] | None,
        limit: int,
        segment: int,
        total_segments: int,
    ) -> list[ItemRow]:
        """Up to ``limit`` items after ``after`` in (partition, sort) byte order; with
        ``total_segments`` > 1 only segment ``segment`` of them: the items split by
        partition key as ``zlib.crc32(pk) % total_segments`` (the same on every engine)."""

    async def snapshot(self, table_id: int) -> tuple[int, list[ItemRow]]:
        """Every item of a table in key order and the newest sequence number, from one
        consistent snapshot (the items reflect exactly the changes up to that number)."""

    def read_table(
        self, table_id: int, at_ms: int | None = None
    ) -> AbstractAsyncContextManager[TableRead]:
        """Read a table from one snapshot a chunk at a time, so that memory holds a chunk
        whatever its size: its items now (``at_ms`` None: rows ``(pk, sk, b"", image)``
        in key order), or as they were at ``at_ms`` (:data:`StateRow` of its archive,
        REMOVEs left out, one per item; on SQLite not sorted beyond the grouping per
        item). The snapshot is held until the context exits."""

    async def snapshots(self, storage_ids: Sequence[int]) -> tuple[int, list[list[ItemRow]]]:
        """The rows of several storage ids (say a table's items and its version rows),
        each in key order, and the newest sequence number, all from one consistent
        snapshot."""

    async def expired(self, table_id: int, cutoff: float, limit: int) -> list[bytes]:
        """Image bytes of items whose TTL is at or before ``cutoff`` and not more than
        five years before it (DynamoDB ignores older TTL values)."""

    async def table_stats(self, table_id: int) -> tuple[int, int]:
        """``(item count, total item bytes)`` of a table."""

    # --- the change log: outbox and archive ---------------------------------------------
    async def changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        """Change rows with sequence numbers above ``after_seq``, in order, with no gap
        that a transaction still in flight could fill."""

    async def max_sequence(self) -> int:
        """The newest committed change row's sequence number (0 when there is none)."""

    async def archive_rows(
        self,
        table_id: int,
        *,
        after_seq: int,
        since_ms: int,
        until_ms: int,
        before_seq: int | None,
        limit: int,
    ) -> list[ArchivedRecord]:
        """A table's archived records created in [since_ms, until_ms), after
        ``after_seq`` (and before ``before_seq``), in commit order, at most ``limit``."""

    async def archive_tail(
        self, table_id: int, *, position_key: str, since_ms: int, until_ms: int, limit: int
    ) -> tuple[int, list[ArchivedRecord]]:
        """The integer stored under meta ``position_key`` (0 when absent) and
        :meth:`archive_rows` after it, read in one snapshot (so nothing past the position
        can be pruned in between)."""

    async def prune_changes(self, *, upto: int, now_ms: int, limit: int) -> int:
        """Delete change rows up to ``upto`` that nothing needs: rows of tables without
        an archive, and rows older than their table's recovery window (counted back from
        ``now_ms``) that a newer row of the same item makes useless; never the newest
        row. Returns how many went."""

    # --- backups -----------------------------------------------------------------------
    async def create_backup(self, name: str, backup_id: str, kind: str) -> BackupInfo:
        """Copy a table's items into a new backup, as one consistent instant.
        Raises TableNotFound."""

    async def list_backups(self, table: str | None = None) -> list[BackupInfo]:
        """Every backup (of one table), oldest first."""

    async def delete_backup(self, backup_id: str) -> BackupInfo:
        """Delete a backup and its items. Raises BackupNotFound."""

    # --- settings, positions and leases ---------------------------------------------------
    async def read_meta(self, keys: Sequence[str]) -> dict[str, str]:
        """Storage-level settings and positions (absent keys are left out)."""

    async def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every setting whose key starts with ``prefix``."""

    async def write_meta(self, values: dict[str, str]) -> None:
        """Set settings and positions in one transaction."""

    async def try_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``seconds``: True when
        ``holder`` holds it now (it was free, expired, or already ``holder``'s)."""

    async def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease if ``holder`` holds it."""

    # --- commit notifications --------------------------------------------------------------
    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from any thread; it must be thread-safe) after a commit that
        appended change rows, in this process or (where the engine can tell) another."""

    def remove_commit_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""


def engine_for(url: str) -> StorageEngine:
    """The storage engine a URL names (not opened), importing only that engine."""
    from streamkit.exceptions import ConfigurationError

    scheme = url.split(":", 1)[0]
    if scheme in ("sqlite", "memory"):
        from streamkit.storage._sqlite import SqliteEngine

        return SqliteEngine(url)
    if scheme in ("postgres", "postgresql"):
        from streamkit._optional import needs

        with needs("postgres"):
            from streamkit.storage._postgres import PostgresEngine

        return PostgresEngine(url)
    raise ConfigurationError(
        f"unsupported storage URL {url!r}: use sqlite:///path.db, memory:// or "
        "postgresql://user:password@host:port/database"
    )
