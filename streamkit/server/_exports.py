"""DynamoDB's export API on the endpoint: ``ExportTableToPointInTime``, ``DescribeExport``
and ``ListExports``, run by streamkit's own export (``history/_export.py``) to the S3
bucket named (any S3-compatible server: the endpoint and credentials are found the usual
AWS way, ``AWS_ENDPOINT_URL_S3`` first), as ``DYNAMODB_JSON`` or ``ION``.

As in DynamoDB, the call answers at once with the export ``IN_PROGRESS``; the export runs
in the background of the serving process and its description (a job of
:mod:`streamkit.server._jobs`) turns ``COMPLETED`` with its manifest, item count and
size, or ``FAILED`` with the reason; an export whose process stopped is read as
``FAILED`` (``ProcessStopped``) a minute later: run it again.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import TableNotFound
from streamkit.server._convert import shown
from streamkit.server._errors import DynamoError, validation
from streamkit.server._jobs import Jobs, public

if TYPE_CHECKING:
    from streamkit.server._ops import Service

__all__ = ("EXPORT_OPERATIONS",)

Body = dict[str, Any]
_MIN_INCREMENTAL = 15 * 60  # seconds: DynamoDB's shortest incremental export period
_FORMATS = {"DYNAMODB_JSON": "dynamodb-json", "ION": "ion"}  # ExportFormat -> export_table's
# what a ClientToken's request is compared on (DynamoDB: all of it)
_REQUEST = (
    "TableArn",
    "S3Bucket",
    "S3BucketOwner",
    "S3Prefix",
    "S3SseAlgorithm",
    "S3SseKmsKeyId",
    "ExportFormat",
    "ExportType",
    "ExportTime",
    "IncrementalExportSpecification",
)


def _fingerprint(body: Body) -> str:
    return json.dumps({k: body.get(k) for k in _REQUEST}, sort_keys=True, default=str)


def _time(value: Any, member: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise validation(f"Invalid {member}: {shown(value)}")
    return datetime.fromtimestamp(float(value), UTC)


_JOBS = Jobs("export", "ExportStatus")


async def ExportTableToPointInTime(service: Service, body: Body) -> Body:
    from streamkit.history._archive import archive_window

    table_arn = body.get("TableArn")
    bucket = body.get("S3Bucket")
    if not isinstance(table_arn, str) or not table_arn:
        raise validation(
            "1 validation error detected: Value null at 'tableArn' failed to "
            "satisfy constraint: Member must not be null"
        )
    if not isinstance(bucket, str) or not bucket:
        raise validation(
            "1 validation error detected: Value null at 's3Bucket' failed to "
            "satisfy constraint: Member must not be null"
        )
    prefix = body.get("S3Prefix", "")
    if not isinstance(prefix, str) or ("S3Prefix" in body and not prefix):
        raise validation(
            f"1 validation error detected: Value '{shown(prefix)}' at 's3Prefix' failed to "
            "satisfy constraint: Member must have length greater than or equal to 1"
        )
    token = body.get("ClientToken")
    if token is not None and (not isinstance(token, str) or not token or "$" in token):
        raise validation(
            f"1 validation error detected: Value '{shown(token)}' at 'clientToken' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: ^[^\\$]+$"
        )
    if token is not None:
        # as DynamoDB: the token is looked up first; the same one with any other
        # parameter is a conflict, the same request is the export it started
        same = await _by_token(service, token)
        if same is not None:
            if same["_request"] != _fingerprint(body):
                raise DynamoError(
                    "ExportConflictException",
                    "Duplicate request detected with conflicting parameters for the same "
                    "client token",
                )
            return {"ExportDescription": public(same)}
    fmt = body.get("ExportFormat", "DYNAMODB_JSON")
    if not isinstance(fmt, str) or fmt not in _FORMATS:
        raise validation(
            f"1 validation error detected: Value '{shown(fmt)}' at 'exportFormat' failed to "
            "satisfy constraint: Member must satisfy enum value set: [DYNAMODB_JSON, ION]"
        )
    kind = body.get("ExportType", "FULL_EXPORT")
    if kind not in ("FULL_EXPORT", "INCREMENTAL_EXPORT"):
        raise validation(
            f"1 validation error detected: Value '{shown(kind)}' at 'exportType' failed to "
            "satisfy constraint: Member must satisfy enum value set: "
            "[FULL_EXPORT, INCREMENTAL_EXPORT]"
        )
    name = table_arn.rsplit(":table/", 1)[-1] if ":table/" in table_arn else ""
    try:
        spec = await service.store.spec(name) if name else None
    except TableNotFound:
        spec = None
    if spec is None or service.arn(spec.name) != table_arn:
        raise DynamoError("TableNotFoundException", f"Table not found: {table_arn}")
    window = archive_window(spec)
    if window is None:
        raise DynamoError(
            "PointInTimeRecoveryUnavailableException",
            f"Point in time recovery is not enabled for table '{spec.name}'",
        )
    since: datetime | None = None
    until: datetime | None = None
    view = "NEW_AND_OLD_IMAGES"
    if kind == "INCREMENTAL_EXPORT":
        inc = body.get("IncrementalExportSpecification")
        if not isinstance(inc, dict) or "ExportFromTime" not in inc:
            raise validation(
                "IncrementalExportSpecification with ExportFromTime is required for an "
                "INCREMENTAL_EXPORT"
            )
        since = _time(inc["ExportFromTime"], "ExportFromTime")
        if inc.get("ExportToTime") is not None:
            until = _time(inc["ExportToTime"], "ExportToTime")
        view = inc.get("ExportViewType", view)
        if view not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            raise validation(f"Invalid ExportViewType: {shown(view)}")
        span = (until.timestamp() if until is not None else time.time()) - since.timestamp()
        if span < _MIN_INCREMENTAL:
            raise DynamoError(
                "InvalidExportTimeException",
                "Difference between export period from time and export period to time must "
                "be at least 15 minutes",
            )
        if body.get("ExportTime") is not None:
            raise validation("ExportTime cannot be given for an INCREMENTAL_EXPORT")
    elif body.get("ExportTime") is not None:
        until = _time(body["ExportTime"], "ExportTime")
    for instant in (since, until):
        if instant is not None and not window[0] <= instant.timestamp() * 1000 <= window[1]:
            raise DynamoError(
                "InvalidExportTimeException",
                "ExportTime must be within the point in time recovery window: "
                f"{datetime.fromtimestamp(window[0] / 1000, UTC).isoformat()} to now",
            )
    now = time.time()
    export_id = f"{int(now * 1000):013d}-{uuid.uuid4().hex[:8]}"
    arn = f"{table_arn}/export/{export_id}"
    desc: Body = {
        "ExportArn": arn,
        "ExportStatus": "IN_PROGRESS",
        "StartTime": now,
        "TableArn": table_arn,
        "TableId": str(uuid.UUID(int=spec.table_id)),
        "S3Bucket": bucket,
        "ExportFormat": fmt,
        "ExportType": kind,
        "ExportTime": (until.timestamp() if until is not None else now),
    }
    if prefix:
        desc["S3Prefix"] = prefix
    if token is not None:
        desc["ClientToken"] = token
    desc["_request"] = _fingerprint(body)
    if kind == "INCREMENTAL_EXPORT":
        assert since is not None
        desc["IncrementalExportSpecification"] = {
            "ExportFromTime": since.timestamp(),
            "ExportToTime": (until.timestamp() if until is not None else now),
            "ExportViewType": view,
        }
    await _JOBS.add(service, export_id, desc)
    to = f"s3://{bucket}/{prefix.strip('/')}" if prefix.strip("/") else f"s3://{bucket}"
    _JOBS.start(
        service,
        export_id,
        lambda: _run(service, export_id, desc, spec.name, to, since, until, view),
    )
    return {"ExportDescription": public(desc)}


async def _by_token(service: Service, token: str) -> Body | None:
    """The export a ClientToken started (a FAILED one does not hold its token)."""
    return next(
        (
            d
            for d in await _JOBS.all(service)
            if d.get("ClientToken") == token and d.get("ExportStatus") != "FAILED"
        ),
        None,
    )


async def _run(
    service: Service,
    export_id: str,
    desc: Body,
    table: str,
    to: str,
    since: datetime | None,
    until: datetime | None,
    view: str,
) -> None:
    from streamkit.history._export import export_table

    try:
        result = await export_table(
            service.store,
            table,
            to=to,
            format=_FORMATS[desc["ExportFormat"]],
            since=since,
            until=until,
            export_id=export_id,
            export_arn=desc["ExportArn"],
            new_image_only=view == "NEW_IMAGE",
            table_arn=desc["TableArn"],
        )
    except Exception as e:  # a storage, S3 or configuration error: the export failed
        desc = {
            **desc,
            "ExportStatus": "FAILED",
            "EndTime": time.time(),
            "FailureCode": _failure_code(e),
            "FailureMessage": str(e)[:1000],
        }
    else:
        manifest = f"AWSDynamoDB/{result.export_id}/manifest-summary.json"
        prefix = str(desc.get("S3Prefix", "")).strip("/")
        desc = {
            **desc,
            "ExportStatus": "COMPLETED",
            "EndTime": (result.finished or datetime.now(UTC)).timestamp(),
            "ExportManifest": f"{prefix}/{manifest}" if prefix else manifest,
            "ItemCount": result.item_count,
            "BilledSizeBytes": sum(f["sizeBytes"] for f in result.files),
        }
    await _JOBS.save(service, export_id, desc)


def _failure_code(e: BaseException) -> str:
    """DynamoDB's FailureCode: an S3 error's code prefixed ``S3`` (``S3NoSuchBucket``),
    else the error's kind."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return f"S3{code}"
    return type(e).__name__


