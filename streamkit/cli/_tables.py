"""``streamkit tables ...``: create, list, describe and delete tables, add and delete
their global indexes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamkit.cli._common import EXIT_USAGE, _fail, _run, _run_read
from streamkit.cli._jsonio import dumps
from streamkit.cli._options import JsonOpt

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("register",)


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


def register(cli: typer.Typer) -> None:
    """Add the ``tables`` commands to ``cli``."""
    tables_cli = typer.Typer(help="Create, list, describe and delete tables.", no_args_is_help=True)
    cli.add_typer(tables_cli, name="tables")

    @tables_cli.command("create")
    def tables_create(
        name: str,
        partition_key: Annotated[
            str, typer.Option("--partition-key", "-p", help="NAME or NAME:TYPE")
        ],
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
                help="NAME=PK[:TYPE][,SK[:TYPE]]\\[/PROJECTION] (PROJECTION: ALL, KEYS_ONLY or "
                "attributes joined by '+'); repeatable",
            ),
        ] = None,
        local_index: Annotated[
            list[str] | None,
            typer.Option("--local-index", "-l", help="NAME=SK[:TYPE]\\[/PROJECTION]; repeatable"),
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

    @tables_cli.command("add-index")
    def tables_add_index(
        table: str,
        index: Annotated[
            str, typer.Argument(help="NAME=PK[:TYPE][,SK[:TYPE]]\\[/PROJECTION]: a global index")
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
