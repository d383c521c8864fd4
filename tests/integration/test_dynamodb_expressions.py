"""Where key conditions, legacy conditions and filter / condition expressions used to
answer differently from DynamoDB: each test is one difference, fixed, driven by boto3 as
a DynamoDB user would."""

from __future__ import annotations

from typing import Any

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _table, served

__all__ = ("served",)

_ENUM = (
    "failed to satisfy constraint: Member must satisfy enum value set: [IN, NULL, BETWEEN, LT, "
    "NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"
)


def _fill(c: Any, n: int = 6) -> None:
    for i in range(n):
        c.put_item(
            TableName="Users", Item={"id": {"S": "u1"}, "n": {"N": str(i)}, "a": {"N": str(i)}}
        )


def _kce(c: Any, text: str, **values: Any) -> tuple[str, str]:
    """Query with a key condition, giving the values it uses."""
    args: dict[str, Any] = {"TableName": "Users", "KeyConditionExpression": text}
    used = {f":{k}": v for k, v in values.items() if f":{k}" in text}
    if used:
        args["ExpressionAttributeValues"] = used
    return _error(lambda: c.query(**args))


def _eq(value: Any, op: str = "EQ") -> dict[str, Any]:
    return {"AttributeValueList": [value], "ComparisonOperator": op}


# --- KeyConditionExpression -----------------------------------------------------------------


def test_a_badly_formed_key_condition_expression_is_refused_in_dynamodbs_words(
    served: Served,
) -> None:
    c = served.client()
    _table(c, sort=True)
    p, v = {"S": "u1"}, {"N": "1"}
    bad = "Invalid condition in KeyConditionExpression: "
    cases = [
        (
            "id = :p AND a.b < :v",
            "KeyConditionExpressions cannot have conditions on nested attributes",
        ),
        ("id = :p AND size(n) < :v", "KeyConditionExpressions cannot contain nested operations"),
        ("id = n", bad + "Multiple attribute names used in one condition"),
        (":p = :v", bad + "No key attribute specified"),
        (
            "id = :p AND :v BETWEEN n AND :v",
            bad + "BETWEEN operator must have the key attribute as its first operand",
        ),
        ("id = :p OR n = :v", "Invalid operator used in KeyConditionExpression: OR"),
        (
            "id = :p AND n = :v AND id = :p",
            "KeyConditionExpressions must only contain one condition per key",
        ),
        ("id = :p AND n = :v AND a = :v", "Conditions can be of length 1 or 2 only"),
    ]
    for text, words in cases:
        assert _kce(c, text, p=p, v=v) == ("ValidationException", words), text


def test_a_key_condition_is_checked_against_the_key_schema_in_dynamodbs_words(
    served: Served,
) -> None:
    c = served.client()
    _table(c, sort=True)
    _table(c, "Plain")
    p, v = {"S": "u1"}, {"N": "1"}
    assert _kce(c, "id < :p", p=p) == ("ValidationException", "Query key condition not supported")
    assert _kce(c, "id = :p AND a < :v", p=p, v=v) == (
        "ValidationException",
        "Query condition missed key schema element: n",
    )
    plain = _error(
        lambda: c.query(
            TableName="Plain",
            KeyConditionExpression="id = :p AND n = :v",
            ExpressionAttributeValues={":p": p, ":v": v},
        )
    )
    assert plain == ("ValidationException", "Query key condition not supported")
    # the legacy KeyConditions, likewise
    null = {"ComparisonOperator": "NULL"}
    for conditions, words in [
        (
            {"id": _eq(p), "n": null},
            "Attempted conditional constraint is not an indexable operation",
        ),
        ({"id": _eq(p, "GE")}, "Query key condition not supported"),
        ({"id": _eq(p), "a": _eq(v)}, "Query condition missed key schema element: n"),
        ({}, "Conditions can be of length 1 or 2 only"),
    ]:
        assert _error(lambda k=conditions: c.query(TableName="Users", KeyConditions=k)) == (
            "ValidationException",
            words,
        )


