"""Helpers for testing your own handlers — no Kafka, no services, real semantics.

The App these helpers build runs on the embedded backends (``memory://`` storage and
a ``local://`` log in a temporary directory), so the records, retries, DLQ and
checkpoints your handlers meet in a test are the ones they meet in production: the
same runtime, not a fake.

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

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from streamkit._app import App
from streamkit.records import ChangeRecord, StreamView
from streamkit.records._record import changed_attributes
from streamkit.records._values import item_size, normalize_item
from streamkit.runtime._batch import Batch
from streamkit.runtime._dlq import DeadLetter
from streamkit.runtime._worker import _bound_logger, call_handler
from streamkit.storage._effects import Effects

__all__ = ("Harness", "app", "invoke", "make_record", "running")

_temp_dirs: list[str] = []


def app(
    *,
    storage: str = "memory://",
    log: str | None = None,
    namespace: str | None = None,
    **kwargs: Any,
) -> App:
    """An App on the embedded backends, in a fresh temporary log, with short timeouts.

    Args:
        storage: ``memory://`` by default (gone when the App closes).
        log: a ``local://`` URL; default: a new temporary directory.
        namespace: default: a unique one, so tests never share topics or groups.
        kwargs: passed to :class:`~streamkit.App` (``session_timeout`` defaults to 2 s
            and ``shutdown_timeout`` to 5 s here).
    """
    if log is None:
        path = tempfile.mkdtemp(prefix="streamkit-test-")
        _temp_dirs.append(path)
        log = f"local://{path}/log?poll_interval=0.02"
    kwargs.setdefault("session_timeout", 2.0)
    kwargs.setdefault("shutdown_timeout", 5.0)
    kwargs.setdefault("ttl_interval", 0.2)
    return App(
        storage=storage,
        log=log,
        namespace=namespace or f"test{uuid.uuid4().hex[:10]}",
        **kwargs,
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
    """Run the app's relay, TTL sweeper and handlers for a block; close the app after."""
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
    """
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
