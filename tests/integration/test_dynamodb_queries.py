"""Where queries, scans, conditions, batches and transactions used to answer differently
from DynamoDB: each test is one difference, fixed, driven by boto3 as a DynamoDB user
would."""

from __future__ import annotations

from typing import Any

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _table, served

__all__ = ("served",)


def _fill(c: Any, n: int, pk: str = "u1", table: str = "Users") -> None:
    for i in range(n):
        c.put_item(
            TableName=table,
            Item={"id": {"S": pk}, "n": {"N": str(i)}, "a": {"N": str(i)}, "l": {"L": []}},
        )


# --- Query and Scan -----------------------------------------------------------------------


def test_a_page_that_limit_stopped_has_a_last_evaluated_key(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c, 3)
    kc = {"KeyConditionExpression": "id = :p", "ExpressionAttributeValues": {":p": {"S": "u1"}}}
    page = c.query(TableName="Users", Limit=3, **kc)
    assert page["Count"] == 3
    assert page["LastEvaluatedKey"] == {"id": {"S": "u1"}, "n": {"N": "2"}}
    rest = c.query(TableName="Users", Limit=3, ExclusiveStartKey=page["LastEvaluatedKey"], **kc)
    assert rest["Count"] == 0 and "LastEvaluatedKey" not in rest
    scan = c.scan(TableName="Users", Limit=3)
    assert scan["LastEvaluatedKey"] == {"id": {"S": "u1"}, "n": {"N": "2"}}
    # without Limit a page that ends with the range has none
    assert "LastEvaluatedKey" not in c.query(TableName="Users", **kc)


def test_expression_and_legacy_parameters_are_never_mixed(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    kc = {"id": {"AttributeValueList": [{"S": "u1"}], "ComparisonOperator": "EQ"}}
    eq1 = {"a": {"AttributeValueList": [{"N": "1"}], "ComparisonOperator": "EQ"}}
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (
            "query",
            {
                "KeyConditionExpression": "id = :p",
                "QueryFilter": eq1,
                "ExpressionAttributeValues": {":p": {"S": "u1"}},
            },
            "QueryFilter",
            "KeyConditionExpression",
        ),
        (
            "query",
            {
                "KeyConditions": kc,
                "KeyConditionExpression": "id = :p",
                "ExpressionAttributeValues": {":p": {"S": "u1"}},
            },
            "KeyConditions",
            "KeyConditionExpression",
        ),
        ("scan", {"ScanFilter": eq1, "ProjectionExpression": "a"}, "ScanFilter", "Projection"),
        (
            "scan",
            {"AttributesToGet": ["a"], "FilterExpression": "attribute_exists(a)"},
            "AttributesToGet",
            "FilterExpression",
        ),
        (
            "update_item",
            {
                "Key": {"id": {"S": "u1"}, "n": {"N": "1"}},
                "AttributeUpdates": {"a": {"Value": {"N": "1"}, "Action": "PUT"}},
                "ConditionExpression": "attribute_exists(a)",
            },
            "AttributeUpdates",
            "ConditionExpression",
        ),
    ]
    for op, args, old, new in cases:
        code, msg = _error(lambda op=op, args=args: getattr(c, op)(TableName="Users", **args))
        assert code == "ValidationException"
        assert msg.startswith(
            "Can not use both expression and non-expression parameters in the same request"
        )
        assert old in msg and new in msg
    assert "Item" not in c.get_item(TableName="Users", Key={"id": {"S": "u1"}, "n": {"N": "1"}})


