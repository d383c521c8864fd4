"""The endpoint's background jobs (exports, imports): their descriptions in the store's
settings, the list of them, and a lease that tells a job still running from one whose
process stopped.

A description is the JSON of DynamoDB's ``ExportDescription`` / ``ImportTableDescription``
(members starting with ``_`` are ours and never shown) under ``dynamodb.<kind>/<id>``;
the ids are listed, oldest first, under ``dynamodb.<kind>s`` (the last 1,000). While a
job runs, its process writes the time under ``dynamodb.<kind>/<id>/alive`` every
:data:`BEAT` seconds. A job ``IN_PROGRESS`` whose lease is older than :data:`STALE`
seconds was left by a process that stopped: it is read as ``FAILED`` (and stored so
the next time it is read), so a caller polling it is told, and its ``ClientToken`` can
be used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamkit.server._ops import Service

__all__ = ("BEAT", "STALE", "STOPPED", "Jobs", "public")

Body = dict[str, Any]
BEAT = 10.0  # seconds between two writes of a running job's lease
STALE = 60.0  # a lease this old: the job's process stopped
_KEEP = 1000  # jobs listed (the oldest are forgotten past this)
STOPPED = "ProcessStopped"  # the FailureCode of a job whose process stopped


class Jobs:
    """One kind of job: ``kind`` names its settings keys, ``status`` its status member
    (``ExportStatus``, ``ImportStatus``)."""

    def __init__(self, kind: str, status: str) -> None:
        self.kind = kind
        self.status = status
        self._index = f"dynamodb.{kind}s"

    def _key(self, job_id: str) -> str:
        return f"dynamodb.{self.kind}/{job_id}"

    def _alive_key(self, job_id: str) -> str:
        return f"dynamodb.{self.kind}/{job_id}/alive"

    # --- reading ----------------------------------------------------------------------
    async def load(self, service: Service, job_id: str) -> Body | None:
        """A job's description (None: no such job)."""
        found = await self._read(service, [job_id])
        return found[0] if found else None

    async def all(self, service: Service) -> list[Body]:
        """Every job listed, oldest first."""
        raw = (await service.store.read_meta((self._index,))).get(self._index)
        return await self._read(service, [] if not raw else list(json.loads(raw)))

    async def _read(self, service: Service, ids: list[str]) -> list[Body]:
        keys = tuple(k for i in ids for k in (self._key(i), self._alive_key(i)))
        stored = await service.store.read_meta(keys)
        out = []
        now = time.time()
        for i in ids:
            raw = stored.get(self._key(i))
            if not raw:
                continue
            desc = dict(json.loads(raw))
            if desc.get(self.status) == "IN_PROGRESS":
                alive = float(stored.get(self._alive_key(i)) or desc.get("StartTime", now))
                if now - alive > STALE:
                    desc = await self._stopped(service, i, desc)
            out.append(desc)
        return out

    async def _stopped(self, service: Service, job_id: str, desc: Body) -> Body:
        desc = {
            **desc,
            self.status: "FAILED",
            "EndTime": time.time(),
            "FailureCode": STOPPED,
            "FailureMessage": "The streamkit process running it stopped before it finished; "
            "start it again",
        }
        await self.save(service, job_id, desc)
        return desc

    # --- writing ----------------------------------------------------------------------
    async def save(self, service: Service, job_id: str, desc: Body) -> None:
        """Store a job's description."""
        await service.store.write_meta({self._key(job_id): json.dumps(desc)})

    async def add(self, service: Service, job_id: str, desc: Body) -> None:
        """Store a new job's description, lease and place in the list."""
        raw = (await service.store.read_meta((self._index,))).get(self._index)
        ids = [*([] if not raw else json.loads(raw)), job_id]
        await service.store.write_meta(
            {
                self._key(job_id): json.dumps(desc),
                self._alive_key(job_id): str(time.time()),
                self._index: json.dumps(ids[-_KEEP:]),
            }
        )

    def start(
        self, service: Service, job_id: str, run: Callable[[], Awaitable[None]]
    ) -> asyncio.Task[None]:
        """Run a job in the background of the serving process, its lease kept while it
        runs (the serving process waits for it as it waits for index backfills)."""

        async def job() -> None:
            beat = asyncio.create_task(self._beat(service, job_id))
            try:
                await run()
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat

        task = asyncio.create_task(job(), name=f"{self.kind}-{job_id}")
        service._backfills.add(task)
        task.add_done_callback(service._backfills.discard)
        return task

    async def _beat(self, service: Service, job_id: str) -> None:
        while True:
            await asyncio.sleep(BEAT)
            with contextlib.suppress(Exception):  # a missed beat is retried at the next
                await service.store.write_meta({self._alive_key(job_id): str(time.time())})


def public(desc: Body) -> Body:
    """A stored description as DynamoDB shows it (without our ``_`` members)."""
    return {k: v for k, v in desc.items() if not k.startswith("_")}
