"""Running PartiQL statements on a :class:`~streamkit.storage._store.Store`.

Nothing here reads or writes storage itself: a statement becomes calls on the
table API, so PartiQL writes take the same path (and emit the same change records)
as ``Table.put`` / ``update`` / ``delete`` and ``Transaction``:

* ``SELECT`` whose ``WHERE`` fixes the partition key (``=``, ``IN``, or an ``OR`` of
  them, as DynamoDB decides) is a query per partition (``Table.query_page`` with a key
  condition, plus a sort-key condition when a top-level conjunct gives one); anything
  else is a scan (``Table.scan_page`` with the ``WHERE`` as its filter). A residual
  condition that still reads key attributes (``pk = 1 OR pk = 2``) is evaluated here
  with the same compiled-condition evaluator, since a query filter may not read keys.
* ``INSERT`` is a put on ``attribute_not_exists(pk)`` (a failure is
  :class:`~streamkit.exceptions.DuplicateItem`); ``UPDATE`` is an update on
  ``attribute_exists(pk) AND <rest of WHERE>``; ``DELETE`` a delete on
  ``attribute_not_exists(pk) OR <rest of WHERE>`` (an absent item is no error).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from streamkit.exceptions import (
    CancellationReason,
    ConditionFailed,
    DuplicateItem,
    StreamkitError,
    TransactionCanceled,
    ValidationError,
)
from streamkit.records._values import (
    Item,
    from_dynamodb_json,
    item_to_dynamodb_json,
    normalize_value,
    type_of,
    values_equal,
)
from streamkit.storage._capacity import measure
from streamkit.storage._conditions import (
    And,
    BeginsWith,
    Between,
    Compare,
    Condition,
    Const,
    Exists,
    In,
    Node,
    NotExists,
    Or,
    PathRef,
    UpdateExpr,
    key,
)
from streamkit.storage._evaluate import top_level_names
from streamkit.storage._expressions import ExpressionContext, compile_condition, compile_projection
from streamkit.storage._keys import KeySchema, order_bytes
from streamkit.storage._partiql import (
    Delete,
    ExistsCheck,
    Insert,
    ListValue,
    Literal,
    MapValue,
    Param,
    Select,
    Statement,
    Update,
    Value,
    ValueExpr,
    parse_statement,
)
from streamkit.storage._reads import partition_condition
from streamkit.storage._table import Page, Table, check_limit
from streamkit.storage._transaction import Transaction

if TYPE_CHECKING:
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = (
    "BatchStatementResult",
    "StatementPage",
    "StatementRequest",
    "execute_batch",
    "execute_page",
    "execute_transaction",
)

MAX_BATCH: Final = 25
MAX_TRANSACTION: Final = 100
_INCOMPLETE_KEY: Final = "Where clause does not contain a mandatory equality on all key attributes"
_PARAMS: Final = "Number of parameters in request and statement don't match."

StatementRequest = tuple[str, Sequence[Any] | None]
"""A statement and its ``?`` parameters (None: no parameters)."""


@dataclass(slots=True)
class StatementPage:
    """What one statement returned: a page of items, and where to continue.

    Attributes:
        items: the items read (SELECT) or returned by ``RETURNING`` (writes).
        next_token: pass as ``next_token=`` to read the next page; None at the end.
        consumed: capacity units consumed (reads and writes).
        table: the table the statement ran on.
    """

    items: list[Item] = field(default_factory=list)
    next_token: str | None = None
    consumed: float = 0.0
    table: str | None = None


@dataclass(frozen=True, slots=True)
class BatchStatementResult:
    """The outcome of one statement of a batch: an item (reads), or the error it raised."""

    table: str | None = None
    item: Item | None = None
    error: StreamkitError | None = None


# --- binding values ------------------------------------------------------------------------------


def _python(expr: ValueExpr, params: Sequence[Any]) -> Any:
    """A value expression as a Python value (normalized later, as a whole)."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Param):
        return params[expr.index]
    if isinstance(expr, ListValue):
        return [_python(v, params) for v in expr.items]
    if isinstance(expr, MapValue):
        return {k: _python(v, params) for k, v in expr.entries}
    members = [_python(v, params) for v in expr.items]
    for m in members:
        if type(m) not in (str, Decimal, bytes, int, float):
            raise ValidationError(
                "Unsupported data type in Bag. DynamoDB only supports either numbers or "
                "strings in bags"
            )
    return set(members)


