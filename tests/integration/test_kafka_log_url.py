"""Kafka-only, no broker needed: the URL, lazy loading, and an unreachable broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from streamkit.exceptions import ConfigurationError
from streamkit.log import LogUnavailable, from_url
from streamkit.log._kafka import KafkaLog


def test_importing_streamkit_does_not_import_aiokafka() -> None:
    code = (
        "import sys, streamkit, streamkit.log\n"
        "from streamkit.log import from_url\n"
        "from_url('local:///tmp/never-opened')\n"
        "assert 'aiokafka' not in sys.modules, 'aiokafka was imported'\n"
        "from_url('kafka://127.0.0.1:9092')\n"
        "assert 'aiokafka' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        pytest.param("kafka://127.0.0.1:9092", ["127.0.0.1:9092"], id="one"),
        pytest.param("kafka://a:1,b:2", ["a:1", "b:2"], id="two"),
        pytest.param("kafka://broker", ["broker:9092"], id="default-port"),
        pytest.param("kafka://[::1]:9093", ["[::1]:9093"], id="ipv6"),
    ],
)
def test_bootstrap_servers(url: str, servers: list[str]) -> None:
    assert KafkaLog(url).bootstrap_servers == servers


def test_security_options_and_redaction() -> None:
    log = KafkaLog(
        "kafka://b1:9092,b2:9092?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512"
        "&sasl_plain_username=app&sasl_plain_password=s%3Dcr%26t&request_timeout_ms=3000"
    )
    assert "s%3Dcr%26t" not in log.url
    assert "sasl_plain_password=***" in log.url
    assert "s=cr&t" not in repr(log)
    kwargs = log.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "app"
    assert kwargs["sasl_plain_password"] == "s=cr&t"
    assert kwargs["ssl_context"] is not None
    assert kwargs["request_timeout_ms"] == 3000


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("kafka://", id="no-broker"),
        pytest.param("kafka://h:notaport", id="bad-port"),
        pytest.param("kafka://h:9092?colour=blue", id="unknown-option"),
        pytest.param("kafka://h:9092?request_timeout_ms=soon", id="bad-number"),
        pytest.param("kafka://h:9092?security_protocol=SMOKE", id="bad-protocol"),
        pytest.param("kafka://h:9092?ssl_cafile=/ca.pem", id="ssl-without-ssl"),
        pytest.param("kafka://h:9092?append_timeout=90", id="append-outlives-transaction"),
        pytest.param("kafka://h:9092?append_timeout=1&append_timeout=2", id="repeated"),
        pytest.param("kafka:/h:9092", id="not-a-url"),
        pytest.param("redis://h:6379", id="other-scheme"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        from_url(url)


async def test_an_unreachable_broker_fails_fast() -> None:
    # a port nothing listens on: bind one, then close it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = from_url(f"kafka://127.0.0.1:{port}?request_timeout_ms=2000")
    started = time.monotonic()
    with pytest.raises(LogUnavailable) as info:
        await log.open()
    assert time.monotonic() - started < 5
    assert info.value.retriable
    assert info.value.__cause__ is not None  # the aiokafka error, chained
    await log.close()
