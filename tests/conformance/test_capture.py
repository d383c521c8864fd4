"""Capture, on every backend: outbox rows reach the log exactly once, in per-item order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit._names import table_topic
from streamkit.capture import Relay
from streamkit.capture._relay import Parked

_OPENED: list[sk.App] = []


@pytest.fixture(autouse=True)
async def _close_apps() -> AsyncIterator[None]:
    """Close every App a test made, also when it failed before its own close: an App left
    open keeps Kafka clients whose sockets the garbage collector later reports as
    ResourceWarnings inside whichever test then runs, failing that one too."""
    yield
    while _OPENED:
        await _OPENED.pop().close()


def _app(tmp_path: Path, url: str) -> sk.App:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/store.db",
        log=url,
        namespace=f"cap{uuid.uuid4().hex[:12]}",
    )
    _OPENED.append(app)
    return app


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


# --- tables whose topic cannot exist ------------------------------------------------------------
def _check_once_in_item_order(
    records: list[sk.ChangeRecord], outbox: list[int], key: str = "k"
) -> None:
    """``records`` are exactly the outbox rows ``outbox`` (sequence numbers), each once,
    every item's in commit order."""
    seqs = [r.sequence_number for r in records]
    assert sorted(seqs) == sorted(outbox), (seqs, outbox)
    assert len(set(seqs)) == len(seqs)
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in records:
        per_key[r.keys[key]].append(r.sequence_number)
    for item, item_seqs in per_key.items():
        assert item_seqs == sorted(item_seqs), f"{item} out of order"


async def _create_unchecked(
    monkeypatch: pytest.MonkeyPatch, app: sk.App, name: str, **kwargs: Any
) -> sk.Table:
    """Create a table the way a version without the topic checks did (an "old" table
    that the relay meets in the catalog), through the normal path otherwise."""
    with monkeypatch.context() as m:
        m.setattr("streamkit.capture._tables.check_table_topic", lambda *a, **k: "")
        m.setattr("streamkit.capture._tables.check_reserved_table_name", lambda *a, **k: None)
        return await app.create_table(name, **kwargs)


