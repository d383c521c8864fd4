"""``streamkit serve``: the DynamoDB-compatible endpoint on uvicorn."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from typing import Annotated, Any

import typer

from streamkit.cli._common import _app, _check_listen, _fail

__all__ = ("register",)

_KEYS_ENV = "STREAMKIT_ACCESS_KEYS"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection whose request headers are not all
    received within ``seconds`` (uvicorn itself waits for them forever); the body has
    its own limit in the ASGI app (``body_timeout``)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderDeadline:
        """Armed when a connection opens or data arrives between requests; when it
        fires with still no request under way, the connection is closed."""

        _timer: asyncio.TimerHandle | None = None
        _armed_at: Any = None  # the request (cycle) that was current when armed
        cycle: Any
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport

        def _between_requests(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _arm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._armed_at = self.cycle
            self._timer = self.loop.call_later(seconds, self._expired)

        def _expired(self) -> None:
            self._timer = None
            if self._between_requests() and self.cycle is self._armed_at:
                self.transport.close()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[misc]
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._between_requests() and (
                self._timer is None or self._armed_at is not self.cycle
            ):
                self._arm()  # the first bytes of the next request
            super().data_received(data)  # type: ignore[misc]

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)  # type: ignore[misc]

    return type("StreamkitHTTPProtocol", (HeaderDeadline, AutoHTTPProtocol), {})


def register(cli: typer.Typer) -> None:
    """Add ``serve`` to ``cli``."""

    @cli.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
        region: Annotated[
            str | None,
            typer.Option(
                "--region",
                help="The region the endpoint reports (default: the region each request "
                "is signed for); with --keys, "
                "signatures must then be scoped to it (without --region: any region). It is "
                "also the App's region (global tables), unless --app names an App.",
            ),
        ] = None,
        peer: Annotated[
            list[str] | None,
            typer.Option(
                "--peer",
                help="REGION=LOG_URL: another region of global tables, which UpdateTable's "
                "ReplicaUpdates may add (repeat for each; needs --region).",
            ),
        ] = None,
        keys: Annotated[
            str | None,
            typer.Option(
                "--keys",
                envvar=_KEYS_ENV,
                help="Access keys that may call it: a file of ACCESS_KEY_ID:SECRET lines, or "
                "ID:SECRET[,ID:SECRET] (SigV4 signatures are then verified).",
            ),
        ] = None,
        insecure: Annotated[
            bool,
            typer.Option(
                "--insecure",
                help="Serve without authentication even on a non-loopback interface or with "
                f"an empty {_KEYS_ENV} (refused otherwise).",
            ),
        ] = False,
        allow_host: Annotated[
            list[str] | None,
            typer.Option(
                "--allow-host",
                help="Without --keys, also serve requests whose Host header is this name "
                "(repeatable; '*': any). By default only loopback names are served.",
            ),
        ] = None,
        ssl_certfile: Annotated[
            str | None,
            typer.Option("--ssl-certfile", help="Serve HTTPS with this PEM certificate (chain)."),
        ] = None,
        ssl_keyfile: Annotated[
            str | None,
            typer.Option(
                "--ssl-keyfile", help="The certificate's PEM private key (if not in the certfile)."
            ),
        ] = None,
        timeout_keep_alive: Annotated[
            int,
            typer.Option(
                "--timeout-keep-alive",
                min=1,
                help="Close idle connections after this many seconds (longer than an SDK's "
                "polling interval, so a client that polls every few seconds is never "
                "answered by a connection closed under it).",
            ),
        ] = 75,
        limit_concurrency: Annotated[
            int,
            typer.Option(
                "--limit-concurrency",
                min=1,
                help="At most this many connections and requests at once (more: HTTP 503).",
            ),
        ] = 1000,
        header_timeout: Annotated[
            float,
            typer.Option(
                "--header-timeout",
                min=0.001,
                help="Close a connection whose request headers take longer (seconds).",
            ),
        ] = 10.0,
        body_timeout: Annotated[
            float,
            typer.Option(
                "--body-timeout",
                min=0.001,
                help="A request body not received within this many seconds gets HTTP 408 and "
                "the connection is closed.",
            ),
        ] = 30.0,
        cache: Annotated[
            bool,
            typer.Option(
                "--cache",
                help="Put the item and query cache in front (as a DAX node): eventually "
                "consistent reads are served from it; ConsistentRead=true goes to storage.",
            ),
        ] = False,
        cache_item_ttl: Annotated[
            float,
            typer.Option("--cache-item-ttl", min=0, help="Seconds an item entry lives (0: off)."),
        ] = 300.0,
        cache_query_ttl: Annotated[
            float,
            typer.Option(
                "--cache-query-ttl", min=0, help="Seconds a query/scan page lives (0: off)."
            ),
        ] = 300.0,
        cache_max_bytes: Annotated[
            int,
            typer.Option("--cache-max-bytes", min=1, help="The cache's memory budget in bytes."),
        ] = 256 << 20,
    ) -> None:
        """Serve the DynamoDB and DynamoDB Streams APIs (point boto3's endpoint_url here)."""
        from streamkit._optional import needs

        with needs("server"):
            import uvicorn

        from streamkit.server import create_asgi_app
        from streamkit.server._auth import Authenticator, load_keys

        if keys is None and os.environ.get(_KEYS_ENV) == "":
            keys = ""  # set but empty: not the same as unset
        auth = None
        if keys:
            try:
                auth = Authenticator(load_keys(keys), region=region)
            except ValueError as e:
                _fail(str(e), code=2)
        elif keys == "" and not insecure:
            _fail(
                f"--keys / {_KEYS_ENV} is empty: give ID:SECRET pairs (or a file of them), "
                "or pass --insecure to serve without authentication",
                code=2,
            )
        elif not _loopback(host):
            if not insecure:
                _fail(
                    f"refusing to serve on {host} with authentication off: anyone who can reach "
                    "it could read and write every table. Pass --keys (or "
                    f"{_KEYS_ENV}), or --insecure to serve it open anyway",
                    code=2,
                )
            typer.echo(
                f"warning: serving on {host} with authentication OFF (--insecure): anyone who "
                "can reach it can read and write every table.",
                err=True,
            )
        if ssl_keyfile and not ssl_certfile:
            _fail("--ssl-keyfile needs --ssl-certfile", code=2)
        for path in (ssl_certfile, ssl_keyfile):
            if path and not os.path.isfile(path):
                _fail(f"no such file: {path}", code=2)

        _check_listen(host, port)  # a busy port: exit 1 saying so (uvicorn's own exit is 3)
        peers: dict[str, str] = {}
        for entry in peer or ():
            name, sep, url = entry.partition("=")
            if not sep or not name or not url:
                _fail(f"--peer {entry!r}: give REGION=LOG_URL", code=2)
            peers[name] = url
        if peers and not region:
            _fail("--peer needs --region (this endpoint's own region)", code=2)
        app = _app(region=region)
        if cache:
            from streamkit.storage import Cache

            app.enable_cache(
                Cache(item_ttl=cache_item_ttl, query_ttl=cache_query_ttl, max_bytes=cache_max_bytes)
            )
        application = create_asgi_app(
            app,
            region=region or None,
            auth=auth,
            allowed_hosts=allow_host or (),
            body_timeout=body_timeout,
            peers=peers,
        )
        scheme = "https" if ssl_certfile else "http"
        typer.echo(
            f"streamkit serving DynamoDB on {scheme}://{host}:{port} "
            f"(region {region or 'of each request'})",
            err=True,
        )
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            # nothing reads the client's address: no X-Forwarded-* rewriting per request
            proxy_headers=False,
            server_header=False,  # the endpoint sends DynamoDB's own ("Server: Server")
            lifespan="on",
            http=header_timeout_protocol(header_timeout),
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            timeout_keep_alive=timeout_keep_alive,
            limit_concurrency=limit_concurrency,
        )
