"""Tumbling windows (``window=N``): per lane, state carried between invocations.

Records are grouped by ``floor(created_at / N)``. Each invocation gets a ``Batch``
with ``.window``, ``.state`` (what the previous invocation of the window returned in
``BatchResult(state=...)``) and ``.is_final_invoke``. A window closes with a final
invocation when a record of a later window arrives, or when its end has passed and
nothing newer came. The offsets and table writes of an open window are held until it
closes: a crash recomputes the window from its first record. Selection, invocation,
backoff and where failures go are the handler's delivery policy
(:class:`~streamkit.runtime._delivery.Delivery`); a window invocation is retried
whole (no bisect, no partial failure). See docs/design/runtime.md.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from streamkit._names import checkpoint_key
from streamkit.runtime._batch import Batch, BatchResult, Window
from streamkit.runtime._delivery import Item, backoff, pause
from streamkit.storage._effects import Checkpoint, Effects

if TYPE_CHECKING:
    from streamkit.runtime._tracking import _Lane
    from streamkit.runtime._worker import HandlerRunner

__all__ = ("process_window",)


async def process_window(runner: HandlerRunner, lane: _Lane, items: list[Item]) -> None:
    """Feed records into the lane's open window; close windows whose time is over."""
    part = lane.part
    spec = runner.spec
    delivery = runner.delivery
    assert spec.window is not None
    for it, err in delivery.decode(items):
        await delivery.give_up(part, [it], err)
        items = [x for x in items if x is not it]
        if lane.window is None:
            part.finish([it.offset])
        else:
            lane.window_offsets.append(it.offset)
    if not items:
        if lane.window is not None and time.time() >= lane.window.end.timestamp() + 0.5:
            await _close_window(runner, lane)
        return
    group: list[Item] = []
    for it in items:
        r = it.record
        assert r is not None
        w = _window_of(r.created_at, spec.window)
        if lane.window is not None and w.start > lane.window.start:
            await _window_invoke(runner, lane, group)
            group = []
            await _close_window(runner, lane)
        if lane.window is None:
            lane.window = w
            lane.window_state = {}
            lane.window_offsets = []
        lane.window_offsets.append(it.offset)
        if delivery.wanted(part, lane.index, it):
            group.append(it)
    await _window_invoke(runner, lane, group)


async def _window_invoke(
    runner: HandlerRunner, lane: _Lane, items: list[Item], *, final: bool = False
) -> None:
    if not items and not final:
        return
    part = lane.part
    spec = runner.spec
    delivery = runner.delivery
    effects = Effects(runner.store)
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
            result = await delivery.call(part, batch, attempt, effects)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            effects.undo(mark)
            runner._log.warning("window handler failed", attempt=attempt, error=repr(e))
            if delivery.exhausted(attempt):
                await delivery.give_up(part, items, e)
                break
            await pause(part, backoff(spec, attempt))
            continue
        if isinstance(result, BatchResult) and result.state is not None:
            lane.window_state = dict(result.state)
        delivery.processed(items)
        break
    lane.pending_effects.append(effects)


async def _close_window(runner: HandlerRunner, lane: _Lane) -> None:
    await _window_invoke(runner, lane, [], final=True)
    offsets = lane.window_offsets
    merged = Effects(runner.store)
    for eff in lane.pending_effects:
        merged.absorb(eff)
    lane.pending_effects = []
    if len(merged) and offsets:
        key = checkpoint_key(runner.group, lane.part.p, lane.index)
        known = lane.part.lane_checkpoints.get(lane.index, 0)
        first = next((o for o in offsets if o >= known), offsets[-1])
        stale = await merged.commit_with([Checkpoint(key, first=first, value=offsets[-1] + 1)])
        if stale is not None:
            runner._log.warning(
                "window writes skipped: another member committed this window",
                partition=lane.part.p,
                checkpoint=stale,
            )
        lane.part.lane_checkpoints[lane.index] = max(stale or 0, offsets[-1] + 1)
    lane.window = None
    lane.window_state = {}
    lane.window_offsets = []
    lane.part.finish(offsets)


def _window_of(when: datetime, length: float) -> Window:
    ts = when.timestamp()
    start = (ts // length) * length
    return Window(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + length, UTC))
