"""The ``streamkit`` command (typer). Heavy modules are imported inside commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from streamkit.cli._jsonio import dumps, parse_item, render_item
from streamkit.cli._logging import configure_logging

if TYPE_CHECKING:
    from streamkit._app import App
    from streamkit.records import ChangeRecord
    from streamkit.runtime._registry import HandlerSpec

T = TypeVar("T")

# Exit codes (docs/reference/cli.md): 0 ok; 1 a streamkit error at run time (its type and
# message on stderr), an OS or S3 error, a handler that cannot start; 2 a usage or
# configuration error (bad options, a ConfigurationError, a MODULE:APP that cannot be
# loaded, missing credentials) and `get`'s "not found"; 3 not available yet.
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_YET = 1, 2, 3

# the global options, accepted after the subcommand too: name -> takes a value
_GLOBAL_OPTIONS = {
    "--storage": True,
    "--log": True,
    "--namespace": True,
    "--app": True,
    "--log-level": True,
    "--debug": False,
}


def _hoist_globals(root: Any, args: list[str]) -> list[str]:
    """Move the global options found after the subcommand in front of it, unless the
    command they follow defines an option of that name itself (``demo --storage``)."""
    front: list[str] = []
    rest: list[str] = []
    command = root
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            rest.extend(args[i:])
            break
        name, eq, _ = token.partition("=")
        if name in _GLOBAL_OPTIONS and command is not root and not _defines(command, name):
            takes_value = _GLOBAL_OPTIONS[name]
            if takes_value and not eq and i + 1 < len(args):
                front.extend(args[i : i + 2])
                i += 2
            else:
                front.append(token)
                i += 1
            continue
        subcommands = getattr(command, "commands", None)
        if not token.startswith("-") and isinstance(subcommands, dict) and token in subcommands:
            command = subcommands[token]
        elif command is root and name in _GLOBAL_OPTIONS and _GLOBAL_OPTIONS[name] and not eq:
            rest.extend(args[i : i + 2])  # an option of the root itself: keep its value
            i += 2
            continue
        rest.append(token)
        i += 1
    return front + rest


def _defines(command: Any, option: str) -> bool:
    return any(option in getattr(p, "opts", ()) for p in getattr(command, "params", ()))


class _Root(TyperGroup):
    """The ``streamkit`` group: global options anywhere, and every error turned into one
    ``error: ...`` line and an exit code, in one place (``--debug``: the traceback too)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_globals(self, list(args)))

    def invoke(self, ctx: Any) -> Any:
        from typer.exceptions import TyperException

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # exits and usage errors: typer reports them
        except Exception as e:
            code, message = _describe_error(e)
            if _settings.debug:
                import traceback

                traceback.print_exception(e)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None


cli = typer.Typer(
    name="streamkit",
    help="DynamoDB Streams + Lambda on your own machines.\n\n"
    "The options below may also follow the command: streamkit tables list --storage URL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Root,
)
tables_cli = typer.Typer(help="Create, list, describe and delete tables.", no_args_is_help=True)
cli.add_typer(tables_cli, name="tables")


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

StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", envvar="STREAMKIT_STORAGE", help="sqlite:///path.db or memory://"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ValuesOpt = Annotated[
    str | None,
    typer.Option("--values", help="Expression :placeholders as a JSON object."),
]
NamesOpt = Annotated[
    str | None,
    typer.Option("--names", help="Expression #placeholders as a JSON object."),
]
DdbOpt = Annotated[
    bool,
    typer.Option("--dynamodb-json", "-D", help="Items in and out as DynamoDB JSON ({'S': ...})."),
]


@cli.callback()
def _main(
    ctx: typer.Context,
    storage: StorageOpt = None,
    log: Annotated[
        str | None,
        typer.Option("--log", envvar="STREAMKIT_LOG", help="local://path or kafka://host:port"),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", envvar="STREAMKIT_NAMESPACE", help="Topic prefix.")
    ] = None,
    app_target: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar="STREAMKIT_APP",
            help="module:app whose storage, log and namespace every command uses.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "WARNING",
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="STREAMKIT_DEBUG", help="Print the traceback of an error too."
        ),
    ] = False,
) -> None:
    configure_logging(log_level)
    _settings.storage, _settings.log, _settings.namespace = storage, log, namespace
    _settings.app_target, _settings.debug, _settings.used = app_target, debug, None
    given = {"storage": storage, "log": log, "namespace": namespace}
    _settings.explicit = {
        name: value
        for name, value in given.items()
        if value is not None
        and getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    }


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


