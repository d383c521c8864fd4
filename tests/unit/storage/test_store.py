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
