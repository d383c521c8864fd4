"""The storage engine conformance suite: every StorageEngine method, on every engine.

The same tests run against ``memory://``, ``sqlite:///`` and ``postgresql://`` (a fresh
database per test on the server ``STREAMKIT_TEST_POSTGRES`` names; skipped, saying so,
when it is unset). Write jobs are built the way ``Table`` builds them (PutOp/UpdateOp/
DeleteOp/CheckOp from an ItemKey and compiled expressions), through :class:`Ops`.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streamkit.exceptions import (
    BackupNotFound,
    ConditionFailed,
    TableExists,
    TableNotFound,
    TransactionCanceled,
)
from streamkit.records import StreamView, decode_record
from streamkit.records._avro import decode_image, encode_image, record_new_image
from streamkit.records._values import item_size, normalize_item
from streamkit.storage._engine import (
    RESTORE_CHUNK,
    BackupOf,
    RestoreFeed,
    StateAt,
    StorageEngine,
    engine_for,
)
from streamkit.storage._expressions import ExpressionContext, compile_condition, compile_update
from streamkit.storage._keys import KeyAttribute, KeySchema
from streamkit.storage._spec import TableSpec
from streamkit.storage._write_ops import (
    CheckOp,
    Checkpoint,
    DeleteOp,
    ItemKey,
    PutOp,
    UpdateOp,
    WriteJob,
    WriteOp,
)
from streamkit.storage._writes import StaleCatalog
from tests import postgres_env

DAY_MS = 86_400_000


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        postgres_env.postgres_param(),
    ]
)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageEngine]:
    """An opened engine on an empty store."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        server = postgres_env.postgres_url()
        assert server is not None
        url = await postgres_env.fresh_database(server)
    eng = engine_for(url)
    await eng.open()
    try:
        yield eng
    finally:
        await eng.close()
        if request.param == "postgres":
            await postgres_env.drop_database(url)


