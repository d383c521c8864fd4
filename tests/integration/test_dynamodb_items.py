"""Item reads and writes, update expressions, numbers, paths and attribute values: where
the endpoint used to answer differently from DynamoDB. Each test is one difference,
fixed, driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

from typing import Any

from botocore.config import Config

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _table, served

__all__ = ("served",)

INVALID = "One or more parameter values were invalid: "
KEY = {"id": {"S": "k"}}


def _update(c: Any, expression: str, values: dict[str, Any] | None = None, **kw: Any) -> Any:
    if values is not None:
        kw["ExpressionAttributeValues"] = values
    return c.update_item(TableName="Users", Key=KEY, UpdateExpression=expression, **kw)


def _legacy(c: Any, updates: dict[str, Any], **kw: Any) -> Any:
    return c.update_item(TableName="Users", Key=KEY, AttributeUpdates=updates, **kw)


def _item(c: Any) -> Any:
    return c.get_item(TableName="Users", Key=KEY, ConsistentRead=True).get("Item")


# --- document paths -------------------------------------------------------------------------


def test_a_document_path_has_at_most_32_levels(served: Served) -> None:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item={**KEY, "a": {"M": {}}})
    deep = "a" + ".b" * 31  # 32 levels, the top one included
    assert c.get_item(TableName="Users", Key=KEY, ProjectionExpression=deep)["Item"] == {}
    too_deep = deep + ".b"
    said = "The document path has too many nesting levels; nesting levels: 33"
    code, message = _error(
        lambda: c.get_item(TableName="Users", Key=KEY, ProjectionExpression=too_deep)
    )
    assert code == "ValidationException"
    assert message.startswith("Invalid ProjectionExpression: " + said)
    code, message = _error(lambda: _update(c, f"SET {too_deep} = :v", {":v": {"N": "1"}}))
    assert message.startswith("Invalid UpdateExpression: " + said)
    assert _item(c) == {**KEY, "a": {"M": {}}}


# --- update expressions ---------------------------------------------------------------------


def test_list_append_of_a_list_append_is_refused(served: Served) -> None:
    c = served.client()
    _table(c)
    values = {":a": {"L": [{"S": "a"}]}, ":b": {"L": [{"S": "b"}]}, ":c": {"L": []}}
    code, message = _error(
        lambda: _update(c, "SET l = list_append(list_append(:a, :b), :c)", values)
    )
    assert code == "ValidationException"
    assert message.startswith(
        "Invalid UpdateExpression: The function is not allowed to be used this way in an "
        "expression; function: list_append"
    )
    assert _item(c) is None
    # list_append over if_not_exists stays the usual way to append
    del values[":b"]
    _update(c, "SET l = list_append(if_not_exists(l, :c), :a)", values)
    assert _item(c)["l"] == {"L": [{"S": "a"}]}


def test_an_update_of_a_key_attribute_is_refused_whatever_its_action(served: Served) -> None:
    c = served.client()
    _table(c, sort=True)
    key = {"id": {"S": "k"}, "n": {"N": "1"}}
    for expression, values in (
        ("ADD id :n", {":n": {"N": "1"}}),  # a number to a string: still a key error
        ("DELETE n :s", {":s": {"SS": ["x"]}}),
        ("SET id = :n", {":n": {"N": "1"}}),
        ("REMOVE n", None),
    ):
        kw = {} if values is None else {"ExpressionAttributeValues": values}
        code, message = _error(
            lambda e=expression, kw=kw: c.update_item(
                TableName="Users", Key=key, UpdateExpression=e, **kw
            )
        )
        name = expression.split()[1]
        assert (code, message) == (
            "ValidationException",
            f"{INVALID}Cannot update attribute {name}. This attribute is part of the key",
        ), expression
    assert "Item" not in c.get_item(TableName="Users", Key=key)


# --- numbers --------------------------------------------------------------------------------


def test_arithmetic_past_38_digits_is_a_number_overflow(served: Served) -> None:
    c = served.client()
    _table(c)
    values = {":a": {"N": "1e50"}, ":b": {"N": "1"}}
    for expression in ("SET x = :a - :b", "SET x = :a + :b"):
        assert _error(lambda e=expression: _update(c, e, values)) == (
            "ValidationException",
            "Number overflow. Attempting to store a number with magnitude larger than "
            "supported range",
        )
    assert _item(c) is None


def test_a_number_that_is_not_numeric_is_refused_in_dynamodb_words(served: Served) -> None:
    c = served.client(config=Config(parameter_validation=False))
    _table(c)
    for text in ("NaN", "Infinity", "-dog", " 1", "1 "):
        code, message = _error(lambda t=text: _update(c, "SET a = :v", {":v": {"N": t}}))
        assert code == "ValidationException"
        assert message.startswith(f"The parameter cannot be converted to a numeric value: {text}")
    code, message = _error(lambda: _update(c, "SET a = :v", {":v": {"N": ""}}))
    assert message.startswith("The parameter cannot be converted to a numeric value")
    _update(c, "SET a = :v", {":v": {"N": "+.5e+1"}})
    assert _item(c)["a"] == {"N": "5"}


def test_a_json_number_where_a_string_belongs_is_a_serialization_error(served: Served) -> None:
    c = served.client(config=Config(parameter_validation=False))
    _table(c)
    for value in ({"N": 123}, {"S": 7}, {"SS": ["a", 1]}):
        assert _error(lambda v=value: _update(c, "SET a = :v", {":v": v})) == (
            "SerializationException",
            "NUMBER_VALUE cannot be converted to String",
        )
        assert _error(lambda v=value: c.put_item(TableName="Users", Item={**KEY, "a": v})) == (
            "SerializationException",
            "NUMBER_VALUE cannot be converted to String",
        )
    assert _item(c) is None


# --- attribute values -----------------------------------------------------------------------


def test_an_empty_key_attribute_is_refused_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c)
    binary = [{"AttributeName": "id", "AttributeType": "B"}]
    _table(c, "Blobs", AttributeDefinitions=binary)
    said = "One or more parameter values are not valid. The AttributeValue for a key attribute "
    empty_string = said + "cannot contain an empty string value. Key: id"
    assert _error(lambda: c.put_item(TableName="Users", Item={"id": {"S": ""}})) == (
        "ValidationException",
        empty_string,
    )
    assert _error(
        lambda: c.update_item(
            TableName="Users",
            Key={"id": {"S": ""}},
            UpdateExpression="SET a = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
    ) == ("ValidationException", empty_string)
    assert _error(lambda: c.put_item(TableName="Blobs", Item={"id": {"B": b""}})) == (
        "ValidationException",
        said + "cannot contain an empty binary value. Key: id",
    )
    assert c.scan(TableName="Users")["Count"] == c.scan(TableName="Blobs")["Count"] == 0


def test_empty_sets_and_duplicate_set_members_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c)

    def put(value: Any) -> tuple[str, str]:
        return _error(lambda: c.put_item(TableName="Users", Item={**KEY, "a": value}))

    assert put({"SS": []}) == (
        "ValidationException",
        INVALID + "An string set  may not be empty (at a)",
    )
    assert put({"NS": []}) == (
        "ValidationException",
        INVALID + "An number set  may not be empty (at a)",
    )
    assert put({"BS": []}) == (
        "ValidationException",
        INVALID + "Binary sets should not be empty (at a)",
    )
    assert put({"SS": ["a", "a"]}) == (
        "ValidationException",
        INVALID + "Input collection [a, a] contains duplicates. (at a)",
    )
    assert put({"NS": ["1", "1.0"]}) == (
        "ValidationException",
        "Input collection contains duplicates (at a)",
    )
    assert put({"BS": [b"x", b"x"]}) == (
        "ValidationException",
        INVALID + "Input collection [eA==, eA==]of type BS contains duplicates. (at a)",
    )
    assert _item(c) is None


def test_attributes_to_get_naming_an_attribute_twice_is_refused(served: Served) -> None:
    c = served.client()
    _table(c)
    assert _error(
        lambda: c.get_item(TableName="Users", Key=KEY, AttributesToGet=["a", "b", "a"])
    ) == ("ValidationException", INVALID + "Duplicate value in attribute name: a")


# --- legacy AttributeUpdates ----------------------------------------------------------------


def test_legacy_add_of_a_list_appends_to_it(served: Served) -> None:
    c = served.client()
    _table(c)
    one, two = {"N": "1"}, {"S": "two"}
    _legacy(c, {"l": {"Action": "ADD", "Value": {"L": [one]}}})  # missing: a new list
    out = _legacy(
        c, {"l": {"Action": "ADD", "Value": {"L": [two, one]}}}, ReturnValues="UPDATED_NEW"
    )
    assert out["Attributes"] == {"l": {"L": [one, two, one]}}
    assert _item(c) == {**KEY, "l": {"L": [one, two, one]}}


def test_legacy_updates_of_the_wrong_type_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item={**KEY, "s": {"S": "x"}, "ns": {"NS": ["1"]}})
    assert _error(lambda: _legacy(c, {"s": {"Action": "DELETE", "Value": {"S": "x"}}})) == (
        "ValidationException",
        INVALID + "DELETE action with value is not supported for the type S",
    )
    assert _error(lambda: _legacy(c, {"s": {"Action": "ADD", "Value": {"S": "y"}}})) == (
        "ValidationException",
        INVALID + "ADD action is not supported for the type S",
    )
    for attr, value in (("ns", {"SS": ["a"]}), ("ns", {"L": []}), ("s", {"N": "1"})):
        assert _error(lambda a=attr, v=value: _legacy(c, {a: {"Action": "ADD", "Value": v}})) == (
            "ValidationException",
            INVALID + "Type mismatch for attribute to update",
        ), (attr, value)
    assert _error(lambda: _legacy(c, {"ns": {"Action": "DELETE", "Value": {"SS": ["1"]}}})) == (
        "ValidationException",
        INVALID + "Type mismatch for attribute to update",
    )
    assert _error(lambda: _legacy(c, {"s": {"Action": "ADD"}})) == (
        "ValidationException",
        INVALID + "Only DELETE action is allowed when no attribute value is specified",
    )
    assert _error(lambda: _legacy(c, {"s": {"Action": "NOPE", "Value": {"S": "y"}}})) == (
        "ValidationException",
        "1 validation error detected: Value 'NOPE' at 'attributeUpdates.s.member.action' "
        "failed to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]",
    )
    assert _item(c) == {**KEY, "s": {"S": "x"}, "ns": {"NS": ["1"]}}


def test_legacy_parameters_have_no_expression_size_limit(served: Served) -> None:
    c = served.client()
    _table(c)
    updates = {f"attribute{i:03}": {"Action": "PUT", "Value": {"N": str(i)}} for i in range(300)}
    _legacy(c, updates)
    names = [f"attribute{i:03}" for i in range(0, 300, 2)] + [f"missing{i:03}" for i in range(300)]
    got = c.get_item(TableName="Users", Key=KEY, AttributesToGet=names)["Item"]
    assert got == {f"attribute{i:03}": {"N": str(i)} for i in range(0, 300, 2)}


def test_attribute_updates_with_a_condition_expression_is_refused(served: Served) -> None:
    c = served.client()
    _table(c)
    assert _error(
        lambda: _legacy(
            c,
            {"a": {"Action": "PUT", "Value": {"N": "1"}}},
            ConditionExpression="attribute_not_exists(a)",
        )
    ) == (
        "ValidationException",
        "Can not use both expression and non-expression parameters in the same request: "
        "Non-expression parameters: {AttributeUpdates} Expression parameters: "
        "{ConditionExpression}",
    )
    assert _item(c) is None
