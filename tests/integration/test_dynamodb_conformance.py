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


def test_list_streams_pages_and_keeps_a_deleted_tables_stream(served: Served) -> None:
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
    bbb = first["Streams"][1]["StreamArn"]
    _put(c, "last", "Bbb")
    c.delete_table(TableName="Bbb")
    # as DynamoDB: a deleted table's stream goes DISABLED and stays for 24 hours
    assert [s["TableName"] for s in streams.list_streams()["Streams"]] == ["Aaa", "Bbb", "Ccc"]
    assert [s["StreamArn"] for s in streams.list_streams(TableName="Bbb")["Streams"]] == [bbb]
    desc = streams.describe_stream(StreamArn=bbb)["StreamDescription"]
    assert desc["StreamStatus"] == "DISABLED" and desc["TableName"] == "Bbb"
    assert desc["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in desc["Shards"])

    def last_records() -> list[str]:
        got = []
        for shard in streams.describe_stream(StreamArn=bbb)["StreamDescription"]["Shards"]:
            it: Any = streams.get_shard_iterator(
                StreamArn=bbb, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while it:
                page = streams.get_records(ShardIterator=it)
                got += [r["dynamodb"]["Keys"]["id"]["S"] for r in page["Records"]]
                it = page.get("NextShardIterator")
        return got

    _eventually(lambda: last_records() == ["last"])  # read to the end: closed shards
    # a table made again under the name has its own stream; the old one stays listed
    _table(c, "Bbb", StreamSpecification=spec)
    again = c.describe_table(TableName="Bbb")["Table"]["LatestStreamArn"]
    listed = [s["StreamArn"] for s in streams.list_streams(TableName="Bbb")["Streams"]]
    assert sorted(listed) == sorted([bbb, again]) and again != bbb
    assert streams.describe_stream(StreamArn=again)["StreamDescription"]["StreamStatus"] == (
        "ENABLED"
    )
    c.delete_table(TableName="Aaa")
    c.delete_table(TableName="NoStream")  # no stream: nothing kept
    assert "NoStream" not in {s["TableName"] for s in streams.list_streams()["Streams"]}
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
    assert (code, msg) == (
        "ValidationException",
        f"The Tag Key provided is invalid, Key: {'k' * 129}",
    )
    code, msg = _error(
        lambda: raw.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v" * 257}])
    )
    assert (code, msg) == (
        "ValidationException",
        f"The Tag Value provided is invalid, Value: {'v' * 257}",
    )
    code, _ = _error(
        lambda: raw.tag_resource(ResourceArn=arn, Tags=[{"Key": "aws:x", "Value": ""}])
    )
    assert code == "ValidationException"
    many = [{"Key": f"k{i}", "Value": ""} for i in range(50)]
    assert _error(lambda: c.tag_resource(ResourceArn=arn, Tags=many)) == (
        "ValidationException",
        "Number of Tags exceed the current limit for the provided ResourceArn",
    )
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


# --- local secondary index item collections (issue #12, part A) ---------------------------


def _lsi_table(c: Any, name: str = "Orders") -> None:
    c.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "id", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "t", "AttributeType": "N"},
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "ByT",
                "KeySchema": [
                    {"AttributeName": "id", "KeyType": "HASH"},
                    {"AttributeName": "t", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def small_collections(tmp_path: Path) -> Iterator[Served]:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/api.db",
        log=f"local://{tmp_path}/log?poll_interval=0.02",
        namespace=f"conf{uuid.uuid4().hex[:8]}",
        topic_partitions=2,
        item_collection_limit=2_000,
    )
    with Served(app) as s:
        yield s


def test_item_collection_size_limit_exceeded(small_collections: Served) -> None:
    c = small_collections.client()
    _lsi_table(c)
    pad = {"S": "x" * 500}
    for i in range(2):
        c.put_item(TableName="Orders", Item={"id": {"S": "a"}, "n": {"N": str(i)}, "p": pad})
    code, message = _error(
        lambda: c.put_item(
            TableName="Orders",
            Item={"id": {"S": "a"}, "n": {"N": "9"}, "t": {"N": "1"}, "p": pad},
        )
    )
    assert (code, message) == (
        "ItemCollectionSizeLimitExceededException",
        "Collection size exceeded.",
    )
    assert "Item" not in c.get_item(TableName="Orders", Key={"id": {"S": "a"}, "n": {"N": "9"}})
    code, _ = _error(
        lambda: c.batch_write_item(
            RequestItems={
                "Orders": [
                    {"PutRequest": {"Item": {"id": {"S": "a"}, "n": {"N": str(i)}, "p": pad}}}
                    for i in range(5, 9)
                ]
            }
        )
    )
    assert code == "ItemCollectionSizeLimitExceededException"
    with pytest.raises(ClientError) as err:
        c.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "Orders", "Item": {"id": {"S": "b"}, "n": {"N": "1"}}}},
                {
                    "Put": {
                        "TableName": "Orders",
                        "Item": {"id": {"S": "a"}, "n": {"N": "7"}, "t": {"N": "1"}, "p": pad},
                    }
                },
            ]
        )
    reasons = err.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "ItemCollectionSizeLimitExceeded"]
    # another partition key value is another collection
    c.put_item(TableName="Orders", Item={"id": {"S": "b"}, "n": {"N": "1"}, "p": pad})