class Ops:
    """Builds write operations for one table, as ``Table`` does."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec

    def key(self, key: Mapping[str, Any]) -> ItemKey:
        norm, pk, sk = self.spec.key.parse_key(key)
        return ItemKey.of(self.spec, norm, (pk, sk))

    @staticmethod
    def _cond(condition: str | None, values: Mapping[str, Any] | None) -> Any:
        return compile_condition(condition, ExpressionContext(None, values))

    def put(
        self, item: Mapping[str, Any], condition: str | None = None, values: Any = None
    ) -> PutOp:
        norm = normalize_item(item)
        spec = self.spec
        k = ItemKey.of(spec, spec.key.key_of(norm), spec.key.extract(norm))
        return PutOp(
            spec, k, norm, encode_image(norm), item_size(norm), self._cond(condition, values)
        )

    def update(
        self,
        key: Mapping[str, Any],
        *,
        set: Mapping[str, Any] | None = None,
        add: Mapping[str, Any] | None = None,
        condition: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> UpdateOp:
        ctx = ExpressionContext(None, values)
        upd = compile_update(ctx, set=set, add=add)
        cond = compile_condition(condition, ctx)
        return UpdateOp(self.spec, self.key(key), upd, cond, "ALL_NEW")

    def delete(self, key: Mapping[str, Any], condition: str | None = None) -> DeleteOp:
        return DeleteOp(self.spec, self.key(key), self._cond(condition, None))

    def check(self, key: Mapping[str, Any], condition: str, values: Any = None) -> CheckOp:
        return CheckOp(self.spec, self.key(key), self._cond(condition, values))


def users_spec(name: str = "Users", **kw: Any) -> TableSpec:
    return TableSpec(name, KeySchema(KeyAttribute("id")), **kw)


def events_spec(name: str = "Events", **kw: Any) -> TableSpec:
    return TableSpec(name, KeySchema(KeyAttribute("p"), KeyAttribute("s", "B")), **kw)


async def one(engine: StorageEngine, op: WriteOp) -> Any:
    (result,) = await engine.write(WriteJob([op]))
    return result


async def item_of(engine: StorageEngine, ops: Ops, key: Mapping[str, Any]) -> Any:
    k = ops.key(key)
    row = await engine.get(ops.spec.table_id, k.pk, k.sk)
    return None if row is None else decode_image(row[0])


def events(rows: list[Any]) -> list[str]:
    return [r.event for r in rows]


# --- lifecycle and catalog ------------------------------------------------------------------


async def test_open_is_idempotent_and_storage_id_stable(engine: StorageEngine) -> None:
    sid = engine.storage_id
    assert len(sid) == 16
    await engine.open()
    assert engine.storage_id == sid
    if engine.url.startswith("memory"):
        return
    other = engine_for(engine.url)
    await other.open()
    try:
        assert other.storage_id == sid
    finally:
        await other.close()


async def test_catalog_create_list_update_delete(engine: StorageEngine) -> None:
    assert list(await engine.list_tables()) == []
    b = await engine.create_table(users_spec("Bravo", pitr=False))
    a = await engine.create_table(users_spec("Alpha"))
    assert a.table_id != b.table_id and a.table_id > 0
    assert a.created_at is not None
    assert [t.name for t in await engine.list_tables()] == ["Alpha", "Bravo"]
    with pytest.raises(TableExists):
        await engine.create_table(users_spec("Alpha"))
    listed = {t.name: t for t in await engine.list_tables()}
    assert listed["Alpha"].table_id == a.table_id
    assert listed["Alpha"].key == a.key and listed["Alpha"].pitr is True

    changed = TableSpec(
        "Bravo", b.key, stream=None, ttl_attribute="exp", pitr=False, table_id=b.table_id,
        created_at=b.created_at,
    )  # fmt: skip
    stored = await engine.update_table(changed)
    assert stored == replace(changed, epoch=changed.epoch + 1)  # every change: a new epoch
    got = {t.name: t for t in await engine.list_tables()}["Bravo"]
    assert got == stored
    again = await engine.update_table(stored)
    assert again.epoch == stored.epoch + 1
    with pytest.raises(TableNotFound):
        await engine.update_table(users_spec("Nope", table_id=9999))
    # a read-modify-write that lost a race stores nothing
    with pytest.raises(StaleCatalog):
        await engine.update_table(replace(stored, ttl_attribute="lost"), only_if_epoch=stored.epoch)
    assert {t.name: t for t in await engine.list_tables()}["Bravo"] == again
    won = await engine.update_table(replace(again, ttl_attribute="won"), only_if_epoch=again.epoch)
    assert won.epoch == again.epoch + 1 and won.ttl_attribute == "won"

    deleted = await engine.delete_table("Bravo")
    assert deleted.name == "Bravo" and deleted.table_id == b.table_id
    assert [t.name for t in await engine.list_tables()] == ["Alpha"]
    with pytest.raises(TableNotFound):
        await engine.delete_table("Bravo")


async def test_delete_table_removes_items_and_backs_up_pitr_tables(engine: StorageEngine) -> None:
    pitr = Ops(await engine.create_table(users_spec("Kept")))
    plain = Ops(await engine.create_table(users_spec("Plain", pitr=False)))
    await engine.write(WriteJob([pitr.put({"id": "a"}), pitr.put({"id": "b"})]))
    await one(engine, plain.put({"id": "x"}))
    before = await engine.max_sequence()
    await engine.delete_table("Kept")
    await engine.delete_table("Plain")
    assert await engine.table_stats(pitr.spec.table_id) == (0, 0)
    assert await engine.table_stats(plain.spec.table_id) == (0, 0)
    backups = await engine.list_backups()
    assert [(b.table, b.kind, b.items) for b in backups] == [("Kept", "SYSTEM", 2)]
    # the archive keeps the change rows of deleted tables
    assert await engine.max_sequence() == before
    assert len(await engine.changes(0, 100)) == 3


# --- writes -------------------------------------------------------------------------------


async def test_events_insert_modify_remove_and_noop(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    assert await engine.max_sequence() == 0
    assert (await one(engine, ops.put({"id": "a", "v": 1}))).event == "INSERT"
    assert (await one(engine, ops.put({"id": "a", "v": 1}))).event is None  # no-op
    assert (await one(engine, ops.put({"id": "a", "v": 2}))).event == "MODIFY"
    r = await one(engine, ops.update({"id": "a"}, add={"v": 5}))
    assert r.event == "MODIFY" and r.item == {"id": "a", "v": Decimal(7)}
    assert (await one(engine, ops.update({"id": "a"}, add={"v": 0}))).event is None
    assert (await one(engine, ops.delete({"id": "a"}))).event == "REMOVE"
    assert (await one(engine, ops.delete({"id": "a"}))).event is None
    rows = await engine.changes(0, 100)
    assert events(rows) == ["INSERT", "MODIFY", "MODIFY", "REMOVE"]
    seqs = [r.seq for r in rows]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1
    assert await engine.max_sequence() == seqs[-1]
    for row in rows:
        rec = decode_record(row.record)
        assert rec.sequence_number == row.seq
        assert rec.event_name == row.event
        assert row.table == "Users" and row.table_id == ops.spec.table_id
        assert row.key == b"a" and row.publish is True and row.txn is None
    assert decode_record(rows[2].record).new_image == {"id": "a", "v": Decimal(7)}
    assert await item_of(engine, ops, {"id": "a"}) is None


async def test_change_rows_follow_the_tables_settings(engine: StorageEngine) -> None:
    quiet = Ops(await engine.create_table(users_spec("Quiet", stream=None, pitr=False)))
    archived = Ops(await engine.create_table(users_spec("Archived", stream=None)))
    keys = Ops(await engine.create_table(users_spec("Keys", stream=StreamView.KEYS_ONLY)))
    await one(engine, quiet.put({"id": "q"}))
    assert await engine.changes(0, 10) == []
    await one(engine, archived.put({"id": "r", "v": 1}))
    await one(engine, keys.put({"id": "k", "v": 1}))
    rows = await engine.changes(0, 10)
    assert [(r.table, r.publish) for r in rows] == [("Archived", False), ("Keys", True)]
    # a PITR table whose records carry no new image keeps it aside for restores
    assert rows[1].image is not None and decode_image(rows[1].image)["v"] == 1
    assert await item_of(engine, quiet, {"id": "q"}) == {"id": "q"}


async def test_failed_conditions_write_nothing(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    await one(engine, ops.put({"id": "a", "v": 1}, "attribute_not_exists(id)"))
    before = await engine.changes(0, 100)
    with pytest.raises(ConditionFailed):
        await one(engine, ops.put({"id": "a", "v": 2}, "attribute_not_exists(id)"))
    with pytest.raises(ConditionFailed):
        await one(
            engine, ops.update({"id": "a"}, set={"v": 3}, condition="v = :x", values={":x": 9})
        )
    with pytest.raises(ConditionFailed):
        await one(engine, ops.delete({"id": "a"}, "attribute_not_exists(id)"))
    assert await engine.changes(0, 100) == before
    assert await item_of(engine, ops, {"id": "a"}) == {"id": "a", "v": 1}


async def test_transactional_jobs_are_all_or_nothing(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    await one(engine, ops.put({"id": "c", "v": 0}))
    seq = await engine.max_sequence()
    failing = WriteJob(
        [
            ops.put({"id": "a"}),
            ops.put({"id": "b"}),
            ops.check({"id": "c"}, "v = :one", {":one": 1}),
        ],
        transactional=True,
    )
    with pytest.raises(TransactionCanceled) as info:
        await engine.write(failing)
    assert [r.code for r in info.value.reasons] == ["None", "None", "ConditionalCheckFailed"]
    assert await engine.max_sequence() == seq
    assert await item_of(engine, ops, {"id": "a"}) is None
    job = WriteJob(
        [ops.put({"id": "a"}), ops.put({"id": "b"}), ops.check({"id": "c"}, "v = :z", {":z": 0})],
        transactional=True,
    )
    assert [r.event for r in await engine.write(job)] == ["INSERT", "INSERT", None]
    rows = await engine.changes(seq, 10)
    assert [r.seq for r in rows] == [seq + 1, seq + 2]
    assert [r.txn for r in rows] == [seq + 1, seq + 1]  # one transaction: the first number


async def test_concurrent_jobs_commit_independently(engine: StorageEngine) -> None:
    """Many jobs at once (one group commit where the engine does that): the failing
    ones are left out, the others commit; numbering has no gaps."""
    ops = Ops(await engine.create_table(users_spec()))
    await one(engine, ops.put({"id": "taken"}))
    jobs = []
    for i in range(40):
        key = "taken" if i % 4 == 0 else f"k{i}"
        jobs.append(
            engine.write(WriteJob([ops.put({"id": key, "i": i}, "attribute_not_exists(id)")]))
        )
    # the same counter updated by several jobs of one group: each sees the ones before
    jobs.extend(engine.write(WriteJob([ops.update({"id": "n"}, add={"n": 1})])) for _ in range(10))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 10 and all(isinstance(f, ConditionFailed) for f in failed)
    assert (await item_of(engine, ops, {"id": "n"}))["n"] == 10
    rows = await engine.changes(0, 1000)
    assert [r.seq for r in rows] == list(range(1, 1 + 1 + 30 + 10))
    assert (await engine.table_stats(ops.spec.table_id))[0] == 1 + 30 + 1


async def test_commit_effects_applies_in_order_and_checkpoints(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    bump = [ops.update({"id": "n"}, add={"n": 2}), ops.update({"id": "n"}, add={"n": 3})]
    assert await engine.commit_effects(bump, [Checkpoint("cp.p0", 0, 10)], "here") is None
    assert (await item_of(engine, ops, {"id": "n"}))["n"] == 5
    assert await engine.read_meta(["cp.p0"]) == {"cp.p0": "10"}
    rows = await engine.changes(0, 10)
    assert events(rows) == ["INSERT", "MODIFY"]
    assert decode_record(rows[0].record).origin == "here"
    # the work from offset 5 was committed before (the position is 10): nothing is written
    again = [ops.update({"id": "n"}, add={"n": 100})]
    assert await engine.commit_effects(again, [Checkpoint("cp.p0", 5, 12)], None) == 10
    assert (await item_of(engine, ops, {"id": "n"}))["n"] == 5
    # an op that fails rolls back the whole call, checkpoints included
    bad: list[WriteOp] = [
        ops.update({"id": "n"}, add={"n": 1}),
        ops.put({"id": "n"}, "attribute_not_exists(id)"),
    ]
    with pytest.raises(ConditionFailed):
        await engine.commit_effects(bad, [Checkpoint("cp.p0", 10, 20)], None)
    assert (await item_of(engine, ops, {"id": "n"}))["n"] == 5
    assert await engine.read_meta(["cp.p0"]) == {"cp.p0": "10"}
    assert len(await engine.changes(0, 10)) == 2


def _feed(
    source: StateAt | BackupOf, archive: Any = None, chunks: list[int] | None = None
) -> RestoreFeed:
    """A restore of ``source`` whose items are stored as they come (their size computed);
    the size of every chunk converted is added to ``chunks``."""

    def convert(rows: Any) -> list[tuple[Any, object]]:
        if chunks is not None:
            chunks.append(len(rows))
        out: list[tuple[Any, object]] = []
        for pk, sk, record, image in rows:
            data = image if image is not None else record_new_image(record)[0]
            out.append(((pk, sk, data, item_size(decode_image(data)), None), pk))
        return out

    return RestoreFeed(source, convert, archive)


async def test_restore_table_reads_its_source_a_chunk_at_a_time(engine: StorageEngine) -> None:
    """A table at an instant, restored in several chunks, with archive rows numbered on."""
    ops = Ops(await engine.create_table(users_spec(recovery_days=1)))
    n = RESTORE_CHUNK + 500
    for start in range(0, n, 250):
        await engine.write(
            WriteJob([ops.put({"id": f"k{i:05d}"}) for i in range(start, start + 250)])
        )
    await asyncio.sleep(0.002)
    at_ms = time.time_ns() // 1_000_000
    await asyncio.sleep(0.002)
    await engine.write(WriteJob([ops.delete({"id": "k00000"}), ops.put({"id": "late"})]))
    before = len(await engine.changes(0, 10 * n))

    def archive(done: TableSpec, token: object, seq: int, now_ms: int) -> tuple[bytes, bytes]:
        assert done.name == "Then" and isinstance(token, bytes)
        return token, b"record-%d" % seq

    chunks: list[int] = []
    done = await engine.restore_table(
        users_spec("Then", recovery_days=1),
        _feed(StateAt(ops.spec.table_id, at_ms), archive, chunks),
    )
    assert sum(chunks) == n and len(chunks) >= 2 and max(chunks) <= RESTORE_CHUNK
    _, items = await engine.snapshot(done.table_id)
    assert sorted(decode_image(d)["id"] for _, _, d in items) == [f"k{i:05d}" for i in range(n)]
    rows = await engine.changes(0, 10 * n)
    added = rows[before:]
    assert len(added) == n and {r.table_id for r in added} == {done.table_id}
    assert [r.seq for r in added] == list(range(added[0].seq, added[0].seq + n))
    assert all(r.record == b"record-%d" % r.seq and not r.publish for r in added)
    with pytest.raises(TableExists):
        await engine.restore_table(users_spec("Then"), _feed(StateAt(ops.spec.table_id, at_ms)))


async def test_load_table(engine: StorageEngine) -> None:
    spec = users_spec("Restored")
    items = [
        (b"a", b"", encode_image({"id": "a"}), 2, None),
        (b"b", b"", encode_image({"id": "b", "exp": Decimal(5)}), 6, 5.0),
    ]

    def archive(done: TableSpec, i: int, seq: int, now_ms: int) -> tuple[bytes, bytes]:
        assert done.name == "Restored" and done.table_id > 0
        return items[i][0], b"record-%d" % seq

    done = await engine.load_table(spec, items, archive)
    assert done.table_id > 0 and done.created_at is not None
    assert await engine.get(done.table_id, b"b", b"") == (items[1][2], 6)
    assert await engine.table_stats(done.table_id) == (2, 8)
    rows = await engine.changes(0, 10)
    assert [(r.event, r.publish, r.record) for r in rows] == [
        ("INSERT", False, b"record-1"),
        ("INSERT", False, b"record-2"),
    ]
    assert await engine.expired(done.table_id, 10.0, 10) == [items[1][2]]
    with pytest.raises(TableExists):
        await engine.load_table(spec, [], None)
    plain = await engine.load_table(users_spec("Plain"), items[:1], None)
    assert await engine.table_stats(plain.table_id) == (1, 2)
    assert len(await engine.changes(0, 10)) == 2


# --- item reads ---------------------------------------------------------------------------

SORT_KEYS = [b"\x00", b"\x01", b"\x01\x00", b"\x7f", b"\x80", b"\x80\x01", b"\xfe", b"\xff"]


async def _events_table(engine: StorageEngine) -> Ops:
    ops = Ops(await engine.create_table(events_spec()))
    await engine.write(
        WriteJob([ops.put({"p": "x", "s": s, "v": i}) for i, s in enumerate(SORT_KEYS)])
    )
    await one(engine, ops.put({"p": "y", "s": b"\x00"}))
    return ops


async def test_get_and_get_many(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    await engine.write(WriteJob([ops.put({"id": k, "v": k}) for k in ("a", "b", "c")]))
    k = ops.key({"id": "b"})
    data, size = await engine.get(ops.spec.table_id, k.pk, k.sk) or (b"", 0)
    assert decode_image(data) == {"id": "b", "v": "b"} and size == item_size({"id": "b", "v": "b"})
    assert await engine.get(ops.spec.table_id, b"zz", b"") is None
    assert await engine.get(ops.spec.table_id + 1000, k.pk, k.sk) is None
    keys = [(b"c", b""), (b"missing", b""), (b"a", b"")]
    got = await engine.get_many(ops.spec.table_id, keys)
    assert [decode_image(d)["id"] for d, _ in got] == ["c", "a"]
    assert await engine.get_many(ops.spec.table_id, []) == []


async def test_range_is_bytewise_with_bounds_reverse_and_limit(engine: StorageEngine) -> None:
    ops = await _events_table(engine)
    tid = ops.spec.table_id
    pk = ops.key({"p": "x", "s": b"\x00"}).pk
    order = sorted(ops.key({"p": "x", "s": s}).sk for s in SORT_KEYS)

    async def sks(**kw: Any) -> list[bytes]:
        args: dict[str, Any] = {
            "low": None, "low_inclusive": True, "high": None, "high_inclusive": True,
            "reverse": False, "limit": 100,
        }  # fmt: skip
        args.update(kw)
        return [sk for sk, _ in await engine.range(tid, pk, **args)]

    assert await sks() == order
    # the order is by unsigned bytes: 0x80 and 0xff come after 0x7f
    assert [decode_image(d)["s"] for _, d in await engine.range(
        tid, pk, low=None, low_inclusive=True, high=None, high_inclusive=True, reverse=False,
        limit=100)] == sorted(SORT_KEYS)  # fmt: skip
    assert await sks(reverse=True) == order[::-1]
    assert await sks(limit=3) == order[:3]
    assert await sks(reverse=True, limit=2) == order[-2:][::-1]
    lo, hi = order[2], order[5]
    assert await sks(low=lo, high=hi) == order[2:6]
    assert await sks(low=lo, low_inclusive=False, high=hi, high_inclusive=False) == order[3:5]
    assert await sks(low=lo, low_inclusive=False) == order[3:]
    assert await sks(high=hi, high_inclusive=False, reverse=True) == order[:5][::-1]
    assert await engine.range(tid, b"nope", low=None, low_inclusive=True, high=None,
                              high_inclusive=True, reverse=False, limit=10) == []  # fmt: skip


async def test_scan_pages_and_segments(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(events_spec()))
    puts: list[WriteOp] = [
        ops.put({"p": f"p{i % 13}", "s": bytes([i, 0x80 + i % 3])}) for i in range(60)
    ]
    await engine.write(WriteJob(puts))
    tid = ops.spec.table_id
    expected = sorted((op.k.pk, op.k.sk) for op in puts)
    seen: list[tuple[bytes, bytes]] = []
    after = None
    while True:
        page = await engine.scan(tid, after=after, limit=7, segment=0, total_segments=1)
        if not page:
            break
        assert len(page) <= 7
        seen.extend((p, s) for p, s, _ in page)
        after = (page[-1][0], page[-1][1])
    assert seen == expected
    parts: list[tuple[bytes, bytes]] = []
    for segment in range(4):
        rows = await engine.scan(tid, after=None, limit=1000, segment=segment, total_segments=4)
        assert all(zlib.crc32(p) % 4 == segment for p, _, _ in rows)
        assert [(p, s) for p, s, _ in rows] == sorted((p, s) for p, s, _ in rows)
        parts.extend((p, s) for p, s, _ in rows)
    assert sorted(parts) == expected  # every item in exactly one segment


async def test_read_table_a_chunk_at_a_time_from_one_snapshot(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec(recovery_days=1)))
    await engine.write(WriteJob([ops.put({"id": f"k{i:02d}", "n": i}) for i in range(25)]))
    await asyncio.sleep(0.002)
    at_ms = time.time_ns() // 1_000_000
    await asyncio.sleep(0.002)
    await engine.write(WriteJob([ops.delete({"id": "k00"}), ops.put({"id": "k01", "n": -1})]))
    seq, items = await engine.snapshot(ops.spec.table_id)
    async with engine.read_table(ops.spec.table_id) as read:
        # a write after the read began is not in it (one snapshot), on every engine
        await one(engine, ops.put({"id": "zz"}))
        chunks = []
        while chunk := await read.chunk(7):
            chunks.append(chunk)
        assert read.seq == seq
    assert [len(c) for c in chunks] == [7, 7, 7, 3]
    assert [(p, s, d) for c in chunks for p, s, _, d in c] == items
    async with engine.read_table(ops.spec.table_id, at_ms) as read:
        then = [row for c in [await read.chunk(10) for _ in range(4)] for row in c]
    assert sorted(
        (p, decode_record(r).new_image if d is None else decode_image(d)) for p, _, r, d in then
    ) == sorted((f"k{i:02d}".encode(), {"id": f"k{i:02d}", "n": Decimal(i)}) for i in range(25))


async def test_snapshot_and_table_stats(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    other = Ops(await engine.create_table(users_spec("Other")))
    assert await engine.snapshot(ops.spec.table_id) == (0, [])
    await engine.write(WriteJob([ops.put({"id": k, "v": "x" * 10}) for k in ("b", "a")]))
    await one(engine, other.put({"id": "z"}))
    seq, items = await engine.snapshot(ops.spec.table_id)
    assert seq == await engine.max_sequence() == 3
    assert [(p, s) for p, s, _ in items] == [(b"a", b""), (b"b", b"")]
    # several storage ids from one snapshot (a table's items and another's)
    seq2, (mine, theirs, none) = await engine.snapshots(
        [ops.spec.table_id, other.spec.table_id, 10**6]
    )
    assert (seq2, mine, [(p, s) for p, s, _ in theirs], none) == (3, items, [(b"z", b"")], [])
    size = item_size({"id": "a", "v": "x" * 10})
    assert await engine.table_stats(ops.spec.table_id) == (2, 2 * size)
    assert await engine.table_stats(other.spec.table_id) == (1, item_size({"id": "z"}))


async def test_expired(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec(ttl_attribute="exp")))
    now = 2_000_000_000.0
    five_years = 5 * 365 * 86400.0
    exps = {"old": now - five_years - 10, "a": now - 100, "b": now - 5, "c": now, "future": now + 1}
    await engine.write(
        WriteJob([ops.put({"id": k, "exp": Decimal(int(v))}) for k, v in exps.items()])
    )
    await one(engine, ops.put({"id": "none"}))
    await one(engine, ops.put({"id": "text", "exp": "soon"}))
    got = [decode_image(d)["id"] for d in await engine.expired(ops.spec.table_id, now, 10)]
    assert got == ["a", "b", "c"]
    assert [decode_image(d)["id"] for d in await engine.expired(ops.spec.table_id, now, 2)] == [
        "a",
        "b",
    ]
    # a TTL deletion only deletes an item still expired at its cutoff
    sweep = DeleteOp(ops.spec, ops.key({"id": "future"}), ttl_cutoff=now)
    assert (await one(engine, sweep)).event is None
    sweep = DeleteOp(ops.spec, ops.key({"id": "a"}), ttl_cutoff=now)
    assert (await one(engine, sweep)).event == "REMOVE"


async def test_set_ttl_recomputes_every_item(engine: StorageEngine) -> None:
    from dataclasses import replace

    ops = Ops(await engine.create_table(users_spec()))
    now = 2_000_000_000.0
    await engine.write(
        WriteJob(
            [
                ops.put({"id": "a", "exp": Decimal(int(now - 100))}),
                ops.put({"id": "b", "exp": Decimal("199999999.9e1")}),
                ops.put({"id": "c", "other": Decimal(int(now - 100))}),
                ops.put({"id": "d"}),
            ]
        )
    )
    assert await engine.expired(ops.spec.table_id, now, 10) == []
    on = replace(ops.spec, ttl_attribute="exp")
    assert await engine.set_ttl(on) == 2
    got = [decode_image(d)["id"] for d in await engine.expired(ops.spec.table_id, now, 10)]
    assert got == ["a", "b"]
    stored = next(s for s in await engine.list_tables() if s.name == "Users")
    assert stored.ttl_attribute == "exp" and stored.epoch == on.epoch + 1
    # settings read before that change are stale: storing them would undo it
    with pytest.raises(StaleCatalog):
        await engine.set_ttl(replace(on, ttl_attribute="other"))
    assert next(s for s in await engine.list_tables() if s.name == "Users") == stored
    assert [decode_image(d)["id"] for d in await engine.expired(stored.table_id, now, 10)] == [
        "a",
        "b",
    ]
    assert await engine.set_ttl(replace(stored, ttl_attribute="other")) == 1
    got = [decode_image(d)["id"] for d in await engine.expired(ops.spec.table_id, now, 10)]
    assert got == ["c"]
    stored = next(s for s in await engine.list_tables() if s.name == "Users")
    assert await engine.set_ttl(replace(stored, ttl_attribute=None)) == 0
    assert await engine.expired(ops.spec.table_id, now, 10) == []
    with pytest.raises(TableNotFound):
        await engine.set_ttl(replace(on, name="Nope", table_id=999))


# --- the change log -------------------------------------------------------------------------


async def test_changes_paging(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    for i in range(12):
        await one(engine, ops.put({"id": f"k{i}"}))
    got: list[int] = []
    after = 0
    while page := await engine.changes(after, 5):
        assert len(page) <= 5
        got.extend(r.seq for r in page)
        after = page[-1].seq
    assert got == list(range(1, 13))
    assert await engine.changes(12, 5) == []


async def test_archive_rows_and_tail(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    other = Ops(await engine.create_table(users_spec("Other")))
    for i in range(6):
        await one(engine, ops.put({"id": "a", "v": i}))
        await one(engine, other.put({"id": "o", "v": i}))
    tid = ops.spec.table_id
    mine = [r for r in await engine.changes(0, 100) if r.table_id == tid]
    far = 2**62
    rows = await engine.archive_rows(
        tid, after_seq=0, since_ms=0, until_ms=far, before_seq=None, limit=100
    )
    assert [(s, rec) for s, _, rec in rows] == [(r.seq, r.record) for r in mine]
    assert [c for _, c, _ in rows] == [r.created_ms for r in mine]
    some = await engine.archive_rows(
        tid, after_seq=mine[1].seq, since_ms=0, until_ms=far, before_seq=mine[4].seq, limit=100
    )
    assert [s for s, _, _ in some] == [r.seq for r in mine[2:4]]
    assert len(await engine.archive_rows(
        tid, after_seq=0, since_ms=0, until_ms=far, before_seq=None, limit=2)) == 2  # fmt: skip
    first_ms = mine[0].created_ms
    assert (
        await engine.archive_rows(
            tid, after_seq=0, since_ms=0, until_ms=first_ms, before_seq=None, limit=100
        )
        == []
    )
    window = await engine.archive_rows(
        tid, after_seq=0, since_ms=mine[-1].created_ms, until_ms=far, before_seq=None, limit=100
    )
    assert window and window[-1][0] == mine[-1].seq
    pos, tail = await engine.archive_tail(
        tid, position_key="restore.pos", since_ms=0, until_ms=far, limit=100
    )
    assert pos == 0 and [s for s, _, _ in tail] == [r.seq for r in mine]
    await engine.write_meta({"restore.pos": str(mine[3].seq)})
    pos, tail = await engine.archive_tail(
        tid, position_key="restore.pos", since_ms=0, until_ms=far, limit=100
    )
    assert pos == mine[3].seq and [s for s, _, _ in tail] == [r.seq for r in mine[4:]]


async def state_at(engine: StorageEngine, table_id: int, at_ms: int) -> list[Any]:
    """The table's state at ``at_ms`` (``read_table``), read whole, in key order."""
    async with engine.read_table(table_id, at_ms) as read:
        rows = await read.chunk(1000)
        assert await read.chunk(1000) == []
    return sorted(rows, key=lambda r: (r[0], r[1]))


