"""DynamoDB's export API through the endpoint (ExportTableToPointInTime, DescribeExport,
ListExports) to a real S3-compatible server (S3Proxy; ``make test`` starts it and sets
STREAMKIT_TEST_S3), driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from amazon.ion import simpleion
from amazon.ion.core import IonType
from boto3.dynamodb.types import Binary, TypeSerializer

import streamkit as sk
from streamkit.history._export import export_table
from tests import s3_env
from tests.integration.test_dynamodb_api import Served, enable_pitr
from tests.integration.test_dynamodb_conformance import _error, _eventually, _table, served
from tests.integration.test_dynamodb_imports import ITEMS, SCHEMA

__all__ = ("served",)

pytestmark = pytest.mark.skipif(not os.environ.get(s3_env.S3_ENV), reason=s3_env.SKIP_REASON)


def _bucket() -> tuple[Any, str]:
    s3 = s3_env.client()
    bucket = f"sk-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


def _described(c: Any, arn: str) -> dict[str, Any]:
    return dict(c.describe_export(ExportArn=arn)["ExportDescription"])


def _files(s3: Any, bucket: str, manifest_key: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """An export's summary and its data files (key: uncompressed content)."""
    summary = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    files_key = summary["manifestFilesS3Key"]
    prefix = manifest_key[: -len("AWSDynamoDB/" + manifest_key.split("AWSDynamoDB/", 1)[1])]
    lines = s3.get_object(Bucket=bucket, Key=prefix + files_key)["Body"].read().splitlines()
    files = {}
    for line in lines:
        key = json.loads(line)["dataFileS3Key"]
        data = s3.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        files[key] = gzip.decompress(data)
    return summary, files


def _rows(s3: Any, bucket: str, manifest_key: str) -> tuple[dict[str, Any], list[Any]]:
    summary, files = _files(s3, bucket, manifest_key)
    return summary, [json.loads(x) for data in files.values() for x in data.splitlines()]


_ION_SETS = {"$dynamodb_SS": IonType.STRING, "$dynamodb_NS": IonType.DECIMAL}


def _from_ion(v: Any) -> Any:
    """An Ion value read by DynamoDB's documented mapping, as boto3's resource types."""
    annotations = [a.text for a in v.ion_annotations]
    if annotations:
        (annotation,) = annotations
        assert v.ion_type is IonType.LIST
        assert annotation in ("$dynamodb_SS", "$dynamodb_NS", "$dynamodb_BS")
        assert all(m.ion_type is _ION_SETS.get(annotation, IonType.BLOB) for m in v)
        return {_from_ion(m) for m in v}
    kind = v.ion_type
    if kind is IonType.NULL:
        return None
    if kind is IonType.BLOB:
        return Binary(bytes(v))
    if kind is IonType.LIST:
        return [_from_ion(x) for x in v]
    if kind is IonType.STRUCT:
        return {k: _from_ion(x) for k, x in v.items()}
    assert kind in (IonType.STRING, IonType.DECIMAL, IonType.BOOL), kind
    return {IonType.STRING: str, IonType.DECIMAL: Decimal, IonType.BOOL: bool}[kind](v)


def _ion_rows(data: bytes) -> list[Any]:
    """A data file's rows: each line an Ion version marker and one value, as DynamoDB's."""
    lines = data.splitlines()
    assert all(line.startswith(b"$ion_1_0 {") for line in lines)
    return [
        simpleion.loads(line, text_buffer_size_limit=1 << 20, single_value=True) for line in lines
    ]


def _put_every_type(c: Any) -> None:
    """Table ``Every``: items of every type (sets, nested documents, empty strings and
    binaries, numbers of 38 digits and 1E-130, a 380 KB string)."""
    c.create_table(TableName="Every", BillingMode="PAY_PER_REQUEST", **SCHEMA)
    enable_pitr(c, "Every")  # (an export reads a table's point-in-time archive)
    s = TypeSerializer()
    for item in ITEMS:
        c.put_item(TableName="Every", Item={k: s.serialize(v) for k, v in item.items()})


