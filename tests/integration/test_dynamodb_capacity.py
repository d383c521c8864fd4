"""ReturnConsumedCapacity figures and the batch operations' limits and errors: where the
endpoint used to answer differently from DynamoDB. Each test is one difference, fixed,
driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _table, served

__all__ = ("served",)

KB = 1024
NO_MATCH = "The provided key element does not match the schema"


def _raw(served: Served) -> Any:
    """A client that sends what it is given (boto3 would refuse empty lists itself) and
    does not retry a throttled call."""
    return served.client(
        config=Config(parameter_validation=False, retries={"max_attempts": 1, "mode": "standard"})
    )


def _sized(key: str, size: int) -> dict[str, Any]:
    """An item of table ``Users`` whose DynamoDB size is exactly ``size`` bytes."""
    filler = size - len("id") - len(key) - len("pad")
    return {"id": {"S": key}, "pad": {"S": "x" * filler}}


def _units(out: Any) -> float:
    return float(out["ConsumedCapacity"]["CapacityUnits"])


# --- what a read or a write costs -------------------------------------------------------


def test_get_item_is_charged_per_4kb_of_the_whole_item(served: Served) -> None:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item=_sized("edge", 4 * KB))
    c.put_item(TableName="Users", Item=_sized("past", 4 * KB + 1))

    def get(key: str, **kw: Any) -> float:
        return _units(
            c.get_item(
                TableName="Users", Key={"id": {"S": key}}, ReturnConsumedCapacity="TOTAL", **kw
            )
        )

    assert get("edge", ConsistentRead=True) == 1.0
    assert get("past", ConsistentRead=True) == 2.0
    assert get("past") == 1.0  # eventually consistent: half
    # the units are those of the item read, not of the attributes returned
    assert get("past", ConsistentRead=True, ProjectionExpression="id") == 2.0
    assert get("missing", ConsistentRead=True) == 1.0


def test_transact_get_items_costs_two_units_per_4kb_read(served: Served) -> None:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item=_sized("big", 5 * KB))
    out = c.transact_get_items(
        TransactItems=[
            {"Get": {"TableName": "Users", "Key": {"id": {"S": "big"}}}},  # 2 blocks
            {"Get": {"TableName": "Users", "Key": {"id": {"S": "none"}}}},  # 1 block
        ],
        ReturnConsumedCapacity="TOTAL",
    )
    assert out["ConsumedCapacity"] == [
        {"TableName": "Users", "CapacityUnits": 6.0, "ReadCapacityUnits": 6.0}
    ]


def test_a_write_that_leaves_an_index_entry_as_it_was_costs_the_index_nothing(
    served: Served,
) -> None:
    c = served.client()
    _table(
        c,
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "team", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByTeam",
                "KeySchema": [{"AttributeName": "team", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    key = {"id": {"S": "a"}}
    c.put_item(TableName="Users", Item={**key, "team": {"S": "red"}})

    def update(expression: str, value: str) -> Any:
        return c.update_item(
            TableName="Users",
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeValues={":v": {"S": value}},
            ReturnConsumedCapacity="INDEXES",
        )["ConsumedCapacity"]

    # an attribute the index does not project: the index is not written
    cap = update("SET note = :v", "hello")
    assert cap["CapacityUnits"] == 1.0
    assert "GlobalSecondaryIndexes" not in cap
    # its key changes: the old entry is removed and a new one written
    cap = update("SET team = :v", "blue")
    assert cap["GlobalSecondaryIndexes"] == {"ByTeam": {"CapacityUnits": 2.0}}


def test_a_bad_return_consumed_capacity_is_refused_in_dynamodb_words(served: Served) -> None:
    c = _raw(served)
    _table(c)
    assert _error(
        lambda: c.put_item(
            TableName="Users", Item={"id": {"S": "a"}}, ReturnConsumedCapacity="DUMMY"
        )
    ) == (
        "ValidationException",
        "1 validation error detected: Value 'DUMMY' at 'returnConsumedCapacity' failed to "
        "satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]",
    )
    assert "Item" not in c.get_item(TableName="Users", Key={"id": {"S": "a"}})
    # nor does an update or a delete happen before the refusal
    key = {"id": {"S": "b"}}
    c.put_item(TableName="Users", Item={**key, "n": {"N": "1"}})
    for call in (
        lambda: c.update_item(
            TableName="Users", Key=key, UpdateExpression="REMOVE n", ReturnConsumedCapacity="x"
        ),
        lambda: c.delete_item(TableName="Users", Key=key, ReturnConsumedCapacity="x"),
    ):
        assert _error(call)[0] == "ValidationException"
    assert c.get_item(TableName="Users", Key=key)["Item"] == {**key, "n": {"N": "1"}}


# --- batch limits and errors ------------------------------------------------------------


def test_empty_request_items_are_refused_in_dynamodb_words(served: Served) -> None:
    c = _raw(served)
    words = (
        "ValidationException",
        "1 validation error detected: Value '{}' at 'requestItems' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1",
    )
    assert _error(lambda: c.batch_write_item(RequestItems={})) == words
    assert _error(lambda: c.batch_get_item(RequestItems={})) == words


def test_a_batch_table_with_no_requests_is_refused_in_dynamodb_words(served: Served) -> None:
    c = _raw(served)
    _table(c)
    assert _error(lambda: c.batch_write_item(RequestItems={"Users": []})) == (
        "ValidationException",
        "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
        "Map value must satisfy constraint: [Member must have length less than or equal to "
        "25, Member must have length greater than or equal to 1]",
    )
    assert _error(lambda: c.batch_get_item(RequestItems={"Users": {"Keys": []}})) == (
        "ValidationException",
        "1 validation error detected: Value '[]' at 'requestItems.Users.member.keys' failed "
        "to satisfy constraint: Member must have length greater than or equal to 1",
    )
    assert _error(lambda: c.batch_get_item(RequestItems={"Users": {}})) == (
        "ValidationException",
        "1 validation error detected: Value null at 'requestItems.Users.member.keys' failed "
        "to satisfy constraint: Member must not be null",
    )


def test_batch_write_counts_25_writes_over_all_its_tables(served: Served) -> None:
    c = served.client()
    _table(c)
    _table(c, "Other")

    def puts(n: int) -> list[Any]:
        return [{"PutRequest": {"Item": {"id": {"S": f"k{i}"}}}} for i in range(n)]

    assert _error(
        lambda: c.batch_write_item(RequestItems={"Users": puts(13), "Other": puts(13)})
    ) == ("ValidationException", "Too many items requested for the BatchWriteItem call")
    assert c.scan(TableName="Users")["Count"] == 0
    out = c.batch_write_item(RequestItems={"Users": puts(13), "Other": puts(12)})
    assert out["UnprocessedItems"] == {}
    assert c.scan(TableName="Other")["Count"] == 12


def test_batch_get_key_limits_come_before_the_tables(served: Served) -> None:
    c = served.client()
    keys = [{"id": {"S": f"k{i}"}} for i in range(101)]
    # too many for one table: its member's constraint
    assert _error(lambda: c.batch_get_item(RequestItems={"Nope": {"Keys": keys}})) == (
        "ValidationException",
        "1 validation error detected: Value at 'requestItems.Nope.member.keys' failed to "
        "satisfy constraint: Member must have length less than or equal to 100",
    )
    # too many over the tables: refused before any table is looked for
    request = {"Nope": {"Keys": keys[:100]}, "Gone": {"Keys": keys[100:]}}
    assert _error(lambda: c.batch_get_item(RequestItems=request)) == (
        "ValidationException",
        "Too many items requested for the BatchGetItem call",
    )


def test_a_write_request_needs_exactly_one_action(served: Served) -> None:
    c = _raw(served)
    _table(c)
    words = (
        "ValidationException",
        "Supplied AttributeValue has more than one datatypes set, must contain exactly one "
        "of the supported datatypes",
    )
    both = {
        "PutRequest": {"Item": {"id": {"S": "a"}}},
        "DeleteRequest": {"Key": {"id": {"S": "a"}}},
    }
    assert _error(lambda: c.batch_write_item(RequestItems={"Users": [both]})) == words
    assert _error(lambda: c.batch_write_item(RequestItems={"Users": [{}]})) == words
    assert _error(lambda: c.batch_write_item(RequestItems={"Users": [{"PutRequest": {}}]})) == (
        "ValidationException",
        "1 validation error detected: Value null at 'requestItems.Users.member.1.member."
        "putRequest.item' failed to satisfy constraint: Member must not be null",
    )
    assert c.scan(TableName="Users")["Count"] == 0


def test_batch_write_items_that_miss_the_key_schema_write_nothing(served: Served) -> None:
    c = served.client()
    _table(c)

    def write(*items: dict[str, Any]) -> tuple[str, str]:
        requests = [{"PutRequest": {"Item": item}} for item in items]
        return _error(lambda: c.batch_write_item(RequestItems={"Users": requests}))

    good = {"id": {"S": "good"}}
    assert write(good, {"id": {"N": "3"}}) == ("ValidationException", NO_MATCH)
    assert write(good, {"other": {"S": "x"}}) == ("ValidationException", NO_MATCH)
    assert "Item" not in c.get_item(TableName="Users", Key=good)


def test_a_bad_write_in_one_batch_table_leaves_the_other_tables_unwritten(
    served: Served,
) -> None:
    c = served.client()
    _table(c)
    _table(
        c,
        "Orders",
        sort=True,
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "team", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByTeam",
                "KeySchema": [{"AttributeName": "team", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    first = {"PutRequest": {"Item": {"id": {"S": "first"}}}}
    bad_index_key = {
        "PutRequest": {"Item": {"id": {"S": "o"}, "n": {"N": "1"}, "team": {"N": "7"}}}
    }
    code, message = _error(
        lambda: c.batch_write_item(RequestItems={"Users": [first], "Orders": [bad_index_key]})
    )
    assert (code, message) == (
        "ValidationException",
        "One or more parameter values were invalid: Type mismatch for Index Key team "
        "Expected: S Actual: N IndexName: ByTeam",
    )
    long_key = {"DeleteRequest": {"Key": {"id": {"S": "x" * 2049}, "n": {"N": "1"}}}}
    assert _error(
        lambda: c.batch_write_item(RequestItems={"Users": [first], "Orders": [long_key]})
    ) == (
        "ValidationException",
        "One or more parameter values were invalid: Size of hashkey has exceeded the maximum "
        "size limit of2048 bytes",
    )
    assert "Item" not in c.get_item(TableName="Users", Key={"id": {"S": "first"}})


def test_batch_table_names_are_checked_as_dynamodb_does(served: Served) -> None:
    c = _raw(served)
    map_keys = (
        "Value at 'requestItems' failed to satisfy constraint: Map keys must satisfy "
        "constraint: [Member must have length less than or equal to 255, Member must have "
        "length greater than or equal to 3, Member must satisfy regular expression pattern: "
        "[a-zA-Z0-9_.-]+]"
    )
    assert _error(lambda: c.batch_get_item(RequestItems={"a": {"Keys": [{"id": {"S": "x"}}]}})) == (
        "ValidationException",
        f"1 validation error detected: {map_keys}",
    )
    # every shape error of the request, in one message
    code, message = _error(
        lambda: c.batch_write_item(
            RequestItems={"a": []},
            ReturnConsumedCapacity="hi",
            ReturnItemCollectionMetrics="hi",
        )
    )
    assert code == "ValidationException"
    assert message.startswith(
        "4 validation errors detected: Value 'hi' at 'returnConsumedCapacity' failed to "
        "satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]; "
        "Value 'hi' at 'returnItemCollectionMetrics' failed to satisfy constraint: Member "
        f"must satisfy enum value set: [SIZE, NONE]; {map_keys}; "
    )


# --- throttled batches ------------------------------------------------------------------


def _provisioned(c: Any, name: str, *, read: int = 1, write: int = 1) -> None:
    _table(
        c,
        name,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write},
    )


def test_a_throttled_batch_get_returns_what_it_read_and_the_rest_as_unprocessed_keys(
    served: Served,
) -> None:
    c = _raw(served)
    _provisioned(c, "Slow", write=100)
    keys = [{"id": {"S": f"k{i}"}} for i in range(3)]
    for key in keys:
        c.put_item(TableName="Slow", Item={**key, "pad": {"S": "x" * 5 * KB}})
    # a new table has one second of capacity: one read unit, and a strongly consistent
    # read of a 5 KB item takes two
    out = c.batch_get_item(RequestItems={"Slow": {"Keys": keys, "ConsistentRead": True}})
    got = out["Responses"]["Slow"]
    left = out["UnprocessedKeys"]["Slow"]
    assert 1 <= len(got) < 3
    assert left["ConsistentRead"] is True
    assert sorted(i["id"]["S"] for i in got) + [k["id"]["S"] for k in left["Keys"]] == [
        "k0",
        "k1",
        "k2",
    ]


def test_a_batch_write_that_could_write_nothing_is_throttled(served: Served) -> None:
    c = _raw(served)
    _provisioned(c, "Slow")
    _table(c)
    puts = [{"PutRequest": {"Item": {"id": {"S": f"k{i}"}}}} for i in range(3)]
    # three writes need three units; the new table has one
    with pytest.raises(ClientError) as err:
        c.batch_write_item(RequestItems={"Slow": puts})
    assert err.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    # with another table written, the throttled one is left as UnprocessedItems
    out = c.batch_write_item(RequestItems={"Slow": puts, "Users": puts[:1]})
    assert out["UnprocessedItems"] == {"Slow": puts}
    assert c.scan(TableName="Users")["Count"] == 1