def test_return_item_collection_metrics_size(served: Served) -> None:
    c = served.client()
    _lsi_table(c)
    _table(c, "Plain")
    metrics = {"ItemCollectionKey": {"id": {"S": "a"}}, "SizeEstimateRangeGB": [0.0, 1.0]}
    item = {"id": {"S": "a"}, "n": {"N": "1"}, "t": {"N": "2"}}
    out = c.put_item(TableName="Orders", Item=item, ReturnItemCollectionMetrics="SIZE")
    assert out["ItemCollectionMetrics"] == metrics
    assert "ItemCollectionMetrics" not in c.put_item(TableName="Orders", Item=item)
    out = c.update_item(
        TableName="Orders",
        Key={"id": {"S": "a"}, "n": {"N": "1"}},
        UpdateExpression="SET x = :x",
        ExpressionAttributeValues={":x": {"S": "y"}},
        ReturnItemCollectionMetrics="SIZE",
    )
    assert out["ItemCollectionMetrics"] == metrics
    out = c.delete_item(
        TableName="Orders",
        Key={"id": {"S": "a"}, "n": {"N": "1"}},
        ReturnItemCollectionMetrics="SIZE",
    )
    assert out["ItemCollectionMetrics"] == metrics
    out = c.batch_write_item(
        RequestItems={
            "Orders": [{"PutRequest": {"Item": item}}],
            "Plain": [{"PutRequest": {"Item": {"id": {"S": "p"}}}}],
        },
        ReturnItemCollectionMetrics="SIZE",
    )
    assert out["ItemCollectionMetrics"] == {"Orders": [metrics]}
    out = c.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "Orders", "Item": item}},
            {"Put": {"TableName": "Plain", "Item": {"id": {"S": "q"}}}},
        ],
        ReturnItemCollectionMetrics="SIZE",
    )
    assert out["ItemCollectionMetrics"] == {"Orders": [metrics]}
    # tables without local indexes have no item collection metrics
    out = c.put_item(TableName="Plain", Item={"id": {"S": "z"}}, ReturnItemCollectionMetrics="SIZE")
    assert "ItemCollectionMetrics" not in out
    code, message = _error(
        lambda: c.put_item(
            TableName="Plain", Item={"id": {"S": "z"}}, ReturnItemCollectionMetrics="ALL"
        )
    )
    assert code == "ValidationException"
    assert "returnItemCollectionMetrics" in message


# --- batches, legacy parameters and key limits (issue #12, items 5 and 6) -------------------


def test_batches_refuse_duplicate_keys_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    key = {"id": {"S": "a"}, "n": {"N": "1"}}
    same = {"id": {"S": "a"}, "n": {"N": "1.0"}}  # the same number, written otherwise
    duplicates = ("ValidationException", "Provided list of item keys contains duplicates")
    assert (
        _error(lambda: c.batch_get_item(RequestItems={"Users": {"Keys": [key, same]}}))
        == duplicates
    )
    assert (
        _error(
            lambda: c.batch_write_item(
                RequestItems={
                    "Users": [
                        {"PutRequest": {"Item": {**key, "v": {"S": "x"}}}},
                        {"DeleteRequest": {"Key": same}},
                    ]
                }
            )
        )
        == duplicates
    )
    assert "Item" not in c.get_item(TableName="Users", Key=key)  # nothing written
    # one key in two tables is two items
    _table(c, "Other", sort=True)
    out = c.batch_get_item(RequestItems={"Users": {"Keys": [key]}, "Other": {"Keys": [key]}})
    assert out["Responses"] == {"Users": [], "Other": []}


