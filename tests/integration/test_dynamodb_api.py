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
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

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
                server_header=False,  # as `streamkit serve`: the endpoint sends its own
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
        kw.setdefault("region_name", "us-east-1")
        return boto3.client(service, endpoint_url=f"http://127.0.0.1:{self.port}", **kw)


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


def enable_pitr(c: Any, table: str) -> None:
    """Turn point-in-time recovery on for an endpoint table (off when it is created, as
    in DynamoDB) and wait until it is ENABLED."""
    c.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    deadline = time.monotonic() + 10
    while True:
        got = c.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        if got["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED":
            return
        assert time.monotonic() < deadline, f"PITR of {table} never ENABLED"
        time.sleep(0.05)


def _error_code(call: Any) -> str:
    with pytest.raises(ClientError) as err:
        call()
    return _code(err)


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
    # off for a new table, as DynamoDB; a restore to a point in time needs it turned on
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    enable_pitr(c, "Users")
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


class _FakeUvicorn:
    """Stands in for ``uvicorn.run``: what ``streamkit serve`` would have served."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, application: Any, **kwargs: Any) -> None:
        self.calls.append((application, kwargs))


def _serve_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str, **env: str
) -> tuple[int, str, _FakeUvicorn]:
    from typer.testing import CliRunner

    from streamkit.cli._main import cli

    fake = _FakeUvicorn()
    monkeypatch.setattr(uvicorn, "run", fake)
    monkeypatch.delenv("STREAMKIT_ACCESS_KEYS", raising=False)
    result = CliRunner().invoke(
        cli,
        ["serve", "--port", str(_free_port()), *args],
        env={"STREAMKIT_STORAGE": "memory://", "STREAMKIT_LOG": f"local://{tmp_path}/l", **env},
    )
    return result.exit_code, result.stderr, fake


def test_serve_refuses_to_serve_open_unless_insecure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # on a non-loopback interface without keys: a one-line error, exit 2, nothing served
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--host", "0.0.0.0")
    assert code == 2 and not fake.calls, err
    assert err.count("\n") == 1 and err.startswith("error: refusing to serve on 0.0.0.0"), err
    assert "--keys" in err and "--insecure" in err
    # an empty STREAMKIT_ACCESS_KEYS (or --keys "") is not "no authentication"
    for args, env in [((), {"STREAMKIT_ACCESS_KEYS": ""}), (("--keys", ""), {})]:
        code, err, fake = _serve_cli(monkeypatch, tmp_path, *args, **env)
        assert code == 2 and not fake.calls, err
        assert err.count("\n") == 1 and "is empty" in err and "--insecure" in err, err
    # --insecure: served open, with a warning
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--host", "0.0.0.0", "--insecure")
    assert code == 0 and len(fake.calls) == 1, err
    assert "authentication OFF" in err
    application, _ = fake.calls[0]
    assert application.auth is None
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--insecure", STREAMKIT_ACCESS_KEYS="")
    assert code == 0 and fake.calls[0][0].auth is None, err
    # with keys, anywhere
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--host", "0.0.0.0", "--keys", "AK:sk")
    assert code == 0 and fake.calls[0][0].auth.keys == {"AK": "sk"}, err


def test_serve_passes_tls_timeouts_and_limits_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    code, err, fake = _serve_cli(
        monkeypatch,
        tmp_path,
        *("--keys", "AK:sk", "--region", "eu-west-1"),
        *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
        *("--timeout-keep-alive", "7", "--limit-concurrency", "50"),
        *("--header-timeout", "2.5", "--body-timeout", "3", "--allow-host", "api.internal"),
    )
    assert code == 0, err
    ((application, kwargs),) = fake.calls
    assert f"https://127.0.0.1:{kwargs['port']} (region eu-west-1)" in err
    assert kwargs["ssl_certfile"] == str(cert) and kwargs["ssl_keyfile"] == str(key)
    assert (kwargs["timeout_keep_alive"], kwargs["limit_concurrency"]) == (7, 50)
    assert kwargs["http"].__name__ == "StreamkitHTTPProtocol"
    assert application.body_timeout == 3 and application.allowed_hosts == {"api.internal"}
    assert application.auth.region == "eu-west-1" and application.service.region == "eu-west-1"
    # the defaults: a connection limit, the timeouts, any region a signature names
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--keys", "AK:sk")
    ((application, kwargs),) = fake.calls
    assert kwargs["limit_concurrency"] == 1000 and kwargs["ssl_certfile"] is None
    assert application.body_timeout == 30 and application.auth.region is None
    assert application.service.configured_region is None  # the region of each request
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--ssl-keyfile", str(key))
    assert code == 2 and "--ssl-certfile" in err and not fake.calls


def test_a_bad_access_key_line_is_reported_without_its_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from streamkit.server._auth import load_keys

    keys = tmp_path / "keys.txt"
    keys.write_text("# who may call\nAKIDONE:first-secret\nAKIDTWO=hunter2-secret\n")
    with pytest.raises(ValueError, match="line 3") as err:
        load_keys(str(keys))
    assert "hunter2" not in str(err.value) and "first-secret" not in str(err.value)
    with pytest.raises(ValueError, match="entry 2") as err:
        load_keys("AKIDONE:first-secret,AKIDTWO hunter2-secret")
    assert "hunter2" not in str(err.value)
    keys.write_text("# nothing but comments\n")
    with pytest.raises(ValueError, match="no access keys"):
        load_keys(str(keys))
    keys.write_text("AKIDONE:first-secret\n\n  AKIDTWO:second:with-colon  \n")
    assert load_keys(str(keys)) == {"AKIDONE": "first-secret", "AKIDTWO": "second:with-colon"}
    keys.write_text("AKIDONE:first-secret\nAKIDTWO=hunter2-secret\n")
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--keys", str(keys))
    assert code == 2 and not fake.calls
    assert "line 2" in err and "hunter2" not in err and "first-secret" not in err, err


def test_backups_and_point_in_time_recovery_through_the_api(served: Served) -> None:
    c = served.client()
    _users(c)
    # off for a new table, as DynamoDB: restoring to a point in time needs it on
    code = _error_code(
        lambda: c.restore_table_to_point_in_time(
            SourceTableName="Users", TargetTableName="Never", UseLatestRestorableTime=True
        )
    )
    assert code == "PointInTimeRecoveryUnavailableException"
    enable_pitr(c, "Users")
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


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM files)."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(
    port: int,
    target: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, Any]]:
    """One raw POST (no SDK, no retries): the status and the decoded body."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/",
            body=body,
            headers={
                "X-Amz-Target": target,
                "Content-Type": "application/x-amz-json-1.0",
                **(headers or {}),
            },
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_huge_request_is_refused_early_and_others_are_served_meanwhile(served: Served) -> None:
    """A 14 MB PutItem of 1.4M tiny list elements (or a batch of oversized items) is a
    ValidationException, quickly; a small GetItem meanwhile is answered at once."""
    import json

    c = served.client()
    _users(c)
    key = {"id": {"S": "a"}, "n": {"N": "1"}}
    c.put_item(TableName="Users", Item=key)
    get = json.dumps({"TableName": "Users", "Key": key}).encode()

    def while_posting(op: str, raw: bytes) -> tuple[int, dict[str, Any], float, list[float]]:
        out: dict[str, Any] = {}

        def big() -> None:
            started = time.monotonic()
            out["response"] = _post(served.port, f"DynamoDB_20120810.{op}", raw)
            out["took"] = time.monotonic() - started

        thread = threading.Thread(target=big)
        thread.start()
        waits = []
        while thread.is_alive() or not waits:
            started = time.monotonic()
            status, got = _post(served.port, "DynamoDB_20120810.GetItem", get)
            waits.append(time.monotonic() - started)
            assert status == 200 and got["Item"] == key, got
        thread.join()
        status, body = out["response"]
        return status, body, out["took"], waits

    many = {"L": [{"N": "1"}] * 1_400_000}
    raw = json.dumps(
        {"TableName": "Users", "Item": {**key, "v": many}}, separators=(",", ":")
    ).encode()
    assert len(raw) > 14_000_000
    status, body, took, waits = while_posting("PutItem", raw)
    assert status == 400 and body["__type"].endswith("#ValidationException"), body
    assert took < 5 and max(waits) < 0.5, (took, waits)
    # a batch (its limit is 16 MB) of items of 150,000 elements: each refused once its
    # size passes 400 KB, parsed and converted off the event loop
    puts = [
        {
            "PutRequest": {
                "Item": {"id": {"S": f"b{i}"}, "n": {"N": "1"}, "v": {"L": many["L"][:150_000]}}
            }
        }
        for i in range(6)
    ]
    raw = json.dumps({"RequestItems": {"Users": puts}}, separators=(",", ":")).encode()
    status, body, took, waits = while_posting("BatchWriteItem", raw)
    assert (status, body["message"]) == (400, "Item size has exceeded the maximum allowed size")
    assert max(waits) < 0.75, (took, waits)
    assert c.scan(TableName="Users")["Count"] == 1


def test_without_auth_only_loopback_host_names_are_served(tmp_path: Path) -> None:
    """DNS rebinding: a web page on evil.example that resolves to 127.0.0.1 sends
    ``Host: evil.example``; with authentication off that is refused."""
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    with Served(app) as s:
        for host in [
            "evil.example",
            "evil.example:8000",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
        ]:
            status, body = _post(
                s.port, "DynamoDB_20120810.ListTables", b"{}", headers={"Host": host}
            )
            assert status == 403, (host, body)
            assert body["__type"].endswith("#AccessDeniedException"), body
            assert "DNS rebinding" in body["message"] and "--allow-host" in body["message"]
        for host in [
            f"localhost:{s.port}",
            "LOCALHOST",
            "127.0.0.1",
            f"[::1]:{s.port}",
            f"shop.localhost:{s.port}",
            "127.0.0.2:80",
        ]:
            status, body = _post(
                s.port, "DynamoDB_20120810.ListTables", b"{}", headers={"Host": host}
            )
            assert (status, body) == (200, {"TableNames": []}), host
        assert s.client().list_tables()["TableNames"] == []
    from streamkit.server._asgi import loopback_host

    assert loopback_host("[::1]") and not loopback_host("[::2]:80") and not loopback_host("")
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log2")
    with Served(app, allowed_hosts=["dynamo.internal"]) as s:
        for host, want in [
            ("dynamo.internal:8000", 200),
            ("DYNAMO.internal", 200),
            ("evil.example", 403),
        ]:
            status, _ = _post(s.port, "DynamoDB_20120810.ListTables", b"{}", headers={"Host": host})
            assert status == want, host


def _sign(
    port: int,
    *,
    service: str = "dynamodb",
    region: str = "us-east-1",
    sign_target: bool = True,
    host: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """A ListTables signed by hand (so the scope and the signed headers can be wrong)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = host or f"127.0.0.1:{port}"
    target = "DynamoDB_20120810.ListTables"
    headers = {"Content-Type": "application/x-amz-json-1.0", "Host": host}
    if sign_target:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=f"http://{host}/", data=b"{}", headers=headers)
    SigV4Auth(Credentials("AKIDGOOD", "right-secret"), service, region).add_auth(request)
    sent = dict(request.headers.items())
    sent["X-Amz-Target"] = target
    return _post(port, target, b"{}", headers=sent)


def test_sigv4_scope_must_be_dynamodb_and_the_target_signed(tmp_path: Path) -> None:
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    auth = Authenticator({"AKIDGOOD": "right-secret"}, region="us-east-1")
    with Served(app, auth=auth) as s:
        good = s.client(aws_access_key_id="AKIDGOOD", aws_secret_access_key="right-secret")
        assert good.list_tables()["TableNames"] == []
        streams = s.client(
            "dynamodbstreams", aws_access_key_id="AKIDGOOD", aws_secret_access_key="right-secret"
        )
        assert streams.list_streams()["Streams"] == []
        assert _sign(s.port) == (200, {"TableNames": []})
        # another service's scope, another region's, an unsigned X-Amz-Target: refused
        status, body = _sign(s.port, service="s3")
        assert (status, body["__type"]) == (
            400,
            "com.amazon.coral.service#InvalidSignatureException",
        )
        assert "scoped to correct service: 'dynamodb'" in body["message"]
        status, body = _sign(s.port, region="eu-west-1")
        assert (status, body["__type"]) == (
            400,
            "com.amazon.coral.service#InvalidSignatureException",
        )
        assert "us-east-1" in body["message"]
        status, body = _sign(s.port, sign_target=False)
        assert status == 400 and body["__type"].endswith("#IncompleteSignatureException"), body
        assert "x-amz-target" in body["message"]
        elsewhere = s.client(
            aws_access_key_id="AKIDGOOD",
            aws_secret_access_key="right-secret",
            region_name="eu-west-1",
        )
        with pytest.raises(ClientError) as err:
            elsewhere.list_tables()
        assert _code(err) == "InvalidSignatureException"
        # with authentication on, the Host header is signed: any name is served
        assert _sign(s.port, host="dynamo.example") == (200, {"TableNames": []})
    # a server without a configured region takes any region, still only for dynamodb
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log2")
    with Served(app, auth=Authenticator({"AKIDGOOD": "right-secret"})) as s:
        assert _sign(s.port, region="ap-south-1") == (200, {"TableNames": []})
        assert _sign(s.port, service="sqs")[0] == 400


def test_a_request_signed_too_long_ago_or_ahead_is_refused_first(tmp_path: Path) -> None:
    """As DynamoDB (found by Alternator's test_authorization): the request's X-Amz-Date
    is judged before the Authorization header's details and the key, and each side of
    the 15 minutes is said in DynamoDB's words."""
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    auth = Authenticator({"AKIDGOOD": "right-secret"}, region="us-east-1")
    target = "DynamoDB_20120810.ListTables"
    with Served(app, auth=auth) as s:
        for stamp, words in (
            ("20170101T010101Z", "Signature expired: 20170101T010101Z is now earlier than "),
            (
                "30200101T010101Z",
                "Signature not yet current: 30200101T010101Z is still later than ",
            ),
        ):
            # a dummy header (spaces, not commas; an unknown key; no real signature)
            headers = {
                "Authorization": "AWS4-HMAC-SHA256 Credential=nobody/2/3/4/aws4_request "
                "SignedHeaders=x-amz-date;host Signature=123",
                "X-Amz-Date": stamp,
                "Content-Type": "application/x-amz-json-1.0",
            }
            status, body = _post(s.port, target, b"{}", headers=headers)
            assert (status, body["__type"]) == (
                400,
                "com.amazon.coral.service#InvalidSignatureException",
            ), body
            assert body["message"].startswith(words), body["message"]
            assert body["message"].endswith(" min.)"), body["message"]
        # in time, the same header is malformed; a well-formed one with an unknown key
        now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers["X-Amz-Date"] = now
        status, body = _post(s.port, target, b"{}", headers=headers)
        assert body["__type"].endswith("#IncompleteSignatureException"), body
        assert _sign(s.port) == (200, {"TableNames": []})


def test_a_signed_header_sent_twice_is_signed_as_its_joined_values(tmp_path: Path) -> None:
    """SigV4 signs a repeated header as its values joined by commas, and DynamoDB checks
    it so (found by Alternator's test_multiple_accept_encoding_headers); the answer's
    coding follows the first Accept-Encoding header only."""
    import http.client
    import json as _json

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    auth = Authenticator({"AKIDGOOD": "right-secret"}, region="us-east-1")
    with Served(app, auth=auth) as s:
        host = f"127.0.0.1:{s.port}"
        target = "DynamoDB_20120810.ListTables"
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "Host": host,
            "X-Amz-Target": target,
            "Accept-Encoding": "identity,gzip",
        }
        request = AWSRequest(method="POST", url=f"http://{host}/", data=b"{}", headers=headers)
        SigV4Auth(Credentials("AKIDGOOD", "right-secret"), "dynamodb", "us-east-1").add_auth(
            request
        )
        assert "accept-encoding" in request.headers["Authorization"]
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        try:
            conn.putrequest("POST", "/", skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.items():
                if name.lower() == "accept-encoding":
                    conn.putheader(name, "identity")  # the same header twice
                    conn.putheader(name, "gzip")
                else:
                    conn.putheader(name, value)
            conn.putheader("Content-Length", "2")
            conn.endheaders(b"{}")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, body
        assert response.getheader("content-encoding") is None  # the first: identity
        assert _json.loads(body) == {"TableNames": []}


def test_a_trickled_body_gets_408_and_the_connection_closes(tmp_path: Path) -> None:
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log")
    with (
        Served(app, body_timeout=1.0) as s,
        socket.create_connection(("127.0.0.1", s.port)) as conn,
    ):
        conn.settimeout(10)
        conn.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        received = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in received and time.monotonic() - started < 8:
                conn.sendall(b" ")  # one byte every 0.2 s: never done within a second
                conn.settimeout(0.2)
                with contextlib.suppress(TimeoutError):
                    received += conn.recv(65536)
        conn.settimeout(10)
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):  # the server closes the connection
                received += chunk
        assert received.startswith(b"HTTP/1.1 408"), received
        assert b"RequestTimeoutException" in received and b"connection: close" in received.lower()
        assert 0.9 < time.monotonic() - started < 5
        # other clients are unaffected
        assert s.client().list_tables()["TableNames"] == []


def test_serve_over_tls_with_a_header_timeout(tmp_path: Path) -> None:
    """``--ssl-certfile/--ssl-keyfile``: boto3 verifies the certificate and signs over
    TLS; a client that never finishes its headers is cut off (``--header-timeout``)."""
    import os
    import signal
    import ssl
    import subprocess
    import sys

    cert, key = _self_signed(tmp_path)
    port = _free_port()
    env = {
        **os.environ,
        "STREAMKIT_STORAGE": f"sqlite:///{tmp_path}/tls.db",
        "STREAMKIT_LOG": f"local://{tmp_path}/log",
    }
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamkit", "serve", "--port", str(port)),
            *("--keys", "AKID:sekret", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)),
            *("--header-timeout", "1"),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        c = boto3.client(
            "dynamodb",
            endpoint_url=f"https://localhost:{port}",
            region_name="us-east-1",
            aws_access_key_id="AKID",
            aws_secret_access_key="sekret",
            verify=str(cert),
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
        assert c.scan(TableName="Users")["Count"] == 1
        # plain HTTP on the TLS port gets no DynamoDB answer
        plain = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="AKID",
            aws_secret_access_key="sekret",
            config=Config(retries={"max_attempts": 0}),
        )
        with pytest.raises(BotoCoreError):
            plain.list_tables()
        c.close()
        plain.close()
        # unfinished headers: the connection is closed after about a second
        context = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            conn.settimeout(10)
            conn.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Tar")
            started = time.monotonic()
            with contextlib.suppress(OSError):
                assert conn.recv(1024) == b""
            assert 0.5 < time.monotonic() - started < 5
    finally:
        proc.send_signal(signal.SIGTERM)
        try:  # asyncio may wait 30 s for TLS clients' close_notify: not what is tested here
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=30)
    assert "https://127.0.0.1" in err and "Traceback" not in err, err