async def _health(app: sk.App) -> tuple[int, Any]:
    """GET the endpoint's health check (the ASGI app, no server)."""
    from streamkit.server import create_asgi_app

    server = create_asgi_app(app, background=False)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await server({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    if sent[0]["status"] == 200:  # DynamoDB's "healthy: <host> "
        return 200, sent[1]["body"].decode()
    return sent[0]["status"], json.loads(sent[1]["body"])


async def _outbox_seqs(app: sk.App, table: str) -> list[int]:
    rows = await app.store.read_changes(0, await app.store.read_changes_tail() + 1)
    return [r.seq for r in rows if r.table == table and r.publish]


async def test_a_table_whose_topic_cannot_exist_is_refused_at_creation(tmp_path: Path) -> None:
    from streamkit.server._asgi import service_for

    app = sk.App(
        storage=f"sqlite:///{tmp_path}/store.db", log=f"local://{tmp_path}/log", namespace="shop"
    )
    # {namespace}.{table} must fit Kafka's 249 characters: 244 here
    with pytest.raises(sk.ValidationError, match="at most 244 characters") as refused:
        await app.create_table("T" * 250, partition_key="k")
    assert "249" in str(refused.value)
    with pytest.raises(sk.ValidationError, match="at most 244"):
        await app.create_table("T" * 245, partition_key="k")
    await app.create_table("T" * 244, partition_key="k")
    await app.create_table("U" * 250, partition_key="k", stream=None)  # no topic, no limit
    # a table's topic can never be a handler's DLQ ({namespace}.{table}.dlq.{handler})
    for name in ("Orders.dlq.h", "Orders_dlq_h", "Orders.dlq_h", "Orders_dlq.h"):
        for stream in (sk.StreamView.NEW_IMAGE, None):
            with pytest.raises(sk.ValidationError, match="reserved for dead-letter queues"):
                await app.create_table(name, partition_key="k", stream=stream)
    for name in ("Orders.dlq", "dlq.Orders", "Orders.dlqs.h", "Orders.DLQ.h"):
        await app.create_table(name, partition_key="k")
    with pytest.raises(sk.ValidationError, match="audit trail"):
        await app.create_table("audit", partition_key="k")
    # Kafka reads '.' and '_' alike: a.b and a_b would be one topic
    await app.create_table("a.b", partition_key="k")
    with pytest.raises(sk.ValidationError, match=r"'\.' and '_'"):
        await app.create_table("a_b", partition_key="k")
    # without a stream it has no topic; enabling one later is checked the same way
    await app.create_table("a_b", partition_key="k", stream=None)
    enable = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    with pytest.raises(sk.ValidationError, match=r"'\.' and '_'"):
        await service_for(app).UpdateTable({"TableName": "a_b", "StreamSpecification": enable})
    assert (await app.describe_table("a_b"))["stream"] is None
    # (a stream is never changed in place, as in DynamoDB: off, then on again)
    off = {"StreamEnabled": False}
    await service_for(app).UpdateTable({"TableName": "a.b", "StreamSpecification": off})
    await service_for(app).UpdateTable({"TableName": "a.b", "StreamSpecification": enable})
    # restores create tables too
    backup = await app.backup("a.b")
    with pytest.raises(sk.ValidationError, match="reserved for dead-letter queues"):
        await app.restore_backup(backup.id, target="Orders_dlq_h")
    with pytest.raises(sk.ValidationError, match=r"'\.' and '_'"):
        await app.restore_backup(backup.id, target="a_b")
    with pytest.raises(sk.ValidationError, match="at most 244"):
        await app.restore_to_time("a.b", at=datetime.now(UTC), target="R" * 250)
    assert "a_b" in await app.list_tables()
    await app.close()


async def test_a_table_whose_topic_is_refused_is_set_aside_while_the_others_go_on(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from structlog.testing import capture_logs

    app = _app(tmp_path, url)
    users = await app.create_table("Users", partition_key="UserID", pitr=False)
    # 250 characters: its topic would be longer than Kafka's 249. pitr=False: the archive
    # would drop its rows at the first prune if the relay did not hold them back
    bad_name = "Old" + "x" * 247
    bad = await _create_unchecked(monkeypatch, app, bad_name, partition_key="k", pitr=False)
    app.metrics.watch_capture(app.relay.status)
    with capture_logs() as logs:
        async with app.running():
            for i in range(20):
                await users.put({"UserID": f"u{i}"})
                await bad.put({"k": f"k{i}"})
            async with app.transaction() as tx:
                tx.put(users, {"UserID": "t"})
                tx.put(bad, {"k": "t"})
            await app.drain(timeout=30)  # the relay goes on past the table
            status = await app.capture_status()
            assert status["behind"] == 0
            [failing] = status["failing"]
            assert failing["table"] == bad_name
            assert failing["rows_kept"] == 21
            assert "249" in failing["error"]
            assert datetime.fromisoformat(failing["since"]) <= datetime.now(UTC)
            code, body = await _health(app)
            assert code == 503
            assert body["healthy"] is False
            assert bad_name in body["reason"]
            assert "streamkit_capture_tables_failing 1.0" in app.metrics.text()
            await users.put({"UserID": "after"})
            await app.drain(timeout=30)
    parked = [e for e in logs if e["event"].startswith("change capture set aside")]
    assert [e["table"] for e in parked] == [bad_name]  # logged once, not per batch
    got = [r.keys["UserID"] async for r in app.changes("Users", follow=False)]
    assert sorted(got) == sorted([f"u{i}" for i in range(20)] + ["t", "after"])

    # pruning stops below the first kept row
    await app.store.prune_archive(published_upto=await app.relay._slowest_done())
    assert len(await _outbox_seqs(app, bad_name)) == 21
    # a restart keeps it set aside (and counts each row once)
    again = sk.App(storage=app.storage_url, log=url, namespace=app.namespace)
    async with again.running():
        await again.table(bad_name).put({"k": "more"})
        await again.table("Users").put({"UserID": "again"})
        await again.drain(timeout=30)
        [failing] = (await again.capture_status())["failing"]
        assert (failing["table"], failing["rows_kept"]) == (bad_name, 22)
        assert set(again.relay.status.failing) == {bad_name}
    got = [r.keys["UserID"] async for r in again.changes("Users", follow=False)]
    assert sorted(got)[-1] == "u9" and "again" in got

    # deleting the table ends it: healthy, and nothing holds the archive back any more
    await again.delete_table(bad_name)
    assert (await again.capture_status())["failing"] == []
    code, body = await _health(again)
    assert (code, body) == (200, "healthy: localhost ")
    async with again.running():
        await again.drain(timeout=30)
        assert again.relay.status.failing == {}
        done = (await again.capture_status())["published_up_to"]
        assert await again.relay._slowest_done() == done
    await app.close()
    await again.close()


async def test_a_set_aside_table_is_caught_up_once_in_order_when_its_topic_can_be_made(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamkit.capture import _relay

    monkeypatch.setattr(_relay, "PARKED_RETRY_INTERVAL", 0.2)
    app = _app(tmp_path, url)
    first = await app.create_table("Item.s", partition_key="k")
    # made before the check: Kafka takes Item_s for Item.s
    late = await _create_unchecked(monkeypatch, app, "Item_s", partition_key="k")
    async with app.running():
        await first.put({"k": "x"})
        for i in range(30):
            await late.update({"k": f"k{i % 4}"}, add={"n": 1}, set={"i": i})
        await app.drain(timeout=30)
        [failing] = (await app.capture_status())["failing"]
        assert (failing["table"], failing["rows_kept"]) == ("Item_s", 30)
        assert "Item.s" in failing["error"]
    # the table that took its topic goes; on Kafka its topic stays, and Kafka refuses
    await app.delete_table("Item.s")
    kafka = url.startswith("kafka://")
    if kafka:
        async with app.running():
            await app.drain(timeout=30)
            [failing] = (await app.capture_status())["failing"]
            assert failing["table"] == "Item_s"
            assert "Kafka refused" in failing["error"]
        await app.log.delete_topic(table_topic(app.namespace, "Item.s"))
    async with app.running():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (await app.capture_status())["failing"]:
            assert loop.time() < deadline, "not caught up within 30 s"
            await asyncio.sleep(0.1)
        for i in range(30, 40):  # published after the kept rows
            await late.update({"k": f"k{i % 4}"}, add={"n": 1}, set={"i": i})
        await app.drain(timeout=30)
        assert app.relay.status.failing == {}
    records = [r async for r in app.changes("Item_s", follow=False)]
    _check_once_in_item_order(records, await _outbox_seqs(app, "Item_s"))
    assert len(records) == 40
    assert [r.new_image["i"] for r in records if r.keys["k"] == "k0"] == list(range(0, 40, 4))  # type: ignore[index]
    await app.close()


@pytest.mark.parametrize("crash", ["before-append", "after-append"])
async def test_a_catch_up_killed_midway_is_settled_without_loss_or_duplicate(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    app = _app(tmp_path, url)
    await app.create_table("Item.s", partition_key="k")
    late = await _create_unchecked(monkeypatch, app, "Item_s", partition_key="k")
    for i in range(35):
        await late.update({"k": f"k{i % 3}"}, add={"n": 1})
    relay = Relay(app.store, app.log, app.namespace, max_batch=10)
    await relay._start()
    while await relay.relay_once():
        pass
    assert set(relay.status.failing) == {"Item_s"}
    await relay._close_producer()
    await app.delete_table("Item.s")
    if url.startswith("kafka://"):
        await app.log.delete_topic(table_topic(app.namespace, "Item.s"))

    class Killed(Exception):
        pass

    class KilledInCatchUp(Relay):
        """Dies in its second catch-up batch: after storing its intent (before the
        append), or after the append (before storing that it landed)."""

        appends = 0

        async def _store_parked(self, entry: Parked) -> None:
            if entry.intent:
                self.appends += 1
                await super()._store_parked(entry)
                if crash == "before-append" and self.appends == 2:
                    raise Killed
                return
            if crash == "after-append" and self.appends == 2:
                raise Killed
            await super()._store_parked(entry)

    dying = KilledInCatchUp(app.store, app.log, app.namespace, max_batch=10)
    with pytest.raises(Killed):
        await dying._start()
    await dying._close_producer()

    again = Relay(app.store, app.log, app.namespace, max_batch=10)
    await again._start()  # settles the catch-up in doubt, then finishes it
    assert again.status.failing == {}
    await late.put({"k": "k0", "n": 100})
    while await again.relay_once():
        pass
    await again._close_producer()
    records = [r async for r in app.changes("Item_s", follow=False)]
    _check_once_in_item_order(records, await _outbox_seqs(app, "Item_s"))
    assert len(records) == 36
    await app.close()


async def test_one_relay_publishes_at_a_time_and_a_standby_takes_over(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, url)
    users = await app.create_table("Users", partition_key="UserID")
    first = Relay(app.store, app.log, app.namespace, lease_seconds=1.0)
    second = Relay(app.store, app.log, app.namespace, lease_seconds=1.0)
    loop = asyncio.get_running_loop()

    async def until(what: str, check: Any, within: float = 20.0) -> None:
        deadline = loop.time() + within
        while not check():
            assert loop.time() < deadline, what
            await asyncio.sleep(0.02)

    one = asyncio.create_task(first.run(idle_poll=0.05))
    await users.put({"UserID": "1"})
    await until("the first relay publishes", lambda: first.status.published == 1)
    two = asyncio.create_task(second.run(idle_poll=0.05))
    await until("the second relay stands by", lambda: second.status.standby)
    await users.put({"UserID": "2"})
    await until("the holder publishes", lambda: first.status.published == 2)
    assert second.status.published == 0 and second.status.standby

    # the holder dies without a word (its lease is not released): the standby takes over
    # once the lease runs out
    async def keep(*_: Any) -> None:
        return None

    monkeypatch.setattr(app.store.engine, "release_lease", keep)
    one.cancel()
    with pytest.raises(asyncio.CancelledError):
        await one
    died = loop.time()
    await users.put({"UserID": "3"})
    await until("the standby takes over", lambda: second.status.published == 1)
    assert loop.time() - died < 5.0, "took over long after the lease ran out"
    assert not second.status.standby
    two.cancel()
    with pytest.raises(asyncio.CancelledError):
        await two
    records = [r async for r in app.changes("Users", follow=False)]
    assert sorted(r.keys["UserID"] for r in records) == ["1", "2", "3"]  # each once
    assert len({r.event_id for r in records}) == 3
    await app.close()


async def test_the_relay_prunes_again_soon_while_pruning_still_deletes(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune examines a bounded number of archive rows; while one still deletes rows
    the next comes after PRUNE_CATCHUP, not PRUNE_INTERVAL (once a minute capped
    compaction at ~167 changes/s)."""
    from streamkit.capture import _relay

    monkeypatch.setattr(_relay, "PRUNE_INTERVAL", 60.0)
    monkeypatch.setattr(_relay, "PRUNE_CATCHUP", 0.02)
    app = _app(tmp_path, url)
    await app.create_table("Users", partition_key="UserID")
    calls: list[int] = []
    left = [5, 5, 5]  # three prunes that delete rows, then nothing left to delete
    real = app._store.prune_archive

    async def prune(**kwargs: Any) -> int:
        await real(**kwargs)
        calls.append(1)
        return left.pop() if left else 0

    monkeypatch.setattr(app._store, "prune_archive", prune)
    relay = Relay(app._store, app.log, app.namespace)
    task = asyncio.create_task(relay.run(idle_poll=0.01))
    try:
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.close()
    assert len(calls) == 4  # 3 that deleted, 1 that did not; the next is a minute away
