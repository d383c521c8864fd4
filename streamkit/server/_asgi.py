"""The ASGI application speaking DynamoDB's JSON 1.0 protocol (served by uvicorn).

``POST /`` with ``X-Amz-Target: DynamoDB_20120810.<Operation>`` (or
``DynamoDBStreams_20120810.<Operation>``) and a JSON body; the answer is JSON with
``Content-Type: application/x-amz-json-1.0``, or a DynamoDB error (HTTP 400,
``{"__type": ..., "message": ...}``). Malformed requests are 400s, never 500s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
import zlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import StreamkitError
from streamkit.server._errors import DynamoError, from_streamkit
from streamkit.server._ops import OPERATIONS, Service

if TYPE_CHECKING:
    from streamkit._app import App
    from streamkit.server._auth import Authenticator

__all__ = ("DynamoDBServer", "create_asgi_app")

_MAX_BODY = 16 * 1024 * 1024
_DYNAMO = "DynamoDB_20120810."
_STREAMS = "DynamoDBStreams_20120810."
_JSON = b"application/x-amz-json-1.0"
_log = logging.getLogger("streamkit.server")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


class DynamoDBServer:
    """An ASGI app: DynamoDB's and DynamoDB Streams' APIs on a streamkit App."""

    def __init__(
        self,
        app: App,
        *,
        region: str = "local",
        auth: Authenticator | None = None,
        background: bool = True,
    ) -> None:
        self.app = app
        self.service = Service(app, region=region)
        self.auth = auth
        self.background = background
        self._streams: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def streams(self) -> Any:
        if self._streams is None:
            from streamkit.server._streams import StreamsService

            self._streams = StreamsService(self.service)
        return self._streams

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, body = await self._handle(scope, receive)
        payload = json.dumps(body, separators=(",", ":"), default=_default).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-amzn-requestid", uuid.uuid4().hex.encode()),
                    (b"x-amz-crc32", str(zlib.crc32(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as e:  # pragma: no cover - reported by the server
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        """Open the storage and (with ``background``) run the capture relay and the TTL
        sweeper, so that writes reach the change log (the Streams API reads it)."""
        await self.app.open()
        if self.background:
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(self.app.running(handlers=[]))
            self._stack = stack

    async def stop(self) -> None:
        """Stop what :meth:`start` started and close the App."""
        if self._streams is not None:
            await self._streams.close()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        await self.app.close()

    async def _body(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_BODY:
                raise DynamoError(
                    "RequestEntityTooLarge", "Request payload is too large", status=413
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _handle(self, scope: dict[str, Any], receive: Any) -> tuple[int, dict[str, Any]]:
        try:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            if scope["method"] == "GET":
                return 200, {"healthy": "streamkit"}
            if scope["method"] != "POST":
                raise DynamoError("UnknownOperationException", "Only POST is supported", coral=True)
            raw = await self._body(receive)
            if self.auth is not None:
                self.auth.verify(scope, headers, raw)
            target = headers.get("x-amz-target", "")
            try:
                body = json.loads(raw, parse_float=Decimal) if raw else {}
            except (ValueError, UnicodeDecodeError) as e:
                raise DynamoError(
                    "SerializationException", f"Malformed JSON: {e}", coral=True
                ) from None
            if not isinstance(body, dict):
                raise DynamoError(
                    "SerializationException", "The request body must be a JSON object", coral=True
                )
            if target.startswith(_DYNAMO):
                op = OPERATIONS.get(target[len(_DYNAMO) :])
                if op is None:
                    raise DynamoError(
                        "UnknownOperationException",
                        f"Operation {target[len(_DYNAMO) :]} is not supported by streamkit",
                        coral=True,
                    )
                return 200, await op(self.service, body)
            if target.startswith(_STREAMS):
                return 200, await self.streams.call(target[len(_STREAMS) :], body)
            raise DynamoError("UnknownOperationException", f"Unknown target {target!r}", coral=True)
        except DynamoError as e:
            return e.status, e.body()
        except StreamkitError as e:
            err = from_streamkit(e)
            return err.status, err.body()
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
            # input the operations did not anticipate: still the caller's fault, never a 500
            _log.info("request refused: %r", e)
            err = DynamoError("ValidationException", f"Invalid request: {e}")
            return err.status, err.body()
        except Exception:
            _log.exception("internal error")
            err = DynamoError("InternalServerError", "Internal server error", status=500)
            return err.status, err.body()


def create_asgi_app(
    app: App,
    *,
    region: str = "local",
    auth: Authenticator | None = None,
    background: bool = True,
) -> DynamoDBServer:
    """The ASGI app serving ``app`` the way DynamoDB serves its API (for uvicorn & co).

    With ``background`` (the default) the server's lifespan also runs the capture relay
    and the TTL sweeper, as ``app.running(handlers=[])`` does.
    """
    return DynamoDBServer(app, region=region, auth=auth, background=background)
