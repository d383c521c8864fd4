"""Export: a table as of an instant (full), or the changes between two instants
(incremental), to a directory or any S3-compatible store, as DynamoDB JSON, Amazon Ion,
Avro or Parquet, with a manifest.

Layout (DynamoDB's own)::

    <prefix>/AWSDynamoDB/<export id>/_started                 empty, before the data
    <prefix>/AWSDynamoDB/<export id>/data/<n>-<random>.json.gz | .ion.gz | .avro | .parquet
    <prefix>/AWSDynamoDB/<export id>/manifest-files.json     one JSON line per data file
    <prefix>/AWSDynamoDB/<export id>/manifest-files.md5      its base64 MD5
    <prefix>/AWSDynamoDB/<export id>/manifest-summary.md5    the summary's base64 MD5
    <prefix>/AWSDynamoDB/<export id>/manifest-summary.json   written last: its presence
                                                             means the export is complete
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from streamkit.exceptions import ValidationError
from streamkit.records._values import item_to_dynamodb_json

if TYPE_CHECKING:
    from streamkit.records import ChangeRecord
    from streamkit.storage._store import Store

__all__ = (
    "FORMATS",
    "Destination",
    "ExportResult",
    "encode_rows",
    "export_table",
    "open_destination",
)

FORMATS = ("dynamodb-json", "ion", "avro", "parquet")
_EXTENSIONS = {
    "dynamodb-json": ".json.gz",
    "ion": ".ion.gz",
    "avro": ".avro",
    "parquet": ".parquet",
}
_OUTPUT_FORMATS = {
    "dynamodb-json": "DYNAMODB_JSON",
    "ion": "ION",
    "avro": "AVRO",
    "parquet": "PARQUET",
}
ITEMS_PER_FILE = 100_000


def _md5(data: bytes) -> bytes:
    """A manifest's ``.md5`` companion, as DynamoDB writes it: the base64 MD5 digest."""
    return base64.b64encode(hashlib.md5(data).digest())


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


