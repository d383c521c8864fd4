"""The delivery policy: how a chunk of records reaches a handler, live or replayed.

One policy, :class:`Delivery`, for a live handler's partitions
(:class:`~streamkit.runtime._worker.HandlerRunner`) and for
:func:`~streamkit.history._replay.replay`:

1. *selection*: what the :class:`Origin` has delivered before (a lane's checkpoint, a
   snapshot), then the handler's events, ``changed=`` and ``filter=``;
2. *invocation*: per-record handlers one record at a time (a cheap path while they
   succeed), batch handlers with a :class:`~streamkit.runtime._batch.Batch`;
3. *retries* with exponential backoff and full jitter; a partial batch failure retries
   the records from the first failed one;
4. *bisect* (``bisect_on_error``): halves, recursively, until the failing record is alone;
5. *where failures go*: a :class:`FailureRoute`, the one thing live delivery and replay
   do differently. Live (:class:`DeadLetterRoute`): the handler's ``on_failure`` (the
   DLQ, or dropped; ``block`` and ``max_record_age`` honoured; a DLQ that refuses for
   good stops the handler). Replay: the failure is counted and replay goes on.

The caller owns a chunk's :class:`~streamkit.storage._effects.Effects`: live delivery
commits them with the lane's checkpoint once the chunk is done; replay and redrive have
the policy commit each invocation's writes on their own (``commit_each``).
See docs/design/runtime.md.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from streamkit._names import EVENT_HEADER
from streamkit.exceptions import LogError, StreamkitError
from streamkit.records import DEFAULT_REGION, ChangeRecord, decode_record
from streamkit.records._avro import lazy_record
from streamkit.runtime._batch import Batch, BatchResult, Context
from streamkit.runtime._dlq import Failure

if TYPE_CHECKING:
    from streamkit.runtime._dlq import DeadLetterQueue
    from streamkit.runtime._metrics import HandlerMetrics
    from streamkit.runtime._registry import HandlerSpec
    from streamkit.storage._effects import Effects

__all__ = (
    "DeadLetterRoute",
    "Delivery",
    "FailureRoute",
    "Item",
    "Origin",
    "PartialBatchFailure",
    "RecordExpired",
    "Revoked",
    "Stopped",
    "backoff",
    "bound_logger",
    "call_handler",
    "pause",
)

_ALL_EVENTS = frozenset(("INSERT", "MODIFY", "REMOVE"))


class RecordExpired(Exception):
    """The record was older than the handler's ``max_record_age`` when its turn came."""


class PartialBatchFailure(Exception):
    """The handler returned a ``BatchResult`` naming failed records."""


class Revoked(Exception):
    """The partition left this member while its work was in progress."""


class Stopped(Revoked):
    """The handler failed for good (``HandlerRunner.failure``): the lane stops."""


@dataclass(slots=True)
class Item:
    """One record on its way to the handler: from the log, a snapshot or a replay."""

    offset: int  # -1 for snapshot and replayed records (nothing to commit)
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    record: ChangeRecord | None = None
    attempts: int = 0
    first_attempt_ms: int = 0

    @classmethod
    def of(cls, record: ChangeRecord) -> Item:
        """An item for a record that has no log position (a replayed one)."""
        return cls(-1, None, b"", (), 0, record)


class Origin(Protocol):
    """Where a chunk comes from: a live partition (``_Partition``) or a replay."""

    @property
    def partition(self) -> int:
        """The log partition (``Batch.partition``, ``Context.partition``); -1: a replay."""
        ...

    @property
    def stopping(self) -> bool:
        """True when work must stop between attempts (the partition is given away)."""
        ...

    def seen(self, lane: int, item: Item) -> bool:
        """True when ``item`` was delivered before and must be skipped."""
        ...


