"""Consumer groups on the local log: members, heartbeats and partition ownership in SQLite.

Every member of ``(group, topic)`` has a row in ``log_members`` with its last
heartbeat; every owned partition a row in ``log_owners``. Each member, every
``session_timeout / 4`` seconds, in one write transaction: refreshes its heartbeat,
removes members silent for ``session_timeout`` (and their ownerships), computes the
assignment every live member computes (partition *p* goes to the live member at
index ``p % len(members)`` of the sorted member ids) and claims the partitions
assigned to it that nobody owns. Partitions it owns but should not are revoked
(the listener commits) and only then released, so no two members ever own one
partition. A commit checks ownership in its own transaction: a member that lost a
partition (its session expired) cannot overwrite the new owner's position.

The listener's callbacks run one at a time in the member's rebalance task (or in
``close``), and while one runs the member keeps heartbeating beside it: a slow
``on_revoked`` (a runtime waiting for its handlers) does not make the others think
the member dead and take partitions it is still working on. A partition is fetched
only once its ``on_assigned`` has returned and no longer once its ``on_revoked``
has begun. A callback that raises is logged and the rebalance goes on (as aiokafka
does): revoked partitions are released all the same; partitions whose
``on_assigned`` failed stay owned but unfetched until they move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from streamkit.exceptions import LogError
from streamkit.log._base import (
    CommitRefused,
    LogRecord,
    RebalanceListener,
    StartPosition,
    check_max_records,
    check_offset,
    now_ms,
)
from streamkit.log._local_db import partition_bounds, require_topic

if TYPE_CHECKING:
    from streamkit.log._local import LocalLog, LocalReader

__all__ = ("LocalConsumer",)

_logger = logging.getLogger("streamkit.log.local")


class LocalConsumer:
    """A consumer-group member on the local log (see :class:`~streamkit.log.LogConsumer`)."""

    def __init__(
        self,
        log: LocalLog,
        topic: str,
        *,
        group: str,
        listener: RebalanceListener,
        start: StartPosition,
        session_timeout: float,
    ) -> None:
        self._log = log
        self.topic = topic
        self.group = group
        self._listener = listener
        self._start: StartPosition = start
        self.session_ms = max(100, int(session_timeout * 1000))
        self.member = uuid.uuid4().hex
        self._reader: LocalReader | None = None
        self._owned: set[int] = set()
        self._ready: set[int] = set()  # owned, on_assigned returned, on_revoked not begun
        self._paused: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()  # the fetchable set grew
        self._failure: LogError | None = None  # why the membership stopped for good
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalConsumer({self.topic!r}, group={self.group!r}, member={self.member[:8]})"

    # --- membership ---
    async def start(self) -> None:
        """Join the group; partitions arrive through the listener."""
        if self._task is not None:
            return
        from streamkit.log._local import LocalReader

        reader = LocalReader(self._log, self.topic, group=None, partitions=None, start=self._start)
        await reader.partitions()  # raises TopicNotFound now, not in the background
        self._reader = reader
        self._task = asyncio.create_task(
            self._heartbeats(), name=f"streamkit-member-{self.member[:8]}"
        )

    async def _heartbeats(self) -> None:
        interval = self.session_ms / 4000
        while not self._stop.is_set():
            try:
                await self._beat()
            except LogError as e:
                if not e.retriable:
                    # e.g. the topic was deleted: fetch() reports it from now on
                    _logger.error("%r stopped: %s", self, e)
                    self._failure = e
                    self._changed.set()
                    return
                _logger.warning("%r: heartbeat failed, trying again: %s", self, e)
            except Exception:  # a busy database, say: try again at the next beat
                _logger.warning("%r: heartbeat failed, trying again", self, exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stop.wait()

    async def _beat(self) -> None:
        group, topic, member, session = self.group, self.topic, self.member, self.session_ms

        def run(conn: sqlite3.Connection) -> tuple[set[int], set[int]]:
            _, n = require_topic(conn, topic)
            now = now_ms()
            conn.execute(
                "INSERT INTO log_members (grp, topic, member, heartbeat_ms) VALUES (?,?,?,?) "
                "ON CONFLICT (grp, topic, member) DO UPDATE SET heartbeat_ms=excluded.heartbeat_ms",
                (group, topic, member, now),
            )
            dead = [
                m
                for (m,) in conn.execute(
                    "SELECT member FROM log_members WHERE grp=? AND topic=? AND heartbeat_ms < ?",
                    (group, topic, now - session),
                )
            ]
            for m in dead:
                conn.execute(
                    "DELETE FROM log_members WHERE grp=? AND topic=? AND member=?",
                    (group, topic, m),
                )
                conn.execute(
                    "DELETE FROM log_owners WHERE grp=? AND topic=? AND member=?",
                    (group, topic, m),
                )
            members = sorted(
                m
                for (m,) in conn.execute(
                    "SELECT member FROM log_members WHERE grp=? AND topic=?", (group, topic)
                )
            )
            index = members.index(member)
            desired = {p for p in range(n) if p % len(members) == index}
            owners = dict(
                conn.execute(
                    "SELECT part, member FROM log_owners WHERE grp=? AND topic=?", (group, topic)
                ).fetchall()
            )
            claimed = {p for p in desired if p not in owners}
            conn.executemany(
                "INSERT INTO log_owners (grp, topic, part, member) VALUES (?,?,?,?)",
                [(group, topic, p, member) for p in sorted(claimed)],
            )
            mine = {p for p, m in owners.items() if m == member} | claimed
            return desired, mine

        desired, mine = await self._log._write(run)
        before = set(self._owned)
        lost = before - mine  # taken while this member was silent too long
        release = mine - desired  # also rows left behind by a failed callback
        fresh = (mine & desired) - before
        if lost or release & before:
            await self._revoke(lost | (release & before))
        if release:
            await self._release(release)
        if fresh:
            await self._assign(fresh)

    async def _revoke(self, partitions: set[int]) -> None:
        # not fetched from now on; still owned (commits go through) while the listener runs
        self._ready -= partitions
        try:
            await self._call(self._listener.on_revoked, partitions)
        finally:
            self._owned -= partitions
            self._paused -= partitions  # as on Kafka: a pause ends with the ownership

    async def _assign(self, partitions: set[int]) -> None:
        await self._position(partitions)
        self._owned |= partitions
        if await self._call(self._listener.on_assigned, partitions):
            self._ready |= partitions & self._owned
            self._changed.set()

    async def _call(
        self, callback: Callable[[list[int]], Awaitable[None]], partitions: set[int]
    ) -> bool:
        """Await a listener callback, heartbeating beside it; False (logged) if it raised."""
        keepalive = asyncio.create_task(
            self._keep_alive(), name=f"streamkit-keepalive-{self.member[:8]}"
        )
        try:
            await callback(sorted(partitions))
        except Exception:
            _logger.exception(
                "%r: the listener's %s(%s) failed",
                self,
                getattr(callback, "__name__", "callback"),
                sorted(partitions),
            )
            return False
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        return True

    async def _keep_alive(self) -> None:
        """Refresh this member's heartbeat until cancelled (while a callback runs)."""
        group, topic, member = self.group, self.topic, self.member

        def run(conn: sqlite3.Connection) -> None:
            # an UPDATE, not an upsert: a member already declared dead stays so, and
            # finds out (and revokes what it lost) at its next full beat
            conn.execute(
                "UPDATE log_members SET heartbeat_ms=? WHERE grp=? AND topic=? AND member=?",
                (now_ms(), group, topic, member),
            )

        interval = self.session_ms / 4000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._log._write(run)
            except LogError as e:
                _logger.warning("%r: heartbeat failed: %s", self, e)

    async def _release(self, partitions: set[int]) -> None:
        group, topic, member = self.group, self.topic, self.member

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM log_owners WHERE grp=? AND topic=? AND part=? AND member=?",
                [(group, topic, p, member) for p in sorted(partitions)],
            )

        await self._log._write(run)

    async def _position(self, partitions: set[int]) -> None:
        """Start each new partition at the group's committed offset, else at ``start``."""
        reader = self._need_reader()
        group, topic, earliest = self.group, self.topic, self._start == "earliest"

        def run(conn: sqlite3.Connection) -> dict[int, int]:
            tid, _ = require_topic(conn, topic)
            committed = dict(
                conn.execute(
                    "SELECT part, off FROM log_group_offsets WHERE grp=? AND topic=?",
                    (group, topic),
                ).fetchall()
            )
            bounds = partition_bounds(conn, tid)
            return {
                p: committed.get(p, bounds[p][0] if earliest else bounds[p][1]) for p in partitions
            }

        positions = await self._log._read(run)
        for p, off in positions.items():
            await reader.seek(p, off)

    def _need_reader(self) -> LocalReader:
        if self._reader is None or self._closed:
            raise LogError("the consumer is not started (or closed)")
        return self._reader

    def assignment(self) -> list[int]:
        """The partitions owned now."""
        return sorted(self._owned)

    # --- reading ---
    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109 - a long-poll wait, as LogReader.fetch
    ) -> list[LogRecord]:
        """Records of owned, unpaused partitions, waiting up to ``timeout`` for the first."""
        check_max_records(max_records)
        reader = self._need_reader()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            if self._failure is not None:
                raise LogError(
                    f"{self!r} left the group: {self._failure}", retriable=False
                ) from self._failure
            parts = sorted(self._ready - self._paused)
            if parts:
                remaining = max(0.0, deadline - loop.time())
                records = await reader.fetch_from(parts, max_records=max_records, timeout=remaining)
                # an on_revoked may have begun while the query ran
                ready = self._ready
                return [r for r in records if r.partition in ready]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def pause(self, partitions: Sequence[int]) -> None:
        """Stop returning records of these owned partitions (until resumed or revoked)."""
        self._paused.update(p for p in partitions if p in self._owned)

    def resume(self, partitions: Sequence[int]) -> None:
        """Return records of these partitions again."""
        self._paused.difference_update(partitions)
        self._changed.set()

    def _check_owned(self, partition: int) -> None:
        if partition not in self._owned:
            raise CommitRefused(
                f"partition {partition} of {self.topic!r} is not owned by this member",
                partitions=[partition],
            )

    async def seek(self, partition: int, offset: int) -> None:
        """Read an owned partition from ``offset`` next."""
        check_offset(offset)
        self._check_owned(partition)
        await self._need_reader().seek(partition, offset)

    async def position(self, partition: int) -> int:
        """The next offset fetch returns from an owned partition."""
        self._check_owned(partition)
        return await self._need_reader().position(partition)

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """The first offset with a timestamp at or after ``timestamp_ms``."""
        return await self._need_reader().offset_for_time(partition, timestamp_ms)

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of every partition."""
        return await self._need_reader().beginning_offsets()

    async def end_offsets(self, *, settled: bool = False) -> dict[int, int]:
        """The next offset to be written in every partition (always settled here)."""
        return await self._need_reader().end_offsets()

    # --- offsets ---
    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store positions of owned partitions; CommitRefused if any is not ours."""
        items = dict(offsets)
        for p, off in items.items():
            check_offset(off, f"offset for partition {p}")
        not_mine = sorted(p for p in items if p not in self._owned)
        if not_mine:
            raise CommitRefused(
                f"partitions {not_mine} of {self.topic!r} are not owned by this member",
                partitions=not_mine,
            )
        group, topic, member = self.group, self.topic, self.member

        def run(conn: sqlite3.Connection) -> list[int]:
            require_topic(conn, topic)
            owners = dict(
                conn.execute(
                    "SELECT part, member FROM log_owners WHERE grp=? AND topic=?", (group, topic)
                ).fetchall()
            )
            refused = sorted(p for p in items if owners.get(p) != member)
            if refused:
                return refused
            at = now_ms()
            conn.executemany(
                "INSERT INTO log_group_offsets (grp, topic, part, off, committed_ms) "
                "VALUES (?,?,?,?,?) ON CONFLICT (grp, topic, part) DO UPDATE SET "
                "off = excluded.off, committed_ms = excluded.committed_ms",
                [(group, topic, p, off, at) for p, off in items.items()],
            )
            return []

        refused = await self._log._write(run)
        if refused:
            raise CommitRefused(
                f"partitions {refused} of {self.topic!r} moved to another member "
                "(this member's session expired)",
                partitions=refused,
            )

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets for the topic."""
        group, topic = self.group, self.topic

        def run(conn: sqlite3.Connection) -> dict[int, int]:
            return dict(
                conn.execute(
                    "SELECT part, off FROM log_group_offsets WHERE grp=? AND topic=?",
                    (group, topic),
                ).fetchall()
            )

        return await self._log._read(run)

    async def close(self) -> None:
        """Revoke every owned partition (the listener commits), then leave the group."""
        if self._closed:
            return
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await task  # a rebalance in progress finishes, callbacks and all
            except asyncio.CancelledError:
                raise
            except Exception:  # the heartbeat's failure does not stop the leaving
                pass
        try:
            if self._owned:
                await self._revoke(set(self._owned))
            group, topic, member = self.group, self.topic, self.member

            def run(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "DELETE FROM log_owners WHERE grp=? AND topic=? AND member=?",
                    (group, topic, member),
                )
                conn.execute(
                    "DELETE FROM log_members WHERE grp=? AND topic=? AND member=?",
                    (group, topic, member),
                )

            with contextlib.suppress(LogError):
                await self._log._write(run)
        finally:
            self._closed = True
            self._log._children.discard(self)
            if self._reader is not None:
                await self._reader.close()
