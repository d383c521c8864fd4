"""Redrive: send a handler's dead letters back through it."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from streamkit.runtime._batch import Batch, BatchResult
from streamkit.runtime._worker import _bound_logger, call_handler
from streamkit.storage._effects import Effects

if TYPE_CHECKING:
    from streamkit.runtime._dlq import DeadLetter, DeadLetterQueue
    from streamkit.runtime._registry import HandlerSpec
    from streamkit.storage._store import Store

__all__ = ("redrive",)


async def _handle(
    store: Store, spec: HandlerSpec, letter: DeadLetter, log: object
) -> Exception | None:
    """Run one letter through the handler with its retries; None on success."""
    record = letter.record
    if record is None:
        return ValueError(f"dead letter at offset {letter.offset} cannot be decoded")
    error: Exception | None = None
    for attempt in range(1, spec.retries + 2):
        effects = Effects(store)
        arg = (
            Batch(
                [record],
                table=spec.table,
                handler=spec.name,
                partition=letter.source_partition,
                attempt=attempt,
            )
            if spec.batched
            else record
        )
        try:
            result = await call_handler(
                spec, arg, effects, partition=letter.source_partition, attempt=attempt, log=log
            )
            if isinstance(result, BatchResult) and result.first_failure([record]) is not None:
                raise RuntimeError("the handler reported the record as failed")
            if len(effects):
                await effects.commit_with([])
            return None
        except Exception as e:  # the handler's failure, reported to the caller
            error = e
            delay = min(spec.max_retry_delay, spec.retry_delay * (2 ** (attempt - 1)))
            if attempt <= spec.retries:
                await asyncio.sleep(random.uniform(0, delay))
    return error


async def redrive(
    store: Store, dlq: DeadLetterQueue, spec: HandlerSpec, *, limit: int | None = None
) -> dict[str, int]:
    """Redrive pending letters oldest first; stop at the first that fails again."""
    log = _bound_logger(spec)
    done = failed = 0
    async for letter in dlq.pending():
        if limit is not None and done >= limit:
            break
        error = await _handle(store, spec, letter, log)
        if error is not None:
            failed = 1
            log.error(
                "redrive stopped: the record still fails", offset=letter.offset, error=repr(error)
            )
            break
        await dlq.mark_redriven(letter)
        done += 1
    return {"redriven": done, "failed": failed, "pending": await dlq.depth()}
