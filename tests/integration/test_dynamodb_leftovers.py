"""Differences from DynamoDB left over by the first round of fixes: keys of transaction
actions, transaction table names and duplicate reads, nested updates under index keys,
projections naming key attributes, and request members of the wrong JSON type. Each
test is one DynamoDB behaviour, driven by boto3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.test_dynamodb_api import Served, _post
from tests.integration.test_dynamodb_conformance import _error, _table, served

__all__ = ("served",)

_MISMATCH = "The provided key element does not match the schema"
_SCALARS = (
    "Key attributes must be scalars; list random access '[]' and map lookup '.' are not "
    "allowed: IndexKey: {}"
)


def _cancelled(call: Any) -> list[dict[str, Any]]:
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    return list(err.value.response["CancellationReasons"])


def _raw(served: Served) -> Any:
    return served.client(config=Config(parameter_validation=False))


# --- keys of transaction actions ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Update", "Delete", "ConditionCheck"])
def test_transact_write_key_not_fitting_the_schema_cancels_with_schema_mismatch(
    served: Served, kind: str
) -> None:
    c = served.client()
    _table(c, sort=True)
    c.put_item(TableName="Users", Item={"id": {"S": "a"}, "n": {"N": "1"}, "v": {"S": "old"}})
    extra: dict[str, Any] = {
        "Update": {
            "UpdateExpression": "SET v = :v",
            "ExpressionAttributeValues": {":v": {"S": "x"}},
        },
        "Delete": {},
        "ConditionCheck": {"ConditionExpression": "attribute_exists(id)"},
    }[kind]
    good = {"Put": {"TableName": "Users", "Item": {"id": {"S": "b"}, "n": {"N": "2"}}}}
    for key in (
        {"id": {"S": "a"}, "n": {"S": "1"}},  # a key attribute of another type
        {"id": {"S": "a"}, "n": {"L": [{"N": "1"}]}},  # not a scalar at all
        {"id": {"S": "a"}},  # the sort key missing
        {"id": {"S": "a"}, "n": {"N": "1"}, "v": {"S": "old"}},  # a non-key attribute
    ):
        action = {kind: {"TableName": "Users", "Key": key, **extra}}
        reasons = _cancelled(lambda a=action: c.transact_write_items(TransactItems=[good, a]))
        assert reasons == [
            {"Code": "None"},
            {"Code": "ValidationError", "Message": _MISMATCH},
        ]
    # nothing was written, nothing deleted
    assert c.scan(TableName="Users")["Items"] == [
        {"id": {"S": "a"}, "n": {"N": "1"}, "v": {"S": "old"}}
    ]
    # an empty key value is refused up front, for the whole request (as DynamoDB)
    empty = {kind: {"TableName": "Users", "Key": {"id": {"S": ""}, "n": {"N": "1"}}, **extra}}
    code, message = _error(lambda: c.transact_write_items(TransactItems=[empty]))
    assert (code, message) == (
        "ValidationException",
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        "cannot contain an empty string value. Key: id",
    )


def test_transact_get_key_not_fitting_the_schema_cancels_with_schema_mismatch(
    served: Served,
) -> None:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item={"id": {"S": "a"}})
    good = {"Get": {"TableName": "Users", "Key": {"id": {"S": "a"}}}}
    for key in ({"id": {"N": "1"}}, {}, {"id": {"S": "a"}, "x": {"S": "b"}}):
        bad = {"Get": {"TableName": "Users", "Key": key}}
        reasons = _cancelled(lambda b=bad: c.transact_get_items(TransactItems=[good, b]))
        assert reasons == [
            {"Code": "None"},
            {"Code": "ValidationError", "Message": _MISMATCH},
        ]


def test_transact_get_refuses_two_reads_of_one_item(served: Served) -> None:
    c = served.client()
    _table(c)
    _table(c, "Others")
    read = {"Get": {"TableName": "Users", "Key": {"id": {"S": "a"}}}}
    assert _error(lambda: c.transact_get_items(TransactItems=[read, read])) == (
        "ValidationException",
        "Transaction request cannot include multiple operations on one item",
    )
    # the same key in another table is another item
    other = {"Get": {"TableName": "Others", "Key": {"id": {"S": "a"}}}}
    assert c.transact_get_items(TransactItems=[read, other])["Responses"] == [{}, {}]


# --- table names inside transactions ----------------------------------------------------------


def test_transaction_table_names_are_checked_naming_the_action(served: Served) -> None:
    c = served.client()
    _table(c)
    first = {"Put": {"TableName": "Users", "Item": {"id": {"S": "first"}}}}
    update = {
        "Update": {
            "TableName": "bad!name",
            "Key": {"id": {"S": "a"}},
            "UpdateExpression": "SET v = :v",
            "ExpressionAttributeValues": {":v": {"S": "x"}},
        }
    }
    pattern = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    assert _error(lambda: c.transact_write_items(TransactItems=[first, update])) == (
        "ValidationException",
        "1 validation error detected: Value 'bad!name' at "
        f"'transactItems.2.member.update.tableName' failed to satisfy constraint: {pattern}",
    )
    check = {
        "ConditionCheck": {
            "TableName": "ab",
            "Key": {"id": {"S": "a"}},
            "ConditionExpression": "attribute_exists(id)",
        }
    }
    assert _error(lambda: c.transact_write_items(TransactItems=[check])) == (
        "ValidationException",
        "1 validation error detected: Value 'ab' at "
        "'transactItems.1.member.conditionCheck.tableName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 3",
    )
    assert "Item" not in c.get_item(TableName="Users", Key={"id": {"S": "first"}})
    read = {"Get": {"TableName": "Users", "Key": {"id": {"S": "a"}}}}
    bad = {"Get": {"TableName": "bad!name", "Key": {"id": {"S": "a"}}}}
    assert _error(lambda: c.transact_get_items(TransactItems=[read, bad])) == (
        "ValidationException",
        "1 validation error detected: Value 'bad!name' at "
        f"'transactItems.2.member.get.tableName' failed to satisfy constraint: {pattern}",
    )


# --- index keys -----------------------------------------------------------------------------


def test_nested_update_under_an_index_key_is_refused_as_not_scalar(served: Served) -> None:
    c = served.client()
    _table(
        c,
        sort=True,
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "g", "AttributeType": "S"},
            {"AttributeName": "l", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByG",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "ByL",
                "KeySchema": [
                    {"AttributeName": "id", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    key = {"id": {"S": "a"}, "n": {"N": "1"}}
    c.put_item(TableName="Users", Item={**key, "g": {"S": "x"}, "l": {"S": "y"}})
    for expression, attr in (
        ("SET g.y = :v", "g"),
        ("SET #g[0] = :v", "g"),
        ("REMOVE l.deep", "l"),
        ("SET w = :v, l.y = :v", "l"),
    ):
        values = {":v": {"S": "1"}} if ":v" in expression else None
        extra: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        if "#g" in expression:
            extra["ExpressionAttributeNames"] = {"#g": "g"}
        assert _error(
            lambda e=expression, x=extra: c.update_item(
                TableName="Users", Key=key, UpdateExpression=e, **x
            )
        ) == ("ValidationException", _SCALARS.format(attr))
    assert c.get_item(TableName="Users", Key=key)["Item"] == {
        **key,
        "g": {"S": "x"},
        "l": {"S": "y"},
    }
    # a nested path under an attribute no index has as a key is fine
    c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="SET m = :m",
        ExpressionAttributeValues={":m": {"M": {"y": {"S": "0"}}}},
    )
    c.update_item(
        TableName="Users",
        Key=key,
        UpdateExpression="SET m.y = :v",
        ExpressionAttributeValues={":v": {"S": "1"}},
    )


def test_non_key_attributes_naming_key_attributes_are_shown_as_given(served: Served) -> None:
    c = served.client()
    projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["id", "v", "g"]}
    _table(
        c,
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByG",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": projection,
            }
        ],
    )
    (gsi,) = c.describe_table(TableName="Users")["Table"]["GlobalSecondaryIndexes"]
    assert gsi["Projection"] == projection
    c.put_item(TableName="Users", Item={"id": {"S": "a"}, "g": {"S": "x"}, "v": {"S": "1"}})
    c.put_item(TableName="Users", Item={"id": {"S": "b"}, "g": {"S": "x"}, "w": {"S": "2"}})
    out = c.query(
        TableName="Users",
        IndexName="ByG",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "x"}},
    )
    assert sorted(out["Items"], key=lambda i: i["id"]["S"]) == [
        {"id": {"S": "a"}, "g": {"S": "x"}, "v": {"S": "1"}},
        {"id": {"S": "b"}, "g": {"S": "x"}},
    ]


def test_include_projection_without_non_key_attributes_in_dynamodb_words(
    served: Served,
) -> None:
    c = served.client()
    code, message = _error(
        lambda: _table(
            c,
            AttributeDefinitions=[
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "g", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "ByG",
                    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE"},
                }
            ],
        )
    )
    assert (code, message) == (
        "ValidationException",
        "One or more parameter values were invalid: ProjectionType is INCLUDE, but "
        "NonKeyAttributes is not specified",
    )


# --- request members of the wrong JSON type --------------------------------------------------


def test_update_time_to_live_with_wrongly_typed_members_is_a_serialization_error(
    served: Served,
) -> None:
    raw = _raw(served)
    _table(raw)
    for spec, message in (
        ({"AttributeName": "exp", "Enabled": "dog"}, "Unexpected token received from parser"),
        ({"AttributeName": "exp", "Enabled": 1}, "NUMBER_VALUE cannot be converted to Boolean"),
        ({"AttributeName": 3, "Enabled": True}, "NUMBER_VALUE cannot be converted to String"),
        ({"AttributeName": True, "Enabled": True}, "TRUE_VALUE cannot be converted to String"),
        (
            {"AttributeName": ["exp"], "Enabled": True},
            "Unrecognized collection type class java.lang.String",
        ),
    ):
        assert _error(
            lambda s=spec: raw.update_time_to_live(TableName="Users", TimeToLiveSpecification=s)
        ) == ("SerializationException", message)
    assert raw.describe_time_to_live(TableName="Users")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "DISABLED"
    }


def test_wrongly_typed_members_of_every_operation_are_serialization_errors(
    served: Served,
) -> None:
    raw = _raw(served)
    _table(raw)
    key = {"id": {"S": "a"}}
    calls: list[tuple[Any, str]] = [
        (
            lambda: raw.get_item(TableName="Users", Key=key, ConsistentRead="yes"),
            "Unexpected token received from parser",
        ),
        (
            lambda: raw.scan(TableName="Users", Limit="5"),
            "STRING_VALUE cannot be converted to Integer",
        ),
        (
            lambda: raw.scan(TableName="Users", Limit=True),
            "TRUE_VALUE cannot be converted to Integer",
        ),
        (
            lambda: raw.get_item(TableName="Users", Key=key, ProjectionExpression=7),
            "NUMBER_VALUE cannot be converted to String",
        ),
        (
            lambda: raw.scan(TableName="Users", IndexName=1.5),
            "DECIMAL_VALUE cannot be converted to String",
        ),
        (
            lambda: raw.scan(TableName="Users", FilterExpression={"a": 1}),
            "Start of structure or map found where not expected",
        ),
        (
            lambda: raw.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": "Users",
                            "Item": key,
                            "ConditionExpression": "attribute_exists(#a)",
                            "ExpressionAttributeNames": {"#a": 7},
                        }
                    }
                ]
            ),
            "NUMBER_VALUE cannot be converted to String",
        ),
    ]
    for call, message in calls:
        assert _error(call) == ("SerializationException", message)
    # collections where another type belongs (which no SDK sends: raw JSON)
    attribute_map = (
        "java.util.Map<java.lang.String, com.amazonaws.dynamodb.v20120810.AttributeValue>"
    )
    for op, body, message in (
        (
            "PutItem",
            {"TableName": "Users", "Item": [key]},
            f"Unrecognized collection type {attribute_map}",
        ),
        ("PutItem", {"TableName": "Users", "Item": "x"}, "Unexpected field type"),
        (
            "DeleteTable",
            {"TableName": ["Users"]},
            "Unrecognized collection type class java.lang.String",
        ),
        (
            "TransactGetItems",
            {"TransactItems": {"a": 1}},
            "Start of structure or map found where not expected",
        ),
        ("TransactGetItems", {"TransactItems": "x"}, "Unexpected field type"),
        (
            "UpdateTimeToLive",
            {"TableName": "Users", "TimeToLiveSpecification": []},
            "Unrecognized collection type class "
            "com.amazonaws.dynamodb.v20120810.TimeToLiveSpecification",
        ),
    ):
        status, out = _post(served.port, f"DynamoDB_20120810.{op}", json.dumps(body).encode())
        assert (status, out) == (
            400,
            {"__type": "com.amazon.coral.service#SerializationException", "message": message},
        )
    assert raw.scan(TableName="Users")["Count"] == 0
    assert raw.list_tables()["TableNames"] == ["Users"]