def _check_export_arn(service: Service, arn: Any) -> str:
    """An export ARN as DynamoDB checks it: not an ARN of ours, AccessDeniedException;
    not an export's, ValidationException; returns the export id."""
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn":
        raise validation(f"Invalid Export ARN: {shown(arn)}")
    ours = service.arn("x").split(":", 5)
    if parts[1:5] != ours[1:5]:  # another partition, service, region or account
        raise DynamoError("AccessDeniedException", "Access is denied")
    resource = parts[5]
    if not resource.startswith("table/") or "/export/" not in resource:
        raise validation(f"Invalid Export ARN: {arn}")
    return resource.rsplit("/export/", 1)[1]


async def DescribeExport(service: Service, body: Body) -> Body:
    arn = body.get("ExportArn")
    desc = await _JOBS.load(service, _check_export_arn(service, arn))
    if desc is None or desc.get("ExportArn") != arn:
        raise DynamoError("ExportNotFoundException", f"Export not found: {arn}")
    return {"ExportDescription": public(desc)}


async def ListExports(service: Service, body: Body) -> Body:
    table_arn = body.get("TableArn")
    limit = body.get("MaxResults", 25)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 25:
        raise validation(
            f"1 validation error detected: Value '{shown(limit)}' at 'maxResults' failed to "
            "satisfy constraint: Member must have value between 1 and 25"
        )
    start = body.get("NextToken")
    exports = [
        d for d in await _JOBS.all(service) if table_arn is None or d["TableArn"] == table_arn
    ]
    if start is not None:
        arns = [d["ExportArn"] for d in exports]
        if start not in arns:
            raise validation(f"Invalid NextToken: {shown(start)}")
        exports = exports[arns.index(start) + 1 :]
    page = exports[:limit]
    out: Body = {
        "ExportSummaries": [
            {
                "ExportArn": d["ExportArn"],
                "ExportStatus": d["ExportStatus"],
                "ExportType": d["ExportType"],
            }
            for d in page
        ]
    }
    if len(exports) > limit:
        out["NextToken"] = page[-1]["ExportArn"]
    return out


EXPORT_OPERATIONS = {
    "ExportTableToPointInTime": ExportTableToPointInTime,
    "DescribeExport": DescribeExport,
    "ListExports": ListExports,
}
