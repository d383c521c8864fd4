"""``streamkit serve``: the DynamoDB-compatible endpoint on uvicorn."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

__all__ = ("register",)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(cli: typer.Typer) -> None:
    """Add ``serve`` to ``cli``."""

    @cli.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
        region: Annotated[
            str, typer.Option("--region", help="The region the endpoint reports.")
        ] = "local",
        keys: Annotated[
            str | None,
            typer.Option(
                "--keys",
                envvar="STREAMKIT_ACCESS_KEYS",
                help="Access keys that may call it: a file of ACCESS_KEY_ID:SECRET lines, or "
                "ID:SECRET[,ID:SECRET] (SigV4 signatures are then verified).",
            ),
        ] = None,
    ) -> None:
        """Serve the DynamoDB and DynamoDB Streams APIs (point boto3's endpoint_url here)."""
        import uvicorn

        from streamkit.cli._main import _app, _fail
        from streamkit.server import create_asgi_app
        from streamkit.server._auth import Authenticator, load_keys

        auth = None
        if keys:
            try:
                auth = Authenticator(load_keys(keys), region=region)
            except ValueError as e:
                _fail(str(e), code=2)
        elif not _loopback(host):
            typer.echo(
                f"warning: serving on {host} with authentication OFF: anyone who can reach it "
                "can read and write every table. Pass --keys (or STREAMKIT_ACCESS_KEYS).",
                err=True,
            )
        application = create_asgi_app(_app(), region=region, auth=auth)
        typer.echo(
            f"streamkit serving DynamoDB on http://{host}:{port} (region {region})", err=True
        )
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
