"""SigV4 verification of requests, against configured access keys (botocore computes
the signatures; we only rebuild the request it signed)."""

from __future__ import annotations

import hmac
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from streamkit.server._errors import DynamoError

__all__ = ("Authenticator", "load_keys")

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<headers>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_SKEW = timedelta(minutes=15)


def load_keys(spec: str) -> dict[str, str]:
    """``ID:SECRET[,ID:SECRET...]`` or a file of such lines (``#`` comments)."""
    text = spec
    if os.path.exists(spec):
        with open(spec, encoding="utf-8") as f:
            text = ",".join(line.strip() for line in f if line.strip() and not line.startswith("#"))
    keys: dict[str, str] = {}
    for part in text.split(","):
        key_id, sep, secret = part.strip().partition(":")
        if not sep or not key_id or not secret:
            raise ValueError(f"access keys must be ID:SECRET pairs, got {part.strip()!r}")
        keys[key_id] = secret
    return keys


def _denied(name: str, message: str) -> DynamoError:
    return DynamoError(name, message, coral=True)


class Authenticator:
    """Verifies ``Authorization: AWS4-HMAC-SHA256 ...`` headers as DynamoDB does."""

    def __init__(self, keys: dict[str, str], *, region: str) -> None:
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
        m = _AUTH.match(header)
        if m is None:
            raise _denied("IncompleteSignatureException", "Authorization header is malformed")
        secret = self.keys.get(m["key"])
        if secret is None:
            raise _denied(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        stamp = headers.get("x-amz-date", "")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise _denied(
                "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
            ) from None
        if abs(datetime.now(UTC) - when) > _SKEW:
            raise _denied(
                "InvalidSignatureException",
                "Signature expired: " + stamp + " is now earlier than the allowed skew",
            )
        signed = m["headers"].split(";")
        host = headers.get("host", "")
        path = scope.get("raw_path", b"/").decode("latin-1") or "/"
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(
            method=scope["method"],
            url=url,
            data=body,
            headers={h: headers.get(h, "") for h in signed},
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
