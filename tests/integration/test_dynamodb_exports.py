"""DynamoDB's export API through the endpoint (ExportTableToPointInTime, DescribeExport,
ListExports) to a real S3-compatible server (S3Proxy; ``make test`` starts it and sets
STREAMKIT_TEST_S3), driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests import s3_env
from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _eventually, _table, served

__all__ = ("served",)

pytestmark = pytest.mark.skipif(not os.environ.get(s3_env.S3_ENV), reason=s3_env.SKIP_REASON)


def _bucket() -> tuple[Any, str]:
    s3 = s3_env.client()
    bucket = f"sk-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


def _described(c: Any, arn: str) -> dict[str, Any]:
    return dict(c.describe_export(ExportArn=arn)["ExportDescription"])


def _rows(s3: Any, bucket: str, manifest_key: str) -> tuple[dict[str, Any], list[Any]]:
    summary = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    files_key = summary["manifestFilesS3Key"]
    prefix = manifest_key[: -len("AWSDynamoDB/" + manifest_key.split("AWSDynamoDB/", 1)[1])]
    lines = s3.get_object(Bucket=bucket, Key=prefix + files_key)["Body"].read().splitlines()
    rows = []
    for line in lines:
        key = json.loads(line)["dataFileS3Key"]
        data = s3.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        rows += [json.loads(x) for x in gzip.decompress(data).splitlines()]
    return summary, rows


def test_a_full_export_lands_in_the_bucket_as_dynamodbs(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
    s3, bucket = _bucket()
    c = served.client()
    _table(c)
    for i in range(30):
        c.put_item(TableName="Users", Item={"id": {"S": f"k{i:02d}"}, "v": {"N": str(i)}})
    arn = c.describe_table(TableName="Users")["Table"]["TableArn"]
    out = c.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="exports", ClientToken="first"
    )["ExportDescription"]
    assert out["ExportStatus"] in ("IN_PROGRESS", "COMPLETED")
    assert out["ExportArn"].startswith(arn + "/export/")
    assert (out["ExportType"], out["ExportFormat"], out["S3Bucket"]) == (
        "FULL_EXPORT",
        "DYNAMODB_JSON",
        bucket,
    )
    _eventually(lambda: _described(c, out["ExportArn"])["ExportStatus"] == "COMPLETED")
    done = _described(c, out["ExportArn"])
    assert done["ItemCount"] == 30 and done["BilledSizeBytes"] > 0
    assert done["ExportManifest"].startswith("exports/AWSDynamoDB/")
    summary, rows = _rows(s3, bucket, done["ExportManifest"])
    assert summary["itemCount"] == 30 and summary["exportArn"] == out["ExportArn"]
    assert sorted(int(r["Item"]["v"]["N"]) for r in rows) == list(range(30))
    # the same ClientToken: the same export, not a second one
    again = c.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="exports", ClientToken="first"
    )["ExportDescription"]
    assert again["ExportArn"] == out["ExportArn"]
    code, _ = _error(
        lambda: c.export_table_to_point_in_time(
            TableArn=arn, S3Bucket=bucket, S3Prefix="elsewhere", ClientToken="first"
        )
    )
    assert code == "ExportConflictException"
    listed = c.list_exports(TableArn=arn)["ExportSummaries"]
    assert listed == [
        {"ExportArn": out["ExportArn"], "ExportStatus": "COMPLETED", "ExportType": "FULL_EXPORT"}
    ]


def test_an_incremental_export_holds_the_changes_of_its_period(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
    s3, bucket = _bucket()
    c = served.client()
    _table(c)
    for i in range(5):
        c.put_item(TableName="Users", Item={"id": {"S": f"k{i}"}, "v": {"N": "0"}})
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    c.put_item(TableName="Users", Item={"id": {"S": "k1"}, "v": {"N": "1"}})
    c.delete_item(TableName="Users", Key={"id": {"S": "k2"}})
    c.put_item(TableName="Users", Item={"id": {"S": "new"}, "v": {"N": "9"}})
    time.sleep(0.05)
    arn = c.describe_table(TableName="Users")["Table"]["TableArn"]
    out = c.export_table_to_point_in_time(
        TableArn=arn,
        S3Bucket=bucket,
        ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification={
            "ExportFromTime": since,
            "ExportToTime": datetime.now(UTC),
            "ExportViewType": "NEW_IMAGE",
        },
    )["ExportDescription"]
    _eventually(lambda: _described(c, out["ExportArn"])["ExportStatus"] == "COMPLETED")
    done = _described(c, out["ExportArn"])
    _, rows = _rows(s3, bucket, done["ExportManifest"])
    got = {r["Keys"]["id"]["S"]: r.get("NewImage") for r in rows}
    assert got == {
        "k1": {"id": {"S": "k1"}, "v": {"N": "1"}},
        "k2": None,  # deleted in the period: its keys, no image
        "new": {"id": {"S": "new"}, "v": {"N": "9"}},
    }
    assert all("OldImage" not in r for r in rows)  # the NEW_IMAGE view


def test_export_errors_are_dynamodbs(served: Served) -> None:
    c = served.client()
    _table(c)
    arn = c.describe_table(TableName="Users")["Table"]["TableArn"]
    missing = arn.replace("/Users", "/Nope")
    assert (
        _error(lambda: c.export_table_to_point_in_time(TableArn=missing, S3Bucket="b"))[0]
        == "TableNotFoundException"
    )
    assert (
        _error(
            lambda: c.export_table_to_point_in_time(TableArn=arn, S3Bucket="b", ExportFormat="ION")
        )[0]
        == "ValidationException"
    )
    assert (
        _error(
            lambda: c.export_table_to_point_in_time(
                TableArn=arn, S3Bucket="b", ExportTime=datetime(2000, 1, 1, tzinfo=UTC)
            )
        )[0]
        == "InvalidExportTimeException"
    )
    c.update_continuous_backups(
        TableName="Users", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    assert (
        _error(lambda: c.export_table_to_point_in_time(TableArn=arn, S3Bucket="b"))[0]
        == "PointInTimeRecoveryUnavailableException"
    )
    assert _error(lambda: c.describe_export(ExportArn=arn + "/export/123-abc"))[0] == (
        "ExportNotFoundException"
    )
    assert c.list_exports()["ExportSummaries"] == []