def _value(expr: ValueExpr, params: Sequence[Any]) -> Any:
    return normalize_value(_python(expr, params), "root")


_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(cls: type) -> tuple[str, ...]:
    """The fields of a tree node class that can hold nodes (not its position)."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name != "pos")
    return names


class _Bound:
    """Replaces every :class:`Value` of a tree with a ``Const`` of its parameters."""

    __slots__ = ("params",)

    def __init__(self, params: Sequence[Any]) -> None:
        self.params = params

    def node(self, node: Any) -> Any:
        if isinstance(node, Value):
            return Const(_value(node.expr, self.params))
        if not isinstance(node, Node):
            return node
        changes: dict[str, Any] = {}
        for name in _child_fields(type(node)):
            child = getattr(node, name)
            if isinstance(child, Node):
                new = self.node(child)
            elif isinstance(child, tuple):
                new = tuple(self.node(c) for c in child)
            else:
                continue
            if new is not child:
                changes[name] = new
        return replace(node, **changes) if changes else node  # type: ignore[type-var]


def _check_params(stmt: Statement, params: Sequence[Any]) -> None:
    # DynamoDB refuses too few parameters and ignores extra ones
    if len(params) < stmt.params:
        raise ValidationError(_PARAMS)


# --- conditions ------------------------------------------------------------------------------


def _conjuncts(node: Condition) -> list[Condition]:
    """The top-level AND terms of a condition, in text order (without recursion)."""
    out: list[Condition] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, And):
            stack += (n.right, n.left)
        else:
            out.append(n)
    return out


def _and(terms: Sequence[Condition]) -> Condition | None:
    if not terms:
        return None
    node = terms[0]
    for t in terms[1:]:
        node = And(node, t)
    return node


def _attr_const(node: Compare, name: str) -> Any:
    """The constant ``name`` is compared with in ``name op const`` (either side), or None."""
    for path, other in ((node.left, node.right), (node.right, node.left)):
        if isinstance(path, PathRef) and path.elements == (name,) and isinstance(other, Const):
            return other
    return None


_KEY_TERMS: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ValueExpr], ...] | None] = {}


def _key_lookup(
    text: str, names: tuple[str, ...], where: Condition, params: Sequence[Any]
) -> dict[str, Any] | None:
    """The key a WHERE (not yet bound) names with exactly one ``key = value`` term per
    key attribute and nothing else, or None (then the bound tree decides). Which terms
    those are is found once per statement text and key."""
    cache_key = (text, names)
    if cache_key in _KEY_TERMS:
        terms = _KEY_TERMS[cache_key]
    else:
        if len(_KEY_TERMS) >= 1024:
            _KEY_TERMS.clear()
        terms = _KEY_TERMS[cache_key] = _key_terms(names, where)
    if terms is None:
        return None
    return {name: _value(expr, params) for name, expr in terms}


def _key_terms(
    names: tuple[str, ...], where: Condition
) -> tuple[tuple[str, ValueExpr], ...] | None:
    terms = _conjuncts(where)
    if len(terms) != len(names):
        return None
    found: dict[str, ValueExpr] = {}
    for term in terms:
        if not isinstance(term, Compare) or term.op != "=":
            return None
        for path, other in ((term.left, term.right), (term.right, term.left)):
            if (
                isinstance(path, PathRef)
                and len(path.elements) == 1
                and path.elements[0] in names
                and isinstance(other, Value)
            ):
                name = str(path.elements[0])
                if name in found:
                    return None
                found[name] = other.expr
                break
        else:
            return None
    return tuple(found.items()) if len(found) == len(names) else None


def _full_key(spec: TableSpec, where: Condition) -> tuple[dict[str, Any], Condition | None]:
    """The item key a write's WHERE fixes, and the rest of the WHERE as its condition."""
    names = spec.key.names
    found: dict[str, Any] = {}
    rest: list[Condition] = []
    for term in _conjuncts(where):
        hit = None
        if isinstance(term, Compare) and term.op == "=":
            for n in names:
                c = _attr_const(term, n)
                if c is not None:
                    hit = (n, c.value)
                    break
        if hit is None:
            rest.append(term)
        elif hit[0] in found:
            raise ValidationError(
                f"Multiple conditions on same key {hit[0]}. Only single item "
                "Update/Insert/Delete are supported"
            )
        else:
            found[hit[0]] = hit[1]
    if len(found) != len(names):
        raise ValidationError(_INCOMPLETE_KEY)
    return found, _and(rest)


