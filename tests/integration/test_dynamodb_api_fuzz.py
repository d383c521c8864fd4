"""Fuzz the DynamoDB endpoint: malformed JSON, wrong types, oversized values, random
mutations of valid requests. Always DynamoDB's error shape with a 4xx, never a 500,
and a refused request changes nothing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.records import _values
from streamkit.server import _convert, create_asgi_app
from streamkit.server._errors import DynamoError
from streamkit.server._ops import OPERATIONS

VALID: dict[str, dict[str, Any]] = {
    "PutItem": {"TableName": "Fuzz", "Item": {"id": {"S": "b"}, "v": {"N": "1"}}},
    "GetItem": {"TableName": "Fuzz", "Key": {"id": {"S": "a"}}},
    "UpdateItem": {
        "TableName": "Fuzz",
        "Key": {"id": {"S": "a"}},
        "UpdateExpression": "SET v = v + :one",
        "ConditionExpression": "attribute_exists(id)",
        "ExpressionAttributeValues": {":one": {"N": "1"}},
        "ReturnValues": "ALL_NEW",
    },
    "DeleteItem": {
        "TableName": "Fuzz",
        "Key": {"id": {"S": "a"}},
        "Expected": {"v": {"Exists": False}},
    },
    "Query": {
        "TableName": "Fuzz",
        "KeyConditionExpression": "id = :a",
        "ExpressionAttributeValues": {":a": {"S": "a"}},
        "Limit": 5,
    },
    "Scan": {"TableName": "Fuzz", "Segment": 0, "TotalSegments": 2},
    "BatchWriteItem": {"RequestItems": {"Fuzz": [{"PutRequest": {"Item": {"id": {"S": "c"}}}}]}},
    "BatchGetItem": {"RequestItems": {"Fuzz": {"Keys": [{"id": {"S": "a"}}]}}},
    "TransactWriteItems": {
        "TransactItems": [
            {"Put": {"TableName": "Fuzz", "Item": {"id": {"S": "d"}}}},
            {
                "ConditionCheck": {
                    "TableName": "Fuzz",
                    "Key": {"id": {"S": "a"}},
                    "ConditionExpression": "v = :x",
                    "ExpressionAttributeValues": {":x": {"N": "999"}},
                }
            },
        ]
    },
    "CreateTable": {
        "TableName": "Fuzz",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
}

JUNK = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        # at and past the edges of a Java long (DynamoDB's integer parameters), and
        # floats that overflow a timestamp or are not numbers at all
        st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(
            ["S", "N", "B", "SS", "NS", "L", "M", "NULL", "BOOL", "Fuzz", "a" * 70_000]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def mutated(draw: Any) -> tuple[str, bytes]:
    op = draw(st.sampled_from(sorted(VALID)))
    body: Any = VALID[op]
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        body = _replace(body, path, draw(JUNK))
    raw = json.dumps(body).encode()
    if draw(st.integers(0, 9)) == 0:  # sometimes not even JSON
        cut = draw(st.integers(0, max(0, len(raw) - 1)))
        raw = raw[:cut] + draw(st.binary(max_size=5))
    return op, raw


# Python's names and reprs where DynamoDB says S, N, M, string, map, null: never in a message
PYTHON_WORDS = re.compile(
    r"Decimal\(|NoneType|<class |\{'[^']*': |: (?:Decimal|dict|str|int|float|bool|NoneType)$"
    r"|got (?:Decimal|dict|str|int|float|bool|NoneType)\b"
)


class Driver:
    """Calls the ASGI app directly (uvicorn only parses HTTP in front of it)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = sk.App(storage="memory://", log="local:///tmp/streamkit-fuzz-unused")
        self.asgi = create_asgi_app(self.app, background=False)
        self.loop.run_until_complete(self.asgi.start())
        self.call("CreateTable", json.dumps(VALID["CreateTable"]).encode())
        self.call(
            "PutItem",
            json.dumps({"TableName": "Fuzz", "Item": {"id": {"S": "a"}, "v": {"N": "1"}}}).encode(),
        )

    def call(
        self, op: str, raw: bytes | dict[str, Any], target: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        if isinstance(raw, dict):
            raw = json.dumps(raw).encode()
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [
                (b"x-amz-target", (target or f"DynamoDB_20120810.{op}").encode()),
                (b"content-type", b"application/x-amz-json-1.0"),
            ],
        }
        messages = [{"type": "http.request", "body": raw, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.loop.run_until_complete(self.asgi(scope, receive, send))
        return sent[0]["status"], json.loads(sent[1]["body"])

    def state(self) -> Any:
        async def scan() -> Any:
            out = {}
            for name in await self.app.list_tables():
                out[name] = sorted(
                    [
                        json.dumps(i, sort_keys=True, default=str)
                        async for i in self.app.table(name).scan()
                    ]
                )
            return out

        return self.loop.run_until_complete(scan())

    def close(self) -> None:
        self.loop.run_until_complete(self.asgi.stop())
        self.loop.close()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests=st.lists(mutated(), min_size=1, max_size=8))
def test_malformed_requests_get_400s_and_change_nothing(
    requests: list[tuple[str, bytes]],
) -> None:
    d = Driver()
    try:
        for op, raw in requests:
            before = d.state()
            status, body = d.call(op, raw)
            assert status != 500, (op, raw[:300], body)
            if status == 200:
                continue
            assert status == 400, (status, body)
            assert body["__type"].rsplit("#", 1)[-1].endswith(("Exception", "Error")), body
            assert isinstance(body["message"], str) and body["message"]
            assert not PYTHON_WORDS.search(body["message"]), body
            assert d.state() == before, (op, raw[:300], body)
    finally:
        d.close()


def test_unknown_targets_bad_json_and_oversized_items() -> None:
    d = Driver()
    try:
        status, body = d.call("Nope", b"{}")
        assert (status, body["__type"]) == (
            400,
            "com.amazon.coral.service#UnknownOperationException",
        )
        status, body = d.call("PutItem", b"{not json")
        assert (status, body["__type"]) == (400, "com.amazon.coral.service#SerializationException")
        status, body = d.call("PutItem", b"[1, 2]")
        assert status == 400
        big = {"TableName": "Fuzz", "Item": {"id": {"S": "big"}, "v": {"S": "x" * 410_000}}}
        status, body = d.call("PutItem", json.dumps(big).encode())
        assert status == 400 and body["__type"].endswith("ValidationException"), body
        assert "Item size" in body["message"] or "size" in body["message"], body
        for op in OPERATIONS:
            status, body = d.call(op, b"{}")
            assert status == 400 or op in (
                "ListTables",
                "ListBackups",
                "ListExports",
                "ListImports",
            ), (op, body)
    finally:
        d.close()


def test_numbers_out_of_range_are_validation_errors() -> None:
    """An overflow anywhere in a request's parameters is the caller's fault: a
    ValidationException (400), never a 500, and nothing changes."""
    d = Driver()
    query = {
        "TableName": "Fuzz",
        "KeyConditionExpression": "id = :a",
        "ExpressionAttributeValues": {":a": {"S": "a"}},
    }
    create = {
        "TableName": "Big",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    }
    restore = {"SourceTableName": "Fuzz", "TargetTableName": "Then"}
    try:
        before = d.state()
        for op, body in [
            ("Query", {**query, "Limit": 2**63}),
            ("Query", {**query, "Limit": 2**63 - 1}),
            ("Query", {**query, "Limit": -(2**63) - 1}),
            ("Scan", {"TableName": "Fuzz", "Limit": 9223372036854775808}),
            ("Scan", {"TableName": "Fuzz", "Segment": 2**63 - 2, "TotalSegments": 2**63 - 1}),
            ("ListTables", {"Limit": 10**30}),
            ("RestoreTableToPointInTime", {**restore, "RestoreDateTime": 1e18}),
            ("RestoreTableToPointInTime", {**restore, "RestoreDateTime": -1e18}),
            ("RestoreTableToPointInTime", {**restore, "RestoreDateTime": 1e300}),
            ("RestoreTableToPointInTime", {**restore, "RestoreDateTime": float("inf")}),
            ("RestoreTableToPointInTime", {**restore, "RestoreDateTime": 2**63 - 1}),
            (
                "CreateTable",
                {
                    **create,
                    "ProvisionedThroughput": {"ReadCapacityUnits": 2**70, "WriteCapacityUnits": 1},
                },
            ),
        ]:
            status, out = d.call(op, body)
            assert status == 400, (op, body, out)
            assert out["__type"].endswith("#ValidationException"), (op, body, out)
            assert not PYTHON_WORDS.search(out["message"]), out
        # a shard iterator pointing past anything a log can hold
        for target, body in [
            ("DynamoDBStreams_20120810.GetRecords", {"ShardIterator": "W10=", "Limit": 2**64}),
            ("DynamoDBStreams_20120810.DescribeStream", {"StreamArn": "x", "Limit": 2**63}),
        ]:
            status, out = d.call("", body, target)
            assert status == 400, (target, out)
        assert d.state() == before
    finally:
        d.close()


def test_endpoint_messages_speak_dynamodb() -> None:
    """What the endpoint's conversion and parameter checks say is DynamoDB's vocabulary
    (S, N, M, string, map, null), not Python's (str, Decimal, dict, None)."""
    d = Driver()

    def message(op: str, body: dict[str, Any]) -> str:
        status, out = d.call(op, body)
        assert status == 400, (op, body, out)
        text = str(out["message"])
        assert not PYTHON_WORDS.search(text), text
        return text

    def put(value: Any) -> str:
        return message("PutItem", {"TableName": "Fuzz", "Item": {"id": {"S": "x"}, "v": value}})

    try:
        # a JSON number where DynamoDB's JSON has a string: its reader refuses the body
        status, out = d.call(
            "PutItem", {"TableName": "Fuzz", "Item": {"id": {"S": "x"}, "v": {"N": 5}}}
        )
        assert status == 400 and out["__type"].endswith("SerializationException")
        assert out["message"] == "NUMBER_VALUE cannot be converted to String"
        assert "expected type: map, got: string" in put("plain")
        assert "expected type: string, got: map" in put({"L": [{"S": {"a": 1}}]})
        assert put({"L": [{"S": "a"}, {"M": {"k": {"N": "x"}}}]}) == (
            "The parameter cannot be converted to a numeric value: x (at v[1].k)"
        )
        assert "Supplied AttributeValue is empty" in put({})
        assert "more than one datatypes" in put({"S": "a", "N": "1"})
        assert "Null attribute value types must have the value of true" in put({"NULL": False})
        assert "may not be empty" in put({"SS": []})
        assert "contains duplicates" in put({"NS": ["1", "1.0"]})
        assert put({"N": "1" * 39}).startswith("Attempting to store more than 38 significant")
        assert put({"N": "1e126"}).startswith("Number overflow")
        assert put({"N": "1e-131"}).startswith("Number underflow")
        # the key's type, checked by the storage layer: said as DynamoDB says it
        assert message("PutItem", {"TableName": "Fuzz", "Item": {"id": {"N": "1"}}}) == (
            "One or more parameter values were invalid: Type mismatch for key id expected: S "
            "actual: N"
        )
        # a key argument of another type does not match the schema (DynamoDB's words)
        assert message("GetItem", {"TableName": "Fuzz", "Key": {"id": {"BOOL": True}}}) == (
            "The provided key element does not match the schema"
        )
        # parameters of the wrong JSON type: DynamoDB's reader refuses them
        assert message("PutItem", {"TableName": "Fuzz", "Item": []}) == (
            "Unrecognized collection type java.util.Map<java.lang.String, "
            "com.amazonaws.dynamodb.v20120810.AttributeValue>"
        )
        assert message("Scan", {"TableName": "Fuzz", "Limit": 5.5}).endswith(
            "expected type: integer, got: number"
        )
        assert message("GetItem", {"TableName": None, "Key": {}}) == (
            "1 validation error detected: Value null at 'tableName' failed to satisfy "
            "constraint: Member must not be null"
        )
        assert message("DeleteTable", {"TableName": 7}) == (
            "NUMBER_VALUE cannot be converted to String"
        )
        # enum parameters given something else: shown as JSON
        create = json.loads(json.dumps(VALID["CreateTable"]))
        # a null member is an absent one (DynamoDB): the default billing mode
        assert message("CreateTable", {**create, "BillingMode": None}) == (
            "One or more parameter values were invalid: ReadCapacityUnits and "
            "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"
        )
        assert message("CreateTable", {**create, "BillingMode": {"a": [True]}}) == (
            'Invalid BillingMode: {"a": [true]}'
        )
        assert "ExpressionAttributeValues" not in message(
            "Query",
            {
                "TableName": "Fuzz",
                "KeyConditionExpression": "id = :a",
                "ExpressionAttributeValues": {":a": {"N": 1.5}},
            },
        )
    finally:
        d.close()


def test_item_sizes_are_checked_while_converting() -> None:
    """An oversized item or value is refused as soon as its size passes 400 KB, without
    reading (or converting) the rest; a request larger than its operation can need is
    refused before it is parsed."""
    d = Driver()
    try:
        before = d.state()
        # the size passes 400 KB long before the bad number at the end is reached
        big = {"L": [{"N": "1"}] * 150_000 + [{"N": "not a number"}]}
        for op, body in [
            ("PutItem", {"TableName": "Fuzz", "Item": {"id": {"S": "big"}, "v": big}}),
            (
                "BatchWriteItem",
                {
                    "RequestItems": {
                        "Fuzz": [{"PutRequest": {"Item": {"id": {"S": "b"}, "v": big}}}]
                    }
                },
            ),
        ]:
            status, out = d.call(op, body)
            assert (status, out["message"]) == (
                400,
                "Item size has exceeded the maximum allowed size",
            ), out
        status, out = d.call(
            "UpdateItem",
            {
                "TableName": "Fuzz",
                "Key": {"id": {"S": "a"}},
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": big},
            },
        )
        assert status == 400 and "exceeded the maximum item size" in out["message"], out
        # a list of more elements than 400 KB can hold: refused before any is converted
        huge = {"L": [{"S": ""}] * 500_000}
        started = time.perf_counter()
        status, out = d.call(
            "PutItem", {"TableName": "Fuzz", "Item": {"id": {"S": "h"}, "v": huge}}
        )
        assert status == 400 and out["__type"].endswith("#ValidationException"), out
        assert out["message"] == "Item size has exceeded the maximum allowed size", out
        assert time.perf_counter() - started < 5
        status, out = d.call(
            "BatchWriteItem",
            {"RequestItems": {"Fuzz": [{"PutRequest": {"Item": {"id": {"S": "h"}, "v": huge}}}]}},
        )
        assert (status, out["message"]) == (400, "Item size has exceeded the maximum allowed size")
        # the largest request: refused by size alone (16 MB for a batch)
        status, out = d.call("BatchWriteItem", b" " * (16 * 1024 * 1024 + 1))
        assert status == 413 and out["__type"].endswith("#RequestEntityTooLarge"), out
        assert d.state() == before
        # a large valid item is converted off the event loop and stored as it was given
        item = {"id": {"S": "large"}, "v": {"L": [{"N": str(i)} for i in range(50_000)]}}
        assert d.call("PutItem", {"TableName": "Fuzz", "Item": item}) == (200, {})
        status, out = d.call("GetItem", {"TableName": "Fuzz", "Key": {"id": {"S": "large"}}})
        assert out["Item"] == item
    finally:
        d.close()


AV_LEAF = st.one_of(
    st.builds(lambda v: {"S": v}, st.one_of(st.text(max_size=5), st.integers(-9, 9))),
    st.builds(
        lambda v: {"N": v},
        st.one_of(
            st.integers(-(10**40), 10**40).map(str),
            st.decimals(allow_nan=False, allow_infinity=False).map(str),
            st.sampled_from(["0", "-0", "1.50", "1e5", "-0.0", "00012", "1E-130", "9.99e125"]),
            st.sampled_from(["1e126", "1e-131", "x", "", "+5", ".5", "5.", "NaN", "1e99999"]),
            st.integers(-9, 9),
        ),
    ),
    st.builds(lambda v: {"B": v}, st.sampled_from(["", "AAE=", "!!", "AA", None])),
    st.builds(lambda v: {"BOOL": v}, st.one_of(st.booleans(), st.none())),
    st.builds(lambda v: {"NULL": v}, st.booleans()),
    st.builds(lambda v: {"SS": v}, st.lists(st.text(max_size=3), max_size=3)),
    st.builds(lambda v: {"NS": v}, st.lists(st.sampled_from(["1", "1.0", "2", "x"]), max_size=3)),
    st.builds(lambda v: {"BS": v}, st.lists(st.sampled_from(["AA==", "AQ==", "!"]), max_size=3)),
    st.sampled_from([{}, {"S": "a", "N": "1"}, {"Q": 1}, "x", None]),
)
AV = st.recursive(
    AV_LEAF,
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"M": v}, st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    ),
    max_leaves=10,
)


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(item=st.dictionaries(st.text(max_size=3), AV, max_size=4))
def test_the_endpoint_conversion_agrees_with_the_value_model(item: dict[str, Any]) -> None:
    """The endpoint's DynamoDB JSON conversion (its own words, its size checks, done off
    the event loop for a large body) builds what streamkit.records builds."""

    def model() -> Any:
        try:
            value = _values.item_from_dynamodb_json(item)
        except sk.ValidationError:
            return None
        return value if _values.item_size(value) <= _values.MAX_ITEM_BYTES else None

    def endpoint() -> Any:
        try:
            return _convert.item_from_dynamodb_json(item)
        except DynamoError as e:
            return e

    def prepared() -> Any:
        body, done = _convert.parse_large(json.dumps({"Item": item}).encode())
        token = _convert.PREPARED.set(done)
        try:
            return _convert.item_from_dynamodb_json(body["Item"])
        except DynamoError:
            return None
        finally:
            _convert.PREPARED.reset(token)

    expected, got, off_loop = model(), endpoint(), prepared()
    if isinstance(got, DynamoError):
        # a JSON number for a string is refused by DynamoDB's JSON reader itself
        assert got.type.endswith(("#ValidationException", "#SerializationException"))
        # (the path an error is at echoes the item's attribute names: not checked)
        assert not PYTHON_WORDS.search(got.message.split(" (at ")[0]), got.message
        got = None
    assert (got is None) == (off_loop is None) and _values.items_equal(got, off_loop)
    assert (expected is None) == (got is None), (item, expected, got)
    if got is None:
        return
    assert _values.items_equal(expected, got), (item, expected, got)
    assert {k: (type(v), str(v)) for k, v in expected.items()} == {
        k: (type(v), str(v)) for k, v in got.items()
    }
