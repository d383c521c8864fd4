"""Helpers for testing your own handlers — no Kafka, no services, real semantics.

The Apps these helpers build run on the embedded backends (``memory://`` storage and
a ``local://`` log in a temporary directory, under a namespace of their own), so the
records, retries, DLQ and checkpoints your handlers meet in a test are the ones they
meet in production: the same runtime, not a fake. They never open the store or the
log your real App is configured with.

- :func:`app`: an App for tests, to declare handlers on.
- :func:`isolated`: a copy of your real App, with the same handlers, on throwaway
  backends (``from shop.handlers import app`` never opens ``./shop.db`` through it).
- :func:`running`, :func:`invoke`, :func:`make_record`: run, call, feed them.

Both kinds of App follow the event loop: the first loop that uses one binds it; a
later loop (the next test, where each test has its own loop, as pytest-asyncio
gives by default) finds it on new, empty backends — a new ``memory://`` store, a new
temporary log and namespace, unless you passed your own ``log=`` / ``namespace=`` —
with the same handlers. So a module-level ``app = testing.app()`` (or
``testing.isolated(real_app)``) works in every test of the module, and no test sees
another's tables, records or dead letters.

Example:
    ```python
    import streamkit as sk
    from streamkit import testing

    app = testing.app()
    welcomed: list[str] = []

    @app.on_insert("Users")
    async def welcome(record: sk.ChangeRecord) -> None:
        welcomed.append(record.new_image["Email"])

    async def test_welcome() -> None:
        async with testing.running(app) as t:
            users = await app.create_table("Users", partition_key="UserID")
            await users.put({"UserID": "1", "Email": "a@example.com"})
            await t.drain()
        assert welcomed == ["a@example.com"]

    await test_welcome()
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from streamkit._app import App
from streamkit.exceptions import ConfigurationError
from streamkit.records import ChangeRecord, StreamView
from streamkit.records._record import changed_attributes
from streamkit.records._values import item_size, normalize_item
from streamkit.runtime._batch import Batch
from streamkit.runtime._dlq import DeadLetter
from streamkit.runtime._registry import HandlerSpec
from streamkit.runtime._worker import _bound_logger, call_handler
from streamkit.storage._effects import Effects

__all__ = ("Harness", "IsolatedApp", "app", "invoke", "isolated", "make_record", "running")

_temp_dirs: list[str] = []


def _temporary_log() -> str:
    path = tempfile.mkdtemp(prefix="streamkit-test-")
    _temp_dirs.append(path)
    return f"local://{path}/log"


class IsolatedApp(App):
    """An :class:`~streamkit.App` made by :func:`app` or :func:`isolated`: throwaway
    backends, created afresh for each event loop that uses it (see the module's
    docstring). Everything else is a plain App's."""

    def __init__(
        self,
        *,
        storage: str = "memory://",
        log: str | None = None,
        namespace: str | None = None,
        handlers: Iterable[HandlerSpec] = (),
        **kwargs: Any,
    ) -> None:
        self._sk_loop: asyncio.AbstractEventLoop | None = None
        self._sk_settings: dict[str, Any] = {
            "storage": storage,
            "log": log,
            "namespace": namespace,
            **kwargs,
        }
        App.__init__(self, **self._sk_backends())
        for spec in handlers:
            self._register(spec)

    def _sk_backends(self) -> dict[str, Any]:
        """App's arguments: the settings, with a new temporary log and namespace unless given."""
        settings = dict(self._sk_settings)
        if settings["log"] is None:
            settings["log"] = _temporary_log()
        if settings["namespace"] is None:
            settings["namespace"] = f"test{uuid.uuid4().hex[:10]}"
        return settings

    def _sk_follow_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here (import time, a worker thread): nothing to do
            return
        bound = self._sk_loop
        if bound is loop:
            return
        self._sk_loop = loop
        if bound is None:
            return
        # another event loop (the next test): what the App holds belongs to the old one
        # (locks, events, the store's and log's threads and futures). Start afresh, with
        # the same handlers.
        handlers = self._handlers
        App.__init__(self, **self._sk_backends())
        self._handlers = handlers

    def __getattribute__(self, name: str) -> Any:
        # every App method and property reaches its state through an attribute: look at
        # the running loop first (a C call when it is the bound one)
        if not name.startswith(("__", "_sk_")):
            object.__getattribute__(self, "_sk_follow_loop")()
        return object.__getattribute__(self, name)


def app(
    *,
    storage: str = "memory://",
    log: str | None = None,
    namespace: str | None = None,
    **kwargs: Any,
) -> IsolatedApp:
    """An App on the embedded backends, in a fresh temporary log, with short timeouts.

    Args:
        storage: ``memory://`` by default (gone when the App closes).
        log: a ``local://`` URL; default: a new temporary directory (for each event loop).
        namespace: default: a unique one (for each event loop), so tests never share
            topics, consumer groups or DLQs.
        kwargs: passed to :class:`~streamkit.App` (``session_timeout`` defaults to 2 s,
            ``shutdown_timeout`` to 5 s and ``ttl_interval`` to 0.2 s here).
    """
    kwargs.setdefault("session_timeout", 2.0)
    kwargs.setdefault("shutdown_timeout", 5.0)
    kwargs.setdefault("ttl_interval", 0.2)
    return IsolatedApp(storage=storage, log=log, namespace=namespace, **kwargs)


