"""DynamoDB's import API on the endpoint: ``ImportTable``, ``DescribeImport`` and
``ListImports``: a new table, created as ``CreateTable`` creates one, filled from every
object under an S3 prefix (any S3-compatible server: the endpoint and credentials are
found the usual AWS way, ``AWS_ENDPOINT_URL_S3`` first, as for exports).

As in DynamoDB, the call answers at once with the import ``IN_PROGRESS`` and the table
``CREATING``; the import runs in the background of the serving process, writing the items
through the ordinary write path (change records, indexes and TTL as for any write; as
DynamoDB's, it uses none of a provisioned table's capacity), and its description (a job
of :mod:`streamkit.server._jobs`) gets its counters only when it ends. The objects are
read one after the other; the first line (in ION, the first value) of an object that
cannot become an item abandons the rest of that object (one error) and the import ends
``FAILED`` with
``ItemValidationError``, its table kept with what was imported; a source that cannot be
read (no such bucket) fails the import and its table is deleted. ``DYNAMODB_JSON``,
``ION`` (each top-level value an ``{Item:{...}}`` struct, in DynamoDB's Ion mapping) and
``CSV``, uncompressed, ``GZIP`` or ``ZSTD`` (with the ``zstandard`` package). An import
whose process stopped is read as ``FAILED`` (``ProcessStopped``) a minute later; its
table keeps what was written.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import gzip
import io
import json
import re
import time
import uuid
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import zstandard

from streamkit.exceptions import TableNotFound, ThroughputExceeded
from streamkit.server._batch import check_write_keys
from streamkit.server._convert import PREPARED, item_from_dynamodb_json, shown
from streamkit.server._errors import DynamoError, validation
from streamkit.server._exports import _failure_code
from streamkit.server._jobs import Jobs, public
from streamkit.server._table_checks import _Shape
from streamkit.storage._capacity import free
from streamkit.storage._spec import table_name_problems

if TYPE_CHECKING:
    from streamkit.server._ops import Service
    from streamkit.storage._spec import TableSpec

__all__ = ("IMPORT_OPERATIONS",)

Body = dict[str, Any]
Item = dict[str, Any]
_TOKEN_SECONDS = 8 * 3600  # DynamoDB: a ClientToken holds for 8 hours after its import ends
_MAX_RUNNING = 50  # DynamoDB's concurrent imports per account
_BATCH = 25  # items per write (BatchWriteItem's)
_READ, _READ_BYTES = 500, 4 << 20  # what a worker-thread read hands over at most
_VALIDATION_FAILED = "ItemValidationError"
_FORMATS = ("DYNAMODB_JSON", "ION", "CSV")
_COMPRESSIONS = ("GZIP", "ZSTD", "NONE")
_DELIMITERS = ",;:|\t "  # CsvOptions.Delimiter's pattern: [,;:|\t ]
# DynamoDB's Ion mapping of sets: annotation -> (set type, the Ion types of its members)
_ION_SETS = {
    "$dynamodb_SS": ("SS", ("string",)),
    "$dynamodb_NS": ("NS", ("decimal", "int")),
    "$dynamodb_BS": ("BS", ("blob",)),
}
_ION_TEXT = 8 << 20  # the longest Ion text value read (a 400 KB item's string, escaped)
_ION_DEPTH = 40  # deeper than an item may be (32): the item's own check says so first
_BUCKET = re.compile(r"^[a-z0-9A-Z]+[\.\-\w]*[a-z0-9A-Z]+$")
_OWNER = re.compile(r"[0-9]{12}")
_TOKEN = re.compile(r"^[^\$]+$")
_NEXT_TOKEN = re.compile(r"(?:[0-9a-f]{16})+")
_CREATION = (  # TableCreationParameters: what CreateTable is given
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "SSESpecification",
    "GlobalSecondaryIndexes",
)


_JOBS = Jobs("import", "ImportStatus")


# --- the request -----------------------------------------------------------------------
def _check(body: Body) -> tuple[str, Body, str, str, Body | None, Body]:
    """ImportTable's request checked as DynamoDB checks it (every shape error in one
    message, then the values): its ClientToken, S3BucketSource, InputFormat,
    InputCompressionType, CSV options and TableCreationParameters."""
    shape = _Shape()
    token = body.get("ClientToken")  # boto3 always invents one; DynamoDB needs it
    _string(shape, token, "clientToken", None, _TOKEN, required=True)
    source = body.get("S3BucketSource")
    if source is None:
        shape.add(None, "s3BucketSource", "Member must not be null")
    elif isinstance(source, dict):
        _string(
            shape, source.get("S3Bucket"), "s3BucketSource.s3Bucket", 255, _BUCKET, required=True
        )
        _string(shape, source.get("S3KeyPrefix"), "s3BucketSource.s3KeyPrefix", 1024)
        _string(shape, source.get("S3BucketOwner"), "s3BucketSource.s3BucketOwner", 12, _OWNER)
    fmt = body.get("InputFormat")
    shape.enum(fmt, "inputFormat", _FORMATS)
    compression = body.get("InputCompressionType")
    if compression is not None:
        shape.enum(compression, "inputCompressionType", _COMPRESSIONS)
    params = body.get("TableCreationParameters")
    if params is None:
        shape.add(None, "tableCreationParameters", "Member must not be null")
    shape.done()
    if not isinstance(source, dict):
        raise validation("S3BucketSource must be an object")
    if not isinstance(params, dict):
        raise validation("TableCreationParameters must be an object")
    options = body.get("InputFormatOptions")
    if options is not None and not isinstance(options, dict):
        raise validation("InputFormatOptions must be an object")
    csv_options = (options or {}).get("Csv")
    if csv_options is not None and fmt != "CSV":
        raise validation(
            "One or more parameter values were invalid: InputFormatOptions.Csv can only be "
            f"given with the CSV InputFormat, not {fmt}"
        )
    if csv_options is not None:
        _check_csv(csv_options)
    return str(token), source, str(fmt), str(compression or "NONE"), csv_options, params


def _string(
    shape: _Shape,
    value: Any,
    member: str,
    most: int | None,
    pattern: re.Pattern[str] | None = None,
    *,
    required: bool = False,
) -> None:
    """A string member's constraints (DynamoDB's words)."""
    if value is None:
        if required:
            shape.add(None, member, "Member must not be null")
    elif not isinstance(value, str) or (most is not None and len(value) > most):
        shape.add(shown(value), member, f"Member must have length less than or equal to {most}")
    elif pattern is not None and not pattern.fullmatch(value):
        shape.add(
            value, member, f"Member must satisfy regular expression pattern: {pattern.pattern}"
        )


def _check_csv(options: Any) -> None:
    if not isinstance(options, dict):
        raise validation("InputFormatOptions.Csv must be an object")
    delimiter = options.get("Delimiter")
    if delimiter is not None and (
        not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter not in _DELIMITERS
    ):
        raise validation(
            f"Invalid InputFormatOptions.Csv.Delimiter: {shown(delimiter)}: one of "
            "comma, semicolon, colon, pipe, tab or space"
        )
    headers = options.get("HeaderList")
    if headers is not None and (
        not isinstance(headers, list)
        or not 1 <= len(headers) <= 255
        or any(not isinstance(h, str) or not h or '"' in h or "," in h for h in headers)
    ):
        raise validation(
            "Invalid InputFormatOptions.Csv.HeaderList: 1 to 255 non-empty names without "
            "quotes or commas"
        )


def _key_types(params: Body) -> dict[str, str]:
    """The key attributes of the table and its indexes, with their types (a CSV column
    of one is typed by it; every other column is a string)."""
    indexes = params.get("GlobalSecondaryIndexes") or ()
    schemas = [params.get("KeySchema"), *(ix.get("KeySchema") for ix in indexes)]
    names = {k.get("AttributeName") for ks in schemas for k in ks or () if isinstance(k, dict)}
    return {
        d["AttributeName"]: d["AttributeType"]
        for d in params.get("AttributeDefinitions") or ()
        if isinstance(d, dict) and d.get("AttributeName") in names
    }


async def ImportTable(service: Service, body: Body) -> Body:
    token, source, fmt, compression, csv_options, params = _check(body)
    name = params.get("TableName")
    # as DynamoDB: the token only conflicts over the table; any other change returns the
    # import it started (and once that import's table exists, CreateTable refuses first)
    now = time.time()
    same = next(
        (
            d
            for d in reversed(await _JOBS.all(service))
            if d.get("ClientToken") == token and now - d.get("EndTime", now) < _TOKEN_SECONDS
        ),
        None,
    )
    if same is not None:
        if same["TableCreationParameters"].get("TableName") != name:
            raise DynamoError(
                "ImportConflictException",
                "Duplicate request detected with conflicting parameters",
            )
        if same["ImportStatus"] == "IN_PROGRESS" or not await _exists(service, name):
            return {"ImportTableDescription": public(same)}
    if len(service.creating) >= _MAX_RUNNING:
        raise DynamoError(
            "LimitExceededException",
            f"Too many imports in progress: at most {_MAX_RUNNING} at a time",
        )
    await service.CreateTable({k: params[k] for k in _CREATION if k in params})
    spec = await service.store.spec(str(name))
    import_id = f"{int(now * 1000):014d}-{uuid.uuid4().hex[:8]}"
    service.creating[spec.name] = import_id
    table_arn = service.arn(spec.name)
    desc: Body = {
        "ImportArn": f"{table_arn}/import/{import_id}",
        "ImportStatus": "IN_PROGRESS",
        "TableArn": table_arn,
        "TableId": str(uuid.UUID(int=spec.table_id)),
        "ClientToken": token,
        "S3BucketSource": source,
        "ErrorCount": 0,
        "CloudWatchLogGroupArn": (
            f"arn:aws:logs:{service.region}:{service.account}:log-group:/aws-dynamodb/imports:*"
        ),
        "InputFormat": fmt,
        "InputCompressionType": compression,
        "TableCreationParameters": params,
        "StartTime": now,
        "ProcessedItemCount": 0,
        "ImportedItemCount": 0,
    }
    if body.get("InputFormatOptions") is not None:
        desc["InputFormatOptions"] = body["InputFormatOptions"]
    try:
        await _JOBS.add(service, import_id, desc)
    except BaseException:
        service.creating.pop(spec.name, None)
        raise
    parse: Parse = _ion_items if fmt == "ION" else _json_items
    if fmt == "CSV":
        parse = _csv_items(csv_options or {}, _key_types(params))
    _JOBS.start(service, import_id, lambda: _run(service, import_id, desc, spec, parse))
    return {"ImportTableDescription": public(desc)}


async def _exists(service: Service, name: Any) -> bool:
    try:
        await service.store.spec(str(name))
    except TableNotFound:
        return False
    return True


# --- reading the objects ---------------------------------------------------------------
class _Unusable(Exception):
    """A line (or the object itself) that cannot become an item: the rest of its object
    is abandoned."""


Parse = Callable[[Iterator[bytes]], Generator[Item, None, None]]


def _json_items(lines: Iterator[bytes]) -> Generator[Item, None, None]:
    """DYNAMODB_JSON: one ``{"Item": {...}}`` a line; blank lines are no items."""
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise _Unusable(f"not a JSON object: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("Item"), dict):
            raise _Unusable("a JSON object without an Item member")
        yield item_from_dynamodb_json(obj["Item"])


class _Stream(io.RawIOBase):
    """Lines as a raw stream (for the Ion reader). An error reading them is kept: the
    reader's C extension reports any as its own ``IERR_READ_ERROR``."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self.lines = lines
        self.line, self.at = b"", 0
        self.error: Exception | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.at == len(self.line):
            try:
                self.line, self.at = next(self.lines), 0
            except StopIteration:
                return 0
            except Exception as e:
                self.error = e
                raise
        n = min(len(buffer), len(self.line) - self.at)
        buffer[:n] = self.line[self.at : self.at + n]
        self.at += n
        return n