def test_batch_get_item_refuses_attributes_to_get_with_a_projection(served: Served) -> None:
    c = served.client()
    _table(c)
    code, message = _error(
        lambda: c.batch_get_item(
            RequestItems={
                "Users": {
                    "Keys": [{"id": {"S": "a"}}],
                    "ProjectionExpression": "id",
                    "AttributesToGet": ["id"],
                }
            }
        )
    )
    assert code == "ValidationException"
    assert message.startswith("Can not use both expression and non-expression parameters")


def test_key_size_limits_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    c.create_table(
        TableName="Texts",
        KeySchema=[
            {"AttributeName": "id", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    hash_message = (
        "One or more parameter values were invalid: Size of hashkey has exceeded the maximum "
        "size limit of2048 bytes"
    )
    range_message = (
        "One or more parameter values were invalid: Aggregated size of all range keys has "
        "exceeded the size limit of 1024 bytes"
    )
    long_hash = {"id": {"S": "x" * 2049}, "n": {"S": "a"}}
    long_range = {"id": {"S": "a"}, "n": {"S": "x" * 1025}}
    assert _error(lambda: c.put_item(TableName="Texts", Item=long_hash)) == (
        "ValidationException",
        hash_message,
    )
    assert _error(lambda: c.get_item(TableName="Texts", Key=long_hash)) == (
        "ValidationException",
        hash_message,
    )
    assert _error(lambda: c.put_item(TableName="Texts", Item=long_range)) == (
        "ValidationException",
        range_message,
    )
    assert _error(lambda: c.delete_item(TableName="Texts", Key=long_range)) == (
        "ValidationException",
        range_message,
    )
    # at the limits: accepted
    c.put_item(TableName="Texts", Item={"id": {"S": "x" * 2048}, "n": {"S": "y" * 1024}})


def test_updated_new_and_updated_old_return_the_updated_paths(served: Served) -> None:
    c = served.client()
    _table(c)
    key = {"id": {"S": "a"}}
    c.put_item(
        TableName="Users",
        Item={
            **key,
            "a": {"M": {"b": {"N": "1"}, "c": {"N": "2"}}},
            "l": {"L": [{"N": "1"}, {"N": "2"}]},
            "v": {"N": "5"},
        },
    )
    out = c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="SET a.b = :v, l[1] = :v, v = :v",
        ExpressionAttributeValues={":v": {"N": "9"}},
        ReturnValues="UPDATED_NEW",
    )
    assert out["Attributes"] == {
        "a": {"M": {"b": {"N": "9"}}},
        "l": {"L": [{"N": "9"}]},
        "v": {"N": "9"},
    }
    out = c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="SET a.c = :v REMOVE l[0]",
        ExpressionAttributeValues={":v": {"N": "10"}},
        ReturnValues="UPDATED_OLD",
    )
    assert out["Attributes"] == {"a": {"M": {"c": {"N": "2"}}}, "l": {"L": [{"N": "1"}]}}
    # a path that did not exist before has no old value
    out = c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="SET a.d = :v",
        ExpressionAttributeValues={":v": {"N": "1"}},
        ReturnValues="UPDATED_OLD",
    )
    assert "Attributes" not in out


def test_update_arithmetic_out_of_range_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c)
    key = {"id": {"S": "a"}}
    top = "9.9999999999999999999999999999999999999E+125"
    c.put_item(TableName="Users", Item={**key, "n": {"N": top}, "s": {"N": "1E+37"}})
    overflow = (
        "ValidationException",
        "Number overflow. Attempting to store a number with magnitude larger than supported range",
    )
    assert (
        _error(
            lambda: c.update_item(
                TableName="Users",
                Key=key,
                UpdateExpression="SET n = n + :v",
                ExpressionAttributeValues={":v": {"N": "1E+125"}},
            )
        )
        == overflow
    )
    assert (
        _error(
            lambda: c.update_item(
                TableName="Users",
                Key=key,
                UpdateExpression="ADD n :v",
                ExpressionAttributeValues={":v": {"N": top}},
            )
        )
        == overflow
    )
    assert (
        _error(
            lambda: c.update_item(
                TableName="Users",
                Key=key,
                UpdateExpression="SET s = s + :v",
                ExpressionAttributeValues={":v": {"N": "0.1"}},
            )
        )
        == overflow
    )  # DynamoDB calls a result past 38 digits an overflow too
    got = c.get_item(TableName="Users", Key=key)["Item"]
    assert got["n"] == {"N": "9" * 38 + "0" * 88} and got["s"] == {"N": "1" + "0" * 37}


