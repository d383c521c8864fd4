"""What the Kafka-backed tests share: the broker address, the backend param, the broker scripts.

``STREAMKIT_TEST_KAFKA`` names the broker (``make test`` starts one and sets it). Unset,
Kafka params are skipped and say why; set but unreachable, the tests fail.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

KAFKA_ENV = "STREAMKIT_TEST_KAFKA"
SCRIPTS = Path(__file__).resolve().parents[1] / "compose" / "kafka"
SKIP_REASON = (
    f"{KAFKA_ENV} is not set, so there is no Kafka broker to test against: start one with "
    f"compose/kafka/kafka-up.sh and set {KAFKA_ENV}=127.0.0.1:9092 (`make test` does both)"
)

needs_kafka = pytest.mark.skipif(not os.environ.get(KAFKA_ENV), reason=SKIP_REASON)
"""Mark a Kafka-only test: skipped (saying why) without a broker, failing if it is down."""


def kafka_param() -> Any:
    """The ``"kafka"`` param of a backend fixture, skipped (with the reason) without a broker."""
    marks: list[pytest.MarkDecorator] = [pytest.mark.kafka]
    if not os.environ.get(KAFKA_ENV):
        marks.append(pytest.mark.skip(reason=SKIP_REASON))
    return pytest.param("kafka", id="kafka", marks=marks)


def log_url(backend: str, tmp_path: Path, *, local_options: str, kafka_options: str) -> str:
    """The change-log URL of a backend under test."""
    if backend == "local":
        return f"local://{tmp_path}/log?{local_options}"
    return f"kafka://{os.environ[KAFKA_ENV]}?{kafka_options}"


def script_env() -> dict[str, str]:
    """The environment for compose/kafka's scripts: the test broker's port."""
    env = dict(os.environ)
    if "KAFKA_PORT" not in env:
        env["KAFKA_PORT"] = os.environ[KAFKA_ENV].split(",")[0].rsplit(":", 1)[1]
    return env


async def broker(script: str, *args: str) -> float:
    """Run one of compose/kafka's scripts; returns how long it took."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPTS / script),
        *args,
        env=script_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"{script} {args} failed: {out.decode()}\n{err.decode()}"
    return time.monotonic() - started
