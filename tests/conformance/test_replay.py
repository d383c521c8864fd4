"""Replay on every change-log backend: exactly the changes committed in [since, until),
each item's in commit order, from the log, from the archive beyond the log's retention,
and from both at once; the live handler's checkpoint untouched; out-of-range refused."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.capture._relay import table_topic
from streamkit.log import read_until
from streamkit.log._local_db import prune_expired
from streamkit.records import decode_record


@pytest.fixture
async def make_app(tmp_path: Path, url: str) -> AsyncIterator[Any]:
    apps: list[sk.App] = []

    def make(**kwargs: Any) -> sk.App:
        kwargs.setdefault("namespace", f"rp{uuid.uuid4().hex[:10]}")
        kwargs.setdefault("storage", f"sqlite:///{tmp_path}/store.db")
        kwargs.setdefault("topic_partitions", 4)
        application = sk.App(log=url, **kwargs)
        apps.append(application)
        return application

    yield make
    for application in apps:
        await application.close()


def _now() -> datetime:
    return datetime.now(UTC)


async def _write(t: sk.Table, items: int, rounds: int, tag: str) -> None:
    for r in range(rounds):
        for i in range(items):
            await t.put({"k": f"item{i}", "round": r, "tag": tag})
    await t.delete({"k": "item0"})


async def _publish(app: sk.App) -> None:
    """Run the relay until everything committed is in the log."""
    async with app.running(handlers=[]):
        await app.drain()


async def _trim(app: sk.App, before: datetime) -> None:
    """Delete the table topic's records older than ``before`` from the log, the way
    retention does (local: its own retention pass; Kafka: DeleteRecords)."""
    topic = table_topic(app.namespace, "Things")
    ms = int(before.timestamp() * 1000)
    if app.log_url.startswith("local://"):
        path = app.log_url[len("local://") :].split("?", 1)[0]
        conn = sqlite3.connect(f"{path}/log.db", isolation_level=None)
        try:
            # as if now were `retention_ms` after `before`
            prune_expired(conn, ms + app.topic_config.retention_ms)
        finally:
            conn.close()
        return
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    # the first record of each partition committed at or after `before` (by its commit
    # time in the record, not the broker's index: a transaction's commit marker may be
    # written after it returned)
    reader = app.log.reader(topic)
    offsets = {}
    try:
        ends = await reader.end_offsets()
        for p, end in ends.items():
            offsets[p] = end
            await reader.seek(p, 0)
        async for batch in read_until(reader, ends):
            for rec in batch:
                if decode_record(rec.value).created_at_ms >= ms:
                    offsets[rec.partition] = min(offsets[rec.partition], rec.offset)
    finally:
        await reader.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=app.log_url[len("kafka://") :].split("?")[0])
    await admin.start()
    try:
        await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(o) for p, o in offsets.items() if o > 0}
        )
    finally:
        await admin.close()


class Seen:
    def __init__(self) -> None:
        self.records: list[sk.ChangeRecord] = []

    async def __call__(self, record: sk.ChangeRecord) -> None:
        self.records.append(record)

    def check_against(self, expected: list[sk.ChangeRecord]) -> None:
        assert sorted(r.sequence_number for r in self.records) == [
            r.sequence_number for r in expected
        ]
        per_item: dict[str, list[int]] = defaultdict(list)
        for r in self.records:
            per_item[r.keys["k"]].append(r.sequence_number)
        for seqs in per_item.values():
            assert seqs == sorted(seqs)  # each item's records in commit order


async def _committed(app: sk.App, since: datetime, until: datetime) -> list[sk.ChangeRecord]:
    return [r async for r in _archive(app, since, until)]


async def _archive(app: sk.App, since: datetime, until: datetime) -> AsyncIterator[sk.ChangeRecord]:
    from streamkit.history._archive import changes_between

    async for r in changes_between(app._store, "Things", since, until):
        yield r


async def test_replay_from_the_log_is_exactly_the_range(make_app: Any) -> None:
    app = make_app()
    t = await app.create_table("Things", partition_key="k")
    await _write(t, 5, 2, "before")
    await asyncio.sleep(0.02)
    since = _now()
    await _write(t, 5, 3, "inside")
    await asyncio.sleep(0.02)
    until = _now()
    await _write(t, 5, 1, "after")
    await _publish(app)
    seen = Seen()
    summary = await app.replay("Things", seen, since=since, until=until)
    expected = await _committed(app, since, until)
    assert len(expected) == 16
    seen.check_against(expected)
    assert all(r.new_image is None or r.new_image["tag"] == "inside" for r in seen.records)
    assert summary.records == summary.delivered == 16
    assert (summary.from_log, summary.from_archive) == (16, 0)
    assert summary.failed == 0


async def test_replay_stitches_the_archive_and_the_log(make_app: Any) -> None:
    app = make_app()
    t = await app.create_table("Things", partition_key="k")
    since = _now()
    await _write(t, 16, 3, "old")
    await _publish(app)
    await asyncio.sleep(0.05)
    cut = _now()
    await asyncio.sleep(0.05)
    await _write(t, 16, 2, "new")
    await _publish(app)
    await _trim(app, cut)  # the log no longer has the "old" records
    await _write(t, 16, 1, "unpublished")  # and these are only in the outbox
    seen = Seen()
    summary = await app.replay("Things", seen, since=since)
    expected = await _committed(app, since, _now())
    seen.check_against(expected)
    assert summary.records == len(expected) == 49 + 33 + 17
    assert summary.from_log + summary.from_archive == summary.records
    # the trimmed part and the unpublished tail came from the archive, the rest (mostly)
    # from the log: records of a partition trimmed later than another's may come from
    # the archive too (the boundary is one sequence number for every partition)
    assert summary.from_archive >= 49 + 17
    assert summary.from_log > 0


async def test_a_range_past_what_is_kept_is_refused(make_app: Any) -> None:
    app = make_app()
    brief = await app.create_table("Things", partition_key="k", pitr=False)
    await _write(brief, 3, 2, "old")
    await _publish(app)
    await asyncio.sleep(0.05)
    cut = _now()
    await asyncio.sleep(0.05)
    await _write(brief, 3, 1, "new")
    await _publish(app)
    await _trim(app, cut)
    await app._store.prune_archive(published_upto=10**9)
    with pytest.raises(sk.HistoryUnavailable, match="reaches past the history kept") as err:
        await app.replay("Things", Seen(), since=cut - timedelta(hours=1))
    assert "the change log from" in str(err.value)
    with pytest.raises(sk.HistoryUnavailable, match="in the future"):
        await app.replay("Things", Seen(), since=cut, until=_now() + timedelta(hours=1))
    with pytest.raises(sk.ValidationError, match="timezone-aware"):
        await app.replay("Things", Seen(), since=datetime.now())
    with pytest.raises(sk.ValidationError, match="no handler named"):
        await app.replay("Things", "nope", since=cut)
    # what the log keeps replays fine
    since = _now()
    await _write(brief, 3, 1, "newer")
    await _publish(app)
    seen = Seen()
    summary = await app.replay("Things", seen, since=since)
    assert len(seen.records) == 4 and summary.from_log == 4


async def test_replay_runs_a_registered_handler_as_registered_leaving_its_group(
    make_app: Any,
) -> None:
    app = make_app()
    got: list[int] = []

    @app.on_change(
        "Things", batch_size=4, filter={"new_image": {"round": [{"numeric": [">=", 1]}]}}
    )
    async def rounds(batch: sk.Batch) -> None:
        assert len(batch) <= 4
        got.extend(r.sequence_number for r in batch)

    t = await app.create_table("Things", partition_key="k")
    since = _now()
    await _write(t, 3, 3, "x")
    async with app.running():
        await app.drain()
    live = list(got)
    assert len(live) == 6
    got.clear()
    dry = await app.replay("Things", "rounds", since=since, dry_run=True)
    assert got == [] and dry.delivered == 6 and dry.records == 10
    summary = await app.replay("Things", "rounds", since=since)
    assert sorted(got) == sorted(live)
    assert summary.invocations == 2  # 6 records in batches of 4
    # its group did not move: the live handler goes on with the next record only
    got.clear()
    await t.put({"k": "late", "round": 5})
    async with app.running():
        await app.drain()
    assert len(got) == 1


async def test_replay_retries_and_reports_failures_then_goes_on(make_app: Any) -> None:
    app = make_app()
    t = await app.create_table("Things", partition_key="k")
    since = _now()
    await _write(t, 4, 1, "x")
    attempts: dict[str, int] = defaultdict(int)

    def flaky(record: sk.ChangeRecord) -> None:
        k = record.keys["k"]
        attempts[k] += 1
        if k == "item1" or (k == "item2" and attempts[k] < 2):
            raise RuntimeError(f"cannot handle {k}")

    summary = await app.replay("Things", flaky, since=since)
    assert summary.failed == 1 and "cannot handle item1" in summary.errors[0]
    assert attempts["item1"] == 4  # 1 + 3 default retries
    assert attempts["item2"] == 2 and attempts["item3"] == 1
    assert summary.delivered == 5


async def test_replay_commits_context_writes(make_app: Any) -> None:
    app = make_app()
    t = await app.create_table("Things", partition_key="k")
    copy = await app.create_table("Copy", partition_key="k")
    since = _now()
    await _write(t, 3, 1, "x")

    async def mirror(record: sk.ChangeRecord, ctx: sk.Context) -> None:
        if record.new_image is not None:
            ctx.put(copy, dict(record.new_image))

    summary = await app.replay("Things", mirror, since=since)
    assert summary.failed == 0
    assert sorted([i["k"] async for i in copy.scan()]) == ["item0", "item1", "item2"]
