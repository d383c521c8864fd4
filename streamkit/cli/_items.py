"""The item commands: ``put``, ``get``, ``update``, ``delete``, ``query``, ``scan`` and
``sql``."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamkit.cli._common import EXIT_USAGE, _fail, _run, _run_read
from streamkit.cli._jsonio import dumps, parse_item, render_item
from streamkit.cli._options import DdbOpt, JsonOpt, NamesOpt, ValuesOpt

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("register",)

ConditionOpt = Annotated[
    str | None, typer.Option("--condition", help="A ConditionExpression; exit 1 when false.")
]


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


def register(cli: typer.Typer) -> None:
    """Add the item commands to ``cli``."""

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
                "--where",
                help="A condition on the sort key, e.g. 'OrderDate > :d' (with --values).",
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
            str,
            typer.Argument(help='A PartiQL statement, e.g. "SELECT * FROM Orders WHERE id = ?".'),
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
