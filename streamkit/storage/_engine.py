"""The storage engine interface: what the table layer needs from a database.

An engine stores item rows (table id, partition bytes, sort bytes, image
bytes, TTL) and an append-only change log (the outbox and the point-in-time
archive), and runs write jobs atomically. SQLite implements it today
(``sqlite://``, ``memory://``); PostgreSQL can implement the same Protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from streamkit.storage._spec import TableSpec
from streamkit.storage._writes import WriteJob, WriteResult

__all__ = ("ChangeRow", "ReadRows", "StorageEngine")

T = TypeVar("T")


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


class ReadRows(Protocol):
    """Read primitives a read function may call, on the engine's reader thread."""

    def get(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        """One item's image bytes and DynamoDB size, or None."""

    def range(
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
        """Up to ``limit`` (sort bytes, image bytes) of one partition, in sort order."""

    def scan(
        self,
        table_id: int,
        *,
        after: tuple[bytes, bytes] | None,
        limit: int,
        segment: int,
        total_segments: int,
    ) -> list[tuple[bytes, bytes, bytes]]:
        """Up to ``limit`` (partition bytes, sort bytes, image bytes) in key order."""

    def expired(self, table_id: int, cutoff: float, limit: int) -> list[bytes]:
        """Image bytes of items whose TTL is at or before ``cutoff`` (and not 5+ years old)."""

    def changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        """Change rows with sequence numbers above ``after_seq``, in order."""


class StorageEngine(Protocol):
    """A transactional store for tables, items and change records."""

    url: str
    storage_id: str  # stable per database; set by open()

    async def open(self) -> None:
        """Create or open the database (idempotent)."""

    async def close(self) -> None:
        """Finish queued work and release the database."""

    async def write(self, job: WriteJob) -> list[WriteResult]:
        """Run one write job atomically; many concurrent jobs may share a commit."""

    async def write_fn(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(rows)`` (rows: the engine's ``Rows``) in a write transaction; if it
        raises, everything it wrote is rolled back."""

    async def read(self, fn: Callable[[ReadRows], T]) -> T:
        """Run ``fn`` on the reader thread and return its result."""

    async def create_table(self, spec: TableSpec) -> TableSpec:
        """Add a table to the catalog; raises TableExists."""

    async def delete_table(self, name: str) -> TableSpec:
        """Remove a table and its items; raises TableNotFound."""

    async def list_tables(self) -> Sequence[TableSpec]:
        """Every table in the catalog, by name."""

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the writer thread) after each commit that appended changes."""

    def remove_commit_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""

    async def read_meta(self, keys: Sequence[str]) -> dict[str, str]:
        """Storage-level settings and positions (absent keys are left out)."""

    async def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every setting whose key starts with ``prefix``."""

    async def write_meta(self, values: dict[str, str]) -> None:
        """Set settings and positions in one transaction."""

    async def max_sequence(self) -> int:
        """The newest change record's sequence number (0 when there is none)."""

    async def prune_changes(self, *, upto: int, now_ms: int, limit: int) -> int:
        """Delete change rows up to ``upto`` that nothing needs: rows of tables without an
        archive, and rows older than their table's recovery window (counted back from
        ``now_ms``) that a newer row of the same item makes useless; never the newest
        row. Returns how many went."""
