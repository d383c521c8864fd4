"""Contract: another process's appends are seen, and its producer fences ours."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from streamkit.log import ChangeLog, Fenced, OutRecord
from tests.conformance._helpers import drain, txn_id
from tests.conformance.conftest import NewTopic

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import asyncio, sys
from streamkit.log import OutRecord, from_url

async def main(url: str, topic: str, transactional_id: str, count: str) -> None:
    async with from_url(url) as log:
        producer = log.producer(transactional_id)
        await producer.start()
        for i in range(int(count)):
            await producer.append([OutRecord(topic, b"k", b"child-%d" % i)])
        await producer.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def _run_child(url: str, topic: str, transactional_id: str, count: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        url,
        topic,
        transactional_id,
        str(count),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"the child process failed:\n{out.decode()}\n{err.decode()}"


@pytest.mark.timeout(120)
async def test_another_process_appends_and_fences(
    url: str, log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=4)
    reader = log.reader(topic)
    await reader.partitions()
    transactional_id = txn_id()
    producer = log.producer(transactional_id)
    await producer.start()
    await producer.append([OutRecord(topic, b"k", b"parent-0")])

    # the child takes over the transactional id (a restarted relay, say) and appends
    await _run_child(url, topic, transactional_id, 3)
    with pytest.raises(Fenced):
        await producer.append([OutRecord(topic, b"k", b"parent-1")])

    records = await drain(reader, 4)
    assert [r.value for r in records] == [b"parent-0", b"child-0", b"child-1", b"child-2"]
    await reader.close()
    await producer.close()
