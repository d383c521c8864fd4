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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from streamkit.server._convert import shown
from streamkit.server._errors import validation

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = (
    "RETENTION_MS",
    "STREAM_VIEWS",
    "StreamEntry",
    "check_view_type",
    "disable_stream",
    "enable_stream",
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