def test_every_expression_is_parsed_before_the_key_condition_is_checked(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)

    def query(**args: Any) -> tuple[str, str]:
        return _error(lambda: c.query(TableName="Users", KeyConditionExpression="id < :p", **args))

    assert query(ExpressionAttributeValues={":p": {"S": "u1"}, ":x": {"N": "1"}}) == (
        "ValidationException",
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}",
    )
    code, msg = query(
        FilterExpression="a <> ",
        ExpressionAttributeValues={":p": {"S": "u1"}},
    )
    assert code == "ValidationException"
    assert msg.startswith("Invalid FilterExpression: Syntax error; token: ")


def test_a_key_value_of_another_type_is_refused_as_dynamodb_refuses_it(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    words = (
        "ValidationException",
        "One or more parameter values were invalid: Condition parameter type does not match "
        "schema type",
    )
    assert _kce(c, "id = :p", p={"N": "3"}) == words
    assert _kce(c, "id = :p AND n > :v", p={"S": "u1"}, v={"S": "x"}) == words
    legacy = {"id": _eq({"S": "u1"}), "n": _eq({"B": b"x"}, "LT")}
    assert _error(lambda: c.query(TableName="Users", KeyConditions=legacy)) == words


def test_a_starting_key_outside_the_key_condition_is_refused(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c)

    def query(text: str, start: dict[str, Any]) -> tuple[str, str]:
        values = {":p": {"S": "u1"}, ":v": {"N": "3"}}
        return _error(
            lambda: c.query(
                TableName="Users",
                KeyConditionExpression=text,
                ExpressionAttributeValues={k: v for k, v in values.items() if k in text},
                ExclusiveStartKey=start,
            )
        )

    assert query("id = :p", {"id": {"S": "u2"}, "n": {"N": "4"}}) == (
        "ValidationException",
        "The provided starting key is outside query boundaries based on provided conditions",
    )
    # with a sort key condition, the sort key is checked first ...
    for partition in ("u1", "u2"):
        assert query("id = :p AND n > :v", {"id": {"S": partition}, "n": {"N": "1"}}) == (
            "ValidationException",
            "The provided starting key does not match the range key predicate",
        )
    # ... and another partition is worded so
    assert query("id = :p AND n > :v", {"id": {"S": "u2"}, "n": {"N": "4"}}) == (
        "ValidationException",
        "The query can return at most one row and cannot be restarted",
    )
    # a key inside the range continues the query
    page = c.query(
        TableName="Users",
        KeyConditionExpression="id = :p AND n > :v",
        ExpressionAttributeValues={":p": {"S": "u1"}, ":v": {"N": "3"}},
        ExclusiveStartKey={"id": {"S": "u1"}, "n": {"N": "4"}},
    )
    assert [i["n"] for i in page["Items"]] == [{"N": "5"}]


# --- legacy KeyConditions, QueryFilter, ScanFilter, Expected --------------------------------


def test_an_unknown_comparison_operator_is_refused_as_a_bad_enum_value(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    key = {"id": _eq({"S": "u1"})}
    bad = {"a": _eq({"N": "1"}, "eq")}
    item = {"id": {"S": "u1"}, "n": {"N": "1"}}
    dog = {"id": _eq({"S": "u1"}, "DOG")}
    calls = [
        ("keyConditions.id", lambda: c.query(TableName="Users", KeyConditions=dog)),
        ("queryFilter.a", lambda: c.query(TableName="Users", KeyConditions=key, QueryFilter=bad)),
        ("scanFilter.a", lambda: c.scan(TableName="Users", ScanFilter=bad)),
        ("expected.a", lambda: c.put_item(TableName="Users", Item=item, Expected=bad)),
    ]
    for member, call in calls:
        code, msg = _error(call)
        op = "DOG" if member.startswith("key") else "eq"
        assert (code, msg) == (
            "ValidationException",
            f"1 validation error detected: Value '{op}' at '{member}.member.comparisonOperator' "
            + _ENUM,
        )
    assert c.scan(TableName="Users")["Count"] == 0


def test_an_unknown_conditional_operator_is_refused_as_a_bad_enum_value(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    flt = {"a": _eq({"N": "1"}), "b": _eq({"N": "2"})}
    for op in ("DOG", "and"):
        assert _error(
            lambda op=op: c.scan(TableName="Users", ScanFilter=flt, ConditionalOperator=op)
        ) == (
            "ValidationException",
            f"1 validation error detected: Value '{op}' at 'conditionalOperator' failed to "
            "satisfy constraint: Member must satisfy enum value set: [OR, AND]",
        )


def test_conditional_operator_needs_two_legacy_conditions(served: Served) -> None:
    """As DynamoDB (found by Alternator's test_update_expected_empty): ConditionalOperator
    joins two or more conditions of Expected / QueryFilter / ScanFilter; without them, or
    with fewer, it is refused and nothing is written."""
    c = served.client()
    _table(c, sort=True)
    key = {"id": {"S": "u1"}, "n": {"N": "1"}}
    without = (
        "ValidationException",
        "ConditionalOperator cannot be used without Filter or Expected",
    )
    fewer = (
        "ValidationException",
        "ConditionalOperator can only be used when Filter or Expected has two or more elements",
    )
    put = {"TableName": "Users", "Item": {**key, "a": {"N": "1"}}}
    one = {"a": {"Exists": False}}
    for op in ("AND", "OR"):
        assert _error(lambda op=op: c.put_item(**put, ConditionalOperator=op)) == without
        assert _error(lambda op=op: c.put_item(**put, Expected={}, ConditionalOperator=op)) == fewer
        assert (
            _error(lambda op=op: c.put_item(**put, Expected=one, ConditionalOperator=op)) == fewer
        )
        assert _error(lambda op=op: c.scan(TableName="Users", ConditionalOperator=op)) == without
        flt = {"a": _eq({"N": "1"})}
        assert (
            _error(
                lambda op=op, f=flt: c.scan(TableName="Users", ScanFilter=f, ConditionalOperator=op)
            )
            == fewer
        )
        assert (
            _error(
                lambda op=op, f=flt: c.query(
                    TableName="Users",
                    KeyConditions={"id": _eq({"S": "u1"})},
                    QueryFilter=f,
                    ConditionalOperator=op,
                )
            )
            == fewer
        )
    assert "Item" not in c.get_item(TableName="Users", Key=key)
    # an empty Expected alone is no condition; two conditions with an operator work
    c.put_item(**put, Expected={})
    two = {"a": {"Exists": False}, "b": {"Exists": False}}
    c.put_item(**put, Expected=two, ConditionalOperator="OR")
    assert c.get_item(TableName="Users", Key=key)["Item"] == put["Item"]


def test_conditional_operator_joins_the_query_filter_not_the_key_conditions(
    served: Served,
) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c)
    page = c.query(
        TableName="Users",
        KeyConditions={"id": _eq({"S": "u1"}), "n": _eq({"N": "2"}, "GT")},
        QueryFilter={"a": _eq({"N": "3"}), "zz": {"ComparisonOperator": "NOT_NULL"}},
        ConditionalOperator="OR",
    )
    assert [i["n"] for i in page["Items"]] == [{"N": "3"}]
    assert page["ScannedCount"] == 3


def test_legacy_value_counts_and_ranges_are_checked_in_dynamodbs_words(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)

    def scan(op: str, values: list[Any]) -> tuple[str, str]:
        flt = {"a": {"AttributeValueList": values, "ComparisonOperator": op}}
        return _error(lambda: c.scan(TableName="Users", ScanFilter=flt))

    assert scan("IN", []) == (
        "ValidationException",
        "One or more parameter values were invalid: Invalid number of argument(s) for the IN "
        "ComparisonOperator",
    )
    assert scan("BETWEEN", [{"S": "b"}, {"S": "a"}]) == (
        "ValidationException",
        "The BETWEEN condition was provided a range where the lower bound is greater than the "
        "upper bound",
    )


def test_a_query_filter_on_a_key_attribute_is_refused_as_a_query_filter(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    code, msg = _error(
        lambda: c.query(
            TableName="Users",
            KeyConditions={"id": _eq({"S": "u1"})},
            QueryFilter={"n": _eq({"N": "1"})},
        )
    )
    assert (code, msg) == (
        "ValidationException",
        "QueryFilter can only contain non-primary key attributes: Primary key attribute: n",
    )


def test_key_conditions_may_come_with_filter_and_projection_expressions(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    _fill(c)
    page = c.query(
        TableName="Users",
        KeyConditions={"id": _eq({"S": "u1"})},
        FilterExpression="a >= :a",
        ProjectionExpression="n",
        ExpressionAttributeValues={":a": {"N": "4"}},
    )
    assert page["Items"] == [{"n": {"N": "4"}}, {"n": {"N": "5"}}]


def test_mixed_parameters_are_listed_in_dynamodbs_order(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    code, msg = _error(
        lambda: c.query(
            TableName="Users",
            KeyConditionExpression="id = :p",
            FilterExpression="a = :p",
            ProjectionExpression="a",
            ExpressionAttributeValues={":p": {"S": "u1"}},
            AttributesToGet=["a"],
            QueryFilter={"a": _eq({"N": "1"})},
            ConditionalOperator="OR",
            KeyConditions={"id": _eq({"S": "u1"})},
        )
    )
    assert (code, msg) == (
        "ValidationException",
        "Can not use both expression and non-expression parameters in the same request: "
        "Non-expression parameters: {AttributesToGet, QueryFilter, ConditionalOperator, "
        "KeyConditions} Expression parameters: {ProjectionExpression, FilterExpression, "
        "KeyConditionExpression}",
    )


# --- filter and condition expressions ---------------------------------------------------------


def test_between_errors_show_the_bounds_as_dynamodb_does(served: Served) -> None:
    c = served.client()
    _table(c)

    def scan(low: Any, high: Any) -> tuple[str, str]:
        return _error(
            lambda: c.scan(
                TableName="Users",
                FilterExpression="a BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":lo": low, ":hi": high},
            )
        )

    code, msg = scan({"N": "5"}, {"N": "2"})
    assert code == "ValidationException"
    assert msg.startswith(
        "Invalid FilterExpression: The BETWEEN operator requires upper bound to be greater than "
        "or equal to lower bound; lower bound operand: AttributeValue: {N:5}, upper bound "
        "operand: AttributeValue: {N:2}"
    )
    code, msg = scan({"N": "1"}, {"S": "x"})
    assert msg.startswith(
        "Invalid FilterExpression: The BETWEEN operator requires same data type for lower and "
        "upper bounds; lower bound operand: AttributeValue: {N:1}, upper bound operand: "
        "AttributeValue: {S:x}"
    )


def test_attribute_type_refuses_a_type_operand_that_is_not_a_string(served: Served) -> None:
    c = served.client()
    _table(c)
    code, msg = _error(
        lambda: c.scan(
            TableName="Users",
            FilterExpression="attribute_type(a, :t)",
            ExpressionAttributeValues={":t": {"N": "5"}},
        )
    )
    assert code == "ValidationException"
    assert msg.startswith(
        "Invalid FilterExpression: Incorrect operand type for operator or function; operator "
        "or function: attribute_type, operand type: N"
    )
    code, msg = _error(lambda: c.scan(TableName="Users", FilterExpression="attribute_type(a, b)"))
    assert msg.startswith(
        "Invalid FilterExpression: Incorrect operand type for operator or function; operator "
        "or function: attribute_type, operand type: {S,SS,N,NS,B,BS,BOOL,NULL,L,M,"
    )


def test_an_unknown_select_is_refused_as_a_bad_enum_value(served: Served) -> None:
    c = served.client()
    _table(c)
    assert _error(lambda: c.scan(TableName="Users", Select="EVERYTHING")) == (
        "ValidationException",
        "1 validation error detected: Value 'EVERYTHING' at 'select' failed to satisfy "
        "constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, "
        "ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]",
    )
