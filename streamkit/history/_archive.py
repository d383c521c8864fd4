"""Reading history out of the change archive: a table as of an instant, the changes
between two instants, and point-in-time restore into a new table.

The storage side (compaction, the SQL) is ``streamkit/storage/_archive.py``; see
``docs/design/history.md`` for the whole picture.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from streamkit.capture._tables import check_restore_target
from streamkit.exceptions import HistoryUnavailable, ValidationError
from streamkit.records import ChangeRecord
from streamkit.records._avro import (
    decode_image,
    encode_image,
    lazy_record,
    record_new_image,
)
from streamkit.records._values import Item, item_size
from streamkit.storage._engine import (
    ArchivedRecord,
    BackupOf,
    RestoreFeed,
    StateAt,
    StateRow,
    StoredItem,
)
from streamkit.storage._keys import message_key
from streamkit.storage._spec import PITR_ENABLING, TableSpec, check_table_name
from streamkit.storage._table import Table
from streamkit.storage._writes import archive_record, ttl_expiry

if TYPE_CHECKING:
    from streamkit.storage._store import Store

__all__ = (
    "archive_window",
    "changes_between",
    "enable_pitr",
    "items_at",
    "restore_items",
    "restore_to_time",
    "seed_archive",
    "set_recovery",
    "start_pitr",
    "to_ms",
)

_DAY_MS = 86_400_000


def to_ms(name: str, when: object) -> int:
    """Epoch milliseconds of a timezone-aware datetime argument."""
    if not isinstance(when, datetime):
        raise ValidationError(f"{name}= must be a datetime, not {type(when).__name__}")
    if when.tzinfo is None:
        raise ValidationError(f"{name}= must be timezone-aware (e.g. datetime.now(UTC))")
    return int(when.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def archive_window(spec: TableSpec, now_ms: int | None = None) -> tuple[int, int] | None:
    """The instants (epoch ms) the archive can rebuild a table at: from the start of its
    recovery window (or its creation, or when PITR was turned on, if later) to now; None
    without PITR, or while it is being turned on."""
    if not spec.pitr or spec.pitr_enabling:
        return None
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    created = 0 if spec.created_at is None else int(spec.created_at.timestamp() * 1000)
    return max(created, spec.pitr_from or 0, now - spec.recovery_days * _DAY_MS), now


def check_instant(spec: TableSpec, at_ms: int, what: str = "at") -> None:
    """Refuse an instant the archive cannot rebuild, saying what it can."""
    window = archive_window(spec)
    if spec.pitr_enabling:
        raise HistoryUnavailable(
            f"point-in-time recovery of table {spec.name!r} is being turned on: the items "
            "already there are being entered in its archive; restores start when it is done"
        )
    if window is None:
        raise HistoryUnavailable(
            f"table {spec.name!r} has point-in-time recovery off (pitr=False): "
            "it keeps no history to rebuild an earlier state from"
        )
    earliest, now = window
    if at_ms > now:
        raise HistoryUnavailable(f"{what}={_iso(at_ms)} is in the future (now is {_iso(now)})")
    if at_ms < earliest:
        raise HistoryUnavailable(
            f"{what}={_iso(at_ms)} is before what {spec.name!r} keeps: it can be rebuilt at "
            f"any instant from {_iso(earliest)} to now "
            f"(recovery window {spec.recovery_days} days, table created "
            f"{spec.created_at.isoformat(timespec='seconds') if spec.created_at else '?'})"
        )


async def items_at(
    store: Store, table: str, at: datetime | None = None, *, chunk: int = 1000
) -> AsyncIterator[list[Item]]:
    """The table exactly as it was at ``at`` (None: now), from one consistent snapshot,
    as chunks of items: read a chunk at a time, so memory holds one chunk whatever the
    table's size. Now: in key order; at an instant: one item per key, in no promised
    order.

    Raises:
        HistoryUnavailable: ``at`` is outside the table's recovery window, or PITR is off.
    """
    spec = await store.spec(table)
    at_ms = None
    if at is not None:
        at_ms = to_ms("at", at)
        check_instant(spec, at_ms)
    async with store.engine.read_table(spec.table_id, at_ms) as read:
        while rows := await read.chunk(chunk):
            yield [_new_image(record, stored) for _, _, record, stored in rows]


def _new_image(record: bytes, stored: bytes | None) -> Item:
    """An item from an archive row: its stored image, or the new image of its record."""
    if stored is not None:
        return decode_image(stored)
    found = record_new_image(record)
    assert found is not None, "an INSERT/MODIFY record without a new image"
    return found[1]


async def archived(
    store: Store,
    spec: TableSpec,
    *,
    since_ms: int,
    until_ms: int,
    after_seq: int = 0,
    before_seq: int | None = None,
    chunk: int = 5000,
) -> AsyncIterator[list[ArchivedRecord]]:
    """Chunks of ``(seq, created_ms, record bytes)`` of the table's archived changes
    created in [since_ms, until_ms), in commit order (no window check)."""
    while True:
        rows = await store.engine.archive_rows(
            spec.table_id,
            after_seq=after_seq,
            since_ms=since_ms,
            until_ms=until_ms,
            before_seq=before_seq,
            limit=chunk,
        )
        if not rows:
            return
        yield rows
        after_seq = rows[-1][0]


async def changes_between(
    store: Store, table: str, since: datetime, until: datetime | None = None
) -> AsyncIterator[ChangeRecord]:
    """Every change committed to the table in [since, until) (until None: now), in commit
    order, from the archive.

    Raises:
        HistoryUnavailable: the range starts before the recovery window, or PITR is off.
    """
    spec = await store.spec(table)
    since_ms = to_ms("since", since)
    until_ms = time.time_ns() // 1_000_000 + 1 if until is None else to_ms("until", until)
    if until_ms <= since_ms:
        raise ValidationError("until= must be after since=")
    check_instant(spec, since_ms, "since")
    async for rows in archived(store, spec, since_ms=since_ms, until_ms=until_ms):
        for _, _, record in rows:
            yield lazy_record(record)


def _converter(
    spec: TableSpec,
) -> Callable[[Sequence[StateRow]], list[tuple[StoredItem, object]]]:
    """The conversion of a restore's source rows into ``spec``'s stored items, each with
    what its archive row needs (its image, size, key image and message key)."""
    names = spec.key.names
    partition = spec.key.partition.name

    def convert(rows: Sequence[StateRow]) -> list[tuple[StoredItem, object]]:
        out: list[tuple[StoredItem, object]] = []
        for pk, sk, record, stored in rows:
            if stored is None:  # the image is in the record (decoded on the way)
                found = record_new_image(record)
                assert found is not None, "an INSERT/MODIFY record without a new image"
                data, item = found
            else:
                data, item = stored, decode_image(stored)
            size = item_size(item)
            expires = None if spec.ttl_attribute is None else ttl_expiry(spec, item)
            key = {n: item[n] for n in names}
            keys = (data, size, encode_image(key), message_key(key[partition]))
            out.append(((pk, sk, data, size, expires), keys))
        return out

    return convert


async def restore_items(
    store: Store, source: TableSpec, target: str, rows: StateAt | BackupOf
) -> Table:
    """Create ``target`` with the settings of ``source`` holding the items ``rows`` names
    (the source table at an instant, or a backup) — atomically: the new table appears
    whole or not at all. The engine reads and writes a chunk at a time, so memory does
    not grow with the table. The items are in the target's archive (so it can be
    restored in turn) but are not change records its handlers see."""
    check_table_name(target)
    await store.ensure_open()
    spec = replace(source, name=target, table_id=0, created_at=None, region=None, replicas=())

    def archive(done: TableSpec, token: object, seq: int, now_ms: int) -> tuple[bytes, bytes]:
        data, size, keys, key = cast(tuple[bytes, int, bytes, bytes], token)
        event_id = os.urandom(16).hex()
        record = archive_record(done, keys, data, size, seq, now_ms, store.origin, event_id)
        return key, record

    feed = RestoreFeed(rows, _converter(spec), archive if spec.pitr else None)
    done = await store.engine.restore_table(spec, feed)
    store.remember(done)
    return Table(store, target)


async def restore_to_time(
    store: Store, table: str, *, at: datetime, target: str, namespace: str | None = None
) -> Table:
    """Restore ``table`` as it was at ``at`` into the new table ``target`` (with
    ``namespace``, checked as ``create_table`` checks a name).

    Raises:
        HistoryUnavailable: ``at`` is outside the recovery window, or PITR is off.
        TableExists: ``target`` exists.
    """
    spec = await store.spec(table)
    if namespace is not None:
        await check_restore_target(store, namespace, target, spec)
    at_ms = to_ms("at", at)
    check_instant(spec, at_ms)
    if store.known(target) is not None:
        from streamkit.exceptions import TableExists

        raise TableExists(f"table {target!r} already exists", table=target)
    return await restore_items(store, spec, target, StateAt(spec.table_id, at_ms))


# --- turning point-in-time recovery on for a table in use -------------------------------------
_SEED_CHUNK = 256


async def enable_pitr(store: Store, name: str, recovery_days: int | None = None) -> TableSpec:
    """Turn point-in-time recovery on for an existing table (as DynamoDB's
    ``UpdateContinuousBackups``): from now on every change is kept, and every item already
    there is entered in the archive as it is (``seed_archive``), so that restores can
    reach back to the moment that is done — not before, as in DynamoDB. Until then the
    table's PITR is ENABLING and restores are refused. Already on: only the recovery
    period changes. Returns the spec as stored.

    Raises:
        TableNotFound: no such table.
    """

    spec = await start_pitr(store, name, recovery_days)
    if spec.pitr_enabling:
        spec = await seed_archive(store, name)
    return spec


async def start_pitr(store: Store, name: str, recovery_days: int | None = None) -> TableSpec:
    """The first half of ``enable_pitr``: PITR on and ENABLING (already on: only the
    recovery period changes); ``seed_archive`` finishes it."""

    def turn_on(spec: TableSpec) -> TableSpec:
        days = spec.recovery_days if recovery_days is None else recovery_days
        if spec.pitr and not spec.pitr_enabling:
            return replace(spec, recovery_days=days)
        return replace(spec, pitr=True, pitr_from=PITR_ENABLING, recovery_days=days)

    return await store.change_spec(name, turn_on)


async def seed_archive(store: Store, name: str) -> TableSpec:
    """Enter every item of a table whose PITR is ENABLING in its archive (an ``ArchiveOp``
    per item, chunk by chunk, while writes go on), then make PITR reach back to now. Run
    again after a crash it enters the items again: harmless (the newest row per item at
    an instant is the same image)."""
    from streamkit.storage._write_ops import ArchiveOp, ItemKey, WriteJob

    spec = await store.spec(name)
    after: tuple[bytes, bytes] | None = None
    while spec.pitr_enabling:
        spec = store.known(name) or spec  # turned off meanwhile: stop
        rows = await store.engine.scan(
            spec.table_id, after=after, limit=_SEED_CHUNK, segment=0, total_segments=1
        )
        if not rows:
            break
        ops = [ArchiveOp(spec, ItemKey({}, pk, sk, b"", 0, b"")) for pk, sk, _ in rows]
        await store.write(WriteJob(list(ops)))
        after = (rows[-1][0], rows[-1][1])
    done_ms = time.time_ns() // 1_000_000

    def enabled(latest: TableSpec) -> TableSpec | None:
        if latest.table_id != spec.table_id or not latest.pitr_enabling:
            return None  # deleted, or turned off meanwhile
        return replace(latest, pitr_from=done_ms)

    return await store.change_spec(name, enabled)


async def set_recovery(
    store: Store, name: str, enabled: bool, recovery_days: int | None = None
) -> TableSpec:
    """Keep PITR as it is (``enabled``) or turn it off, and set the recovery period
    (None: unchanged). Turning it *on* is ``enable_pitr``'s (the archive must be seeded)."""

    def change(spec: TableSpec) -> TableSpec:
        days = spec.recovery_days if recovery_days is None else recovery_days
        if enabled:
            return replace(spec, recovery_days=days)
        return replace(spec, pitr=False, pitr_from=None, recovery_days=days)

    return await store.change_spec(name, change)
