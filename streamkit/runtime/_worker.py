"""Running one handler: a consumer-group member, its partitions and their commits.

A :class:`HandlerRunner` joins the handler's consumer group, fetches, feeds each owned
partition (``_tracking.py``: lanes, done offsets), commits (coalesced, and always
before a partition is given away) and settles each chunk's table writes with its
lane's checkpoint. What happens to a chunk between fetch and commit (selection,
invocation, retries, bisect, the DLQ) is the delivery policy in ``_delivery.py``,
shared with replay; tumbling windows are in ``_windows.py``.
See docs/design/runtime.md for the moving parts and the failure cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from streamkit._names import (
    check_dlq_topic,
    checkpoint_key,
    checkpoint_prefix,
    group_snapshot_key,
    handler_group,
    table_topic,
)
from streamkit.exceptions import LogError, ValidationError
from streamkit.log import CommitRefused, LogConsumer
from streamkit.runtime._delivery import (
    DeadLetterRoute,
    Delivery,
    Item,
    PartialBatchFailure,
    RecordExpired,
    backoff,
    bound_logger,
    call_handler,
)
from streamkit.runtime._dlq import DeadLetterQueue
from streamkit.runtime._tracking import _Lane, _Partition
from streamkit.runtime._windows import process_window
from streamkit.storage._effects import Checkpoint, Effects, read_checkpoints

if TYPE_CHECKING:
    from streamkit.runtime._metrics import HandlerMetrics
    from streamkit.runtime._registry import HandlerSpec
    from streamkit.storage._store import Store

__all__ = (
    "HandlerRunner",
    "PartialBatchFailure",
    "RecordExpired",
    "RuntimeOptions",
    "backoff",
    "call_handler",
    "group_name",
)

# the names other modules imported from here before the split into _delivery.py,
# _tracking.py and _windows.py
_Item = Item
_bound_logger = bound_logger


def group_name(namespace: str, table: str, handler: str) -> str:
    """A handler's consumer group (and the prefix of its stored checkpoints)."""
    return handler_group(namespace, table, handler)


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Knobs of the runtime itself (not of a handler)."""

    session_timeout: float = 10.0
    shutdown_timeout: float = 30.0
    max_buffered: int = 10_000  # records waiting per partition before it is paused
    max_buffered_bytes: int = 4 << 20  # ... or their bytes
    commit_interval: float = 0.05
    dlq_retention_ms: int = 14 * 86_400_000


class HandlerRunner:
    """One handler in this process: a member of its consumer group.

    Args:
        store: the storage (for Context writes, checkpoints and snapshots).
        log: the change log.
        namespace: the App's namespace.
        spec: the handler.
        options: runtime knobs.
        metrics: where to count (None: not counted).
    """

    def __init__(
        self,
        store: Store,
        log: Any,
        namespace: str,
        spec: HandlerSpec,
        *,
        options: RuntimeOptions,
        metrics: HandlerMetrics | None = None,
        topic_partitions: int = 8,
    ) -> None:
        self.store = store
        self.log = log
        self.namespace = namespace
        self.spec = spec
        self.options = options
        self.metrics = metrics
        self.topic = table_topic(namespace, spec.table)
        self.group = group_name(namespace, spec.table, spec.name)
        self.dlq = DeadLetterQueue(
            log, namespace, spec.table, spec.name, retention_ms=options.dlq_retention_ms
        )
        self.topic_partitions = topic_partitions
        self.consumer: LogConsumer | None = None
        self.parts: dict[int, _Partition] = {}
        self.member = uuid.uuid4().hex[:8]
        self._commit_wake = asyncio.Event()
        self._stopping = False
        self._listener_lock = asyncio.Lock()
        self.ready = asyncio.Event()
        self._log = bound_logger(spec)
        # where records that fail for good go (DLQ / drop / stop), and the policy that
        # takes a chunk there: the same Delivery replay runs with its own route
        self.route = DeadLetterRoute(spec, self.dlq, metrics=metrics, log=self._log)
        self.delivery = Delivery(
            spec, self.route, metrics=metrics, log=self._log, region=getattr(store, "origin", None)
        )

    @property
    def failure(self) -> LogError | None:
        """Set when the handler must stop (its DLQ refused failed records for good)."""
        return self.route.failure

    @property
    def invocations(self) -> int:
        return self.delivery.invocations

    # --- consumer plumbing ---------------------------------------------------------------
    def consumer_pause(self, p: int) -> None:
        if self.consumer is not None:
            self.consumer.pause([p])

    def consumer_resume(self, p: int) -> None:
        if self.consumer is not None and p in self.parts:
            self.consumer.resume([p])

    def commit_soon(self) -> None:
        self._commit_wake.set()

    async def on_assigned(self, partitions: list[int]) -> None:
        async with self._listener_lock:
            consumer = self.consumer
            assert consumer is not None
            committed = await consumer.committed()
            stored = await read_checkpoints(self.store, checkpoint_prefix(self.group))
            for p in partitions:
                lanes = {}
                prefix = f"{checkpoint_prefix(self.group)}{p}."
                for k, v in stored.items():
                    if k.startswith(prefix) and k[len(prefix) :].isdigit():
                        lanes[int(k[len(prefix) :])] = v
                part = _Partition(self, p, lanes)
                seqs = [
                    stored[k]
                    for k in (f"{prefix}snapshot", group_snapshot_key(self.group))
                    if k in stored
                ]
                part.snapshot_seq = max(seqs) if seqs else None
                if p not in committed:
                    await self._first_position(part)
                part.committed = committed.get(p, part.committed)
                # records fetched before a seek above (from the reset position) are
                # below this and dropped by feed()
                part.tracker.position = await consumer.position(p)
                self.parts[p] = part
                part.start()
            self._log.info("partitions assigned", partitions=partitions, member=self.member)

    async def _first_position(self, part: _Partition) -> None:
        """Where a partition the group never committed starts (``start=``)."""
        consumer = self.consumer
        assert consumer is not None
        start = self.spec.start
        if isinstance(start, datetime):
            # the end offset is read first: a record appended between the two lookups is
            # then either found by time or after that end, never skipped
            end = (await consumer.end_offsets())[part.p]
            offset = await consumer.offset_for_time(part.p, int(start.timestamp() * 1000))
            await consumer.seek(part.p, end if offset is None else offset)
        elif start == "snapshot" and part.snapshot_seq is None:
            from streamkit.runtime._snapshot import deliver_snapshot

            await deliver_snapshot(self, part)

    async def on_revoked(self, partitions: list[int]) -> None:
        async with self._listener_lock:
            deadline = time.monotonic() + self.options.shutdown_timeout
            parts = [self.parts[p] for p in partitions if p in self.parts]
            await asyncio.gather(*(part.stop(deadline) for part in parts))
            await self._commit([p.p for p in parts])
            for part in parts:
                self.parts.pop(part.p, None)
            if parts:
                self._log.info("partitions revoked", partitions=partitions, member=self.member)

    async def _commit(self, partitions: Sequence[int] | None = None) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        offsets: dict[int, int] = {}
        for p in list(self.parts if partitions is None else partitions):
            part = self.parts.get(p)
            if part is None:
                continue
            point = part.tracker.commit_point()
            if not part.tracker.order and part.idle() and not part.paused and not part.stopping:
                # everything fetched is done: the consumer's position (past Kafka's
                # transaction markers, or an initial seek) is the checkpoint
                with contextlib.suppress(LogError, ValidationError):
                    pos = await consumer.position(p)
                    point = pos if point is None else max(point, pos)
            if point is None:
                continue
            if part.committed is None or point > part.committed:
                offsets[p] = point
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitRefused as e:
            self._log.warning("commit refused: partitions moved", partitions=e.partitions)
            for p in e.partitions:
                part = self.parts.get(p)
                if part is not None:
                    part.stopping = True
            return
        for p, off in offsets.items():
            part = self.parts.get(p)
            if part is not None:
                part.committed = off

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wake.wait()
            self._commit_wake.clear()
            try:
                await self._commit()
            except LogError as e:
                self._log.warning("commit failed; will retry", error=str(e))
                await asyncio.sleep(0.5)
                self._commit_wake.set()
            await asyncio.sleep(self.options.commit_interval)

    async def _lag_loop(self) -> None:
        """Publish each owned partition's lag to the metrics once a second."""
        while True:
            await asyncio.sleep(1.0)
            consumer, m = self.consumer, self.metrics
            if consumer is None or m is None or not self.parts:
                continue
            try:
                ends = await consumer.end_offsets()
            except LogError:
                continue
            for p, part in list(self.parts.items()):
                point = part.tracker.commit_point()
                if point is None:
                    point = part.committed or 0
                m.set_lag(p, max(0, ends.get(p, 0) - point))

    async def _wait_for_stream(self) -> None:
        """Wait until the table exists and its topic does (the relay creates it)."""
        from streamkit.exceptions import ConfigurationError, TableNotFound

        await self.log.open()
        waited = 0.0
        warned = False
        while True:
            try:
                table = await self.store.spec(self.spec.table)
            except TableNotFound:
                table = None
                await self.store.reload()
            if table is not None and table.stream is None:
                raise ConfigurationError(
                    f"handler {self.spec.name!r}: table {self.spec.table!r} has no stream; "
                    "create it with stream=sk.StreamView...."
                )
            if table is not None and await self.log.describe_topic(self.topic) is not None:
                return
            if waited >= 5.0 and not warned:
                warned = True
                self._log.warning(
                    "waiting for the table and its topic",
                    table_exists=table is not None,
                    topic=self.topic,
                )
            await asyncio.sleep(0.2)
            waited += 0.2

    # --- the main loop -------------------------------------------------------------------
    async def run(self) -> None:
        """Join the group and process records until cancelled; then leave cleanly.

        Raises:
            ConfigurationError: the handler's DLQ topic could not exist (too long).
            LogError: the DLQ refused failed records for good (``failure``): the handler
                stops instead of retrying them for ever; they are not committed past.
        """
        if self.spec.on_failure == "dlq":
            check_dlq_topic(self.namespace, self.spec.table, self.spec.name)
        await self._wait_for_stream()
        start = "latest" if self.spec.start == "latest" else "earliest"
        consumer = self.log.consumer(
            self.topic,
            group=self.group,
            listener=self,
            start=start,
            session_timeout=self.options.session_timeout,
        )
        self.consumer = consumer
        committer = asyncio.create_task(
            self._commit_loop(), name=f"streamkit-{self.spec.name}-commit"
        )
        lagger = asyncio.create_task(self._lag_loop(), name=f"streamkit-{self.spec.name}-lag")
        try:
            await consumer.start()
            self.ready.set()
            self._log.info("handler started", group=self.group, member=self.member)
            while True:
                if self.failure is not None:
                    raise self.failure
                try:
                    records = await consumer.fetch(max_records=1000, timeout=0.2)
                except LogError as e:
                    if not e.retriable:
                        raise
                    self._log.warning("fetch failed; retrying", error=str(e))
                    await asyncio.sleep(0.5)
                    continue
                for rec in records:
                    part = self.parts.get(rec.partition)
                    if part is not None and not part.stopping:
                        part.feed(rec)
        finally:
            self._stopping = True
            lagger.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._leave(committer))

    async def _leave(self, committer: asyncio.Task[None]) -> None:
        consumer = self.consumer
        try:
            if consumer is not None:
                await consumer.close()  # on_revoked: lanes finish, offsets commit
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self.dlq.close()
            self._log.info("handler stopped", member=self.member)

    async def drained(self) -> bool:
        """True when every owned partition has processed and committed all it has read
        and read everything committed to the log so far (``settled`` end offsets: on
        Kafka a just-committed append shows in the end offsets a few ms later).

        Raises the handler's ``failure`` once it has one (it is stopping)."""
        if self.failure is not None:
            raise self.failure
        consumer = self.consumer
        if consumer is None or not self.ready.is_set():
            return False
        ends = await consumer.end_offsets(settled=True)
        committed = await consumer.committed()
        for p, end in ends.items():
            part = self.parts.get(p)
            if part is not None:
                if not part.idle() or part.tracker.order:
                    return False
                if (part.committed or 0) < end:
                    pos = await consumer.position(p)
                    if pos < end:
                        return False
                    self.commit_soon()
                    return False
            elif committed.get(p, 0) < end and end > 0:
                return False
        return True

    # --- a chunk: delivery, then its writes with the checkpoint -------------------------
    async def process(self, part: _Partition, lane: int, items: list[Item]) -> None:
        """Run one chunk of a lane through the handler; every item ends done or failed."""
        m = self.metrics
        if m is not None:
            m.records_in += len(items)
        delivery = self.delivery
        for it, err in delivery.decode(items):
            await delivery.give_up(part, [it], err)
        todo = items
        while todo:
            work = [it for it in todo if it.record is not None]
            wanted = delivery.select(part, lane, work)
            if m is not None and len(wanted) < len(work):
                m.filtered += len(work) - len(wanted)
            effects = Effects(self.store)
            await delivery.deliver(part, lane, wanted, effects)
            stale = await self._settle(part, lane, todo, effects)
            if stale is None:
                break
            # another member (this partition's previous owner, still finishing) committed
            # the writes of a prefix of these records: keep its, redo the rest
            self._log.warning(
                "checkpoint moved by another member; redoing the records after it",
                partition=part.p,
                checkpoint=stale,
            )
            part.lane_checkpoints[lane] = stale
            todo = [it for it in todo if it.offset >= stale]
        part.finish([it.offset for it in items if it.offset >= 0])

    async def _settle(
        self, part: _Partition, lane: int, items: list[Item], effects: Effects
    ) -> int | None:
        """Commit the chunk's buffered table writes with the lane's checkpoint.

        Returns None when committed (or nothing to commit), else the stored checkpoint
        that is already past the chunk's first record (nothing was written).
        """
        if not len(effects):
            return None
        offsets = [it.offset for it in items if it.offset >= 0]
        if not offsets:
            await effects.commit_with([])
            return None
        key = checkpoint_key(self.group, part.p, lane)
        # records below the stored checkpoint were skipped (their writes are in); the
        # writes buffered here are those of the records from the checkpoint on
        known = part.lane_checkpoints.get(lane, 0)
        first = next((o for o in offsets if o >= known), offsets[-1])
        stale = await effects.commit_with([Checkpoint(key, first=first, value=offsets[-1] + 1)])
        if stale is None:
            part.lane_checkpoints[lane] = offsets[-1] + 1
        return stale

    async def process_window(self, lane: _Lane, items: list[Item]) -> None:
        """Feed a tumbling-window handler's records into the lane's window."""
        await process_window(self, lane, items)