class FailureRoute(Protocol):
    """Where records that fail for good go, and which limits apply on the way there."""

    @property
    def blocking(self) -> bool:
        """True: ``on_failure="block"`` retries until success (live). False: records
        are given up after ``retries`` whatever ``on_failure`` says (replay)."""
        ...

    @property
    def expiring(self) -> bool:
        """True: ``max_record_age`` applies (live; a replay's records are old by design)."""
        ...

    async def give_up(self, origin: Origin, items: list[Item], error: BaseException) -> None:
        """The records failed for good; may raise :class:`Stopped` to stop the handler."""
        ...


class Delivery:
    """The delivery policy of one handler: selection, invocation, retries, bisect, and
    a :class:`FailureRoute` for what fails for good.

    Args:
        spec: the handler.
        route: where records that fail for good go.
        metrics: where to count (None: not counted).
        log: the handler's bound logger.
        commit_each: commit the context writes of each invocation that returns, on
            their own, as part of it (a failed commit is a failed invocation): for
            replay and redrive, which have no checkpoint to commit them with. False
            (live): they stay in the chunk's ``Effects`` for the caller to commit.
    """

    def __init__(
        self,
        spec: HandlerSpec,
        route: FailureRoute,
        *,
        metrics: HandlerMetrics | None = None,
        log: Any,
        commit_each: bool = False,
        region: str | None = None,
    ) -> None:
        self.spec = spec
        self.route = route
        self.metrics = metrics
        self.log = log
        self.commit_each = commit_each
        self.invocations = 0
        # decode every record up front only when the policy itself must look inside
        self._eager = spec.filter is not None or spec.changed is not None
        # a handler taking every record needs no look inside (records decode on first use)
        # global tables: only the records of writes made in one region (``origin=``)
        self._origin = spec.origin_region or (
            (region or DEFAULT_REGION) if spec.origin == "local" else None
        )
        self._everything = spec.events >= _ALL_EVENTS and not self._eager and self._origin is None

    # --- selection -------------------------------------------------------------------------
    def decode(self, items: list[Item]) -> list[tuple[Item, BaseException]]:
        """Give each item its record; return those that cannot be decoded. Records are
        decoded when a field is first read (lazy_record), unless ``changed=`` or
        ``filter=`` need every one of them."""
        bad: list[tuple[Item, BaseException]] = []
        decode = decode_record if self._eager else lazy_record
        for it in items:
            if it.record is None:
                try:
                    it.record = decode(it.value)
                except StreamkitError as e:
                    bad.append((it, e))
        return bad

    def wanted(self, origin: Origin, lane: int, it: Item) -> bool:
        """True when the handler is to receive ``it`` (a decoded item)."""
        if origin.seen(lane, it):
            return False
        if self._everything:
            return True
        r = it.record
        assert r is not None
        spec = self.spec
        want = self._origin
        if want is not None and (r.origin or DEFAULT_REGION) != want:
            return False
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

    def select(self, origin: Origin, lane: int, items: list[Item]) -> list[Item]:
        """The decoded items the handler is to receive, in order."""
        wanted = self.wanted
        return [it for it in items if wanted(origin, lane, it)]

    # --- delivery --------------------------------------------------------------------------
    async def deliver(self, origin: Origin, lane: int, items: list[Item], effects: Effects) -> None:
        """Deliver selected items: each ends processed or given up to the route.

        Raises:
            Revoked: the origin stopped between attempts (nothing after is done).
            Stopped: the route stopped the handler.
        """
        if self.spec.batched:
            await self._retry(origin, lane, items, effects)
        else:
            await self._each(origin, lane, items, effects)

    async def _each(self, origin: Origin, lane: int, items: list[Item], effects: Effects) -> None:
        """Per-record handlers: one invocation per record, the common case kept cheap.

        A record whose first invocation fails (or that is too old) takes the full path
        (:meth:`_retry`: retries, backoff, the route).
        """
        spec = self.spec
        call = self.call
        m = self.metrics
        max_age = spec.max_record_age if self.route.expiring else None
        perf = time.perf_counter
        done = 0
        newest = 0
        for it in items:
            if max_age is not None and time.time() - it.timestamp_ms / 1000 > max_age:
                await self._retry(origin, lane, [it], effects)
                continue
            mark = effects.mark()
            started = perf()
            it.attempts = 1
            it.first_attempt_ms = int(time.time() * 1000)
            try:
                await call(origin, it.record, 1, effects)
                if self.commit_each and len(effects):
                    await effects.commit_with([])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                effects.undo(mark)
                if m is not None:
                    m.observe(perf() - started)
                await self._retry(origin, lane, [it], effects, failed=e)
                continue
            if m is not None:
                m.observe(perf() - started)
            done += 1
            newest = max(newest, it.timestamp_ms)
        if m is not None and done:
            m.processed += done
            m.iterator_age = max(0.0, time.time() - newest / 1000)

    async def _retry(
        self,
        origin: Origin,
        lane: int,
        items: list[Item],
        effects: Effects,
        *,
        failed: BaseException | None = None,
    ) -> None:
        """Invoke the handler until ``items`` are processed or given up (retries, bisect).

        ``failed``: the first attempt was made already (by :meth:`_each`) and raised this.
        """
        spec = self.spec
        max_age = spec.max_record_age if self.route.expiring else None
        attempt = 0
        if failed is not None:
            attempt = 1
            if await self._after_failure(origin, lane, items, effects, failed, attempt):
                return
        while items:
            if origin.stopping and attempt > 0:
                raise Revoked
            if max_age is not None:
                now = time.time()
                old = [it for it in items if now - it.timestamp_ms / 1000 > max_age]
                if old:
                    await self.give_up(
                        origin, old, RecordExpired(f"record older than {max_age:g}s")
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
                result = await self._invoke(origin, items, attempt, effects)
                if isinstance(result, BatchResult):
                    first_failed = result.first_failure([it.record for it in items])  # type: ignore[misc]
                    if first_failed is not None:
                        error = PartialBatchFailure(
                            f"the handler reported {len(result.failed)} failed records"
                        )
                if self.commit_each and len(effects):
                    await effects.commit_with([])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                error, first_failed = e, 0
                effects.undo(mark)
            finally:
                if self.metrics is not None:
                    self.metrics.observe(time.perf_counter() - started)
            if error is None:
                self.processed(items)
                return
            assert first_failed is not None
            if first_failed:
                self.processed(items[:first_failed])
                items = items[first_failed:]
                attempt = 0  # the records left have a fresh retry budget
            if await self._after_failure(origin, lane, items, effects, error, attempt):
                return

    async def _after_failure(
        self,
        origin: Origin,
        lane: int,
        items: list[Item],
        effects: Effects,
        error: BaseException,
        attempt: int,
    ) -> bool:
        """After a failed attempt: bisect, give up, or wait before the next attempt.

        Returns True when the records are dealt with (bisected or given up).
        """
        spec = self.spec
        first = items[0].record
        self.log.warning(
            "handler failed",
            partition=origin.partition,
            attempt=attempt,
            records=len(items),
            first_sequence_number=first.sequence_number if first is not None else None,
            error=repr(error),
        )
        if self.metrics is not None:
            self.metrics.failed += len(items)
        if spec.bisect_on_error and len(items) > 1 and not isinstance(error, PartialBatchFailure):
            mid = len(items) // 2
            await self._retry(origin, lane, items[:mid], effects)
            await self._retry(origin, lane, items[mid:], effects)
            return True
        if self.exhausted(attempt):
            await self.give_up(origin, items, error)
            return True
        if self.metrics is not None:
            self.metrics.retries += 1
        await pause(origin, backoff(spec, attempt))
        return False

    def exhausted(self, attempt: int) -> bool:
        """True when records that failed ``attempt`` times go to the route."""
        spec = self.spec
        blocks = spec.on_failure == "block" and self.route.blocking
        return not blocks and attempt > spec.retries

    async def give_up(self, origin: Origin, items: list[Item], error: BaseException) -> None:
        """The records failed for good (or cannot be decoded): hand them to the route."""
        await self.route.give_up(origin, items, error)

    def processed(self, items: list[Item]) -> None:
        m = self.metrics
        if m is None or not items:
            return
        m.processed += len(items)
        newest = max(it.timestamp_ms for it in items)
        m.iterator_age = max(0.0, time.time() - newest / 1000)

    async def _invoke(
        self, origin: Origin, items: list[Item], attempt: int, effects: Effects
    ) -> Any:
        spec = self.spec
        records = [it.record for it in items]
        if spec.batched:
            arg: Any = Batch(
                records,  # type: ignore[arg-type]
                table=spec.table,
                handler=spec.name,
                partition=origin.partition,
                attempt=attempt,
            )
        else:
            arg = records[0]
        return await self.call(origin, arg, attempt, effects)

    async def call(self, origin: Origin, arg: Any, attempt: int, effects: Effects) -> Any:
        """Invoke the handler once with ``arg`` (a record or a batch), counted."""
        self.invocations += 1
        return await call_handler(
            self.spec, arg, effects, partition=origin.partition, attempt=attempt, log=self.log
        )


class DeadLetterRoute:
    """Live delivery's route: the handler's ``on_failure``.

    ``"dlq"``: the records go to the handler's DLQ (retried while the log is briefly
    unavailable); a DLQ that refuses them for good stops the handler (:attr:`failure`)
    rather than retrying them for ever. ``"drop"`` (and records that ``"block"`` gives
    up: expired or undecodable): logged and counted.
    """

    blocking = True
    expiring = True

    def __init__(
        self,
        spec: HandlerSpec,
        dlq: DeadLetterQueue,
        *,
        metrics: HandlerMetrics | None = None,
        log: Any,
    ) -> None:
        self.spec = spec
        self.dlq = dlq
        self.metrics = metrics
        self.log = log
        self.failure: LogError | None = None  # set when the handler must stop (DLQ refused)

    async def give_up(self, origin: Origin, items: list[Item], error: BaseException) -> None:
        """The records failed for good: DLQ or drop."""
        spec = self.spec
        if spec.on_failure == "dlq":
            failures = [
                Failure(
                    key=it.key,
                    value=it.value,
                    headers=it.headers,
                    partition=origin.partition,
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
                    self.log.warning("DLQ append failed; retrying", error=str(e))
                    await pause(origin, 0.5)
                except StreamkitError as e:  # a topic the log refuses (name, settings)
                    self._stop(e, len(items))
            if self.metrics is not None:
                self.metrics.dead_lettered += len(items)
            self.log.error(
                "records sent to the DLQ",
                partition=origin.partition,
                records=len(items),
                topic=self.dlq.topic,
                error=repr(error),
            )
        else:
            self.log.error(
                "records dropped after failing",
                partition=origin.partition,
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
            self.log.error(
                "DLQ refused failed records; stopping the handler",
                topic=self.dlq.topic,
                records=records,
                error=repr(error),
            )
        raise Stopped from error


async def pause(origin: Origin, seconds: float) -> None:
    """Sleep ``seconds``; raise :class:`Revoked` as soon as the origin stops."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if origin.stopping:
            raise Revoked
        await asyncio.sleep(min(left, 0.1))


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


def _event_of(it: Item) -> str:
    """The record's event name, from the relay's ``event`` header (no decoding)."""
    for name, value in it.headers:
        if name == EVENT_HEADER:
            return value.decode()
    assert it.record is not None
    return it.record.event_name


def bound_logger(spec: HandlerSpec) -> Any:
    """The ``streamkit.runtime`` logger bound to the handler's table and name."""
    import structlog

    return structlog.get_logger("streamkit.runtime").bind(table=spec.table, handler=spec.name)
