"""The endpoint's background jobs (exports, imports): a job whose process stops is read
as FAILED once its lease is stale; a running one keeps its lease; a finished one keeps
its result."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

import streamkit as sk
from streamkit.server import _jobs
from streamkit.server._jobs import STOPPED, Jobs, public


@dataclass
class _Service:  # what a job needs of the endpoint's Service
    store: Any
    _backfills: set[asyncio.Task[Any]] = field(default_factory=set)


@pytest.fixture
def fast_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_jobs, "BEAT", 0.05)
    monkeypatch.setattr(_jobs, "STALE", 0.4)


def _desc(job_id: str) -> dict[str, Any]:
    import time

    return {"Arn": job_id, "Status": "IN_PROGRESS", "StartTime": time.time(), "_request": "x"}


async def test_a_job_whose_process_stopped_is_read_as_failed(app: sk.App, fast_lease: None) -> None:
    service = _Service(app._store)
    jobs = Jobs("thing", "Status")
    gate = asyncio.Event()

    async def run() -> None:
        await gate.wait()  # never set: the "process" stops while it runs

    await jobs.add(service, "a", _desc("a"))
    task = jobs.start(service, "a", run)
    await asyncio.sleep(1.0)  # well past STALE: the lease is what keeps it alive
    desc = await jobs.load(service, "a")
    assert desc is not None and desc["Status"] == "IN_PROGRESS"
    task.cancel()  # the process stops: no more beats, and no final description
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.6)
    desc = await jobs.load(service, "a")
    assert desc is not None
    assert (desc["Status"], desc["FailureCode"]) == ("FAILED", STOPPED)
    assert "stopped" in desc["FailureMessage"] and "EndTime" in desc
    assert "_request" not in public(desc)
    # stored so: listing shows it the same, and a new process reads it FAILED too
    assert [d["Status"] for d in await jobs.all(service)] == ["FAILED"]


async def test_a_finished_job_keeps_its_result_and_the_list_its_order(
    app: sk.App, fast_lease: None
) -> None:
    service = _Service(app._store)
    jobs = Jobs("thing", "Status")
    for job_id in ("a", "b", "c"):
        desc = _desc(job_id)
        await jobs.add(service, job_id, desc)

        async def run(job_id: str = job_id, desc: dict[str, Any] = desc) -> None:
            await asyncio.sleep(0.1)
            await jobs.save(service, job_id, {**desc, "Status": "COMPLETED"})

        jobs.start(service, job_id, run)
    await asyncio.gather(*service._backfills)
    await asyncio.sleep(0.6)  # past STALE: finished jobs are not touched
    listed = await jobs.all(service)
    assert [(d["Arn"], d["Status"]) for d in listed] == [
        ("a", "COMPLETED"),
        ("b", "COMPLETED"),
        ("c", "COMPLETED"),
    ]
    assert await jobs.load(service, "nope") is None
