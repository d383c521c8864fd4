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

Binding parameters and planning a SELECT's key access are in
:mod:`streamkit.storage._partiql_plan`, resolving and running writes in
:mod:`streamkit.storage._partiql_write`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from streamkit.exceptions import (
    CancellationReason,
    StreamkitError,
    TransactionCanceled,
    ValidationError,
)
from streamkit.records._values import Item, from_dynamodb_json, item_to_dynamodb_json
from streamkit.storage._capacity import measure
from streamkit.storage._conditions import Condition, key
from streamkit.storage._evaluate import top_level_names
from streamkit.storage._expressions import ExpressionContext, compile_condition, compile_projection
from streamkit.storage._keys import KeySchema, order_bytes
from streamkit.storage._partiql import ExistsCheck, Select, Statement, parse_statement
from streamkit.storage._partiql_plan import (
    _INCOMPLETE_KEY,
    _and,
    _Bound,
    _check_params,
    _composite_partitions,
    _conjuncts,
    _full_key,
    _key_lookup,
    _only_partitions,
    _partitions,
    _projection,
    _sort_term,
)
from streamkit.storage._partiql_write import _resolve_write, _write
from streamkit.storage._reads import partition_condition
from streamkit.storage._table import Page, Table, check_limit
from streamkit.storage._transaction import Transaction

if TYPE_CHECKING:
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
