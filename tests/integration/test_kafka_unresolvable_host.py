"""A kafka:// URL whose host does not resolve fails in bounded time, naming the host
(no broker needed): aiokafka alone would retry it for ever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.log._kafka import KafkaLog

URL = "kafka://no-such-host.invalid:9092?request_timeout_ms=1000"


async def test_opening_the_log_gives_up_on_a_host_that_does_not_resolve() -> None:
    log = KafkaLog(URL)
    started = time.monotonic()
    with pytest.raises(sk.LogError) as err:
        await log.open()
    assert time.monotonic() - started < 5
    assert not err.value.retriable
    assert "no-such-host.invalid" in str(err.value)
    assert "cannot resolve" in str(err.value)
    await log.close()


async def test_the_relay_stops_instead_of_retrying_for_ever(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/s.db", log=URL)
    await app.create_table("Users", partition_key="UserID")
    with pytest.raises(sk.LogError, match=r"no-such-host\.invalid"):
        await asyncio.wait_for(app.relay.run(), timeout=15)
    await app.close()


async def test_a_resolvable_host_among_the_bootstrap_servers_is_enough() -> None:
    # 127.0.0.1:9 resolves (nothing listens): the failure is then "cannot reach", retriable
    log = KafkaLog("kafka://no-such-host.invalid:9092,127.0.0.1:9?request_timeout_ms=1000")
    with pytest.raises(sk.LogError) as err:
        await log.open()
    assert err.value.retriable
    await log.close()
