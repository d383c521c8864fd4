"""Helpers of the global-table tests: regions, convergence, the LWW reference model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import streamkit as sk
from streamkit.records import decode_record
from streamkit.storage._versions import decode_version, version_storage_id

REGIONS = ("ap-south-1", "eu-west-1", "us-east-1")


def region_apps(
    tmp_path: Path, regions: tuple[str, ...] = REGIONS, **kw: Any
) -> tuple[dict[str, sk.App], dict[str, str]]:
    """One App per region: its own SQLite store and its own embedded log."""
    peers = {r: f"local://{tmp_path}/{r}-log" for r in regions}
    apps = {
        r: sk.App(storage=f"sqlite:///{tmp_path}/{r}.db", log=peers[r], region=r, **kw)
        for r in regions
    }
    return apps, peers


async def items(app: sk.App, table: str) -> dict[str, Any]:
    """Every item of a table by its partition key (consistent scan)."""
    spec = await app.store.spec(table)
    name = spec.key.partition.name
    return {i[name]: i async for i in app.table(table).scan(consistent=True)}


async def versions(app: sk.App, table: str) -> list[tuple[bytes, bytes, Any]]:
    """Every version row of a table (the hidden LWW state), in key order."""
    spec = await app.store.spec(table)
    sid = version_storage_id(spec.table_id)
    out: list[tuple[bytes, bytes, Any]] = []
    after = None
    while True:
        rows = await app.store.engine.scan(
            sid, after=after, limit=1000, segment=0, total_segments=1
        )
        if not rows:
            return out
        out += [(pk, sk_, decode_version(data)[0]) for pk, sk_, data in rows]
        after = (rows[-1][0], rows[-1][1])


async def records(app: sk.App, table: str | None = None) -> list[sk.ChangeRecord]:
    """Every change record in a region's archive, in commit order."""
    out: list[sk.ChangeRecord] = []
    after = 0
    while True:
        rows = await app.store.read_changes(after, 5000)
        if not rows:
            return out
        out += [decode_record(r.record) for r in rows if table is None or r.table == table]
        after = rows[-1].seq


async def converge(apps: dict[str, sk.App], table: str, timeout: float = 120.0) -> None:  # noqa: ASYNC109
    """Drain every region until no region changes any more and no replicator lags."""
    deadline = time.monotonic() + timeout
    stable = 0
    last: list[int] = []
    while stable < 2:
        if time.monotonic() > deadline:
            status = {r: await a.replication_status(table) for r, a in apps.items()}
            raise TimeoutError(f"the regions did not converge: {status}")
        for app in apps.values():
            await app.drain(timeout=max(1.0, deadline - time.monotonic()))
        tails = [await a.store.read_changes_tail() for a in apps.values()]
        lags = 0
        for app in apps.values():
            for peer in (await app.replication_status(table))["peers"]:
                lags += peer["lag_records"] or 0
                assert peer["error"] is None, peer
        if tails == last and lags == 0:
            stable += 1
        else:
            stable = 0
        last = tails
        await asyncio.sleep(0.05)


def check_origins(history: dict[str, list[sk.ChangeRecord]], key_name: str) -> None:
    """Each region's stream carries every change applied there, saying where it
    happened: every item a peer's write won holds a record of that peer's origin.
    (A region whose own writes won every key holds none of its peers' records: that
    depends on timing, so it is not asserted.)"""
    winners: dict[Any, tuple[tuple[int, str], bool]] = {}
    for region, recs in history.items():
        assert {r.origin_region for r in recs} <= set(history), (region, recs[:3])
        for r in recs:
            if r.origin_region == region:
                v = (r.created_at_ms, region)
                k = r.keys[key_name]
                if k not in winners or v > winners[k][0]:
                    winners[k] = (v, r.event_name != "REMOVE")
    for region, recs in history.items():
        assert any(r.origin_region == region for r in recs), region
        seen = {(r.keys[key_name], r.origin_region) for r in recs}
        for k, ((_, origin), exists) in winners.items():
            if exists and origin != region:
                assert (k, origin) in seen, (region, k, origin)


def lww_reference(
    history: dict[str, list[sk.ChangeRecord]], key_name: str
) -> dict[str, dict[str, Any]]:
    """The items last-writer-wins must leave: per key, the state written by the local
    write with the greatest (time, region) over every region's own writes."""
    best: dict[Any, tuple[tuple[int, str], dict[str, Any] | None]] = {}
    for region, recs in history.items():
        for r in recs:
            if r.origin_region != region:
                continue  # a replicated write: not a version of its own
            k = r.keys[key_name]
            v = (r.created_at_ms, region)
            if k not in best or v > best[k][0]:
                best[k] = (v, None if r.event_name == "REMOVE" else dict(r.new_image or {}))
    return {k: item for k, (_, item) in best.items() if item is not None}
