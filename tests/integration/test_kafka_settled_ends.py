"""Kafka-only: ``end_offsets(settled=True)`` waits for a transaction that had records in
the log when it was called, and answers as it is after 5 s.

A read-committed end (the last stable offset) stops before an open transaction's first
record; Kafka moves it on when the transaction's markers are written, which can lag the
commit's return (long while a new topic's leaders settle, as a CI run showed). An open
transaction held by a raw aiokafka producer stands in for that lag here.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from streamkit.log import ChangeLog, OutRecord, TopicConfig, from_url
from tests.kafka_env import KAFKA_ENV, needs_kafka

pytestmark = [pytest.mark.kafka, needs_kafka, pytest.mark.timeout(60)]


@pytest.fixture
async def setup() -> AsyncIterator[tuple[ChangeLog, str, AIOKafkaProducer]]:
    servers = os.environ[KAFKA_ENV]
    log = from_url(f"kafka://{servers}")
    await log.open()
    topic = f"settle-{uuid.uuid4().hex}"
    await log.ensure_topic(topic, TopicConfig(partitions=2))
    raw = AIOKafkaProducer(bootstrap_servers=servers, transactional_id=f"raw-{uuid.uuid4().hex}")
    await raw.start()
    yield log, topic, raw
    await raw.stop()
    await log.delete_topic(topic)
    await log.close()


async def _committed_one(log: ChangeLog, topic: str) -> None:
    producer = log.producer(f"settle-{uuid.uuid4().hex}")
    await producer.start()
    await producer.append([OutRecord(topic, None, b"before", partition=0)])
    await producer.close()


async def test_a_settled_end_waits_for_a_transaction_open_when_it_was_asked(
    setup: tuple[ChangeLog, str, AIOKafkaProducer],
) -> None:
    log, topic, raw = setup
    await _committed_one(log, topic)  # offsets 0 (record) and 1 (marker) of partition 0
    reader = log.reader(topic)
    assert await reader.end_offsets(settled=True) == {0: 2, 1: 0}  # its marker written
    await raw.begin_transaction()
    await raw.send_and_wait(topic, b"open", partition=0)  # offset 2, not yet committed
    as_is = await reader.end_offsets()
    assert as_is[0] == 2  # stops before the open transaction
    asked = asyncio.create_task(reader.end_offsets(settled=True))
    await asyncio.sleep(0.5)
    assert not asked.done()  # waits for the open transaction
    await raw.commit_transaction()
    settled = await asyncio.wait_for(asked, 10)
    assert settled[0] == 4  # past its record and its commit marker
    assert settled[1] == 0
    await reader.close()


async def test_a_settled_end_answers_as_it_is_after_its_bound(
    setup: tuple[ChangeLog, str, AIOKafkaProducer],
) -> None:
    """Also when the log's request timeout is shorter than the 5 s wait: it bounds each
    request, not the wait."""
    log, topic, raw = setup
    await _committed_one(log, topic)
    short = from_url(f"kafka://{os.environ[KAFKA_ENV]}?request_timeout_ms=2000")
    await short.open()
    reader = short.reader(topic)
    await raw.begin_transaction()
    await raw.send_and_wait(topic, b"open", partition=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = await reader.end_offsets(settled=True)  # the transaction stays open throughout
    waited = loop.time() - started
    assert got == {0: 2, 1: 0}
    assert 4.5 < waited < 8, waited
    await raw.abort_transaction()
    await reader.close()
    await short.close()
