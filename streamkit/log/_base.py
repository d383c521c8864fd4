"""The change-log contract: records, topic settings, errors and the three Protocols.

Both backends (``local://`` in ``_local.py``, ``kafka://`` in ``_kafka.py``)
implement exactly this, and ``tests/conformance/`` checks them with one suite.
Nothing here imports a backend: :func:`from_url` imports the one a URL names
when it is called, so ``import streamkit.log`` never imports aiokafka.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl

from streamkit.exceptions import ConfigurationError, LogError, ValidationError

__all__ = (
    "MAX_FUTURE_TIMESTAMP_MS",
    "MAX_RECORD_BYTES",
    "ChangeLog",
    "CommitRefused",
    "Fenced",
    "LogConsumer",
    "LogProducer",
    "LogReader",
    "LogRecord",
    "LogUnavailable",
    "OutRecord",
    "RebalanceListener",
    "StartPosition",
    "TopicConfig",
    "TopicMismatch",
    "TopicNotFound",
    "UrlOptions",
    "check_records",
    "check_topic_name",
    "from_url",
    "murmur2",
    "now_ms",
    "partition_for_key",
)

#: Largest record (key + value + header names and values) either backend accepts.
#: Kafka's default ``max.message.bytes`` is 1 MiB per batch including framing, so
#: staying a little below it means a record that fits locally fits on Kafka too.
MAX_RECORD_BYTES = 1_000_000

#: Kafka 4.x rejects a timestamp more than an hour ahead of the broker's clock
#: (``log.message.timestamp.after.max.ms``); the local log applies the same rule so
#: an append that Kafka would refuse is refused on a laptop too.
MAX_FUTURE_TIMESTAMP_MS = 3_600_000

#: Where a reader starts in a partition that has no committed offset for its group
#: (and where it goes when its position has been deleted by retention).
StartPosition = Literal["earliest", "latest"]

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_CLEANUP_POLICIES = frozenset({"delete", "compact", "compact,delete"})


# --- records and settings -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TopicConfig:
    """How a topic is laid out and how long it keeps records.

    Attributes:
        partitions: number of partitions (1-10000).
        retention_ms: how long records are kept, in milliseconds; -1 keeps them for ever.
        cleanup_policy: ``"delete"``, ``"compact"`` or ``"compact,delete"`` (Kafka's names).
    """

    partitions: int = 8
    retention_ms: int = 86_400_000
    cleanup_policy: str = "delete"

    def __post_init__(self) -> None:
        if not isinstance(self.partitions, int) or not 1 <= self.partitions <= 10_000:
            raise ConfigurationError(f"partitions={self.partitions!r} must be 1-10000")
        if not isinstance(self.retention_ms, int) or (
            self.retention_ms < 1 and self.retention_ms != -1
        ):
            raise ConfigurationError(
                f"retention_ms={self.retention_ms!r} must be a positive number of ms, or -1"
            )
        policy = _normalize_policy(self.cleanup_policy)
        if policy not in _CLEANUP_POLICIES:
            raise ConfigurationError(
                f"cleanup_policy={self.cleanup_policy!r} must be one of {sorted(_CLEANUP_POLICIES)}"
            )
        # frozen: the normalized spelling ("delete,compact" == "compact,delete") must be
        # stored so that two equal settings compare equal
        object.__setattr__(self, "cleanup_policy", policy)


def _normalize_policy(policy: str) -> str:
    if not isinstance(policy, str):
        return repr(policy)
    return ",".join(sorted(p.strip() for p in policy.split(",") if p.strip()))


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to append.

    Attributes:
        topic: the topic to append to.
        key: the message key; records with the same key go to the same partition.
        value: the payload.
        headers: ``(name, value)`` pairs, in order; names may repeat.
        timestamp_ms: the record's time (epoch ms); None means "now".
        partition: an explicit partition; None means :func:`partition_for_key` of the key
            (a random partition when the key is None too).
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None
    partition: int | None = None


@dataclass(slots=True, eq=True)
class LogRecord:
    """A record read from the log (treat it as read-only; it is not frozen because a
    frozen dataclass costs twice as much to build, and readers build one per record).

    Attributes:
        topic: the topic it was read from.
        partition: its partition.
        offset: its position in the partition; increasing, but only the local log
            numbers them densely (Kafka's transaction markers take offsets too).
        key: the message key, or None.
        value: the payload.
        headers: ``(name, value)`` pairs as appended.
        timestamp_ms: the record's time (epoch ms), as appended.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


# --- errors -------------------------------------------------------------------------------
class Fenced(LogError):
    """A newer producer with the same transactional id has started; this one may not write.

    Not retriable: the producer object is finished. Whoever owns the transactional id
    now is the only writer.

    Attributes:
        transactional_id: the fenced producer's transactional id.
    """

    def __init__(self, message: str, *, transactional_id: str | None = None) -> None:
        super().__init__(message, retriable=False)
        self.transactional_id = transactional_id


class LogUnavailable(LogError):
    """The log could not be reached in time (broker down, network, timeout). Retriable.

    Attributes:
        in_doubt: True when an append's commit had been requested before the failure,
            so its records may still become visible. The producer settles the question
            before its next append: after the next successful ``start()`` or
            ``append()``, a read-committed reader sees that append completely or not
            at all, for good.
    """

    def __init__(self, message: str, *, in_doubt: bool = False) -> None:
        super().__init__(message, retriable=True)
        self.in_doubt = in_doubt


class CommitRefused(LogError):
    """A group member tried to commit offsets of partitions it no longer owns.

    Raised by :meth:`LogConsumer.commit` after a rebalance gave the partitions to
    another member (or the member's session expired): the new owner's position wins.
    Not retriable for those partitions; the member should drop their in-flight work.

    Attributes:
        partitions: the partitions whose commit was refused.
    """

    def __init__(self, message: str, *, partitions: Sequence[int] = ()) -> None:
        super().__init__(message, retriable=False)
        self.partitions = sorted(partitions)


class TopicNotFound(LogError, LookupError):
    """The topic does not exist.

    Attributes:
        topic: the topic name.
    """

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message, retriable=False)
        self.topic = topic


class TopicMismatch(ConfigurationError):
    """A topic exists with settings other than the ones asked for.

    streamkit never silently uses such a topic: records would land on other
    partitions than their keys' (a different partition count) or vanish earlier than
    promised (a different retention).

    Attributes:
        topic: the topic name.
        wanted: the settings asked for.
        actual: the settings the topic has.
        differences: one ``"field: has X, wanted Y"`` line per differing setting.
    """

    def __init__(self, topic: str, *, wanted: TopicConfig, actual: TopicConfig) -> None:
        self.topic = topic
        self.wanted = wanted
        self.actual = actual
        self.differences = [
            f"{name}: has {getattr(actual, name)!r}, wanted {getattr(wanted, name)!r}"
            for name in ("partitions", "retention_ms", "cleanup_policy")
            if getattr(actual, name) != getattr(wanted, name)
        ]
        super().__init__(
            f"topic {topic!r} exists with different settings ("
            + "; ".join(self.differences)
            + "); streamkit will not use it: delete the topic or change the configuration"
        )


# --- the contract -------------------------------------------------------------------------
@runtime_checkable
class LogProducer(Protocol):
    """A transactional, idempotent writer.

    Every :meth:`append` is one transaction: all its records (any topics and
    partitions) become visible to read-committed readers, or none do. Starting a
    producer with the same transactional id fences older ones: their next append
    raises :class:`Fenced` and writes nothing.
    """

    async def start(self) -> None:
        """Register the transactional id (fencing older producers). Idempotent."""
        ...

    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append records atomically; returns once they are committed.

        Raises:
            Fenced: a newer producer owns the transactional id.
            LogUnavailable: the log could not be reached in time (see ``in_doubt``).
            TopicNotFound: a record names a topic that does not exist.
            ValidationError: a record is malformed or too large; nothing was sent.
            LogError: the log refused the records (e.g. a timestamp over an hour ahead).
        """
        ...

    async def close(self) -> None:
        """Release the producer. A pending transaction is aborted."""
        ...


@runtime_checkable
class LogReader(Protocol):
    """A read-committed reader of every partition (or a chosen set) of one topic.

    The position in each partition starts at the group's committed offset, else at
    the reader's ``start`` ("earliest" by default). A position that retention has
    deleted, or one past the end, is moved back to ``start`` as Kafka's
    ``auto.offset.reset`` does.
    """

    async def partitions(self) -> list[int]:
        """The partitions this reader reads, ascending."""
        ...

    async def position(self, partition: int) -> int:
        """The offset of the next record this reader will return from ``partition``."""
        ...

    async def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""
        ...

    async def seek_to_beginning(self, partition: int | None = None) -> None:
        """Move to the oldest kept record of one partition, or of all of them."""
        ...

    async def seek_to_end(self, partition: int | None = None) -> None:
        """Move past the last committed record of one partition, or of all of them."""
        ...

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """Where to seek to read from the first record whose timestamp is >= ``timestamp_ms``.

        None when no kept record is that recent. Kafka also times its transaction
        markers (with the commit's time), so it may answer with the offset of the
        marker that follows the last record instead of None; reading from there
        returns only later appends, as None would mean.
        """
        ...

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of every partition."""
        ...

    async def end_offsets(self, *, settled: bool = False) -> dict[int, int]:
        """The offset after the last committed record of every partition (Kafka: the LSO).

        Kafka shows a committed transaction in these only once its commit markers are
        written, a few ms after the commit returned. With ``settled``, wait (up to a few
        seconds) until every transaction with a record in the log as of the call is
        committed or aborted, so every append that had returned is included.
        """
        ...

    # `timeout` is a long-poll wait for the first record (Kafka's getmany(timeout_ms)),
    # not a deadline for the call, so asyncio.timeout around it would mean something else
    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109
    ) -> list[LogRecord]:
        """Return the next committed records, waiting up to ``timeout`` s for the first.

        Records come from all partitions, each partition's in offset order; an empty
        list means nothing arrived in time.
        """
        ...

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store the group's position (the next offset to read) per partition.

        Raises:
            ConfigurationError: the reader has no group.
        """
        ...

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets (partitions never committed are absent)."""
        ...

    async def close(self) -> None:
        """Release the reader."""
        ...


class RebalanceListener(Protocol):
    """What a :class:`LogConsumer` tells its owner when its partitions change.

    ``on_revoked`` is awaited *before* the partitions go to another member: the
    owner finishes (or abandons) its work on them and commits in it, so no two
    members ever process one partition at the same time. ``on_assigned`` is awaited
    after new partitions are owned and before records of them are fetched.

    The callbacks of one consumer never run at the same time, and each partition
    passed to ``on_assigned`` is passed to ``on_revoked`` exactly once (at the latest
    by ``close``). A member keeps heartbeating while a callback runs, so a slow
    ``on_revoked`` does not cost it its partitions (Kafka bounds it by the rebalance
    timeout, 60 s). A callback that raises is logged and the rebalance goes on:
    revoked partitions move all the same; partitions whose ``on_assigned`` raised
    stay owned but are not fetched until they move.
    """

    async def on_assigned(self, partitions: list[int]) -> None:
        """``partitions`` are now this member's (ascending)."""
        ...

    async def on_revoked(self, partitions: list[int]) -> None:
        """``partitions`` are about to leave this member (ascending); commit now."""
        ...


@runtime_checkable
class LogConsumer(Protocol):
    """A member of a consumer group reading one topic: the group shares the partitions.

    Every partition of the topic is owned by exactly one live member at a time; members
    joining, leaving (``close``) or dying (no heartbeat for ``session_timeout``) move
    partitions between members through the :class:`RebalanceListener`. A partition's
    reading starts at the group's committed offset, else at ``start``. Reads are
    read-committed, as :class:`LogReader`'s are.
    """

    group: str
    topic: str

    async def start(self) -> None:
        """Join the group. Partitions arrive through ``on_assigned`` (maybe later)."""
        ...

    def assignment(self) -> list[int]:
        """The partitions this member owns now, ascending."""
        ...

    # `timeout` is a long-poll wait, as in LogReader.fetch
    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109
    ) -> list[LogRecord]:
        """The next committed records of owned, unpaused partitions (each in offset order).

        Waits up to ``timeout`` s for the first; an empty list means nothing arrived
        (or nothing is owned). Never returns a record of a partition after its
        ``on_revoked`` has started.
        """
        ...

    def pause(self, partitions: Sequence[int]) -> None:
        """Stop returning records of these owned partitions until :meth:`resume`.

        A pause ends with the ownership: a partition revoked and assigned again (on
        Kafka every rebalance revokes every partition) is fetched unpaused. Partitions
        not owned are ignored.
        """
        ...

    def resume(self, partitions: Sequence[int]) -> None:
        """Return records of these partitions again."""
        ...

    async def seek(self, partition: int, offset: int) -> None:
        """Read an owned ``partition`` from ``offset`` next."""
        ...

    async def position(self, partition: int) -> int:
        """The offset of the next record :meth:`fetch` returns from an owned partition."""
        ...

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """As :meth:`LogReader.offset_for_time`."""
        ...

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of every partition of the topic."""
        ...

    async def end_offsets(self, *, settled: bool = False) -> dict[int, int]:
        """The offset after the last committed record of every partition of the topic.

        Kafka shows a committed transaction in these (the last stable offsets) only once
        its commit markers are written, a few ms after the commit returned. With
        ``settled``, wait (up to a few seconds) until every transaction with a record in
        the log as of the call is committed or aborted, so every append that had returned
        is included.
        """
        ...

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store the group's position (the next offset to read) of owned partitions.

        Raises:
            CommitRefused: a partition is no longer this member's (a rebalance moved
                it, or the session expired); nothing is committed.
        """
        ...

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets for the topic (never committed: absent)."""
        ...

    async def close(self) -> None:
        """Leave the group: ``on_revoked`` for every owned partition, then go.

        The other members take the partitions over at once, not after a session timeout.
        """
        ...


@runtime_checkable
class ChangeLog(Protocol):
    """One change-log backend: topics, producers and readers.

    Get one with :func:`from_url`; ``await log.open()`` (or ``async with``) before use.
    """

    url: str

    async def open(self) -> None:
        """Connect / open the storage. Idempotent."""
        ...

    async def close(self) -> None:
        """Close everything this log opened, including its producers and readers."""
        ...

    async def __aenter__(self) -> Self:
        """``async with from_url(url) as log``: open, and close on the way out."""
        ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def ensure_topic(self, name: str, config: TopicConfig) -> None:
        """Create the topic if it is missing.

        Raises:
            TopicMismatch: it exists with another partition count, retention or cleanup
                policy.
        """
        ...

    async def describe_topic(self, name: str) -> TopicConfig | None:
        """The topic's settings, or None if it does not exist."""
        ...

    async def delete_topic(self, name: str) -> None:
        """Delete the topic and its records; a missing topic is not an error."""
        ...

    def partition_for(self, topic_partitions: int, key: bytes) -> int:
        """The partition Kafka's default partitioner picks for ``key`` (murmur2)."""
        ...

    def producer(self, transactional_id: str) -> LogProducer:
        """A transactional producer; call ``start()`` before ``append()``."""
        ...

    def reader(
        self,
        topic: str,
        *,
        group: str | None = None,
        partitions: Sequence[int] | None = None,
        start: StartPosition = "earliest",
    ) -> LogReader:
        """A read-committed reader of ``topic`` (all partitions unless ``partitions``).

        ``group`` names the consumer group whose offsets :meth:`LogReader.commit`
        stores and where the reader starts; the reader does not join the group's
        partition assignment (it reads what it is given).
        """
        ...

    def consumer(
        self,
        topic: str,
        *,
        group: str,
        listener: RebalanceListener,
        start: StartPosition = "earliest",
        session_timeout: float = 10.0,
    ) -> LogConsumer:
        """A member of ``group`` reading ``topic``; ``await start()`` to join.

        Args:
            listener: told of partitions assigned and (before they move) revoked.
            start: where a partition with no committed offset is read from.
            session_timeout: seconds without a heartbeat after which a member is
                considered dead and its partitions go to the others.
        """
        ...


