"""Contract: topics are created once, described truthfully, and never silently reused."""

from __future__ import annotations

import uuid

import pytest

from streamkit.exceptions import ConfigurationError, ValidationError
from streamkit.log import ChangeLog, OutRecord, TopicConfig, TopicMismatch, TopicNotFound
from tests.conformance._helpers import txn_id
from tests.conformance.conftest import NewTopic


def fresh_name() -> str:
    return f"conformance.{uuid.uuid4().hex}"


async def test_ensure_topic_is_idempotent_and_described(log: ChangeLog) -> None:
    name = fresh_name()
    config = TopicConfig(partitions=3, retention_ms=3_600_000)
    assert await log.describe_topic(name) is None
    try:
        await log.ensure_topic(name, config)
        await log.ensure_topic(name, config)
        assert await log.describe_topic(name) == config
    finally:
        await log.delete_topic(name)
    assert await log.describe_topic(name) is None


@pytest.mark.parametrize(
    ("other", "mentions"),
    [
        pytest.param(TopicConfig(partitions=4), ["partitions: has 3, wanted 4"], id="partitions"),
        pytest.param(
            TopicConfig(partitions=3, retention_ms=60_000),
            ["retention_ms: has 86400000, wanted 60000"],
            id="retention",
        ),
        pytest.param(
            TopicConfig(partitions=5, retention_ms=1_000),
            ["partitions: has 3, wanted 5", "retention_ms: has 86400000, wanted 1000"],
            id="both",
        ),
    ],
)
async def test_ensure_topic_refuses_a_different_existing_topic(
    log: ChangeLog, new_topic: NewTopic, other: TopicConfig, mentions: list[str]
) -> None:
    name = await new_topic(partitions=3)
    with pytest.raises(TopicMismatch) as info:
        await log.ensure_topic(name, other)
    assert isinstance(info.value, ConfigurationError)
    assert info.value.topic == name
    assert info.value.actual == TopicConfig(partitions=3)
    for text in mentions:
        assert text in str(info.value)
    # nothing was changed by the refused call
    assert await log.describe_topic(name) == TopicConfig(partitions=3)


async def test_deleting_a_missing_topic_is_fine(log: ChangeLog) -> None:
    await log.delete_topic(fresh_name())


async def test_bad_topic_settings_and_names_are_refused(log: ChangeLog) -> None:
    with pytest.raises(ConfigurationError):
        TopicConfig(partitions=0)
    with pytest.raises(ConfigurationError):
        TopicConfig(retention_ms=0)
    with pytest.raises(ConfigurationError):
        TopicConfig(cleanup_policy="forever")
    assert TopicConfig(cleanup_policy="delete,compact").cleanup_policy == "compact,delete"
    with pytest.raises(ValidationError):
        await log.ensure_topic("no spaces allowed", TopicConfig())


async def test_appending_to_a_missing_topic_writes_nothing(
    log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=1)
    producer = log.producer(txn_id())
    await producer.start()
    missing = fresh_name()
    with pytest.raises(TopicNotFound) as info:
        await producer.append(
            [OutRecord(topic, b"k", b"kept back"), OutRecord(missing, b"k", b"nowhere")]
        )
    assert info.value.topic == missing
    await producer.append([OutRecord(topic, b"k", b"after")])
    reader = log.reader(topic)
    records = await reader.fetch(timeout=5.0)
    assert [r.value for r in records] == [b"after"]
    with pytest.raises(TopicNotFound):
        await log.reader(missing).partitions()
    await producer.close()
    await reader.close()


async def test_malformed_records_are_refused_before_anything_is_written(
    log: ChangeLog, new_topic: NewTopic
) -> None:
    topic = await new_topic(partitions=2)
    producer = log.producer(txn_id())
    await producer.start()
    good = OutRecord(topic, b"k", b"v")
    bad_records: list[object] = [
        OutRecord(topic, "text key", b"v"),  # type: ignore[arg-type]
        OutRecord(topic, b"k", "text value"),  # type: ignore[arg-type]
        OutRecord(topic, b"k", b"v", headers=(("h", "text"),)),  # type: ignore[arg-type]
        OutRecord(topic, b"k", b"v", timestamp_ms=-1),
        OutRecord(topic, b"k", b"x" * 1_000_001),
        OutRecord(topic, b"k", b"v", partition=2),  # the topic has partitions 0 and 1
    ]
    for bad in bad_records:
        with pytest.raises(ValidationError):
            await producer.append([good, bad])  # type: ignore[list-item]
    await producer.append([OutRecord(topic, b"k", b"last")])
    reader = log.reader(topic)
    records = await reader.fetch(timeout=5.0)
    assert [r.value for r in records] == [b"last"]
    await producer.close()
    await reader.close()