def _partitions(node: Condition, pk: str) -> list[Any] | None:
    """The partition key values a WHERE restricts the result to, or None (a scan)."""
    if isinstance(node, Compare) and node.op == "=":
        c = _attr_const(node, pk)
        return None if c is None else [c.value]
    if isinstance(node, In):
        if (
            isinstance(node.operand, PathRef)
            and node.operand.elements == (pk,)
            and all(isinstance(o, Const) for o in node.options)
        ):
            return _unique([o.value for o in node.options if isinstance(o, Const)])
        return None
    if isinstance(node, And):
        left, right = _partitions(node.left, pk), _partitions(node.right, pk)
        if left is None or right is None:
            return left if right is None else right
        return [v for v in left if any(values_equal(v, w) for w in right)]
    if isinstance(node, Or):
        left, right = _partitions(node.left, pk), _partitions(node.right, pk)
        if left is None or right is None:
            return None
        return _unique(left + right)
    return None


_MOST_PARTITIONS = 100  # of a multi-attribute partition key: more, and PartiQL scans


def _composite_partitions(node: Condition, ix: IndexSpec) -> list[Any] | None:
    """The partitions (tuples of the partition key attributes' values) of an index with
    a multi-attribute partition key that a WHERE restricts the result to, or None (a
    scan). Combinations the WHERE rules out are read and dropped by it."""
    values = [_partitions(node, a.name) for a in ix.hash_attrs]
    if any(v is None for v in values):
        return None
    combos = list(itertools.product(*values))  # type: ignore[arg-type]
    return combos if len(combos) <= _MOST_PARTITIONS else None


def _only_partitions(node: Condition, pk: str) -> bool:
    """Whether a term says nothing but which partitions (``pk = v``, ``pk IN``, their OR)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Or):
            stack += (n.left, n.right)
        elif not (isinstance(n, (Compare, In)) and _partitions(n, pk) is not None):
            return False
    return True


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(values_equal(v, w) for w in out):
            out.append(v)
    return out


def _sort_term(term: Condition, sk: str, sk_type: str) -> bool:
    """Whether a top-level term is a sort-key condition a key condition can hold."""

    def ok(c: Any) -> bool:
        return isinstance(c, Const) and type_of(c.value) == sk_type

    def is_sk(p: Any) -> bool:
        return isinstance(p, PathRef) and p.elements == (sk,)

    if isinstance(term, Compare) and term.op != "<>":
        return ok(_attr_const(term, sk))
    if isinstance(term, Between):
        return is_sk(term.operand) and ok(term.low) and ok(term.high)
    if isinstance(term, BeginsWith):
        return is_sk(term.operand) and ok(term.prefix) and sk_type in ("S", "B")
    return False


def _projection(paths: tuple[PathRef, ...] | None) -> tuple[str | None, dict[str, str] | None]:
    """A projection list as a ProjectionExpression with ``#name`` placeholders."""
    if paths is None:
        return None, None
    refs: dict[str, str] = {}  # attribute name -> placeholder

    def ref(name: str) -> str:
        if name not in refs:
            refs[name] = f"#p{len(refs)}"
        return refs[name]

    texts = []
    for p in paths:
        text = ""
        for e in p.elements:
            text += f"[{e}]" if type(e) is int else (f".{ref(str(e))}" if text else ref(str(e)))
        texts.append(text)
    return ", ".join(texts), {r: n for n, r in refs.items()}


# --- paging tokens ---------------------------------------------------------------------------


def _digest(statement: str) -> str:
    return hashlib.sha256(statement.encode()).hexdigest()[:16]


def _token(statement: str, index: int, last_key: Item | None) -> str:
    data = {
        "s": _digest(statement),
        "p": index,
        "k": None if last_key is None else item_to_dynamodb_json(last_key),
    }
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _untoken(statement: str, token: str) -> tuple[int, Item | None]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        index, raw, digest = data["p"], data["k"], data["s"]
        if type(index) is not int or index < 0:
            raise ValueError(index)
        last = None if raw is None else {k: from_dynamodb_json(v, k) for k, v in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, StreamkitError):
        raise ValidationError("Invalid NextToken") from None
    if digest != _digest(statement):
        raise ValidationError("NextToken does not match request")
    return index, last


# --- one statement -----------------------------------------------------------------------------


