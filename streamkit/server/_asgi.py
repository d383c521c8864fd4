"""The ASGI application speaking DynamoDB's JSON 1.0 protocol (served by uvicorn).

``POST /`` with ``X-Amz-Target: DynamoDB_20120810.<Operation>`` (or
``DynamoDBStreams_20120810.<Operation>``) and a JSON body; the answer is JSON with
``Content-Type: application/x-amz-json-1.0``, or a DynamoDB error (HTTP 400,
``{"__type": ..., "message": ...}``). Malformed requests are 400s, never 500s.

As DynamoDB: ``GET /`` is the health check; another method, path or content type is
HTTP 404 ``<UnknownOperationException/>``; a body may be gzip-compressed
(``Content-Encoding: gzip``); every answer has an ``x-amzn-RequestId`` and an
``x-amz-crc32`` of its body.

Guards: without an authenticator only loopback ``Host`` names are served (a web page
cannot reach it through DNS rebinding); a body must arrive within ``body_timeout``
seconds (408) and be at most 16 MB (413), as DynamoDB's (decompressed too: DynamoDB
does not limit that); a body over 64 KB is parsed and converted in a worker thread,
so other clients keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import ipaddress
import json
import logging
import re
import zlib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import StreamkitError
from streamkit.records import DEFAULT_REGION
from streamkit.server._auth import REQUEST_REGION, signed_region
from streamkit.server._convert import PREPARED, parameter_error, parse_body, parse_large
from streamkit.server._errors import DynamoError, from_streamkit
from streamkit.server._http import (
    JSON_TYPES,
    NOT_FOUND,
    decompress,
    describe_endpoints,
    health_text,
    known_operation,
    media_type,
    request_id,
)
from streamkit.server._ops import OPERATIONS, Service

if TYPE_CHECKING:
    from streamkit._app import App
    from streamkit.server._auth import Authenticator

__all__ = ("DynamoDBServer", "create_asgi_app", "loopback_host", "service_for")

_MAX_BODY = 16 * 1024 * 1024  # DynamoDB's limit for a request (of any operation)
# operations DynamoDB answers with an empty body (not even ``{}``) when they succeed
_EMPTY_ANSWER = frozenset(("TagResource", "UntagResource"))
_DRAIN = 64 * 1024 * 1024  # read (and drop) an oversized body up to this, then answer
_IN_THREAD = 64 * 1024  # larger bodies are parsed and converted off the event loop
_DYNAMO = "DynamoDB_20120810."
_STREAMS = "DynamoDBStreams_20120810."
_JSON = "application/x-amz-json-1.0"
_TEXT = "text/plain"
_XML = "application/xml"
_COMPRESS_FROM = 4096  # answers this large are compressed for a client that asks (DynamoDB's)


_CODINGS = ("gzip", "deflate")  # DynamoDB's answer codings; gzip wins a tie of wildcards
_Q_VALUE = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")


_EXPOSED = b"x-amzn-RequestId,x-amzn-ErrorType,x-amzn-ErrorMessage,x-amz-crc32,Date"
_PREFLIGHT_MAX_AGE = b"172800"  # seconds a browser may keep a preflight's answer


def _cors(scope: dict[str, Any]) -> list[tuple[bytes, bytes]] | None:
    """DynamoDB's CORS headers for a request that carries an ``Origin`` (None: none): any
    origin may call and read the answer's headers; a preflight (OPTIONS) is allowed the
    method and headers it asks for, and told how long to keep that answer."""
    origin = method = asked = None
    for name, value in scope["headers"]:
        lower = name.lower()
        if lower == b"origin":
            origin = value
        elif lower == b"access-control-request-method":
            method = value
        elif lower == b"access-control-request-headers":
            asked = value
    if origin is None:
        return None
    out = [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", _EXPOSED)]
    if scope["method"] == "OPTIONS":
        out.append((b"access-control-max-age", _PREFLIGHT_MAX_AGE))
        if method is not None:
            out.append((b"access-control-allow-methods", method))
        if asked is not None:
            out.append((b"access-control-allow-headers", asked))
    return out


def _quality(params: str) -> float:
    """An Accept-Encoding element's weight as DynamoDB reads it: the first ``q=`` in its
    parameters (even inside another name, as ``nq=0``), clamped to 0..1; malformed: 1."""
    i = params.find("q=")
    if i < 0:
        return 1.0
    raw = params[i + 2 :].split(";", 1)[0].strip()
    if not _Q_VALUE.fullmatch(raw):
        return 1.0
    return min(max(float(raw), 0.0), 1.0)


def response_coding(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The coding of a large answer, from the request's *first* Accept-Encoding header,
    chosen as DynamoDB chooses: gzip or deflate, the highest weight (of an element naming
    it, else ``*``'s), a named one before a wildcard one, then the first named; weight
    0, or neither accepted: None (plain). ``identity`` and other codings are ignored."""
    value = next((v for k, v in headers if k.lower() == b"accept-encoding"), None)
    if value is None:
        return None
    named: dict[str, tuple[float, int]] = {}
    star: float | None = None
    for index, element in enumerate(value.decode("latin-1").split(",")):
        token, _, params = element.partition(";")
        token = token.strip().lower()
        q = _quality(params)
        if token in _CODINGS:
            best = named.get(token)
            named[token] = (q, index) if best is None else (max(best[0], q), best[1])
        elif token == "*":
            star = q if star is None else max(star, q)
    ranked = []
    for order, coding in enumerate(_CODINGS):
        if coding in named:
            q, index = named[coding]
            ranked.append((-q, 0, index, coding))
        elif star is not None:
            ranked.append((-star, 1, order, coding))
    if not ranked:
        return None
    q, _, _, coding = min(ranked)
    return coding if q < 0 else None


