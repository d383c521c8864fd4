"""The replicators of one region: a streamkit handler per (table, peer) underneath.

For every replicated table and every other region, a :class:`PeerReplicator` runs a
:class:`~streamkit.runtime._worker.HandlerRunner` over the *peer's* log (the table's
topic there) that writes into *this* region's store:

* its consumer group ``{namespace}.{table}.replica-{peer}-to-{region}`` lives on the
  peer's log; its checkpoints live in this store and commit in one transaction with the
  writes they cover (the runtime's exactly-once context writes), so a replicator killed
  at any point resumes with nothing lost and nothing applied twice;
* it takes only records whose ``origin_region`` is the peer (full mesh: what the peer
  got from a third region comes from that region directly), so nothing loops;
* it is a batch handler: a chunk of up to ``REPLICA_CHUNK`` records is one invocation
  and one transaction with the checkpoint; of each record only what a replica write
  needs is decoded (``replica_fields``: no old image, the new image's bytes as stored);
* each record becomes a :class:`~streamkit.storage._versions.ReplicaOp`: applied when its
  version ``(created_at, peer)`` beats the item's stored version, else counted as a
  conflict lost to last-writer-wins;
* ``on_failure="block"``: a record that cannot be applied (settings that differ, a key
  that does not fit) is retried until it can, never skipped — the replicator's status
  says why it waits;
* a supervisor restarts the runner after any failure (an unreachable peer log, a
  broker restart) with backoff; the peer's log retention bounds how long a region may
  be away and still catch up.

:class:`Replication` owns them all for one App: it starts and stops replicators as
tables and replica sets change, publishes this region's settings, checks the peers',
keeps a heartbeat and the conflict counters in the store (for ``streamkit replicas``
from any process), and prunes old tombstones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

from streamkit._names import group_snapshot_key
from streamkit.exceptions import LogError, StreamkitError, TableNotFound
from streamkit.log import ChangeLog, from_url
from streamkit.records import DEFAULT_REGION, ChangeRecord
from streamkit.records._avro import encode_image, raw_record, replica_fields
from streamkit.records._values import item_size
from streamkit.replication._config import replicator_name, settings_of, settings_problem
from streamkit.replication._seed import PENDING, apply_seed, publish_seed
from streamkit.replication._settings import publish_settings, read_settings
from streamkit.runtime._registry import EVENTS, build_spec
from streamkit.runtime._worker import HandlerRunner, RuntimeOptions, group_name
from streamkit.storage._keys import message_key
from streamkit.storage._versions import (
    ReplicaOp,
    TombstonePruneOp,
    Version,
    decode_version,
    version_storage_id,
)
from streamkit.storage._write_ops import ItemKey, WriteJob

if TYPE_CHECKING:
    from collections.abc import Callable

    from streamkit.records import UserIdentity
    from streamkit.runtime._batch import Batch, Context
    from streamkit.runtime._metrics import RuntimeMetrics
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = (
    "PeerReplicator",
    "ReplicaSettingsMismatch",
    "Replication",
    "ReplicationOptions",
    "meta_prefix",
)


REPLICA_CHUNK = 1000  # records applied in one transaction with their checkpoint, at most


def _logger() -> Any:
    import structlog

    return structlog.get_logger("streamkit.replication")


class ReplicaSettingsMismatch(StreamkitError):
    """A peer's table cannot be replicated into this one (its settings differ); the
    replicator applies nothing and retries until they agree."""


def meta_prefix(namespace: str, spec: TableSpec) -> str:
    """The prefix of a replicated table's ``sk_meta`` keys (per table id: a table
    deleted and created again under its name starts from zero)."""
    return f"replication.{namespace}.{spec.name}/{spec.table_id}."


def conflicts_key(namespace: str, spec: TableSpec, peer: str) -> str:
    """Writes from ``peer`` that last-writer-wins discarded (committed with them)."""
    return f"{meta_prefix(namespace, spec)}{peer}.conflicts"


def seed_key(namespace: str, spec: TableSpec, peer: str) -> str:
    """The seed of this table for region ``peer``: ``"pending"`` until this region's
    manager has published it, then its ``{"id", "seq", "items"}`` (JSON); see ``_seed``."""
    return f"{meta_prefix(namespace, spec)}{peer}.seed"


def heartbeat_key(namespace: str, spec: TableSpec, peer: str) -> str:
    """The replicator's heartbeat and state (JSON), for status from any process."""
    return f"{meta_prefix(namespace, spec)}{peer}.alive"


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicationOptions:
    """Knobs of the replicators.

    Attributes:
        tombstone_horizon: seconds a deletion's tombstone is kept (None: for ever). It
            must exceed how late a peer's older write can arrive: the peers' log
            retention.
        check_interval: seconds between checks of tables, replica sets and settings.
        prune_interval: seconds between tombstone prunes.
        max_retry_delay: the longest wait between attempts at a record that cannot be
            applied yet.
    """

    tombstone_horizon: float | None = 86_400.0
    check_interval: float = 2.0
    prune_interval: float = 60.0
    max_retry_delay: float = 5.0


