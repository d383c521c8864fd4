"""One delivery policy: live delivery and replay select, invoke, retry and bisect the same
way and differ only in where records that fail for good go."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.history._replay import _REPLAYED, _Counted, _Runner
from streamkit.records import StreamView
from streamkit.runtime._delivery import (
    DeadLetterRoute,
    Delivery,
    Item,
    RecordExpired,
    bound_logger,
)
from streamkit.runtime._dlq import Failure
from streamkit.runtime._registry import EVENTS, HandlerSpec, build_spec
from streamkit.runtime._worker import HandlerRunner, RuntimeOptions
from streamkit.storage._effects import Effects

POISON = "k5"


def _record(i: int, *, event: str = "INSERT") -> sk.ChangeRecord:
    key = {"k": f"k{i}"}
    return sk.ChangeRecord(
        event_id=f"e{i}",
        event_name=event,  # type: ignore[arg-type]
        table="Things",
        keys=key,
        new_image=None if event == "REMOVE" else {**key, "v": i},
        old_image=None,
        changed=None,
        sequence_number=100 + i,
        created_at=datetime.now(UTC),
        size_bytes=10,
        view_type=StreamView.NEW_AND_OLD_IMAGES,
    )


class _Partition:
    """A live origin: partition 3, nothing delivered before."""

    partition = 3
    stopping = False

    def seen(self, lane: int, item: Item) -> bool:
        return False


class _FakeDLQ:
    topic = "ns.Things.dlq.h"

    def __init__(self) -> None:
        self.sent: list[tuple[list[Failure], BaseException]] = []

    async def send(self, failures: list[Failure], error: BaseException, now_ms: int) -> None:
        self.sent.append((failures, error))


def _spec(calls: list[tuple[tuple[str, ...], int]], **options: Any) -> HandlerSpec:
    def handler(batch: sk.Batch) -> None:
        keys = tuple(r.keys["k"] for r in batch)
        calls.append((keys, batch.attempt))
        if POISON in keys:
            raise RuntimeError(f"cannot handle {POISON}")

    options = {"batch_size": 8, "retries": 1, "retry_delay": 0.0, **options}
    return build_spec(handler, "Things", EVENTS, name="h", **options)


def _live(spec: HandlerSpec) -> tuple[Delivery, _FakeDLQ]:
    dlq = _FakeDLQ()
    log = bound_logger(spec)
    route = DeadLetterRoute(spec, dlq, log=log)  # type: ignore[arg-type]
    return Delivery(spec, route, log=log), dlq


def _replayed(spec: HandlerSpec) -> tuple[Delivery, sk.ReplaySummary]:
    now = datetime.now(UTC)
    summary = sk.ReplaySummary(table="Things", handler=spec.name, since=now, until=now)
    log = bound_logger(spec)
    return Delivery(spec, _Counted(summary, log), log=log), summary


def _live_items(records: list[sk.ChangeRecord]) -> list[Item]:
    now_ms = int(time.time() * 1000)
    return [Item(i, b"k", b"avro", (), now_ms, r) for i, r in enumerate(records)]


# the policy alone ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("batched", "expected"),
    [
        pytest.param(
            {"bisect_on_error": True},
            [
                (("k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"), 1),
                (("k0", "k1", "k2", "k3"), 1),
                (("k4", "k5", "k6", "k7"), 1),
                (("k4", "k5"), 1),
                (("k4",), 1),
                (("k5",), 1),
                (("k5",), 2),  # retries=1: one retry, then the route
                (("k6", "k7"), 1),
            ],
            id="bisect",
        ),
        pytest.param(
            {},
            [(("k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"), a) for a in (1, 2)],
            id="no-bisect",
        ),
    ],
)
async def test_live_and_replay_invoke_alike_and_route_failures_apart(
    batched: dict[str, Any], expected: list[tuple[tuple[str, ...], int]]
) -> None:
    records = [_record(i) for i in range(8)]
    live_calls: list[tuple[tuple[str, ...], int]] = []
    live, dlq = _live(_spec(live_calls, **batched))
    await live.deliver(_Partition(), 0, _live_items(records), Effects(None))  # type: ignore[arg-type]

    replay_calls: list[tuple[tuple[str, ...], int]] = []
    replay, summary = _replayed(_spec(replay_calls, **batched))
    items = [Item.of(r) for r in records]
    await replay.deliver(_REPLAYED, 0, items, Effects(None))  # type: ignore[arg-type]

    assert live_calls == replay_calls == expected
    assert live.invocations == replay.invocations == len(expected)
    given_up = 1 if batched else 8
    # live: to the DLQ, with where each record came from and how often it was tried
    [(failures, error)] = dlq.sent
    assert len(failures) == given_up and "cannot handle" in str(error)
    # attempts count every invocation a record was in (bisected ones too)
    attempts = 5 if batched else 2
    assert {f.partition for f in failures} == {3} and {f.attempts for f in failures} == {attempts}
    # replay: counted and reported; no DLQ
    assert summary.failed == given_up
    assert summary.errors == [
        f"sequence {105 if batched else 100}: RuntimeError: cannot handle {POISON}"
    ]


async def test_selection_is_shared() -> None:
    # k0: not the filter's; the MODIFY of k2: not the handler's event
    records = [_record(0), _record(2, event="MODIFY"), _record(2)]
    spec = build_spec(
        lambda r: None, "Things", ["INSERT"], name="h", filter={"new_image": {"v": [2]}}
    )
    live, _ = _live(spec)
    replay, _ = _replayed(spec)
    live_items = _live_items(records)
    assert [it.record for it in live.select(_Partition(), 0, live_items)] == [records[2]]
    replay_items = [Item.of(r) for r in records]
    assert [it.record for it in replay.select(_REPLAYED, 0, replay_items)] == [records[2]]


async def test_block_holds_live_only() -> None:
    live, _ = _live(_spec([], on_failure="block"))
    replay, _ = _replayed(_spec([], on_failure="block"))
    # "block": live retries past ``retries`` until the handler succeeds; replay gives up
    assert not live.exhausted(50)
    assert replay.exhausted(2) and not replay.exhausted(1)


async def test_max_record_age_holds_live_only() -> None:
    calls: list[tuple[tuple[str, ...], int]] = []
    live, dlq = _live(_spec(calls, max_record_age=60.0))
    replay, summary = _replayed(_spec(calls, max_record_age=60.0))
    old = _record(0)
    # live: a record older than max_record_age goes to the route uninvoked
    await live.deliver(_Partition(), 0, [Item(0, b"k", b"avro", (), 0, old)], Effects(None))  # type: ignore[arg-type]
    assert calls == [] and live.invocations == 0
    assert isinstance(dlq.sent[0][1], RecordExpired)
    # replay: replayed records are old by design; the handler gets it
    await replay.deliver(_REPLAYED, 0, [Item.of(old)], Effects(None))  # type: ignore[arg-type]
    assert calls == [(("k0",), 1)] and summary.failed == 0


# both paths end to end -------------------------------------------------------------------------
async def test_a_running_handler_and_its_replay_share_the_policy(tmp_path: Path) -> None:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/store.db",
        log=f"local://{tmp_path}/log",
        namespace=f"dl{uuid.uuid4().hex[:8]}",
        topic_partitions=1,  # one partition: live batches are the replay's batches
    )
    calls: list[tuple[tuple[str, ...], int]] = []

    @app.on_change(
        "Things", batch_size=8, batch_window=1.0, bisect_on_error=True, retries=1, retry_delay=0
    )
    def bisecting(batch: sk.Batch) -> None:
        keys = tuple(r.keys["k"] for r in batch)
        calls.append((keys, batch.attempt))
        if POISON in keys:
            raise RuntimeError(f"cannot handle {POISON}")

    try:
        t = await app.create_table("Things", partition_key="k")
        since = datetime.now(UTC)
        for i in range(8):
            await t.put({"k": f"k{i}"})
        async with app.running():
            await app.drain()
        live_calls = list(calls)
        letters = [letter async for letter in app.dead_letters("bisecting")]
        # in 5 invocations: 8 records, 4, 2, alone, alone again
        assert [(lt.record.keys["k"], lt.attempts) for lt in letters if lt.record] == [(POISON, 5)]

        calls.clear()
        summary = await app.replay("Things", "bisecting", since=since)
        assert calls == live_calls
        assert [keys for keys, _ in live_calls][-3:] == [(POISON,), (POISON,), ("k6", "k7")]
        assert summary.failed == 1 and summary.invocations == len(live_calls)
        assert await app.dlq_depth("bisecting") == 1  # replay sends nothing to the DLQ
    finally:
        await app.close()


def test_the_worker_and_replay_hold_one_policy_with_their_own_routes() -> None:
    spec = _spec([])
    runner = HandlerRunner(None, None, "ns", spec, options=RuntimeOptions())  # type: ignore[arg-type]
    assert type(runner.delivery) is Delivery
    assert isinstance(runner.delivery.route, DeadLetterRoute)
    now = datetime.now(UTC)
    summary = sk.ReplaySummary(table="Things", handler="h", since=now, until=now)
    replayer = _Runner(None, spec, summary)  # type: ignore[arg-type]
    assert type(replayer.delivery) is Delivery
    assert isinstance(replayer.delivery.route, _Counted)
