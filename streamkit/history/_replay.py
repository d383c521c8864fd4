"""Replay: re-run a handler over exactly the changes committed in [since, until).

Sources, stitched by sequence number so each item's records stay in commit order:

* the change log (Kafka, or the local log) for what it still keeps;
* the change archive (PITR) for what the log no longer keeps;
* the archive (the outbox) for what is committed but not yet published.

A range that reaches past what is kept anywhere is refused with a message that says
what is kept (:class:`~streamkit.exceptions.HistoryUnavailable`). A replay reads the log
without a consumer group: the live handler's checkpoint and group are never touched.
See ``docs/design/history.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streamkit._names import SEQUENCE_HEADER, relay_done_key, table_topic
from streamkit.exceptions import HistoryUnavailable, ValidationError
from streamkit.history._archive import _iso, archive_window, archived, to_ms
from streamkit.log import read_until
from streamkit.records import ChangeRecord
from streamkit.records._avro import decode_record, lazy_record
from streamkit.runtime._delivery import Delivery, Item
from streamkit.runtime._registry import HandlerSpec, build_spec
from streamkit.storage._effects import Effects

if TYPE_CHECKING:
    from streamkit.log import ChangeLog, LogReader
    from streamkit.runtime._delivery import Origin
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("HistoryEnv", "ReplaySummary", "replay")


@dataclass(frozen=True, slots=True)
class HistoryEnv:
    """What replay works with: the store, the change log, the topic namespace and the
    registered handlers (the App hands these over; history never sees the App)."""

    store: Store
    log: ChangeLog
    namespace: str
    handlers: Mapping[str, HandlerSpec]


_EVENTS = ("INSERT", "MODIFY", "REMOVE")
_MAX_TAIL = 1_000_000  # unpublished rows read in one snapshot
_SLICE = 1_000  # records selected at once


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did.

    Attributes:
        table, handler: what was replayed through what.
        since, until: the range of commit times, [since, until).
        records: change records committed in the range.
        delivered: records the handler received (after its events, ``changed`` and
            ``filter``); with ``dry_run``, those it would have received.
        failed: records still failing after the handler's retries (replay goes on).
        invocations: handler invocations.
        from_log, from_archive: where the records came from.
        seconds: how long it took.
        dry_run: nothing was invoked.
        errors: the first few failures, as text.
    """

    table: str
    handler: str
    since: datetime
    until: datetime
    records: int = 0
    delivered: int = 0
    failed: int = 0
    invocations: int = 0
    from_log: int = 0
    from_archive: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (``streamkit replay --json``)."""
        return {
            "table": self.table,
            "handler": self.handler,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "records": self.records,
            "delivered": self.delivered,
            "failed": self.failed,
            "invocations": self.invocations,
            "from_log": self.from_log,
            "from_archive": self.from_archive,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "errors": self.errors,
        }


def _resolve(
    env: HistoryEnv, table: str, handler: str | HandlerSpec | Callable[..., Any]
) -> HandlerSpec:
    if isinstance(handler, HandlerSpec):
        spec = handler
    elif isinstance(handler, str):
        spec_or_none = env.handlers.get(handler)
        if spec_or_none is None:
            known = ", ".join(sorted(env.handlers)) or "none"
            raise ValidationError(f"no handler named {handler!r} (registered: {known})")
        spec = spec_or_none
    elif callable(handler):
        name = getattr(handler, "__name__", None)
        return build_spec(handler, table, _EVENTS, name=name if isinstance(name, str) else "replay")
    else:
        raise ValidationError(
            f"handler= must be a handler name, a registered handler or a function, "
            f"not {type(handler).__name__}"
        )
    if spec.table != table:
        raise ValidationError(f"handler {spec.name!r} handles {spec.table!r}, not {table!r}")
    if spec.window is not None:
        raise ValidationError(
            f"handler {spec.name!r} uses tumbling windows: replaying windowed handlers is not "
            "supported yet; replay a plain function or a batch handler instead"
        )
    return spec


class _Replayed:
    """A replay as the delivery policy sees it: no partition, never given away, and
    nothing delivered before (replay keeps no position)."""

    partition = -1
    stopping = False

    def seen(self, lane: int, item: Item) -> bool:
        return False


_REPLAYED = _Replayed()


class _Counted:
    """Replay's failure route: a record that keeps failing after the handler's retries
    is counted and reported, and replay goes on (no DLQ, no ``on_failure="block"``, no
    ``max_record_age``: replayed records are old by design)."""

    blocking = False
    expiring = False

    def __init__(self, summary: ReplaySummary, log: Any) -> None:
        self.summary = summary
        self.log = log

    async def give_up(self, origin: Origin, items: list[Item], error: BaseException) -> None:
        summary = self.summary
        summary.failed += len(items)
        first = items[0].record
        assert first is not None
        if len(summary.errors) < 10:
            summary.errors.append(
                f"sequence {first.sequence_number}: {type(error).__name__}: {error}"
            )
        self.log.warning(
            "replay gave up on records",
            records=len(items),
            first_sequence=first.sequence_number,
            error=repr(error),
        )


class _Runner:
    """Runs the handler through the runtime's delivery policy (selection, batching,
    retries with backoff, bisect, partial batch failures) with replay's failure route;
    context writes commit with each invocation (there is no checkpoint)."""

    def __init__(self, env: HistoryEnv, spec: HandlerSpec, summary: ReplaySummary) -> None:
        self.env = env
        self.summary = summary
        self.size = (spec.batch_size or 1) if spec.batched else 1
        self.pending: list[Item] = []
        log = _logger().bind(handler=spec.name, table=spec.table, replay=True)
        self.delivery = Delivery(
            spec,
            _Counted(summary, log),
            log=log,
            commit_each=True,
            region=getattr(getattr(env, "store", None), "origin", None),
        )

    async def feed(self, records: Sequence[ChangeRecord]) -> None:
        summary = self.summary
        summary.records += len(records)
        select = self.delivery.select
        pending, size = self.pending, self.size
        # a slice at a time: items die young (an archive read hands over up to its whole
        # range at once, and long-lived items would cost full garbage collections)
        for start in range(0, len(records), _SLICE):
            # Item.of(r), inlined: this is replay's per-record hot path
            items = [Item(-1, None, b"", (), 0, r) for r in records[start : start + _SLICE]]
            wanted = select(_REPLAYED, 0, items)
            summary.delivered += len(wanted)
            if summary.dry_run or not wanted:
                continue
            pending.extend(wanted)
            while len(pending) >= size:
                chunk = pending[:size]
                del pending[:size]
                await self._deliver(chunk)

    async def finish(self) -> None:
        if self.pending:
            chunk, self.pending = self.pending, []
            await self._deliver(chunk)

    async def _deliver(self, items: list[Item]) -> None:
        try:  # the policy commits each invocation's context writes (commit_each)
            await self.delivery.deliver(_REPLAYED, 0, items, Effects(self.env.store))
        finally:
            self.summary.invocations = self.delivery.invocations


def _logger() -> Any:
    import structlog

    return structlog.get_logger("streamkit.replay")


@dataclass(slots=True)
class _Plan:
    """Which sequence numbers come from where."""

    published: int  # the log holds every published record up to here
    log_from: int  # ... from here (0: from the start of the range)
    archive_before: int | None  # archive rows below log_from (None: none needed)
    tail: list[tuple[int, int, bytes]]  # unpublished rows in the range (from the outbox)
    log_available: bool


async def _log_start(env: HistoryEnv, topic: str) -> tuple[int, int | None]:
    """(the first sequence number every partition still holds, the commit time of the
    newest of the partitions' first kept records); (0, None) when nothing was trimmed."""
    log = env.log
    first_seq = 0
    first_ms: int | None = None
    reader = log.reader(topic)
    try:
        begins = await reader.beginning_offsets()
        ends = await reader.end_offsets()
    finally:
        await reader.close()
    for p, begin in begins.items():
        if begin == 0:
            continue  # nothing trimmed from this partition
        if begin >= ends.get(p, 0):
            return -1, None  # a partition lost everything it held: the log alone is no help
        one = log.reader(topic, partitions=[p])
        try:
            await one.seek(p, begin)
            recs: list[Any] = []
            while not recs and await one.position(p) < ends[p]:
                recs = await one.fetch(max_records=1, timeout=1.0)
        finally:
            await one.close()
        if not recs:
            return -1, None  # only transaction markers left
        rec = recs[0]
        seq = next((int(v) for k, v in rec.headers if k == SEQUENCE_HEADER), None)
        if seq is None:
            seq = decode_record(rec.value).sequence_number
        first_seq = max(first_seq, seq)
        first_ms = rec.timestamp_ms if first_ms is None else max(first_ms, rec.timestamp_ms)
    return first_seq, first_ms


async def _plan(env: HistoryEnv, spec: TableSpec, since_ms: int, until_ms: int) -> _Plan:
    namespace = env.namespace
    topic = table_topic(namespace, spec.name)
    done_key = relay_done_key(namespace)

    # the position and the unpublished rows in one read: nothing published in between
    # can be pruned before it is read
    published, tail = await env.store.engine.archive_tail(
        spec.table_id,
        position_key=done_key,
        since_ms=since_ms,
        until_ms=until_ms,
        limit=_MAX_TAIL,
    )
    if published == 0:
        return _Plan(0, 1, None, tail, False)  # nothing published yet: the outbox has it all
    log_available = spec.stream is not None and published > 0
    if log_available:
        await env.log.open()
        log_available = await env.log.describe_topic(topic) is not None
    log_from, log_first_ms = (0, None) if not log_available else await _log_start(env, topic)
    if log_available and log_from >= 0 and (log_first_ms is None or since_ms >= log_first_ms):
        return _Plan(published, 0, None, tail, True)  # the log keeps the whole range
    # changes before the table was created do not exist: only the recovery window counts
    window = archive_window(spec)
    if window is not None:
        window = (window[1] - spec.recovery_days * 86_400_000, window[1])
    if window is not None and since_ms >= window[0]:
        if not log_available or log_from < 0:
            return _Plan(published, published + 1, published + 1, tail, False)
        return _Plan(published, log_from, log_from, tail, True)
    kept = []
    if log_available and log_first_ms is not None and log_from >= 0:
        kept.append(f"the change log from {_iso(log_first_ms)}")
    elif log_available and log_from == 0:
        kept.append("the change log from the table's first published change")
    if window is not None:
        kept.append(f"the point-in-time archive from {_iso(window[0])}")
    raise HistoryUnavailable(
        f"since={_iso(since_ms)} reaches past the history kept for {spec.name!r}: "
        + (" and ".join(kept) if kept else "nothing is kept (no stream retention, pitr=False)")
        + "; choose a later since="
    )


async def _from_log(
    env: HistoryEnv, topic: str, plan: _Plan, since_ms: int, until_ms: int
) -> AsyncIterator[list[ChangeRecord]]:
    reader: LogReader = env.log.reader(topic)
    try:
        ends = await reader.end_offsets()
        for p, end in ends.items():
            offset = await reader.offset_for_time(p, since_ms)
            await reader.seek(p, end if offset is None or offset >= end else offset)
        low, high = plan.log_from, plan.published
        make = lazy_record
        async for batch in read_until(reader, ends):
            out: list[ChangeRecord] = []
            append = out.append
            for rec in batch:
                if not (since_ms <= rec.timestamp_ms < until_ms):
                    continue
                headers = rec.headers
                # the relay writes (event, sequence_number): read it without a search
                if len(headers) > 1 and headers[1][0] == SEQUENCE_HEADER:
                    seq = int(headers[1][1])
                else:
                    seq = next((int(v) for k, v in headers if k == SEQUENCE_HEADER), low)
                if low <= seq <= high:
                    append(make(rec.value))
            if out:
                yield out
    finally:
        await reader.close()


async def replay(
    env: HistoryEnv,
    table: str,
    handler: str | HandlerSpec | Callable[..., Any],
    *,
    since: datetime,
    until: datetime | None = None,
    dry_run: bool = False,
    progress: Callable[[int], Awaitable[None] | None] | None = None,
) -> ReplaySummary:
    """Re-run ``handler`` over the changes committed to ``table`` in [since, until).

    Args:
        handler: a registered handler's name, a handler spec, or any function taking a
            ``ChangeRecord`` (every event is delivered to a plain function).
        since, until: timezone-aware datetimes; ``until`` defaults to now.
        dry_run: count what would be delivered; invoke nothing.
        progress: called with the number of records read so far, after each chunk.

    Raises:
        HistoryUnavailable: the range reaches past what the log and the archive keep.
        ValidationError: bad arguments (naive datetimes, until <= since, unknown handler).
    """
    spec_t = await env.store.spec(table)
    hspec = _resolve(env, table, handler)
    since_ms = to_ms("since", since)
    now_ms = time.time_ns() // 1_000_000
    until_ms = now_ms + 1 if until is None else to_ms("until", until)
    if until_ms <= since_ms:
        raise ValidationError("until= must be after since=")
    if until_ms > now_ms + 1:
        raise HistoryUnavailable(
            f"until={_iso(until_ms)} is in the future: replay only what is committed "
            f"(now is {_iso(now_ms)})"
        )
    summary = ReplaySummary(
        table=table,
        handler=hspec.name,
        since=datetime.fromtimestamp(since_ms / 1000, UTC),
        until=datetime.fromtimestamp(until_ms / 1000, UTC),
        dry_run=dry_run,
    )
    started = time.perf_counter()
    plan = await _plan(env, spec_t, since_ms, until_ms)
    runner = _Runner(env, hspec, summary)

    async def report() -> None:
        if progress is not None:
            result = progress(summary.records)
            if asyncio.iscoroutine(result):
                await result

    if plan.archive_before is not None:
        async for rows in archived(
            env.store, spec_t, since_ms=since_ms, until_ms=until_ms, before_seq=plan.archive_before
        ):
            summary.from_archive += len(rows)
            await runner.feed([lazy_record(r[2]) for r in rows])
            await report()
    if plan.log_available:
        topic = table_topic(env.namespace, table)
        async for records in _from_log(env, topic, plan, since_ms, until_ms):
            summary.from_log += len(records)
            await runner.feed(records)
            await report()
    if plan.tail:
        summary.from_archive += len(plan.tail)
        await runner.feed([lazy_record(r[2]) for r in plan.tail])
        await report()
    await runner.finish()
    summary.seconds = time.perf_counter() - started
    return summary