class PeerReplicator:
    """Replicates one table from one peer region into this region's store."""

    def __init__(self, owner: Replication, spec: TableSpec, peer: str, url: str) -> None:
        self.owner = owner
        self.table = spec.name
        self.table_id = spec.table_id
        self.peer = peer
        self.url = url
        self.name = replicator_name(peer, owner.region)
        hspec = build_spec(
            self.apply,
            spec.name,
            EVENTS,
            name=self.name,
            batch_size=REPLICA_CHUNK,
            on_failure="block",
            retries=10_000,
            max_retry_delay=owner.options.max_retry_delay,
        )
        # the origin is checked in apply(), from the few fields it decodes (a spec's
        # origin_region would have the runtime decode every record whole first)
        self.spec = hspec
        self.problem: str | None = "not checked yet"
        self.error: str | None = None
        self.runner: HandlerRunner | None = None
        self.task: asyncio.Task[None] | None = None
        self.conflicts = 0
        self._counter = conflicts_key(owner.namespace, spec, peer)
        # the peer's seed for this region, as its settings say: None (none: the table
        # was created with this region), "pending", or {"id", "seq", "items"}
        self.seed: Any = None
        self.seed_used: Any = None  # the seed the running runner started after
        self.seed_ready = asyncio.Event()  # set while no seed is pending
        self.group = group_name(owner.namespace, spec.name, self.name)

    @property
    def running(self) -> bool:
        """True while the replicator's runner is up and in its consumer group."""
        return self.runner is not None and self.runner.ready.is_set() and self.error is None

    async def drained(self) -> bool:
        """True when the replicator runs and has applied everything in the peer's log."""
        runner = self.runner
        if runner is None or self.task is None or self.task.done() or self.error is not None:
            return False
        try:
            if not runner.ready.is_set():
                # waiting for the peer to publish the table at all: nothing to apply yet
                return await runner.log.describe_topic(runner.topic) is None
            return await runner.drained()
        except LogError:
            return False  # between two runs, or the peer's log is unreachable

    async def apply(self, batch: Batch, ctx: Context) -> None:
        """The handler: a chunk of peer changes as last-writer-wins writes (in ``ctx``'s
        writes, so they commit together with the checkpoint, in one transaction).

        Only what a replica write needs is decoded (``replica_fields``): the keys, the new
        image (its bytes are the stored encoding: nothing is re-encoded), the time, the
        identity and the origin; the old image is skipped.
        """
        if self.problem is not None:
            raise ReplicaSettingsMismatch(f"table {self.table!r} from {self.peer}: {self.problem}")
        spec = await self.owner.store.spec(self.table)
        peer = self.peer
        counter = self._counter
        extract = spec.key.extract
        pname = spec.key.partition.name
        table = ctx.get_table(self.table)
        add = ctx._effects._add
        for record in batch:
            raw = raw_record(record)
            fields = _fields_of(record) if raw is None else replica_fields(raw)
            event, kdata, key, data, item, created_ms, identity, origin = fields
            if (origin or DEFAULT_REGION) != peer:
                continue  # what the peer applied from a third region comes from there
            # a key of another schema: ValidationError, retried
            k = ItemKey(key, *extract(key), kdata, item_size(key), message_key(key[pname]))
            if event == "REMOVE":
                item = data = None
                size = 0
            elif item is None or data is None:
                raise ReplicaSettingsMismatch(
                    f"a record of {self.table!r} from {peer} has no new image: the "
                    "peer's stream must be NEW_AND_OLD_IMAGES"
                )
            else:
                size = item_size(item)
            add(
                table,
                _replica_builder(
                    spec,
                    k,
                    Version(created_ms, peer, item is None),
                    item,
                    data,
                    size,
                    identity,
                    counter,
                ),
            )

    async def _seeded(self, log: ChangeLog) -> None:
        """Wait while the peer copies its items for this region, then apply that copy
        (once: the group's snapshot position records it) before the runner starts."""
        await self.seed_ready.wait()
        seed = self.seed_used = self.seed
        if not isinstance(seed, dict):
            return
        key = group_snapshot_key(self.group)
        stored = await self.owner.store.engine.read_meta([key])
        if int(stored.get(key, -1)) >= int(seed["seq"]):
            return
        n = await apply_seed(
            self.owner.store,
            log,
            self.owner.namespace,
            self.table,
            self.owner.region,
            self.peer,
            seed,
            key,
        )
        _logger().info("seed applied", table=self.table, peer=self.peer, entries=n)

    async def run(self) -> None:
        """Run the replicator until cancelled, restarting it after failures."""
        delay = 0.5
        log = self.owner.peer_log(self.url)
        while True:
            runner = HandlerRunner(
                self.owner.store,
                log,
                self.owner.namespace,
                self.spec,
                options=self.owner.runtime_options,
                metrics=None
                if self.owner.metrics is None
                else self.owner.metrics.handler(self.table, self.name),
            )
            self.runner = runner
            started = time.monotonic()
            try:
                await self._seeded(log)
                await runner.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"
                _logger().warning(
                    "replicator failed; restarting",
                    table=self.table,
                    peer=self.peer,
                    error=self.error,
                )
            if time.monotonic() - started > 60:
                delay = 0.5
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            self.error = None


