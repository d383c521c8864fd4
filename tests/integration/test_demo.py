"""``streamkit demo`` tells the whole story, on the embedded defaults and on Kafka."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests import kafka_env


async def _demo(cwd: Path, *args: str, namespace: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamkit",
        "demo",
        *args,
        cwd=cwd,
        env={
            **os.environ,
            "STREAMKIT_NAMESPACE": namespace or f"demo{uuid.uuid4().hex[:8]}",
            "COLUMNS": "200",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    return text


def _check(text: str) -> None:
    for line in (
        "welcome e-mail(s) over SMTP: ada@example.com, ann@example.com, grace@example.com, "
        "john@example.com, linus@example.com",
        "ValueError: cannot ship a poison order",
        "redrove the DLQ: {'redriven': 1, 'failed': 0, 'pending': 0}",
        "the TTL sweeper deleted the trial user",
        "into a fresh handler: 11 records (6 INSERT, 3 MODIFY, 2 REMOVE)",
        "DemoUsersThen: Ada, Ann Lee, Grace, Jane Doe, Linus",
        "backed up DemoOrders",
        "exported DemoUsers: 4 items as DynamoDB JSON, and the 2 items changed since",
        "audit trail verified: 19 entries in",
        "│ MODIFY │ support │ Linus       │ Linus T.",
        'last writer wins: both regions hold {"Plan": "free", "Region": "eu-west-1", '
        '"UserID": "g1"}',
        "(the losing write, counted where it lost): us-east-1 0, eu-west-1 1",
    ):
        assert line in text, (line, text)
    assert "intact" in text
    assert '"level"' not in text  # no log lines interleaved with the story


async def test_the_demo_on_the_embedded_defaults(tmp_path: Path) -> None:
    namespace = f"demo{uuid.uuid4().hex[:8]}"
    _check(await _demo(tmp_path, namespace=namespace))
    # run again in the same place: it starts over cleanly
    _check(await _demo(tmp_path, namespace=namespace))


@pytest.mark.kafka
@kafka_env.needs_kafka
async def test_the_demo_on_kafka(tmp_path: Path) -> None:
    _check(await _demo(tmp_path, "--log", f"kafka://{os.environ[kafka_env.KAFKA_ENV]}"))