async def test_state_at(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec(stream=StreamView.KEYS_ONLY)))
    await engine.write(WriteJob([ops.put({"id": "a", "v": 1}), ops.put({"id": "b", "v": 1})]))
    await asyncio.sleep(0.01)
    t1 = (await engine.changes(0, 10))[-1].created_ms
    await asyncio.sleep(0.01)
    await one(engine, ops.put({"id": "a", "v": 2}))
    await one(engine, ops.delete({"id": "b"}))
    await one(engine, ops.put({"id": "c", "v": 1}))
    tid = ops.spec.table_id
    assert await state_at(engine, tid, t1 - 1000) == []
    then = await state_at(engine, tid, t1)
    assert [(p, s) for p, s, _, _ in then] == [(b"a", b""), (b"b", b"")]
    # KEYS_ONLY records carry no image: the archive kept it aside
    assert [decode_image(img)["v"] for _, _, _, img in then if img] == [1, 1]
    now = await state_at(engine, tid, 2**62)
    assert [(p, decode_image(img)["v"]) for p, _, _, img in now if img] == [(b"a", 2), (b"c", 1)]
    assert [decode_record(rec).event_name for _, _, rec, _ in now] == ["MODIFY", "INSERT"]


async def test_prune_changes(engine: StorageEngine) -> None:
    plain = Ops(await engine.create_table(users_spec("Plain", pitr=False)))
    pitr = Ops(await engine.create_table(users_spec("Pitr", recovery_days=1)))
    await one(engine, plain.put({"id": "a1"}))  # 1
    await one(engine, plain.put({"id": "a2"}))  # 2
    await one(engine, pitr.put({"id": "b1", "v": 1}))  # 3
    await one(engine, pitr.put({"id": "b1", "v": 2}))  # 4
    await one(engine, pitr.put({"id": "b2"}))  # 5
    await one(engine, pitr.delete({"id": "b2"}))  # 6
    await one(engine, pitr.put({"id": "b3"}))  # 7
    await one(engine, plain.put({"id": "a3"}))  # 8
    now = int(time.time() * 1000)

    async def seqs() -> list[int]:
        return [r.seq for r in await engine.changes(0, 100)]

    assert await seqs() == list(range(1, 9))
    # nothing is published yet: nothing goes
    assert await engine.prune_changes(upto=0, now_ms=now, limit=100) == 0
    # published: the plain table's rows go (never the newest row); PITR rows are in the window
    assert await engine.prune_changes(upto=8, now_ms=now, limit=100) == 2
    assert await seqs() == [3, 4, 5, 6, 7, 8]
    meta = await engine.read_meta(["archive.pruned", "archive.compacted"])
    assert meta["archive.pruned"] == "7"
    # two days later the window has passed: one base row per live item stays
    assert await engine.prune_changes(upto=8, now_ms=now + 2 * DAY_MS, limit=100) == 3
    assert await seqs() == [4, 7, 8]
    assert (await engine.read_meta(["archive.compacted"]))["archive.compacted"] == "7"
    state = await state_at(engine, pitr.spec.table_id, 2**62)
    assert [p for p, _, _, _ in state] == [b"b1", b"b3"]
    # a later change of b1 past the window makes its base row useless
    await one(engine, pitr.put({"id": "b1", "v": 3}))  # 9
    await one(engine, plain.put({"id": "a4"}))  # 10
    assert await engine.prune_changes(upto=10, now_ms=now + 4 * DAY_MS, limit=100) == 2
    assert await seqs() == [7, 9, 10]
    assert await engine.max_sequence() == 10
    await one(engine, plain.put({"id": "a5"}))
    assert await seqs() == [7, 9, 10, 11]  # numbering goes on


