"""Changes of a table's settings never undo one another (``Store.change_spec``): each is
a read-modify-write stored only if the settings are still the ones read, else re-applied
to the latest — between requests of one App and between two Apps sharing a store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

import streamkit as sk
from streamkit.storage._spec import TableSpec

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def two_apps(shared_storage_url: str, tmp_path: Path) -> AsyncIterator[tuple[sk.App, sk.App]]:
    a = sk.App(storage=shared_storage_url, log=f"local://{tmp_path}/log")
    b = sk.App(storage=shared_storage_url, log=f"local://{tmp_path}/log")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def tagged(key: str) -> Callable[[TableSpec], TableSpec]:
    def change(spec: TableSpec) -> TableSpec:
        return replace(spec, tags=tuple(sorted({**dict(spec.tags), key: "v"}.items())))

    return change


async def test_a_ttl_change_keeps_a_tag_another_app_stored_meanwhile(
    two_apps: tuple[sk.App, sk.App],
) -> None:
    a, b = two_apps
    await a.create_table("Tbl", partition_key="id")
    assert (await a.store.spec("Tbl")).tags == ()  # a's catalog now holds the settings
    await b.store.change_spec("Tbl", tagged("owner"))
    await a.set_ttl("Tbl", "exp")  # with settings read before b's tag
    for app in (a, b):
        await app.store.reload()
        spec = await app.store.spec("Tbl")
        assert spec.tags == (("owner", "v"),) and spec.ttl_attribute == "exp"


async def test_an_index_added_by_one_app_survives_a_ttl_change_of_the_other(
    two_apps: tuple[sk.App, sk.App],
) -> None:
    a, b = two_apps
    t = await a.create_table("Tbl", partition_key="id")
    await t.put({"id": "1", "g": "x"})
    await b.store.spec("Tbl")  # b's catalog now holds the settings without the index
    await a.update_table("Tbl", create_index=sk.GlobalIndex("ByG", partition_key="g"))
    await b.set_ttl("Tbl", "exp")
    await b.store.change_spec("Tbl", tagged("k"))
    for app in (a, b):
        await app.store.reload()
        spec = await app.store.spec("Tbl")
        assert [ix.name for ix in spec.indexes] == ["ByG"]
        assert spec.ttl_attribute == "exp" and spec.tags == (("k", "v"),)
    assert [x async for x in a.table("Tbl").query("x", index="ByG")] == [{"id": "1", "g": "x"}]


async def test_concurrent_changes_in_one_app_all_land(app: sk.App) -> None:
    await app.create_table("Tbl", partition_key="id")
    await app.store.spec("Tbl")
    keys = [f"k{i}" for i in range(12)]
    await asyncio.gather(
        *(app.store.change_spec("Tbl", tagged(k)) for k in keys),
        app.set_ttl("Tbl", "exp"),
    )
    await app.store.reload()
    spec = await app.store.spec("Tbl")
    assert sorted(k for k, _ in spec.tags) == sorted(keys)
    assert spec.ttl_attribute == "exp"


async def test_a_change_that_raises_stores_nothing(app: sk.App) -> None:
    await app.create_table("Tbl", partition_key="id")
    before = await app.store.spec("Tbl")

    def refuse(spec: TableSpec) -> TableSpec:
        raise sk.ValidationError("no")

    with pytest.raises(sk.ValidationError):
        await app.store.change_spec("Tbl", refuse)
    await app.store.reload()
    assert await app.store.spec("Tbl") == before
    with pytest.raises(sk.TableNotFound):
        await app.store.change_spec("Nope", tagged("x"))
