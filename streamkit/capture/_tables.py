"""Table administration that depends on the change log's names: what ``App`` and the
DynamoDB endpoint both use to create a table, turn its stream on, or restore into a
new one, so that a table whose topic could not exist is refused the same way
whichever surface creates it.

Everything here takes a :class:`~streamkit.storage.Store` and the namespace (the
topic prefix); nothing holds an ``App``.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamkit._names import check_reserved_table_name, check_table_topic
from streamkit.exceptions import ValidationError
from streamkit.records import StreamView
from streamkit.storage._capacity import Capacity, OnDemand, Provisioned
from streamkit.storage._indexes import GlobalIndex, LocalIndex, build_indexes
from streamkit.storage._keys import KeyAttribute, KeySchema
from streamkit.storage._spec import TableSpec, check_table_name
from streamkit.storage._store import Store

__all__ = (
    "check_restore_target",
    "check_stream_change",
    "create_table",
    "stream_view",
)


def stream_view(stream: StreamView | str | None) -> StreamView | None:
    """A stream view type from its name (ValidationError for an unknown one)."""
    if stream is None or isinstance(stream, StreamView):
        return stream
    try:
        return StreamView(stream)
    except ValueError:
        raise ValidationError(
            f"stream={stream!r} must be one of {[v.value for v in StreamView]} or None"
        ) from None


async def create_table(
    store: Store,
    namespace: str,
    name: str,
    partition_key: str | tuple[str, str],
    sort_key: str | tuple[str, str] | None = None,
    *,
    stream: StreamView | str | None = StreamView.NEW_AND_OLD_IMAGES,
    ttl_attribute: str | None = None,
    capacity: Capacity | None = None,
    pitr: bool = True,
    recovery_days: int = 35,
    global_indexes: Sequence[GlobalIndex] | None = None,
    local_indexes: Sequence[LocalIndex] | None = None,
    region: str | None = None,
    replicas: tuple[tuple[str, str], ...] = (),
) -> TableSpec:
    """Check a new table's settings (see ``App.create_table``) and add it to the store
    (``region``/``replicas``: a global table's, checked by ``streamkit.replication``)."""
    check_table_name(name)
    check_reserved_table_name(namespace, name)
    part = KeyAttribute.parse(partition_key, "partition_key")
    sort = None if sort_key is None else KeyAttribute.parse(sort_key, "sort_key")
    if sort is not None and sort.name == part.name:
        raise ValidationError("sort_key must differ from partition_key")
    if ttl_attribute is not None and (not isinstance(ttl_attribute, str) or not ttl_attribute):
        raise ValidationError("ttl_attribute must be a non-empty attribute name")
    cap = OnDemand() if capacity is None else capacity
    if not isinstance(cap, (OnDemand, Provisioned)):
        raise ValidationError("capacity must be sk.OnDemand() or sk.Provisioned(read=, write=)")
    if not isinstance(pitr, bool):
        raise ValidationError("pitr must be True or False")
    if (
        isinstance(recovery_days, bool)
        or not isinstance(recovery_days, int)
        or not (1 <= recovery_days <= 35)
    ):
        raise ValidationError("recovery_days must be an integer from 1 to 35")
    key = KeySchema(part, sort)
    indexes = build_indexes(key, global_indexes, local_indexes)
    spec = TableSpec(
        name=name,
        key=key,
        stream=stream_view(stream),
        ttl_attribute=ttl_attribute,
        capacity=cap,
        pitr=pitr,
        recovery_days=recovery_days,
        indexes=indexes,
        last_slot=len(indexes),
        region=region if replicas else None,
        replicas=replicas,
    )
    await store.ensure_open()
    if spec.stream is not None:
        await _check_stream_topic(store, namespace, name)
    created = await store.engine.create_table(spec)
    store.remember(created)
    return created


async def _check_stream_topic(store: Store, namespace: str, name: str) -> None:
    """Refuse a streamed table ``name`` whose topic could not exist (ValidationError):
    reserved, too long for the namespace, or Kafka's same as another streamed table's.
    The relay sets aside any table that gets past this (made before it, or by two
    processes at once)."""
    await store.reload()
    streamed = [s.name for s in store.known_specs if s.stream is not None]
    check_table_topic(namespace, name, streamed)


async def check_stream_change(
    store: Store, namespace: str, before: TableSpec, after: TableSpec
) -> None:
    """The check of :func:`create_table` for a table whose stream is being turned on."""
    if before.stream is None and after.stream is not None:
        await _check_stream_topic(store, namespace, after.name)


async def check_restore_target(
    store: Store, namespace: str, target: str, source: TableSpec | None
) -> None:
    """The check of :func:`create_table` for a table a restore creates with the settings
    of ``source`` (None: not known here; the restore reports it). The name itself is
    checked by the restore, after what it checks first."""
    check_reserved_table_name(namespace, target)
    if source is not None and source.stream is not None:
        await _check_stream_topic(store, namespace, target)