def test_batch_get_item_returns_at_most_16_mb_and_the_rest_as_unprocessed(
    served: Served,
) -> None:
    c = served.client()
    _table(c)
    big = "x" * (390 * 1024)
    keys = [{"id": {"S": f"k{i:02}"}} for i in range(50)]  # about 19 MB in all
    for k in keys:
        c.put_item(TableName="Users", Item={**k, "big": {"S": big}})
    request = {"Users": {"Keys": keys, "ConsistentRead": True}}
    got = c.batch_get_item(RequestItems=request)
    first = got["Responses"]["Users"]
    assert 0 < len(first) < 50
    assert sum(len(i["big"]["S"]) for i in first) <= 16 * 1024 * 1024
    rest = got["UnprocessedKeys"]["Users"]
    assert rest["ConsistentRead"] is True
    assert len(rest["Keys"]) == 50 - len(first)
    again = c.batch_get_item(RequestItems=got["UnprocessedKeys"])
    assert again["UnprocessedKeys"] == {}
    ids = {i["id"]["S"] for i in first + again["Responses"]["Users"]}
    assert ids == {k["id"]["S"] for k in keys}


def test_expression_size_limit_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c)
    expression = "id" + ", id" * 1400
    code, message = _error(
        lambda: c.get_item(
            TableName="Users", Key={"id": {"S": "a"}}, ProjectionExpression=expression
        )
    )
    assert code == "ValidationException"
    assert message == (
        "Invalid ProjectionExpression: Expression size has exceeded the maximum allowed size; "
        f"expression size: {len(expression)}"
    )


def test_placeholders_only_with_expressions(served: Served) -> None:
    c = served.client()
    _table(c)
    key = {"id": {"S": "a"}}
    values = (
        "ValidationException",
        "ExpressionAttributeValues can only be specified when using expressions",
    )
    names = (
        "ValidationException",
        "ExpressionAttributeNames can only be specified when using expressions",
    )
    assert (
        _error(
            lambda: c.put_item(
                TableName="Users", Item=key, ExpressionAttributeValues={":a": {"N": "1"}}
            )
        )
        == values
    )
    assert (
        _error(
            lambda: c.put_item(
                TableName="Users",
                Item=key,
                Expected={"v": {"Exists": False}},
                ExpressionAttributeValues={":a": {"N": "1"}},
            )
        )
        == values
    )
    assert (
        _error(
            lambda: c.get_item(
                TableName="Users",
                Key=key,
                AttributesToGet=["v"],
                ExpressionAttributeNames={"#a": "v"},
            )
        )
        == names
    )
    # with an expression, an unused placeholder is refused in other words
    _, message = _error(
        lambda: c.get_item(
            TableName="Users",
            Key=key,
            ProjectionExpression="id",
            ExpressionAttributeNames={"#a": "v"},
        )
    )
    assert message.startswith("Value provided in ExpressionAttributeNames unused in expressions")


def test_key_and_transaction_errors_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c)
    schema = ("ValidationException", "The provided key element does not match the schema")
    assert _error(lambda: c.get_item(TableName="Users", Key={"x": {"S": "a"}})) == schema
    assert (
        _error(lambda: c.get_item(TableName="Users", Key={"id": {"S": "a"}, "x": {"S": "b"}}))
        == schema
    )
    assert _error(lambda: c.delete_item(TableName="Users", Key={"x": {"S": "a"}})) == schema
    # a key argument of the wrong type does not match the schema either (an item's is a
    # type mismatch)
    wrong = {"id": {"N": "1"}}
    assert _error(lambda: c.get_item(TableName="Users", Key=wrong)) == schema
    assert _error(lambda: c.delete_item(TableName="Users", Key=wrong)) == schema
    assert (
        _error(
            lambda: c.update_item(
                TableName="Users",
                Key=wrong,
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"N": "1"}},
            )
        )
        == schema
    )
    assert _error(lambda: c.batch_get_item(RequestItems={"Users": {"Keys": [wrong]}})) == schema
    assert _error(lambda: c.put_item(TableName="Users", Item=wrong)) == (
        "ValidationException",
        "One or more parameter values were invalid: Type mismatch for key id expected: S actual: N",
    )
    assert _error(lambda: c.put_item(TableName="Users", Item={"x": {"S": "a"}})) == (
        "ValidationException",
        "One or more parameter values were invalid: Missing the key id in the item",
    )
    key = {"id": {"S": "a"}}
    assert _error(
        lambda: c.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "Users", "Item": key}},
                {"Delete": {"TableName": "Users", "Key": key}},
            ]
        )
    ) == (
        "ValidationException",
        "Transaction request cannot include multiple operations on one item",
    )
