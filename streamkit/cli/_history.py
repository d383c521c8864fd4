"""``streamkit replay``, ``streamkit restore``, ``streamkit backup ...``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamkit.cli._common import _fail, _load_app, _run, _run_app
from streamkit.cli._jsonio import dumps

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("parse_time", "register")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)(?:\s*ago)?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

TimeHelp = "ISO 8601 (UTC unless it has an offset), 'now', or a duration ago: 90s, 15m, 2h, 3d."


def parse_time(text: str, *, option: str) -> datetime:
    """A CLI time: ISO 8601 (naive means UTC), ``now``, or ``15m`` / ``2h ago`` (before now)."""

    t = text.strip()
    if t == "now":
        return datetime.now(UTC)
    m = _RELATIVE.match(t)
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        _fail(f"{option} {text!r}: expected {TimeHelp}", code=2)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _progress(label: str, unit: str | None, *, quiet: bool) -> Any:
    """A transient rich progress display on stderr: spinner, label, count (unless
    ``unit`` is None: work that is not counted), time."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    count = [] if unit is None else [TextColumn(f"{{task.completed:,}} {unit}")]
    console = Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{label}[/] {{task.description}}"),
        *count,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # not in a pipe or a log file: there it would only leave a blank line
        disable=quiet or not console.is_interactive,
    )


def _destination(to: str) -> str:
    """``--to``: a URL as it is; a path (relative, or a plain directory) as a file:// URL."""
    import os

    if "://" in to:
        return to
    path = os.path.abspath(os.path.expanduser(to))
    if "?" in path or "#" in path:
        _fail(f"--to {to!r}: a directory name with '?' or '#' cannot be a file:// URL", 2)
    if os.path.exists(path) and not os.path.isdir(path):
        _fail(f"--to {to!r} is a file, not a directory", 2)
    return f"file://{path}"


def _split_handler(target: str) -> tuple[str, str]:

    parts = target.split(":")
    if len(parts) != 3 or not all(parts):
        _fail(
            f"--handler takes module:app:handler (e.g. shop.handlers:app:ship), got {target!r}", 2
        )
    return f"{parts[0]}:{parts[1]}", parts[2]


