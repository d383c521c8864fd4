"""Fuzz the DynamoDB endpoint: malformed JSON, wrong types, oversized values, random
mutations of valid requests. Always DynamoDB's error shape with a 4xx, never a 500,
and a refused request changes nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.server import create_asgi_app
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

    def call(self, op: str, raw: bytes, target: str | None = None) -> tuple[int, dict[str, Any]]:
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
            assert status == 400 or op in ("ListTables", "ListBackups"), (op, body)
    finally:
        d.close()
