"""Running one handler: a consumer-group member, its partitions, lanes and invocations.

See docs/design/runtime.md for the moving parts and the failure cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from streamkit._names import (
    EVENT_HEADER,
    SEQUENCE_HEADER,
    check_dlq_topic,
    checkpoint_key,
    checkpoint_prefix,
    handler_group,
    table_topic,
)
from streamkit.exceptions import LogError, StreamkitError, ValidationError
from streamkit.log import CommitRefused, LogConsumer, LogRecord, murmur2
from streamkit.records import ChangeRecord, decode_record
from streamkit.records._avro import lazy_record
from streamkit.runtime._batch import Batch, BatchResult, Context, Window
from streamkit.runtime._dlq import DeadLetterQueue, Failure
from streamkit.storage._effects import Checkpoint, Effects, read_checkpoints

if TYPE_CHECKING:
    from streamkit.runtime._metrics import HandlerMetrics
    from streamkit.runtime._registry import HandlerSpec
    from streamkit.storage._store import Store

__all__ = ("HandlerRunner", "RecordExpired", "RuntimeOptions", "group_name")

_PER_RECORD_CHUNK = 500


class RecordExpired(Exception):
    """The record was older than the handler's ``max_record_age`` when its turn came."""


class _Revoked(Exception):
    """The partition left this member while its work was in progress."""


class _Stopped(_Revoked):
    """The handler failed for good (``HandlerRunner.failure``): the lane stops."""


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


@dataclass(slots=True)
class _Item:
    """One record on its way through a partition: from the log, or a snapshot's."""

    offset: int  # -1 for snapshot records
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    record: ChangeRecord | None = None
    attempts: int = 0
    first_attempt_ms: int = 0


class _Tracker:
    """Which fed offsets of a partition are done; the commit point is the first undone."""

    __slots__ = ("done", "order", "position")

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.done: set[int] = set()
        self.position: int | None = None  # the offset after the last fed record

    def feed(self, offset: int) -> None:
        self.order.append(offset)
        self.position = offset + 1

    def finish(self, offsets: Sequence[int]) -> None:
        self.done.update(offsets)
        order, done = self.order, self.done
        while order and order[0] in done:
            done.discard(order.popleft())

    def commit_point(self) -> int | None:
        if self.order:
            return self.order[0]
        return self.position


