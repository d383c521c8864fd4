"""Redrive: send a handler's dead letters back through it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamkit.runtime._delivery import Delivery, Item, bound_logger
from streamkit.storage._effects import Effects

if TYPE_CHECKING:
    from streamkit.runtime._delivery import Origin
    from streamkit.runtime._dlq import DeadLetter, DeadLetterQueue
    from streamkit.runtime._registry import HandlerSpec
    from streamkit.storage._store import Store

__all__ = ("redrive",)


class _Letter:
    """A dead letter as the delivery policy sees it: from its source partition, never
    given away, not delivered before (it is being redriven)."""

    stopping = False

    def __init__(self, partition: int) -> None:
        self.partition = partition

    def seen(self, lane: int, item: Item) -> bool:
        return False


class _Kept:
    """Redrive's failure route: a letter that still fails after the handler's retries
    stays in the DLQ (and the redrive stops); no ``block``, no ``max_record_age``."""

    blocking = False
    expiring = False

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def give_up(self, origin: Origin, items: list[Item], error: BaseException) -> None:
        self.error = error


async def _handle(
    store: Store, spec: HandlerSpec, letter: DeadLetter, log: object
) -> BaseException | None:
    """Run one letter through the handler's delivery policy; None on success."""
    record = letter.record
    if record is None:
        return ValueError(f"dead letter at offset {letter.offset} cannot be decoded")
    kept = _Kept()
    delivery = Delivery(spec, kept, log=log, commit_each=True)
    await delivery.deliver(_Letter(letter.source_partition), 0, [Item.of(record)], Effects(store))
    return kept.error


async def redrive(
    store: Store, dlq: DeadLetterQueue, spec: HandlerSpec, *, limit: int | None = None
) -> dict[str, int]:
    """Redrive pending letters oldest first; stop at the first that fails again."""
    log = bound_logger(spec)
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