async def _select(
    store: Store,
    text: str,
    stmt: Select,
    params: Sequence[Any],
    consistent: bool,
    limit: int | None,
    next_token: str | None,
) -> StatementPage:
    table = Table(store, stmt.table)
    spec = await table.spec()
    projection, names = _projection(stmt.projection)
    out = StatementPage(table=stmt.table)
    plain = stmt.index is None and not stmt.order and next_token is None
    if plain and stmt.where is not None:
        # the common case first, read from the tree as parsed: `k = ? AND ...` over
        # exactly the whole key is one get, with only its values bound
        whole = _key_lookup(text, spec.key.names, stmt.where, params)
        if whole is not None:
            item = await table.get(whole, consistent=consistent, projection=projection, names=names)
            out.items = [] if item is None else [item]
            return out
    where = _Bound(params).node(stmt.where) if stmt.where is not None else None
    start, cursor = (0, None) if next_token is None else _untoken(text, next_token)
    if plain and where is not None:
        # a WHERE that is exactly the whole key: one get (what a query of it reads)
        try:
            k, leftover = _full_key(spec, where)
        except ValidationError:
            leftover = where
        if leftover is None:
            item = await table.get(k, consistent=consistent, projection=projection, names=names)
            out.items = [] if item is None else [item]
            return out
    # FROM "Table"."Index": the index's key decides query or scan, as the table's does
    ix = None if stmt.index is None else spec.index(stmt.index)
    schema = spec.key if ix is None else ix.key
    idx: dict[str, Any] = {} if stmt.index is None else {"index": stmt.index}
    pk = schema.partition.name
    composite = ix is not None and ix.composite
    partitions: list[Any] | None = None
    if where is not None:
        # an index whose partition key has several attributes: a query when the WHERE
        # fixes every one of them (each partition a tuple of their values)
        partitions = (
            _composite_partitions(where, ix) if ix and composite else _partitions(where, pk)
        )
    _check_order(schema, stmt, where, partitions)
    if partitions is None:
        scanned = await table.scan_page(
            filter=where,
            projection=projection,
            names=names,
            limit=limit,
            start_key=cursor,
            consistent=consistent,
            **idx,
        )
        out.items, out.consumed = scanned.items, scanned.consumed
        if scanned.last_key is not None:
            out.next_token = _token(text, 0, scanned.last_key)
        return out
    assert where is not None
    if not composite and any(name == pk for name, _ in stmt.order):
        descending = next(d for name, d in stmt.order if name == pk)
        ordered = [(order_bytes(schema.check_value(schema.partition, v)), v) for v in partitions]
        ordered.sort(key=lambda pair: pair[0], reverse=descending)
        partitions = [v for _, v in ordered]
    reverse = any(d for name, d in stmt.order if name != pk)
    terms = _conjuncts(where)
    sort_cond = None
    sk = schema.sort
    if sk is not None and not composite:
        sort_cond = next((t for t in terms if _sort_term(t, sk.name, sk.type)), None)
    # terms that only name partitions hold for every partition visited
    rest = [t for t in terms if t is not sort_cond and not _only_partitions(t, pk)]
    residual = _and(rest)
    local = None
    key_names = set(schema.names) if ix is None else set(ix.key_names)
    if composite or (residual is not None and top_level_names(residual) & key_names):
        # a query filter may not read key attributes: evaluate the whole WHERE here
        local = compile_condition(where, ExpressionContext(None, None))
        residual = None
    proj = None
    if local is not None and projection is not None:
        proj = compile_projection(projection, ExpressionContext(names, None))
    budget = limit
    index = start
    while index < len(partitions):
        if ix is not None and composite:
            kc = partition_condition(ix, partitions[index])
        else:
            kc = key(pk).eq(partitions[index])
        if sort_cond is not None:
            kc = kc & sort_cond
        page: Page = await table.query_page(
            key_condition=kc,
            filter=residual,
            projection=None if local is not None else projection,
            names=None if local is not None else names,
            reverse=reverse,
            limit=budget,
            start_key=cursor,
            consistent=consistent,
            **idx,
        )
        out.consumed += page.consumed
        items = page.items
        if local is not None:
            items = [i if proj is None else proj.apply(i) for i in items if local.evaluate(i)]
        out.items.extend(items)
        if page.last_key is not None:
            out.next_token = _token(text, index, page.last_key)
            return out
        index, cursor = index + 1, None
        if budget is not None:
            budget -= page.scanned_count
            if budget <= 0:
                if index < len(partitions):
                    out.next_token = _token(text, index, None)
                return out
    return out


