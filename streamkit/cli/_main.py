"""The ``streamkit`` command (typer). Heavy modules are imported inside commands."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from streamkit.cli._jsonio import dumps, parse_item, render_item
from streamkit.cli._logging import configure_logging

if TYPE_CHECKING:
    from streamkit._app import App

T = TypeVar("T")

cli = typer.Typer(
    name="streamkit",
    help="DynamoDB Streams + Lambda on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tables_cli = typer.Typer(help="Create, list, describe and delete tables.", no_args_is_help=True)
cli.add_typer(tables_cli, name="tables")


class _Settings:
    storage: str | None = None
    log: str | None = None
    namespace: str | None = None


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
    storage: StorageOpt = None,
    log: Annotated[
        str | None,
        typer.Option("--log", envvar="STREAMKIT_LOG", help="local://path or kafka://host:port"),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", envvar="STREAMKIT_NAMESPACE", help="Topic prefix.")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "WARNING",
) -> None:
    configure_logging(log_level)
    _settings.storage, _settings.log, _settings.namespace = storage, log, namespace


def _app() -> App:
    from streamkit._app import App

    return App(storage=_settings.storage, log=_settings.log, namespace=_settings.namespace)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(fn: Callable[[App], Awaitable[T]]) -> T:
    """Run one async command against a fresh App, mapping streamkit errors to exit code 1."""
    from streamkit.exceptions import StreamkitError

    async def main() -> T:
        app = _app()
        try:
            return await fn(app)
        finally:
            await app.close()

    try:
        return asyncio.run(main())
    except StreamkitError as e:
        _fail(f"{type(e).__name__}: {e}")


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
    as_json: JsonOpt = False,
) -> None:
    """Create a table."""
    from streamkit.storage import OnDemand, Provisioned

    def key(spec: str) -> str | tuple[str, str]:
        name_, _, typ = spec.partition(":")
        return (name_, typ.upper()) if typ else name_

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
        )
        return await table.describe()

    desc = _run(go)
    typer.echo(dumps(desc, indent=None if as_json else 2))


@tables_cli.command("list")
def tables_list(as_json: JsonOpt = False) -> None:
    """List tables."""
    names = _run(lambda app: app.list_tables())
    if as_json:
        typer.echo(dumps(names))
    else:
        for n in names:
            typer.echo(n)


@tables_cli.command("describe")
def tables_describe(name: str, as_json: JsonOpt = False) -> None:
    """Show a table's settings."""
    desc = _run(lambda app: app.describe_table(name))
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
    item = _run(lambda app: app.table(table).get(parse_item(key, dynamodb_json=ddb)))
    if item is None:
        typer.echo("not found", err=True)
        raise typer.Exit(2)
    if as_json or ddb:
        typer.echo(dumps(render_item(item, dynamodb_json=ddb)))
    else:
        typer.echo(dumps(render_item(item, dynamodb_json=False), indent=2))


@cli.command("query")
def query(
    table: str,
    partition: Annotated[str, typer.Argument(help="The partition key value.")],
    key_condition: Annotated[
        str | None, typer.Option("--where", help="A KeyConditionExpression instead.")
    ] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="A FilterExpression.")] = None,
    reverse: Annotated[bool, typer.Option(help="Descending sort key order.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
    values: ValuesOpt = None,
    names: NamesOpt = None,
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Query one partition, in sort-key order."""

    async def go(app: App) -> list[dict[str, Any]]:
        t = app.table(table)
        spec = await t.spec()
        pv: Any = partition
        if spec.key.partition.type == "N":
            from decimal import Decimal

            pv = Decimal(partition)
        it = t.query(
            None if key_condition else pv,
            key_condition=key_condition,
            filter=filter_,
            reverse=reverse,
            limit=limit,
            values=_placeholders(values, dynamodb_json=ddb),
            names=_names(names),
        )
        return [i async for i in it]

    _print_items(_run(go), as_json=as_json, ddb=ddb, title=f"{table} / {partition}")


@cli.command("scan")
def scan(
    table: str,
    filter_: Annotated[str | None, typer.Option("--filter", help="A FilterExpression.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
    values: ValuesOpt = None,
    names: NamesOpt = None,
    as_json: JsonOpt = False,
    ddb: DdbOpt = False,
) -> None:
    """Scan a table."""

    async def go(app: App) -> list[dict[str, Any]]:
        scan = app.table(table).scan(
            filter=filter_,
            limit=limit,
            values=_placeholders(values, dynamodb_json=ddb),
            names=_names(names),
        )
        return [i async for i in scan]

    _print_items(_run(go), as_json=as_json, ddb=ddb, title=table)


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
    """Show a table's change records as they arrive in the log."""
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
        async for record in app.changes(table, start=begin, follow=follow):
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
        _run(go)
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
    """Capture progress and, given module:app, each handler's lag, iterator age, DLQ depth
    and hours of retention headroom."""

    async def go(app: App) -> dict[str, Any]:
        info: dict[str, Any] = {
            "storage": app.storage_url,
            "log": app.log_url,
            "relay": await app.capture_status(),
        }
        if target is not None:
            info["handlers"] = await app.handler_status()
        return info

    info = _run_app(_load_app(target), go) if target is not None else _run(go)
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


def _load_app(target: str) -> App:
    """Import ``module:attribute`` (like uvicorn) and return the App it names."""
    import importlib
    import os

    from streamkit._app import App

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        _fail(f"expected module:app (e.g. shop.handlers:app), got {target!r}", code=2)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        _fail(f"cannot import {module_name!r}: {e}", code=2)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            _fail(f"{module_name!r} has no attribute {attr!r}", code=2)
    if callable(obj) and not isinstance(obj, App):
        obj = obj()  # an app factory
    if not isinstance(obj, App):
        _fail(f"{target!r} is a {type(obj).__name__}, not a streamkit App", code=2)
    return obj


def _run_app(app: App, fn: Callable[[App], Awaitable[T]]) -> T:
    from streamkit.exceptions import StreamkitError

    async def main() -> T:
        try:
            return await fn(app)
        finally:
            await app.close()

    try:
        return asyncio.run(main())
    except StreamkitError as e:
        _fail(f"{type(e).__name__}: {e}")


@cli.command("run")
def run(
    target: Annotated[str, typer.Argument(help="module:app, e.g. shop.handlers:app")],
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
) -> None:
    """Run an App's handlers (and the relay and TTL sweeper) until SIGTERM / Ctrl-C.

    Start more processes to scale out: they share each table's partitions.
    """
    import signal

    import structlog

    app = _load_app(target)
    log = structlog.get_logger("streamkit.run")

    async def go(app: App) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if metrics_port is not None:
            app.metrics.serve(metrics_port, metrics_host)
        names = handler or None
        async with app.running(handlers=names, relay=not no_relay):
            log.warning(
                "streamkit running",
                handlers=sorted(names or app.handlers),
                log=app.log_url,
                metrics_port=metrics_port,
            )
            await stop.wait()
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


from streamkit.cli import _audit, _history, _serve  # noqa: E402 - commands need `cli` above

_history.register(cli)
_serve.register(cli)
_audit.register(cli)
