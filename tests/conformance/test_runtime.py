"""The handler runtime's behaviour, on every change-log backend.

Each test builds an App on a fresh namespace (so fresh topics and consumer groups),
runs handlers with ``app.running()`` and checks what they saw with ``app.drain()``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk


@pytest.fixture
async def make_app(tmp_path: Path, url: str) -> AsyncIterator[Any]:
    apps: list[sk.App] = []

    def make(**kwargs: Any) -> sk.App:
        kwargs.setdefault("namespace", f"rt{uuid.uuid4().hex[:10]}")
        kwargs.setdefault("storage", f"sqlite:///{tmp_path}/store.db")
        kwargs.setdefault("topic_partitions", 4)
        kwargs.setdefault("session_timeout", 3.0)
        application = sk.App(log=url, **kwargs)
        apps.append(application)
        return application

    yield make
    for application in apps:
        await application.close()


async def _users(app: sk.App) -> sk.Table:
    return await app.create_table("Users", partition_key="UserID")


async def test_per_event_decorators_see_their_records_in_item_order(make_app: Any) -> None:
    app = make_app()
    seen: dict[str, list[tuple[str, str, int]]] = defaultdict(list)

    @app.on_insert("Users")
    async def inserted(record: sk.ChangeRecord) -> None:
        seen["insert"].append((record.event_name, record.keys["UserID"], record.sequence_number))

    @app.on_modify("Users", changed=["Status"])
    async def status_changed(record: sk.ChangeRecord) -> None:
        seen["status"].append((record.event_name, record.keys["UserID"], record.sequence_number))

    @app.on_remove("Users")
    def removed(record: sk.ChangeRecord) -> None:  # a plain def runs in a thread
        assert threading.current_thread() is not threading.main_thread()
        seen["remove"].append((record.event_name, record.keys["UserID"], record.sequence_number))

    @app.on_change("Users", events={"INSERT", "MODIFY"})
    async def all_changes(record: sk.ChangeRecord) -> None:
        seen["change"].append((record.event_name, record.keys["UserID"], record.sequence_number))

    users = await _users(app)
    async with app.running():
        for i in range(20):
            await users.put({"UserID": f"u{i}", "Status": "new", "n": 0})
        for i in range(20):
            await users.update({"UserID": f"u{i}"}, set={"n": 1})  # Status unchanged
        for i in range(0, 20, 2):
            await users.update({"UserID": f"u{i}"}, set={"Status": "active"})
        for i in range(0, 20, 4):
            await users.delete({"UserID": f"u{i}"})
        await app.drain(timeout=60)
    assert sorted(u for _, u, _ in seen["insert"]) == sorted(f"u{i}" for i in range(20))
    assert sorted(u for _, u, _ in seen["status"]) == sorted(f"u{i}" for i in range(0, 20, 2))
    assert sorted(u for _, u, _ in seen["remove"]) == sorted(f"u{i}" for i in range(0, 20, 4))
    assert {e for e, _, _ in seen["change"]} == {"INSERT", "MODIFY"}
    assert len(seen["change"]) == 20 + 20 + 10
    per_item: dict[str, list[int]] = defaultdict(list)
    for _, u, seq in seen["change"]:
        per_item[u].append(seq)
    for seqs in per_item.values():
        assert seqs == sorted(seqs)


async def test_batches_respect_batch_size_and_partial_failure_retries_the_rest(
    make_app: Any,
) -> None:
    app = make_app()
    sizes: list[int] = []
    handled: list[int] = []
    failed_once: set[int] = set()

    @app.on_insert("Users", batch_size=7, retries=5, retry_delay=0.01)
    async def batched(batch: sk.Batch) -> sk.BatchResult | None:
        sizes.append(len(batch))
        for r in batch:
            n = int(r.new_image["n"])  # type: ignore[index]
            if n % 10 == 3 and n not in failed_once:
                failed_once.add(n)
                return sk.BatchResult(failed=[r])
            handled.append(n)
        return None

    users = await _users(app)
    async with app.running():
        for i in range(60):
            await users.put({"UserID": f"u{i % 5}#{i}", "n": i})
        await app.drain(timeout=60)
    assert max(sizes) <= 7
    assert sorted(set(handled)) == list(range(60))
    assert len(handled) == 60  # the records before a failure are not handled again
    assert failed_once == {3, 13, 23, 33, 43, 53}
    assert [letter async for letter in app.dead_letters("batched")] == []


async def test_poison_record_goes_to_the_dlq_and_the_partition_moves_on(make_app: Any) -> None:
    app = make_app(topic_partitions=1)
    handled: list[int] = []
    attempts: dict[int, int] = defaultdict(int)
    broken = {"fixed": False}

    @app.on_insert("Users", retries=2, retry_delay=0.01)
    async def fragile(record: sk.ChangeRecord) -> None:
        n = int(record.new_image["n"])  # type: ignore[index]
        attempts[n] += 1
        if n == 5 and not broken["fixed"]:
            raise RuntimeError("poison pill")
        handled.append(n)

    users = await _users(app)
    async with app.running():
        for i in range(10):
            await users.put({"UserID": f"u{i}", "n": i})
        await app.drain(timeout=60)
    assert handled == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert attempts[5] == 3  # the first attempt and two retries
    letters = [letter async for letter in app.dead_letters("fragile")]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.record is not None
    assert letter.record.new_image == {"UserID": "u5", "n": 5}
    assert letter.error_type == "RuntimeError"
    assert "poison pill" in letter.error_message
    assert "poison pill" in letter.traceback
    assert letter.attempts == 3
    assert letter.handler == "fragile"
    assert letter.table == "Users"
    assert letter.failed_at >= letter.first_attempt_at
    assert await app.dlq_depth("fragile") == 1

    broken["fixed"] = True
    summary = await app.redrive("fragile")
    assert summary == {"redriven": 1, "failed": 0, "pending": 0}
    assert handled[-1] == 5
    assert [letter async for letter in app.dead_letters("fragile")] == []
    everything = [letter async for letter in app.dead_letters("fragile", include_redriven=True)]
    assert len(everything) == 1


async def test_bisect_isolates_the_failing_record(make_app: Any) -> None:
    app = make_app(topic_partitions=1)
    good: list[int] = []

    @app.on_insert(
        "Users", batch_size=16, batch_window=0.5, bisect_on_error=True, retries=1, retry_delay=0.01
    )
    async def bisected(batch: sk.Batch) -> None:
        ns = [int(r.new_image["n"]) for r in batch]  # type: ignore[index]
        if 11 in ns:
            raise ValueError("11 is bad")
        good.extend(ns)

    users = await _users(app)
    for i in range(16):
        await users.put({"UserID": f"u{i}", "n": i})
    async with app.running():
        await app.drain(timeout=60)
    assert sorted(good) == [i for i in range(16) if i != 11]
    letters = [letter async for letter in app.dead_letters("bisected")]
    assert [int(letter.record.new_image["n"]) for letter in letters] == [11]  # type: ignore[union-attr,index]


async def test_filter_patterns_in_both_shapes(make_app: Any) -> None:
    app = make_app()
    ours: list[int] = []
    lambdas: list[int] = []

    @app.on_insert("Users", filter={"new_image": {"Quantity": [{"numeric": [">", 10]}]}})
    async def big(record: sk.ChangeRecord) -> None:
        ours.append(int(record.new_image["Quantity"]))  # type: ignore[index]

    @app.on_change(
        "Users",
        filter=[{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"Quantity": {"N": ["3"]}}}}],
    )
    async def lambda_shape(record: sk.ChangeRecord) -> None:
        lambdas.append(int(record.new_image["Quantity"]))  # type: ignore[index]

    users = await _users(app)
    async with app.running():
        for q in (1, 3, 11, 50, 10):
            await users.put({"UserID": f"u{q}", "Quantity": q})
        await app.drain(timeout=60)
    assert sorted(ours) == [11, 50]
    assert lambdas == [3]


async def test_a_malformed_filter_is_rejected_when_registering(make_app: Any) -> None:
    app = make_app()
    with pytest.raises(sk.ValidationError, match="numeric"):

        @app.on_insert("Users", filter={"new_image": {"Quantity": [{"numeric": ["~", 1]}]}})
        async def bad(record: sk.ChangeRecord) -> None: ...

    assert app.handlers == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"batch_size": 0}, "batch_size", id="batch-size-zero"),
        pytest.param({"batch_size": 10_001}, "batch_size", id="batch-size-too-big"),
        pytest.param({"batch_size": 5, "batch_window": 301}, "batch_window", id="window-long"),
        pytest.param({"window": 60, "parallelism": 2}, "parallelism", id="window-parallel"),
        pytest.param({"start": "yesterday"}, "start", id="bad-start"),
        pytest.param({"on_failure": "retry"}, "on_failure", id="bad-on-failure"),
        pytest.param({"retries": -1}, "retries", id="negative-retries"),
        pytest.param({"start": datetime(2026, 1, 1)}, "timezone", id="naive-datetime"),
    ],
)
async def test_bad_options_fail_at_registration(
    make_app: Any, options: dict[str, Any], message: str
) -> None:
    app = make_app()
    with pytest.raises(sk.ValidationError, match=message):

        @app.on_insert("Users", **options)
        async def h(record: Any) -> None: ...


async def test_start_latest_and_datetime_skip_older_records(make_app: Any) -> None:
    app = make_app()
    users = await _users(app)
    for i in range(5):
        await users.put({"UserID": f"old{i}"})
    async with app.running(handlers=[]):
        await app.drain(timeout=60)
    await asyncio.sleep(0.05)
    cut = datetime.now(UTC)
    await asyncio.sleep(0.05)
    for i in range(3):
        await users.put({"UserID": f"mid{i}"})
    async with app.running(handlers=[]):
        await app.drain(timeout=60)

    latest: list[str] = []
    since: list[str] = []
    everything: list[str] = []

    @app.on_insert("Users", start="latest")
    async def from_latest(record: sk.ChangeRecord) -> None:
        latest.append(record.keys["UserID"])

    @app.on_insert("Users", start=cut)
    async def from_cut(record: sk.ChangeRecord) -> None:
        since.append(record.keys["UserID"])

    @app.on_insert("Users")
    async def from_horizon(record: sk.ChangeRecord) -> None:
        everything.append(record.keys["UserID"])

    async with app.running():
        await app.drain(timeout=60)
        for i in range(2):
            await users.put({"UserID": f"new{i}"})
        await app.drain(timeout=60)
    assert sorted(latest) == ["new0", "new1"]
    assert sorted(since) == ["mid0", "mid1", "mid2", "new0", "new1"]
    assert len(everything) == 10


async def test_a_datetime_start_misses_nothing_written_while_the_handler_joins(
    make_app: Any,
) -> None:
    """Writes racing the handler's first positioning (empty partitions, start = now)
    are all delivered: the end offset is read before the time lookup."""
    app = make_app()
    users = await _users(app)
    seen: list[str] = []
    start = datetime.now(UTC)

    @app.on_insert("Users", start=start)
    async def joined(record: sk.ChangeRecord) -> None:
        seen.append(record.keys["UserID"])

    async def write() -> None:
        for i in range(60):
            await users.put({"UserID": f"u{i}"})
            await asyncio.sleep(0.002)

    async with app.running():
        await write()
        await app.drain(timeout=60)
    assert sorted(seen) == sorted(f"u{i}" for i in range(60))


async def test_snapshot_start_backfills_then_follows_without_gap_or_duplicate(
    make_app: Any,
) -> None:
    app = make_app()
    users = await _users(app)
    for i in range(30):
        await users.put({"UserID": f"u{i}", "v": 0})
    for i in range(10):
        await users.put({"UserID": f"u{i}", "v": 1})  # history the snapshot folds in
    await users.delete({"UserID": "u29"})
    async with app.running(handlers=[]):
        await app.drain(timeout=60)
    seen: list[tuple[str, str, int]] = []

    @app.on_change("Users", start="snapshot")
    async def backfill(record: sk.ChangeRecord) -> None:
        v = int(record.new_image["v"]) if record.new_image else -1
        seen.append((record.event_name, record.keys["UserID"], v))

    async with app.running():
        await app.drain(timeout=60)
        await users.put({"UserID": "u0", "v": 2})
        await users.put({"UserID": "late", "v": 0})
        await app.drain(timeout=60)
    snapshot = [s for s in seen if s[0] == "SNAPSHOT"]
    assert len(snapshot) == 29
    assert {u for _, u, _ in snapshot} == {f"u{i}" for i in range(29)}
    assert all(v == (1 if int(u[1:]) < 10 else 0) for _, u, v in snapshot)
    live = [s for s in seen if s[0] != "SNAPSHOT"]
    # two items on (maybe) two partitions: no order between them
    assert sorted(live) == [("INSERT", "late", 0), ("MODIFY", "u0", 2)]


async def test_parallelism_keeps_item_order(make_app: Any) -> None:
    app = make_app(topic_partitions=1)
    seen: dict[str, list[int]] = defaultdict(list)
    in_flight: set[str] = set()
    overlap: list[str] = []
    concurrent = {"max": 0, "now": 0}

    @app.on_change("Users", batch_size=5, parallelism=4)
    async def parallel(batch: sk.Batch) -> None:
        concurrent["now"] += 1
        concurrent["max"] = max(concurrent["max"], concurrent["now"])
        keys = {r.keys["UserID"] for r in batch}
        if keys & in_flight:
            overlap.extend(keys & in_flight)
        in_flight.update(keys)
        await asyncio.sleep(0.01)
        for r in batch:
            seen[r.keys["UserID"]].append(int(r.new_image["n"]))  # type: ignore[index]
        in_flight.difference_update(keys)
        concurrent["now"] -= 1

    users = await _users(app)
    for i in range(200):
        await users.put({"UserID": f"u{i % 20}", "n": i})
    async with app.running():
        await app.drain(timeout=60)
    assert overlap == []
    assert concurrent["max"] > 1
    for key, ns in seen.items():
        assert ns == sorted(ns), key
    assert sum(len(v) for v in seen.values()) == 200


async def test_tumbling_windows_carry_state_and_close_with_a_final_invoke(
    make_app: Any,
) -> None:
    app = make_app(topic_partitions=1)
    finals: list[tuple[datetime, int]] = []

    @app.on_insert("Users", window=1.0, batch_size=3)
    async def per_second(batch: sk.Batch) -> sk.BatchResult:
        total = int(batch.state.get("count", 0)) + len(batch)
        if batch.is_final_invoke:
            assert batch.window is not None
            finals.append((batch.window.start, total))
        return sk.BatchResult(state={"count": total})

    users = await _users(app)
    async with app.running():
        for i in range(10):
            await users.put({"UserID": f"a{i}"})
        await asyncio.sleep(1.2)
        for i in range(4):
            await users.put({"UserID": f"b{i}"})
        await app.drain(timeout=60)
        for _ in range(100):  # the last window closes once its end has passed
            if sum(n for _, n in finals) >= 14:
                break
            await asyncio.sleep(0.1)
    assert sum(n for _, n in finals) == 14
    assert len(finals) >= 2
    starts = [s for s, _ in finals]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


async def test_context_writes_commit_with_the_checkpoint(make_app: Any) -> None:
    app = make_app()

    @app.on_insert("Users", batch_size=10)
    async def count(batch: sk.Batch, ctx: sk.Context) -> None:
        for r in batch:
            ctx.update("Stats", {"name": "users"}, add={"count": 1})
            ctx.put("Copies", dict(r.new_image or {}))

    users = await _users(app)
    await app.create_table("Stats", partition_key="name", stream=None)
    await app.create_table("Copies", partition_key="UserID", stream=None)
    async with app.running():
        for i in range(25):
            await users.put({"UserID": f"u{i}", "i": i})
        await app.drain(timeout=60)
    stats = await app.table("Stats").get({"name": "users"})
    assert stats is not None and stats["count"] == 25
    copies = [item async for item in app.table("Copies").scan()]
    assert len(copies) == 25


async def test_a_restarted_handler_resumes_from_its_checkpoint(make_app: Any) -> None:
    app = make_app()
    calls: list[str] = []

    @app.on_insert("Users")
    async def once(record: sk.ChangeRecord) -> None:
        calls.append(record.keys["UserID"])

    users = await _users(app)
    async with app.running():
        for i in range(10):
            await users.put({"UserID": f"a{i}"})
        await app.drain(timeout=60)
    for i in range(5):
        await users.put({"UserID": f"b{i}"})
    async with app.running():
        await app.drain(timeout=60)
    assert sorted(calls) == sorted([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)])


async def test_max_record_age_sends_old_records_to_the_dlq(make_app: Any) -> None:
    app = make_app(topic_partitions=1)
    handled: list[str] = []

    @app.on_insert("Users", max_record_age=2.0)
    async def fresh_only(record: sk.ChangeRecord) -> None:
        handled.append(record.keys["UserID"])

    users = await _users(app)
    await users.put({"UserID": "old"})
    async with app.running(handlers=[]):
        await app.drain(timeout=60)
    await asyncio.sleep(2.3)
    async with app.running():
        await app.drain(timeout=60)  # the handler has joined and dealt with "old"
        await users.put({"UserID": "new"})
        await app.drain(timeout=60)
    assert handled == ["new"]
    letters = [letter async for letter in app.dead_letters("fresh_only")]
    assert [letter.error_type for letter in letters] == ["RecordExpired"]
    assert letters[0].attempts == 0  # given up without an invocation


async def test_timeout_counts_as_a_failure(make_app: Any) -> None:
    app = make_app(topic_partitions=1)

    @app.on_insert("Users", timeout=0.05, retries=0, on_failure="drop")
    async def slow(record: sk.ChangeRecord) -> None:
        await asyncio.sleep(1)

    users = await _users(app)
    async with app.running():
        await users.put({"UserID": "x"})
        await app.drain(timeout=60)
    counts = app.metrics.handler("Users", "slow").values()
    assert counts["dropped"] == 1
    assert counts["failed"] == 1
    text = app.metrics.text()
    assert 'streamkit_handler_records_dropped_total{handler="slow",table="Users"} 1.0' in text
    assert 'streamkit_handler_invocation_seconds_count{handler="slow",table="Users"} 1.0' in text


async def test_router_handlers_are_included(make_app: Any) -> None:
    router = sk.Router()
    seen: list[str] = []

    @router.on_insert("Users")
    async def routed(record: sk.ChangeRecord) -> None:
        seen.append(record.keys["UserID"])

    app = make_app()
    app.include_router(router)
    with pytest.raises(sk.ValidationError, match="already registered"):
        app.include_router(router)
    users = await _users(app)
    async with app.running():
        await users.put({"UserID": "r1"})
        await app.drain(timeout=60)
    assert seen == ["r1"]


async def test_writes_already_committed_by_a_previous_owner_are_not_applied_twice(
    make_app: Any,
) -> None:
    """A zombie (the partition's previous owner) commits a prefix of a batch while this
    member processes the whole batch: this member's commit is refused, it keeps the
    zombie's writes and redoes only the records after them."""
    app = make_app(topic_partitions=1)
    calls: list[list[int]] = []

    @app.on_insert("Users", batch_size=10, batch_window=1.0)
    async def totals(batch: sk.Batch, ctx: sk.Context) -> None:
        ns = [int(r.new_image["n"]) for r in batch]  # type: ignore[index]
        calls.append(ns)
        for n in ns:
            ctx.put("Applied", {"n": n})
        if len(calls) == 1:
            # what a zombie does concurrently: commit the first 4 records' writes with
            # the checkpoint (offsets 0-3 of the only partition, lane 0)
            await app._store.engine.write_meta({"runtime." + group + ".0.0": "4"})

    group = f"{app.namespace}.Users.totals"
    users = await _users(app)
    await app.create_table("Applied", partition_key=("n", "N"), stream=None)
    for i in range(10):
        await users.put({"UserID": f"u{i}", "n": i})
    async with app.running():
        await app.drain(timeout=60)
    assert calls[0] == list(range(10))
    assert calls[1] == list(range(4, 10))  # redone from the zombie's checkpoint
    applied = sorted([int(item["n"]) async for item in app.table("Applied").scan()])
    assert applied == list(range(4, 10))  # 0-3 were the zombie's to write


async def test_a_dlq_that_refuses_letters_stops_the_handler_instead_of_retrying_for_ever(
    make_app: Any,
) -> None:
    from streamkit.log import TopicConfig
    from streamkit.runtime import dlq_topic

    app = make_app(topic_partitions=1)
    calls = 0

    @app.on_insert("Users", retries=0, retry_delay=0.01)
    async def fragile(record: sk.ChangeRecord) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("poison pill")

    users = await _users(app)
    # the DLQ's topic exists with other settings: the log refuses to use it, for good
    topic = dlq_topic(app.namespace, "Users", "fragile")
    await app.log.open()
    await app.log.ensure_topic(topic, TopicConfig(partitions=2, retention_ms=60_000))
    try:
        with pytest.raises(sk.LogError, match="stopped"):
            async with app.running():
                await users.put({"UserID": "u1"})
                with pytest.raises(sk.LogError, match="dead-letter queue") as stopped:
                    await app.drain(timeout=60)
                assert topic in str(stopped.value)
                assert not stopped.value.retriable
                tried = calls
                await asyncio.sleep(1.5)
                assert calls == tried == 1  # not invoked again and again
    finally:
        await app.log.delete_topic(topic)
    # nothing was committed past the record: the next run has it again (Kafka counts
    # the transaction marker after it in the lag too)
    assert (await app.handler_status("fragile"))[0]["lag"] >= 1


async def test_a_handler_whose_dlq_topic_would_be_too_long_fails_at_start(
    make_app: Any,
) -> None:
    from streamkit._names import max_table_name_length

    app = make_app()
    # its topic fits, with 10 characters to spare; its DLQ topic ({topic}.dlq.{handler}) not
    name = "T" * (max_table_name_length(app.namespace) - 10)

    @app.on_insert(name)
    async def long_named_handler(record: sk.ChangeRecord) -> None:
        pass

    await app.create_table(name, partition_key="k")
    with pytest.raises(sk.ConfigurationError, match="handler name of at most 5 characters"):
        async with app.running():
            await app.drain(timeout=30)
