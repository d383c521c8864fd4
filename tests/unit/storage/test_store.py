"""The Store's table catalog cache."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import streamkit as sk


async def test_a_reload_never_brings_back_settings_this_process_changed_meanwhile(
    app: sk.App,
) -> None:
    """A TTL sweep's reload that read the catalog just before an UpdateTimeToLive
    committed must not put the old settings back in the cache."""
    await app.create_table("Users", partition_key="UserID")
    store = app.store
    engine: Any = store.engine
    real = engine.list_tables
    reading = asyncio.Event()
    release = asyncio.Event()

    async def slow_list_tables() -> Any:
        specs = await real()  # the catalog as it is before the change
        reading.set()
        await release.wait()
        return specs

    engine.list_tables = slow_list_tables
    try:
        reload = asyncio.create_task(store.reload())
        await reading.wait()
        engine.list_tables = real
        changed = dataclasses.replace(await store.spec("Users"), ttl_attribute="exp")
        await engine.update_table(changed)
        store.remember(changed)
        release.set()
        await reload
    finally:
        engine.list_tables = real
    assert (await store.spec("Users")).ttl_attribute == "exp"
    await store.reload()  # a later reload reads the stored settings
    assert (await store.spec("Users")).ttl_attribute == "exp"


async def test_a_writer_with_an_old_catalog_writes_with_the_new_ttl_attribute(
    shared_storage_url: str,
) -> None:
    """B learned the catalog before A turned TTL on: B's write is refused as stale in
    its transaction and rerun with the new settings, so its expired item is swept."""
    import time

    a = sk.App(storage=shared_storage_url)
    b = sk.App(storage=shared_storage_url)
    try:
        await a.create_table("Sessions", partition_key="ID")
        t_b = b.table("Sessions")
        await t_b.put({"ID": "warm"})  # B caches the TTL-less settings
        await a.set_ttl("Sessions", "exp")
        await t_b.put({"ID": "old", "exp": int(time.time()) - 60})
        assert await a.sweep_expired() == 1
        assert await a.table("Sessions").get({"ID": "old"}) is None
        assert (await b.store.spec("Sessions")).ttl_attribute == "exp"  # B reloaded
    finally:
        await a.close()
        await b.close()
