"""What every ``streamkit`` command shares: the global options as given (``_settings``),
the exit codes, the App a command runs against (``_app``, ``_load_app`` for ``--app
MODULE:APP``), running a command (``_run``, ``_run_read``, ``_run_app``) and reporting
its failure in one line (``_fail``, ``_describe_error``). The root group in ``_main``
fills ``_settings``; the command modules import these at the top."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from streamkit._app import App

T = TypeVar("T")

# Exit codes (docs/reference/cli.md): 0 ok; 1 a streamkit error at run time (its type and
# message on stderr), an OS or S3 error, a handler that cannot start; 2 a usage or
# configuration error (bad options, a ConfigurationError, a MODULE:APP that cannot be
# loaded, missing credentials) and `get`'s "not found"; 3 not available yet.
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_YET = 1, 2, 3


class _Settings:
    storage: str | None = None
    log: str | None = None
    namespace: str | None = None
    app_target: str | None = None  # --app MODULE:APP
    explicit: dict[str, str]  # storage / log / namespace given as options (not from env)
    debug: bool = False
    used: App | None = None  # the app a command runs against (named in errors)

    def __init__(self) -> None:
        self.explicit = {}


_settings = _Settings()


def _app(region: str | None = None) -> App:
    """The App a command runs against: ``--app``'s, or one from the global options
    (``region``: its region, else ``STREAMKIT_REGION``'s)."""
    if _settings.app_target is not None:
        return _load_app(_settings.app_target)
    from streamkit._app import App

    app = App(
        storage=_settings.storage, log=_settings.log, namespace=_settings.namespace, region=region
    )
    _settings.used = app
    return app


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _safe_url(url: str) -> str:
    """A storage or log URL fit to print: no password."""
    import re

    # user:password@ in the authority, and the Kafka URL's sasl_plain_password=
    url = re.sub(r"^([a-z][a-z0-9+.-]*://[^/@:?#]*):[^/?#]*@", r"\1:***@", url)
    return re.sub(r"([?&]sasl_plain_password=)[^&]*", r"\1***", url)


def _describe_error(e: Exception) -> tuple[int, str]:
    """The exit code and the one-line message for an error that ends a command."""
    from streamkit.exceptions import (
        ConfigurationError,
        NotYetAvailable,
        StreamkitError,
        TableNotFound,
    )

    kind = type(e).__name__
    if isinstance(e, StreamkitError):
        message = f"{kind}: {e}"
        if isinstance(e, TableNotFound) and _settings.used is not None:
            app = _settings.used
            message += f" (storage {_safe_url(app.storage_url)}, namespace {app.namespace!r})"
        if isinstance(e, ConfigurationError):
            return EXIT_USAGE, message
        if isinstance(e, NotYetAvailable):
            return EXIT_NOT_YET, message
        return EXIT_ERROR, message
    if type(e).__module__.startswith(("botocore", "boto3", "s3transfer")):
        config = ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound")
        if kind in (*config, "NoRegionError"):
            return EXIT_USAGE, (
                f"{kind}: {e} (S3 takes its credentials and region the usual AWS way: "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION, AWS_PROFILE, a role)"
            )
        return EXIT_ERROR, f"{kind}: {e}"
    if isinstance(e, OSError):
        return EXIT_ERROR, f"{kind}: {e}"
    hint = "" if _settings.debug else " (--debug or STREAMKIT_DEBUG=1 shows the traceback)"
    return EXIT_ERROR, f"{kind}: {e}{hint}"


def _check_listen(host: str, port: int) -> None:
    """Exit 1 with the reason when ``host:port`` cannot be listened on (a port in use, a
    privileged port, an unknown interface): bound as uvicorn binds it, then released."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            _fail(f"cannot listen on {host}:{port}: the port is in use (another process listens)")
        _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")


def _run(fn: Callable[[App], Awaitable[T]]) -> T:
    """Run one async command against the App (errors: see ``_Root.invoke``)."""
    return _run_app(_app(), fn)


def _run_read(fn: Callable[[App], Awaitable[T]]) -> T:
    """Run a command that only reads. A SQLite store is opened read-only (``mode=ro``):
    a mistyped path or a file that is not a streamkit store is reported, never created
    or changed. (An ``--app``'s App is used as configured.)"""
    if _settings.app_target is not None:
        return _run(fn)
    from streamkit._app import App
    from streamkit.storage._sqlite import read_only_url

    url = App(storage=_settings.storage).storage_url  # opens nothing: just the default
    app = App(storage=read_only_url(url), log=_settings.log, namespace=_settings.namespace)
    _settings.used = app
    return _run_app(app, fn)


def _user_code_failed(what: str, e: BaseException) -> NoReturn:
    """Exit 2 with one line for an error raised by the user's module (its traceback with
    ``--debug``): the error and the line of the user's code it came from."""
    import traceback

    if _settings.debug:
        traceback.print_exception(e)
    if isinstance(e, SyntaxError):
        where = f" ({e.filename}, line {e.lineno})" if e.filename else ""
        _fail(f"{what}: SyntaxError: {e.msg}{where}", code=EXIT_USAGE)
    library = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if not f.filename.startswith(("<", library, sys.base_prefix, sys.prefix))
    ]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    _fail(f"{what}: {type(e).__name__}: {e}{where}", code=EXIT_USAGE)


def _load_app(target: str) -> App:
    """Import ``module:attribute`` (like uvicorn) and return the App it names.

    Every failure (no such module, an error raised while importing it, no such
    attribute, not an App) exits 2 with one line.
    """
    import importlib

    from streamkit._app import App

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        _fail(f"expected module:app (e.g. shop.handlers:app), got {target!r}", code=EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and f"{module_name}.".startswith(f"{e.name}."):
            _fail(f"cannot import {module_name!r}: {e}", code=EXIT_USAGE)
        _user_code_failed(f"cannot import {module_name!r}", e)
    except Exception as e:
        _user_code_failed(f"cannot import {module_name!r}", e)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            _fail(f"{module_name!r} has no attribute {attr!r}", code=EXIT_USAGE)
    if callable(obj) and not isinstance(obj, App):
        try:
            obj = obj()  # an app factory
        except Exception as e:
            _user_code_failed(f"calling {target!r} failed", e)
    if not isinstance(obj, App):
        _fail(f"{target!r} is a {type(obj).__name__}, not a streamkit App", code=EXIT_USAGE)
    _warn_ignored_options(target, obj)
    _settings.used = obj
    return obj


def _warn_ignored_options(target: str, app: App) -> None:
    """A MODULE:APP brings its own settings: say so when options given with it differ."""
    own = {"storage": app.storage_url, "log": app.log_url, "namespace": app.namespace}
    for name, value in _settings.explicit.items():
        if value != own[name]:
            typer.echo(
                f"warning: --{name} {_safe_url(value)} is not used: {target} has its own "
                f"{name} {_safe_url(own[name])}",
                err=True,
            )


def _run_app(app: App, fn: Callable[[App], Awaitable[T]]) -> T:
    """Run ``fn(app)`` and close the app (errors: see ``_Root.invoke``)."""

    async def main() -> T:
        try:
            return await fn(app)
        finally:
            await app.close()

    return asyncio.run(main())
