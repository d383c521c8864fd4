"""On-demand backups: a consistent copy of a table's items kept in the storage itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from streamkit.capture._tables import check_restore_target
from streamkit.exceptions import BackupNotFound, ValidationError
from streamkit.history._archive import restore_items
from streamkit.storage._engine import BackupInfo, BackupOf, new_backup_id
from streamkit.storage._spec import check_table_name

if TYPE_CHECKING:
    from streamkit.storage._store import Store
    from streamkit.storage._table import Table

__all__ = ("Backup", "create", "delete", "list_backups", "restore")


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup of one table.

    Attributes:
        id: the backup's id (``<table>-<epoch ms>-<random>``).
        table: the table it copies.
        created_at: the instant of the copy (every item as it was then).
        items: how many items it holds.
        size_bytes: their DynamoDB size.
        kind: "USER" (``app.backup``) or "SYSTEM" (made when a PITR table is deleted).
    """

    id: str
    table: str
    created_at: datetime
    items: int
    size_bytes: int
    kind: str

    @classmethod
    def _of(cls, info: BackupInfo) -> Backup:
        return cls(
            id=info.id,
            table=info.table,
            created_at=datetime.fromtimestamp(info.created_ms / 1000, UTC),
            items=info.items,
            size_bytes=info.bytes,
            kind=info.kind,
        )


def _check_id(backup_id: object) -> str:
    if not isinstance(backup_id, str) or not backup_id:
        raise ValidationError(f"backup id must be a non-empty string, not {backup_id!r}")
    return backup_id


async def create(store: Store, table: str) -> Backup:
    """Copy the table's items, all as of one instant (one storage transaction: writes
    go on around it, none is half in)."""
    check_table_name(table)
    await store.ensure_open()
    return Backup._of(await store.engine.create_backup(table, new_backup_id(table), "USER"))


async def list_backups(store: Store, table: str | None = None) -> list[Backup]:
    """Every backup (of ``table``), oldest first."""
    await store.ensure_open()
    return [Backup._of(d) for d in await store.engine.list_backups(table)]


async def restore(
    store: Store, backup_id: str, *, target: str, namespace: str | None = None
) -> Table:
    """Create ``target`` holding the backup's items, with the backed-up table's settings
    (key schema, stream, TTL, capacity, PITR, indexes) — atomically. With ``namespace``,
    ``target`` is checked as ``create_table`` checks a name (its topic must be able to
    exist)."""
    await store.ensure_open()
    found = [b for b in await store.engine.list_backups() if b.id == backup_id]
    if namespace is not None:
        await check_restore_target(store, namespace, target, found[0].spec if found else None)
    check_table_name(target)
    backup_id = _check_id(backup_id)
    if not found:
        raise BackupNotFound(f"backup {backup_id!r} does not exist")
    # the engine reads the backup's items in the restore's own transaction (and refuses
    # it there if the backup was deleted meanwhile)
    return await restore_items(store, found[0].spec, target, BackupOf(backup_id))


async def delete(store: Store, backup_id: str) -> Backup:
    """Delete a backup; returns what it was."""
    await store.ensure_open()
    return Backup._of(await store.engine.delete_backup(_check_id(backup_id)))