# --- shared helpers -----------------------------------------------------------------------
def now_ms() -> int:
    """The wall clock in epoch milliseconds (what a record's default timestamp is)."""
    return time.time_ns() // 1_000_000


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned.

    Both backends partition with this, so an item's records land on the same
    partition number on a laptop and on Kafka (and the Java client agrees).
    """
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    end = length & ~3
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for_key(partitions: int, key: bytes | None) -> int:
    """Kafka's default partition for a key: ``(murmur2(key) & 0x7fffffff) % partitions``.

    A None key gets a random partition (Kafka's clients spread keyless records too).
    """
    if key is None:
        return random.randrange(partitions)  # spreading load, not security
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def check_transactional_id(transactional_id: object) -> str:
    """A producer's transactional id: a non-empty str."""
    if not isinstance(transactional_id, str) or not transactional_id:
        raise ValidationError("transactional_id must be a non-empty str")
    return transactional_id


def check_reader_options(start: object, group: object) -> None:
    """A reader's ``start`` ("earliest" | "latest") and ``group`` (non-empty str or None)."""
    if start not in ("earliest", "latest"):
        raise ValidationError(f"start={start!r} must be 'earliest' or 'latest'")
    if group is not None and (not isinstance(group, str) or not group):
        raise ValidationError("group must be a non-empty str or None")


def check_consumer_options(start: object, group: object, session_timeout: object) -> None:
    """A consumer's ``start``, ``group`` (a non-empty str) and ``session_timeout`` (> 0 s)."""
    check_reader_options(start, group)
    if not isinstance(group, str) or not group:
        raise ValidationError("a consumer needs a group (a non-empty str)")
    if (
        isinstance(session_timeout, bool)
        or not isinstance(session_timeout, (int, float))
        or not 0 < session_timeout <= 3600
    ):
        raise ValidationError(f"session_timeout={session_timeout!r} must be 0-3600 seconds")


def check_offset(offset: object, what: str = "offset") -> int:
    """An offset: a non-negative int."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"{what}={offset!r} must be a non-negative int")
    return offset


def check_max_records(max_records: object) -> int:
    """A fetch size: a positive int."""
    if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
        raise ValidationError("max_records must be a positive int")
    return max_records


def check_topic_name(name: str) -> str:
    """Check a topic name against Kafka's rules (so a local topic could move to Kafka).

    Raises:
        ValidationError: empty, over 249 characters, "." or "..", or characters other
            than ``A-Z a-z 0-9 . _ -``.
    """
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 249
        or name in (".", "..")
        or not _TOPIC_NAME.match(name)
    ):
        raise ValidationError(
            f"topic name {name!r} must be 1-249 characters of A-Z a-z 0-9 . _ - "
            "(and not '.' or '..')"
        )
    return name


def check_records(records: Sequence[OutRecord]) -> list[OutRecord]:
    """Check records before anything is sent, so a malformed append writes nothing.

    Raises:
        ValidationError: wrong types, a negative timestamp or partition, or a record
            larger than :data:`MAX_RECORD_BYTES`.
    """
    if isinstance(records, OutRecord):
        raise ValidationError("append() takes a sequence of OutRecord, not one record")
    out = list(records)
    for i, r in enumerate(out):
        where = f"records[{i}]"
        if not isinstance(r, OutRecord):
            raise ValidationError(f"{where} is {type(r).__name__}, not OutRecord")
        if not isinstance(r.topic, str) or not r.topic:
            raise ValidationError(f"{where}.topic must be a non-empty str")
        if r.key is not None and not isinstance(r.key, bytes):
            raise ValidationError(f"{where}.key must be bytes or None")
        if not isinstance(r.value, bytes):
            raise ValidationError(f"{where}.value must be bytes")
        size = len(r.value) + (len(r.key) if r.key is not None else 0)
        for h in r.headers:
            if not (
                isinstance(h, tuple)
                and len(h) == 2
                and isinstance(h[0], str)
                and isinstance(h[1], bytes)
            ):
                raise ValidationError(f"{where}.headers must be (str, bytes) pairs, got {h!r}")
            size += len(h[0].encode()) + len(h[1])
        if size > MAX_RECORD_BYTES:
            raise ValidationError(
                f"{where} is {size} bytes; the change log takes at most {MAX_RECORD_BYTES}"
            )
        if r.timestamp_ms is not None and (
            not isinstance(r.timestamp_ms, int) or isinstance(r.timestamp_ms, bool)
        ):
            raise ValidationError(f"{where}.timestamp_ms must be an int or None")
        if r.timestamp_ms is not None and r.timestamp_ms < 0:
            raise ValidationError(f"{where}.timestamp_ms must not be negative")
        if r.partition is not None and (not isinstance(r.partition, int) or r.partition < 0):
            raise ValidationError(f"{where}.partition must be a non-negative int or None")
    return out


class UrlOptions:
    """A change-log URL's query options, checked against the names a backend knows.

    Args:
        url: the whole URL, for error messages (callers pass it redacted).
        query: the part after ``?``.
        known: the option names the backend accepts.

    Raises:
        ConfigurationError: an unknown or repeated option.
    """

    def __init__(self, url: str, query: str, known: Sequence[str]) -> None:
        self._url = url
        self._raw: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name not in known:
                raise ConfigurationError(
                    f"unknown option {name!r} in change-log URL {url!r}; known: {sorted(known)}"
                )
            if name in self._raw:
                raise ConfigurationError(f"option {name!r} given twice in change-log URL {url!r}")
            self._raw[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self._raw

    def _bad(self, name: str, kind: str) -> ConfigurationError:
        return ConfigurationError(
            f"option {name}={self._raw[name]!r} in change-log URL {self._url!r} is not {kind}"
        )

    def get_str(self, name: str, default: str) -> str:
        """The option as given, or ``default``."""
        return self._raw.get(name, default)

    def get_int(self, name: str, default: int) -> int:
        """The option as an int, or ``default``."""
        if name not in self._raw:
            return default
        try:
            return int(self._raw[name])
        except ValueError:
            raise self._bad(name, "an integer") from None

    def get_float(self, name: str, default: float) -> float:
        """The option as a float, or ``default``."""
        if name not in self._raw:
            return default
        try:
            return float(self._raw[name])
        except ValueError:
            raise self._bad(name, "a number") from None


async def read_until(reader: LogReader, ends: Mapping[int, int]) -> AsyncIterator[list[LogRecord]]:
    """Read each partition from the reader's position up to (not including) its offset
    in ``ends``, then stop: chunks of records, each partition's in order.

    A Kafka transaction's commit marker follows its last record, and reading past it
    does not wake a waiting fetch, so near the end the reader is polled in short steps;
    a partition is done only when its position reaches its end, never on a quiet fetch.
    """
    live = {p: end for p, end in ends.items() if await reader.position(p) < end}
    wait = 1.0
    while live:
        batch = await reader.fetch(max_records=10_000, timeout=wait)
        out = [r for r in batch if r.offset < live.get(r.partition, -1)]
        near = True
        for p in list(live):
            pos = await reader.position(p)
            if pos >= live[p]:
                del live[p]
            elif pos < live[p] - 1:
                near = False
        wait = 0.02 if near else 1.0
        if out:
            yield out


def from_url(url: str) -> ChangeLog:
    """Create (not open) the change log a URL names, importing only that backend.

    Args:
        url: ``local://path[?options]`` or ``kafka://host:port[,host:port][?options]``.

    Raises:
        ConfigurationError: an unknown scheme or a malformed URL.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"unsupported change-log URL {url!r}: use local://path or kafka://host:port"
        )
    scheme = url.split("://", 1)[0]
    if scheme == "local":
        from streamkit.log._local import LocalLog

        return LocalLog(url)
    if scheme == "kafka":
        # imported here, not at the top: aiokafka is only needed by Kafka users and
        # costs ~100 ms of import time
        from streamkit._optional import needs

        with needs("kafka"):
            from streamkit.log._kafka import KafkaLog

        return KafkaLog(url)
    raise ConfigurationError(
        f"unsupported change-log URL {url!r}: use local://path or kafka://host:port"
    )
