"""The DynamoDB Streams API, served from the change log: a table's stream is its topic,
each partition a shard, sequence numbers are streamkit's.

A table's streams (``_stream_history``) each cover a range of sequence numbers of the
one topic: turning a stream off closes its shards (it stays readable, DISABLED, for 24
hours) and turning it on again starts a new stream with a new label, ARN and shard ids.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamkit._names import SEQUENCE_HEADER, relay_done_key, table_topic
from streamkit.exceptions import TableNotFound
from streamkit.records._avro import decode_record
from streamkit.server._convert import shown
from streamkit.server._errors import DynamoError, validation
from streamkit.server._stream_history import deleted_tables, label_ms, load_streams, spec_label

if TYPE_CHECKING:
    from streamkit.log import LogReader, LogRecord
    from streamkit.server._ops import Service
    from streamkit.storage._spec import TableSpec

__all__ = ("StreamsService",)

Body = dict[str, Any]
_ITERATOR_TTL = 15 * 60  # seconds, as DynamoDB Streams' shard iterators
_MAX_BYTES = 1 << 20  # GetRecords returns at most 1 MB of records (SizeBytes)
_KINDS = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
_EMPTY_FETCHES = 8  # reads of an offset that holds no record before giving up on it


@dataclass(frozen=True, slots=True)
class _Stream:
    """One stream of a table: the records with ``start < seq <= end`` of its topic."""

    spec: TableSpec
    arn: str
    label: str
    view: str
    start: int
    end: int | None  # None: enabled (open shards)


def _shard_id(stream: _Stream, partition: int) -> str:
    return f"shardId-{label_ms(stream.label):020d}-{partition:08x}"


def _constraint(value: Any, member: str, rule: str) -> DynamoError:
    return validation(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {rule}"
    )


def _check_length(value: Any, member: str, low: int, high: int) -> str:
    if not isinstance(value, str):
        raise validation(f"Invalid {member}: {shown(value)}")
    if len(value) < low:
        raise _constraint(value, member, f"Member must have length greater than or equal to {low}")
    if len(value) > high:
        raise _constraint(value, member, f"Member must have length less than or equal to {high}")
    return value


def _limit(body: Body, high: int, default: int) -> int:
    limit = body.get("Limit", default)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise validation(f"Invalid Limit: {shown(limit)}")
    if limit < 1:
        raise _constraint(limit, "limit", "Member must have value greater than or equal to 1")
    if limit > high:
        raise _constraint(limit, "limit", f"Member must have value less than or equal to {high}")
    return limit


def _partition_of(shard: str) -> int | None:
    """The partition a shard id names (None: not one of ours)."""
    parts = shard.split("-")
    if len(parts) != 3 or parts[0] != "shardId":
        return None
    try:
        return int(parts[2], 16)
    except ValueError:
        return None


def _seq(n: int) -> str:
    """A sequence number as DynamoDB Streams writes them: digits, at least 21 of them
    (the SDKs refuse shorter ones)."""
    return f"{n:021d}"


def _not_found(what: str) -> DynamoError:
    return DynamoError("ResourceNotFoundException", f"Requested resource not found: {what}")


def _arn_order(arn: str) -> tuple[str, str]:
    table, label = arn.split(":table/", 1)[1].split("/stream/", 1)
    return table, label


def _stream_order(s: Body) -> tuple[str, str]:
    return str(s["TableName"]), str(s["StreamLabel"])


def _trimmed() -> DynamoError:
    return DynamoError(
        "TrimmedDataAccessException", "The data you are trying to access has been trimmed."
    )


def _seq_of(rec: LogRecord) -> int:
    """A record's change sequence number (its header; else from the record itself)."""
    for k, v in rec.headers:
        if k == SEQUENCE_HEADER:
            return int(v)
    return decode_record(rec.value).sequence_number


async def _record_at(reader: LogReader, p: int, offset: int, end: int) -> LogRecord | None:
    """The shard's first record at or past ``offset`` and before ``end`` (None: none)."""
    await reader.seek(p, offset)
    for _ in range(_EMPTY_FETCHES):  # Kafka's transaction markers hold offsets, no record
        if await reader.position(p) >= end:
            return None
        got = await reader.fetch(max_records=1, timeout=0.5)
        if got:
            return got[0] if got[0].offset < end else None
    return None