def _ion_items(lines: Iterator[bytes]) -> Generator[Item, None, None]:
    """ION (text, as DynamoDB writes it: one ``$ion_1_0 {Item:{...}}`` a line; or binary):
    each top-level value a struct whose ``Item`` is the item."""
    from amazon.ion import simpleion
    from amazon.ion.exceptions import IonException

    ion = _Ion()
    stream = _Stream(lines)
    try:
        values = simpleion.load(
            io.BufferedReader(stream, 1 << 16),
            single_value=False,
            parse_eagerly=False,
            text_buffer_size_limit=_ION_TEXT,
        )
        for value in values:
            item: Any = value.get("Item") if ion.kind(value) == "struct" else None
            if ion.kind(item) != "struct" or value.ion_annotations or item.ion_annotations:
                raise _Unusable("an Ion value that is not a struct with an Item struct")
            yield item_from_dynamodb_json({k: ion.attribute(v, 1) for k, v in item.items()})
    except IonException as e:
        if stream.error is not None:  # reading the object failed, not parsing it
            raise stream.error from None
        raise _Unusable(f"not Ion: {e}") from None


class _Ion:
    """DynamoDB's Ion mapping read back: an Ion value as a DynamoDB JSON AttributeValue
    (which the item's checks then read as any request's)."""

    def __init__(self) -> None:
        from amazon.ion.simple_types import IonPyNull

        self.null = IonPyNull

    def kind(self, value: Any) -> str:
        """An Ion value's type (``struct``, ``list``, ``decimal``, ...; any null: ``null``)."""
        if value is None or isinstance(value, self.null):
            return "null"
        kind = getattr(value, "ion_type", None)
        return "" if kind is None else str(kind.name).lower()

    def attribute(self, value: Any, depth: int) -> dict[str, Any]:
        kind = self.kind(value)
        annotations = [a.text for a in getattr(value, "ion_annotations", ())]
        if depth > _ION_DEPTH:
            raise _Unusable(f"Ion values nested deeper than {_ION_DEPTH} levels")
        if kind == "list" and len(annotations) == 1 and annotations[0] in _ION_SETS:
            tag, types = _ION_SETS[annotations[0]]
            if any(self.kind(m) not in types or m.ion_annotations for m in value):
                raise _Unusable(f"a {annotations[0]} list with a member that is not {types[0]}")
            return {tag: [self.attribute(m, depth + 1)[tag[0]] for m in value]}
        if annotations:
            raise _Unusable(f"an Ion {kind} annotated {'::'.join(annotations)}")
        if kind == "null":
            return {"NULL": True}
        if kind == "string":
            return {"S": str(value)}
        if kind in ("decimal", "int"):
            return {"N": str(value)}
        if kind == "blob":
            return {"B": base64.b64encode(value).decode("ascii")}
        if kind == "bool":
            return {"BOOL": bool(value)}
        if kind == "list":
            return {"L": [self.attribute(v, depth + 1) for v in value]}
        if kind == "struct":
            return {"M": {k: self.attribute(v, depth + 1) for k, v in value.items()}}
        raise _Unusable(f"an Ion {kind or type(value).__name__}, which no DynamoDB type reads")


