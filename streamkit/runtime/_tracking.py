"""An owned partition of a live handler: its lanes, and which of its offsets are done.

A partition splits its records into ``parallelism`` lanes by message key (one item's
records always in one lane, in order); a lane hands chunks to the worker
(:meth:`HandlerRunner.process` or ``process_window``); the :class:`_Tracker` knows which
fed offsets are done, and the commit point is the first undone one. A partition is
also the delivery policy's :class:`~streamkit.runtime._delivery.Origin`: it knows what
was delivered before (a lane's stored checkpoint, the snapshot it started from).
See docs/design/runtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streamkit._names import SEQUENCE_HEADER
from streamkit.exceptions import StreamkitError
from streamkit.log import LogRecord, murmur2
from streamkit.runtime._delivery import Item, Revoked

if TYPE_CHECKING:
    from streamkit.runtime._batch import Window
    from streamkit.runtime._worker import HandlerRunner
    from streamkit.storage._effects import Effects

__all__ = ("PER_RECORD_CHUNK", "_Lane", "_Partition", "_Tracker")

PER_RECORD_CHUNK = 500  # records a per-record handler's lane takes at once


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

    @property
    def partition(self) -> int:
        return self.p

    def seen(self, lane: int, item: Item) -> bool:
        """True when ``item`` was delivered before: its effects are committed already
        (below the lane's stored checkpoint: exactly-once), or the snapshot this
        handler started from holds it."""
        if item.offset < 0:
            return False
        ckpt = self.lane_checkpoints.get(lane)
        if ckpt is not None and item.offset < ckpt:
            return True
        return self.snapshot_seq is not None and _sequence_of(item) <= self.snapshot_seq

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
        lane.queue.append(Item(rec.offset, rec.key, rec.value, rec.headers, rec.timestamp_ms))
        lane.wake.set()
        self.buffered += 1
        self.buffered_bytes += len(rec.value)
        opts = self.runner.options
        if not self.paused and (
            self.buffered >= opts.max_buffered or self.buffered_bytes >= opts.max_buffered_bytes
        ):
            self.paused = True
            self.runner.consumer_pause(self.p)

    def taken(self, items: list[Item]) -> None:
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
        self.queue: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.busy = False
        # tumbling windows (see _windows.py)
        self.window: Window | None = None
        self.window_state: dict[str, Any] = {}
        self.window_offsets: list[int] = []
        self.pending_effects: list[Effects] = []

    async def _take(self) -> list[Item] | None:
        spec = self.part.runner.spec
        limit = spec.batch_size if spec.batched and spec.batch_size else PER_RECORD_CHUNK
        if spec.window is not None and spec.batch_size is None:
            limit = PER_RECORD_CHUNK
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
            except Revoked:
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


def _sequence_of(it: Item) -> int:
    """The record's sequence number, from the relay's ``sequence_number`` header."""
    for name, value in it.headers:
        if name == SEQUENCE_HEADER:
            return int(value)
    assert it.record is not None
    return it.record.sequence_number