def isolated(
    real: App,
    *,
    storage: str = "memory://",
    log: str | None = None,
    namespace: str | None = None,
    **kwargs: Any,
) -> IsolatedApp:
    """A copy of ``real`` with the same handlers on throwaway backends, to test them.

    ``real``'s store and log are never opened: its handlers (with every option) and
    its region, topic and DLQ settings are copied; storage is ``memory://``, the log a
    new temporary ``local://`` directory and the namespace a unique one (each renewed
    for every event loop, as :func:`app`'s). Handlers added to ``real`` later are not
    seen by the copy.

    Example:
        ```python
        from shop.handlers import app as shop_app   # sk.App(storage="sqlite:///./shop.db")
        from streamkit import testing

        app = testing.isolated(shop_app)            # ./shop.db is never opened
        ```

    Args:
        real: the App whose handlers to test.
        storage, log, namespace, kwargs: as for :func:`app`.
    """
    if not isinstance(real, App):
        raise ConfigurationError(f"testing.isolated() takes an sk.App, got {type(real).__name__}")
    kwargs.setdefault("region", real.region)
    kwargs.setdefault("topic_partitions", real.topic_config.partitions)
    kwargs.setdefault("topic_retention_ms", real.topic_config.retention_ms)
    kwargs.setdefault("dlq_retention_ms", real.runtime_options.dlq_retention_ms)
    kwargs.setdefault("session_timeout", 2.0)
    kwargs.setdefault("shutdown_timeout", 5.0)
    kwargs.setdefault("ttl_interval", 0.2)
    return IsolatedApp(
        storage=storage,
        log=log,
        namespace=namespace,
        handlers=real.handlers.values(),
        **kwargs,
    )


def _check_isolated(app: App, helper: str) -> None:
    """Refuse an App not made here: a helper must never open a real store or log."""
    if not isinstance(app, IsolatedApp):
        raise ConfigurationError(
            f"testing.{helper}() runs only an App made by streamkit.testing, so that a "
            f"test never opens a real store or log, and {app!r} is not one: pass "
            "testing.isolated(app) (the same handlers on memory:// storage and a "
            "temporary local:// log) or declare the handlers on testing.app()"
        )


class Harness:
    """What :func:`running` yields: wait for handlers, look at their DLQs."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def drain(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a deadline
        """Wait until every change so far is published and processed by every handler."""
        await self.app.drain(timeout=timeout)

    async def dead_letters(self, handler: str) -> list[DeadLetter]:
        """The handler's pending dead letters, oldest first."""
        return [letter async for letter in self.app.dead_letters(handler)]

    async def redrive(self, handler: str) -> dict[str, int]:
        """Send the handler's dead letters back through it."""
        return await self.app.redrive(handler)


@contextlib.asynccontextmanager
async def running(app: App, *, handlers: Sequence[str] | None = None) -> AsyncIterator[Harness]:
    """Run the app's relay, TTL sweeper and handlers for a block; close the app after.

    Raises:
        ConfigurationError: ``app`` was not made by :func:`app` or :func:`isolated`.
    """
    _check_isolated(app, "running")
    try:
        async with app.running(handlers=handlers):
            yield Harness(app)
    finally:
        await app.close()


def make_record(
    event_name: str,
    keys: Mapping[str, Any],
    *,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    table: str = "Table",
    sequence_number: int = 1,
    created_at: datetime | None = None,
) -> ChangeRecord:
    """A change record to hand to a handler function directly in a unit test.

    ``changed`` is computed from ``old`` and ``new`` for a MODIFY.

    Example:
        ```python
        from streamkit import testing

        r = testing.make_record("MODIFY", {"UserID": "1"},
                                old={"UserID": "1", "Status": "new"},
                                new={"UserID": "1", "Status": "active"})
        assert r.changed == ("Status",)
        ```
    """
    new_n = None if new is None else normalize_item(dict(new))
    old_n = None if old is None else normalize_item(dict(old))
    changed = (
        changed_attributes(old_n, new_n)
        if event_name == "MODIFY" and old_n is not None and new_n is not None
        else None
    )
    size = (
        item_size(dict(keys))
        + (item_size(new_n) if new_n else 0)
        + (item_size(old_n) if old_n else 0)
    )
    return ChangeRecord(
        event_id=uuid.uuid4().hex,
        event_name=event_name,  # type: ignore[arg-type]
        table=table,
        keys=dict(keys),
        new_image=new_n,
        old_image=old_n,
        changed=changed,
        sequence_number=sequence_number,
        created_at=created_at or datetime.now(UTC),
        size_bytes=size,
        view_type=StreamView.NEW_AND_OLD_IMAGES,
    )


async def invoke(app: App, handler: str, *records: ChangeRecord) -> Any:
    """Call a registered handler once, as the runtime would, and commit its context writes.

    A batch handler gets all ``records`` as one ``Batch``; a per-record handler is called
    once per record. Returns what the (last) call returned; exceptions propagate.

    Raises:
        ConfigurationError: ``app`` was not made by :func:`app` or :func:`isolated`.
    """
    _check_isolated(app, "invoke")
    spec = app._select([handler])[0]
    await app.open()
    log = _bound_logger(spec)
    calls: list[Any] = (
        [Batch(records, table=spec.table, handler=spec.name)] if spec.batched else list(records)
    )
    result: Any = None
    for arg in calls:
        effects = Effects(app.store)
        result = await call_handler(spec, arg, effects, partition=0, attempt=1, log=log)
        if len(effects):
            await effects.commit_with([])
    return result


def _cleanup() -> None:  # pragma: no cover - process exit
    for path in _temp_dirs:
        shutil.rmtree(path, ignore_errors=True)


import atexit  # noqa: E402 - registered after the function it calls

atexit.register(_cleanup)
