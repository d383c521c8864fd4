"""The DynamoDB Streams API, served from the change log: a table's stream is its topic,
each partition a shard (never closed), sequence numbers are streamkit's."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import TYPE_CHECKING, Any

from streamkit._names import SEQUENCE_HEADER, table_topic
from streamkit.records._avro import decode_record
from streamkit.server._convert import shown
from streamkit.server._errors import DynamoError, validation

if TYPE_CHECKING:
    from streamkit.log import LogReader
    from streamkit.server._ops import Service
    from streamkit.storage._spec import TableSpec

__all__ = ("StreamsService",)

Body = dict[str, Any]
_ITERATOR_TTL = 15 * 60  # seconds, as DynamoDB Streams' shard iterators


def _shard_id(spec: TableSpec, partition: int) -> str:
    created = int(spec.created_at.timestamp() * 1000) if spec.created_at else 0
    return f"shardId-{created:020d}-{partition:08x}"


def _partition_of(shard: str) -> int:
    try:
        return int(shard.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        raise validation(f"Invalid ShardId: {shard}") from None


def _seq(n: int) -> str:
    """A sequence number as DynamoDB Streams writes them: digits, at least 21 of them
    (the SDKs refuse shorter ones)."""
    return f"{n:021d}"


def _not_found(what: str) -> DynamoError:
    return DynamoError("ResourceNotFoundException", f"Requested resource not found: {what}")


class StreamsService:
    """ListStreams, DescribeStream, GetShardIterator, GetRecords."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._readers: dict[tuple[str, int], tuple[LogReader, int]] = {}
        self._lock = asyncio.Lock()

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

    async def _stream(self, arn: Any) -> TableSpec:
        if not isinstance(arn, str) or "/stream/" not in arn:
            raise validation(f"Invalid StreamArn: {shown(arn)}")
        table = arn.split(":table/", 1)[-1].split("/stream/", 1)[0]
        spec = self.service.store.known(table)
        if spec is None:
            from streamkit.exceptions import TableNotFound

            try:
                spec = await self.service.store.spec(table)
            except TableNotFound:
                raise _not_found(f"Stream: {arn} not found") from None
        if spec.stream is None or self.service.stream_arn(spec) != arn:
            raise _not_found(f"Stream: {arn} not found")
        return spec

    async def _partitions(self, spec: TableSpec) -> int:
        log = self.service.log
        await log.open()
        described = await log.describe_topic(table_topic(self.service.namespace, spec.name))
        return self.service.partitions if described is None else described.partitions

    async def ListStreams(self, body: Body) -> Body:
        table = body.get("TableName")
        if table is not None and not isinstance(table, str):
            raise validation(f"Invalid TableName: {shown(table)}")
        names = await self.service.store.table_names() if table is None else [table]
        streams = []
        for name in names:
            spec = await self.service.store.spec(name)
            if spec.stream is not None:
                streams.append(
                    {
                        "StreamArn": self.service.stream_arn(spec),
                        "TableName": name,
                        "StreamLabel": self.service.stream_label(spec),
                    }
                )
        return {"Streams": streams}

    async def DescribeStream(self, body: Body) -> Body:
        spec = await self._stream(body.get("StreamArn"))
        limit = body.get("Limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise validation("Limit must be between 1 and 100")
        start = body.get("ExclusiveStartShardId")
        n = await self._partitions(spec)
        shards = []
        for p in range(n):
            sid = _shard_id(spec, p)
            if start is not None and sid <= start:
                continue
            shards.append(
                {"ShardId": sid, "SequenceNumberRange": {"StartingSequenceNumber": _seq(1)}}
            )
        desc: Body = {
            "StreamArn": self.service.stream_arn(spec),
            "StreamLabel": self.service.stream_label(spec),
            "StreamStatus": "ENABLED",
            "StreamViewType": spec.stream.value if spec.stream else "KEYS_ONLY",
            "CreationRequestDateTime": spec.created_at.timestamp() if spec.created_at else 0,
            "TableName": spec.name,
            "KeySchema": (await self.service.describe(spec))["KeySchema"],
            "Shards": shards[:limit],
        }
        if len(shards) > limit:
            desc["LastEvaluatedShardId"] = shards[limit - 1]["ShardId"]
        return {"StreamDescription": desc}

    def _iterator(self, spec: TableSpec, partition: int, offset: int) -> str:
        raw = json.dumps(
            [self.service.stream_arn(spec), partition, offset, int(time.time())],
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(raw.encode()).decode()

    async def _decode_iterator(self, token: Any) -> tuple[TableSpec, int, int]:
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
        key = (spec.name, partition)
        cached = self._readers.pop(key, None)
        if cached is not None:
            reader, at = cached
            if at != offset:
                await reader.seek(partition, offset)
            return reader
        reader = self.service.log.reader(
            table_topic(self.service.namespace, spec.name), partitions=[partition]
        )
        await reader.seek(partition, offset)
        return reader

    async def GetShardIterator(self, body: Body) -> Body:
        spec = await self._stream(body.get("StreamArn"))
        shard = body.get("ShardId")
        if not isinstance(shard, str):
            raise validation("ShardId is required")
        p = _partition_of(shard)
        if not 0 <= p < await self._partitions(spec):
            raise _not_found(f"Shard: {shard} in Stream: {body.get('StreamArn')}")
        kind = body.get("ShardIteratorType")
        topic = table_topic(self.service.namespace, spec.name)
        log = self.service.log
        await log.open()
        if await log.describe_topic(topic) is None:
            return {"ShardIterator": self._iterator(spec, p, 0)}
        reader = log.reader(topic, partitions=[p])
        try:
            if kind == "TRIM_HORIZON":
                offset = (await reader.beginning_offsets())[p]
            elif kind == "LATEST":
                offset = (await reader.end_offsets())[p]
            elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
                seq_text = body.get("SequenceNumber")
                if not isinstance(seq_text, str) or not seq_text.isdigit():
                    raise validation("SequenceNumber must be a string of digits")
                offset = await self._find(reader, p, int(seq_text), kind == "AFTER_SEQUENCE_NUMBER")
            else:
                raise validation(
                    f"1 validation error detected: Value '{kind}' at 'shardIteratorType' failed "
                    "to satisfy constraint: Member must satisfy enum value set: [TRIM_HORIZON, "
                    "LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER]"
                )
        finally:
            await reader.close()
        return {"ShardIterator": self._iterator(spec, p, offset)}

    async def _find(self, reader: LogReader, p: int, seq: int, after: bool) -> int:
        """The offset of the record with this sequence number (or just after it)."""
        end = (await reader.end_offsets())[p]
        await reader.seek_to_beginning(p)
        while await reader.position(p) < end:
            for rec in await reader.fetch(max_records=1000, timeout=0.5):
                s = next((int(v) for k, v in rec.headers if k == SEQUENCE_HEADER), None)
                if s is None:
                    s = decode_record(rec.value).sequence_number
                if s == seq:
                    return rec.offset + 1 if after else rec.offset
                if s > seq:
                    break
            else:
                continue
            break
        raise validation(f"Invalid SequenceNumber {seq} for this shard")

    async def GetRecords(self, body: Body) -> Body:
        spec, p, offset = await self._decode_iterator(body.get("ShardIterator"))
        limit = body.get("Limit", 1000)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise validation("Limit must be between 1 and 1000")
        topic = table_topic(self.service.namespace, spec.name)
        log = self.service.log
        await log.open()
        if await log.describe_topic(topic) is None:
            return {"Records": [], "NextShardIterator": self._iterator(spec, p, offset)}
        async with self._lock:
            reader = await self._reader(spec, p, offset)
            try:
                end = (await reader.end_offsets())[p]
                records = []
                if offset < end:
                    records = await reader.fetch(max_records=limit, timeout=0.2)
                position = await reader.position(p)
            except BaseException:
                await reader.close()
                raise
            self._readers[(spec.name, p)] = (reader, position)
        region = self.service.region
        out = []
        for rec in records:
            shaped = decode_record(rec.value).to_dynamodb_json(region=region)
            stream = shaped["dynamodb"]
            stream["SequenceNumber"] = _seq(int(stream["SequenceNumber"]))
            identity = shaped.pop("userIdentity", None)
            if identity is not None:
                shaped["userIdentity"] = {
                    "PrincipalId": identity["principalId"],
                    "Type": identity["type"],
                }
            out.append(shaped)
        return {"Records": out, "NextShardIterator": self._iterator(spec, p, position)}

    async def close(self) -> None:
        for reader, _ in self._readers.values():
            await reader.close()
        self._readers.clear()
