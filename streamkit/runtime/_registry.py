"""Declaring handlers: the decorators of ``App`` and ``Router`` and what they record.

Every option is checked when the decorator runs, so a mistake (a malformed filter,
``batch_size=0``, a window with ``parallelism=4``) fails at import time with a clear
message, not hours later in a worker.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from streamkit.exceptions import ValidationError
from streamkit.runtime._patterns import RecordFilter, compile_filter

__all__ = ("EVENTS", "HandlerSpec", "Registrar", "Router", "Start")

EVENTS = frozenset({"INSERT", "MODIFY", "REMOVE"})
Start = Literal["trim_horizon", "latest", "snapshot"] | datetime
OnFailure = Literal["dlq", "block", "drop"]
Origin = Literal["local", "any"]
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")

F = TypeVar("F", bound=Callable[..., Any])

MAX_BATCH_SIZE = 10_000
MAX_BATCH_WINDOW = 300.0
MAX_PARALLELISM = 100
MAX_WINDOW = 86_400.0


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and its event-source-mapping settings (see ``App.on_change``)."""

    name: str
    table: str
    fn: Callable[..., Any]
    events: frozenset[str]
    changed: frozenset[str] | None = None
    batch_size: int | None = None
    batch_window: float = 0.0
    start: Start = "trim_horizon"
    filter: RecordFilter | None = None
    filter_spec: Any = None
    retries: int = 3
    retry_delay: float = 0.1
    max_retry_delay: float = 30.0
    bisect_on_error: bool = False
    max_record_age: float | None = None
    on_failure: OnFailure = "dlq"
    parallelism: int = 1
    window: float | None = None
    timeout: float | None = None
    is_async: bool = True
    takes_context: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    # global tables: "local" takes only the records of writes made in the App's region
    origin: Origin = "any"
    # internal (the replicator): only records whose origin is this region
    origin_region: str | None = None

    @property
    def batched(self) -> bool:
        """True when the handler takes a ``Batch`` (``batch_size`` or ``window`` given)."""
        return self.batch_size is not None or self.window is not None

    def describe(self) -> dict[str, Any]:
        """The settings as plain data (``streamkit status``, logs)."""
        return {
            "handler": self.name,
            "table": self.table,
            "events": sorted(self.events),
            "changed": None if self.changed is None else sorted(self.changed),
            "batch_size": self.batch_size,
            "batch_window": self.batch_window,
            "start": self.start.isoformat() if isinstance(self.start, datetime) else self.start,
            "filter": self.filter_spec,
            "retries": self.retries,
            "bisect_on_error": self.bisect_on_error,
            "max_record_age": self.max_record_age,
            "on_failure": self.on_failure,
            "parallelism": self.parallelism,
            "window": self.window,
            "timeout": self.timeout,
            "origin": self.origin,
        }


def _positive_number(
    value: Any, what: str, *, upper: float | None = None, zero: bool = False
) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and (value < 0 or (value == 0 and not zero) or (upper is not None and value > upper)):
        ok = False
    if not ok:
        bound = f" (at most {upper:g})" if upper is not None else ""
        kind = "a non-negative" if zero else "a positive"
        raise ValidationError(f"{what}={value!r} must be {kind} number of seconds{bound}")
    return float(value)


def _int_in(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what}={value!r} must be an integer from {low} to {high}")
    return value


