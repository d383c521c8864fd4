"""Handler declarations that mypy --strict checks: the decorators keep each function's type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, assert_type

import streamkit as sk
from streamkit import testing

app = sk.App(storage="memory://")
router = sk.Router()


@app.on_insert("Users")
async def welcome(record: sk.ChangeRecord) -> None:
    _ = record.new_image


@app.on_modify("Users", changed=["Status"], retries=5, on_failure="block")
def status_changed(record: sk.ChangeRecord) -> int:
    return record.sequence_number


@router.on_change("Orders", events={"INSERT"}, batch_size=100, batch_window=0.2, parallelism=4)
async def big_orders(batch: sk.Batch, ctx: sk.Context) -> sk.BatchResult | None:
    for record in batch:
        ctx.update("Totals", {"UserID": record.keys["UserID"]}, add={"n": 1})
    return sk.BatchResult(failed=[batch[0]]) if len(batch) > 1 else None


@app.on_remove("Users", window=60, batch_size=10)
async def removed_per_minute(batch: sk.Batch) -> sk.BatchResult:
    return sk.BatchResult(state={"n": batch.state.get("n", 0) + len(batch)})


app.include_router(router)


def decorated_functions_keep_their_types() -> None:
    # never called: mypy checks it. Were the decorators to erase the signatures (to Any),
    # the ignores below would be unused, which --strict reports as an error.
    f1: Callable[[sk.ChangeRecord], Coroutine[Any, Any, None]] = welcome
    f2: Callable[[sk.ChangeRecord], int] = status_changed
    f3: Callable[[sk.Batch, sk.Context], Coroutine[Any, Any, sk.BatchResult | None]] = big_orders
    _ = (f1, f2, f3)
    status_changed("not a record")  # type: ignore[arg-type]
    n: str = status_changed(testing.make_record("INSERT", {"k": "1"}))  # type: ignore[assignment]
    _ = n
    _ = big_orders(sk.Batch([]))  # type: ignore[call-arg]
    # the decorators' options are typed too
    app.on_insert("Users", batch_size="ten")  # type: ignore[arg-type]
    app.on_insert("Users", bach_size=10)  # type: ignore[call-arg]


async def usage() -> None:
    async with app.running(handlers=["welcome"]):
        await app.drain()
    async for letter in app.dead_letters("welcome"):
        assert_type(letter, sk.DeadLetter)
        assert_type(letter.attempts, int)
    summary = await app.redrive("welcome")
    assert_type(summary, dict[str, int])
    status = await app.handler_status()
    assert_type(status, list[dict[str, Any]])
    async with testing.running(testing.app()) as harness:
        await harness.drain()
    record = testing.make_record("INSERT", {"UserID": "1"}, new={"UserID": "1"})
    call: Awaitable[Any] = testing.invoke(app, "welcome", record)
    await call