class _Partition:
    """An owned partition: lanes that process its records, and its checkpoint."""

    def __init__(
        self, runner: HandlerRunner, partition: int, lane_checkpoints: dict[int, int]
    ) -> None:
        self.runner = runner
        self.p = partition
        spec = runner.spec
        self.tracker = _Tracker()
        self.buffered = 0
        self.buffered_bytes = 0
        self.paused = False
        self.stopping = False
        self.committed: int | None = None
        self.lane_checkpoints = lane_checkpoints
        self.snapshot_seq: int | None = None
        self.lanes = [_Lane(self, i) for i in range(spec.parallelism)]
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        name = f"streamkit-{self.runner.spec.name}-p{self.p}"
        self.tasks = [
            asyncio.create_task(lane.run(), name=f"{name}-lane{lane.index}") for lane in self.lanes
        ]

    def feed(self, rec: LogRecord) -> None:
        pos = self.tracker.position
        if pos is not None and rec.offset < pos:
            return  # already fed (a re-fetch after a seek)
        self.tracker.feed(rec.offset)
        n = len(self.lanes)
        lane = self.lanes[0 if n == 1 or rec.key is None else (murmur2(rec.key) & 0x7FFFFFFF) % n]
        lane.queue.append(_Item(rec.offset, rec.key, rec.value, rec.headers, rec.timestamp_ms))
        lane.wake.set()
        self.buffered += 1
        self.buffered_bytes += len(rec.value)
        opts = self.runner.options
        if not self.paused and (
            self.buffered >= opts.max_buffered or self.buffered_bytes >= opts.max_buffered_bytes
        ):
            self.paused = True
            self.runner.consumer_pause(self.p)

    def taken(self, items: list[_Item]) -> None:
        self.buffered -= len(items)
        self.buffered_bytes -= sum(len(it.value) for it in items)
        opts = self.runner.options
        if (
            self.paused
            and self.buffered <= opts.max_buffered // 2
            and self.buffered_bytes <= opts.max_buffered_bytes // 2
        ):
            self.paused = False
            self.runner.consumer_resume(self.p)

    def finish(self, offsets: Sequence[int]) -> None:
        self.tracker.finish(offsets)
        self.runner.commit_soon()

    def idle(self) -> bool:
        return self.buffered == 0 and all(not lane.busy for lane in self.lanes)

    async def stop(self, deadline: float) -> None:
        """Stop the lanes: each finishes its current chunk, until ``deadline``."""
        self.stopping = True
        for lane in self.lanes:
            lane.wake.set()
        if not self.tasks:
            return
        remaining = max(0.0, deadline - time.monotonic())
        _, pending = await asyncio.wait(self.tasks, timeout=remaining)
        for task in pending:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _Lane:
    """Records of one partition whose keys hash to this lane, processed in order."""

    def __init__(self, part: _Partition, index: int) -> None:
        self.part = part
        self.index = index
        self.queue: deque[_Item] = deque()
        self.wake = asyncio.Event()
        self.busy = False
        # tumbling windows
        self.window: Window | None = None
        self.window_state: dict[str, Any] = {}
        self.window_offsets: list[int] = []
        self.pending_effects: list[Effects] = []

    async def _take(self) -> list[_Item] | None:
        spec = self.part.runner.spec
        limit = spec.batch_size if spec.batched and spec.batch_size else _PER_RECORD_CHUNK
        if spec.window is not None and spec.batch_size is None:
            limit = _PER_RECORD_CHUNK
        if self.part.stopping:
            return None
        while not self.queue:
            if self.part.stopping:
                return None
            self.wake.clear()
            if self.window is not None:
                # close an open window when its end has passed and nothing newer came
                wait = self.window.end.timestamp() + 0.5 - time.time()
                if wait <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.wake.wait()
            else:
                await self.wake.wait()
        if spec.batched and spec.batch_window > 0 and len(self.queue) < limit:
            deadline = time.monotonic() + spec.batch_window
            while len(self.queue) < limit and not self.part.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self.wake.wait()
        n = min(limit, len(self.queue))
        items = [self.queue.popleft() for _ in range(n)]
        self.part.taken(items)
        return items

    async def run(self) -> None:
        runner = self.part.runner
        while True:
            items = await self._take()
            if items is None:
                return
            self.busy = True
            try:
                if runner.spec.window is not None:
                    await runner.process_window(self, items)
                else:
                    await runner.process(self.part, self.index, items)
            except _Revoked:
                return
            except (StreamkitError, OSError) as e:
                # storage or log trouble (not the handler's: its errors are retried
                # inside): nothing of this chunk is done; take it again after a pause
                runner._log.error(
                    "processing failed; retrying the chunk",
                    partition=self.part.p,
                    records=len(items),
                    error=repr(e),
                )
                self.queue.extendleft(reversed(items))
                self.part.buffered += len(items)
                self.part.buffered_bytes += sum(len(it.value) for it in items)
                await asyncio.sleep(1.0)
            finally:
                self.busy = False


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
        self.invocations = 0
        self.failure: LogError | None = None  # set when the handler must stop (DLQ refused)
        # decode every record up front only when the runtime itself must look inside
        self._eager = spec.filter is not None or spec.changed is not None
        self._log = _bound_logger(spec)

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
                part.snapshot_seq = stored.get(f"{prefix}snapshot")
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

    # --- invocation ------------------------------------------------------------------------
    def _decode(self, items: list[_Item]) -> list[tuple[_Item, BaseException]]:
        """Give each item its record. Records are decoded when a field is first read
        (lazy_record), unless ``changed=`` or ``filter=`` need every one of them."""
        bad: list[tuple[_Item, BaseException]] = []
        decode = decode_record if self._eager else lazy_record
        for it in items:
            if it.record is None:
                try:
                    it.record = decode(it.value)
                except StreamkitError as e:
                    bad.append((it, e))
        return bad

    def _wanted(self, part: _Partition, lane: int, it: _Item) -> bool:
        r = it.record
        assert r is not None
        spec = self.spec
        if it.offset >= 0:
            ckpt = part.lane_checkpoints.get(lane)
            if ckpt is not None and it.offset < ckpt:
                return False  # its effects are committed already (exactly-once)
            if part.snapshot_seq is not None and _sequence_of(it) <= part.snapshot_seq:
                return False  # part of the snapshot this handler started from
        event = _event_of(it)
        if event != "SNAPSHOT":
            if event not in spec.events:
                return False
            if (
                spec.changed is not None
                and event == "MODIFY"
                and not spec.changed.intersection(r.changed or ())
            ):
                return False
        flt = spec.filter
        return flt is None or flt.matches(r)

    async def process(self, part: _Partition, lane: int, items: list[_Item]) -> None:
        """Run one chunk of a lane through the handler; every item ends done or failed."""
        m = self.metrics
        if m is not None:
            m.records_in += len(items)
        for it, err in self._decode(items):
            await self._give_up(part, lane, [it], err)
        todo = items
        while todo:
            work = [it for it in todo if it.record is not None]
            wanted = [it for it in work if self._wanted(part, lane, it)]
            if m is not None and len(wanted) < len(work):
                m.filtered += len(work) - len(wanted)
            effects = Effects(self.store)
            if self.spec.batched:
                await self._deliver(part, lane, wanted, effects)
            else:
                await self._each(part, lane, wanted, effects)
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

    async def _each(
        self, part: _Partition, lane: int, items: list[_Item], effects: Effects
    ) -> None:
        """Per-record handlers: one invocation per record, the common case kept cheap.

        A record whose first invocation fails (or that is too old) takes the full path
        (:meth:`_deliver`: retries, backoff, DLQ).
        """
        spec = self.spec
        call = self._call
        m = self.metrics
        max_age = spec.max_record_age
        perf = time.perf_counter
        done = 0
        newest = 0
        for it in items:
            if max_age is not None and time.time() - it.timestamp_ms / 1000 > max_age:
                await self._deliver(part, lane, [it], effects)
                continue
            mark = effects.mark()
            started = perf()
            it.attempts = 1
            it.first_attempt_ms = int(time.time() * 1000)
            try:
                await call(part, it.record, 1, effects)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                effects.undo(mark)
                if m is not None:
                    m.observe(perf() - started)
                await self._deliver(part, lane, [it], effects, failed=e)
                continue
            if m is not None:
                m.observe(perf() - started)
            done += 1
            newest = max(newest, it.timestamp_ms)
        if m is not None and done:
            m.processed += done
            m.iterator_age = max(0.0, time.time() - newest / 1000)

    async def _settle(
        self, part: _Partition, lane: int, items: list[_Item], effects: Effects
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

    async def _deliver(
        self,
        part: _Partition,
        lane: int,
        items: list[_Item],
        effects: Effects,
        *,
        failed: BaseException | None = None,
    ) -> None:
        """Invoke the handler until ``items`` are processed or given up (retries, bisect).

        ``failed``: the first attempt was made already (by :meth:`_each`) and raised this.
        """
        spec = self.spec
        attempt = 0
        if failed is not None:
            attempt = 1
            if await self._after_failure(part, lane, items, effects, failed, attempt):
                return
        while items:
            if part.stopping and attempt > 0:
                raise _Revoked
            if spec.max_record_age is not None:
                now = time.time()
                old = [it for it in items if now - it.timestamp_ms / 1000 > spec.max_record_age]
                if old:
                    await self._give_up(
                        part,
                        lane,
                        old,
                        RecordExpired(f"record older than {spec.max_record_age:g}s"),
                    )
                    gone = {id(it) for it in old}
                    items = [it for it in items if id(it) not in gone]
                    if not items:
                        return
            attempt += 1
            now_ms = int(time.time() * 1000)
            for it in items:
                it.attempts += 1
                if not it.first_attempt_ms:
                    it.first_attempt_ms = now_ms
            mark = effects.mark()
            error: BaseException | None = None
            first_failed: int | None = None
            started = time.perf_counter()
            try:
                result = await self._invoke(part, items, attempt, effects)
                if isinstance(result, BatchResult):
                    first_failed = result.first_failure([it.record for it in items])  # type: ignore[misc]
                    if first_failed is not None:
                        error = PartialBatchFailure(
                            f"the handler reported {len(result.failed)} failed records"
                        )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                error, first_failed = e, 0
                effects.undo(mark)
            finally:
                if self.metrics is not None:
                    self.metrics.observe(time.perf_counter() - started)
            if error is None:
                self._processed(items)
                return
            assert first_failed is not None
            if first_failed:
                self._processed(items[:first_failed])
                items = items[first_failed:]
                attempt = 0  # the records left have a fresh retry budget
            if await self._after_failure(part, lane, items, effects, error, attempt):
                return

    async def _after_failure(
        self,
        part: _Partition,
        lane: int,
        items: list[_Item],
        effects: Effects,
        error: BaseException,
        attempt: int,
    ) -> bool:
        """After a failed attempt: bisect, give up, or wait before the next attempt.

        Returns True when the records are dealt with (bisected or given up).
        """
        spec = self.spec
        first = items[0].record
        self._log.warning(
            "handler failed",
            partition=part.p,
            attempt=attempt,
            records=len(items),
            first_sequence_number=first.sequence_number if first is not None else None,
            error=repr(error),
        )
        if self.metrics is not None:
            self.metrics.failed += len(items)
        if spec.bisect_on_error and len(items) > 1 and not isinstance(error, PartialBatchFailure):
            mid = len(items) // 2
            await self._deliver(part, lane, items[:mid], effects)
            await self._deliver(part, lane, items[mid:], effects)
            return True
        if spec.on_failure != "block" and attempt > spec.retries:
            await self._give_up(part, lane, items, error)
            return True
        if self.metrics is not None:
            self.metrics.retries += 1
        await self._sleep(part, backoff(spec, attempt))
        return False

    async def _sleep(self, part: _Partition, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if part.stopping:
                raise _Revoked
            await asyncio.sleep(min(left, 0.1))

    def _processed(self, items: list[_Item]) -> None:
        m = self.metrics
        if m is None or not items:
            return
        m.processed += len(items)
        newest = max(it.timestamp_ms for it in items)
        m.iterator_age = max(0.0, time.time() - newest / 1000)

    async def _invoke(
        self, part: _Partition, items: list[_Item], attempt: int, effects: Effects
    ) -> Any:
        spec = self.spec
        records = [it.record for it in items]
        if spec.batched:
            arg: Any = Batch(
                records,  # type: ignore[arg-type]
                table=spec.table,
                handler=spec.name,
                partition=part.p,
                attempt=attempt,
            )
        else:
            arg = records[0]
        return await self._call(part, arg, attempt, effects)

    async def _call(self, part: _Partition, arg: Any, attempt: int, effects: Effects) -> Any:
        self.invocations += 1
        return await call_handler(
            self.spec, arg, effects, partition=part.p, attempt=attempt, log=self._log
        )

    async def _give_up(
        self, part: _Partition, lane: int, items: list[_Item], error: BaseException
    ) -> None:
        """The records failed for good: DLQ, drop, or (block) keep trying past this point."""
        spec = self.spec
        if spec.on_failure == "dlq":
            failures = [
                Failure(
                    key=it.key,
                    value=it.value,
                    headers=it.headers,
                    partition=part.p,
                    offset=it.offset,
                    attempts=it.attempts,
                    first_attempt_ms=it.first_attempt_ms or int(time.time() * 1000),
                )
                for it in items
            ]
            while True:
                try:
                    await self.dlq.send(failures, error, int(time.time() * 1000))
                    break
                except LogError as e:
                    if not e.retriable:
                        self._stop(e, len(items))
                    self._log.warning("DLQ append failed; retrying", error=str(e))
                    await self._sleep(part, 0.5)
                except StreamkitError as e:  # a topic the log refuses (name, settings)
                    self._stop(e, len(items))
            if self.metrics is not None:
                self.metrics.dead_lettered += len(items)
            self._log.error(
                "records sent to the DLQ",
                partition=part.p,
                records=len(items),
                topic=self.dlq.topic,
                error=repr(error),
            )
        else:
            self._log.error(
                "records dropped after failing",
                partition=part.p,
                records=len(items),
                error=repr(error),
            )
            if self.metrics is not None:
                self.metrics.dropped += len(items)

    def _stop(self, error: StreamkitError, records: int) -> NoReturn:
        """The DLQ refused failed records for good: stop the handler (visibly) rather
        than retry them for ever. Nothing past them is committed."""
        if self.failure is None:
            self.failure = LogError(
                f"handler {self.spec.name!r} on table {self.spec.table!r} stopped: its "
                f"dead-letter queue {self.dlq.topic!r} refused {records} failed record(s) "
                f"for good ({type(error).__name__}: {error}); they stay uncommitted and are "
                "delivered again when the handler runs again",
                retriable=False,
            )
            self._log.error(
                "DLQ refused failed records; stopping the handler",
                topic=self.dlq.topic,
                records=records,
                error=repr(error),
            )
        raise _Stopped from error

    # --- tumbling windows --------------------------------------------------------------------
    async def process_window(self, lane: _Lane, items: list[_Item]) -> None:
        """Feed records into the lane's open window; close windows whose time is over."""
        part = lane.part
        spec = self.spec
        assert spec.window is not None
        for it, err in self._decode(items):
            await self._give_up(part, lane.index, [it], err)
            items = [x for x in items if x is not it]
            if lane.window is None:
                part.finish([it.offset])
            else:
                lane.window_offsets.append(it.offset)
        if not items:
            if lane.window is not None and time.time() >= lane.window.end.timestamp() + 0.5:
                await self._close_window(lane)
            return
        group: list[_Item] = []
        for it in items:
            r = it.record
            assert r is not None
            w = _window_of(r.created_at, spec.window)
            if lane.window is not None and w.start > lane.window.start:
                await self._window_invoke(lane, group)
                group = []
                await self._close_window(lane)
            if lane.window is None:
                lane.window = w
                lane.window_state = {}
                lane.window_offsets = []
            lane.window_offsets.append(it.offset)
            if self._wanted(part, lane.index, it):
                group.append(it)
        await self._window_invoke(lane, group)

    async def _window_invoke(self, lane: _Lane, items: list[_Item], *, final: bool = False) -> None:
        if not items and not final:
            return
        part = lane.part
        spec = self.spec
        effects = Effects(self.store)
        attempt = 0
        while True:
            attempt += 1
            batch = Batch(
                [it.record for it in items],  # type: ignore[misc]
                table=spec.table,
                handler=spec.name,
                partition=part.p,
                attempt=attempt,
                window=lane.window,
                state=lane.window_state,
                is_final_invoke=final,
            )
            mark = effects.mark()
            try:
                result = await self._call(part, batch, attempt, effects)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                effects.undo(mark)
                self._log.warning("window handler failed", attempt=attempt, error=repr(e))
                if spec.on_failure != "block" and attempt > spec.retries:
                    await self._give_up(part, lane.index, items, e)
                    break
                await self._sleep(part, backoff(spec, attempt))
                continue
            if isinstance(result, BatchResult) and result.state is not None:
                lane.window_state = dict(result.state)
            self._processed(items)
            break
        lane.pending_effects.append(effects)

    async def _close_window(self, lane: _Lane) -> None:
        await self._window_invoke(lane, [], final=True)
        offsets = lane.window_offsets
        merged = Effects(self.store)
        for eff in lane.pending_effects:
            merged.absorb(eff)
        lane.pending_effects = []
        if len(merged) and offsets:
            key = checkpoint_key(self.group, lane.part.p, lane.index)
            known = lane.part.lane_checkpoints.get(lane.index, 0)
            first = next((o for o in offsets if o >= known), offsets[-1])
            stale = await merged.commit_with([Checkpoint(key, first=first, value=offsets[-1] + 1)])
            if stale is not None:
                self._log.warning(
                    "window writes skipped: another member committed this window",
                    partition=lane.part.p,
                    checkpoint=stale,
                )
            lane.part.lane_checkpoints[lane.index] = max(stale or 0, offsets[-1] + 1)
        lane.window = None
        lane.window_state = {}
        lane.window_offsets = []
        lane.part.finish(offsets)


async def call_handler(
    spec: HandlerSpec, arg: Any, effects: Effects, *, partition: int, attempt: int, log: Any
) -> Any:
    """Invoke a handler once the way its signature asks: async on the loop, sync in a
    thread, with a Context when it takes two parameters, within ``spec.timeout``."""
    args: tuple[Any, ...] = (arg,)
    if spec.takes_context:
        if isinstance(arg, ChangeRecord):
            bound = log.bind(partition=partition, sequence_number=arg.sequence_number)
        elif len(arg):
            bound = log.bind(
                partition=partition,
                sequence_numbers=f"{arg[0].sequence_number}-{arg[-1].sequence_number}",
            )
        else:
            bound = log.bind(partition=partition)
        ctx = Context(
            effects,
            handler=spec.name,
            table=spec.table,
            partition=partition,
            attempt=attempt,
            log=bound,
        )
        args = (arg, ctx)
    coro = spec.fn(*args) if spec.is_async else asyncio.to_thread(spec.fn, *args)
    if spec.timeout is None:
        return await coro
    async with asyncio.timeout(spec.timeout):
        return await coro


def backoff(spec: HandlerSpec, attempt: int) -> float:
    """Seconds to wait before retry ``attempt``: exponential, capped, full jitter."""
    delay = min(spec.max_retry_delay, spec.retry_delay * (2 ** (attempt - 1)))
    return random.uniform(0, delay)


def _event_of(it: _Item) -> str:
    """The record's event name, from the relay's ``event`` header (no decoding)."""
    for name, value in it.headers:
        if name == EVENT_HEADER:
            return value.decode()
    assert it.record is not None
    return it.record.event_name


def _sequence_of(it: _Item) -> int:
    """The record's sequence number, from the relay's ``sequence_number`` header."""
    for name, value in it.headers:
        if name == SEQUENCE_HEADER:
            return int(value)
    assert it.record is not None
    return it.record.sequence_number


class PartialBatchFailure(Exception):
    """The handler returned a ``BatchResult`` naming failed records."""


def _window_of(when: datetime, length: float) -> Window:
    ts = when.timestamp()
    start = (ts // length) * length
    return Window(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + length, UTC))


def _bound_logger(spec: HandlerSpec) -> Any:
    import structlog

    return structlog.get_logger("streamkit.runtime").bind(table=spec.table, handler=spec.name)