def _check_order(
    schema: KeySchema, stmt: Select, where: Condition | None, partitions: list[Any] | None
) -> None:
    if not stmt.order:
        return
    if where is None:
        raise ValidationError("Must have WHERE clause in the statement when using ORDER BY clause.")
    if partitions is None:
        raise ValidationError(
            "Must have at least one non-optional hash key condition in WHERE clause when using "
            "ORDER BY clause."
        )
    for name, _ in stmt.order:
        if name not in schema.names:
            raise ValidationError(
                f"Variable reference {name} in ORDER BY clause must be part of the primary key"
            )
    if len(partitions) > 1 and all(n != schema.partition.name for n, _ in stmt.order):
        raise ValidationError(
            "Must have hash key in ORDER BY clause when more than one hash key condition "
            "specified in WHERE clause."
        )


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


async def execute_page(
    store: Store,
    statement: str,
    parameters: Sequence[Any] | None = None,
    *,
    consistent: bool = False,
    limit: int | None = None,
    next_token: str | None = None,
    return_old_on_condition_failure: bool = False,
    measured: bool = True,
) -> StatementPage:
    """Run one statement: a page of a SELECT, or one write (see the module docstring).
    ``measured``: count the capacity it consumed in ``page.consumed`` (a caller that
    never reads it saves opening a meter).

    Raises:
        ValidationError: a statement DynamoDB would refuse, in its words.
        DuplicateItem: an INSERT of a key that exists.
        ConditionFailed: an UPDATE of an absent item, or a WHERE that is false.
        TableNotFound: no such table.
    """
    stmt = parse_statement(statement)
    params = list(parameters or ())
    _check_params(stmt, params)
    check_limit(limit)
    run = _statement(store, statement, stmt, params, consistent, limit, next_token)
    if not measured:
        return await run(return_old_on_condition_failure)
    with measure() as used:
        page = await run(return_old_on_condition_failure)
    page.consumed = used.read_units + used.write_units
    return page


def _statement(
    store: Store,
    text: str,
    stmt: Statement,
    params: list[Any],
    consistent: bool,
    limit: int | None,
    next_token: str | None,
) -> Callable[[bool], Awaitable[StatementPage]]:
    async def run(return_old: bool) -> StatementPage:
        if isinstance(stmt, Select):
            return await _select(store, text, stmt, params, consistent, limit, next_token)
        if next_token is not None:
            raise ValidationError("NextToken does not match request")
        w = await _resolve_write(store, stmt, params)
        returned = await _write(store, w, return_old)
        return StatementPage(items=[] if returned is None else [returned], table=w.table)

    return run


# --- batches and transactions --------------------------------------------------------------------


def _requests(
    statements: Sequence[StatementRequest], most: int, what: str
) -> list[tuple[str, list[Any]]]:
    if not 1 <= len(statements) <= most:
        raise ValidationError(
            f"1 validation error detected: Value at '{what}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {most}"
            if statements
            else f"{what} must hold at least one statement"
        )
    return [(text, list(params or ())) for text, params in statements]


async def _get(store: Store, stmt: Select, params: Sequence[Any], consistent: bool) -> Item | None:
    """A SELECT that names a whole key: one get, then the rest of its WHERE."""
    if stmt.index is not None:
        raise ValidationError("Reads on indices are not supported within transactions.")
    if stmt.where is None:
        raise ValidationError(_INCOMPLETE_KEY)
    spec = await store.spec(stmt.table)
    k, rest = _full_key(spec, _Bound(params).node(stmt.where))
    table = Table(store, stmt.table)
    item = await table.get(k, consistent=consistent)
    if item is None or (rest is not None and not _evaluate(rest, item)):
        return None
    projection, names = _projection(stmt.projection)
    if projection is None:
        return item
    proj = compile_projection(projection, ExpressionContext(names, None))
    assert proj is not None
    return proj.apply(item)


def _evaluate(cond: Condition, item: Item) -> bool:
    compiled = compile_condition(cond, ExpressionContext(None, None))
    return compiled is None or compiled.evaluate(item)


