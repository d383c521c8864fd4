"""Global tables on Kafka: three regions writing at once, two of them each on its own
Kafka broker (``STREAMKIT_TEST_KAFKA``, ``STREAMKIT_TEST_KAFKA2``), the third on its
embedded log (regions share one namespace, so two regions on one broker would be one
log: refused). They converge to what last-writer-wins gives over the same history."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest

import streamkit as sk
from tests import kafka_env
from tests.unit.replication.helpers import (
    check_origins,
    converge,
    items,
    lww_reference,
    records,
    versions,
)
from tests.unit.replication.test_convergence import workload

KAFKA2_ENV = "STREAMKIT_TEST_KAFKA2"

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not os.environ.get(kafka_env.KAFKA_ENV) and not os.environ.get(KAFKA2_ENV),
        reason=(
            f"neither {kafka_env.KAFKA_ENV} nor {KAFKA2_ENV} is set: no Kafka brokers to "
            "replicate between. Start two (compose/kafka/kafka-up.sh, and again with "
            f"KAFKA_PORT=9094) and set {kafka_env.KAFKA_ENV}=127.0.0.1:9092 "
            f"{KAFKA2_ENV}=127.0.0.1:9094 (`make test` does both)"
        ),
    ),
]


def _brokers() -> tuple[str, str]:
    one, two = os.environ.get(kafka_env.KAFKA_ENV), os.environ.get(KAFKA2_ENV)
    # one broker named and not the other is a broken test environment, not a skip
    assert one and two, (
        f"{kafka_env.KAFKA_ENV}={one!r} and {KAFKA2_ENV}={two!r}: the Kafka replication "
        "test needs two brokers (`make test` starts both)"
    )
    return one, two


async def _converge(apps: dict[str, sk.App]) -> None:
    """``converge``, riding out a replicator's restart (a fresh broker answers
    GroupCoordinatorNotAvailable at first: the supervisor restarts the runner)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            await converge(apps, "Items", timeout=max(1.0, deadline - time.monotonic()))
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.mark.timeout(90)
async def test_three_regions_on_two_kafka_brokers_converge(tmp_path: Path) -> None:
    one, two = _brokers()
    peers = {
        "us-east-1": f"kafka://{one}",
        "eu-west-1": f"kafka://{two}",
        "ap-south-1": f"local://{tmp_path}/ap-south-1-log",
    }
    namespace = f"gt{uuid.uuid4().hex[:10]}"  # fresh topics on both brokers
    apps = {
        r: sk.App(storage=f"sqlite:///{tmp_path}/{r}.db", log=url, region=r, namespace=namespace)
        for r, url in peers.items()
    }
    started = time.monotonic()
    for app in apps.values():
        await app.create_table("Items", partition_key="K", replicas=peers)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.running(handlers=[]))
            await asyncio.gather(
                *(workload(app, r, seed=j, n=80) for j, (r, app) in enumerate(apps.items()))
            )
            await _converge(apps)
            final = {r: await items(a, "Items") for r, a in apps.items()}
            hidden = {r: await versions(a, "Items") for r, a in apps.items()}
            statuses = {r: await a.replication_status("Items") for r, a in apps.items()}
        history = {r: await records(a, "Items") for r, a in apps.items()}
    finally:
        for app in apps.values():
            await app.close()
    assert final["us-east-1"] == final["eu-west-1"] == final["ap-south-1"]
    assert final["us-east-1"] == lww_reference(history, "K")
    assert hidden["us-east-1"] == hidden["eu-west-1"] == hidden["ap-south-1"]
    check_origins(history, "K")
    assert all(p["error"] is None for s in statuses.values() for p in s["peers"])
    assert time.monotonic() - started < 60


@pytest.mark.timeout(90)
async def test_a_region_joins_a_table_in_use_across_two_kafka_brokers(tmp_path: Path) -> None:
    one, two = _brokers()
    peers = {"us-east-1": f"kafka://{one}", "eu-west-1": f"kafka://{two}"}
    namespace = f"gj{uuid.uuid4().hex[:10]}"
    apps = {
        r: sk.App(storage=f"sqlite:///{tmp_path}/{r}.db", log=url, region=r, namespace=namespace)
        for r, url in peers.items()
    }
    us, eu = apps["us-east-1"], apps["eu-west-1"]
    try:
        t = await us.create_table("Items", partition_key="K")
        for i in range(1200):  # more than one log transaction and one apply chunk
            await t.put({"K": f"old{i}", "n": i})
        await t.delete({"K": "old0"})
        await eu.create_table("Items", partition_key="K", replicas=peers)
        async with us.running(handlers=[]), eu.running(handlers=[]):
            await us.update_table("Items", replicas=peers)
            await asyncio.gather(
                workload(us, "us-east-1", seed=1, n=40), workload(eu, "eu-west-1", seed=2, n=40)
            )
            await _converge(apps)
            final = {r: await items(a, "Items") for r, a in apps.items()}
            hidden = {r: await versions(a, "Items") for r, a in apps.items()}
    finally:
        for app in apps.values():
            await app.close()
    assert final["us-east-1"] == final["eu-west-1"]
    # items written while the table was regional have no version row where they were
    # written; their copies carry (0, us-east-1), which loses to any write just the same
    assert [h for h in hidden["eu-west-1"] if h[2].ts > 0] == hidden["us-east-1"]
    assert (
        final["eu-west-1"]["old1199"] == {"K": "old1199", "n": 1199}
        and "old0" not in final["eu-west-1"]
    )
