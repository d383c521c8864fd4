"""The embedded log: another process's appends reach a waiting reader in milliseconds,
and the watcher thread behind that lives only while readers wait."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

from streamkit.log import TopicConfig
from streamkit.log._local import LocalLog

ROOT = Path(__file__).resolve().parents[2]

# appends `count` records one at a time, `gap` seconds apart; each value is the
# CLOCK_MONOTONIC time of its append call (one clock for every process of a machine)
_CHILD = """
import asyncio, sys, time
from streamkit.log import OutRecord, from_url

async def main(url, topic, count, gap):
    async with from_url(url) as log:
        producer = log.producer("cross-process-child")
        await producer.start()
        for i in range(int(count)):
            await asyncio.sleep(float(gap))
            await producer.append([OutRecord(topic, b"%d" % i, b"%d" % time.monotonic_ns())])
        await producer.close()

asyncio.run(main(*sys.argv[1:]))
"""


def _watchers(path: Path) -> list[str]:
    name = f"streamkit-log-watcher:{path.resolve()}"
    return [t.name for t in threading.enumerate() if t.name == name]


@pytest.mark.timeout(120)
async def test_another_process_s_appends_wake_a_waiting_reader_within_milliseconds(
    tmp_path: Path,
) -> None:
    url = f"local://{tmp_path}/log"  # the default poll_interval
    count = 40
    async with LocalLog(url) as log:
        await log.ensure_topic("t", TopicConfig(partitions=4))
        reader = log.reader("t")
        await reader.partitions()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, url, "t", str(count), "0.03", cwd=ROOT
        )
        latencies: list[float] = []
        deadline = time.monotonic() + 60
        while len(latencies) < count and time.monotonic() < deadline:
            # a long wait: only a wake-up returns it early
            for rec in await reader.fetch(timeout=5.0):
                latencies.append((time.monotonic_ns() - int(rec.value)) / 1e6)
        assert await child.wait() == 0
        await reader.close()
    assert len(latencies) == count
    latencies.sort()
    # the reader used to look every 50 ms (p50 ~25 ms); now a few ms
    assert latencies[len(latencies) // 2] < 10.0, latencies


async def test_the_watcher_thread_runs_only_while_a_reader_waits(tmp_path: Path) -> None:
    path = tmp_path / "log"
    async with LocalLog(f"local://{path}") as log:
        await log.ensure_topic("t", TopicConfig(partitions=1))
        assert _watchers(path) == []
        reader = log.reader("t")
        assert await reader.fetch(timeout=0.01) == []
        assert len(_watchers(path)) == 1
        second = log.reader("t")
        assert await second.fetch(timeout=0.01) == []
        assert len(_watchers(path)) == 1  # one per file and process, however many readers
        await reader.close()
        await second.close()
        for _ in range(200):  # it notices at its next look (0.5 s at most)
            if not _watchers(path):
                break
            await asyncio.sleep(0.01)
        assert _watchers(path) == []
