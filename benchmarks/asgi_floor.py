"""The HTTP floor of the endpoint benchmarks: the least an ASGI app can do per request.

Served by the same uvicorn (httptools, uvloop) as ``streamkit serve``: read the body,
parse it as JSON, answer a small JSON object (the request's ``Key`` as ``Item``, and an
ACTIVE table for the benchmark's set-up calls). No signature check, no storage. What a
request costs the server here is what uvicorn and JSON cost, before any DynamoDB work.

``python -m uvicorn benchmarks.asgi_floor:app --port N``
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

_HEADERS = [(b"content-type", b"application/x-amz-json-1.0")]
_TABLE = {"TableName": "Bench", "TableStatus": "ACTIVE"}


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body) if body else {}
    out = json.dumps(
        {"Item": request.get("Key", {}), "Table": _TABLE, "TableDescription": _TABLE}
    ).encode()
    headers = [*_HEADERS, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