def register(cli: typer.Typer) -> None:
    """Add the history commands to ``cli``."""
    backup_cli = typer.Typer(help="On-demand backups of a table.", no_args_is_help=True)
    cli.add_typer(backup_cli, name="backup")

    @cli.command("replay")
    def replay(
        table: Annotated[str, typer.Argument(help="The table whose changes are replayed.")],
        handler: Annotated[
            str, typer.Option("--handler", help="module:app:handler, e.g. shop.handlers:app:ship")
        ],
        since: Annotated[str, typer.Option("--since", help=f"Start (inclusive). {TimeHelp}")],
        until: Annotated[
            str | None, typer.Option("--until", help=f"End (exclusive; default now). {TimeHelp}")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Count what would be delivered; run nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Re-run a handler over the changes committed in [--since, --until).

        Reads the change log while it keeps the range and the point-in-time archive
        beyond it; the handler's live consumer group is not touched.
        """

        target, name = _split_handler(handler)
        start = parse_time(since, option="--since")
        end = None if until is None else parse_time(until, option="--until")
        app = _load_app(target)

        async def go(app: App) -> Any:
            with _progress("replay", "records", quiet=as_json) as bar:
                task = bar.add_task(f"{table} -> {name}", total=None)
                return await app.replay(
                    table,
                    name,
                    since=start,
                    until=end,
                    dry_run=dry_run,
                    progress=lambda n: bar.update(task, completed=n),
                )

        summary = _run_app(app, go)
        if as_json:
            typer.echo(dumps(summary.as_dict()))
        else:
            verb = "would deliver" if dry_run else "delivered"
            rate = summary.records / summary.seconds if summary.seconds else 0.0
            typer.echo(
                f"replayed {summary.records:,} records of {table} "
                f"[{summary.since.isoformat(timespec='seconds')}, "
                f"{summary.until.isoformat(timespec='seconds')}) through {name}: "
                f"{verb} {summary.delivered:,} in {summary.invocations:,} invocations, "
                f"{summary.failed:,} failed; {summary.from_log:,} from the log, "
                f"{summary.from_archive:,} from the archive; {summary.seconds:.2f} s "
                f"({rate:,.0f} records/s)"
            )
            for e in summary.errors:
                typer.echo(f"  failed: {e}", err=True)
        if summary.failed:
            raise typer.Exit(1)

    @cli.command("restore")
    def restore(
        table: Annotated[str, typer.Argument(help="The table to restore.")],
        at: Annotated[str, typer.Option("--at", help=f"The instant. {TimeHelp}")],
        target: Annotated[str, typer.Option("--target", help="The new table's name.")],
    ) -> None:
        """Restore a table as it was at an instant of its recovery window into a new table."""

        when = parse_time(at, option="--at")

        async def go(app: App) -> int:
            with _progress("restore", None, quiet=False) as bar:
                bar.add_task(f"{table} as of {when.isoformat()} -> {target}", total=None)
                restored = await app.restore_to_time(table, at=when, target=target)
            with _progress("count", "items", quiet=False) as bar:
                task = bar.add_task(target, total=None)
                count = 0
                async for _ in restored.scan():
                    count += 1
                    if count % 1000 == 0:
                        bar.update(task, completed=count)
            return count

        count = _run(go)
        typer.echo(f"restored {table} as of {when.isoformat()} into {target}: {count:,} items")

    @cli.command("export")
    def export(
        table: Annotated[str, typer.Argument(help="The table to export.")],
        to: Annotated[
            str,
            typer.Option("--to", help="A directory (./exports), file:///dir or s3://bucket/prefix"),
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="dynamodb-json (gzip), ion (gzip), avro or parquet")
        ] = "dynamodb-json",
        since: Annotated[
            str | None,
            typer.Option("--since", help=f"Incremental: changes from here. {TimeHelp}"),
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help=f"As of / changes until. {TimeHelp}")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Export a table as of an instant (full), or its changes between two instants
        (incremental), with a manifest of files, item counts and checksums."""

        start = None if since is None else parse_time(since, option="--since")
        end = None if until is None else parse_time(until, option="--until")
        to = _destination(to)

        async def go(app: App) -> Any:
            with _progress("export", "items", quiet=as_json) as bar:
                task = bar.add_task(f"{table} -> {to}", total=None)
                return await app.export(
                    table,
                    to=to,
                    format=fmt,
                    since=start,
                    until=end,
                    progress=lambda n, _total: bar.update(task, completed=n),
                )

        result = _run(go)
        if as_json:
            typer.echo(
                dumps(
                    {
                        "export_id": result.export_id,
                        "location": result.location,
                        "manifest": result.manifest,
                        "format": result.format,
                        "export_type": result.export_type,
                        "item_count": result.item_count,
                        "files": result.files,
                    }
                )
            )
        else:
            typer.echo(
                f"exported {result.item_count:,} items of {table} "
                f"({result.export_type.lower().replace('_', ' ')}, {result.format}) in "
                f"{len(result.files)} file(s) to {result.location}; manifest {result.manifest}"
            )

    @backup_cli.command("create")
    def backup_create(table: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Back up a table (a consistent copy kept in the storage)."""

        async def go(app: App) -> Any:
            with _progress("backup", None, quiet=as_json) as bar:
                bar.add_task(table, total=None)
                return await app.backup(table)

        b = _run(go)
        if as_json:
            typer.echo(dumps(_backup_dict(b)))
        else:
            typer.echo(f"{b.id}  {b.items:,} items  {b.size_bytes:,} bytes")

    @backup_cli.command("list")
    def backup_list(
        table: Annotated[str | None, typer.Argument(help="Only this table's backups.")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """List backups, oldest first."""
        from rich.console import Console
        from rich.table import Column, Table

        async def go(app: App) -> Any:
            return await app.backups(table)

        found = _run(go)
        if as_json:
            typer.echo(dumps([_backup_dict(b) for b in found]))
            return
        # ids are what the other commands take: never cut; the other columns wrap
        out = Table(
            Column("id", no_wrap=True, min_width=max((len(b.id) for b in found), default=2)),
            *(Column(h, overflow="fold") for h in ("table", "created", "kind", "items", "bytes")),
        )
        for b in found:
            out.add_row(
                b.id,
                b.table,
                b.created_at.isoformat(timespec="seconds"),
                b.kind,
                f"{b.items:,}",
                f"{b.size_bytes:,}",
            )
        Console().print(out)

    @backup_cli.command("restore")
    def backup_restore(
        backup_id: str,
        target: Annotated[str, typer.Option("--target", help="The new table's name.")],
    ) -> None:
        """Create a new table from a backup."""

        async def go(app: App) -> None:
            with _progress("restore", None, quiet=False) as bar:
                bar.add_task(f"{backup_id} -> {target}", total=None)
                await app.restore_backup(backup_id, target=target)

        _run(go)
        typer.echo(f"restored {backup_id} into {target}")

    @backup_cli.command("delete")
    def backup_delete(backup_id: str) -> None:
        """Delete a backup."""

        async def go(app: App) -> Any:
            return await app.delete_backup(backup_id)

        b = _run(go)
        typer.echo(f"deleted {b.id} ({b.items:,} items of {b.table})")


def _backup_dict(b: Any) -> dict[str, Any]:
    return {
        "id": b.id,
        "table": b.table,
        "created_at": b.created_at.isoformat(),
        "kind": b.kind,
        "items": b.items,
        "size_bytes": b.size_bytes,
    }
