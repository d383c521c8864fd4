"""``streamkit audit verify`` and ``streamkit audit show`` (the trail of handlers/audit.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamkit.cli._common import _fail, _run
from streamkit.cli._jsonio import dumps

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("register",)

SinkOpt = Annotated[
    str,
    typer.Option(
        "--sink",
        help="Where the trail is: 'table' (the streamkit_audit table), 'table:NAME', "
        "'file:DIR' (JSONL files) or 'log[:TOPIC]' (a change-log topic).",
    ),
]


def _sink(spec: str, app: App) -> Any:
    from streamkit.handlers.audit import FileSink, LogSink, TableSink

    kind, _, arg = spec.partition(":")
    if kind not in ("table", "log") and not (kind == "file" and arg):
        _fail(f"--sink {spec!r}: expected table, table:NAME, file:DIR or log[:TOPIC]", code=2)
    if kind == "table":
        return TableSink(arg) if arg else TableSink()
    if kind == "file":
        return FileSink(arg)
    return LogSink(app, topic=arg or None)


def register(cli: typer.Typer) -> None:
    """Add the ``audit`` commands to ``cli``."""
    audit_cli = typer.Typer(help="Verify the audit trail, or show an item's history.")
    cli.add_typer(audit_cli, name="audit")

    @audit_cli.command("verify")
    def verify(
        tables: Annotated[list[str] | None, typer.Argument(help="Only these tables.")] = None,
        sink: SinkOpt = "table",
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Check every hash link of the trail; exit 1 at the first altered, missing or
        reordered entry of any chain."""
        from streamkit.handlers.audit import verify as check

        async def go(app: App) -> Any:
            return await check(app, _sink(sink, app), tables or ())

        report = _run(go)
        if as_json:
            typer.echo(
                dumps(
                    {
                        "ok": report.ok,
                        "chains": report.chains,
                        "entries": report.entries,
                        "problems": [
                            {"chain": c, "position": p, "reason": r} for c, p, r in report.problems
                        ],
                    }
                )
            )
        elif report.ok:
            typer.echo(f"audit trail intact: {report.entries:,} entries in {report.chains} chains")
        else:
            for chain, pos, reason in report.problems:
                typer.echo(f"chain {chain}, entry {pos}: {reason}", err=True)
        if not report.ok:
            raise typer.Exit(1)

    @audit_cli.command("show")
    def show(
        table: str,
        key: Annotated[str, typer.Argument(help='The key as JSON, e.g. {"UserID": "u1"}')],
        sink: SinkOpt = "table",
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """An item's full history: every change, when, who, before and after."""
        from rich.console import Console
        from rich.table import Table

        from streamkit.cli._jsonio import parse_item
        from streamkit.handlers.audit import history

        parsed = parse_item(key, dynamodb_json=False)

        async def go(app: App) -> Any:
            return await history(app, table, parsed, _sink(sink, app))

        entries = _run(go)
        if as_json:
            typer.echo(dumps(entries))
            return
        out = Table(title=f"{table} {key}")
        for col in ("seq", "at", "event", "who", "before", "after"):
            out.add_column(col)
        for e in entries:
            who = e["who"]
            by = who.get("actor") or (who.get("identity") or {}).get("principal") or ""
            if who.get("origin"):
                by = f"{by} @{who['origin']}" if by else f"@{who['origin']}"
            out.add_row(
                str(e["sequence_number"]),
                e["at"],
                e["event"],
                by,
                dumps(e["old_image"]) if e["old_image"] else "",
                dumps(e["new_image"]) if e["new_image"] else "",
            )
        Console().print(out)
        if not entries:
            typer.echo("no entries for that key", err=True)
            raise typer.Exit(2)