def test_a_query_filter_on_a_key_attribute_is_refused_in_dynamodbs_words(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    code, msg = _error(
        lambda: c.query(
            TableName="Users",
            KeyConditionExpression="id = :p",
            FilterExpression="n > :n",
            ExpressionAttributeValues={":p": {"S": "u1"}, ":n": {"N": "1"}},
        )
    )
    assert (code, msg) == (
        "ValidationException",
        "Filter Expression can only contain non-primary key attributes: Primary key attribute: n",
    )


def test_a_starting_key_that_does_not_fit_the_schema_is_refused(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c, 2)
    words = (
        "ValidationException",
        "The provided starting key is invalid: The provided key element does not match the schema",
    )
    for start in (
        {"id": {"S": "u1"}},  # no sort key
        {"id": {"S": "u1"}, "n": {"S": "1"}},  # sort key of another type
    ):
        assert _error(lambda s=start: c.scan(TableName="Users", ExclusiveStartKey=s)) == words
        assert (
            _error(
                lambda s=start: c.query(
                    TableName="Users",
                    KeyConditionExpression="id = :p",
                    ExpressionAttributeValues={":p": {"S": "u1"}},
                    ExclusiveStartKey=s,
                )
            )
            == words
        )


def test_parallel_scan_segments_are_checked_in_dynamodbs_words(served: Served) -> None:
    c = served.client()
    _table(c)
    for i in range(20):
        c.put_item(TableName="Users", Item={"id": {"S": f"u{i}"}})
    assert _error(lambda: c.scan(TableName="Users", Segment=7, TotalSegments=5)) == (
        "ValidationException",
        "The Segment parameter is zero-based and must be less than parameter TotalSegments: "
        "Segment: 7 is not less than TotalSegments: 5",
    )
    assert _error(lambda: c.scan(TableName="Users", Segment=0, TotalSegments=1000001)) == (
        "ValidationException",
        "1 validation error detected: Value '1000001' at 'totalSegments' failed to satisfy "
        "constraint: Member must have value less than or equal to 1000000",
    )
    # a starting key from another segment
    first = c.scan(TableName="Users", Segment=0, TotalSegments=2, Limit=1)["LastEvaluatedKey"]
    assert _error(
        lambda: c.scan(TableName="Users", Segment=1, TotalSegments=2, ExclusiveStartKey=first)
    ) == (
        "ValidationException",
        "The provided starting key is invalid: Invalid ExclusiveStartKey. Please use "
        "ExclusiveStartKey with correct Segment. TotalSegments: 2 Segment: 1",
    )
    # ... while it continues its own segment
    c.scan(TableName="Users", Segment=0, TotalSegments=2, ExclusiveStartKey=first)


# --- legacy conditions ----------------------------------------------------------------------


def test_legacy_operators_check_their_values_in_dynamodbs_words(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c, 2)

    def scan_filter(op: str, values: list[Any]) -> tuple[str, str]:
        flt = {"a": {"AttributeValueList": values, "ComparisonOperator": op}}
        return _error(lambda: c.scan(TableName="Users", ScanFilter=flt))

    invalid = "One or more parameter values were invalid: "
    assert scan_filter("CONTAINS", [{"L": [{"N": "1"}]}]) == (
        "ValidationException",
        invalid + "ComparisonOperator CONTAINS is not valid for L AttributeValue type",
    )
    assert scan_filter("LT", [{"L": []}]) == (
        "ValidationException",
        invalid + "ComparisonOperator LT is not valid for L AttributeValue type",
    )
    assert scan_filter("BEGINS_WITH", [{"N": "1"}]) == (
        "ValidationException",
        invalid + "ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type",
    )
    assert scan_filter("IN", [{"N": "1"}, {"S": "x"}]) == (
        "ValidationException",
        invalid + "AttributeValues inside AttributeValueList must be of same type",
    )
    code, msg = scan_filter("BETWEEN", [{"N": "3"}, {"N": "1"}])
    assert code == "ValidationException" and "legacy" not in msg and "BETWEEN" in msg
    code, msg = _error(
        lambda: c.update_item(
            TableName="Users",
            Key={"id": {"S": "u1"}, "n": {"N": "0"}},
            AttributeUpdates={"b": {"Value": {"N": "2"}, "Action": "PUT"}},
            Expected={
                "a": {
                    "Exists": False,
                    "ComparisonOperator": "EQ",
                    "AttributeValueList": [{"N": "0"}],
                }
            },
        )
    )
    assert code == "ValidationException" and "ComparisonOperator" in msg
    assert (
        "b" not in c.get_item(TableName="Users", Key={"id": {"S": "u1"}, "n": {"N": "0"}})["Item"]
    )


def test_legacy_not_contains_is_false_for_a_missing_attribute(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c, 2)
    flt = {"zz": {"AttributeValueList": [{"N": "1"}], "ComparisonOperator": "NOT_CONTAINS"}}
    assert c.scan(TableName="Users", ScanFilter=flt)["Count"] == 0
    # ... as CONTAINS is; an attribute that does not contain the value passes
    flt = {"l": {"AttributeValueList": [{"N": "1"}], "ComparisonOperator": "NOT_CONTAINS"}}
    assert c.scan(TableName="Users", ScanFilter=flt)["Count"] == 2
    code, _ = _error(
        lambda: c.put_item(
            TableName="Users",
            Item={"id": {"S": "u1"}, "n": {"N": "0"}},
            Expected={
                "zz": {"AttributeValueList": [{"N": "1"}], "ComparisonOperator": "NOT_CONTAINS"}
            },
        )
    )
    assert code == "ConditionalCheckFailedException"


# --- transactions ---------------------------------------------------------------------------


def test_a_put_of_a_bad_key_cancels_the_transaction_with_a_validation_error(
    served: Served,
) -> None:
    c = served.client()
    _table(c)
    with_error: Any = None
    try:
        c.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "Users", "Item": {"id": {"S": "ok"}}}},
                {"Put": {"TableName": "Users", "Item": {"id": {"N": "7"}}}},
                {"Put": {"TableName": "Users", "Item": {"id": {"N": "8"}}}},
                {
                    "Put": {
                        "TableName": "Users",
                        "Item": {"id": {"S": "new"}},
                        "ConditionExpression": "attribute_exists(id)",
                    }
                },
            ]
        )
    except c.exceptions.TransactionCanceledException as e:
        with_error = e.response
    assert with_error is not None
    reasons = with_error["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "ValidationError", "None", "None"]
    assert reasons[1]["Message"] == (
        "One or more parameter values were invalid: Type mismatch for key id expected: S actual: N"
    )
    assert c.scan(TableName="Users")["Count"] == 0


def test_client_request_token_makes_a_transaction_idempotent(served: Served) -> None:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item={"id": {"S": "u1"}, "x": {"N": "0"}})
    add = [
        {
            "Update": {
                "TableName": "Users",
                "Key": {"id": {"S": "u1"}},
                "UpdateExpression": "ADD x :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }
    ]
    for _ in range(2):
        c.transact_write_items(TransactItems=add, ClientRequestToken="token-1")
    item = c.get_item(TableName="Users", Key={"id": {"S": "u1"}})["Item"]
    assert item["x"] == {"N": "1"}  # the second call did nothing
    other = [{"Put": {"TableName": "Users", "Item": {"id": {"S": "u2"}}}}]
    code, _ = _error(
        lambda: c.transact_write_items(TransactItems=other, ClientRequestToken="token-1")
    )
    assert code == "IdempotentParameterMismatchException"
    code, msg = _error(
        lambda: c.transact_write_items(TransactItems=add, ClientRequestToken="t" * 37)
    )
    assert code == "ValidationException" and "clientRequestToken" in msg
    assert "Item" not in c.get_item(TableName="Users", Key={"id": {"S": "u2"}})


def test_a_transaction_past_4_mb_is_refused(served: Served) -> None:
    c = served.client()
    _table(c)
    big = "x" * 100_000
    puts = [
        {"Put": {"TableName": "Users", "Item": {"id": {"S": f"u{i}"}, "v": {"S": big}}}}
        for i in range(45)
    ]
    code, msg = _error(lambda: c.transact_write_items(TransactItems=puts))
    assert code == "ValidationException" and "size cannot exceed 4 MB" in msg
    assert c.scan(TableName="Users")["Count"] == 0
    c.transact_write_items(TransactItems=puts[:30])  # 3 MB is fine
    pages = c.get_paginator("scan").paginate(TableName="Users", Select="COUNT")
    assert sum(p["Count"] for p in pages) == 30
