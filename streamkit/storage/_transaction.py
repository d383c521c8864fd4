"""``app.transaction()``: up to 100 actions across tables, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import ValidationError
from streamkit.storage._expressions import ExpressionContext, compile_condition
from streamkit.storage._table import Table, _index_sum
from streamkit.storage._write_ops import CheckOp, WriteJob, WriteOp

if TYPE_CHECKING:
    from streamkit.storage._conditions import Condition
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("Transaction",)

MAX_ACTIONS = 100

_Builder = Callable[["TableSpec"], WriteOp]


class Transaction:
    """Collects actions; commits them atomically when the ``async with`` block ends.

    If any condition fails, nothing is written and ``TransactionCanceled`` is raised
    with one reason per action, in order. The records of a committed transaction are
    delivered to consumers together. Two actions may not touch the same item.

    Example:
        ```python
        async with app.transaction() as tx:
            tx.put(orders, {"UserID": "1", "OrderDate": "2026-01-02", "Total": 10})
            tx.update(users, {"UserID": "1"}, add={"OrderCount": 1})
        ```
    """

    _max_actions = MAX_ACTIONS

    def __init__(self, store: Store) -> None:
        self._store = store
        self._actions: list[tuple[Table, _Builder]] = []
        self._done = False

    def _table(self, table: Table | str) -> Table:
        if isinstance(table, Table):
            return table
        if isinstance(table, str):
            return Table(self._store, table)
        raise ValidationError(f"expected a Table or a table name, got {type(table).__name__}")

    def _add(self, table: Table | str, build: _Builder) -> None:
        if self._done:
            raise ValidationError("this transaction has already been committed")
        if len(self._actions) >= self._max_actions:
            raise ValidationError(f"a transaction holds at most {self._max_actions} actions")
        self._actions.append((self._table(table), build))

    def put(
        self,
        table: Table | str,
        item: Mapping[str, Any],
        *,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_old_on_condition_failure: bool = False,
    ) -> None:
        """Put an item as part of the transaction."""
        t = self._table(table)
        self._add(
            t,
            lambda spec: t._put_op(
                spec, item, condition, names, values, "NONE", return_old_on_condition_failure
            ),
        )

    def update(
        self,
        table: Table | str,
        key: Mapping[str, Any],
        *,
        set: Mapping[str, Any] | None = None,
        remove: Iterable[str] | None = None,
        add: Mapping[str, Any] | None = None,
        delete: Mapping[str, Any] | None = None,
        expression: str | None = None,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_old_on_condition_failure: bool = False,
    ) -> None:
        """Update (or create) an item as part of the transaction."""
        t = self._table(table)
        self._add(
            t,
            lambda spec: t._update_op(
                spec,
                key,
                expression=expression,
                set=set,
                remove=remove,
                add=add,
                delete=delete,
                condition=condition,
                names=names,
                values=values,
                returns="NONE",
                old_on_failure=return_old_on_condition_failure,
            ),
        )

    def delete(
        self,
        table: Table | str,
        key: Mapping[str, Any],
        *,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_old_on_condition_failure: bool = False,
    ) -> None:
        """Delete an item as part of the transaction."""
        t = self._table(table)
        self._add(
            t,
            lambda spec: t._delete_op(
                spec, key, condition, names, values, "NONE", return_old_on_condition_failure
            ),
        )

    def condition_check(
        self,
        table: Table | str,
        key: Mapping[str, Any],
        condition: Condition | str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_old_on_condition_failure: bool = False,
    ) -> None:
        """Require a condition on an item that the transaction does not write."""
        t = self._table(table)

        def build(spec: TableSpec) -> WriteOp:
            k = t._key(spec, key)
            ctx = ExpressionContext(names, values)
            cond = compile_condition(condition, ctx)
            ctx.check_all_used()
            if cond is None:
                raise ValidationError("condition_check needs a condition")
            return CheckOp(spec, k, cond, return_old_on_condition_failure)

        self._add(t, build)

    async def commit(self) -> None:
        """Commit every action, or none (raises TransactionCanceled)."""
        if self._done:
            raise ValidationError("this transaction has already been committed")
        self._done = True
        if not self._actions:
            return
        store = self._store
        ops: list[WriteOp] = []
        specs: dict[str, TableSpec] = {}
        for table, build in self._actions:
            spec = specs.get(table.name)
            if spec is None:
                spec = specs[table.name] = await store.spec(table.name)
            ops.append(build(spec))
        seen = set()
        for op in ops:
            ident = (op.spec.table_id, op.k.pk, op.k.sk)
            if ident in seen:
                raise ValidationError(
                    "a transaction cannot include more than one action on the same item "
                    f"(table {op.spec.name!r}, key {op.k.key})"
                )
            seen.add(ident)
        for name, spec in specs.items():
            n = sum(1 for op in ops if op.spec.name == name)
            store.admit(spec, write=2.0 * n)
        cache = store.cache
        tokens = None if cache is None else cache.before_write(ops)
        results = await store.write(WriteJob(ops, transactional=True, origin=store.origin))
        if tokens is not None:
            assert cache is not None
            cache.wrote(ops, results, tokens)  # write-through, as single writes
        for op, result in zip(ops, results, strict=True):
            store.charge(op.spec, write=2.0 * result.units, indexes=_index_sum([result], 2.0))

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
        else:
            self._done = True  # the block failed: nothing is written
