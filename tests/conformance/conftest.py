"""The change-log contract's fixtures: every test runs once per backend.

``log`` is parametrized over ``local`` (always) and ``kafka`` (when
``STREAMKIT_TEST_KAFKA`` names a broker, e.g. ``127.0.0.1:9092``). With the
variable unset the kafka params are skipped, saying why; with it set and the broker
unreachable, ``log.open()`` raises and the test fails: a Kafka test never skips
because Kafka is down.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from streamkit.log import ChangeLog, TopicConfig, from_url
from tests import kafka_env

# Short deadlines keep a failing Kafka test from hanging for the defaults' 10-30 s.
_KAFKA_OPTIONS = "request_timeout_ms=8000&append_timeout=15"
# Readers in another process poll; prune runs by itself so retention is observable.
_LOCAL_OPTIONS = "poll_interval=0.02&prune_interval=0.2"

NewTopic = Callable[..., Awaitable[str]]


def log_url(backend: str, tmp_path: Path) -> str:
    """The URL of the backend under test (the same for every instance in one test)."""
    return kafka_env.log_url(
        backend, tmp_path, local_options=_LOCAL_OPTIONS, kafka_options=_KAFKA_OPTIONS
    )


@pytest.fixture(params=[pytest.param("local", id="local"), kafka_env.kafka_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """``"local"`` or ``"kafka"``."""
    param: str = request.param
    return param


@pytest.fixture
def url(backend: str, tmp_path: Path) -> str:
    """The change-log URL under test."""
    return log_url(backend, tmp_path)


@pytest.fixture
async def log(url: str) -> AsyncIterator[ChangeLog]:
    """An open change log of the backend under test."""
    change_log = from_url(url)
    await change_log.open()
    try:
        yield change_log
    finally:
        await change_log.close()


@pytest.fixture
async def other_log(url: str) -> AsyncIterator[ChangeLog]:
    """A second, independent instance on the same log (another process, in effect)."""
    change_log = from_url(url)
    await change_log.open()
    try:
        yield change_log
    finally:
        await change_log.close()


@pytest.fixture
async def new_topic(url: str, log: ChangeLog) -> AsyncIterator[NewTopic]:
    """Create a fresh ``uuid4`` topic; every topic made is deleted after the test."""
    made: list[str] = []

    async def make(partitions: int = 8, retention_ms: int = 86_400_000) -> str:
        name = f"conformance.{uuid.uuid4().hex}"
        await log.ensure_topic(name, TopicConfig(partitions=partitions, retention_ms=retention_ms))
        made.append(name)
        return name

    yield make
    # the test's readers go first: a Kafka consumer of a deleted topic logs errors
    await log.close()
    async with from_url(url) as cleaner:
        for name in made:
            await cleaner.delete_topic(name)