# --- destinations -------------------------------------------------------------------------
class Destination:
    """Where files go: ``file:///dir`` or ``s3://bucket/prefix``."""

    url: str

    def put(self, key: str, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def location(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


class _Directory(Destination):
    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path

    def put(self, key: str, data: bytes) -> None:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(target)


class _S3(Destination):
    def __init__(self, url: str, bucket: str, prefix: str) -> None:
        from streamkit._optional import needs

        with needs("s3"):
            import boto3
            from botocore.config import Config

        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # endpoint and credentials the usual AWS way (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL,
        # the environment, profiles, instance roles); checksums only when S3 requires them,
        # which S3-compatible servers (S3Proxy, MinIO, ...) all accept
        self.client = boto3.client(
            "s3",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def put(self, key: str, data: bytes) -> None:
        full = f"{self.prefix}/{key}" if self.prefix else key
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, full)


def open_destination(to: str) -> Destination:
    """Parse and check ``file:///dir`` or ``s3://bucket[/prefix]``."""
    if not isinstance(to, str):
        raise ValidationError(f"to= must be a URL string, not {type(to).__name__}")
    parts = urlsplit(to)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValidationError(f"to={to!r}: a file URL is file:///absolute/directory")
        return _Directory(to, Path(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValidationError(f"to={to!r}: an S3 URL is s3://bucket[/prefix]")
        return _S3(to, parts.netloc, parts.path)
    raise ValidationError(f"to={to!r}: export to file:///dir or s3://bucket/prefix")


# --- encoders -------------------------------------------------------------------------------
_FULL_AVRO = {
    "type": "record",
    "name": "Item",
    "namespace": "streamkit.export",
    "doc": "One item; attribute values in DynamoDB JSON.",
    "fields": [
        {"name": "keys", "type": "string"},
        {"name": "item", "type": "string"},
    ],
}
_CHANGE_AVRO = {
    "type": "record",
    "name": "Change",
    "namespace": "streamkit.export",
    "doc": "An item's change over the exported period (or one change record); DynamoDB JSON.",
    "fields": [
        {"name": "keys", "type": "string"},
        {"name": "new_image", "type": ["null", "string"], "default": None},
        {"name": "old_image", "type": ["null", "string"], "default": None},
        {"name": "write_timestamp_micros", "type": "long"},
        {"name": "event", "type": ["null", "string"], "default": None},
        {"name": "sequence_number", "type": ["null", "long"], "default": None},
    ],
}


# DynamoDB's Ion export: N as an Ion decimal, B as a blob, S, BOOL, NULL, L and M as
# string, bool, null, list and struct, and the sets as lists with these annotations
_ION_SETS = {"SS": "$dynamodb_SS", "NS": "$dynamodb_NS", "BS": "$dynamodb_BS"}
_ION_DIGITS = Context(prec=40)  # more than a number's 38: normalize() never rounds
_ITEM_PARTS = ("Item", "Keys", "NewImage", "OldImage")


def _ion_number(text: str) -> Decimal:
    """A number as DynamoDB writes it in Ion: without trailing zeros (600 is ``6d2``)."""
    return Decimal(text).normalize(_ION_DIGITS)


def _ion_value(av: Mapping[str, Any]) -> Any:
    """A DynamoDB JSON AttributeValue as the value amazon.ion writes in DynamoDB's mapping."""
    ((tag, v),) = av.items()
    if tag in ("S", "BOOL"):
        return v
    if tag == "N":
        return _ion_number(v)
    if tag == "B":
        return base64.b64decode(v)
    if tag == "NULL":
        return None
    if tag == "M":
        return _ion_struct(v)
    if tag == "L":
        return [_ion_value(x) for x in v]
    from amazon.ion.core import IonType
    from amazon.ion.simple_types import IonPyList

    members: list[Any] = list(v)  # SS: the strings
    if tag == "NS":
        members = [_ion_number(x) for x in v]
    elif tag == "BS":
        members = [base64.b64decode(x) for x in v]
    return IonPyList.from_value(IonType.LIST, members, annotations=(_ION_SETS[tag],))


def _ion_struct(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _ion_value(attributes[name]) for name in sorted(attributes)}


def _ion_lines(rows: Sequence[Mapping[str, Any]]) -> Iterable[bytes]:
    """Each row as DynamoDB writes it: one line, an Ion version marker and then the row
    (``$ion_1_0 {Item:{...}}``); a row's other members (``Metadata``) as they are."""
    from amazon.ion import simpleion

    for r in rows:
        row = {k: _ion_field(k, v) for k, v in r.items()}
        yield simpleion.dumps(row, binary=False).encode() + b"\n"


def _ion_field(name: str, value: Any) -> Any:
    """One field of a row in Ion: items as Ion structs, an incremental row's ``Metadata``
    numbers as Ion integers, the rest as they are."""
    if name in _ITEM_PARTS:
        return _ion_struct(value)
    if name == "Metadata":
        return {k: int(v["N"]) for k, v in value.items()}
    return value


def encode_rows(fmt: str, rows: Sequence[Mapping[str, Any]], *, changes: bool) -> bytes:
    """One data file. ``rows``: ``{"Item": ...}`` (full) or the incremental shape
    ``{"Metadata": {"WriteTimestampMicros": {"N": ...}}, "Keys", "NewImage"?, "OldImage"?}`` (plus
    optional ``event`` / ``sequence_number``), attribute values in DynamoDB JSON."""
    if fmt in ("dynamodb-json", "ion"):
        lines = (
            (_dumps(r).encode() + b"\n" for r in rows)
            if fmt == "dynamodb-json"
            else _ion_lines(rows)
        )
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            for line in lines:
                gz.write(line)
        return buf.getvalue()
    flat = [_flat(r, changes=changes) for r in rows]
    if fmt == "avro":
        import fastavro

        out = io.BytesIO()
        schema = fastavro.parse_schema(_CHANGE_AVRO if changes else _FULL_AVRO)
        fastavro.writer(out, schema, flat, codec="deflate")
        return out.getvalue()
    import pyarrow as pa
    import pyarrow.parquet as pq

    if changes:
        table = pa.table(
            {
                "keys": pa.array([f["keys"] for f in flat], pa.string()),
                "new_image": pa.array([f["new_image"] for f in flat], pa.string()),
                "old_image": pa.array([f["old_image"] for f in flat], pa.string()),
                "write_timestamp_micros": pa.array(
                    [f["write_timestamp_micros"] for f in flat], pa.int64()
                ),
                "event": pa.array([f["event"] for f in flat], pa.string()),
                "sequence_number": pa.array([f["sequence_number"] for f in flat], pa.int64()),
            }
        )
    else:
        table = pa.table(
            {
                "keys": pa.array([f["keys"] for f in flat], pa.string()),
                "item": pa.array([f["item"] for f in flat], pa.string()),
            }
        )
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _flat(r: Mapping[str, Any], *, changes: bool) -> dict[str, Any]:
    if not changes:
        return {"keys": _dumps(r["Keys"]), "item": _dumps(r["Item"])}
    return {
        "keys": _dumps(r["Keys"]),
        "new_image": None if "NewImage" not in r else _dumps(r["NewImage"]),
        "old_image": None if "OldImage" not in r else _dumps(r["OldImage"]),
        "write_timestamp_micros": int(r["Metadata"]["WriteTimestampMicros"]["N"]),
        "event": r.get("event"),
        "sequence_number": r.get("sequence_number"),
    }


def change_row(record: ChangeRecord, *, with_event: bool = False) -> dict[str, Any]:
    """One change record in the incremental-export shape (DynamoDB's: the write time a
    DynamoDB JSON number, ``{"WriteTimestampMicros": {"N": "..."}}``)."""
    row: dict[str, Any] = {
        "Metadata": {"WriteTimestampMicros": {"N": str(record.created_at_ms * 1000)}},
        "Keys": item_to_dynamodb_json(dict(record.keys)),
    }
    if record.new_image is not None:
        row["NewImage"] = item_to_dynamodb_json(dict(record.new_image))
    if record.old_image is not None:
        row["OldImage"] = item_to_dynamodb_json(dict(record.old_image))
    if with_event:
        row["event"] = record.event_name
        row["sequence_number"] = record.sequence_number
    return row


# --- the export -----------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        export_id: the export's id (its directory name).
        location: the URL of the export's directory.
        manifest: the URL of ``manifest-summary.json`` (written last).
        format, export_type: "dynamodb-json" | "ion" | "avro" | "parquet"; "FULL_EXPORT" or
            "INCREMENTAL_EXPORT".
        item_count: items (full) or changed items (incremental) written.
        files: per data file: key, item count, size, md5 (base64), sha256 (hex).
        started, finished: when it ran.
    """

    export_id: str
    location: str
    manifest: str
    format: str
    export_type: str
    item_count: int
    files: list[dict[str, Any]] = field(default_factory=list)
    started: datetime | None = None
    finished: datetime | None = None


def _check(fmt: object, since: object, until: object) -> tuple[int | None, int | None]:
    from streamkit.history._archive import to_ms

    if fmt not in FORMATS:
        raise ValidationError(f"format={fmt!r} must be one of {', '.join(FORMATS)}")
    since_ms = None if since is None else to_ms("since", since)
    until_ms = None if until is None else to_ms("until", until)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise ValidationError("until= must be after since=")
    if until_ms is not None and until_ms > time.time_ns() // 1_000_000 + 1:
        raise ValidationError("until= is in the future")
    return since_ms, until_ms


async def _net(records: AsyncIterable[ChangeRecord]) -> list[dict[str, Any]]:
    """Each changed item's net change: its image before the period and after it (the
    records are read as they come: memory holds two per changed item, not the range)."""
    first: dict[str, ChangeRecord] = {}
    last: dict[str, ChangeRecord] = {}
    async for r in records:
        k = _dumps(item_to_dynamodb_json(dict(r.keys)))
        first.setdefault(k, r)
        last[k] = r
    rows = []
    for k, r in last.items():
        row = change_row(r)  # the last change: its time and its new image ...
        before = first[k].old_image  # ... and the image before the first
        row.pop("OldImage", None)
        if before is not None:
            row["OldImage"] = item_to_dynamodb_json(dict(before))
        if "NewImage" in row or "OldImage" in row:
            rows.append(row)
    return rows


async def export_table(
    store: Store,
    table: str,
    *,
    to: str,
    format: str = "dynamodb-json",
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    export_id: str | None = None,
    export_arn: str | None = None,
    new_image_only: bool = False,
    table_arn: str | None = None,
) -> ExportResult:
    """Export ``table`` (see :meth:`streamkit.App.export`). ``export_id`` / ``export_arn``
    name it (the endpoint's ExportTableToPointInTime gives its own); ``new_image_only``:
    an incremental export's rows without their ``OldImage`` (DynamoDB's ``NEW_IMAGE``
    export view)."""
    from streamkit.history._archive import changes_between, items_at

    since_ms, until_ms = _check(format, since, until)
    spec = await store.spec(table)  # TableNotFound before anything is written
    dest = open_destination(to)
    started = datetime.now(UTC)
    if export_id is None:
        export_id = f"{int(started.timestamp() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    base = f"AWSDynamoDB/{export_id}"
    incremental = since is not None
    files: list[dict[str, Any]] = []
    count = 0

    async def flush(rows: list[dict[str, Any]]) -> None:
        nonlocal count
        if not files:  # as DynamoDB's: an empty _started object marks an export under way
            await asyncio.to_thread(dest.put, f"{base}/_started", b"")
        data = await asyncio.to_thread(encode_rows, format, rows, changes=incremental)
        key = f"{base}/data/{len(files):05d}-{uuid.uuid4().hex[:8]}{_EXTENSIONS[format]}"
        await asyncio.to_thread(dest.put, key, data)
        files.append(
            {
                "dataFileS3Key": key,
                "itemCount": len(rows),
                "sizeBytes": len(data),
                "md5Checksum": base64.b64encode(hashlib.md5(data).digest()).decode(),
                "etag": hashlib.md5(data).hexdigest(),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
        count += len(rows)
        if progress is not None:
            progress(count, None)

    if incremental:
        assert since is not None
        rows = await _net(changes_between(store, table, since, until))
        if new_image_only:  # a deleted item's row keeps its Keys, as DynamoDB's
            for row in rows:
                row.pop("OldImage", None)
        for i in range(0, len(rows), ITEMS_PER_FILE):
            await flush(rows[i : i + ITEMS_PER_FILE])
    else:
        pending: list[dict[str, Any]] = []
        key_names = spec.key.names
        async for chunk in items_at(store, table, until, chunk=5000):
            for item in chunk:
                ddb = item_to_dynamodb_json(item)
                pending.append(
                    {"Item": ddb, "Keys": {n: ddb[n] for n in key_names}}
                    if format in ("avro", "parquet")
                    else {"Item": ddb}
                )
            if len(pending) >= ITEMS_PER_FILE:
                await flush(pending[:ITEMS_PER_FILE])
                pending = pending[ITEMS_PER_FILE:]
        if pending or not files:
            await flush(pending)
    lines = "".join(_dumps(f) + "\n" for f in files).encode()
    await asyncio.to_thread(dest.put, f"{base}/manifest-files.json", lines)
    await asyncio.to_thread(dest.put, f"{base}/manifest-files.md5", _md5(lines))
    finished = datetime.now(UTC)
    summary = {
        "version": "2023-08-01",
        "exportArn": export_arn or f"streamkit:export:{table}:{export_id}",
        "tableName": table,
        "tableArn": table_arn or f"streamkit:table:{table}",
        "tableId": str(uuid.UUID(int=spec.table_id)),
        "s3Bucket": getattr(dest, "bucket", None),
        "s3Prefix": getattr(dest, "prefix", None) or None,
        "s3SseAlgorithm": None,
        "s3SseKmsKeyId": None,
        "startTime": started.isoformat(),
        "endTime": finished.isoformat(),
        "exportTime": (
            datetime.fromtimestamp(until_ms / 1000, UTC).isoformat()
            if until_ms is not None
            else started.isoformat()
        ),
        "exportFromTime": None
        if since_ms is None
        else datetime.fromtimestamp(since_ms / 1000, UTC).isoformat(),
        "exportType": "INCREMENTAL_EXPORT" if incremental else "FULL_EXPORT",
        "outputFormat": _OUTPUT_FORMATS[format],
        "itemCount": count,
        "billedSizeBytes": sum(f["sizeBytes"] for f in files),
        "manifestFilesS3Key": f"{base}/manifest-files.json",
        "manifestFilesSha256": hashlib.sha256(lines).hexdigest(),
    }
    summary_bytes = json.dumps(summary, indent=2).encode()
    await asyncio.to_thread(dest.put, f"{base}/manifest-summary.md5", _md5(summary_bytes))
    await asyncio.to_thread(dest.put, f"{base}/manifest-summary.json", summary_bytes)
    return ExportResult(
        export_id=export_id,
        location=dest.location(base),
        manifest=dest.location(f"{base}/manifest-summary.json"),
        format=format,
        export_type=summary["exportType"],
        item_count=count,
        files=files,
        started=started,
        finished=finished,
    )
