"""Helpers shared by the Kafka log's clients: aiokafka's errors and client teardown.

:func:`_kafka_errors` is the one place where aiokafka / network / deadline errors
become streamkit's (``Fenced``, ``TopicNotFound``, ``LogUnavailable``, ``LogError``),
with the cause chained; :func:`to_log_records` turns aiokafka's fetched messages into
``LogRecord`` objects; :class:`Settler` reads end offsets that include every
transaction committed before the call; :func:`_quietly`, :func:`_stop_producer` and
:func:`_consume_stray_errors` close aiokafka clients, the last two through aiokafka
0.14's private attributes (see ``docs/design/change-log.md``).

Used by ``_kafka.py`` (the log), ``_kafka_clients.py`` (its producer and reader) and
``_kafka_consumer.py`` (its consumer-group member).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import errors as kafka_errors

from streamkit.exceptions import LogError
from streamkit.log._base import Fenced, LogRecord, LogUnavailable, TopicNotFound

__all__ = ("to_log_records",)

_logger = logging.getLogger("streamkit.log.kafka")

_STOP_GRACE = 5.0  # seconds a discarded producer gets to stop before it is torn down


# --- translating aiokafka errors, once ----------------------------------------------------
@dataclass(slots=True)
class _Txn:
    """What an append had got to when it failed (decides ``in_doubt``)."""

    commit_requested: bool = False


@contextlib.contextmanager
def _kafka_errors(
    what: str, *, topic: str | None = None, txn: _Txn | None = None
) -> Iterator[None]:
    """Translate aiokafka / network / deadline errors into streamkit's, cause chained.

    Args:
        what: the operation, for the message ("append to Kafka").
        topic: the topic concerned, for TopicNotFound.
        txn: an append's progress: a failure after its commit was requested is in doubt.
    """
    try:
        yield
    except kafka_errors.ProducerFenced as e:
        # also what a transaction that outlived transaction_timeout_ms gets; our append
        # deadline is shorter than that timeout, so here it means a newer producer
        raise Fenced(f"{what}: fenced by a newer producer with the same transactional id") from e
    except kafka_errors.UnknownTopicOrPartitionError as e:
        name = topic or "?"
        raise TopicNotFound(f"{what}: topic {name!r} does not exist", topic=name) from e
    except (TimeoutError, kafka_errors.KafkaTimeoutError, kafka_errors.RequestTimedOutError) as e:
        raise _unavailable(f"{what}: Kafka did not answer in time", txn) from e
    except (kafka_errors.KafkaConnectionError, kafka_errors.NodeNotReadyError, OSError) as e:
        raise _unavailable(f"{what}: cannot reach Kafka ({e})", txn) from e
    except kafka_errors.KafkaError as e:
        if e.retriable:
            raise _unavailable(f"{what}: {e!r}", txn) from e
        raise LogError(f"{what}: Kafka refused it: {e!r}", retriable=False) from e


def _unavailable(message: str, txn: _Txn | None) -> LogUnavailable:
    # read when the error happens, not when the block was entered: the commit request
    # is what turns a failed append into one that may still appear
    if txn is not None and txn.commit_requested:
        return LogUnavailable(
            f"{message} (the commit had been requested: the records may still appear; "
            "the next append settles it)",
            in_doubt=True,
        )
    return LogUnavailable(message)


def to_log_records(got: Mapping[Any, Sequence[Any]]) -> list[LogRecord]:
    """aiokafka's ``getmany()`` result as LogRecords."""
    out: list[LogRecord] = []
    append = out.append
    make = LogRecord
    for tp, messages in got.items():
        topic, partition = tp.topic, tp.partition
        for m in messages:
            value = m.value
            hs = m.headers
            if hs:
                headers = tuple(hs)
                for _, v in headers:
                    if v is None:  # Kafka allows null header values; ours are bytes
                        headers = tuple((k, b"" if v is None else v) for k, v in headers)
                        break
            else:
                headers = ()
            append(
                make(
                    topic,
                    partition,
                    m.offset,
                    m.key,
                    value if value is not None else b"",
                    headers,
                    m.timestamp,
                )
            )
    return out


