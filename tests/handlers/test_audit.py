"""The audit trail through the real runtime: every change entered once, attributed,
hash-chained; any altered, missing or reordered entry detected."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit import testing
from streamkit.handlers import audit
from streamkit.handlers.audit import FileSink, LogSink, TableSink, audit_router, prepare, verify
from tests import kafka_env


def _app(tmp_path: Path, log: str | None = None) -> sk.App:
    return sk.App(
        storage=f"sqlite:///{tmp_path}/shop.db",
        log=log or f"local://{tmp_path}/log?poll_interval=0.02",
        namespace=f"au{uuid.uuid4().hex[:8]}",
        topic_partitions=3,
        ttl_interval=0.05,
    )


async def _story(app: sk.App) -> sk.Table:
    users = await app.create_table("Users", partition_key="UserID", ttl_attribute="exp")
    for i in range(12):
        await users.put({"UserID": f"u{i}", "Name": f"n{i}", "changed_by": "signup"})
    await users.update({"UserID": "u1"}, set={"Name": "Ada", "changed_by": "admin"})
    await users.delete({"UserID": "u2"})
    await users.put({"UserID": "tmp", "exp": int(time.time()) - 1})
    return users


async def _run(app: sk.App, sink: Any) -> None:
    app.include_router(audit_router(["Users"], sink, actor_attribute="changed_by", batch_size=5))
    await prepare(app, sink)
    async with app.running():
        users = await _story(app)
        while await users.get({"UserID": "tmp"}) is not None:
            await app.drain()
        await app.drain()


async def test_every_change_is_entered_once_with_who_and_verifies(tmp_path: Path) -> None:
    app = _app(tmp_path)
    sink = TableSink()
    try:
        await _run(app, sink)
        report = await verify(app, sink)
        assert report.ok and report.entries == 16, report
        assert report.chains <= 3
        ada = await audit.history(app, "Users", {"UserID": "u1"}, sink)
        assert [e["event"] for e in ada] == ["INSERT", "MODIFY"]
        assert ada[1]["who"]["actor"] == "admin"
        assert ada[1]["old_image"]["Name"] == {"S": "n1"}
        assert ada[1]["new_image"]["Name"] == {"S": "Ada"}
        expired = await audit.history(app, "Users", {"UserID": "tmp"}, sink)
        assert [e["event"] for e in expired] == ["INSERT", "REMOVE"]
        assert expired[1]["who"]["identity"] == {"type": "Service", "principal": "streamkit.ttl"}
        # replaying the audit handler is refused (the trail is the history), changing nothing
        replayed = await app.replay("Users", "audit_Users", since=datetime(2000, 1, 1, tzinfo=UTC))
        assert replayed.failed == 16 and "not replayed" in replayed.errors[0]
        again = await verify(app, sink)
        assert again.ok and again.entries == 16
    finally:
        await app.close()


async def test_tampering_with_the_table_sink_is_detected(tmp_path: Path) -> None:
    app = _app(tmp_path)
    sink = TableSink()
    try:
        await _run(app, sink)
        t = app.table("streamkit_audit")
        items = [i async for i in t.scan() if i["pos"] >= 0]
        victim = max(items, key=lambda i: (i["chain"] == items[0]["chain"], i["pos"]))
        entry = json.loads(victim["entry"])
        entry["new_image"] = {"Name": {"S": "forged"}}
        await t.put({**victim, "entry": json.dumps(entry)})
        report = await verify(app, sink)
        assert not report.ok
        assert "altered" in report.problems[0][2]
    finally:
        await app.close()


@pytest.mark.parametrize(
    "mutation", ["alter", "delete_middle", "delete_last", "swap", "truncate_line"]
)
async def test_tampering_with_the_file_sink_is_detected(tmp_path: Path, mutation: str) -> None:
    app = _app(tmp_path)
    sink = FileSink(tmp_path / "audit")
    try:
        await _run(app, sink)
        assert (await verify(app, sink)).ok
        path = max((tmp_path / "audit").glob("*.jsonl"), key=lambda p: len(p.read_text()))
        lines = path.read_text().splitlines(keepends=True)
        assert len(lines) >= 3
        if mutation == "alter":
            e = json.loads(lines[1])
            e["who"]["actor"] = "someone else"
            lines[1] = json.dumps(e) + "\n"
        elif mutation == "delete_middle":
            del lines[1]
        elif mutation == "delete_last":
            del lines[-1]
            # a cut tail leaves a valid prefix: only the head or the source can tell,
            # so the file sink is checked against the change log's count below
        elif mutation == "swap":
            lines[0], lines[1] = lines[1], lines[0]
        else:
            lines[-1] = lines[-1][: len(lines[-1]) // 2]
        path.write_text("".join(lines))
        report = await verify(app, sink)
        if mutation == "delete_last":
            assert report.entries == 15  # one fewer than the 16 changes committed
        else:
            assert not report.ok, mutation
    finally:
        await app.close()


async def test_a_redelivered_batch_adds_nothing_to_the_file(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "trail")
    records = [
        testing.make_record("INSERT", {"k": str(i)}, new={"k": str(i)}, sequence_number=i + 1)
        for i in range(5)
    ]
    ctx: Any = None
    await sink.append("T#0", records[:3], ctx, None)
    await sink.append("T#0", records, ctx, None)  # the first three again, then two new
    await FileSink(tmp_path / "trail").append("T#0", records, ctx, None)  # a new process
    app = sk.App(storage="memory://")
    report = await verify(app, FileSink(tmp_path / "trail"))
    assert report.ok and report.entries == 5


@pytest.mark.kafka
@kafka_env.needs_kafka
async def test_the_log_sink_on_kafka(tmp_path: Path) -> None:
    import os

    app = _app(tmp_path, log=f"kafka://{os.environ[kafka_env.KAFKA_ENV]}")
    sink = LogSink(app)
    try:
        await _run(app, sink)
        report = await verify(app, sink)
        assert report.ok and report.entries == 16, report
    finally:
        await app.close()


CHANGES = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]), st.sampled_from(["put", "delete"]), st.integers(0, 3)
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    changes=CHANGES, which=st.integers(0, 10_000), how=st.sampled_from(["alter", "drop", "swap"])
)
def test_any_single_mutation_of_a_chain_is_detected(
    changes: list[tuple[str, str, int]], which: int, how: str
) -> None:
    records = []
    for seq, (key, op, v) in enumerate(changes, start=1):
        records.append(
            testing.make_record(
                "REMOVE" if op == "delete" else "INSERT",
                {"k": key},
                new=None if op == "delete" else {"k": key, "v": v},
                old={"k": key} if op == "delete" else None,
                sequence_number=seq,
                table="T",
            )
        )
    entries = []
    prev = audit.GENESIS
    for i, r in enumerate(records):
        e = audit.make_entry(r, "T#0", i, prev, None)
        entries.append(e)
        prev = e["hash"]
    assert audit._check_chain("T#0", entries, None) is None
    i = which % len(entries)
    broken = [dict(e) for e in entries]
    if how == "alter":
        broken[i]["event"] = "MODIFY" if broken[i]["event"] != "MODIFY" else "INSERT"
    elif how == "drop":
        if len(broken) == 1 or i == len(broken) - 1:
            return  # dropping the last is a cut tail: caught by the head (table sink)
        del broken[i]
    else:
        if len(broken) == 1:
            return
        j = (i + 1) % len(broken)
        broken[i], broken[j] = broken[j], broken[i]
    assert audit._check_chain("T#0", broken, None) is not None


async def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    import asyncio
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamkit",
        "--storage",
        f"sqlite:///{tmp_path}/shop.db",
        *args,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_audit_verify_and_show_from_the_command_line(tmp_path: Path) -> None:
    app = _app(tmp_path)
    try:
        await _run(app, TableSink())
    finally:
        await app.close()
    code, out = await _cli(tmp_path, "audit", "verify")
    assert code == 0 and "audit trail intact: 16 entries" in out, out
    code, out = await _cli(tmp_path, "audit", "show", "Users", '{"UserID": "u1"}')
    assert code == 0 and "MODIFY" in out and "admin" in out, out
    code, out = await _cli(tmp_path, "audit", "show", "Users", '{"UserID": "nobody"}')
    assert code == 2
    async with sk.App(storage=f"sqlite:///{tmp_path}/shop.db") as again:
        t = again.table("streamkit_audit")
        victims = [i async for i in t.scan() if i["pos"] == 0]
        victim = victims[0]
        await t.delete({"chain": victim["chain"], "pos": 0})
    code, out = await _cli(tmp_path, "audit", "verify")
    assert code == 1 and "entry 0" in out, out