async def test_prune_respects_limit(engine: StorageEngine) -> None:
    pitr = Ops(await engine.create_table(users_spec("Pitr", recovery_days=1)))
    for i in range(6):
        await one(engine, pitr.put({"id": "k", "v": i}))
    later = int(time.time() * 1000) + 2 * DAY_MS
    assert await engine.prune_changes(upto=6, now_ms=later, limit=3) == 2  # rows 1, 2
    assert await engine.prune_changes(upto=6, now_ms=later, limit=3) == 2  # rows 3, 4
    assert [r.seq for r in await engine.changes(0, 10)] == [5, 6]


# --- backups, meta, leases, listeners -------------------------------------------------------


async def test_backups(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    await engine.write(WriteJob([ops.put({"id": k}) for k in ("b", "a", "c")]))
    info = await engine.create_backup("Users", "bk-1", "USER")
    assert (info.id, info.table, info.kind, info.items) == ("bk-1", "Users", "USER", 3)
    assert info.bytes == 3 * item_size({"id": "a"}) and info.spec.key == ops.spec.key
    await one(engine, ops.delete({"id": "a"}))
    await asyncio.sleep(0.002)
    second = await engine.create_backup("Users", "bk-2", "USER")
    assert second.items == 2
    with pytest.raises(TableNotFound):
        await engine.create_backup("Nope", "bk-3", "USER")
    assert [b.id for b in await engine.list_backups()] == ["bk-1", "bk-2"]
    assert [b.id for b in await engine.list_backups("Users")] == ["bk-1", "bk-2"]
    assert await engine.list_backups("Other") == []
    copy = await engine.restore_table(users_spec("Copy"), _feed(BackupOf("bk-1")))
    _, items = await engine.snapshot(copy.table_id)
    assert [(p, s) for p, s, _ in items] == [(b"a", b""), (b"b", b""), (b"c", b"")]
    assert decode_image(items[0][2]) == {"id": "a"}
    assert (await engine.delete_backup("bk-1")).id == "bk-1"
    assert [b.id for b in await engine.list_backups()] == ["bk-2"]
    with pytest.raises(BackupNotFound):
        await engine.restore_table(users_spec("Again"), _feed(BackupOf("bk-1")))
    assert "Again" not in [t.name for t in await engine.list_tables()]
    with pytest.raises(BackupNotFound):
        await engine.delete_backup("bk-1")


async def test_meta(engine: StorageEngine) -> None:
    assert await engine.read_meta(["relay.pos", "x"]) == {}
    await engine.write_meta({"relay.pos": "5", "relay.epoch": "2", "other": "z"})
    await engine.write_meta({"relay.pos": "6"})
    assert await engine.read_meta(["relay.pos", "x"]) == {"relay.pos": "6"}
    assert await engine.meta_with_prefix("relay.") == {"relay.pos": "6", "relay.epoch": "2"}
    assert await engine.meta_with_prefix("rel%") == {}  # no pattern matching


async def test_leases(engine: StorageEngine) -> None:
    assert await engine.try_lease("relay", "p1", 0.5) is True
    assert await engine.try_lease("relay", "p2", 0.5) is False
    assert await engine.try_lease("relay", "p1", 0.5) is True  # renewed
    assert await engine.try_lease("other", "p2", 0.5) is True  # leases are independent
    await engine.release_lease("relay", "p2")  # not p2's: no effect
    assert await engine.try_lease("relay", "p2", 0.5) is False
    await engine.release_lease("relay", "p1")
    assert await engine.try_lease("relay", "p2", 0.3) is True
    assert await engine.try_lease("relay", "p1", 0.3) is False
    await asyncio.sleep(0.6)  # expired
    assert await engine.try_lease("relay", "p1", 5) is True
    assert await engine.try_lease("relay", "p2", 5) is False


async def test_commit_listeners(engine: StorageEngine) -> None:
    ops = Ops(await engine.create_table(users_spec()))
    calls: list[str] = []
    lock = threading.Lock()

    def listener() -> None:
        with lock:
            calls.append("rang")

    engine.add_commit_listener(listener)
    await asyncio.sleep(0.2)  # a LISTEN connection may ring once when it (re)connects
    with lock:
        calls.clear()
    await one(engine, ops.put({"id": "a"}))
    for _ in range(50):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls
    engine.remove_commit_listener(listener)
    with lock:
        calls.clear()
    await one(engine, ops.put({"id": "b"}))
    await asyncio.sleep(0.1)
    assert calls == []