def _csv_items(options: Body, types: dict[str, str]) -> Parse:
    """CSV: the object's first line names the columns (unless HeaderList does); a key
    attribute's column (the table's or an index's) is typed by its definition, every other
    one is a string, and an empty value is no attribute."""

    def parse(lines: Iterator[bytes]) -> Generator[Item, None, None]:
        text = (line.decode("utf-8") for line in lines)
        header: list[str] | None = options.get("HeaderList")
        try:
            for row in csv.reader(text, delimiter=options.get("Delimiter", ","), strict=True):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if header is None:
                    header = row
                    continue
                if len(row) != len(header):
                    raise _Unusable(f"{len(row)} values for {len(header)} columns")
                yield item_from_dynamodb_json(
                    {
                        column: {types.get(column, "S"): value}
                        for column, value in zip(header, row, strict=True)
                        if value or column in types
                    }
                )
        except csv.Error as e:
            raise _Unusable(f"not CSV: {e}") from None

    return parse


class _Raw(io.RawIOBase):
    """An S3 object's body as a raw stream (to read it a line at a time)."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Object:
    """One S3 object's items, read in a worker thread a few at a time: each with its key,
    checked against the table; ``size``: the uncompressed bytes read."""

    def __init__(
        self,
        client: Any,
        source: Body,
        key: str,
        compression: str,
        parse: Parse,
        spec: TableSpec,
    ) -> None:
        self.client, self.source, self.key = client, source, key
        self.compression = compression  # GZIP, ZSTD or NONE
        self.parse, self.spec = parse, spec
        self.size = 0
        self.items: Generator[Item, None, None] | None = None

    def _lines(self) -> Iterator[bytes]:
        args = {"Bucket": self.source["S3Bucket"], "Key": self.key}
        if self.source.get("S3BucketOwner"):
            args["ExpectedBucketOwner"] = self.source["S3BucketOwner"]
        body = self.client.get_object(**args)["Body"]
        stream: Any = io.BufferedReader(_Raw(body), 1 << 16)
        if self.compression == "GZIP":
            stream = gzip.GzipFile(fileobj=stream)
        elif self.compression == "ZSTD":
            stream = io.BufferedReader(
                zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True),
                1 << 16,
            )
        try:
            for line in stream:
                self.size += len(line)
                yield line
        except zstandard.ZstdError as e:
            raise _Unusable(f"not ZSTD data: {e}") from None
        except (OSError, EOFError, zlib.error) as e:
            if isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile):
                raise  # reading S3 failed: the import fails
            raise _Unusable(f"not GZIP data: {e}") from None
        finally:
            body.close()

    def read(self) -> tuple[list[tuple[Item, tuple[bytes, bytes]]], str | None, bool]:
        """The next items with their keys, why the object was abandoned (or None), and
        whether the object is done."""
        if self.items is None:
            self.items = self.parse(self._lines())
        out, start = [], self.size
        try:
            for item in self.items:
                check_write_keys(self.spec, [item], [])
                out.append((item, self.spec.key.extract(item)))
                if len(out) == _READ or self.size - start > _READ_BYTES:
                    return out, None, False
        except (_Unusable, DynamoError, ValueError) as e:
            self.items.close()  # the rest of the object is not read
            line = e.message if isinstance(e, DynamoError) else str(e)
            return out, f"s3://{self.source['S3Bucket']}/{self.key}: {line}", True
        return out, None, True


def _keys(client: Any, source: Body) -> list[str]:
    """The objects whose key starts with the prefix (a ``dir/`` marker is no object)."""
    args = {"Bucket": source["S3Bucket"], "Prefix": source.get("S3KeyPrefix") or ""}
    if source.get("S3BucketOwner"):
        args["ExpectedBucketOwner"] = source["S3BucketOwner"]
    return [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(**args)
        for o in page.get("Contents", ())
        if not o["Key"].endswith("/")
    ]


def _client(bucket: str) -> Any:
    from streamkit.history._export import _S3

    return _S3(f"s3://{bucket}", bucket, "").client


class _Writer:
    """Items written 25 at a time through the table's ordinary batch write (a key seen
    twice in a batch is written in the next: duplicates overwrite, in order)."""

    def __init__(self, service: Service, table: str) -> None:
        self.table = service._table(table)
        self.puts: list[Item] = []
        self.keys: set[tuple[bytes, bytes]] = set()
        self.written = 0

    async def put(self, item: Item, key: tuple[bytes, bytes]) -> None:
        if key in self.keys or len(self.puts) == _BATCH:
            await self.flush()
        self.puts.append(item)
        self.keys.add(key)

    async def flush(self) -> None:
        while self.puts:
            try:
                await self.table.batch_write(puts=self.puts)
            except ThroughputExceeded as e:  # a provisioned table: wait for its capacity
                await asyncio.sleep(max(e.retry_after, 0.01))
                continue
            self.written += len(self.puts)
            self.puts, self.keys = [], set()


async def _run(service: Service, import_id: str, desc: Body, spec: TableSpec, parse: Parse) -> None:
    PREPARED.set(None)  # the request's parsed-body cache is not the import's
    free()  # as DynamoDB's, an import uses none of the table's provisioned capacity
    source = desc["S3BucketSource"]
    writer = _Writer(service, spec.name)
    errors, size, first = 0, 0, None
    try:
        client = await asyncio.to_thread(_client, source["S3Bucket"])
        for key in await asyncio.to_thread(_keys, client, source):
            compression = desc["InputCompressionType"]
            obj = _Object(client, source, key, compression, parse, spec)
            done = False
            while not done:
                items, abandoned, done = await asyncio.to_thread(obj.read)
                for item, item_key in items:
                    await writer.put(item, item_key)
                if abandoned is not None:
                    errors += 1
                    first = first or abandoned
            size += obj.size
        await writer.flush()
    except Exception as e:  # the source could not be read, or the table went away
        desc = {
            **desc,
            "ImportStatus": "FAILED",
            "FailureCode": _failure_code(e),
            "FailureMessage": str(e)[:1000],
        }
        # as DynamoDB: an import that could not read its source leaves no table
        with contextlib.suppress(TableNotFound):
            await service.store.delete_table(spec.name)
    else:
        desc = {**desc, "ImportStatus": "COMPLETED"}
        if errors:
            desc["ImportStatus"] = "FAILED"
            desc["FailureCode"] = _VALIDATION_FAILED
            desc["FailureMessage"] = (
                f"{errors} object(s) had a line that could not be imported (the rest of "
                f"such an object was not read); the first: {first}"
            )[:1000]
    desc["EndTime"] = time.time()
    desc["ErrorCount"] = errors
    desc["ProcessedItemCount"] = writer.written + errors
    desc["ImportedItemCount"] = writer.written
    if size:  # as DynamoDB: absent until something was read
        desc["ProcessedSizeBytes"] = size
    try:
        await _JOBS.save(service, import_id, desc)
    finally:
        if service.creating.get(spec.name) == import_id:
            del service.creating[spec.name]


# --- describing and listing ------------------------------------------------------------
def _check_import_arn(service: Service, arn: Any) -> str:
    """An import ARN as DynamoDB checks it: not an import's, ValidationException; not an
    ARN of ours, AccessDeniedException; returns the import id."""
    if arn is None:
        raise validation(
            "1 validation error detected: Value null at 'importArn' failed to satisfy "
            "constraint: Member must not be null"
        )
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    resource = parts[5] if len(parts) == 6 and parts[0] == "arn" else ""
    table, _, import_id = resource.removeprefix("table/").partition("/import/")
    if not resource.startswith("table/") or not import_id or table_name_problems(table):
        raise validation(f"Invalid Import ARN: {shown(arn)}")
    if parts[1:5] != service.arn("x").split(":", 5)[1:5]:  # another region or account
        raise DynamoError("AccessDeniedException", "Access is denied")
    return import_id


async def DescribeImport(service: Service, body: Body) -> Body:
    arn = body.get("ImportArn")
    desc = await _JOBS.load(service, _check_import_arn(service, arn))
    if desc is None or desc.get("ImportArn") != arn:
        raise DynamoError("ImportNotFoundException", f"Import not found: {arn}")
    return {"ImportTableDescription": public(desc)}


_SUMMARY = ("ImportArn", "ImportStatus", "TableArn", "S3BucketSource",  # ImportSummary's
            "CloudWatchLogGroupArn", "InputFormat", "StartTime", "EndTime")  # fmt: skip


def _next_token(arn: str) -> str:
    """A NextToken as DynamoDB's look (hex, in 16-digit groups, at least 112 digits)."""
    text = arn.encode().hex()
    return text + "0" * (max(112, -(-len(text) // 16) * 16) - len(text))


async def ListImports(service: Service, body: Body) -> Body:
    table_arn = body.get("TableArn")
    if table_arn is not None and not isinstance(table_arn, str):
        raise validation(f"Invalid TableArn: {shown(table_arn)}")
    size = body.get("PageSize", 25)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 25:
        raise validation(
            f"1 validation error detected: Value '{shown(size)}' at 'pageSize' failed to "
            "satisfy constraint: Member must have value between 1 and 25"
        )
    imports = [
        d for d in await _JOBS.all(service) if table_arn is None or d["TableArn"] == table_arn
    ]
    start = body.get("NextToken")
    if start is not None:
        arns = [_next_token(d["ImportArn"]) for d in imports]
        if not isinstance(start, str) or not _NEXT_TOKEN.fullmatch(start) or start not in arns:
            raise validation(f"Invalid NextToken: {shown(start)}")
        imports = imports[arns.index(start) + 1 :]
    page = imports[:size]
    out: Body = {"ImportSummaryList": [{k: d[k] for k in _SUMMARY if k in d} for d in page]}
    if len(imports) > size:
        out["NextToken"] = _next_token(page[-1]["ImportArn"])
    return out


IMPORT_OPERATIONS = {
    "ImportTable": ImportTable,
    "DescribeImport": DescribeImport,
    "ListImports": ListImports,
}
