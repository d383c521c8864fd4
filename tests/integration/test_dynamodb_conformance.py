"""Where the endpoint used to answer differently from DynamoDB (issue #12, part 3): each
test is one difference, fixed, driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import streamkit as sk
from tests.integration.test_dynamodb_api import Served


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/api.db",
        log=f"local://{tmp_path}/log?poll_interval=0.02",
        namespace=f"conf{uuid.uuid4().hex[:8]}",
        topic_partitions=2,
        ttl_interval=0.05,
    )
    with Served(app) as s:
        yield s


def _table(c: Any, name: str = "Users", *, sort: bool = False, **extra: Any) -> None:
    schema = [{"AttributeName": "id", "KeyType": "HASH"}]
    defs = [{"AttributeName": "id", "AttributeType": "S"}]
    if sort:
        schema.append({"AttributeName": "n", "KeyType": "RANGE"})
        defs.append({"AttributeName": "n", "AttributeType": "N"})
    c.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=extra.pop("AttributeDefinitions", defs),
        BillingMode=extra.pop("BillingMode", "PAY_PER_REQUEST"),
        **extra,
    )


def _error(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call()
    e = err.value.response["Error"]
    return str(e["Code"]), str(e["Message"])


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- 1. UpdateItem that only removes -------------------------------------------------------


def test_update_item_that_only_removes_creates_no_item(served: Served) -> None:
    c = served.client()
    _table(c, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    key = {"id": {"S": "ghost"}}
    out = c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="REMOVE a, b.c",
        ReturnValues="ALL_NEW",
        ReturnConsumedCapacity="TOTAL",
    )
    assert "Attributes" not in out
    assert out["ConsumedCapacity"]["CapacityUnits"] == 1.0
    c.update_item(TableName="Users", Key=key, AttributeUpdates={"a": {"Action": "DELETE"}})
    c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="DELETE s :v",
        ExpressionAttributeValues={":v": {"SS": ["x"]}},
    )
    assert "Item" not in c.get_item(TableName="Users", Key=key)
    assert c.scan(TableName="Users")["Count"] == 0
    # an update with no action at all still creates the item, as DynamoDB does
    c.update_item(TableName="Users", Key={"id": {"S": "bare"}})
    assert c.get_item(TableName="Users", Key={"id": {"S": "bare"}})["Item"] == {"id": {"S": "bare"}}
    # the stream holds the one INSERT only
    streams = served.client("dynamodbstreams")
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    records: list[Any] = []

    def read() -> bool:
        records.clear()
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            it = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            records.extend(streams.get_records(ShardIterator=it)["Records"])
        return len(records) >= 1

    _eventually(read)
    time.sleep(0.3)
    read()
    assert [r["dynamodb"]["Keys"] for r in records] == [{"id": {"S": "bare"}}]


# --- 3. TTL ---------------------------------------------------------------------------------


def _ttl(c: Any, enabled: bool, attr: str, table: str = "Users") -> Any:
    return c.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": enabled, "AttributeName": attr}
    )


def test_enabling_ttl_expires_items_written_before_it(served: Served) -> None:
    c = served.client()
    _table(c)
    past, now = int(time.time()) - 60, int(time.time())
    items = {
        "p0": {"exp": {"N": str(past)}},
        "e-notation": {"exp": {"N": f"{past // 10}e1"}},
        "fraction": {"exp": {"N": f"{past}.1234"}},
        "later": {"exp": {"N": str(now + 3600)}},
        "text": {"exp": {"S": str(past)}},
        "ancient": {"exp": {"N": "162777600"}},
        "none": {},
    }
    for k, extra in items.items():
        c.put_item(TableName="Users", Item={"id": {"S": k}, **extra})
    time.sleep(0.3)
    assert c.scan(TableName="Users")["Count"] == 7  # no TTL yet
    assert _ttl(c, True, "exp")["TimeToLiveSpecification"] == {
        "Enabled": True,
        "AttributeName": "exp",
    }

    def left() -> set[str]:
        return {i["id"]["S"] for i in c.scan(TableName="Users")["Items"]}

    _eventually(lambda: left() == {"later", "text", "ancient", "none"})


def test_update_time_to_live_errors_are_dynamodb_s(served: Served) -> None:
    c = served.client()
    _table(c)
    assert _error(lambda: _ttl(c, False, "exp")) == (
        "ValidationException",
        "TimeToLive is already disabled",
    )
    _ttl(c, True, "exp")
    assert _error(lambda: _ttl(c, True, "exp")) == (
        "ValidationException",
        "TimeToLive is already enabled",
    )
    different = (
        "ValidationException",
        "TimeToLive is active on a different AttributeName: current AttributeName is exp",
    )
    assert _error(lambda: _ttl(c, True, "other")) == different
    assert _error(lambda: _ttl(c, False, "other")) == different
    code, msg = _error(lambda: _ttl(c, True, "x" * 256))
    assert code == "ValidationException"
    assert "'timeToLiveSpecification.attributeName'" in msg and "255" in msg
    code, msg = _error(lambda: _ttl(c, True, "x" * 3, table="Nope"))
    assert code == "ResourceNotFoundException"
    assert c.describe_time_to_live(TableName="Users")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "exp",
    }
    _ttl(c, False, "exp")
    assert c.describe_time_to_live(TableName="Users")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "DISABLED"
    }


def test_a_key_attribute_may_be_the_ttl_attribute(served: Served) -> None:
    """DynamoDB accepts a key attribute as the TTL attribute, and such items expire."""
    c = served.client()
    c.create_table(
        TableName="Numbers",
        KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    old, new = int(time.time()) - 60, int(time.time()) + 3600
    c.put_item(TableName="Numbers", Item={"p": {"N": str(old)}})
    c.put_item(TableName="Numbers", Item={"p": {"N": str(new)}})
    _ttl(c, True, "p", table="Numbers")
    _eventually(lambda: [i["p"]["N"] for i in c.scan(TableName="Numbers")["Items"]] == [str(new)])


def test_expired_items_leave_their_gsi_and_lsi(served: Served) -> None:
    c = served.client()
    s = {"AttributeType": "S"}
    c.create_table(
        TableName="Indexed",
        KeySchema=[
            {"AttributeName": "p", "KeyType": "HASH"},
            {"AttributeName": "c", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[{"AttributeName": a, **s} for a in ("p", "c", "g")]
        + [{"AttributeName": "l", "AttributeType": "N"}],
        LocalSecondaryIndexes=[
            {
                "IndexName": "lsi",
                "KeySchema": [
                    {"AttributeName": "p", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    past, later = int(time.time()) - 60, int(time.time()) + 3600
    # one expires by an ordinary attribute, one by its LSI key; one stays
    c.put_item(
        TableName="Indexed",
        Item={
            "p": {"S": "x"},
            "c": {"S": "1"},
            "g": {"S": "g"},
            "l": {"N": "1"},
            "exp": {"N": str(past)},
        },
    )
    c.put_item(
        TableName="Indexed",
        Item={"p": {"S": "x"}, "c": {"S": "2"}, "g": {"S": "g"}, "l": {"N": str(later)}},
    )
    _ttl(c, True, "exp", table="Indexed")

    def counts() -> tuple[int, int, int]:
        base = c.scan(TableName="Indexed")["Count"]
        gsi = c.query(
            TableName="Indexed",
            IndexName="gsi",
            KeyConditionExpression="g = :g",
            ExpressionAttributeValues={":g": {"S": "g"}},
        )["Count"]
        lsi = c.query(
            TableName="Indexed",
            IndexName="lsi",
            KeyConditionExpression="p = :p",
            ExpressionAttributeValues={":p": {"S": "x"}},
        )["Count"]
        return base, gsi, lsi

    _eventually(lambda: counts() == (1, 1, 1))
    _ttl(c, False, "exp", table="Indexed")
    c.put_item(
        TableName="Indexed",
        Item={"p": {"S": "x"}, "c": {"S": "3"}, "g": {"S": "g"}, "l": {"N": str(past)}},
    )
    _ttl(c, True, "l", table="Indexed")
    _eventually(lambda: counts() == (1, 1, 1))
    assert c.scan(TableName="Indexed")["Items"][0]["c"] == {"S": "2"}


# --- 2. Streams -----------------------------------------------------------------------------


def _records(streams: Any, arn: str) -> tuple[list[Any], bool]:
    """Every record of a stream from TRIM_HORIZON, and whether all its shards ended."""
    out: list[Any] = []
    ended = True
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(20):
            got = streams.get_records(ShardIterator=it)
            out.extend(got["Records"])
            if "NextShardIterator" not in got:
                break
            it = got["NextShardIterator"]
            if not got["Records"]:
                ended = False
                break
    out.sort(key=lambda r: r["dynamodb"]["SequenceNumber"])
    return out, ended


def _put(c: Any, key: str, table: str = "Users") -> None:
    c.put_item(TableName=table, Item={"id": {"S": key}})


def test_list_streams_pages_and_skips_deleted_tables(served: Served) -> None:
    c, streams = served.client(), served.client("dynamodbstreams")
    spec = {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    for name in ("Aaa", "Bbb", "Ccc"):
        _table(c, name, StreamSpecification=spec)
    _table(c, "NoStream")
    first = streams.list_streams(Limit=2)
    assert [s["TableName"] for s in first["Streams"]] == ["Aaa", "Bbb"]
    assert first["LastEvaluatedStreamArn"] == first["Streams"][1]["StreamArn"]
    rest = streams.list_streams(Limit=2, ExclusiveStartStreamArn=first["LastEvaluatedStreamArn"])
    assert [s["TableName"] for s in rest["Streams"]] == ["Ccc"]
    assert "LastEvaluatedStreamArn" not in rest
    assert streams.list_streams(TableName="NoStream")["Streams"] == []
    c.delete_table(TableName="Bbb")
    assert [s["TableName"] for s in streams.list_streams()["Streams"]] == ["Aaa", "Ccc"]
    assert streams.list_streams(TableName="Bbb")["Streams"] == []
    raw = served.client("dynamodbstreams", config=Config(parameter_validation=False))
    code, msg = _error(lambda: raw.list_streams(Limit=0))
    assert code == "ValidationException"
    assert msg == (
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    assert _error(lambda: raw.list_streams(ExclusiveStartStreamArn="x" * 40))[0] == (
        "ValidationException"
    )


def test_get_shard_iterator_errors_are_dynamodb_s(served: Served) -> None:
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    _put(c, "a")
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    sid = shard["ShardId"]
    raw = served.client("dynamodbstreams", config=Config(parameter_validation=False))

    def it(**kw: Any) -> Any:
        return lambda: raw.get_shard_iterator(StreamArn=arn, **kw)

    code, msg = _error(it(ShardId="shardId-1", ShardIteratorType="LATEST"))
    assert (code, msg) == (
        "ValidationException",
        "1 validation error detected: Value 'shardId-1' at 'shardId' failed to satisfy "
        "constraint: Member must have length greater than or equal to 28",
    )
    unknown = "shardId-00000000000000000001-0000ffff"
    assert _error(it(ShardId=unknown, ShardIteratorType="LATEST"))[0] == (
        "ResourceNotFoundException"
    )
    assert _error(it(ShardId="x" * 40, ShardIteratorType="LATEST"))[0] == (
        "ResourceNotFoundException"
    )
    seq = "0" * 20 + "1"
    for kw in (
        {"ShardIteratorType": "AT_SEQUENCE_NUMBER"},  # needs a sequence number
        {"ShardIteratorType": "LATEST", "SequenceNumber": seq},  # takes none
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "12"},  # too short
        {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": "x" * 21},  # not digits
        {"ShardIteratorType": "SOMEWHERE"},
    ):
        assert _error(it(ShardId=sid, **kw))[0] == "ValidationException", kw
    assert _error(lambda: raw.describe_stream(StreamArn="arn:aws:dynamodb:us-east-1:0:tbl")) == (
        "ValidationException",
        "1 validation error detected: Value 'arn:aws:dynamodb:us-east-1:0:tbl' at 'streamArn' "
        "failed to satisfy constraint: Member must have length greater than or equal to 37",
    )
    # a shard filter for the children of a shard: shards never split, so none
    desc = streams.describe_stream(
        StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": sid}
    )
    assert desc["StreamDescription"]["Shards"] == []


def test_stream_on_and_off_follow_dynamodb(served: Served) -> None:
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    first = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    assert c.describe_table(TableName="Users")["Table"]["LatestStreamArn"] == first  # stable

    def update(**spec: Any) -> Any:
        return lambda: c.update_table(TableName="Users", StreamSpecification=spec)

    enabled = ("ValidationException", "Table already has an enabled stream: TableName: Users")
    assert _error(update(StreamEnabled=True, StreamViewType="KEYS_ONLY")) == enabled
    assert _error(update(StreamEnabled=True, StreamViewType="NEW_IMAGE")) == enabled
    assert _error(update(StreamEnabled=False, StreamViewType="KEYS_ONLY"))[1] == (
        "One or more parameter values were invalid: If stream is being disabled, then "
        "UpdateViewType must not be specified"
    )
    _put(c, "a")
    _put(c, "b")
    _eventually(lambda: len(_records(streams, first)[0]) == 2)
    c.update_table(TableName="Users", StreamSpecification={"StreamEnabled": False})
    assert _error(update(StreamEnabled=False)) == (
        "ValidationException",
        "Table has no stream to disable: TableName: Users",
    )
    desc = c.describe_table(TableName="Users")["Table"]
    assert "StreamSpecification" not in desc and desc["LatestStreamArn"] == first
    _put(c, "not-streamed")
    old = streams.describe_stream(StreamArn=first)["StreamDescription"]
    assert old["StreamStatus"] == "DISABLED"
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in old["Shards"])
    records, ended = _records(streams, first)
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in records] == ["a", "b"] and ended
    # on again: a new stream, with only what is written from now on
    c.update_table(
        TableName="Users",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    second = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    assert second != first
    _put(c, "c")
    _eventually(lambda: len(_records(streams, second)[0]) == 1)
    records, _ = _records(streams, second)
    assert records[0]["dynamodb"]["Keys"] == {"id": {"S": "c"}}
    assert records[0]["dynamodb"]["NewImage"] == {"id": {"S": "c"}}
    assert streams.describe_stream(StreamArn=second)["StreamDescription"]["StreamStatus"] == (
        "ENABLED"
    )
    listed = streams.list_streams(TableName="Users")["Streams"]
    assert [s["StreamArn"] for s in listed] == [first, second]
    old_shards = {s["ShardId"] for s in old["Shards"]}
    new_desc = streams.describe_stream(StreamArn=second)["StreamDescription"]
    assert not old_shards & {s["ShardId"] for s in new_desc["Shards"]}
    records, _ = _records(streams, first)  # the old stream still ends where it ended
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in records] == ["a", "b"]


# --- 4. awsRegion ---------------------------------------------------------------------------


def test_region_is_the_signed_one_unless_configured(served: Served, tmp_path: Path) -> None:
    c = served.client(region_name="eu-central-1")
    streams = served.client("dynamodbstreams", region_name="eu-central-1")
    _table(c, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    desc = c.describe_table(TableName="Users")["Table"]
    assert desc["TableArn"].startswith("arn:aws:dynamodb:eu-central-1:")
    assert desc["LatestStreamArn"].startswith("arn:aws:dynamodb:eu-central-1:")
    _put(c, "a")
    arn = desc["LatestStreamArn"]
    _eventually(lambda: len(_records(streams, arn)[0]) == 1)
    assert _records(streams, arn)[0][0]["awsRegion"] == "eu-central-1"
    app = sk.App(storage="memory://", log=f"local://{tmp_path}/log2?poll_interval=0.02")
    with Served(app, region="ap-south-1") as fixed:
        c2 = fixed.client(region_name="eu-central-1")
        _table(c2)
        arn = c2.describe_table(TableName="Users")["Table"]["TableArn"]
        assert arn.startswith("arn:aws:dynamodb:ap-south-1:")


# --- 5. Tables ------------------------------------------------------------------------------


def test_tags_are_kept_listed_and_limited(served: Served) -> None:
    c = served.client()
    _table(c, Tags=[{"Key": "env", "Value": "test"}])
    arn = c.describe_table(TableName="Users")["Table"]["TableArn"]
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "test"}]
    c.tag_resource(
        ResourceArn=arn, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": ""}]
    )
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [
        {"Key": "env", "Value": "prod"},
        {"Key": "team", "Value": ""},
    ]
    c.untag_resource(ResourceArn=arn, TagKeys=["team", "absent"])
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "prod"}]
    raw = served.client(config=Config(parameter_validation=False))
    code, msg = _error(
        lambda: raw.tag_resource(ResourceArn=arn, Tags=[{"Key": "k" * 129, "Value": ""}])
    )
    assert code == "ValidationException" and "less than or equal to 128" in msg
    code, msg = _error(
        lambda: raw.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v" * 257}])
    )
    assert code == "ValidationException" and "less than or equal to 256" in msg
    code, _ = _error(
        lambda: raw.tag_resource(ResourceArn=arn, Tags=[{"Key": "aws:x", "Value": ""}])
    )
    assert code == "ValidationException"
    many = [{"Key": f"k{i}", "Value": ""} for i in range(50)]
    assert _error(lambda: c.tag_resource(ResourceArn=arn, Tags=many))[0] == "LimitExceededException"
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "prod"}]
    missing = arn.replace("table/Users", "table/Nope")
    assert _error(lambda: c.list_tags_of_resource(ResourceArn=missing)) == (
        "ResourceNotFoundException",
        f"Requested resource not found: ResourcArn: {missing} not found",
    )


def test_describe_table_reports_size_count_and_capacity_decreases(served: Served) -> None:
    c = served.client()
    _table(
        c,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 10},
    )
    _put(c, "a")
    desc = c.describe_table(TableName="Users")["Table"]
    assert desc["ItemCount"] == 1 and desc["TableSizeBytes"] > 0
    assert desc["TableArn"].endswith(":table/Users") and desc["TableId"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
    assert desc["ProvisionedThroughput"]["NumberOfDecreasesToday"] == 0
    c.update_table(
        TableName="Users",
        ProvisionedThroughput={"ReadCapacityUnits": 20, "WriteCapacityUnits": 20},
    )
    c.update_table(
        TableName="Users",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 20},
    )
    desc = c.describe_table(TableName="Users")["Table"]
    assert desc["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert desc["ProvisionedThroughput"]["NumberOfDecreasesToday"] == 1
    c.update_table(TableName="Users", BillingMode="PAY_PER_REQUEST")
    desc = c.describe_table(TableName="Users")["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_return_consumed_capacity_on_batches_and_transactions(served: Served) -> None:
    c = served.client()
    _table(c)
    _table(c, "Other")
    got = c.batch_write_item(
        RequestItems={
            "Users": [{"PutRequest": {"Item": {"id": {"S": "a"}}}}],
            "Other": [{"PutRequest": {"Item": {"id": {"S": "b"}}}}],
        },
        ReturnConsumedCapacity="TOTAL",
    )
    assert got["ConsumedCapacity"] == [
        {"TableName": "Users", "CapacityUnits": 1.0, "WriteCapacityUnits": 1.0},
        {"TableName": "Other", "CapacityUnits": 1.0, "WriteCapacityUnits": 1.0},
    ]
    got = c.batch_get_item(
        RequestItems={"Users": {"Keys": [{"id": {"S": "a"}}], "ConsistentRead": True}},
        ReturnConsumedCapacity="TOTAL",
    )
    assert got["ConsumedCapacity"] == [
        {"TableName": "Users", "CapacityUnits": 1.0, "ReadCapacityUnits": 1.0}
    ]
    got = c.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "Users", "Item": {"id": {"S": "c"}}}},
            {"Put": {"TableName": "Other", "Item": {"id": {"S": "d"}}}},
        ],
        ReturnConsumedCapacity="TOTAL",
    )
    assert [cap["TableName"] for cap in got["ConsumedCapacity"]] == ["Users", "Other"]
    assert all(cap["WriteCapacityUnits"] > 0 for cap in got["ConsumedCapacity"])
    got = c.transact_get_items(
        TransactItems=[{"Get": {"TableName": "Other", "Key": {"id": {"S": "d"}}}}],
        ReturnConsumedCapacity="TOTAL",
    )
    assert [cap["TableName"] for cap in got["ConsumedCapacity"]] == ["Other"]
    assert "ConsumedCapacity" not in c.batch_get_item(
        RequestItems={"Users": {"Keys": [{"id": {"S": "a"}}]}}
    )