async def _position_after(reader: LogReader, p: int, seq: int, begin: int, end: int) -> int:
    """The position in ``[begin, end]`` from which the shard's next record is its first
    with a sequence number past ``seq`` (``end``: none yet). A shard's numbers grow with
    its offsets (the relay publishes in sequence order), so this is a binary search:
    ~log2(records) reads, not a scan of the shard."""
    lo, hi = begin, end
    while lo < hi:
        mid = (lo + hi) // 2
        rec = await _record_at(reader, p, mid, end)
        if rec is None or _seq_of(rec) > seq:
            hi = mid
        else:
            lo = rec.offset + 1
    return lo


async def _last_before(reader: LogReader, p: int, position: int, begin: int) -> LogRecord | None:
    """The shard's last record before ``position`` (None: none; a few markers apart)."""
    for o in range(position - 1, max(begin, position - _EMPTY_FETCHES) - 1, -1):
        rec = await _record_at(reader, p, o, position)
        if rec is not None:
            return rec
    return None


class StreamsService:
    """ListStreams, DescribeStream, GetShardIterator, GetRecords."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._readers: dict[tuple[str, int], tuple[LogReader, int]] = {}
        self._lock = asyncio.Lock()
        # a shard's SequenceNumberRange once it can no longer change, by (stream ARN, shard,
        # the stream's end: None while it is enabled)
        self._ranges: dict[tuple[str, int, int | None], Body] = {}

    async def call(self, operation: str, body: Body) -> Body:
        fn = {
            "ListStreams": self.ListStreams,
            "DescribeStream": self.DescribeStream,
            "GetShardIterator": self.GetShardIterator,
            "GetRecords": self.GetRecords,
        }.get(operation)
        if fn is None:
            raise DynamoError(
                "UnknownOperationException",
                f"Operation {operation} is not supported by streamkit",
                coral=True,
            )
        return await fn(body)

    async def _stream(self, arn: Any) -> _Stream:
        arn = _check_length(arn, "streamArn", 37, 1024)
        if ":table/" not in arn or "/stream/" not in arn:
            raise validation(f"Invalid StreamArn: {shown(arn)}")
        table, label = arn.split(":table/", 1)[1].split("/stream/", 1)
        spec = self.service.store.known(table)
        if spec is None:
            with contextlib.suppress(TableNotFound):
                spec = await self.service.store.spec(table)
        # the table's streams, then those of a table of that name deleted in the last 24 h
        specs = [] if spec is None else [spec]
        specs += [d for d in await deleted_tables(self.service.store) if d.name == table]
        for candidate in specs:
            if self.service.stream_arn(candidate, label) != arn:
                continue
            for s in await self._streams_of(candidate):
                if s.label == label:
                    return s
        raise _not_found(f"Stream: {arn} not found")

    async def _streams_of(self, spec: TableSpec) -> list[_Stream]:
        """A table's streams: the disabled ones still readable, then the enabled one."""
        entries = await load_streams(self.service.store, spec)
        current = spec_label(spec) if spec.stream is not None else None
        out = []
        for e in entries:
            if e.end is not None and e.label != current:
                arn = self.service.stream_arn(spec, e.label)
                out.append(_Stream(spec, arn, e.label, e.view, e.start, e.end))
        if spec.stream is not None and current is not None:
            start = next((e.start for e in entries if e.label == current), 0)
            arn = self.service.stream_arn(spec, current)
            out.append(_Stream(spec, arn, current, spec.stream.value, start, None))
        return out

    async def _topic(self, spec: TableSpec) -> tuple[bool, int]:
        """Whether the table's topic exists yet, and its partitions (the shards): one
        look at the log (a topic not made yet will have the App's default count)."""
        log = self.service.log
        await log.open()
        described = await log.describe_topic(table_topic(self.service.namespace, spec.name))
        if described is None:
            return False, self.service.partitions
        return True, described.partitions

    async def ListStreams(self, body: Body) -> Body:
        table = body.get("TableName")
        if table is not None:
            _check_length(table, "tableName", 3, 255)
        limit = _limit(body, 100, 100)
        start = body.get("ExclusiveStartStreamArn")
        if start is not None:
            _check_length(start, "exclusiveStartStreamArn", 37, 1024)
            if ":table/" not in start or "/stream/" not in start:
                raise validation(f"Invalid ExclusiveStartStreamArn: {shown(start)}")
        store = self.service.store
        names = await store.table_names() if table is None else [table]
        streams: list[Body] = []
        specs = []
        for name in names:
            with contextlib.suppress(TableNotFound):  # deleted meanwhile, or never there
                specs.append(await store.spec(name))
        # as DynamoDB: a deleted table's streams are listed (DISABLED) for 24 hours
        specs += [d for d in await deleted_tables(store) if table is None or d.name == table]
        for spec in specs:
            for s in await self._streams_of(spec):
                streams.append({"StreamArn": s.arn, "TableName": spec.name, "StreamLabel": s.label})
        streams.sort(key=lambda s: (s["TableName"], s["StreamLabel"]))
        if start is not None:
            streams = [s for s in streams if _stream_order(s) > _arn_order(start)]
        out: Body = {"Streams": streams[:limit]}
        if len(streams) > limit:
            out["LastEvaluatedStreamArn"] = streams[limit - 1]["StreamArn"]
        return out

    async def DescribeStream(self, body: Body) -> Body:
        stream = await self._stream(body.get("StreamArn"))
        spec = stream.spec
        limit = _limit(body, 100, 100)
        start = body.get("ExclusiveStartShardId")
        if start is not None:
            _check_length(start, "exclusiveStartShardId", 28, 65)
        topic_exists, n = await self._topic(spec)
        shard_filter = body.get("ShardFilter")
        only: set[str] | None = None
        if shard_filter is not None:
            if not isinstance(shard_filter, dict) or shard_filter.get("Type") != "CHILD_SHARDS":
                raise _constraint(
                    shown(shard_filter.get("Type") if isinstance(shard_filter, dict) else None),
                    "shardFilter.type",
                    "Member must satisfy enum value set: [CHILD_SHARDS]",
                )
            parent = _check_length(shard_filter.get("ShardId"), "shardFilter.shardId", 28, 65)
            p = _partition_of(parent)
            if p is None or parent != _shard_id(stream, p) or not 0 <= p < n:
                raise _not_found(f"Shard: {parent} in Stream: {stream.arn}")
            only = set()  # shards never split: a shard has no children
        chosen: list[tuple[str, int]] = []
        for p in range(n):
            sid = _shard_id(stream, p)
            if (start is not None and sid <= start) or (only is not None and sid not in only):
                continue
            chosen.append((sid, p))
            if len(chosen) > limit:
                break
        shards = [
            {"ShardId": sid, "SequenceNumberRange": await self._range(stream, p, topic_exists)}
            for sid, p in chosen[:limit]
        ]
        desc: Body = {
            "StreamArn": stream.arn,
            "StreamLabel": stream.label,
            "StreamStatus": "ENABLED" if stream.end is None else "DISABLED",
            "StreamViewType": stream.view,
            "CreationRequestDateTime": label_ms(stream.label) / 1000,
            "TableName": spec.name,
            "KeySchema": [
                {"AttributeName": name, "KeyType": kind}
                for name, kind in zip(spec.key.names, ("HASH", "RANGE"), strict=False)
            ],
            "Shards": shards[:limit],
        }
        if len(chosen) > limit:
            desc["LastEvaluatedShardId"] = chosen[limit - 1][0]
        return {"StreamDescription": desc}

    async def _borrow(self, spec: TableSpec, partition: int) -> LogReader:
        """The shard's kept reader (or a new one); hold ``_lock``, and ``_give_back``."""
        cached = self._readers.pop((spec.name, partition), None)
        if cached is not None:
            return cached[0]
        return self.service.log.reader(
            table_topic(self.service.namespace, spec.name), partitions=[partition]
        )

    async def _give_back(self, spec: TableSpec, partition: int, reader: LogReader) -> None:
        try:
            at = await reader.position(partition)
        except BaseException:
            await reader.close()
            raise
        old = self._readers.pop((spec.name, partition), None)
        if old is not None and old[0] is not reader:
            await old[0].close()
        self._readers[(spec.name, partition)] = (reader, at)

    async def _range(self, stream: _Stream, p: int, topic_exists: bool) -> Body:
        """A shard's ``SequenceNumberRange``: the numbers of its first record of the stream
        and (once closed) its last, as DynamoDB shows them. A shard with no record of the
        stream shows the stream's first number (and last, when closed)."""
        cached = self._ranges.get((stream.arn, p, stream.end))
        if cached is not None:
            return dict(cached)
        empty_end = max(stream.end or 0, stream.start + 1)
        first_seq = last_seq = None
        if topic_exists:
            async with self._lock:
                reader = await self._borrow(stream.spec, p)
                try:
                    begin = (await reader.beginning_offsets())[p]
                    end = (await reader.end_offsets())[p]
                    pos = await _position_after(reader, p, stream.start, begin, end)
                    first = await _record_at(reader, p, pos, end)
                    if first is not None:
                        first_seq = _seq_of(first)
                        if stream.end is not None and first_seq > stream.end:
                            first_seq = None  # the shard's next record is a later stream's
                    if first_seq is not None and stream.end is not None:
                        stop = await _position_after(reader, p, stream.end, pos, end)
                        last = await _last_before(reader, p, stop, pos)
                        last_seq = None if last is None else _seq_of(last)
                finally:
                    await self._give_back(stream.spec, p, reader)
        numbers = {"StartingSequenceNumber": _seq(first_seq or stream.start + 1)}
        if stream.end is not None:
            numbers["EndingSequenceNumber"] = _seq(last_seq or empty_end)
        if (
            first_seq is not None
            if stream.end is None
            else await self._relay_done() >= stream.end  # every record of it is published
        ):
            self._ranges[(stream.arn, p, stream.end)] = dict(numbers)
        return numbers

    def _iterator(self, stream: _Stream, partition: int, offset: int) -> str:
        raw = json.dumps([stream.arn, partition, offset, int(time.time())], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode()

    async def _decode_iterator(self, token: Any) -> tuple[_Stream, int, int]:
        _check_length(token, "shardIterator", 1, 2048)
        try:
            arn, partition, offset, issued = json.loads(base64.urlsafe_b64decode(token))
            if not (isinstance(partition, int) and isinstance(offset, int)):
                raise TypeError("bad iterator")
        except Exception:
            raise validation(f"Invalid ShardIterator: {shown(token)}") from None
        if time.time() - issued > _ITERATOR_TTL:
            raise DynamoError("ExpiredIteratorException", "Iterator expired")
        return await self._stream(arn), partition, offset

    async def _reader(self, spec: TableSpec, partition: int, offset: int) -> LogReader:
        """A reader of the shard positioned at ``offset`` (kept between calls)."""
        cached = self._readers.get((spec.name, partition))
        reader = await self._borrow(spec, partition)
        if cached is None or cached[1] != offset:
            await reader.seek(partition, offset)
        return reader

    async def GetShardIterator(self, body: Body) -> Body:
        kind = body.get("ShardIteratorType")
        if kind not in _KINDS:
            raise _constraint(
                kind,
                "shardIteratorType",
                "Member must satisfy enum value set: [TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, "
                "AFTER_SEQUENCE_NUMBER]",
            )
        shard = _check_length(body.get("ShardId"), "shardId", 28, 65)
        seq_text = body.get("SequenceNumber")
        by_number = kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
        if seq_text is not None:
            _check_length(seq_text, "sequenceNumber", 21, 40)
            if not by_number:
                raise validation(
                    f"Invalid request: SequenceNumber is not allowed with {kind} iterators"
                )
            if not seq_text.isdigit():
                raise validation(f"Invalid SequenceNumber: {seq_text}")
        elif by_number:
            raise validation(f"Invalid request: {kind} iterators need a SequenceNumber")
        stream = await self._stream(body.get("StreamArn"))
        spec = stream.spec
        p = _partition_of(shard)
        topic_exists, n = await self._topic(spec)
        if p is None or shard != _shard_id(stream, p) or not 0 <= p < n:
            raise _not_found(f"Shard: {shard} in Stream: {stream.arn}")
        seq = 0
        if by_number:
            assert isinstance(seq_text, str)
            seq = int(seq_text)
            if seq <= stream.start or (stream.end is not None and seq > stream.end):
                raise validation(f"Invalid SequenceNumber {seq_text} for this shard")
        if not topic_exists:
            return {"ShardIterator": self._iterator(stream, p, 0)}
        async with self._lock:
            reader = await self._borrow(spec, p)
            try:
                begin = (await reader.beginning_offsets())[p]
                end = (await reader.end_offsets())[p]
                if kind == "TRIM_HORIZON" and stream.start == 0:
                    offset = begin
                elif kind == "TRIM_HORIZON":  # a later stream: its shards start after the last
                    offset = await _position_after(reader, p, stream.start, begin, end)
                elif kind == "LATEST":
                    offset = end
                else:
                    # the first record at (or past) the number; sequence numbers are the
                    # table's, so the shard need not hold it: it reads on from there
                    after = kind == "AFTER_SEQUENCE_NUMBER"
                    offset = await _position_after(reader, p, seq if after else seq - 1, begin, end)
                    if begin > 0 and await self._trimmed_before(reader, p, seq, begin, end):
                        raise _trimmed()
            finally:
                await self._give_back(spec, p, reader)
        return {"ShardIterator": self._iterator(stream, p, offset)}

    async def _trimmed_before(
        self, reader: LogReader, p: int, seq: int, begin: int, end: int
    ) -> bool:
        """Whether records of the shard up to ``seq`` may have been deleted by the log's
        retention (its first offset is past 0): ``seq`` is older than its oldest record
        kept, or none is kept and ``seq`` was published (DynamoDB's trim horizon)."""
        oldest = await _record_at(reader, p, begin, end)
        if oldest is None:
            return seq <= await self._relay_done()
        return seq < _seq_of(oldest)

    async def _relay_done(self) -> int:
        key = relay_done_key(self.service.namespace)
        return int((await self.service.store.read_meta((key,))).get(key, "0") or 0)

    async def GetRecords(self, body: Body) -> Body:
        stream, p, offset = await self._decode_iterator(body.get("ShardIterator"))
        spec = stream.spec
        limit = _limit(body, 1000, 1000)
        if not (await self._topic(spec))[0]:
            return {"Records": [], "NextShardIterator": self._iterator(stream, p, offset)}
        async with self._lock:
            reader = await self._reader(spec, p, offset)
            try:
                end = (await reader.end_offsets())[p]
                records = []
                if offset < end:
                    records = await reader.fetch(max_records=limit, timeout=0.2)
                    # a gap (Kafka's markers take offsets), or records deleted by retention
                    # since the iterator was made: DynamoDB's "trimmed" for the latter
                    if (not records or records[0].offset > offset) and offset < (
                        await reader.beginning_offsets()
                    )[p]:
                        raise _trimmed()
                position = await reader.position(p)
            except BaseException:
                await reader.close()
                raise
            self._readers[(spec.name, p)] = (reader, position)
        region = self.service.region
        out: list[Body] = []
        closed = False
        size = 0
        for rec in records:
            decoded = decode_record(rec.value)
            n = decoded.sequence_number
            if n <= stream.start:
                continue  # an earlier stream's record
            if stream.end is not None and n > stream.end:
                closed = True  # a later stream's: this (closed) shard ends before it
                break
            size += decoded.size_bytes
            if out and size > _MAX_BYTES:
                position = rec.offset  # the rest in the next call, as DynamoDB's 1 MB
                break
            shaped = decoded.to_dynamodb_json(region=region)
            shaped["dynamodb"]["SequenceNumber"] = _seq(n)
            identity = shaped.pop("userIdentity", None)
            if identity is not None:
                shaped["userIdentity"] = {
                    "PrincipalId": identity["principalId"],
                    "Type": identity["type"],
                }
            out.append(shaped)
        if (
            stream.end is not None
            and not closed
            and position >= end
            and await self._relay_done() >= stream.end
        ):
            closed = True  # read to the end, and everything of the stream was published
        if closed:
            return {"Records": out}  # a closed shard read to its end: no next iterator
        return {"Records": out, "NextShardIterator": self._iterator(stream, p, position)}

    async def close(self) -> None:
        for reader, _ in self._readers.values():
            await reader.close()
        self._readers.clear()
