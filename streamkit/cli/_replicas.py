"""``streamkit replicas TABLE``: where a global table's replication stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamkit.cli._common import _run_read
from streamkit.cli._jsonio import dumps

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("register",)


def register(cli: typer.Typer) -> None:
    """Add the ``replicas`` command to ``cli``."""

    @cli.command("replicas")
    def replicas(
        table: Annotated[str, typer.Argument(help="a global table (created with replicas=)")],
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    ) -> None:
        """Each peer region of TABLE: replication lag (records and seconds), conflicts
        resolved by last writer wins, and whether its replicator is running."""

        async def go(app: App) -> dict[str, Any]:
            return await app.replication_status(table)

        info = _run_read(go)
        if as_json:
            typer.echo(dumps(info))
            return
        from rich.console import Console
        from rich.table import Table as RichTable

        typer.echo(f"table    {info['table']}\nregion   {info['region']}")
        grid = RichTable("peer", "running", "lag", "lag age", "conflicts", "note")
        for p in info["peers"]:
            age = p["lag_seconds"]
            grid.add_row(
                p["peer"],
                "yes" if p["running"] else "NO",
                "?" if p["lag_records"] is None else str(p["lag_records"]),
                "?" if age is None else f"{age:.1f}s",
                str(p["conflicts"]),
                p["error"] or p["waiting_for"] or "",
            )
        Console().print(grid)
