"""Limits and raw HTTP requests, answered as DynamoDB answers them: methods, content
types, targets, encodings, request ids, the health check, request sizes and the
lengths of attribute names (each test: one behaviour that used to differ)."""

from __future__ import annotations

import binascii
import gzip
import http.client
import json
import re
from typing import Any

import boto3
from botocore.config import Config

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _table, served

__all__ = ("served",)

_JSON = "application/x-amz-json-1.0"
_LIST = "DynamoDB_20120810.ListTables"
_NOT_FOUND = b"<UnknownOperationException/>\n"


def _raw(
    port: int,
    method: str = "POST",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    path: str = "/",
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request (no SDK, no retries): status, headers (lower-case), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        got = {k.lower(): v for k, v in response.getheaders()}
        return response.status, got, response.read()
    finally:
        conn.close()


def _post(port: int, target: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return _raw(
        port,
        body=body,
        headers={"X-Amz-Target": target, "Content-Type": _JSON, **headers},
    )


def _put(c: Any, **item: Any) -> None:
    c.put_item(TableName="Users", Item={"id": {"S": "a"}, **item})


# --- HTTP ------------------------------------------------------------------------------


def test_get_of_the_root_is_dynamodb_s_health_check(served: Served) -> None:
    status, headers, body = _raw(served.port, "GET")
    assert (status, body) == (200, f"healthy: 127.0.0.1:{served.port} ".encode())
    assert int(headers["x-amz-crc32"]) == binascii.crc32(body)
    assert re.fullmatch(r"[0-9A-Z]{52}", headers["x-amzn-requestid"])
    for path in ["/abc", "/health", "/index.htm"]:
        status, _, body = _raw(served.port, "GET", path=path)
        assert (status, body) == (404, _NOT_FOUND), path


def test_large_answers_are_gzipped_when_asked_and_headers_are_dynamodbs(served: Served) -> None:
    """As DynamoDB (found by Alternator's test_crc / test_http_headers): an answer of ~4 KB
    or more is gzipped for a client whose Accept-Encoding allows it, with the CRC of the
    bytes sent; smaller ones, and clients that do not ask, get plain JSON; the Server
    header is DynamoDB's ("Server")."""
    import gzip
    import json

    c = served.client()
    c.create_table(
        TableName="Users",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    _put(c, big={"S": "x" * 6000})
    c.put_item(TableName="Users", Item={"id": {"S": "small"}})
    target = "DynamoDB_20120810.GetItem"

    def get(key: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        return _post(
            served.port,
            target,
            json.dumps({"TableName": "Users", "Key": {"id": {"S": key}}}).encode(),
            **headers,
        )

    status, headers, body = get("a", **{"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert int(headers["x-amz-crc32"]) == binascii.crc32(body)
    assert int(headers["content-length"]) == len(body)
    assert json.loads(gzip.decompress(body))["Item"]["big"]["S"] == "x" * 6000
    assert headers["server"] == "Server"
    for asked in ({}, {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip;q=0"}):
        status, headers, body = get("a", **asked)
        assert status == 200 and "content-encoding" not in headers, asked
        assert json.loads(body)["Item"]["big"]["S"] == "x" * 6000
        assert int(headers["x-amz-crc32"]) == binascii.crc32(body)
    status, headers, body = get("small", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in headers and json.loads(body)["Item"] == {"id": {"S": "small"}}
    # boto3 never asks for gzip (its default Accept-Encoding is absent): its answers
    # stay plain, as every other test of this suite shows; the Go SDK asks, as of DynamoDB


def test_other_methods_and_content_types_are_404_unknown_operation(served: Served) -> None:
    for method in ["PUT", "DELETE", "OPTIONS", "PATCH"]:
        status, headers, body = _raw(served.port, method)
        assert (status, body) == (404, _NOT_FOUND), method
        assert headers["x-amz-crc32"] == "3552371480"  # DynamoDB's, for these bytes
    for content_type in [None, "whatever", "application/x-amz-json-1.1", "application/jsonx"]:
        headers = {"X-Amz-Target": _LIST}
        if content_type is not None:
            headers["Content-Type"] = content_type
        status, _, body = _raw(served.port, body=b"{}", headers=headers)
        assert (status, body) == (404, _NOT_FOUND), content_type


def test_unknown_or_missing_target_is_unknown_operation_without_message(served: Served) -> None:
    for target in ["", "whatever", "DynamoDB_20120810.ListTable", "DynamoDB_20111205.Scan"]:
        status, _, body = _post(served.port, target, b"{}")
        assert status == 400, target
        assert json.loads(body) == {
            "__type": "com.amazon.coral.service#UnknownOperationException"
        }, target


def test_an_empty_body_is_a_serialization_exception(served: Served) -> None:
    status, _, body = _post(served.port, _LIST, b"")
    assert status == 400
    assert json.loads(body)["__type"] == "com.amazon.coral.service#SerializationException"


def test_an_application_json_request_is_answered_as_application_json(served: Served) -> None:
    for content_type in ["application/json", "application/json; charset=utf-8"]:
        status, headers, body = _post(served.port, _LIST, b"{}", **{"Content-Type": content_type})
        assert (status, json.loads(body)) == (200, {"TableNames": []})
        assert headers["content-type"] == "application/json"
        status, headers, _ = _post(served.port, _LIST, b"{x", **{"Content-Type": content_type})
        assert (status, headers["content-type"]) == (400, "application/json")
    _, headers, _ = _post(served.port, _LIST, b"{}")
    assert headers["content-type"] == _JSON


def test_request_ids_are_shaped_as_dynamodb_s(served: Served) -> None:
    c = served.client()
    ids = {c.list_tables()["ResponseMetadata"]["RequestId"] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9A-Z]{52}", i) for i in ids), ids


def test_gzip_compressed_requests_are_served(served: Served) -> None:
    # boto3 compresses the requests of operations its model marks; mark them all, on a
    # session of our own (the model is shared by the clients of a session)
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="us-east-1"
    )
    c = session.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{served.port}",
        config=Config(request_min_compression_size_bytes=1),
    )
    operations = c.meta.service_model._service_description["operations"]
    for spec in operations.values():
        spec["requestcompression"] = {"encodings": ["gzip"]}
    _table(c)
    item = {"id": {"S": "z"}, "long": {"S": "x" * 20_000}}
    c.put_item(TableName="Users", Item=item)
    assert c.get_item(TableName="Users", Key={"id": {"S": "z"}})["Item"] == item
    # two gzip members, one after the other, are one body (as gzip has it)
    raw = json.dumps({"TableName": "Users", "Item": {"id": {"S": "two"}}}).encode()
    twice = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    status, _, _ = _post(
        served.port, "DynamoDB_20120810.PutItem", twice, **{"Content-Encoding": "gzip"}
    )
    assert status == 200
    assert "Item" in c.get_item(TableName="Users", Key={"id": {"S": "two"}})


def test_a_body_that_cannot_be_decoded_is_a_500_and_changes_nothing(served: Served) -> None:
    c = served.client()
    _table(c)
    raw = json.dumps({"TableName": "Users", "Item": {"id": {"S": "bad"}}}).encode()
    for encoding, body in [
        ("garbage", raw),
        ("gzip", raw),  # not gzip at all
        ("gzip", gzip.compress(raw)[:-1]),  # cut short
        ("gzip", b""),
    ]:
        status, _, _ = _post(
            served.port, "DynamoDB_20120810.PutItem", body, **{"Content-Encoding": encoding}
        )
        assert status == 500, (encoding, body[:20])
    assert c.scan(TableName="Users")["Count"] == 0


def test_describe_endpoints_names_the_endpoint_reached(served: Served) -> None:
    c = served.client()
    [endpoint] = c.describe_endpoints()["Endpoints"]
    assert endpoint == {"Address": f"127.0.0.1:{served.port}", "CachePeriodInMinutes": 1440}
    again = boto3.client(
        "dynamodb",
        endpoint_url=f"http://{endpoint['Address']}",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )
    assert len(again.describe_endpoints()["Endpoints"]) == 1


# --- request sizes -----------------------------------------------------------------------


def test_a_request_of_any_operation_may_be_16_mb(served: Served) -> None:
    c = served.client()
    _table(c)
    spaces = b" " * (12 * 1024 * 1024)
    body = b'{"TableName": "Users",' + spaces + b'"Item": {"id": {"S": "big"}}}'
    status, _, answer = _post(served.port, "DynamoDB_20120810.PutItem", body)
    assert (status, json.loads(answer)) == (200, {})
    assert "Item" in c.get_item(TableName="Users", Key={"id": {"S": "big"}})
    body = b'{"TableName": "Users",' + spaces * 2 + b'"Item": {"id": {"S": "huge"}}}'
    status, _, _ = _post(served.port, "DynamoDB_20120810.PutItem", body)
    assert status == 413
    assert "Item" not in c.get_item(TableName="Users", Key={"id": {"S": "huge"}})


# --- attribute names ---------------------------------------------------------------------

_TOO_LONG = (
    "1 validation error detected: Attribute name is too large, must be less than 65536 bytes"
)


def test_attribute_names_are_at_most_65535_bytes(served: Served) -> None:
    c = served.client()
    _table(c)
    longest, too_long = "n" * 65535, "n" * 65536
    _put(c, **{longest: {"N": "1"}}, m={"M": {longest: {"S": "x"}}})
    got = c.get_item(
        TableName="Users",
        Key={"id": {"S": "a"}},
        ProjectionExpression="#n",
        ExpressionAttributeNames={"#n": longest},
    )
    assert got["Item"] == {longest: {"N": "1"}}
    key = {"id": {"S": "a"}}
    refused = [
        lambda: _put(c, **{too_long: {"N": "1"}}),
        lambda: _put(c, m={"M": {too_long: {"S": "x"}}}),
        lambda: _put(c, m={"L": [{"M": {"x" * 20_000 + "é" * 22_768: {"S": "x"}}}]}),
        lambda: c.get_item(
            TableName="Users",
            Key=key,
            ProjectionExpression="#n",
            ExpressionAttributeNames={"#n": too_long},
        ),
        lambda: c.get_item(TableName="Users", Key=key, AttributesToGet=[too_long]),
        lambda: c.update_item(
            TableName="Users",
            Key=key,
            AttributeUpdates={too_long: {"Value": {"N": "2"}, "Action": "PUT"}},
        ),
        lambda: c.update_item(
            TableName="Users",
            Key=key,
            UpdateExpression="SET #n = :v",
            ExpressionAttributeNames={"#n": too_long},
            ExpressionAttributeValues={":v": {"N": "3"}},
        ),
        lambda: c.update_item(
            TableName="Users",
            Key=key,
            UpdateExpression="SET a = :v",
            ConditionExpression="#n = :v",
            ExpressionAttributeNames={"#n": too_long},
            ExpressionAttributeValues={":v": {"N": "3"}},
        ),
    ]
    for i, call in enumerate(refused):
        assert _error(call) == ("ValidationException", _TOO_LONG), i
    item = c.get_item(TableName="Users", Key=key)["Item"]
    assert set(item) == {"id", longest, "m"}


# --- expressions -------------------------------------------------------------------------


def _condition(c: Any, condition: str) -> Any:
    return c.update_item(
        TableName="Users",
        Key={"id": {"S": "a"}},
        UpdateExpression="SET z = :v",
        ConditionExpression=condition,
        ExpressionAttributeValues={":v": {"N": "1"}},
    )


def test_an_expression_may_nest_149_levels_and_300_operators(served: Served) -> None:
    c = served.client()
    _table(c)
    _put(c, x={"N": "1"}, y={"N": "2"})
    # 149 levels of "x<y or (...)": 299 operators, all under 4 KB
    _condition(c, "x<y " + "or (x<y " * 149 + ")" * 149)
    got = c.scan(TableName="Users", FilterExpression="x<y " + "or (x<y " * 149 + ")" * 149)
    assert got["Count"] == 1
    code, message = _error(lambda: _condition(c, "x<y " + "or (x<y " * 150 + ")" * 150))
    assert code == "ValidationException"
    assert message.startswith(
        "Invalid ConditionExpression: The expression contains too many operators; "
        "operator count: 301"
    ), message


def test_update_table_index_key_names_are_at_most_255_bytes(served: Served) -> None:
    c = served.client()
    _table(c)
    name = "k" * 256

    def create(defined: str, key: str) -> Any:
        return lambda: c.update_table(
            TableName="Users",
            AttributeDefinitions=[{"AttributeName": defined, "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[
                {
                    "Create": {
                        "IndexName": "ByName",
                        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                }
            ],
        )

    rule = "failed to satisfy constraint: Member must have length less than or equal to 255"
    at_key = "globalSecondaryIndexUpdates.1.member.create.keySchema.1.member.attributeName"
    assert _error(create("short", name)) == (
        "ValidationException",
        f"1 validation error detected: Value '{name}' at '{at_key}' {rule}",
    )
    code, message = _error(create(name, name))
    assert code == "ValidationException"
    assert message.startswith("2 validation errors detected: ") and message.count(rule) == 2
    assert "GlobalSecondaryIndexes" not in c.describe_table(TableName="Users")["Table"]
    create("k" * 255, "k" * 255)()
    [index] = c.describe_table(TableName="Users")["Table"]["GlobalSecondaryIndexes"]
    assert index["KeySchema"] == [{"AttributeName": "k" * 255, "KeyType": "HASH"}]
