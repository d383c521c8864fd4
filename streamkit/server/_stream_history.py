"""The streams a table has had, as DynamoDB Streams shows them.

A table's change log topic outlives its streams: turning a stream off and on again in
DynamoDB gives a *new* stream (a new label and ARN) while the old one stays readable,
DISABLED with closed shards, for 24 hours. Streamkit keeps, per table, the list of
those streams in the store's settings (``dynamodb.streams/<table>/<table id>``): each with its
label, view type and the range of change sequence numbers it covers, so the Streams
API can tell which records of the topic belong to which stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streamkit.server._convert import shown
from streamkit.server._errors import validation
from streamkit.storage._spec import TableSpec

if TYPE_CHECKING:
    from streamkit.storage._store import Store

__all__ = (
    "RETENTION_MS",
    "STREAM_VIEWS",
    "StreamEntry",
    "check_view_type",
    "deleted_tables",
    "disable_stream",
    "enable_stream",
    "keep_deleted_streams",
    "label_ms",
    "load_streams",
    "new_label",
    "spec_label",
)

RETENTION_MS = 24 * 3600 * 1000  # a disabled stream stays readable this long
STREAM_VIEWS = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")  # DynamoDB's order


def check_view_type(view: object) -> None:
    """Refuse a StreamViewType that is not one of DynamoDB's (None: not given)."""
    if view is not None and view not in STREAM_VIEWS:
        raise validation(
            f"1 validation error detected: Value '{shown(view)}' at "
            "'streamSpecification.streamViewType' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(STREAM_VIEWS)}]"
        )


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stream of a table: records with ``start < seq <= end`` (``end`` None: open)."""

    label: str
    view: str
    start: int = 0
    end: int | None = None
    disabled_ms: int | None = None


def _key(spec: TableSpec) -> str:
    return f"dynamodb.streams/{spec.name}/{spec.table_id}"


def spec_label(spec: TableSpec) -> str:
    """The label of a table's latest stream (its creation time unless it was re-enabled)."""
    if spec.stream_label is not None:
        return spec.stream_label
    assert spec.created_at is not None
    return _format(spec.created_at)


def _format(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def new_label(previous: str | None) -> str:
    """A label for a stream turned on now, later than ``previous``."""
    ms = time.time_ns() // 1_000_000
    if previous is not None:
        ms = max(ms, label_ms(previous) + 1)
    return _format(datetime.fromtimestamp(ms / 1000, UTC))


def label_ms(label: str) -> int:
    """A label's instant in epoch milliseconds (0 for a label that is not a time)."""
    try:
        at = datetime.strptime(label, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return round(at.timestamp() * 1000)


async def load_streams(store: Store, spec: TableSpec) -> list[StreamEntry]:
    """The streams recorded for a table, oldest first (disabled ones past retention
    left out)."""
    raw = (await store.read_meta((_key(spec),))).get(_key(spec))
    if not raw:
        return []
    now = time.time_ns() // 1_000_000
    out = []
    for d in json.loads(raw):
        e = StreamEntry(**d)
        if e.disabled_ms is None or now - e.disabled_ms < RETENTION_MS:
            out.append(e)
    return out


async def _save(store: Store, spec: TableSpec, entries: list[StreamEntry]) -> None:
    await store.write_meta({_key(spec): json.dumps([asdict(e) for e in entries])})


async def disable_stream(store: Store, spec: TableSpec) -> str:
    """Record that the table's current stream ends now; returns its label."""
    assert spec.stream is not None
    label = spec_label(spec)
    entries = await load_streams(store, spec)
    current = next((e for e in entries if e.label == label), None)
    start = 0 if current is None else current.start
    end = await store.read_changes_tail()
    entries = [e for e in entries if e.label != label]
    entries.append(
        StreamEntry(label, spec.stream.value, start, end, disabled_ms=time.time_ns() // 1_000_000)
    )
    await _save(store, spec, entries)
    return label


async def enable_stream(store: Store, spec: TableSpec, view: str) -> str:
    """Record a new stream of the table starting after the newest change; returns its
    label."""
    previous = None if spec.stream_label is None and spec.created_at is None else spec_label(spec)
    label = new_label(previous)
    entries = await load_streams(store, spec)
    entries.append(StreamEntry(label, view, await store.read_changes_tail()))
    await _save(store, spec, entries)
    return label


_DELETED = "dynamodb.deleted-tables"  # tables deleted with streams readable for 24 hours


async def keep_deleted_streams(store: Store, spec: TableSpec) -> None:
    """Before a table is deleted, as DynamoDB: its stream (if on) ends now, and its streams
    stay readable, DISABLED, for 24 hours under their ARNs (the records stay in the
    table's topic); the table's settings are kept for that long so the Streams API can
    find them. A table with no stream and no disabled stream keeps nothing."""
    if spec.stream is not None:
        await disable_stream(store, spec)
    if not await load_streams(store, spec):
        return
    now = time.time_ns() // 1_000_000
    kept = [
        d
        for d in await _deleted(store)
        if now - d["deleted_ms"] < RETENTION_MS and d["id"] != spec.table_id
    ]
    closed = replace(spec, stream=None)  # every stream of it is disabled now
    kept.append(
        {"name": spec.name, "id": spec.table_id, "spec": closed.to_json(), "deleted_ms": now}
    )
    await store.write_meta({_DELETED: json.dumps(kept)})


async def _deleted(store: Store) -> list[dict[str, Any]]:
    raw = (await store.read_meta((_DELETED,))).get(_DELETED)
    return list(json.loads(raw)) if raw else []


async def deleted_tables(store: Store) -> list[TableSpec]:
    """The tables deleted less than 24 hours ago whose streams are still readable."""
    now = time.time_ns() // 1_000_000
    return [
        TableSpec.from_json(d["name"], d["id"], d["spec"])
        for d in await _deleted(store)
        if now - d["deleted_ms"] < RETENTION_MS
    ]
