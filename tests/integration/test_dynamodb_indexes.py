"""Secondary indexes through the DynamoDB endpoint, driven by boto3, on both storage
engines (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import streamkit as sk
from tests import postgres_env
from tests.integration.test_dynamodb_api import Served


@pytest.fixture(params=["sqlite", postgres_env.postgres_param()])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/api.db"
    else:
        server = postgres_env.postgres_url()
        assert server is not None
        url = asyncio.run(postgres_env.fresh_database(server))
    app = sk.App(storage=url, log=f"local://{tmp_path}/log", namespace=f"ix{uuid.uuid4().hex[:8]}")
    try:
        with Served(app) as s:
            yield s
    finally:
        if request.param != "sqlite":
            asyncio.run(postgres_env.drop_database(url))


def _orders(c: Any, **extra: Any) -> None:
    c.create_table(
        TableName="Orders",
        KeySchema=[
            {"AttributeName": "UserID", "KeyType": "HASH"},
            {"AttributeName": "OrderDate", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "UserID", "AttributeType": "S"},
            {"AttributeName": "OrderDate", "AttributeType": "S"},
            {"AttributeName": "Status", "AttributeType": "S"},
            {"AttributeName": "Total", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByStatus",
                "KeySchema": [
                    {"AttributeName": "Status", "KeyType": "HASH"},
                    {"AttributeName": "Total", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["Item"]},
            }
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "ByTotal",
                "KeySchema": [
                    {"AttributeName": "UserID", "KeyType": "HASH"},
                    {"AttributeName": "Total", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def _put(c: Any, i: int) -> None:
    c.put_item(
        TableName="Orders",
        Item={
            "UserID": {"S": f"u{i % 3}"},
            "OrderDate": {"S": f"2026-01-{i:02d}"},
            "Status": {"S": "SHIPPED" if i % 2 else "NEW"},
            "Total": {"N": str(i * 10)},
            "Item": {"S": f"x{i}"},
            "Note": {"S": "n"},
        },
    )


def test_create_describe_query_and_scan_indexes(served: Served) -> None:
    c = served.client()
    _orders(c)
    for i in range(10):
        _put(c, i)
    t = c.describe_table(TableName="Orders")["Table"]
    gsi = t["GlobalSecondaryIndexes"][0]
    assert gsi["IndexName"] == "ByStatus"
    assert gsi["IndexStatus"] == "ACTIVE"
    assert gsi["ItemCount"] == 10 and gsi["IndexSizeBytes"] > 0
    assert gsi["IndexArn"].endswith("table/Orders/index/ByStatus")
    assert gsi["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["Item"]}
    lsi = t["LocalSecondaryIndexes"][0]
    assert lsi["IndexName"] == "ByTotal" and lsi["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert {a["AttributeName"] for a in t["AttributeDefinitions"]} == {
        "UserID", "OrderDate", "Status", "Total",
    }  # fmt: skip

    r = c.query(
        TableName="Orders",
        IndexName="ByStatus",
        KeyConditionExpression="#s = :s AND #t > :t",
        ExpressionAttributeNames={"#s": "Status", "#t": "Total"},
        ExpressionAttributeValues={":s": {"S": "SHIPPED"}, ":t": {"N": "20"}},
    )
    assert [i["Total"]["N"] for i in r["Items"]] == ["30", "50", "70", "90"]
    assert set(r["Items"][0]) == {"UserID", "OrderDate", "Status", "Total", "Item"}
    # paging with a LastEvaluatedKey holding the index's and the table's keys
    got, start = [], None
    while True:
        kw = {"ExclusiveStartKey": start} if start else {}
        r = c.query(
            TableName="Orders",
            IndexName="ByStatus",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues={":s": {"S": "NEW"}},
            Limit=2,
            ScanIndexForward=False,
            **kw,
        )
        got += [i["Total"]["N"] for i in r["Items"]]
        start = r.get("LastEvaluatedKey")
        if not start:
            break
        assert set(start) == {"UserID", "OrderDate", "Status", "Total"}
    assert got == ["80", "60", "40", "20", "0"]
    # a local index: consistent reads allowed; ALL_ATTRIBUTES fetches from the table
    r = c.query(
        TableName="Orders",
        IndexName="ByTotal",
        KeyConditionExpression="UserID = :u",
        ExpressionAttributeValues={":u": {"S": "u1"}},
        ConsistentRead=True,
        Select="ALL_ATTRIBUTES",
    )
    assert [i["Note"]["S"] for i in r["Items"]] == ["n", "n", "n"]
    r = c.scan(TableName="Orders", IndexName="ByTotal", Select="COUNT")
    assert r["Count"] == 10 and "Items" not in r
    r = c.scan(TableName="Orders", IndexName="ByStatus", Segment=0, TotalSegments=2)
    r2 = c.scan(TableName="Orders", IndexName="ByStatus", Segment=1, TotalSegments=2)
    assert r["Count"] + r2["Count"] == 10


def test_index_errors_are_dynamodbs(served: Served) -> None:
    c = served.client()
    _orders(c)
    with pytest.raises(ClientError) as e:
        c.query(
            TableName="Orders",
            IndexName="ByStatus",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues={":s": {"S": "NEW"}},
            ConsistentRead=True,
        )
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "Consistent reads are not supported on global secondary indexes" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.query(
            TableName="Orders",
            IndexName="Nope",
            KeyConditionExpression="UserID = :u",
            ExpressionAttributeValues={":u": {"S": "u"}},
        )
    assert "The table does not have the specified index: Nope" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.put_item(
            TableName="Orders",
            Item={"UserID": {"S": "u"}, "OrderDate": {"S": "d"}, "Status": {"N": "1"}},
        )
    assert "Type mismatch for Index Key Status Expected: S Actual: N" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.scan(TableName="Orders", IndexName="ByStatus", Select="ALL_ATTRIBUTES")
    assert "ALL_ATTRIBUTES is not supported for global secondary index" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.create_table(
            TableName="Bad",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "G1x",
                    "KeySchema": [{"AttributeName": "a", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    assert "not defined in AttributeDefinitions" in str(e.value)


def test_update_table_adds_a_backfilled_index_and_deletes_it(served: Served) -> None:
    c = served.client()
    c.create_table(
        TableName="Users",
        KeySchema=[{"AttributeName": "UserID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "UserID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(300):
        c.put_item(TableName="Users", Item={"UserID": {"S": f"u{i}"}, "City": {"S": f"c{i % 7}"}})
    r = c.update_table(
        TableName="Users",
        AttributeDefinitions=[{"AttributeName": "City", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "ByCity",
                    "KeySchema": [{"AttributeName": "City", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            }
        ],
    )
    assert r["TableDescription"]["GlobalSecondaryIndexes"][0]["IndexName"] == "ByCity"
    deadline = time.monotonic() + 30
    while True:
        gsi = c.describe_table(TableName="Users")["Table"]["GlobalSecondaryIndexes"][0]
        if gsi["IndexStatus"] == "ACTIVE":
            break
        assert gsi.get("Backfilling") is True
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = c.query(
        TableName="Users",
        IndexName="ByCity",
        KeyConditionExpression="City = :c",
        ExpressionAttributeValues={":c": {"S": "c3"}},
    )
    assert r["Count"] == len([i for i in range(300) if i % 7 == 3])
    c.update_table(
        TableName="Users", GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "ByCity"}}]
    )
    assert "GlobalSecondaryIndexes" not in c.describe_table(TableName="Users")["Table"]
    with pytest.raises(ClientError) as e:
        c.update_table(
            TableName="Users", GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "ByCity"}}]
        )
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_return_consumed_capacity_indexes(served: Served) -> None:
    c = served.client()
    _orders(c)
    r = c.put_item(
        TableName="Orders",
        Item={"UserID": {"S": "u"}, "OrderDate": {"S": "d"}, "Status": {"S": "S"},
              "Total": {"N": "1"}, "Big": {"S": "x" * 3000}},
        ReturnConsumedCapacity="INDEXES",
    )  # fmt: skip
    cap = r["ConsumedCapacity"]
    assert cap["Table"] == {"CapacityUnits": 3.0}  # a 3 KB item
    assert cap["GlobalSecondaryIndexes"] == {"ByStatus": {"CapacityUnits": 1.0}}  # INCLUDE
    assert cap["LocalSecondaryIndexes"] == {"ByTotal": {"CapacityUnits": 1.0}}
    assert cap["CapacityUnits"] == 5.0
    r = c.query(
        TableName="Orders",
        IndexName="ByStatus",
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "Status"},
        ExpressionAttributeValues={":s": {"S": "S"}},
        ReturnConsumedCapacity="INDEXES",
    )
    assert r["ConsumedCapacity"]["GlobalSecondaryIndexes"] == {"ByStatus": {"CapacityUnits": 0.5}}
    assert r["ConsumedCapacity"]["Table"] == {"CapacityUnits": 0.0}
    r = c.delete_item(
        TableName="Orders",
        Key={"UserID": {"S": "u"}, "OrderDate": {"S": "d"}},
        ReturnConsumedCapacity="TOTAL",
    )
    assert r["ConsumedCapacity"]["CapacityUnits"] == 5.0
