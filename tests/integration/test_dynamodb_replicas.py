"""Global tables through the endpoint: ``UpdateTable`` with ``ReplicaUpdates`` on two
served regions (each an App with its own store and embedded log), ``DescribeTable``'s
``Replicas``, writes in each region converging, and the refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error

US, EU = "us-east-1", "eu-west-1"


@pytest.fixture
def regions(tmp_path: Path) -> Iterator[dict[str, Served]]:
    logs = {r: f"local://{tmp_path}/{r}-log?poll_interval=0.02" for r in (US, EU)}
    served: dict[str, Served] = {}
    for r in (US, EU):
        app = sk.App(storage=f"sqlite:///{tmp_path}/{r}.db", log=logs[r], region=r)
        peers = {p: url for p, url in logs.items() if p != r}
        served[r] = Served(app, region=r, peers=peers).__enter__()
    try:
        yield served
    finally:
        for s in served.values():
            s.__exit__(None, None, None)


def _create(c: Any) -> None:
    c.create_table(
        TableName="Music",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def _get(c: Any, key: str) -> Any:
    return c.get_item(TableName="Music", Key={"id": {"S": key}}).get("Item")


def _eventually(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_replica_updates_make_a_global_table_that_converges(regions: dict[str, Served]) -> None:
    us, eu = regions[US].client(region_name=US), regions[EU].client(region_name=EU)
    _create(us)
    us.put_item(TableName="Music", Item={"id": {"S": "before"}, "n": {"N": "1"}})
    # each region declares the other (DynamoDB makes the other region's table itself)
    _create(eu)
    desc = us.update_table(TableName="Music", ReplicaUpdates=[{"Create": {"RegionName": EU}}])
    assert desc["TableDescription"]["Replicas"] == [{"RegionName": EU, "ReplicaStatus": "ACTIVE"}]
    assert desc["TableDescription"]["GlobalTableVersion"] == "2019.11.21"
    eu.update_table(TableName="Music", ReplicaUpdates=[{"Create": {"RegionName": US}}])
    assert eu.describe_table(TableName="Music")["Table"]["Replicas"] == [
        {"RegionName": US, "ReplicaStatus": "ACTIVE"}
    ]
    # the item written before is copied; writes in each region reach the other
    _eventually(lambda: _get(eu, "before") == {"id": {"S": "before"}, "n": {"N": "1"}})
    eu.put_item(TableName="Music", Item={"id": {"S": "from-eu"}})
    us.put_item(TableName="Music", Item={"id": {"S": "from-us"}})
    _eventually(lambda: _get(us, "from-eu") is not None and _get(eu, "from-us") is not None)
    # removing the replica makes the table regional again
    desc = us.update_table(TableName="Music", ReplicaUpdates=[{"Delete": {"RegionName": EU}}])
    assert "Replicas" not in desc["TableDescription"]


def test_replica_updates_are_checked_before_anything_changes(
    regions: dict[str, Served], tmp_path: Path
) -> None:
    us = regions[US].client(region_name=US)
    _create(us)
    cases = [
        ([{"Create": {"RegionName": "ap-south-1"}}], "is not a peer of this server"),
        ([{"Create": {"RegionName": US}}], "this endpoint's own region"),
        ([{"Delete": {"RegionName": EU}}], "is not a replica of Music"),
        ([{"Update": {"RegionName": EU}}], "are not supported"),
        ([{"Create": {"RegionName": EU}, "Delete": {"RegionName": EU}}], "and only one"),
    ]
    for updates, words in cases:
        code, message = _error(
            lambda updates=updates: us.update_table(TableName="Music", ReplicaUpdates=updates)
        )
        assert code == "ValidationException" and words in message, (updates, message)
    assert "Replicas" not in us.describe_table(TableName="Music")["Table"]
    # a server without a region cannot replicate
    app = sk.App(storage=f"sqlite:///{tmp_path}/plain.db", log=f"local://{tmp_path}/plain")
    with Served(app) as plain:
        c = plain.client()
        _create(c)
        code, message = _error(
            lambda: c.update_table(
                TableName="Music", ReplicaUpdates=[{"Create": {"RegionName": EU}}]
            )
        )
        assert code == "ValidationException" and "--region" in message


def test_serve_takes_peers_and_gives_the_app_its_region(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.integration.test_dynamodb_api import _serve_cli

    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--peer", "eu-west-1")
    assert code == 2 and not fake.calls and "give REGION=LOG_URL" in err, err
    code, err, fake = _serve_cli(monkeypatch, tmp_path, "--peer", f"{EU}=local://{tmp_path}/eu")
    assert code == 2 and not fake.calls and "--peer needs --region" in err, err
    code, err, fake = _serve_cli(
        monkeypatch, tmp_path, "--region", US, "--peer", f"{EU}=local://{tmp_path}/eu"
    )
    assert code == 0, err
    ((server, _),) = fake.calls
    assert server.app.region == US
    assert server.service.home_region == US
    assert server.service.peers == {EU: f"local://{tmp_path}/eu"}