def _fields_of(record: ChangeRecord) -> tuple[Any, ...]:
    """``replica_fields`` of a record that is not a lazily decoded one."""
    new = record.new_image
    item = None if new is None else dict(new)
    key = dict(record.keys)
    return (
        record.event_name,
        encode_image(key),
        key,
        None if item is None else encode_image(item),
        item,
        record.created_at_ms,
        record.user_identity,
        record.origin,
    )


def _replica_builder(
    spec: TableSpec,
    k: ItemKey,
    version: Version,
    item: dict[str, Any] | None,
    data: bytes | None,
    size: int,
    identity: UserIdentity | None,
    counter: str,
) -> Callable[[TableSpec], ReplicaOp]:
    def build(s: TableSpec) -> ReplicaOp:
        kk = k if s.table_id == spec.table_id else ItemKey.of(s, k.key)
        return ReplicaOp(s, kk, version, item, data, size, identity, counter)

    return build


class Replication:
    """Every replicator of one App (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        log: ChangeLog,
        namespace: str,
        region: str,
        *,
        runtime_options: RuntimeOptions,
        options: ReplicationOptions,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.store = store
        self.log = log
        self.namespace = namespace
        self.region = region
        self.runtime_options = runtime_options
        self.options = options
        self.metrics = metrics
        self.replicators: dict[tuple[str, str], PeerReplicator] = {}
        self._logs: dict[str, ChangeLog] = {}
        self._published: dict[str, dict[str, Any]] = {}
        self._last_prune = 0.0

    def peer_log(self, url: str) -> ChangeLog:
        """The (shared) change log of a peer."""
        log = self._logs.get(url)
        if log is None:
            log = self._logs[url] = from_url(url)
        return log

    def runners(self) -> list[PeerReplicator]:
        """Every replicator (each has ``spec`` and ``drained()``, as a handler runner)."""
        return list(self.replicators.values())

    def get(self, table: str, peer: str) -> PeerReplicator | None:
        """The replicator of ``table`` from ``peer`` in this process, if any."""
        return self.replicators.get((table, peer))

    async def run(self) -> None:
        """Keep the replicators in line with the catalog until cancelled."""
        try:
            while True:
                try:
                    await self.check()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _logger().exception("replication check failed; retrying")
                await asyncio.sleep(self.options.check_interval)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop every replicator (they finish and commit in-flight work) and close the
        peers' logs."""
        reps = list(self.replicators.values())
        self.replicators = {}
        for r in reps:
            if r.task is not None:
                r.task.cancel()
        for r in reps:
            if r.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await r.task
        logs, self._logs = list(self._logs.values()), {}
        for log in logs:
            with contextlib.suppress(Exception):
                await log.close()

    async def check(self) -> None:
        """One pass: start/stop replicators, publish and compare settings, heartbeats,
        conflict counters, tombstone pruning."""
        await self.store.reload()
        specs = {s.name: s for s in self.store.known_specs if s.replicas}
        wanted: dict[tuple[str, str], tuple[TableSpec, str]] = {}
        for spec in specs.values():
            for peer, url in spec.replicas:
                if peer != spec.region:
                    wanted[(spec.name, peer)] = (spec, url)
        for key, rep in list(self.replicators.items()):
            spec_url = wanted.get(key)
            if spec_url is None or spec_url[1] != rep.url or spec_url[0].table_id != rep.table_id:
                self.replicators.pop(key)
                if rep.task is not None:
                    rep.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await rep.task
        # each table's replication keys (seeds, conflict counters), read once a pass
        meta = {
            name: await self.store.engine.meta_with_prefix(meta_prefix(self.namespace, spec))
            for name, spec in specs.items()
        }
        for spec in specs.values():
            mine = dict(settings_of(spec), seeds=await self._seeds(spec, meta[spec.name]))
            if self._published.get(spec.name) != mine:
                await publish_settings(self.log, self.namespace, mine)
                self._published[spec.name] = mine
        for key, (spec, url) in wanted.items():
            if key not in self.replicators:
                self.replicators[key] = PeerReplicator(self, spec, key[1], url)
        await self._check_peers(specs)
        for key, rep in self.replicators.items():
            # started once the peer's settings were compared; started again if it died
            if rep.task is None or rep.task.done():
                rep.task = asyncio.create_task(
                    rep.run(), name=f"streamkit-replica-{key[0]}-{key[1]}"
                )
        await self._heartbeat(specs, meta)
        now = time.monotonic()
        if now - self._last_prune >= self.options.prune_interval:
            self._last_prune = now
            for spec in specs.values():
                await self.prune_tombstones(spec)

    async def _seeds(self, spec: TableSpec, stored: dict[str, str]) -> dict[str, Any]:
        """This table's seeds for regions added to it (``stored``: its replication keys):
        each pending one is published first (see ``_seed``), then
        ``{region: "pending" | {"id", "seq", "items"}}``."""
        prefix = meta_prefix(self.namespace, spec)
        regions = {r for r, _ in spec.replicas} - {self.region}
        out: dict[str, Any] = {}
        for key, value in stored.items():
            peer = key[len(prefix) :].removesuffix(".seed")
            if not key.endswith(".seed") or peer not in regions:
                continue
            if value == PENDING:
                info = await publish_seed(
                    self.store, self.log, self.namespace, spec, self.region, peer
                )
                _logger().info("seed published", table=spec.name, peer=peer, **info)
                await self.store.write_meta({key: json.dumps(info)})
                out[peer] = info
            else:
                out[peer] = json.loads(value)
        return out

    async def _check_peers(self, specs: dict[str, TableSpec]) -> None:
        by_url: dict[str, list[PeerReplicator]] = {}
        for rep in self.replicators.values():
            by_url.setdefault(rep.url, []).append(rep)
        for url, reps in by_url.items():
            try:
                published = await read_settings(self.peer_log(url), self.namespace)
            except StreamkitError as e:
                for rep in reps:
                    rep.problem = f"cannot read the peer's settings: {e}"
                    if rep.seed != PENDING:
                        rep.seed_ready.set()  # the runner reports the peer's log itself
                continue
            for rep in reps:
                spec = specs.get(rep.table)
                if spec is None:
                    continue
                theirs = published.get(rep.table)
                if theirs is not None and theirs.get("region") != rep.peer:
                    rep.problem = (
                        f"the log at {url} belongs to region {theirs.get('region')!r}, "
                        f"not {rep.peer!r}"
                    )
                    continue
                problem = settings_problem(settings_of(spec), theirs)
                seed = (theirs or {}).get("seeds", {}).get(self.region)
                if problem is None and seed == PENDING:
                    problem = "the peer is copying the table's items for this region"
                rep.seed = seed
                if seed == PENDING:
                    rep.seed_ready.clear()
                else:
                    rep.seed_ready.set()
                if (
                    isinstance(seed, dict)
                    and seed != rep.seed_used
                    and rep.task is not None
                    and not rep.task.done()
                ):
                    # started before this seed was announced: start again, after it
                    rep.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await rep.task
                    rep.task = None
                if problem != rep.problem and problem is not None:
                    _logger().warning(
                        "replication waits: settings differ",
                        table=rep.table,
                        peer=rep.peer,
                        problem=problem,
                    )
                rep.problem = problem

    async def _heartbeat(
        self, specs: dict[str, TableSpec], meta: dict[str, dict[str, str]]
    ) -> None:
        values: dict[str, str] = {}
        now_ms = int(time.time() * 1000)
        for rep in self.replicators.values():
            spec = specs.get(rep.table)
            if spec is None:
                continue
            values[heartbeat_key(self.namespace, spec, rep.peer)] = json.dumps(
                {
                    "at_ms": now_ms,
                    "running": rep.running,
                    "error": rep.error,
                    "problem": rep.problem,
                }
            )
        if values:
            await self.store.write_meta(values)
        for spec in specs.values():
            stored = meta[spec.name]
            for rep in self.replicators.values():
                if rep.table == spec.name:
                    rep.conflicts = int(
                        stored.get(conflicts_key(self.namespace, spec, rep.peer), 0)
                    )

    async def prune_tombstones(self, spec: TableSpec, *, now_ms: int | None = None) -> int:
        """Remove the tombstones of ``spec`` older than the horizon; returns how many."""
        horizon = self.options.tombstone_horizon
        if horizon is None:
            return 0
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return await prune_tombstones(self.store, spec, before_ms=now - int(horizon * 1000))


async def prune_tombstones(store: Store, spec: TableSpec, *, before_ms: int) -> int:
    """Remove the tombstones of a replicated table deleted before ``before_ms`` (each
    only if it is still a tombstone then: a write since keeps its version row)."""
    pruned = 0
    sid = version_storage_id(spec.table_id)
    for _ in range(1000):  # 500,000 a call at most; the next prune goes on
        rows = await store.engine.expired(sid, before_ms / 1000, 500)
        ops: list[Any] = []
        for data in rows:
            v, key = decode_version(data)
            if not v.tombstone or key is None:
                continue
            try:
                ops.append(TombstonePruneOp(spec, ItemKey.of(spec, key), before_ms))
            except StreamkitError:
                continue
        if not ops:
            return pruned
        for op in ops:
            try:
                await store.write(WriteJob([op]))
            except TableNotFound:
                return pruned
        pruned += len(ops)
        if len(rows) < 500:
            return pruned
    return pruned
