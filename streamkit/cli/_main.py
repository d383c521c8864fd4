"""The ``streamkit`` command (typer): the root group and its global options. The helpers
every command uses are in ``_common``; the commands live in the modules registered at the
end (``_tables``, ``_items``, ``_runtime``, ``_history``, ...), except ``schema``, ``demo``
and ``bench``. Heavy modules are imported inside commands."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from streamkit.cli._common import _describe_error, _run, _settings
from streamkit.cli._jsonio import dumps
from streamkit.cli._logging import configure_logging
from streamkit.cli._options import JsonOpt

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


StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", envvar="STREAMKIT_STORAGE", help="sqlite:///path.db or memory://"),
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


# --- schema, demo, bench: registered at the end, between the item and the runtime commands
def schema() -> None:
    """Print the Avro schema (.avsc) of the change records."""
    from streamkit.records import schema_text

    typer.echo(schema_text())


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


from streamkit.cli import (  # noqa: E402 - the commands need `cli` above
    _audit,
    _history,
    _items,
    _replicas,
    _runtime,
    _serve,
    _tables,
)

# the order of registration is the order of `streamkit --help`
_tables.register(cli)
_items.register(cli)
cli.command("schema")(schema)
cli.command("demo")(demo)
cli.command("bench")(bench)
_runtime.register(cli)
_history.register(cli)
_serve.register(cli)
_audit.register(cli)
_replicas.register(cli)
