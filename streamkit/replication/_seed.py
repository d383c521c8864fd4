"""Adding a region to a global table that holds items: the seed.

A region cannot read another's store, only its log. So when ``update_table(replicas=)``
adds region *N* to a table, this region (each existing region does the same):

1. marks the addition *pending* in its store (``{meta_prefix}{N}.seed``) before the new
   replica set is stored; its published settings say ``seeds: {N: "pending"}``, and
   *N*'s replicator from here waits;
2. (the :class:`~._replicator.Replication` manager) takes one consistent snapshot of
   the table's items **and their version rows** with the newest sequence number *S* of
   that instant (``StorageEngine.snapshots``: one read transaction), and appends it to
   ``__streamkit_seed.{namespace}`` in its own log, keyed ``{table}/{N}/{seed id}``,
   ending with an end record that carries *S* and the count; then stores the seed's
   id and *S* in place of *pending*, and publishes them in its settings;
3. *N*'s replicator from here, before it starts its runner, applies the seed as
   last-writer-wins writes (``ReplicaOp`` without a conflict counter: a seed that loses
   to a newer write is no conflict) in chunks, and with the last chunk, in its
   transaction, stores *S* as its group's snapshot position
   (``runtime.{group}.snapshot``): the runtime then skips the peer's records up to *S*,
   which the seed holds, and applies those after it. No gap (every change after the
   snapshot has a larger sequence number), no duplicate (those before are skipped; and
   a record applied twice would be harmless: its version equals the stored one).

An item written before the table became global has no version row; its seed entry
gets version ``(0, region)``, older than any write. A crash while publishing leaves no
end record (the seed is ignored) and *pending* stored: the manager publishes it again.
A crash while applying applies it again from the start (harmless: last-writer-wins).
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import StreamkitError
from streamkit.log import OutRecord, TopicConfig
from streamkit.records._avro import decode_image
from streamkit.records._values import item_size
from streamkit.storage._effects import Checkpoint, Effects
from streamkit.storage._table import Table
from streamkit.storage._versions import (
    ReplicaOp,
    Version,
    decode_version,
    encode_version,
    version_storage_id,
)
from streamkit.storage._write_ops import ItemKey

if TYPE_CHECKING:
    from collections.abc import Callable

    from streamkit.log import ChangeLog
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("PENDING", "SEED_CONFIG", "apply_seed", "publish_seed", "seed_topic")

PENDING = "pending"
SEED_CONFIG = TopicConfig(partitions=1, retention_ms=7 * 86_400_000, cleanup_policy="delete")
_PUBLISH_CHUNK = 500  # records appended in one log transaction
_APPLY_CHUNK = 1000  # seed items applied in one store transaction
_LEN = struct.Struct(">I")


class SeedError(StreamkitError):
    """A peer's seed cannot be applied (incomplete: its log no longer holds all of it)."""


def seed_topic(namespace: str) -> str:
    """The topic of a region's seeds (outside ``{namespace}.``: no table can take it)."""
    return f"__streamkit_seed.{namespace}"


def _entry(version: bytes, item: bytes | None) -> bytes:
    return b"I" + _LEN.pack(len(version)) + version + (item or b"")


async def publish_seed(
    store: Store, log: ChangeLog, namespace: str, spec: TableSpec, region: str, target: str
) -> dict[str, Any]:
    """Append a consistent copy of ``spec``'s items and version rows to this region's
    seed topic for region ``target``; returns ``{"id", "seq", "items"}``."""
    seq, (items, versions) = await store.engine.snapshots(
        [spec.table_id, version_storage_id(spec.table_id)]
    )
    by_key = {(pk, sk): data for pk, sk, data in versions}
    seed_id = uuid.uuid4().hex
    topic = seed_topic(namespace)
    key = f"{spec.name}/{target}/{seed_id}".encode()
    out: list[bytes] = []
    for pk, sk, data in items:
        version = by_key.pop((pk, sk), None)
        if version is None:  # written before the table became global: older than any write
            version = encode_version(Version(0, region))
        out.append(_entry(version, data))
    out += [_entry(v, None) for v in by_key.values()]  # tombstones: no item
    await log.open()
    await log.ensure_topic(topic, SEED_CONFIG)
    producer = log.producer(f"{topic}-{region}-{spec.name}-{target}")
    await producer.start()
    try:
        for start in range(0, len(out), _PUBLISH_CHUNK):
            await producer.append(
                [OutRecord(topic, key, v, partition=0) for v in out[start : start + _PUBLISH_CHUNK]]
            )
        end = {"seq": seq, "items": len(out), "region": region, "table": spec.name}
        await producer.append([OutRecord(topic, key, b"E" + json.dumps(end).encode(), partition=0)])
    finally:
        await producer.close()
    return {"id": seed_id, "seq": seq, "items": len(out)}


async def apply_seed(
    store: Store,
    peer_log: ChangeLog,
    namespace: str,
    table: str,
    region: str,
    peer: str,
    seed: dict[str, Any],
    snapshot_key: str,
) -> int:
    """Apply ``peer``'s seed ``seed`` (its published ``{"id", "seq", ...}``) to this
    region's ``table``; the last chunk stores ``seed["seq"]`` under ``snapshot_key`` in
    its transaction. Returns the entries applied.

    Raises:
        SeedError: the seed is not (or no longer) complete in the peer's log.
    """
    topic = seed_topic(namespace)
    key = f"{table}/{region}/{seed['id']}".encode()
    seq = int(seed["seq"])
    await peer_log.open()
    if await peer_log.describe_topic(topic) is None:
        raise SeedError(f"the seed of {table!r} from {peer} is not in its log ({topic} is missing)")
    spec = await store.spec(table)
    t = Table(store, table)
    effects = Effects(store)
    applied = 0
    reader = peer_log.reader(topic, partitions=[0])
    try:
        end = (await reader.end_offsets()).get(0, 0)
        await reader.seek_to_beginning(0)
        while await reader.position(0) < end:
            records = await reader.fetch(max_records=1000, timeout=0.5)
            if not records and await reader.position(0) >= end:
                break
            for r in records:
                if r.key != key:
                    continue
                if r.value[:1] == b"E":
                    done = json.loads(r.value[1:])
                    if int(done["items"]) != applied + len(effects):
                        raise SeedError(
                            f"the seed of {table!r} from {peer} holds {applied + len(effects)} "
                            f"of its {done['items']} entries (trimmed from its log?)"
                        )
                    await effects.commit_with([Checkpoint(snapshot_key, seq, seq)])
                    return int(done["items"])
                effects._add(t, _builder(spec, r.value, peer))
                if len(effects) >= _APPLY_CHUNK:
                    applied += len(effects)
                    await effects.commit_with([])
    finally:
        await reader.close()
    raise SeedError(f"the seed of {table!r} from {peer} has no end in its log (trimmed?)")


def _builder(spec: TableSpec, value: bytes, peer: str) -> Callable[[TableSpec], ReplicaOp]:
    (n,) = _LEN.unpack_from(value, 1)
    version, key = decode_version(value[5 : 5 + n])
    data = value[5 + n :] or None
    item = None if data is None else decode_image(data)
    if item is not None:
        key = {name: item[name] for name in spec.key.names}
    if key is None:
        raise SeedError(f"a seed entry of {spec.name!r} from {peer} has neither item nor key")
    size = 0 if item is None else item_size(item)

    def build(s: TableSpec) -> ReplicaOp:
        return ReplicaOp(s, ItemKey.of(s, key), version, item, data, size, None, None)

    return build