def _takes_context(fn: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return len(positional) != 1
    if not 1 <= len(positional) <= 2:
        raise ValidationError(
            f"handler {name!r} must take the record (or batch) and optionally a context: "
            f"it takes {len(positional)} positional parameters"
        )
    return len(positional) == 2


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an instance with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def build_spec(
    fn: Callable[..., Any],
    table: str,
    events: Iterable[str],
    *,
    name: str | None = None,
    changed: Sequence[str] | None = None,
    batch_size: int | None = None,
    batch_window: float | None = None,
    start: Start = "trim_horizon",
    filter: Any = None,
    retries: int = 3,
    retry_delay: float = 0.1,
    max_retry_delay: float = 30.0,
    bisect_on_error: bool = False,
    max_record_age: float | None = None,
    on_failure: OnFailure = "dlq",
    parallelism: int = 1,
    window: float | None = None,
    timeout: float | None = None,
    origin: Origin = "any",
) -> HandlerSpec:
    """Check every option and build the spec (raises ValidationError)."""
    if origin not in ("local", "any"):
        raise ValidationError(
            f"origin={origin!r} must be 'local' (only writes made in this App's region) "
            "or 'any' (every change applied here, replicated ones too)"
        )
    if not callable(fn):
        raise ValidationError(f"a handler must be callable, got {type(fn).__name__}")
    hname = name if name is not None else getattr(fn, "__name__", None)
    if not isinstance(hname, str) or not _NAME.match(hname):
        raise ValidationError(
            f"handler name {hname!r} must be 1-100 characters of A-Z a-z 0-9 _ - "
            "(it names a consumer group and a DLQ topic); pass name= to choose one"
        )
    if not isinstance(table, str) or not _TABLE.match(table):
        raise ValidationError(f"table {table!r} is not a valid table name")
    evs = frozenset(events)
    if not evs or not evs <= EVENTS:
        raise ValidationError(
            f"events={sorted(evs)!r} must be a non-empty subset of {sorted(EVENTS)}"
        )
    chg: frozenset[str] | None = None
    if changed is not None:
        if isinstance(changed, str) or not all(isinstance(c, str) and c for c in changed):
            raise ValidationError("changed= takes a list of attribute names")
        if not changed:
            raise ValidationError("changed= must name at least one attribute")
        chg = frozenset(changed)
    if batch_size is not None:
        batch_size = _int_in(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    bw = 0.0
    if batch_window is not None:
        bw = _positive_number(batch_window, "batch_window", upper=MAX_BATCH_WINDOW, zero=True)
        if batch_size is None and window is None:
            raise ValidationError(
                "batch_window needs batch_size (a per-record handler never waits)"
            )
    if not (start in ("trim_horizon", "latest", "snapshot") or isinstance(start, datetime)):
        raise ValidationError(
            f"start={start!r} must be 'trim_horizon', 'latest', 'snapshot' or a datetime"
        )
    if isinstance(start, datetime) and start.tzinfo is None:
        raise ValidationError("start= datetimes must be timezone-aware (e.g. UTC)")
    compiled = compile_filter(filter)
    retries = _int_in(retries, "retries", 0, 10_000)
    retry_delay = _positive_number(retry_delay, "retry_delay", upper=3600, zero=True)
    max_retry_delay = _positive_number(max_retry_delay, "max_retry_delay", upper=3600, zero=True)
    if not isinstance(bisect_on_error, bool):
        raise ValidationError("bisect_on_error must be True or False")
    if max_record_age is not None:
        max_record_age = _positive_number(max_record_age, "max_record_age")
    if on_failure not in ("dlq", "block", "drop"):
        raise ValidationError(f"on_failure={on_failure!r} must be 'dlq', 'block' or 'drop'")
    parallelism = _int_in(parallelism, "parallelism", 1, MAX_PARALLELISM)
    if window is not None:
        window = _positive_number(window, "window", upper=MAX_WINDOW)
        if parallelism != 1:
            raise ValidationError(
                "window= (tumbling windows) needs parallelism=1: a window's state is per partition"
            )
    if timeout is not None:
        timeout = _positive_number(timeout, "timeout")
    return HandlerSpec(
        name=hname,
        table=table,
        fn=fn,
        events=evs,
        changed=chg,
        batch_size=batch_size,
        batch_window=bw,
        start=start,
        filter=compiled,
        filter_spec=filter,
        retries=retries,
        retry_delay=retry_delay,
        max_retry_delay=max_retry_delay,
        bisect_on_error=bisect_on_error,
        max_record_age=max_record_age,
        on_failure=on_failure,
        parallelism=parallelism,
        window=window,
        timeout=timeout,
        is_async=_is_async(fn),
        takes_context=_takes_context(fn, hname),
        origin=origin,
    )


class HandlerOptions(TypedDict, total=False):
    """The options every handler decorator takes (see :meth:`Registrar.on_change`)."""

    name: str | None
    batch_size: int | None
    batch_window: float | None
    start: Start
    filter: Any
    retries: int
    retry_delay: float
    max_retry_delay: float
    bisect_on_error: bool
    max_record_age: float | None
    on_failure: OnFailure
    parallelism: int
    window: float | None
    timeout: float | None
    origin: Origin


class Registrar:
    """The handler decorators, shared by :class:`~streamkit.App` and :class:`Router`."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerSpec] = {}

    @property
    def handlers(self) -> dict[str, HandlerSpec]:
        """The registered handlers by name (a copy)."""
        return dict(self._handlers)

    def _register(self, spec: HandlerSpec) -> None:
        if spec.name in self._handlers:
            other = self._handlers[spec.name]
            raise ValidationError(
                f"a handler named {spec.name!r} is already registered (on {other.table!r}); "
                "handler names name consumer groups and DLQs: pass name= to tell them apart"
            )
        self._handlers[spec.name] = spec

    def _decorator(
        self, table: str, events: Iterable[str], options: dict[str, Any], *, method: str
    ) -> Callable[[F], F]:
        if not isinstance(table, str):
            owner = type(self).__name__.lower()
            if callable(table):
                # `@app.on_insert` without the call: the function arrived as the table
                raise ValidationError(
                    f"@{owner}.{method} needs the table's name: use "
                    f'@{owner}.{method}("Table") (got the function '
                    f"{getattr(table, '__name__', table)!r} instead)"
                )
            raise ValidationError(
                f"{method}() takes the table's name first, as a string: "
                f'@{owner}.{method}("Table"), got {type(table).__name__}'
            )

        def register(fn: F) -> F:
            self._register(build_spec(fn, table, events, **options))
            return fn

        return register

    def on_insert(self, table: str, **options: Unpack[HandlerOptions]) -> Callable[[F], F]:
        """Run the decorated function on every INSERT of ``table`` (options: :meth:`on_change`)."""
        return self._decorator(table, {"INSERT"}, dict(options), method="on_insert")

    def on_modify(
        self,
        table: str,
        *,
        changed: Sequence[str] | None = None,
        **options: Unpack[HandlerOptions],
    ) -> Callable[[F], F]:
        """Run the decorated function on every MODIFY of ``table``.

        ``changed=["Status"]`` runs it only when one of those top-level attributes changed;
        the other options are :meth:`on_change`'s.
        """
        return self._decorator(
            table, {"MODIFY"}, {**options, "changed": changed}, method="on_modify"
        )

    def on_remove(self, table: str, **options: Unpack[HandlerOptions]) -> Callable[[F], F]:
        """Run the decorated function on every REMOVE of ``table`` (TTL deletions too)."""
        return self._decorator(table, {"REMOVE"}, dict(options), method="on_remove")

    def on_change(
        self,
        table: str,
        *,
        events: Iterable[str] = EVENTS,
        changed: Sequence[str] | None = None,
        **options: Unpack[HandlerOptions],
    ) -> Callable[[F], F]:
        """Run the decorated function on ``table``'s change records.

        The function takes one ``ChangeRecord`` — or a ``Batch`` when ``batch_size`` or
        ``window`` is given, and may then return a ``BatchResult`` — and optionally a
        second parameter, the ``Context``, whose table writes commit exactly once.
        ``async def`` handlers run on the event loop, plain ``def`` ones in a worker
        thread. Each handler is its own consumer group, with its own checkpoint.

        Args:
            events: which of "INSERT", "MODIFY", "REMOVE" to receive (all by default).
            changed: for MODIFY, only when one of these attributes changed.
            name: the handler's name (default: the function's); names its consumer group
                ``{namespace}.{table}.{name}`` and DLQ topic ``{namespace}.{table}.dlq.{name}``.
            batch_size: records per invocation, up to 10,000 (Lambda's BatchSize).
            batch_window: seconds to wait to fill a batch, up to 300
                (MaximumBatchingWindowInSeconds).
            start: "trim_horizon" (oldest kept record; the default), "latest", a datetime,
                or "snapshot" (every existing item first, as SNAPSHOT records). Used only
                when the handler has no checkpoint yet.
            filter: EventBridge-style pattern(s) on the record (FilterCriteria); records
                matching none are skipped and count as processed.
            retries: retries after the first failed attempt (MaximumRetryAttempts; 3).
            retry_delay: the first retry's delay in seconds (0.1); doubled per retry, with
                full jitter, up to ``max_retry_delay`` (30).
            bisect_on_error: split a failing batch in halves to isolate the failing
                record (BisectBatchOnFunctionError).
            max_record_age: records older than this many seconds are not processed but
                go to ``on_failure`` (MaximumRecordAgeInSeconds).
            on_failure: "dlq" (default: the records and the error go to the handler's
                DLQ topic and the partition moves on), "block" (retry until success or
                ``max_record_age``: the partition waits, as Lambda does by default) or
                "drop" (log and move on).
            parallelism: batches of one partition in flight at once; one item's records
                stay in order (ParallelizationFactor).
            window: tumbling window length in seconds (TumblingWindowInSeconds).
            timeout: seconds an invocation may take before it counts as failed.
            origin: "any" (default, as DynamoDB: every change applied in this region,
                including those a global table replicated from another) or "local"
                (only writes made in this App's region: ``record.origin_region`` is
                ``app.region``).
        """
        if isinstance(events, str):
            events = {events}
        return self._decorator(table, events, {**options, "changed": changed}, method="on_change")

    def include_router(self, router: Router) -> None:
        """Register every handler of ``router`` here (names must stay unique)."""
        for spec in router._handlers.values():
            self._register(spec)


class Router(Registrar):
    """Handlers declared apart from the ``App`` (in another module), included later.

    Example:
        ```python
        import streamkit as sk

        router = sk.Router()

        @router.on_insert("Users")
        async def greet(record: sk.ChangeRecord) -> None:
            print("hello", record.keys["UserID"])

        app = sk.App(storage="memory://", log="local:///tmp/streamkit-router-example")
        app.include_router(router)
        ```
    """


def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a plain ``def`` handler in the default thread pool."""
    return asyncio.to_thread(fn, *args)
