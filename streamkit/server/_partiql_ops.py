"""DynamoDB's PartiQL operations: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction.

The statements run on the endpoint's store through :mod:`streamkit.storage._partiql_exec`;
this module only reads the requests and writes the responses the way DynamoDB does
(``Parameters`` as AttributeValues, an opaque ``NextToken``, ``ConsumedCapacity``,
per-statement ``Error {Code, Message}`` in a batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamkit.exceptions import (
    ConditionFailed,
    DuplicateItem,
    StreamkitError,
    TableNotFound,
    ThroughputExceeded,
    ValidationError,
)
from streamkit.records._values import item_to_dynamodb_json
from streamkit.server._convert import from_dynamodb_json
from streamkit.server._errors import from_streamkit, validation
from streamkit.server._ops_common import _capacity, _need, _opt
from streamkit.storage import _partiql_exec as partiql
from streamkit.storage._capacity import measure
from streamkit.storage._partiql_exec import execute_batch
from streamkit.storage._partiql_exec import execute_transaction as run_transaction

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from streamkit.server._ops import Service

__all__ = ("PARTIQL_OPERATIONS",)

Body = dict[str, Any]


def _parameters(body: Body, where: str = "parameters") -> list[Any] | None:
    raw = _opt(body, "Parameters", list)
    if raw is None:
        return None
    if not raw:
        raise validation(
            f"1 validation error detected: Value '[]' at '{where}' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    return [from_dynamodb_json(v, f"Parameters[{i}]") for i, v in enumerate(raw)]


def _old_on_failure(body: Body) -> bool:
    v = _opt(body, "ReturnValuesOnConditionCheckFailure", str, "NONE")
    if v not in ("NONE", "ALL_OLD"):
        raise validation("ReturnValuesOnConditionCheckFailure must be NONE or ALL_OLD")
    return bool(v == "ALL_OLD")


async def execute_statement(service: Service, body: Body) -> Body:
    statement = _need(body, "Statement")
    limit = _opt(body, "Limit", int)
    if limit is not None and limit < 1:
        raise validation(
            "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1"
        )
    page = await partiql.execute_page(
        service.store,
        statement,
        _parameters(body),
        consistent=_opt(body, "ConsistentRead", bool, False),
        limit=limit,
        next_token=_opt(body, "NextToken", str),
        return_old_on_condition_failure=_old_on_failure(body),
    )
    out: Body = {"Items": [item_to_dynamodb_json(i) for i in page.items]}
    if page.next_token is not None:
        out["NextToken"] = page.next_token
    reads = statement.lstrip()[:6].upper() == "SELECT"
    out.update(_capacity(body, page.table or "", page.consumed, read=reads))
    return out


_CODES: list[tuple[type[StreamkitError], str]] = [
    (DuplicateItem, "DuplicateItem"),
    (ConditionFailed, "ConditionalCheckFailed"),
    (TableNotFound, "ResourceNotFound"),
    (ThroughputExceeded, "ProvisionedThroughputExceeded"),
    (ValidationError, "ValidationError"),
]


def _error(e: StreamkitError) -> Body:
    code = next((c for kind, c in _CODES if isinstance(e, kind)), "InternalServerError")
    out: Body = {"Code": code, "Message": from_streamkit(e).message}
    item = getattr(e, "item", None)
    if item is not None:
        out["Item"] = item_to_dynamodb_json(item)
    return out


def _statements(body: Body, name: str, most: int) -> list[tuple[str, list[Any] | None]]:
    raw = _need(body, name, list)
    if not 1 <= len(raw) <= most:
        field = name[0].lower() + name[1:]
        bound = "less than or equal to " + str(most) if raw else "greater than or equal to 1"
        raise validation(
            f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
            f"Member must have length {bound}"
        )
    out = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise validation(f"{name} members must be objects")
        out.append((_need(entry, "Statement"), _parameters(entry)))
    return out


async def batch_execute_statement(service: Service, body: Body) -> Body:
    statements = _statements(body, "Statements", 25)
    consistent = any(e.get("ConsistentRead") is True for e in body["Statements"])
    with measure() as used:
        results = await execute_batch(service.store, statements, consistent=consistent)
    responses = []
    for r in results:
        entry: Body = {}
        if r.table is not None:
            entry["TableName"] = r.table
        if r.error is not None:
            entry["Error"] = _error(r.error)
        elif r.item is not None:
            entry["Item"] = item_to_dynamodb_json(r.item)
        responses.append(entry)
    out: Body = {"Responses": responses}
    table = next((r.table for r in results if r.table), "")
    cap = _capacity(body, table, used.read_units + used.write_units, read=used.write_units == 0)
    if cap:
        out["ConsumedCapacity"] = [cap["ConsumedCapacity"]]
    return out


async def execute_transaction(service: Service, body: Body) -> Body:
    statements = _statements(body, "TransactStatements", 100)
    _opt(body, "ClientRequestToken", str)
    old = [_old_on_failure(e) for e in body["TransactStatements"]]
    with measure() as used:
        items = await run_transaction(
            service.store, statements, return_old_on_condition_failure=old
        )
    out: Body = {}
    if items:
        out["Responses"] = [{} if i is None else {"Item": item_to_dynamodb_json(i)} for i in items]
    units = used.read_units + used.write_units
    cap = _capacity(body, "", units, read=used.write_units == 0)
    if cap:
        out["ConsumedCapacity"] = [cap["ConsumedCapacity"]]
    return out


PARTIQL_OPERATIONS: dict[str, Callable[[Service, Body], Awaitable[Body]]] = {
    "ExecuteStatement": execute_statement,
    "BatchExecuteStatement": batch_execute_statement,
    "ExecuteTransaction": execute_transaction,
}
