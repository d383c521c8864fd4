"""Compression and CORS as DynamoDB does them (found by ScyllaDB Alternator's
test_compressed_request / test_compressed_response / test_cors, which record what
DynamoDB answered): which coding a large answer gets for an Accept-Encoding header,
deflate request bodies, and the CORS headers of a browser's requests."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamkit.server._asgi import response_coding
from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _table, served
from tests.integration.test_dynamodb_limits import _post, _raw

__all__ = ("served",)

# (Accept-Encoding, the coding DynamoDB answers with; None: uncompressed)
DYNAMODB_CHOICES = [
    ("identity", None),
    ("", None),
    ("br", None),
    ("zstd", None),
    ("compress", None),
    ("x-gzip", None),
    ("gzip, deflate", "gzip"),
    ("br, identity, deflate, gzip", "deflate"),  # the first named wins a tie
    ("GZIP, identity", "gzip"),
    ("dog, gzip ,, cat", "gzip"),
    ("gzip;q=0.8, deflate;q=0.5", "gzip"),
    ("br, gzip;q=0, deflate; q = 0.5 , identity;q=0", "deflate"),
    ("*", "gzip"),
    ("*, deflate;q=0.5", "gzip"),
    ("*, deflate", "deflate"),  # a named coding beats a wildcard one
    ("*, identity", "gzip"),
    ("*, gzip;q=0.5", "deflate"),
    ("gzip ;q=0", None),
    ("identity;q=0", None),
    ("*;q=0", None),
    ("*;q=0.5,identity", "gzip"),
    ("gzip;q=0.5,identity;q=0.8", "gzip"),
    ("br;q=0.8,identity;q=0.5,*;q=0", None),
    ('"gzip"', None),
    ("gzip br", None),
    ("gzip:q=1", None),
    ("deflate;q=0.5, gzip;q=31", "gzip"),  # weights over 1 count as 1
    ("gzip;q=31,deflate;q=51", "gzip"),
    ("deflate;q=0.5, gzip;q=0.2", "deflate"),
    ("deflate;q=0.5, gzip;q=1;q=0.2", "gzip"),  # the first weight counts
    ("deflate;q=0.5,gzip;q=0.", "deflate"),
    ("deflate;q=0.5,gzip;q=0.x", "gzip"),  # a malformed weight counts as 1
    ("deflate;q=0.5,gzip;q=0. x", "gzip"),
    ("deflate;q=-0.5,gzip;q=0.2", "gzip"),  # below 0 counts as 0
    ("gzip;q= 0;q=1", None),
    ("gzip;q =0;q=1", "gzip"),
    ("gzip; q=0;q=1", None),
    ("gzip;nq=0;q=1", None),  # the first "q=", even inside another name
    ("gzip;q=0, gzip;q=1, gzip;q=0", "gzip"),
    ("br,identity;q=0.5,gzip;q=0.0001", "gzip"),
]


@pytest.mark.parametrize(("accept", "coding"), DYNAMODB_CHOICES)
def test_the_coding_chosen_is_dynamodbs(accept: str, coding: str | None) -> None:
    assert response_coding([(b"accept-encoding", accept.encode())]) == coding


def test_only_the_first_accept_encoding_header_counts() -> None:
    assert (
        response_coding([(b"accept-encoding", b"identity"), (b"accept-encoding", b"gzip")]) is None
    )
    assert response_coding([(b"Accept-Encoding", b"deflate"), (b"accept-encoding", b"gzip")]) == (
        "deflate"
    )
    assert response_coding([(b"host", b"x")]) is None


def _get(served: Served, key: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"TableName": "Users", "Key": {"id": {"S": key}}}).encode()
    return _post(served.port, "DynamoDB_20120810.GetItem", body, **headers)


def _users(served: Served) -> Any:
    c = served.client()
    _table(c)
    c.put_item(TableName="Users", Item={"id": {"S": "a"}, "big": {"S": "x" * 6000}})
    return c


def test_large_answers_are_deflated_or_gzipped_as_asked(served: Served) -> None:
    _users(served)
    for accept, undo in (("deflate", zlib.decompress), ("gzip", gzip.decompress)):
        status, headers, body = _get(served, "a", **{"Accept-Encoding": accept})
        assert status == 200 and headers["content-encoding"] == accept
        assert int(headers["x-amz-crc32"]) == zlib.crc32(body)
        assert json.loads(undo(body))["Item"]["big"]["S"] == "x" * 6000


def test_deflate_request_bodies_are_read(served: Served) -> None:
    _users(served)
    body = json.dumps({"TableName": "Users", "Key": {"id": {"S": "a"}}}).encode()
    for coding, packed in (
        ("deflate", zlib.compress(body)),
        ("gzip", gzip.compress(body)),
        ("gzip, deflate", zlib.compress(gzip.compress(body))),
    ):
        status, _, got = _post(
            served.port, "DynamoDB_20120810.GetItem", packed, **{"Content-Encoding": coding}
        )
        assert status == 200, coding
        assert json.loads(got)["Item"]["id"] == {"S": "a"}
    # a deflate body with junk after its stream, or one that is not deflate: 500, as DynamoDB
    for packed in (zlib.compress(body) + b"junk", body):
        status, _, _ = _post(
            served.port, "DynamoDB_20120810.GetItem", packed, **{"Content-Encoding": "deflate"}
        )
        assert status == 500


_CORS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-max-age",
    "access-control-allow-methods",
    "access-control-allow-headers",
)


def test_cors_headers_answer_a_browsers_requests(served: Served) -> None:
    """A request with an Origin gets ``Access-Control-Allow-Origin: *`` and the headers it
    may read; a preflight (OPTIONS) also the methods and headers it asked for and how long
    to keep the answer. Without an Origin nothing changes (OPTIONS stays a 404)."""
    _users(served)
    target = {
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0",
    }
    for method in ("OPTIONS", "GET", "POST"):
        status, headers, _ = _raw(
            served.port, method, body=b"{}" if method == "POST" else b"", headers=dict(target)
        )
        assert not any(h in headers for h in _CORS), method
        if method == "OPTIONS":
            assert status == 404
    asked = {
        "Origin": "http://example.com/",
        "Access-Control-Request-Method": "dog",
        "Access-Control-Request-Headers": "cat, meerkat, mouse",
    }
    status, headers, body = _raw(served.port, "OPTIONS", headers=asked)
    assert status == 200 and body == b""
    assert headers["access-control-allow-origin"] == "*"
    assert "x-amzn-requestid" in headers["access-control-expose-headers"].lower()
    assert int(headers["access-control-max-age"]) > 0
    assert headers["access-control-allow-methods"] == "dog"
    assert headers["access-control-allow-headers"] == "cat, meerkat, mouse"
    for method in ("GET", "POST"):
        status, headers, body = _raw(
            served.port,
            method,
            body=b"{}" if method == "POST" else b"",
            headers={**target, **asked},
        )
        assert status == 200, method
        assert headers["access-control-allow-origin"] == "*"
        assert "access-control-expose-headers" in headers
        for h in (
            "access-control-max-age",
            "access-control-allow-methods",
            "access-control-allow-headers",
        ):
            assert h not in headers, (method, h)
    assert json.loads(body) == {"TableNames": ["Users"]}


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"accept-encoding", b"Accept-Encoding", b"origin", b"x-other"]),
            st.binary(max_size=60),
        ),
        max_size=4,
    )
)
def test_any_accept_encoding_is_answered_without_error(headers: list[tuple[bytes, bytes]]) -> None:
    """Whatever bytes the headers hold, the choice is made (never an exception: a 500)."""
    assert response_coding(headers) in (None, "gzip", "deflate")
