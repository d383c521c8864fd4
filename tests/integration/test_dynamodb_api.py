"""The DynamoDB-compatible endpoint, driven by boto3 (the real client) against
``create_asgi_app`` served by uvicorn on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.exceptions import ClientError

import streamkit as sk
from streamkit.server import create_asgi_app
from streamkit.server._auth import Authenticator
from tests import kafka_env


class Served:
    def __init__(self, app: sk.App, **kwargs: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_asgi_app(app, **kwargs),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def client(self, service: str = "dynamodb", **kw: Any) -> Any:
        kw.setdefault("aws_access_key_id", "AKIDEXAMPLE")
        kw.setdefault("aws_secret_access_key", "secret")
        return boto3.client(
            service, endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1", **kw
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with _served(tmp_path, f"local://{tmp_path}/log?poll_interval=0.02") as s:
        yield s


@contextlib.contextmanager
def _served(tmp_path: Path, log: str) -> Iterator[Served]:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/api.db",
        log=log,
        namespace=f"api{uuid.uuid4().hex[:8]}",
        topic_partitions=2,
    )
    with Served(app) as s:
        yield s


def _users(c: Any, name: str = "Users", **extra: Any) -> None:
    c.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "id", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_tables_lifecycle(served: Served) -> None:
    c = served.client()
    _users(c, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    desc = c.describe_table(TableName="Users")["Table"]
    assert desc["TableStatus"] == "ACTIVE"
    assert desc["KeySchema"][1] == {"AttributeName": "n", "KeyType": "RANGE"}
    assert desc["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    with pytest.raises(ClientError) as err:
        _users(c)
    assert _code(err) == "ResourceInUseException"
    _users(c, "Other")
    first = c.list_tables(Limit=1)
    assert (first["TableNames"], first["LastEvaluatedTableName"]) == (["Other"], "Other")
    assert c.list_tables(ExclusiveStartTableName="Other")["TableNames"] == ["Users"]
    c.update_table(TableName="Users", StreamSpecification={"StreamEnabled": False})
    assert "StreamSpecification" not in c.describe_table(TableName="Users")["Table"]
    c.update_time_to_live(
        TableName="Users", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
    )
    assert c.describe_time_to_live(TableName="Users")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "exp",
    }
    pitr = c.describe_continuous_backups(TableName="Users")["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    c.delete_table(TableName="Other")
    with pytest.raises(ClientError) as err:
        c.describe_table(TableName="Other")
    assert _code(err) == "ResourceNotFoundException"


def test_items_conditions_and_return_values(served: Served) -> None:
    c = served.client()
    _users(c)
    key = {"id": {"S": "a"}, "n": {"N": "1"}}
    c.put_item(TableName="Users", Item={**key, "tags": {"SS": ["x", "y"]}, "b": {"B": b"\x00"}})
    got = c.get_item(TableName="Users", Key=key, ConsistentRead=True)["Item"]
    assert got["tags"] == {"SS": ["x", "y"]} and got["b"] == {"B": b"\x00"}
    out = c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="SET #c = if_not_exists(#c, :z) + :one REMOVE b",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":z": {"N": "0"}, ":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    assert out["Attributes"] == {"count": {"N": "1"}}
    with pytest.raises(ClientError) as err:
        c.put_item(
            TableName="Users",
            Item=key,
            ConditionExpression="attribute_not_exists(id)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert _code(err) == "ConditionalCheckFailedException"
    assert err.value.response["Item"]["count"] == {"N": "1"}
    # the legacy Expected form, and a failing one changes nothing
    with pytest.raises(ClientError) as err:
        c.delete_item(TableName="Users", Key=key, Expected={"count": {"Value": {"N": "5"}}})
    assert _code(err) == "ConditionalCheckFailedException"
    old = c.delete_item(
        TableName="Users",
        Key=key,
        Expected={"count": {"Value": {"N": "1"}}},
        ReturnValues="ALL_OLD",
    )
    assert old["Attributes"]["tags"] == {"SS": ["x", "y"]}
    assert "Item" not in c.get_item(TableName="Users", Key=key)
    # DynamoDB's own validation messages
    for kwargs in (
        {
            "ConditionExpression": "attribute_exists(id)",
            "ExpressionAttributeValues": {":u": {"S": "x"}},
        },
        {"ConditionExpression": "size = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}},
        {"ConditionExpression": "#missing = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}},
    ):
        with pytest.raises(ClientError) as err:
            c.put_item(TableName="Users", Item=key, **kwargs)
        assert _code(err) == "ValidationException", kwargs
    assert "Item" not in c.get_item(TableName="Users", Key=key)


def test_query_scan_paging_and_batches(served: Served) -> None:
    c = served.client()
    _users(c)
    for i in range(30):
        c.put_item(
            TableName="Users",
            Item={"id": {"S": "p"}, "n": {"N": str(i)}, "odd": {"BOOL": i % 2 == 1}},
        )
    pages, start = [], None
    while True:
        kw: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        page = c.query(
            TableName="Users",
            KeyConditionExpression="id = :p AND n >= :lo",
            FilterExpression="odd = :t",
            ExpressionAttributeValues={":p": {"S": "p"}, ":lo": {"N": "10"}, ":t": {"BOOL": True}},
            Limit=7,
            **kw,
        )
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    got = [int(i["n"]["N"]) for p in pages for i in p["Items"]]
    assert got == list(range(11, 30, 2))
    assert sum(p["ScannedCount"] for p in pages) == 20
    legacy = c.query(
        TableName="Users",
        KeyConditions={
            "id": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]},
            "n": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "3"}, {"N": "5"}]},
        },
        ScanIndexForward=False,
        AttributesToGet=["n"],
    )
    assert [i["n"]["N"] for i in legacy["Items"]] == ["5", "4", "3"]
    assert (
        c.query(
            TableName="Users",
            KeyConditionExpression="id = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
            Select="COUNT",
        )["Count"]
        == 30
    )
    segs = [c.scan(TableName="Users", Segment=s, TotalSegments=3)["Count"] for s in range(3)]
    assert sum(segs) == 30
    c.batch_write_item(
        RequestItems={
            "Users": [
                {"PutRequest": {"Item": {"id": {"S": "q"}, "n": {"N": "1"}}}},
                {"DeleteRequest": {"Key": {"id": {"S": "p"}, "n": {"N": "0"}}}},
            ]
        }
    )
    got = c.batch_get_item(
        RequestItems={
            "Users": {
                "Keys": [
                    {"id": {"S": "q"}, "n": {"N": "1"}},
                    {"id": {"S": "p"}, "n": {"N": "0"}},
                ]
            }
        }
    )
    assert got["Responses"]["Users"] == [{"id": {"S": "q"}, "n": {"N": "1"}}]
    assert got["UnprocessedKeys"] == {}


def test_transactions(served: Served) -> None:
    c = served.client()
    _users(c)
    a = {"id": {"S": "a"}, "n": {"N": "1"}}
    c.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "Users", "Item": {**a, "bal": {"N": "10"}}}},
            {"Put": {"TableName": "Users", "Item": {"id": {"S": "b"}, "n": {"N": "1"}}}},
        ]
    )
    with pytest.raises(ClientError) as err:
        c.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "Users",
                        "Key": a,
                        "UpdateExpression": "SET bal = bal - :x",
                        "ConditionExpression": "bal >= :x",
                        "ExpressionAttributeValues": {":x": {"N": "50"}},
                    }
                },
                {"Delete": {"TableName": "Users", "Key": {"id": {"S": "b"}, "n": {"N": "1"}}}},
            ]
        )
    assert _code(err) == "TransactionCanceledException"
    assert [r["Code"] for r in err.value.response["CancellationReasons"]] == [
        "ConditionalCheckFailed",
        "None",
    ]
    got = c.transact_get_items(
        TransactItems=[
            {"Get": {"TableName": "Users", "Key": a}},
            {"Get": {"TableName": "Users", "Key": {"id": {"S": "b"}, "n": {"N": "1"}}}},
        ]
    )
    assert got["Responses"][0]["Item"]["bal"] == {"N": "10"}
    assert "Item" in got["Responses"][1]  # the cancelled delete did nothing


@pytest.fixture(params=["local", kafka_env.kafka_param()])
def served_any_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    log = (
        f"local://{tmp_path}/log?poll_interval=0.02"
        if request.param == "local"
        else f"kafka://{os.environ[kafka_env.KAFKA_ENV]}"
    )
    with _served(tmp_path, log) as s:
        yield s


def test_the_streams_api_serves_what_handlers_see(served_any_log: Served) -> None:
    served = served_any_log
    c, streams = served.client(), served.client("dynamodbstreams")
    _users(c, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    for i in range(6):
        c.put_item(TableName="Users", Item={"id": {"S": f"u{i}"}, "n": {"N": "1"}})
    c.update_item(
        TableName="Users",
        Key={"id": {"S": "u0"}, "n": {"N": "1"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "x"}},
    )
    c.delete_item(TableName="Users", Key={"id": {"S": "u1"}, "n": {"N": "1"}})
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    assert streams.list_streams(TableName="Users")["Streams"][0]["StreamArn"] == arn
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert len(shards) == 2
    deadline = time.monotonic() + 20
    records: list[Any] = []
    while len(records) < 8:
        assert time.monotonic() < deadline, records
        records = []
        for shard in shards:
            it = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            records += streams.get_records(ShardIterator=it, Limit=100)["Records"]
        time.sleep(0.1)
    records.sort(key=lambda r: r["dynamodb"]["SequenceNumber"])
    assert [r["eventName"] for r in records] == ["INSERT"] * 6 + ["MODIFY", "REMOVE"]
    r = records[6]
    assert r["eventSource"] == "aws:dynamodb" and r["eventVersion"] == "1.1"
    assert r["dynamodb"]["OldImage"] == {"id": {"S": "u0"}, "n": {"N": "1"}}
    assert r["dynamodb"]["NewImage"]["v"] == {"S": "x"}
    assert r["dynamodb"]["SequenceNumber"].isdigit()
    # AFTER_SEQUENCE_NUMBER continues after a record; a handler sees the same records
    seen: list[int] = []

    async def handler(batch: sk.Batch) -> None:
        seen.extend(rec.sequence_number for rec in batch)

    import asyncio

    reader_app = sk.App(
        storage=served.app.storage_url, log=served.app.log_url, namespace=served.app.namespace
    )
    reader_app.on_change("Users", batch_size=100, name="mirror")(handler)

    async def run() -> None:
        async with reader_app.running(relay=False):
            await reader_app.drain()
        await reader_app.close()

    asyncio.run(run())
    assert sorted(seen) == [int(r["dynamodb"]["SequenceNumber"]) for r in records]


def test_sigv4_is_verified_when_keys_are_configured(tmp_path: Path) -> None:
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    auth = Authenticator({"AKIDGOOD": "right-secret"}, region="us-east-1")
    with Served(app, auth=auth) as s:
        good = s.client(aws_access_key_id="AKIDGOOD", aws_secret_access_key="right-secret")
        assert good.list_tables()["TableNames"] == []
        bad = s.client(aws_access_key_id="AKIDGOOD", aws_secret_access_key="wrong")
        with pytest.raises(ClientError) as err:
            bad.list_tables()
        assert _code(err) == "InvalidSignatureException"
        unknown = s.client(aws_access_key_id="AKIDNOPE", aws_secret_access_key="x")
        with pytest.raises(ClientError) as err:
            unknown.list_tables()
        assert _code(err) == "UnrecognizedClientException"
        # a tampered body: the signature no longer matches
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{s.port}/",
            data=b"{}",
            headers={
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                "Content-Type": "application/x-amz-json-1.0",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(req)
        assert http.value.code == 400
        assert b"MissingAuthenticationTokenException" in http.value.read()


def test_streamkit_serve_as_a_process(tmp_path: Path) -> None:
    import os
    import shutil
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "STREAMKIT_STORAGE": f"sqlite:///{tmp_path}/served.db",
        "STREAMKIT_LOG": f"local://{tmp_path}/log",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamkit", "serve", "--port", str(port), "--keys", "AKID:sekret"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        c = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="AKID",
            aws_secret_access_key="sekret",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                c.list_tables()
                break
            except Exception:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.1)
        _users(c)
        c.put_item(TableName="Users", Item={"id": {"S": "a"}, "n": {"N": "1"}})
        if shutil.which("aws"):  # the AWS CLI, when this machine has it
            out = subprocess.run(
                ["aws", "dynamodb", "list-tables", "--endpoint-url", f"http://127.0.0.1:{port}"],
                env={
                    **env,
                    "AWS_ACCESS_KEY_ID": "AKID",
                    "AWS_SECRET_ACCESS_KEY": "sekret",
                    "AWS_DEFAULT_REGION": "us-east-1",
                },
                capture_output=True,
                text=True,
                check=True,
            )
            assert "Users" in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal (exit status -SIGTERM)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    # the data is in the storage file
    import asyncio

    async def check() -> list[Any]:
        async with sk.App(storage=env["STREAMKIT_STORAGE"]) as app:
            return [i async for i in app.table("Users").scan()]

    assert asyncio.run(check()) == [{"id": "a", "n": 1}]


def test_serve_warns_when_open_without_keys(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamkit", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={
            **os.environ,
            "STREAMKIT_STORAGE": "memory://",
            "STREAMKIT_LOG": f"local://{tmp_path}/l",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "authentication OFF" in first, first
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_backups_and_point_in_time_recovery_through_the_api(served: Served) -> None:
    c = served.client()
    _users(c)
    c.put_item(TableName="Users", Item={"id": {"S": "a"}, "n": {"N": "1"}})
    time.sleep(0.02)
    before = time.time()
    time.sleep(0.02)
    c.put_item(TableName="Users", Item={"id": {"S": "b"}, "n": {"N": "1"}})
    details = c.create_backup(TableName="Users", BackupName="nightly")["BackupDetails"]
    assert details["BackupStatus"] == "AVAILABLE"
    arn = details["BackupArn"]
    assert [b["BackupArn"] for b in c.list_backups(TableName="Users")["BackupSummaries"]] == [arn]
    desc = c.describe_backup(BackupArn=arn)["BackupDescription"]
    assert desc["SourceTableDetails"]["ItemCount"] == 2
    c.restore_table_from_backup(TargetTableName="UsersCopy", BackupArn=arn)
    assert c.scan(TableName="UsersCopy")["Count"] == 2
    from datetime import UTC, datetime

    c.restore_table_to_point_in_time(
        SourceTableName="Users",
        TargetTableName="UsersThen",
        RestoreDateTime=datetime.fromtimestamp(before, UTC),
    )
    assert c.scan(TableName="UsersThen")["Items"] == [{"id": {"S": "a"}, "n": {"N": "1"}}]
    c.delete_backup(BackupArn=arn)
    with pytest.raises(ClientError) as err:
        c.describe_backup(BackupArn=arn)
    assert _code(err) == "BackupNotFoundException"
    c.update_continuous_backups(
        TableName="Users",
        PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True,
            "RecoveryPeriodInDays": 7,
        },
    )
    pitr = c.describe_continuous_backups(TableName="Users")["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 7
