"""Capture, on every backend: outbox rows reach the log exactly once, in per-item order."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.capture import Relay


def _app(tmp_path: Path, url: str) -> sk.App:
    return sk.App(
        storage=f"sqlite:///{tmp_path}/store.db",
        log=url,
        namespace=f"cap{uuid.uuid4().hex[:12]}",
    )


async def _write_history(app: sk.App) -> int:
    users = await app.create_table("Users", partition_key="UserID")
    quiet = await app.create_table("Quiet", partition_key="k", stream=None)
    n = 0
    for i in range(60):
        await users.put({"UserID": f"u{i % 7}", "i": i})
        n += 1
        if i % 10 == 0:
            await quiet.put({"k": str(i)})  # archived, never published
    async with app.transaction() as tx:
        tx.put(users, {"UserID": "t1"})
        tx.put(users, {"UserID": "t2"})
        tx.delete(users, {"UserID": "u0"})
    return n + 3


def _check_exactly_once(records: list[sk.ChangeRecord], expected: int) -> None:
    seqs = [r.sequence_number for r in records]
    assert len(seqs) == expected, (len(seqs), expected)
    assert len(set(seqs)) == expected  # no duplicates
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in records:
        per_key[r.keys["UserID"]].append(r.sequence_number)
    for key, key_seqs in per_key.items():
        assert key_seqs == sorted(key_seqs), f"{key} out of order"


async def test_relay_publishes_everything_once(tmp_path: Path, url: str) -> None:
    app = _app(tmp_path, url)
    expected = await _write_history(app)
    relay = Relay(app._store, app.log, app.namespace, max_batch=100)
    await relay._start()
    while await relay.relay_once():
        pass
    records = [r async for r in app.changes("Users", follow=False)]
    _check_exactly_once(records, expected)
    assert [r async for r in app.changes("Quiet", follow=False)] == []
    await relay._close_producer()
    await app.close()


@pytest.mark.parametrize("crash", ["before-append", "after-append"])
async def test_relay_crash_is_resolved_without_loss_or_duplicate(
    tmp_path: Path, url: str, crash: str
) -> None:
    app = _app(tmp_path, url)
    expected = await _write_history(app)
    relay = Relay(app._store, app.log, app.namespace, max_batch=20)
    await relay._start()
    await relay.relay_once()  # one good batch first
    # a crash in the middle of the next batch: intent stored, then maybe appended,
    # but "done" never written
    done, _ = await relay._state()
    rows = await app._store.read_changes(done, 20)
    await relay._save(intent=rows[-1].seq)
    if crash == "after-append":
        from streamkit.capture._relay import headers_of, table_topic
        from streamkit.log import OutRecord

        assert relay._producer is not None
        await relay._producer.append(
            [
                OutRecord(table_topic(app.namespace, r.table), r.key, r.record, headers_of(r))
                for r in rows
                if r.publish
            ]
        )
    await relay._close_producer()

    again = Relay(app._store, app.log, app.namespace, max_batch=20)
    await again._start()  # resolves the batch in doubt
    while await again.relay_once():
        pass
    _check_exactly_once([r async for r in app.changes("Users", follow=False)], expected)
    await again._close_producer()
    await app.close()


async def test_running_app_publishes_promptly_and_changes_reads_back(
    tmp_path: Path, url: str
) -> None:
    app = _app(tmp_path, url)
    users = await app.create_table("Users", partition_key="UserID")
    before = datetime.now(UTC) - timedelta(seconds=1)
    async with app.running():
        await users.put({"UserID": "1", "Name": "A"})
        await app.drain(timeout=30)
        await users.update({"UserID": "1"}, set={"Name": "B"})
        await users.delete({"UserID": "1"})
        await app.drain(timeout=30)
        records = [r async for r in app.changes("Users", follow=False)]
        assert [r.event_name for r in records] == ["INSERT", "MODIFY", "REMOVE"]
        assert records[1].old_image == {"UserID": "1", "Name": "A"}
        from_time = [r async for r in app.changes("Users", start=before, follow=False)]
        assert len(from_time) == 3
        from_seq = [
            r async for r in app.changes("Users", start=records[1].sequence_number, follow=False)
        ]
        assert [r.event_name for r in from_seq] == ["MODIFY", "REMOVE"]

        seen: list[sk.ChangeRecord] = []

        async def follow() -> None:
            async for r in app.changes("Users", start="latest", poll=0.05):
                seen.append(r)
                return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        await users.put({"UserID": "2"})
        await asyncio.wait_for(follower, 30)
        assert seen[0].keys == {"UserID": "2"}
    await app.close()


async def test_two_relays_fence_each_other(tmp_path: Path, url: str) -> None:
    from streamkit.log import Fenced

    app = _app(tmp_path, url)
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "1"})
    first = Relay(app._store, app.log, app.namespace)
    await first._start()
    second = Relay(app._store, app.log, app.namespace)
    await second._start()  # takes over
    await users.put({"UserID": "2"})
    with pytest.raises(Fenced):
        await first.relay_once()
    while await second.relay_once():
        pass
    records = [r async for r in app.changes("Users", follow=False)]
    assert sorted(r.keys["UserID"] for r in records) == ["1", "2"]
    await first._close_producer()
    await second._close_producer()
    await app.close()


async def test_existing_topic_with_other_settings_is_refused(tmp_path: Path, url: str) -> None:
    from streamkit.log import TopicMismatch

    app = _app(tmp_path, url)
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "1"})
    async with app.running():
        await app.drain(timeout=30)
    await app.close()

    other = sk.App(storage=app.storage_url, log=url, namespace=app.namespace, topic_partitions=4)
    # refused at start-up, before any new write needs the topic
    with pytest.raises(TopicMismatch, match="partitions"):
        async with other.running():
            await other.drain(timeout=30)
    await other.close()


async def test_two_namespaces_on_one_store_each_get_the_whole_stream(
    tmp_path: Path, url: str
) -> None:
    first = _app(tmp_path, url)
    users = await first.create_table("Users", partition_key="UserID", pitr=False)
    await users.put({"UserID": "1"})
    second = sk.App(storage=first.storage_url, log=url, namespace=f"{first.namespace}b")
    async with first.running():
        await first.drain(timeout=30)
        await first._store.prune_archive(published_upto=await first.relay._slowest_done())
    # the other namespace has not published yet: its rows were kept for it
    async with second.running():
        await second.drain(timeout=30)
    got = [
        [r.keys["UserID"] async for r in a.changes("Users", follow=False)] for a in (first, second)
    ]
    assert got == [["1"], ["1"]]
    await first.close()
    await second.close()


async def test_capture_status_reports_what_is_waiting(tmp_path: Path, url: str) -> None:
    app = _app(tmp_path, url)
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "1"})
    await users.put({"UserID": "2"})
    before = await app.capture_status()
    assert (before["behind"], before["published_up_to"]) == (2, 0)
    assert before["oldest_unpublished_age_s"] is not None
    async with app.running():
        await app.drain(timeout=30)
    after = await app.capture_status()
    assert (after["behind"], after["published_up_to"], after["latest_committed"]) == (0, 2, 2)
    assert after["oldest_unpublished_age_s"] is None
    await app.close()
