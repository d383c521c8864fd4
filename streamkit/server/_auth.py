"""SigV4 verification of requests, against configured access keys (botocore computes
the signatures; we only rebuild the request it signed)."""

from __future__ import annotations

import hmac
import os
import re
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from streamkit.server._errors import DynamoError

__all__ = ("REQUEST_REGION", "Authenticator", "load_keys", "signed_region")

REQUEST_REGION: ContextVar[str | None] = ContextVar("streamkit_request_region", default=None)
"""The region the request being served was signed for (None: not signed)."""

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<headers>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_SKEW = timedelta(minutes=15)
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[A-Za-z0-9-]{1,64})/")


def signed_region(authorization: str | None) -> str | None:
    """The region of a SigV4 ``Authorization`` header's credential scope, if any."""
    if not authorization:
        return None
    m = _SCOPE.search(authorization)
    return None if m is None else m["region"]


def load_keys(spec: str) -> dict[str, str]:
    """``ID:SECRET[,ID:SECRET...]`` or a file of such lines (``#`` comments).

    A malformed entry is reported by its line (or position), never shown: it may hold a
    secret.
    """
    entries: list[tuple[str, str]] = []
    if os.path.exists(spec):
        with open(spec, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    entries.append((text, f"{spec}, line {n}"))
    else:
        entries = [(part.strip(), f"entry {n}") for n, part in enumerate(spec.split(","), 1)]
    keys: dict[str, str] = {}
    for text, where in entries:
        key_id, sep, secret = text.partition(":")
        if not sep or not key_id or not secret:
            raise ValueError(f"access keys must be ID:SECRET pairs: {where} is not one")
        keys[key_id] = secret
    if not keys:
        raise ValueError("no access keys given")
    return keys


def _denied(name: str, message: str) -> DynamoError:
    return DynamoError(name, message, coral=True)


_SERVICE = "dynamodb"  # what DynamoDB's and DynamoDB Streams' SDK clients sign for
_MUST_SIGN = ("host", "x-amz-target")


class Authenticator:
    """Verifies ``Authorization: AWS4-HMAC-SHA256 ...`` headers as DynamoDB does.

    The credential scope must name the ``dynamodb`` service and, when ``region`` is
    given, that region (any region otherwise); ``Host`` and ``X-Amz-Target`` (which
    picks the operation) must be among the signed headers.
    """

    def __init__(self, keys: dict[str, str], *, region: str | None = None) -> None:
        self.keys = keys
        self.region = region

    def verify(self, scope: dict[str, Any], headers: dict[str, str], body: bytes) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        header = headers.get("authorization")
        if header is None:
            raise _denied(
                "MissingAuthenticationTokenException", "Request is missing Authentication Token"
            )
        # as DynamoDB: the request's time is judged before the header's details or the key
        stamp = headers.get("x-amz-date", "")
        try:
            when: datetime | None = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            when = None
        if when is not None:
            _check_skew(stamp, when)
        m = _AUTH.match(header)
        if m is None:
            raise _denied("IncompleteSignatureException", "Authorization header is malformed")
        if m["service"] != _SERVICE:
            raise _denied(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{_SERVICE}'.",
            )
        if self.region is not None and m["region"] != self.region:
            raise _denied(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region: '{self.region}'.",
            )
        signed = m["headers"].split(";")
        for name in _MUST_SIGN:
            if name not in signed:
                raise _denied(
                    "IncompleteSignatureException",
                    f"'{name}' must be a 'SignedHeader' in the AWS Authorization.",
                )
        secret = self.keys.get(m["key"])
        if secret is None:
            raise _denied(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if when is None:
            raise _denied("IncompleteSignatureException", "X-Amz-Date is missing or malformed")
        host = headers.get("host", "")
        path = scope.get("raw_path", b"/").decode("latin-1") or "/"
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
        # a header sent more than once is signed as its values joined by commas (SigV4)
        sent: dict[str, list[str]] = {}
        for name, value in scope.get("headers", ()):
            sent.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        request = AWSRequest(
            method=scope["method"],
            url=url,
            data=body,
            headers={h: ",".join(sent[h]) if h in sent else headers.get(h, "") for h in signed},
        )
        auth = SigV4Auth(Credentials(m["key"], secret), m["service"], m["region"])
        request.context["timestamp"] = stamp
        canonical = auth.canonical_request(request)
        string_to_sign = auth.string_to_sign(request, canonical)
        expected = auth.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, m["signature"]):
            raise _denied(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.",
            )


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ")


def _check_skew(stamp: str, when: datetime) -> None:
    """A request signed more than 15 minutes before or after now is refused, in
    DynamoDB's words for each side."""
    now = datetime.now(UTC)
    if when < now - _SKEW:
        raise _denied(
            "InvalidSignatureException",
            f"Signature expired: {stamp} is now earlier than {_stamp(now - _SKEW)} "
            f"({_stamp(now)} - 15 min.)",
        )
    if when > now + _SKEW:
        raise _denied(
            "InvalidSignatureException",
            f"Signature not yet current: {stamp} is still later than {_stamp(now + _SKEW)} "
            f"({_stamp(now)} + 15 min.)",
        )
