"""Running PartiQL writes: ``INSERT``, ``UPDATE``, ``DELETE`` and ``EXISTS`` checks.

A write statement is resolved against its table (``_resolve_write``) into a ``_Write``:
the call to hand the table API (a put, update, delete or condition check), its key or
item, and its condition. An ``UPDATE``'s actions are printed back as an
UpdateExpression (``_render_update``). ``_write`` runs one on its own;
:func:`streamkit.storage._partiql_exec.execute_transaction` hands them to a
:class:`~streamkit.storage._transaction.Transaction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import ConditionFailed, DuplicateItem, ValidationError
from streamkit.records._values import Item
from streamkit.storage._conditions import (
    And,
    Condition,
    Const,
    Exists,
    NotExists,
    Or,
    PathRef,
    UpdateExpr,
)
from streamkit.storage._partiql import Delete, ExistsCheck, Insert, Statement, Update
from streamkit.storage._partiql_plan import _Bound, _full_key, _value
from streamkit.storage._table import Table

if TYPE_CHECKING:
    from streamkit.storage._store import Store


def _render_update(update: UpdateExpr) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A bound update AST as an UpdateExpression with ``#n`` / ``:v`` placeholders."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}

    def path(p: PathRef) -> str:
        out = []
        for e in p.elements:
            if type(e) is int:
                out.append(f"[{e}]")
                continue
            ref = f"#n{len(names)}"
            names[ref] = str(e)
            out.append(f".{ref}" if out else ref)
        return "".join(out)

    def operand(node: Any) -> str:
        from streamkit.storage._conditions import Arith, ListAppend

        if isinstance(node, PathRef):
            return path(node)
        if isinstance(node, Const):
            ref = f":v{len(values)}"
            values[ref] = node.value
            return ref
        if isinstance(node, Arith):
            return f"{operand(node.left)} {node.op} {operand(node.right)}"
        if isinstance(node, ListAppend):
            return f"list_append({operand(node.first)}, {operand(node.second)})"
        raise ValidationError(f"Unsupported operator in Update Expression. Operator: {node!r}")

    clauses = []
    if update.sets:
        clauses.append(
            "SET " + ", ".join(f"{path(a.path)} = {operand(a.value)}" for a in update.sets)
        )
    if update.removes:
        clauses.append("REMOVE " + ", ".join(path(a.path) for a in update.removes))
    if update.adds:
        clauses.append(
            "ADD " + ", ".join(f"{path(a.path)} {operand(a.value)}" for a in update.adds)
        )
    if update.deletes:
        clauses.append(
            "DELETE " + ", ".join(f"{path(a.path)} {operand(a.value)}" for a in update.deletes)
        )
    return " ".join(clauses), names, values


def _insert_item(stmt: Insert, params: Sequence[Any]) -> Item:
    item = _value(stmt.item, params)
    if type(item) is not dict:
        raise ValidationError(
            "Unsupported format in item expression. Please use struct format {...} to express "
            "item values for insert statement."
        )
    return item


@dataclass(frozen=True, slots=True)
class _Write:
    """A write statement resolved against its table: what to hand the table API."""

    kind: str  # put update delete check
    table: str
    item_or_key: Item
    condition: Condition | None
    expression: str | None = None
    names: dict[str, str] | None = None
    values: dict[str, Any] | None = None
    returns: str = "NONE"


async def _resolve_write(store: Store, stmt: Statement, params: Sequence[Any]) -> _Write:
    bound = _Bound(params)
    if isinstance(stmt, Insert):
        spec = await store.spec(stmt.table)
        item = _insert_item(stmt, params)
        return _Write("put", stmt.table, item, NotExists(PathRef((spec.key.partition.name,))))
    if isinstance(stmt, ExistsCheck):
        select = stmt.select
        if select.index is not None:
            raise ValidationError("Operations on indices are not supported in transactions")
        if select.where is None:
            raise ValidationError(
                "EXISTS() must contain a single item read with additional condition"
            )
        spec = await store.spec(select.table)
        k, rest = _full_key(spec, bound.node(select.where))
        exists: Condition = Exists(PathRef((spec.key.partition.name,)))
        return _Write("check", select.table, k, exists if rest is None else exists & rest)
    if isinstance(stmt, (Update, Delete)):
        spec = await store.spec(stmt.table)
        k, rest = _full_key(spec, bound.node(stmt.where))
        pk = PathRef((spec.key.partition.name,))
        if isinstance(stmt, Delete):
            guard = None if rest is None else Or(NotExists(pk), rest)
            return _Write("delete", stmt.table, k, guard, returns=stmt.returning)
        expression, names, values = _render_update(bound.node(stmt.update))
        cond: Condition = Exists(pk) if rest is None else And(Exists(pk), rest)
        return _Write(
            "update", stmt.table, k, cond, expression, names, values or None, stmt.returning
        )
    raise ValidationError("Expected data manipulation")  # pragma: no cover - reads go elsewhere


async def _write(store: Store, w: _Write, old_on_failure: bool) -> Item | None:
    table = Table(store, w.table)
    if w.kind == "put":
        try:
            await table.put(w.item_or_key, condition=w.condition)
        except ConditionFailed as e:
            raise DuplicateItem(table=w.table, key=e.key) from None
        return None
    if w.kind == "delete":
        return await table.delete(
            w.item_or_key,
            condition=w.condition,
            returns=w.returns,
            return_old_on_condition_failure=old_on_failure,
        )
    if w.kind == "update":
        return await table.update(
            w.item_or_key,
            expression=w.expression,
            condition=w.condition,
            names=w.names,
            values=w.values,
            returns=w.returns,
            return_old_on_condition_failure=old_on_failure,
        )
    raise ValidationError("EXISTS can only be used in ExecuteTransaction write requests.")