def _placeholders(text: str | None, *, dynamodb_json: bool) -> dict[str, Any] | None:
    return None if text is None else parse_item(text, dynamodb_json=dynamodb_json)


def _names(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        _fail(f"--names is not valid JSON: {e}")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        _fail("--names must be a JSON object of strings")
    return data


def _key_value(text: str, type_: str, what: str) -> Any:
    """A key attribute's value given as plain text: S as is, N as a decimal, B base64."""
    if type_ == "N":
        from decimal import Decimal, InvalidOperation

        try:
            return Decimal(text)
        except InvalidOperation:
            _fail(f"{what} {text!r} is not a number (the key is of type N)", code=EXIT_USAGE)
    if type_ == "B":
        import base64
        import binascii

        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            _fail(f"{what} {text!r} is not base64 (the key is of type B)", code=EXIT_USAGE)
    return text


def _print_item(item: dict[str, Any] | None, *, as_json: bool, ddb: bool) -> None:
    if item is None:
        return
    if as_json or ddb:
        typer.echo(dumps(render_item(item, dynamodb_json=ddb)))
    else:
        typer.echo(dumps(render_item(item, dynamodb_json=False), indent=2))


def _print_items(items: list[dict[str, Any]], *, as_json: bool, ddb: bool, title: str) -> None:
    if as_json or ddb:
        for item in items:
            typer.echo(dumps(render_item(item, dynamodb_json=ddb)))
        return
    from rich.console import Console
    from rich.table import Table as RichTable

    names: list[str] = []
    for item in items:
        names.extend(k for k in item if k not in names)
    table = RichTable(title=title, show_lines=False)
    for n in names:
        table.add_column(n)
    for item in items:
        table.add_row(
            *(
                "" if n not in item else dumps(render_item({n: item[n]}, dynamodb_json=False)[n])
                for n in names
            )
        )
    Console().print(table)
    Console().print(f"[dim]{len(items)} item(s)[/dim]")


# --- tables -------------------------------------------------------------------------------
@tables_cli.command("create")
def tables_create(
    name: str,
    partition_key: Annotated[str, typer.Option("--partition-key", "-p", help="NAME or NAME:TYPE")],
    sort_key: Annotated[
        str | None, typer.Option("--sort-key", "-s", help="NAME or NAME:TYPE")
    ] = None,
    stream: Annotated[
        str, typer.Option(help="NEW_AND_OLD_IMAGES, NEW_IMAGE, OLD_IMAGE, KEYS_ONLY or NONE")
    ] = "NEW_AND_OLD_IMAGES",
    ttl_attribute: Annotated[str | None, typer.Option("--ttl-attribute")] = None,
    read: Annotated[float | None, typer.Option(help="Provisioned read units")] = None,
    write: Annotated[float | None, typer.Option(help="Provisioned write units")] = None,
    global_index: Annotated[
        list[str] | None,
        typer.Option(
            "--global-index",
            "-g",
            help="NAME=PK[:TYPE][,SK[:TYPE]][/PROJECTION] (PROJECTION: ALL, KEYS_ONLY or "
            "attributes joined by '+'); repeatable",
        ),
    ] = None,
    local_index: Annotated[
        list[str] | None,
        typer.Option("--local-index", "-l", help="NAME=SK[:TYPE][/PROJECTION]; repeatable"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a table (with secondary indexes: --global-index, --local-index)."""
    from streamkit.storage import OnDemand, Provisioned

    key = _key_arg

    async def go(app: App) -> dict[str, Any]:
        cap = (
            OnDemand()
            if read is None and write is None
            else Provisioned(read=read or 5, write=write or 5)
        )
        table = await app.create_table(
            name,
            key(partition_key),
            None if sort_key is None else key(sort_key),
            stream=None if stream.upper() == "NONE" else stream.upper(),
            ttl_attribute=ttl_attribute,
            capacity=cap,
            global_indexes=[_index_arg(g, local=False) for g in global_index or ()],
            local_indexes=[_index_arg(x, local=True) for x in local_index or ()],
        )
        return await table.describe()

    desc = _run(go)
    typer.echo(dumps(desc, indent=None if as_json else 2))


def _key_arg(spec: str) -> str | tuple[str, str]:
    name_, _, typ = spec.partition(":")
    return (name_, typ.upper()) if typ else name_


def _index_arg(text: str, *, local: bool) -> Any:
    """``NAME=PK[:T][,SK[:T]][/PROJECTION]`` (global) or ``NAME=SK[:T][/PROJECTION]`` (local)."""
    from streamkit.storage import GlobalIndex, LocalIndex

    name, eq, rest = text.partition("=")
    keys, _, proj = rest.partition("/")
    parts = [p for p in keys.split(",") if p]
    if not eq or not name or not parts or len(parts) > (1 if local else 2):
        form = "NAME=SK[:TYPE][/PROJECTION]" if local else "NAME=PK[:TYPE][,SK[:TYPE]][/PROJECTION]"
        _fail(f"index {text!r}: expected {form}", code=EXIT_USAGE)
    projection: str | list[str] = "ALL"
    if proj:
        projection = proj.upper() if proj.upper() in ("ALL", "KEYS_ONLY") else proj.split("+")
    if local:
        return LocalIndex(name, sort_key=_key_arg(parts[0]), projection=projection)
    return GlobalIndex(
        name,
        partition_key=_key_arg(parts[0]),
        sort_key=_key_arg(parts[1]) if len(parts) > 1 else None,
        projection=projection,
    )


@tables_cli.command("add-index")
def tables_add_index(
    table: str,
    index: Annotated[
        str, typer.Argument(help="NAME=PK[:TYPE][,SK[:TYPE]][/PROJECTION]: a global index")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Add a global index to a table in use; waits while it is backfilled."""

    async def go(app: App) -> dict[str, Any]:
        return await app.update_table(table, create_index=_index_arg(index, local=False))

    desc = _run(go)
    typer.echo(dumps(desc, indent=None if as_json else 2))


@tables_cli.command("delete-index")
def tables_delete_index(table: str, name: str, as_json: JsonOpt = False) -> None:
    """Delete a global index of a table."""
    desc = _run(lambda app: app.update_table(table, delete_index=name))
    typer.echo(dumps(desc, indent=None if as_json else 2))


@tables_cli.command("list")
def tables_list(as_json: JsonOpt = False) -> None:
    """List tables."""
    names = _run_read(lambda app: app.list_tables())
    if as_json:
        typer.echo(dumps(names))
    else:
        for n in names:
            typer.echo(n)


@tables_cli.command("describe")
def tables_describe(name: str, as_json: JsonOpt = False) -> None:
    """Show a table's settings."""
    desc = _run_read(lambda app: app.describe_table(name))
    typer.echo(dumps(desc, indent=None if as_json else 2))


@tables_cli.command("delete")
def tables_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False
) -> None:
    """Delete a table and its items."""
    if (
        not yes
        and sys.stdin.isatty()
        and not typer.confirm(f"Delete table {name!r} and its items?")
    ):
        raise typer.Exit(1)
    _run(lambda app: app.delete_table(name))
    typer.echo(f"deleted {name}")


# --- items --------------------------------------------------------------------------------
@cli.command("put")
def put(
    table: str,
    item: Annotated[str, typer.Argument(help="The item as JSON ('-' reads stdin).")],
    condition: Annotated[str | None, typer.Option(help="A ConditionExpression.")] = None,
    ddb: DdbOpt = False,
) -> None:
    """Put an item."""
    text = sys.stdin.read() if item == "-" else item

    async def go(app: App) -> None:
        await app.table(table).put(parse_item(text, dynamodb_json=ddb), condition=condition)

    _run(go)


@cli.command("get")
def get(
    table: str,
    key: Annotated[str, typer.Argument(help="The key as JSON.")],
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Get an item by its key (exit code 2 when absent)."""
    item = _run_read(lambda app: app.table(table).get(parse_item(key, dynamodb_json=ddb)))
    if item is None:
        typer.echo("not found", err=True)
        raise typer.Exit(2)
    _print_item(item, as_json=as_json, ddb=ddb)


ConditionOpt = Annotated[
    str | None, typer.Option("--condition", help="A ConditionExpression; exit 1 when false.")
]


@cli.command("update")
def update(
    table: str,
    key: Annotated[str, typer.Argument(help="The key as JSON.")],
    set_: Annotated[
        str | None,
        typer.Option("--set", help='Attributes to set, a JSON object: {"Status": "shipped"}.'),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="An attribute to remove (repeatable).")
    ] = None,
    expression: Annotated[
        str | None,
        typer.Option("--expression", help="An UpdateExpression instead of --set / --remove."),
    ] = None,
    condition: ConditionOpt = None,
    values: ValuesOpt = None,
    names: NamesOpt = None,
    returns: Annotated[
        str,
        typer.Option(
            "--return", help="Print the item: NONE, ALL_NEW, ALL_OLD, UPDATED_NEW, UPDATED_OLD."
        ),
    ] = "NONE",
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Update an item's attributes (creating the item if it does not exist)."""
    if expression is not None and (set_ is not None or remove):
        _fail("give either --expression or --set / --remove, not both", code=EXIT_USAGE)
    if expression is None and set_ is None and not remove:
        _fail("nothing to update: give --set, --remove or --expression", code=EXIT_USAGE)

    async def go(app: App) -> dict[str, Any] | None:
        return await app.table(table).update(
            parse_item(key, dynamodb_json=ddb),
            set=None if set_ is None else parse_item(set_, dynamodb_json=ddb),
            remove=remove or None,
            expression=expression,
            condition=condition,
            names=_names(names),
            values=_placeholders(values, dynamodb_json=ddb),
            returns=returns.upper(),
        )

    _print_item(_run(go), as_json=as_json, ddb=ddb)


@cli.command("delete")
def delete(
    table: str,
    key: Annotated[str, typer.Argument(help="The key as JSON.")],
    condition: ConditionOpt = None,
    values: ValuesOpt = None,
    names: NamesOpt = None,
    returns: Annotated[
        str, typer.Option("--return", help="ALL_OLD prints the deleted item.")
    ] = "NONE",
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Delete an item by its key (an absent item is not an error)."""

    async def go(app: App) -> dict[str, Any] | None:
        return await app.table(table).delete(
            parse_item(key, dynamodb_json=ddb),
            condition=condition,
            names=_names(names),
            values=_placeholders(values, dynamodb_json=ddb),
            returns=returns.upper(),
        )

    _print_item(_run(go), as_json=as_json, ddb=ddb)


@cli.command("query")
def query(
    table: str,
    partition: Annotated[str, typer.Argument(help="The partition key value.")],
    key_condition: Annotated[
        str | None,
        typer.Option(
            "--where", help="A condition on the sort key, e.g. 'OrderDate > :d' (with --values)."
        ),
    ] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="A FilterExpression.")] = None,
    reverse: Annotated[bool, typer.Option(help="Descending sort key order.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
    index: Annotated[
        str | None, typer.Option("--index", "-i", help="Query this secondary index.")
    ] = None,
    values: ValuesOpt = None,
    names: NamesOpt = None,
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Query one partition (PARTITION: its partition key value, of the table or of
    --index), in sort-key order."""

    from streamkit.exceptions import ExpressionError

    async def go(app: App) -> list[dict[str, Any]]:
        t = app.table(table)
        spec = await t.spec()
        if index is not None:  # the index's key, as the table's key below
            ix = spec.index(index)
            if ix.composite:
                _fail(
                    f"--index {index}: its key has several attributes "
                    f"({', '.join(ix.key_names)}); query it with `streamkit sql` or the "
                    "Python API (table.query(key_condition=..., index=...))",
                    code=EXIT_USAGE,
                )
            spec = replace(spec, key=ix.key)
        pv = _key_value(partition, spec.key.partition.type, "PARTITION")
        value_map = _placeholders(values, dynamodb_json=ddb)
        name_map = _names(names)
        condition = None
        if key_condition is not None:
            if spec.key.sort is None:
                _fail(f"--where: table {table!r} has no sort key", code=EXIT_USAGE)
            # the partition's equality, then the sort key's condition (the only AND a
            # KeyConditionExpression has), with placeholders of our own
            condition = f"#streamkit_pk = :streamkit_pk AND {key_condition}"
            name_map = {**(name_map or {}), "#streamkit_pk": spec.key.partition.name}
            value_map = {**(value_map or {}), ":streamkit_pk": pv}
        it = t.query(
            None if condition else pv,
            key_condition=condition,
            filter=filter_,
            reverse=reverse,
            limit=limit,
            values=value_map,
            names=name_map,
            index=index,
        )
        try:
            return [i async for i in it]
        except ExpressionError as e:
            if condition is None or spec.key.sort is None:
                raise
            raise ExpressionError(
                f"--where takes a condition on the sort key {spec.key.sort.name!r} only "
                f"(PARTITION is the partition key's value): {e}"
            ) from e

    _print_items(_run_read(go), as_json=as_json, ddb=ddb, title=f"{table} / {partition}")


@cli.command("scan")
def scan(
    table: str,
    filter_: Annotated[str | None, typer.Option("--filter", help="A FilterExpression.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
    index: Annotated[
        str | None, typer.Option("--index", "-i", help="Scan this secondary index.")
    ] = None,
    values: ValuesOpt = None,
    names: NamesOpt = None,
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Scan a table (or one of its secondary indexes)."""

    async def go(app: App) -> list[dict[str, Any]]:
        scan = app.table(table).scan(
            filter=filter_,
            limit=limit,
            index=index,
            values=_placeholders(values, dynamodb_json=ddb),
            names=_names(names),
        )
        return [i async for i in scan]

    _print_items(_run_read(go), as_json=as_json, ddb=ddb, title=table)


@cli.command("sql")
def sql(
    statement: Annotated[
        str, typer.Argument(help='A PartiQL statement, e.g. "SELECT * FROM Orders WHERE id = ?".')
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="The value of the next ? as JSON: '\"123\"', '42', '[1, 2]' (repeatable; "
            'with --dynamodb-json, DynamoDB JSON: \'{"S": "123"}\').',
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many items (SELECT).")] = None,
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Run a PartiQL statement (DynamoDB's SQL): SELECT prints its items, INSERT, UPDATE and
    DELETE print what their RETURNING clause asks for."""
    values = [_param(text, ddb=ddb) for text in param or ()]

    async def go(app: App) -> list[dict[str, Any]]:
        return await app.execute(statement, values, limit=limit)

    items = _run(go)
    if items or statement.lstrip()[:6].upper() == "SELECT":
        _print_items(items, as_json=as_json, ddb=ddb, title="result")


def _param(text: str, *, ddb: bool) -> Any:
    """One --param: a JSON value (plain or DynamoDB JSON), numbers as exact decimals."""
    import json
    from decimal import Decimal

    from streamkit.records._values import from_dynamodb_json

    try:
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as e:
        _fail(f"--param {text!r} is not valid JSON: {e}", code=EXIT_USAGE)
    return from_dynamodb_json(data, "--param") if ddb else data


@cli.command("schema")
def schema() -> None:
    """Print the Avro schema (.avsc) of the change records."""
    from streamkit.records import schema_text

    typer.echo(schema_text())


@cli.command("demo")
def demo(
    storage: Annotated[
        str | None, typer.Option("--storage", help="Default: the embedded default store.")
    ] = None,
    log: Annotated[
        str | None,
        typer.Option("--log", help="Default: the embedded log; e.g. kafka://127.0.0.1:9092"),
    ] = None,
) -> None:
    """The whole story on the embedded defaults: tables, writes and reads, handlers (welcome
    e-mails, the DLQ, TTL), then history (replay, point-in-time restore, backup)."""
    from streamkit.cli._demo import run_demo

    if storage is not None:
        _settings.storage = storage
    if log is not None:
        _settings.log = log
    # the story prints what happens; the handlers' warnings (the poison order's
    # retries) would only interleave with it
    import logging

    configure_logging("CRITICAL", force=True)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    _run(run_demo)


@cli.command("bench")
def bench(
    seconds: Annotated[float, typer.Option(help="Roughly how long each figure runs.")] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Measure the store on this machine (puts, concurrent puts, gets, queries)."""
    from streamkit.cli._bench import run_bench

    results = asyncio.run(run_bench(seconds=seconds))
    if as_json:
        typer.echo(dumps(results))
        return
    for name, value in results.items():
        typer.echo(f"{name:40s} {value}")


async def _in_commit_order(
    app: App, table: str, start: Any, *, follow: bool, poll: float = 0.5
) -> AsyncIterator[ChangeRecord]:
    """A table's change records in sequence-number (commit) order across partitions.

    ``app.changes()`` keeps each item's order only; this merges the partitions: a record
    is let out once every partition has either a later record buffered or been read up
    to its end (anything it gets later was committed later, so has a larger number).
    """
    import heapq

    from streamkit.capture._changes import _check_start, _position
    from streamkit.capture._relay import table_topic
    from streamkit.records import decode_record

    _check_start(start)
    log = app.log
    topic = table_topic(app.namespace, table)
    await log.open()
    while await log.describe_topic(topic) is None:
        # nothing published yet: as app.changes() does, refuse what would wait for ever
        spec = await app.store.spec(table)  # TableNotFound
        if spec.stream is None:
            from streamkit.exceptions import ConfigurationError

            raise ConfigurationError(f"table {table!r} has no stream: it records no changes")
        if not follow:
            return
        await asyncio.sleep(poll)
    min_seq = start if isinstance(start, int) else None
    reader = log.reader(topic)
    try:
        await _position(reader, start)
        stop_at = None if follow else await reader.end_offsets()
        heap: list[tuple[int, int, int, ChangeRecord]] = []
        buffered: dict[int, int] = {}
        while True:
            for rec in await reader.fetch(max_records=500, timeout=poll):
                if stop_at is not None and rec.offset >= stop_at.get(rec.partition, 0):
                    continue
                record = decode_record(rec.value)
                if min_seq is not None and record.sequence_number < min_seq:
                    continue
                heapq.heappush(heap, (record.sequence_number, rec.partition, rec.offset, record))
                buffered[rec.partition] = buffered.get(rec.partition, 0) + 1
            ends = stop_at if stop_at is not None else await reader.end_offsets()
            done = {p for p, end in ends.items() if await reader.position(p) >= end}
            while heap and all(p in done or buffered.get(p, 0) for p in ends):
                _, p, _, record = heapq.heappop(heap)
                buffered[p] -= 1
                yield record
            if stop_at is not None and not heap and len(done) == len(ends):
                return
    finally:
        await reader.close()


@cli.command("tail")
def tail(
    table: str,
    start: Annotated[
        str, typer.Option(help="trim_horizon, latest, an ISO time (UTC) or a sequence number")
    ] = "latest",
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep waiting.")] = True,
    images: Annotated[bool, typer.Option("--images", help="Show old and new images.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One DynamoDB Streams record (JSON) per line.")
    ] = False,
) -> None:
    """Show a table's change records as they arrive in the log, in commit order."""
    from datetime import UTC, datetime

    begin: Any = start
    if start.isdigit():
        begin = int(start)
    elif start not in ("trim_horizon", "latest"):
        try:
            begin = datetime.fromisoformat(start)
        except ValueError:
            _fail(f"--start {start!r} is not trim_horizon, latest, a time or a sequence number")
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=UTC)

    async def go(app: App) -> None:
        from rich.console import Console

        out = Console(highlight=False)
        async for record in _in_commit_order(app, table, begin, follow=follow):
            if as_json:
                typer.echo(dumps(record.to_dynamodb_json()))
                continue
            keys = dumps(render_item(dict(record.keys), dynamodb_json=False))
            colour = {"INSERT": "green", "MODIFY": "yellow", "REMOVE": "red"}.get(
                record.event_name, "white"
            )
            when = f"{record.created_at:%H:%M:%S.%f}"[:-3]
            event = f"[{colour}]{record.event_name:<6}[/{colour}]"
            line = f"{when}  {record.sequence_number:>8}  {event}  {keys}"
            if record.changed:
                line += f"  changed: {', '.join(record.changed)}"
            if record.user_identity is not None:
                line += f"  by {record.user_identity.principal}"
            out.print(line)
            if images:
                for label, image in (("old", record.old_image), ("new", record.new_image)):
                    if image is not None:
                        rendered = dumps(render_item(dict(image), dynamodb_json=False))
                        out.print(f"    {label}: {rendered}")

    try:
        _run_read(go)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@cli.command("relay")
def relay() -> None:
    """Run the capture relay alone: publish committed changes to the log until stopped."""

    async def go(app: App) -> None:
        await app.relay.run()

    try:
        _run(go)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@cli.command("status")
def status(
    target: Annotated[
        str | None,
        typer.Argument(help="module:app to also show its handlers (lag, iterator age, DLQ)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Capture progress (and any table whose capture is set aside: FAILING) and, given
    module:app, each handler's lag, iterator age, DLQ depth and hours of retention
    headroom."""

    async def go(app: App) -> dict[str, Any]:
        info: dict[str, Any] = {
            "storage": app.storage_url,
            "log": app.log_url,
            "relay": await app.capture_status(),
        }
        if target is not None:
            info["handlers"] = await app.handler_status()
        return info

    info = _run_app(_load_app(target), go) if target is not None else _run_read(go)
    if as_json:
        typer.echo(dumps(info))
        return
    r = info["relay"]
    typer.echo(f"storage  {info['storage']}\nlog      {info['log']}")
    typer.echo(
        f"relay    published up to #{r['published_up_to']} of #{r['latest_committed']}"
        f"  ({r['behind']} behind"
        + (
            f", oldest waiting {r['oldest_unpublished_age_s']}s)"
            if r["oldest_unpublished_age_s"] is not None
            else ")"
        )
    )
    for f in r.get("failing", []):
        typer.echo(
            f"FAILING  table {f['table']}: change capture set aside since {f['since']}; "
            f"rows kept in storage, not published: {f['rows_kept']}\n"
            f"         {f['error']}"
        )
    if "handlers" in info:
        from rich.console import Console
        from rich.table import Table as RichTable

        grid = RichTable("handler", "table", "lag", "iterator age", "DLQ", "headroom")
        for h in info["handlers"]:
            headroom = h["retention_headroom_h"]
            grid.add_row(
                h["handler"],
                h["table"],
                str(h["lag"]),
                f"{h['iterator_age_s']:.1f}s",
                str(h["dlq_depth"]),
                "forever" if headroom is None else f"{headroom:.1f}h",
            )
        Console().print(grid)


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


_WAITING_EVERY = 5.0  # seconds between the log lines of a handler that has not started


async def _why_not_started(app: App, spec: HandlerSpec) -> str:
    """Why ``spec``'s handler has not started yet, naming where it looked."""
    from streamkit.capture._relay import table_topic
    from streamkit.exceptions import StreamkitError, TableNotFound

    storage = _safe_url(app.storage_url)
    try:
        table = await app.store.spec(spec.table)
    except TableNotFound:
        return f"table {spec.table!r} does not exist in storage {storage}"
    except StreamkitError as e:
        return f"cannot read the tables of storage {storage}: {type(e).__name__}: {e}"
    if table.stream is None:
        return f"table {spec.table!r} has no stream"
    topic = table_topic(app.namespace, spec.table)
    try:
        found = await app.log.describe_topic(topic)
    except StreamkitError as e:
        return f"cannot reach the log {_safe_url(app.log_url)}: {type(e).__name__}: {e}"
    if found is None:
        return (
            f"topic {topic!r} does not exist yet in the log {_safe_url(app.log_url)}: the relay "
            f"of storage {storage} and namespace {app.namespace!r} creates it - is one running?"
        )
    return f"joining consumer group of topic {topic!r} in the log {_safe_url(app.log_url)}"


async def _supervise(app: App, stop: asyncio.Event, log: Any, start_timeout: float | None) -> None:
    """Inside ``app.running()``: return when ``stop`` is set or a background task (relay,
    TTL sweeper, handler) has failed for good (leaving the block raises its error). While
    a handler has not started, log why every few seconds; after ``start_timeout`` s,
    exit 1 with the reason."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    next_report = started + _WAITING_EVERY
    while not stop.is_set():
        # the running() block's tasks and handler runners (App keeps them private)
        if any(t.done() and not t.cancelled() and t.exception() is not None for t in app._tasks):
            log.error("stopping: a background task failed")
            return
        waiting = [r.spec for r in app._runners.values() if not r.ready.is_set()]
        now = loop.time()
        late = start_timeout is not None and now - started >= start_timeout
        if waiting and (late or now >= next_report):
            reasons = [(spec, await _why_not_started(app, spec)) for spec in waiting]
            if late:
                spec, why = reasons[0]
                _fail(
                    f"handler {spec.name!r} did not start within --start-timeout "
                    f"{start_timeout:g} s: {why}"
                )
            for spec, why in reasons:
                log.warning(
                    "handler not started yet; still trying",
                    handler=spec.name,
                    table=spec.table,
                    reason=why,
                    waited_s=round(now - started),
                )
            next_report = now + _WAITING_EVERY
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await stop.wait()


@cli.command("run")
def run(
    target: Annotated[
        str | None,
        typer.Argument(help="module:app, e.g. shop.handlers:app (default: --app)"),
    ] = None,
    handler: Annotated[
        list[str] | None,
        typer.Option("--handler", "-h", help="Run only this handler (repeatable)."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host")] = "127.0.0.1",
    no_relay: Annotated[
        bool, typer.Option("--no-relay", help="Do not run the capture relay in this process.")
    ] = False,
    start_timeout: Annotated[
        float | None,
        typer.Option(
            "--start-timeout",
            envvar="STREAMKIT_START_TIMEOUT",
            min=0,
            help="Exit 1 when a handler has not started within this many seconds "
            "(default: keep trying, logging why every 5 s).",
        ),
    ] = None,
) -> None:
    """Run an App's handlers (and the relay and TTL sweeper) until SIGTERM / Ctrl-C.

    Start more processes to scale out: they share each table's partitions. Exits
    non-zero, with the reason, when the relay or a handler fails for good (a table
    without a stream, a fenced relay, a Kafka host that does not resolve).
    """
    import signal

    import structlog

    target = target or _settings.app_target
    if target is None:
        _fail("run needs MODULE:APP (or the global --app MODULE:APP)", code=EXIT_USAGE)
    app = _load_app(target)
    if not app.handlers:
        _fail(
            f"{target} has no handlers, so there is nothing to run: declare them with "
            '@app.on_insert("Table") (with the parentheses) / on_modify / on_remove / '
            "on_change, or include_router(); `streamkit relay` runs the relay alone",
            code=EXIT_USAGE,
        )
    unknown = sorted(set(handler or ()) - set(app.handlers))
    if unknown:
        _fail(
            f"no handler named {', '.join(map(repr, unknown))} in {target}; it has "
            f"{', '.join(sorted(app.handlers))}",
            code=EXIT_USAGE,
        )
    log = structlog.get_logger("streamkit.run")

    async def go(app: App) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if metrics_port is not None:
            if not no_relay:
                app.metrics.watch_capture(app.relay.status)
            app.metrics.serve(metrics_port, metrics_host)
        names = handler or None
        async with app.running(handlers=names, relay=not no_relay):
            log.warning(
                "streamkit running",
                handlers=sorted(names or app.handlers),
                storage=_safe_url(app.storage_url),
                log=_safe_url(app.log_url),
                namespace=app.namespace,
                metrics_port=metrics_port,
            )
            await _supervise(app, stop, log, start_timeout)
            log.warning(
                "stopping: finishing in-flight work",
                deadline_s=app.runtime_options.shutdown_timeout,
            )
        log.warning("stopped")

    _run_app(app, go)


dlq_cli = typer.Typer(help="Look at a handler's dead letters, or send them back through it.")
cli.add_typer(dlq_cli, name="dlq")

AppArg = Annotated[str, typer.Argument(help="module:app that declares the handler")]


@dlq_cli.command("list")
def dlq_list(
    target: AppArg,
    handler: Annotated[str, typer.Argument(help="the handler's name")],
    include_redriven: Annotated[
        bool, typer.Option("--all", help="Include letters already redriven.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The records HANDLER gave up on: key, error, attempts, times."""

    async def go(app: App) -> list[dict[str, Any]]:
        return [
            letter.describe()
            async for letter in app.dead_letters(handler, include_redriven=include_redriven)
        ]

    letters = _run_app(_load_app(target), go)
    if as_json:
        typer.echo(dumps(letters))
        return
    if not letters:
        typer.echo(f"no dead letters for {handler}")
        return
    from rich.console import Console
    from rich.table import Table as RichTable

    grid = RichTable("offset", "event", "keys", "error", "attempts", "failed at")
    for d in letters:
        grid.add_row(
            str(d["dlq_offset"]),
            str(d["event_name"]),
            dumps(d["keys"]),
            f"{d['error_type']}: {d['error_message']}"[:80],
            str(d["attempts"]),
            str(d["failed_at"]),
        )
    Console().print(grid)


@dlq_cli.command("redrive")
def dlq_redrive(
    target: AppArg,
    handler: Annotated[str, typer.Argument(help="the handler's name")],
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send HANDLER's dead letters back through it, oldest first; stops at one that fails."""

    async def go(app: App) -> dict[str, int]:
        return await app.redrive(handler, limit=limit)

    summary = _run_app(_load_app(target), go)
    if as_json:
        typer.echo(dumps(summary))
    else:
        typer.echo(
            f"redriven {summary['redriven']}, still failing {summary['failed']}, "
            f"pending {summary['pending']}"
        )
    if summary["failed"]:
        raise typer.Exit(1)


from streamkit.cli import _audit, _history, _replicas, _serve  # noqa: E402 - commands need `cli` above

_history.register(cli)
_serve.register(cli)
_audit.register(cli)
_replicas.register(cli)
