"""Option types that several command modules share (typer reads them from each command's
module, so they live here, below every command module and ``_main``)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ("DdbOpt", "JsonOpt", "NamesOpt", "ValuesOpt")

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
