"""What a handler receives and returns: ``Batch``, ``BatchResult`` and ``Context``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from streamkit.exceptions import ValidationError
from streamkit.records import ChangeRecord

if TYPE_CHECKING:
    from streamkit.storage._conditions import Condition
    from streamkit.storage._effects import Effects
    from streamkit.storage._table import Table

__all__ = ("Batch", "BatchResult", "Context", "Window")


@dataclass(frozen=True, slots=True)
class Window:
    """A tumbling window: records created in ``[start, end)``."""

    start: datetime
    end: datetime


class Batch(Sequence[ChangeRecord]):
    """The records of one invocation of a batch handler, in log order per partition.

    A ``Batch`` is a sequence: ``len(batch)``, ``batch[0]``, ``for record in batch``.

    Attributes:
        records: the change records (a tuple).
        table: the table they come from.
        handler: the handler's name.
        partition: the log partition they were read from.
        attempt: 1 for the first invocation with these records, 2 for the first retry...
        window: for a tumbling-window handler, the window the records belong to.
        state: for a tumbling-window handler, what the previous invocation of this
            window returned as ``BatchResult(state=...)`` (``{}`` at first).
        is_final_invoke: for a tumbling-window handler, True for the invocation that
            closes the window (it may have no records); return the aggregate then.
    """

    __slots__ = (
        "attempt",
        "handler",
        "is_final_invoke",
        "partition",
        "records",
        "state",
        "table",
        "window",
    )

    def __init__(
        self,
        records: Sequence[ChangeRecord],
        *,
        table: str = "",
        handler: str = "",
        partition: int = 0,
        attempt: int = 1,
        window: Window | None = None,
        state: Mapping[str, Any] | None = None,
        is_final_invoke: bool = False,
    ) -> None:
        self.records: tuple[ChangeRecord, ...] = tuple(records)
        self.table = table
        self.handler = handler
        self.partition = partition
        self.attempt = attempt
        self.window = window
        self.state: dict[str, Any] = dict(state or {})
        self.is_final_invoke = is_final_invoke

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> ChangeRecord: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ChangeRecord]: ...
    def __getitem__(self, index: int | slice) -> ChangeRecord | Sequence[ChangeRecord]:
        return self.records[index]

    def __iter__(self) -> Iterator[ChangeRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return (
            f"Batch({len(self.records)} records, table={self.table!r}, "
            f"handler={self.handler!r}, partition={self.partition}, attempt={self.attempt})"
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch handler may return (Lambda's ``batchItemFailures`` and window state).

    Args:
        failed: the records that failed — records themselves, their
            ``sequence_number`` or ``event_id``. The checkpoint stops at the first of
            them (in batch order); it and every record after it are retried.
        state: for a tumbling-window handler, the state handed to the next invocation
            of the same window (a JSON-like mapping).

    Example:
        ```python
        import streamkit as sk

        def handle(batch: sk.Batch) -> sk.BatchResult:
            bad = [r for r in batch if r.new_image is None]
            return sk.BatchResult(failed=bad)
        ```
    """

    failed: Sequence[ChangeRecord | int | str] = ()
    state: Mapping[str, Any] | None = field(default=None)

    def first_failure(self, records: Sequence[ChangeRecord]) -> int | None:
        """The index in ``records`` of the first failed record, or None.

        Raises:
            ValidationError: ``failed`` names a record that is not in ``records``
                (treated by the runtime as a failure of the whole batch).
        """
        if not self.failed:
            return None
        wanted_seq: set[int] = set()
        wanted_id: set[str] = set()
        for f in self.failed:
            if isinstance(f, ChangeRecord):
                wanted_seq.add(f.sequence_number)
            elif isinstance(f, int) and not isinstance(f, bool):
                wanted_seq.add(f)
            elif isinstance(f, str):
                wanted_id.add(f)
            else:
                raise ValidationError(
                    "BatchResult.failed takes ChangeRecords, sequence numbers or event ids, "
                    f"got {type(f).__name__}"
                )
        found = 0
        first: int | None = None
        for i, r in enumerate(records):
            if r.sequence_number in wanted_seq or r.event_id in wanted_id:
                found += 1
                if first is None:
                    first = i
        if found < len(wanted_seq) + len(wanted_id) and first is None:
            raise ValidationError("BatchResult.failed names records that are not in the batch")
        return first


class Context:
    """What a handler taking a second parameter receives.

    Writes made through it (``ctx.put``, ``ctx.update``, ``ctx.delete``,
    ``ctx.condition_check``) are buffered and commit in one storage transaction with
    the handler's checkpoint when the invocation succeeds, so a record delivered twice
    (after a crash or a rebalance) never applies them twice. They are discarded if the
    invocation fails. If a buffered condition fails at commit, the invocation counts as
    failed and is retried.

    Attributes:
        handler: the handler's name.
        table: the source table.
        partition: the log partition of the records.
        attempt: the invocation's attempt number (1 = first).
        log: a structlog logger bound to table, handler, partition and the sequence
            number(s) of the record(s).
    """

    __slots__ = ("_effects", "attempt", "handler", "log", "partition", "table")

    def __init__(
        self,
        effects: Effects,
        *,
        handler: str,
        table: str,
        partition: int,
        attempt: int,
        log: Any,
    ) -> None:
        self._effects = effects
        self.handler = handler
        self.table = table
        self.partition = partition
        self.attempt = attempt
        self.log = log

    def get_table(self, name: str) -> Table:
        """A handle to any table of the app, for reads (``await ctx.get_table("Users").get(...)``);
        write through ``ctx.put`` & co. to have the writes committed exactly once."""
        from streamkit.storage._table import Table as _Table

        return _Table(self._effects._store, name)

    def put(
        self,
        table: Table | str,
        item: Mapping[str, Any],
        *,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Put an item when the invocation commits."""
        self._effects.put(table, item, condition=condition, names=names, values=values)

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
    ) -> None:
        """Update (or create) an item when the invocation commits (as ``Table.update``)."""
        self._effects.update(
            table,
            key,
            set=set,
            remove=remove,
            add=add,
            delete=delete,
            expression=expression,
            condition=condition,
            names=names,
            values=values,
        )

    def delete(
        self,
        table: Table | str,
        key: Mapping[str, Any],
        *,
        condition: Condition | str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Delete an item when the invocation commits."""
        self._effects.delete(table, key, condition=condition, names=names, values=values)

    def condition_check(
        self,
        table: Table | str,
        key: Mapping[str, Any],
        condition: Condition | str,
        *,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Require a condition at commit time (the invocation fails if it does not hold)."""
        self._effects.condition_check(table, key, condition, names=names, values=values)

    @property
    def pending_writes(self) -> int:
        """How many writes are buffered for this invocation's commit."""
        return len(self._effects)
