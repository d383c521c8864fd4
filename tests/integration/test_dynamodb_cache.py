"""``streamkit serve --cache``: the DynamoDB endpoint with the cache in front (a DAX
node), driven by boto3."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import streamkit as sk
from tests.integration.test_dynamodb_api import Served


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/api.db",
        log=f"local://{tmp_path}/log",
        namespace=f"api{uuid.uuid4().hex[:8]}",
        cache=sk.Cache(item_ttl=300, query_ttl=300),
    )
    with Served(app) as s:
        yield s


def _table(c: Any) -> None:
    c.create_table(
        TableName="Users",
        KeySchema=[
            {"AttributeName": "id", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def test_reads_through_the_endpoint_use_the_cache(served: Served, tmp_path: Path) -> None:
    c = served.client()
    _table(c)
    key = {"id": {"S": "a"}, "n": {"N": "1"}}
    c.put_item(TableName="Users", Item={**key, "v": {"S": "one"}})
    assert c.get_item(TableName="Users", Key=key)["Item"]["v"] == {"S": "one"}
    hits = served.app.cache_stats()["hits"]
    assert hits >= 1  # written through
    c.query(
        TableName="Users",
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": "a"}},
    )
    out = c.query(
        TableName="Users",
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": "a"}},
    )
    assert out["Count"] == 1
    assert served.app.cache_stats()["hits"] == hits + 1

    # ConsistentRead goes to storage: it sees a write that bypassed this cache at once
    async def bypass() -> None:
        other = sk.App(storage=served.app.storage_url, log=f"local://{tmp_path}/log2")
        try:
            await other.table("Users").put({"id": "a", "n": 1, "v": "two"})
        finally:
            await other.close()

    asyncio.run(bypass())
    hits = served.app.cache_stats()["hits"]
    got = c.get_item(TableName="Users", Key=key, ConsistentRead=True)["Item"]
    assert got["v"] == {"S": "two"}
    assert served.app.cache_stats()["hits"] == hits
    # and the eventually consistent read follows within the follower's delay
    deadline = time.monotonic() + 5
    while c.get_item(TableName="Users", Key=key)["Item"]["v"] != {"S": "two"}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    batch = c.batch_get_item(RequestItems={"Users": {"Keys": [key]}})
    assert batch["Responses"]["Users"][0]["v"] == {"S": "two"}


def test_serve_takes_the_cache_options() -> None:
    from streamkit.cli._main import cli

    out = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200)
    assert out.exit_code == 0
    for option in ("--cache ", "--cache-item-ttl", "--cache-query-ttl", "--cache-max-bytes"):
        assert option in out.output