# --- closing aiokafka clients ---------------------------------------------------------
async def _quietly(aw: Any) -> None:
    """Await a clean-up step whose failure must not hide the error being raised."""
    try:
        await aw
    except Exception:  # clean-up of a broken client: report, never raise
        _logger.debug("ignored error while closing an aiokafka client", exc_info=True)


async def _stop_producer(producer: Any) -> None:
    """Stop an aiokafka producer, even one whose broker is gone.

    ``AIOKafkaProducer.stop()`` first waits until every queued batch is delivered,
    which is for ever while the broker is down. After a grace period the sender
    task (private, aiokafka 0.14) is cancelled and the connections closed; any
    transaction it left open is aborted by the coordinator when the next producer
    with the same transactional id starts, or when it times out.
    """
    stop = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait([stop], timeout=_STOP_GRACE)
    sender = getattr(producer, "_sender", None)
    if not done:
        if sender is not None:
            await _quietly(sender.close())
        await _quietly(producer.client.close())
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await stop
    _consume_stray_errors(producer)


def _consume_stray_errors(producer: Any) -> None:
    """Mark errors we already reported as read in aiokafka's internal futures.

    After a failed or fenced transaction, aiokafka (0.14, private attributes) leaves
    the error in its transaction waiter and sender task, which nobody awaits; asyncio
    would log "Future exception was never retrieved" at ERROR for an error this
    module has already raised as Fenced or LogError.
    """
    sender = getattr(producer, "_sender", None)
    txn_manager = getattr(producer, "_txn_manager", None)
    for fut in (
        getattr(sender, "sender_task", None),
        getattr(txn_manager, "_transaction_waiter", None),
    ):
        if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
            fut.exception()


# --- end offsets past the commit markers ------------------------------------------------------
_SETTLE_WAIT = 5.0  # seconds end offsets wait for commit markers before answering as they are


class Settler:
    """Read-committed end offsets that include every transaction committed before the call.

    Kafka writes a transaction's commit markers a few ms after the commit returned (longer
    while a partition's leadership moves); until then the last stable offset, which is
    what a read_committed consumer's ``end_offsets`` answers, stops before the
    transaction's records. :meth:`end_offsets` first reads the high watermarks (through a
    group-less read_uncommitted consumer, started on first use) and then waits until the
    last stable offsets reach them: every transaction with a record below them is then
    committed or aborted. Transactions begun after the first read are not waited for, so
    steady appends do not keep it waiting; it gives up after 5 s and answers as it is.
    """

    def __init__(self, client_kwargs: Callable[[], Mapping[str, Any]]) -> None:
        self._client_kwargs = client_kwargs  # called when the probe starts (TLS context)
        self._probe: Any = None

    async def end_offsets(
        self,
        consumer: Any,
        tps: Sequence[Any],
        deadline: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    ) -> dict[Any, int]:
        """``consumer``'s (read_committed) end offsets of ``tps``, settled as above.

        ``deadline()`` bounds each request to the broker (the log's request timeout);
        the wait as a whole is bounded by 5 s, whatever that timeout.
        """
        if self._probe is None:
            probe = AIOKafkaConsumer(**self._client_kwargs(), isolation_level="read_uncommitted")
            try:
                async with deadline():
                    await probe.start()
            except BaseException:
                await _quietly(probe.stop())
                raise
            self._probe = probe
        async with deadline():
            high = await self._probe.end_offsets(list(tps))
        async with deadline():
            got: dict[Any, int] = await consumer.end_offsets(list(tps))
        loop = asyncio.get_running_loop()
        end = loop.time() + _SETTLE_WAIT
        while any(got[tp] < high[tp] for tp in tps) and loop.time() < end:
            await asyncio.sleep(0.01)
            async with deadline():
                got = await consumer.end_offsets(list(tps))
        return got

    async def close(self) -> None:
        """Stop the probe, if one was started."""
        probe, self._probe = self._probe, None
        if probe is not None:
            await _quietly(probe.stop())
