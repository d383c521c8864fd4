"""Capacity modes, DynamoDB's capacity-unit arithmetic, and token buckets.

* 1 write unit = one write per second of an item up to 1 KB (rounded up per KB,
  the larger of the old and new item); transactional writes cost double.
* 1 read unit = one strongly consistent read per second of up to 4 KB;
  eventually consistent reads cost half; transactional reads double. A query
  or scan is charged on the total size of the items it read, rounded up once.
* Provisioned tables keep up to 300 s of unused capacity as burst. A call that
  finds too few units raises ThroughputExceeded with ``retry_after`` and does
  nothing; a call that was let in is charged what it really used, which may
  leave the bucket in debt (as DynamoDB does), so later calls wait.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamkit.exceptions import ThroughputExceeded, ValidationError

if TYPE_CHECKING:
    from streamkit.records._values import Item
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._keys import KeySchema

__all__ = (
    "BURST_SECONDS",
    "Capacity",
    "ConsumedCapacity",
    "OnDemand",
    "Provisioned",
    "TokenBucket",
    "index_entry_unchanged",
    "measure",
    "read_units",
    "record_collection",
    "record_consumed",
    "write_units",
)

BURST_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class OnDemand:
    """Pay-per-request capacity: never throttled (units are still counted)."""

    mode: str = "ON_DEMAND"


@dataclass(frozen=True, slots=True)
class Provisioned:
    """Provisioned capacity in read and write units per second."""

    read: float = 5
    write: float = 5
    mode: str = "PROVISIONED"

    def __post_init__(self) -> None:
        for name in ("read", "write"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValidationError(
                    f"Provisioned({name}=...) must be a positive number, got {v!r}"
                )


Capacity = OnDemand | Provisioned


def write_units(size: int) -> float:
    """Write units for an item of ``size`` bytes (at least 1)."""
    return float(-(-size // 1024) or 1)  # ceil(size / 1024) in integers


def read_units(size: int, *, consistent: bool) -> float:
    """Read units for ``size`` bytes read (at least one 4 KB block)."""
    units = float(max(1, math.ceil(size / 4096)))
    return units if consistent else units / 2


def index_entry_unchanged(
    ix: IndexSpec,
    table_key: KeySchema,
    old: Item | None,
    new: Item | None,
    old_at: tuple[bytes, bytes] | None,
    new_entry: tuple[bytes, bytes, bytes, int],
) -> bool:
    """Whether a write leaves an item's entry in a projecting index as it was: same place,
    same projected attributes (DynamoDB then writes nothing to the index, and charges it
    nothing)."""
    if old is None or new is None or old_at != (new_entry[0], new_entry[1]):
        return False
    return bool(ix.project(table_key, old) == ix.project(table_key, new))


class TokenBucket:
    """Units per second with up to BURST_SECONDS of unused units kept."""

    __slots__ = ("_last", "_tokens", "rate", "table")

    def __init__(self, rate: float, table: str) -> None:
        self.rate = float(rate)
        self.table = table
        self._tokens = self.rate  # a new table starts with one second of capacity
        self._last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.rate * BURST_SECONDS, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def admit(self, units: float, what: str) -> None:
        """Let a call in that needs ``units``, or raise ThroughputExceeded."""
        self._refill()
        if self._tokens >= units:
            return
        retry_after = (units - self._tokens) / self.rate
        raise ThroughputExceeded(
            f"{what} capacity of table {self.table!r} exceeded "
            f"({self.rate:g} units/s provisioned); retry in {retry_after:.3f}s",
            table=self.table,
            retry_after=retry_after,
        )

    def charge(self, units: float) -> None:
        """Take what a call actually consumed (the bucket may go into debt)."""
        self._refill()
        self._tokens -= units

    @property
    def available(self) -> float:
        """Units available now."""
        self._refill()
        return self._tokens


@dataclass(slots=True)
class ConsumedCapacity:
    """Units consumed by the calls made inside ``measure()``, in total and per table.

    Totals and ``by_table`` include the units a table's indexes consumed (as DynamoDB's
    ``CapacityUnits``); ``by_index`` has them per ``(table, index)``.
    """

    read_units: float = 0.0
    write_units: float = 0.0
    by_table: dict[str, tuple[float, float]] = field(default_factory=dict)
    by_index: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # tables with local indexes: (table, partition key bytes) -> (partition key, size in
    # bytes of its item collection after the last write to it)
    collections: dict[tuple[str, bytes], tuple[dict[str, object], int]] = field(
        default_factory=dict
    )

    @property
    def total(self) -> float:
        """Read plus write units."""
        return self.read_units + self.write_units

    def add(self, table: str, read: float, write: float) -> None:
        """Account one call's units."""
        self.read_units += read
        self.write_units += write
        r, w = self.by_table.get(table, (0.0, 0.0))
        self.by_table[table] = (r + read, w + write)

    def add_index(self, table: str, index: str, read: float, write: float) -> None:
        """Account the units one call consumed on one index (also in the table's total)."""
        self.add(table, read, write)
        r, w = self.by_index.get((table, index), (0.0, 0.0))
        self.by_index[(table, index)] = (r + read, w + write)


_meters: ContextVar[tuple[ConsumedCapacity, ...]] = ContextVar("streamkit_meters", default=())
_unmetered: ContextVar[bool] = ContextVar("streamkit_unmetered", default=False)


def unmetered() -> bool:
    """Whether the current task's calls use no provisioned capacity (see :func:`free`)."""
    return _unmetered.get()


def free() -> None:
    """From now on, the current task's calls neither wait for nor take provisioned
    capacity (DynamoDB's import from S3 uses none). Call it at the top of a task of its
    own: a context variable, it ends with the task."""
    _unmetered.set(True)


class _Measure:
    """``with measure() as used``: a meter open for the block (a class, not a generator:
    every endpoint request and PartiQL statement opens one)."""

    __slots__ = ("_token",)

    def __enter__(self) -> ConsumedCapacity:
        meter = ConsumedCapacity()
        self._token = _meters.set((*_meters.get(), meter))
        return meter

    def __exit__(self, *exc: object) -> None:
        _meters.reset(self._token)


def measure() -> contextlib.AbstractContextManager[ConsumedCapacity]:
    """Count the capacity units consumed by the calls made in this block (this task only).

    Example:
        ```python
        with sk.measure_capacity() as used:
            await users.put({"UserID": "1", "Name": "Ann"})
        print(used.write_units)  # 1.0
        ```
    """
    return _Measure()


def record_collection(table: str, pk: bytes, key: dict[str, object], size: int) -> None:
    """Note the size of an item collection after a write, for every meter open in the
    current context (``ReturnItemCollectionMetrics``)."""
    for m in _meters.get():
        m.collections[(table, pk)] = (key, size)


def record_consumed(
    table: str, read: float, write: float, indexes: Mapping[str, float] | None = None
) -> None:
    """Add a call's units (and the write units of its indexes) to every meter open in
    the current context."""
    for m in _meters.get():
        m.add(table, read, write)
        if indexes:
            for name, units in indexes.items():
                m.add_index(table, name, 0.0, units)