def test_a_full_export_lands_in_the_bucket_as_dynamodbs(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
    s3, bucket = _bucket()
    c = served.client()
    _table(c)
    enable_pitr(c, "Users")
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
    assert (summary["tableArn"], summary["s3Bucket"], summary["s3Prefix"]) == (
        arn,
        bucket,
        "exports",
    )
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


def test_an_incremental_export_needs_fifteen_minutes(served: Served) -> None:
    """As DynamoDB: an incremental export's period is at least 15 minutes."""
    c = served.client()
    _table(c)
    enable_pitr(c, "Users")
    time.sleep(0.05)
    arn = c.describe_table(TableName="Users")["Table"]["TableArn"]
    code, msg = _error(
        lambda: c.export_table_to_point_in_time(
            TableArn=arn,
            S3Bucket="b",
            ExportType="INCREMENTAL_EXPORT",
            IncrementalExportSpecification={
                "ExportFromTime": datetime.now(UTC) - timedelta(seconds=1),
                "ExportToTime": datetime.now(UTC),
                "ExportViewType": "NEW_IMAGE",
            },
        )
    )
    assert code == "InvalidExportTimeException"
    assert msg.startswith("Difference between export period")


async def test_an_incremental_export_of_new_images_keeps_deleted_keys(tmp_path: Path) -> None:
    """The NEW_IMAGE view (``new_image_only``): each changed item's new image, a deleted
    item's keys, never an OldImage (the export the endpoint runs, to a directory here)."""
    app = sk.App(storage=f"sqlite:///{tmp_path}/t.db", log=f"local://{tmp_path}/log")
    try:
        t = await app.create_table("Users", partition_key="id")
        for i in range(5):
            await t.put({"id": f"k{i}", "v": 0})
        await asyncio.sleep(0.01)
        since = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await t.put({"id": "k1", "v": 1})
        await t.delete({"id": "k2"})
        await t.put({"id": "new", "v": 9})
        await asyncio.sleep(0.01)
        result = await export_table(
            app.store, "Users", to=f"file://{tmp_path}/out", since=since, new_image_only=True
        )
    finally:
        await app.close()
    rows = []
    for f in result.files:
        data = (tmp_path / "out" / f["dataFileS3Key"]).read_bytes()
        rows += [json.loads(x) for x in gzip.decompress(data).splitlines()]
    got = {r["Keys"]["id"]["S"]: r.get("NewImage") for r in rows}
    assert got == {
        "k1": {"id": {"S": "k1"}, "v": {"N": "1"}},
        "k2": None,  # deleted in the period: its keys, no image
        "new": {"id": {"S": "new"}, "v": {"N": "9"}},
    }
    assert all("OldImage" not in r for r in rows)
    # the write time as DynamoDB writes it: a DynamoDB JSON number, in microseconds
    for r in rows:
        (micros,) = r["Metadata"]["WriteTimestampMicros"].values()
        assert list(r["Metadata"]["WriteTimestampMicros"]) == ["N"]
        assert int(micros) >= since.timestamp() * 1e6
    base = tmp_path / "out" / "AWSDynamoDB" / result.export_id
    assert (base / "_started").read_bytes() == b""
    for name in ("manifest-files", "manifest-summary"):
        digest = base64.b64encode(hashlib.md5((base / f"{name}.json").read_bytes()).digest())
        assert (base / f"{name}.md5").read_bytes() == digest


def test_export_errors_are_dynamodbs(served: Served) -> None:
    c = served.client()
    _table(c)
    enable_pitr(c, "Users")
    arn = c.describe_table(TableName="Users")["Table"]["TableArn"]
    missing = arn.replace("/Users", "/Nope")
    assert (
        _error(lambda: c.export_table_to_point_in_time(TableArn=missing, S3Bucket="b"))[0]
        == "TableNotFoundException"
    )
    code, message = _error(
        lambda: c.export_table_to_point_in_time(TableArn=arn, S3Bucket="b", ExportFormat="XML")
    )
    assert code == "ValidationException" and "[DYNAMODB_JSON, ION]" in message
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
    assert _error(lambda: c.describe_export(ExportArn=arn))[0] == "ValidationException"
    other_account = arn.replace(arn.split(":")[4], "111111111111")
    assert _error(lambda: c.describe_export(ExportArn=other_account + "/export/1-a"))[0] == (
        "AccessDeniedException"
    )
    for bad in ({"S3Prefix": ""}, {"ClientToken": ""}, {"ClientToken": "a$b"}):
        assert (
            _error(
                lambda bad=bad: c.export_table_to_point_in_time(TableArn=arn, S3Bucket="b", **bad)
            )[0]
            == "ValidationException"
        ), bad
    assert c.list_exports()["ExportSummaries"] == []


def test_an_ion_export_is_dynamodbs_ion(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """ExportFormat ION: ``.ion.gz`` data files of ``$ion_1_0 {Item:{...}}`` lines in
    DynamoDB's Ion mapping (which amazon.ion reads back to the same items), the manifest's
    outputFormat ION."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
    s3, bucket = _bucket()
    c = served.client()
    _put_every_type(c)
    arn = c.describe_table(TableName="Every")["Table"]["TableArn"]
    out = c.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="ion", ExportFormat="ION"
    )["ExportDescription"]
    assert (out["ExportFormat"], out["ExportType"]) == ("ION", "FULL_EXPORT")
    _eventually(lambda: _described(c, out["ExportArn"])["ExportStatus"] == "COMPLETED")
    done = _described(c, out["ExportArn"])
    assert (done["ExportFormat"], done["ItemCount"]) == ("ION", len(ITEMS))
    summary, files = _files(s3, bucket, done["ExportManifest"])
    assert (summary["outputFormat"], summary["itemCount"]) == ("ION", len(ITEMS))
    assert files and all(key.endswith(".ion.gz") for key in files)
    rows = [row for data in files.values() for row in _ion_rows(data)]
    assert all(list(row) == ["Item"] for row in rows)
    items = sorted((_from_ion(row["Item"]) for row in rows), key=lambda i: (i["p"], i["c"]))
    assert items == sorted(ITEMS, key=lambda i: (i["p"], i["c"]))
    numbers = next(row["Item"] for row in rows if row["Item"]["p"] == "numbers")
    for name in ("big", "neg", "tiny", "digits38"):  # exact, as Ion decimals
        assert numbers[name].ion_type is IonType.DECIMAL
    assert Decimal(numbers["tiny"]) == Decimal("1E-130")
    assert Decimal(numbers["digits38"]) == Decimal("12345678901234567890123456789012345678")


async def test_an_incremental_ion_export_keeps_keys_and_images(tmp_path: Path) -> None:
    """An incremental export in ION (the export ExportType INCREMENTAL_EXPORT runs):
    one line per changed item, ``{Metadata:{WriteTimestampMicros:...},Keys:{...},
    NewImage:{...}?,OldImage:{...}?}``; NEW_IMAGE keeps a deleted item's keys only."""
    app = sk.App(storage=f"sqlite:///{tmp_path}/t.db", log=f"local://{tmp_path}/log")
    try:
        t = await app.create_table("Users", partition_key="id")
        for i in range(5):
            await t.put({"id": f"k{i}", "v": 0, "ss": {"a"}})
        await asyncio.sleep(0.01)
        since = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await t.put({"id": "k1", "v": 1, "b": b"\x00"})
        await t.delete({"id": "k2"})
        await t.put({"id": "new", "v": Decimal("1E-130")})
        await asyncio.sleep(0.01)
        both = await export_table(
            app.store, "Users", to=f"file://{tmp_path}/both", since=since, format="ion"
        )
        new = await export_table(
            app.store,
            "Users",
            to=f"file://{tmp_path}/new",
            since=since,
            format="ion",
            new_image_only=True,
        )
    finally:
        await app.close()

    def rows(result: Any, where: str) -> dict[str, Any]:
        out = {}
        for f in result.files:
            assert f["dataFileS3Key"].endswith(".ion.gz")
            data = gzip.decompress((tmp_path / where / f["dataFileS3Key"]).read_bytes())
            for row in _ion_rows(data):
                assert (
                    {"Metadata", "Keys"} <= set(row) <= {"Metadata", "Keys", "NewImage", "OldImage"}
                )
                assert int(row["Metadata"]["WriteTimestampMicros"]) > since.timestamp() * 1e6
                out[str(row["Keys"]["id"])] = {
                    k: _from_ion(row[k]) for k in ("Keys", "NewImage", "OldImage") if k in row
                }
        return out

    assert rows(both, "both") == {
        "k1": {
            "Keys": {"id": "k1"},
            "NewImage": {"id": "k1", "v": 1, "b": Binary(b"\x00")},
            "OldImage": {"id": "k1", "v": 0, "ss": {"a"}},
        },
        "k2": {"Keys": {"id": "k2"}, "OldImage": {"id": "k2", "v": 0, "ss": {"a"}}},
        "new": {"Keys": {"id": "new"}, "NewImage": {"id": "new", "v": Decimal("1E-130")}},
    }
    assert rows(new, "new") == {
        "k1": {"Keys": {"id": "k1"}, "NewImage": {"id": "k1", "v": 1, "b": Binary(b"\x00")}},
        "k2": {"Keys": {"id": "k2"}},  # deleted in the period: its keys, no image
        "new": {"Keys": {"id": "new"}, "NewImage": {"id": "new", "v": Decimal("1E-130")}},
    }
    summary = json.loads(
        (tmp_path / "both" / "AWSDynamoDB" / both.export_id / "manifest-summary.json").read_text()
    )
    assert (summary["outputFormat"], summary["exportType"]) == ("ION", "INCREMENTAL_EXPORT")