def _refused(params: bytes) -> bool:
    """``q=0`` (or a malformed weight, read as no)."""
    if not params.startswith(b"q="):
        return False
    try:
        return float(params[2:]) == 0
    except ValueError:
        return True


_log = logging.getLogger("streamkit.server")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


@functools.lru_cache(maxsize=1024)  # a header per request: parse each name once
def loopback_host(host: str) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost``, ``*.localhost``, a
    loopback address (``127.0.0.1``, ``[::1]``), with or without a port."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# an answer: status, body (JSON, or bytes as they are), Connection: close, content type
_Answer = tuple[int, "dict[str, Any] | bytes | None", bool, str]


def service_for(
    app: App, *, region: str | None = None, peers: Mapping[str, str] | None = None
) -> Service:
    """The endpoint's operations on an App's store and change log: the App is the
    facade that wires them (and runs the relay and sweepers); the operations never
    see it. ``peers``: the change logs of the other regions, by region (global tables)."""
    return Service(
        app.store,
        app.log,
        namespace=app.namespace,
        partitions=app.topic_config.partitions,
        region=region,
        home_region=None if app.region == DEFAULT_REGION else app.region,
        log_url=app.log_url,
        peers=peers,
    )


class DynamoDBServer:
    """An ASGI app: DynamoDB's and DynamoDB Streams' APIs on a streamkit App."""

    def __init__(
        self,
        app: App,
        *,
        region: str | None = None,
        auth: Authenticator | None = None,
        background: bool = True,
        allowed_hosts: Iterable[str] = (),
        body_timeout: float | None = 30.0,
        peers: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.service = service_for(app, region=region, peers=peers)
        self.auth = auth
        self.background = background
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.body_timeout = body_timeout
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
        cors = _cors(scope)
        if cors is not None and scope["method"] == "OPTIONS":  # a browser's preflight
            preflight = [(b"server", b"Server"), (b"content-length", b"0"), *cors]
            await send({"type": "http.response.start", "status": 200, "headers": preflight})
            await send({"type": "http.response.body", "body": b""})
            return
        status, body, close, content_type = await self._handle(scope, receive)
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body, separators=(",", ":"), default=_default).encode()
        headers = [(b"server", b"Server")]  # DynamoDB's own Server header
        coding = response_coding(scope["headers"]) if len(payload) >= _COMPRESS_FROM else None
        if coding is not None:
            # as DynamoDB: a large answer is compressed when the client asks, and the CRC
            # is of the bytes sent
            if coding == "gzip":
                payload = gzip.compress(payload, compresslevel=1, mtime=0)
            else:
                payload = zlib.compress(payload, 1)
            headers.append((b"content-encoding", coding.encode()))
        headers += [
            (b"content-length", str(len(payload)).encode()),
            (b"x-amzn-requestid", request_id().encode()),
            (b"x-amz-crc32", str(zlib.crc32(payload)).encode()),
        ]
        if content_type:
            headers.insert(0, (b"content-type", content_type.encode()))
        if close:
            headers.append((b"connection", b"close"))
        if cors is not None:
            headers += cors
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _health(self, headers: dict[str, str]) -> _Answer:
        """GET /: 200 while change capture works (DynamoDB's ``healthy: <host>``); 503
        with the reason (JSON) while a table's capture is set aside (its topic cannot be
        made) or a background task stopped."""
        problems: list[str] = []
        for task in list(self.app._tasks):
            if task.done() and not task.cancelled() and task.exception() is not None:
                problems.append(f"{task.get_name()} stopped: {task.exception()!r}")
        failing: list[dict[str, Any]] = []
        try:
            failing = (await self.app.capture_status())["failing"]
        except StreamkitError as e:
            problems.append(f"cannot read the change-capture state: {e}")
        problems += [
            f"change capture of table {f['table']!r} is set aside since {f['since']} "
            f"(rows kept: {f['rows_kept']}): {f['error']}"
            for f in failing
        ]
        if problems:
            body = {"healthy": False, "reason": "; ".join(problems), "failing": failing}
            return 503, body, False, _JSON
        return 200, health_text(headers), False, _TEXT

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

    def _check_host(self, headers: dict[str, str]) -> None:
        host = headers.get("host")
        if host is None or loopback_host(host):  # no Host: not a browser
            return
        name = host.strip().lower()
        if "*" in self.allowed_hosts or name in self.allowed_hosts:
            return
        if name.rpartition(":")[0] in self.allowed_hosts:
            return
        raise DynamoError(
            "AccessDeniedException",
            f"Host {host[:100]!r} is refused: with authentication off, streamkit serves only "
            "loopback names (localhost, 127.0.0.1, [::1], *.localhost), so that a web page "
            "cannot reach it through DNS rebinding. Turn authentication on (--keys) or "
            "allow the name (--allow-host).",
            status=403,
            coral=True,
        )

    async def _read(self, receive: Any, headers: dict[str, str]) -> bytes:
        """The request body, within ``body_timeout`` seconds and DynamoDB's size limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > _DRAIN:
            raise self._too_large(int(declared), close=True)
        try:
            async with asyncio.timeout(self.body_timeout):
                return await self._body(receive)
        except TimeoutError:
            raise DynamoError(
                "RequestTimeoutException",
                f"The request body was not received within {self.body_timeout:g} seconds",
                status=408,
                coral=True,
                close=True,
            ) from None

    @staticmethod
    def _too_large(size: int, *, close: bool = False) -> DynamoError:
        return DynamoError(
            "RequestEntityTooLarge",
            f"Request payload is too large: {size} bytes, the limit is {_MAX_BODY}",
            status=413,
            close=close,
        )

    async def _body(self, receive: Any) -> bytes:
        limit = _MAX_BODY
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif chunks:
                chunks.clear()  # too large: read the rest (the client waits to send it) and drop
            if size > _DRAIN:
                raise self._too_large(size, close=True)
            if not message.get("more_body", False):
                break
        if size > limit:
            raise self._too_large(size)
        return b"".join(chunks)

    async def _handle(self, scope: dict[str, Any], receive: Any) -> _Answer:
        token = None
        answer_type = _JSON  # DynamoDB answers application/json to a request of that type
        try:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            method, path = scope["method"], scope.get("path") or "/"
            if method == "GET" and path == "/":
                return await self._health(headers)
            if method != "POST":
                return 404, NOT_FOUND, False, ""
            if self.auth is None:
                self._check_host(headers)
            target = headers.get("x-amz-target", "")
            REQUEST_REGION.set(signed_region(headers.get("authorization")))
            raw = await self._read(receive, headers)
            content_type = media_type(headers.get("content-type"))
            if raw and content_type not in JSON_TYPES:
                return 404, NOT_FOUND, False, ""
            if content_type == "application/json":
                answer_type = content_type
            if self.auth is not None:
                self.auth.verify(scope, headers, raw)  # the bytes signed: still compressed
            encoding = headers.get("content-encoding", "")
            if encoding:
                raw = decompress(raw, encoding, _MAX_BODY)
            if len(raw) > _IN_THREAD:
                body, prepared = await asyncio.to_thread(parse_large, raw)
                token = PREPARED.set(prepared)
            else:
                body = parse_body(raw)
            answer = await self._dispatch(target, body, headers, empty=not raw)
            if answer is None:
                return 200, None, False, answer_type
            return 200, answer, False, answer_type
        except DynamoError as e:
            return e.status, e.body(), e.close, answer_type
        except StreamkitError as e:
            err = from_streamkit(e)
            return err.status, err.body(), False, answer_type
        except (
            TypeError,
            ValueError,
            ArithmeticError,
            KeyError,
            AttributeError,
            RecursionError,
        ) as e:
            # input the operations did not anticipate (an overflow, a wrong type deep
            # inside): still the caller's fault, never a 500
            _log.info("request refused: %r", e)
            err = parameter_error(e)
            return err.status, err.body(), False, answer_type
        except Exception:
            _log.exception("internal error")
            err = DynamoError("InternalServerError", "Internal server error", status=500)
            return err.status, err.body(), False, answer_type
        finally:
            if token is not None:
                PREPARED.reset(token)

    async def _dispatch(
        self, target: str, body: dict[str, Any], headers: dict[str, str], *, empty: bool
    ) -> dict[str, Any] | None:
        """The answer of the operation ``X-Amz-Target`` names (None: an empty body)."""
        if target.startswith(_DYNAMO):
            name = target[len(_DYNAMO) :]
            op = OPERATIONS.get(name)
            if op is None and name != "DescribeEndpoints":
                if not known_operation(name):  # DynamoDB says no more than this
                    raise DynamoError("UnknownOperationException", "", coral=True)
                raise DynamoError(
                    "UnknownOperationException",
                    f"Operation {name} is not supported by streamkit",
                    coral=True,
                )
            if empty:  # not even "{}": DynamoDB cannot read it as a request
                raise DynamoError("SerializationException", "The request body is empty", coral=True)
            if op is None:
                return describe_endpoints(headers)
            answer = await op(self.service, body)
            if not answer and name in _EMPTY_ANSWER:
                return None
            return answer
        if target.startswith(_STREAMS):
            if empty:
                raise DynamoError("SerializationException", "The request body is empty", coral=True)
            return await self.streams.call(target[len(_STREAMS) :], body)  # type: ignore[no-any-return]
        raise DynamoError("UnknownOperationException", "", coral=True)


def create_asgi_app(
    app: App,
    *,
    region: str | None = None,
    auth: Authenticator | None = None,
    background: bool = True,
    allowed_hosts: Iterable[str] = (),
    body_timeout: float | None = 30.0,
    peers: Mapping[str, str] | None = None,
) -> DynamoDBServer:
    """The ASGI app serving ``app`` the way DynamoDB serves its API (for uvicorn & co).

    With ``background`` (the default) the server's lifespan also runs the capture relay
    and the TTL sweeper, as ``app.running(handlers=[])`` does.

    ``region`` is the region ARNs and stream records name; None: the region each request
    was signed for (its SigV4 credential scope), ``us-east-1`` for an unsigned request.

    Without ``auth``, only requests whose ``Host`` is a loopback name (``localhost``,
    ``127.0.0.1``, ``[::1]``, ``*.localhost``) or one of ``allowed_hosts`` (``"*"``: any)
    are served: 403 otherwise. A request body not received within ``body_timeout``
    seconds gets a 408 and the connection is closed (None: no limit).

    ``peers`` (``{region: log URL}``) are the other regions ``UpdateTable``'s
    ``ReplicaUpdates`` may add (global tables; the App needs a ``region``).
    """
    return DynamoDBServer(
        app,
        region=region,
        auth=auth,
        background=background,
        allowed_hosts=allowed_hosts,
        body_timeout=body_timeout,
        peers=peers,
    )