async def execute_batch(
    store: Store, statements: Sequence[StatementRequest], *, consistent: bool = False
) -> list[BatchStatementResult]:
    """Run up to 25 statements, all reads (whole-key SELECTs) or all writes, each on its
    own: one statement's failure is its result's ``error`` and stops no other."""
    requests = _requests(statements, MAX_BATCH, "statements")
    parsed: list[Statement | StreamkitError] = []
    for text, params in requests:
        try:
            one = parse_statement(text)
            _check_params(one, params)
            parsed.append(one)
        except StreamkitError as e:
            parsed.append(e)
    kinds = {isinstance(s, Select) for s in parsed if not isinstance(s, StreamkitError)}
    if len(kinds) > 1:
        raise ValidationError(
            "The entire batch must consist of either read statements or write statements; "
            "you cannot mix both in one batch"
        )
    out: list[BatchStatementResult] = []
    for entry, (_, params) in zip(parsed, requests, strict=True):
        if isinstance(entry, StreamkitError):
            out.append(BatchStatementResult(error=entry))
            continue
        stmt = entry
        name = stmt.select.table if isinstance(stmt, ExistsCheck) else stmt.table
        try:
            if isinstance(stmt, Select):
                item = await _get(store, stmt, params, consistent)
                out.append(BatchStatementResult(table=name, item=item))
            else:
                w = await _resolve_write(store, stmt, params)
                await _write(store, w, False)
                out.append(BatchStatementResult(table=name))
        except StreamkitError as e:
            out.append(BatchStatementResult(table=name, error=e))
    return out


async def execute_transaction(
    store: Store,
    statements: Sequence[StatementRequest],
    *,
    return_old_on_condition_failure: Sequence[bool] | None = None,
) -> list[Item | None]:
    """Run up to 100 statements as one transaction: all reads (whole-key SELECTs, one
    item or None each) or all writes with ``EXISTS`` checks (all or nothing, through
    :class:`~streamkit.storage._transaction.Transaction`; returns ``[]``).

    Raises:
        ValidationError: a statement is refused; the message names its index.
        TransactionCanceled: a condition failed; ``reasons`` has one entry per statement
            (``DuplicateItem`` for an INSERT of an existing key).
    """
    requests = _requests(statements, MAX_TRANSACTION, "transactStatements")
    parsed: list[Statement] = []
    for i, (text, params) in enumerate(requests):
        try:
            stmt = parse_statement(text)
            _check_params(stmt, params)
        except ValidationError as e:
            raise ValidationError(f"Validation failed in TransactStatements[{i}]: {e}") from None
        parsed.append(stmt)
    reads = [isinstance(s, Select) for s in parsed]
    if any(reads) and not all(reads):
        raise ValidationError(
            "The entire transaction must consist of either read statements or write statements"
        )
    if all(reads):
        items = []
        for stmt, (_, params) in zip(parsed, requests, strict=True):
            assert isinstance(stmt, Select)
            if stmt.where is None:
                raise ValidationError(
                    "Select statements within ExecuteTransaction must specify the primary key "
                    "in the where clause."
                )
            items.append(await _get(store, stmt, params, True))
        return items
    old = list(return_old_on_condition_failure or [False] * len(parsed))
    tx = Transaction(store)
    inserts = []
    for i, (stmt, (_, params)) in enumerate(zip(parsed, requests, strict=True)):
        w = await _resolve_write(store, stmt, params)
        if w.returns != "NONE":
            raise ValidationError(
                f"Validation failed in TransactStatements[{i}]: RETURNING is "
                "not supported in transactions"
            )
        flag = i < len(old) and old[i]
        if w.kind == "put":
            inserts.append(i)
            tx.put(w.table, w.item_or_key, condition=w.condition)
        elif w.kind == "update":
            tx.update(
                w.table,
                w.item_or_key,
                expression=w.expression,
                condition=w.condition,
                names=w.names,
                values=w.values,
                return_old_on_condition_failure=flag,
            )
        elif w.kind == "delete":
            tx.delete(
                w.table, w.item_or_key, condition=w.condition, return_old_on_condition_failure=flag
            )
        else:
            assert w.condition is not None
            tx.condition_check(
                w.table, w.item_or_key, w.condition, return_old_on_condition_failure=flag
            )
    try:
        await tx.commit()
    except TransactionCanceled as e:
        reasons = [
            CancellationReason("DuplicateItem", "Duplicate primary key exists in table")
            if i in inserts and r.code == "ConditionalCheckFailed"
            else r
            for i, r in enumerate(e.reasons)
        ]
        raise TransactionCanceled(reasons) from None
    return []
