"""The raw HTTP side of DynamoDB's protocol, as DynamoDB answers it: which methods,
content types and encodings a request may have, its request id, the health check and
``DescribeEndpoints`` (the only answers that depend on the connection, not the body)."""

from __future__ import annotations

import base64
import functools
import itertools
import secrets
import zlib
from typing import Any

from streamkit.server._errors import DynamoError

__all__ = (
    "JSON_TYPES",
    "NOT_FOUND",
    "decompress",
    "describe_endpoints",
    "health_text",
    "known_operation",
    "media_type",
    "request_id",
)

# the content types DynamoDB reads a body as (any other, with a body: 404 below)
JSON_TYPES = frozenset(("application/x-amz-json-1.0", "application/json"))
# DynamoDB's answer to another method than GET / POST, a GET of another path than "/",
# and a body of another content type: HTTP 404 with this (XML) body
NOT_FOUND = b"<UnknownOperationException/>\n"
_CACHE_MINUTES = 1440  # DynamoDB's CachePeriodInMinutes


# a request id is this process's random prefix and a counter: unique, and no system call
# per request (32 fresh random bytes a request were ~5% of a GetItem's CPU)
_ID_PREFIX = base64.b32encode(secrets.token_bytes(20)).decode()  # 32 characters
_ID_COUNT = itertools.count()


def request_id() -> str:
    """A request id shaped as DynamoDB's: 52 characters of ``[0-9A-Z]``."""
    return f"{_ID_PREFIX}{next(_ID_COUNT):020X}"


def media_type(header: str | None) -> str:
    """A Content-Type header's media type (``application/json; charset=x`` ->
    ``application/json``)."""
    return (header or "").partition(";")[0].strip().lower()


def host_of(headers: dict[str, str]) -> str:
    """The name the client reached this endpoint by (its ``Host``), as DynamoDB names
    itself (``dynamodb.us-east-1.amazonaws.com``): no scheme, the port if any."""
    return (headers.get("host") or "localhost").strip()


def health_text(headers: dict[str, str]) -> bytes:
    """DynamoDB's answer to ``GET /``: ``healthy: <its host name> ``."""
    return f"healthy: {host_of(headers)} ".encode()


def describe_endpoints(headers: dict[str, str]) -> dict[str, Any]:
    """``DescribeEndpoints``: one endpoint, the one the request reached."""
    return {"Endpoints": [{"Address": host_of(headers), "CachePeriodInMinutes": _CACHE_MINUTES}]}


@functools.cache
def _dynamodb_operations() -> frozenset[str]:
    try:
        import botocore.session

        model = botocore.session.get_session().get_service_model("dynamodb")
        return frozenset(model.operation_names)
    except Exception:  # pragma: no cover - botocore is part of the server extra
        return frozenset()


def known_operation(name: str) -> bool:
    """Whether DynamoDB has an operation of this name (streamkit may not serve it)."""
    return name in _dynamodb_operations()


def _failed_decoding() -> DynamoError:
    # DynamoDB answers an undecodable body with a 500 (a retryable error, as it says)
    return DynamoError("InternalServerError", "Internal server error", status=500)


def decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body of a request with ``Content-Encoding``: ``gzip`` (one or more members,
    as the gzip format allows) and ``deflate`` (one zlib stream, RFC 1950) are
    decompressed, ``identity`` kept; another encoding or a body that is not what it
    says is HTTP 500, as DynamoDB answers. ``limit``: the largest decompressed size
    served (a 413 past it)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # applied in order, so undone in reverse
        if coding == "identity":
            continue
        if coding not in _WBITS:
            raise _failed_decoding()
        raw = _inflate(raw, limit, coding)
    return raw


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _inflate(raw: bytes, limit: int, coding: str) -> bytes:
    out: list[bytes] = []
    size = 0
    data = raw
    if not data:
        raise _failed_decoding()
    while data:
        if out and coding != "gzip":
            raise _failed_decoding()  # junk after the one zlib stream
        d = zlib.decompressobj(_WBITS[coding])
        try:
            while data:
                chunk = d.decompress(data, limit + 1 - size)
                size += len(chunk)
                out.append(chunk)
                if size > limit:
                    raise DynamoError(
                        "RequestEntityTooLarge",
                        f"Request payload is too large: more than {limit} bytes decompressed",
                        status=413,
                    )
                data = d.unconsumed_tail
                if d.eof:
                    break
        except zlib.error:
            raise _failed_decoding() from None
        if not d.eof:
            raise _failed_decoding()  # cut short
        data = d.unused_data  # another gzip member follows (or junk: refused as it starts)
    return b"".join(out)
