"""On-demand backups: consistent while writes go on, restorable, listable, deletable."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import streamkit as sk


async def test_a_backup_is_one_instant_even_while_transactions_go_on(file_app: sk.App) -> None:
    app = file_app
    accounts = await app.create_table("Accounts", partition_key="id")
    for i in range(20):
        await accounts.put({"id": f"a{i}", "balance": 100})
    stop = asyncio.Event()

    async def transfer(n: int) -> None:
        # move money around in transactions: the total stays 2,000 at every instant
        i = 0
        while not stop.is_set():
            src, dst = f"a{(n + i) % 20}", f"a{(n + 3 * i + 1) % 20}"
            i += 1
            if src == dst:
                continue
            with contextlib.suppress(sk.TransactionCanceled):
                async with app.transaction() as tx:
                    tx.update(accounts, {"id": src}, add={"balance": -7})
                    tx.update(accounts, {"id": dst}, add={"balance": 7})

    movers = [asyncio.create_task(transfer(n)) for n in range(4)]
    try:
        backups = []
        for _ in range(5):
            await asyncio.sleep(0.02)
            backups.append(await app.backup("Accounts"))
    finally:
        stop.set()
        await asyncio.gather(*movers)
    for n, b in enumerate(backups):
        assert b.items == 20 and b.table == "Accounts" and b.kind == "USER"
        restored = await app.restore_backup(b.id, target=f"Restored{n}")
        total = sum([i["balance"] async for i in restored.scan()])
        assert total == 2000
    assert [b.id for b in await app.backups("Accounts")] == [b.id for b in backups]


async def test_backups_list_restore_delete_and_errors(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k", sort_key=("n", "N"))
    await t.put({"k": "a", "n": 1, "v": "one"})
    first = await app.backup("Things")
    await t.put({"k": "a", "n": 2, "v": "two"})
    second = await app.backup("Things")
    assert (first.items, second.items) == (1, 2)
    assert second.created_at >= first.created_at
    r = await app.restore_backup(first.id, target="Copy")
    assert [i async for i in r.scan()] == [{"k": "a", "n": 1, "v": "one"}]
    assert (await app.describe_table("Copy"))["sort_key"] == {"name": "n", "type": "N"}
    with pytest.raises(sk.TableExists):
        await app.restore_backup(first.id, target="Copy")
    with pytest.raises(sk.BackupNotFound):
        await app.restore_backup("nope", target="Other")
    with pytest.raises(sk.TableNotFound):
        await app.backup("Missing")
    with pytest.raises(sk.ValidationError):
        await app.restore_backup(first.id, target="x")  # too short a table name
    gone = await app.delete_backup(first.id)
    assert gone.id == first.id
    with pytest.raises(sk.BackupNotFound):
        await app.delete_backup(first.id)
    assert [b.id for b in await app.backups()] == [second.id]
    assert await app.list_tables() == ["Copy", "Things"]


async def test_deleting_a_pitr_table_leaves_a_system_backup(app: sk.App) -> None:
    t = await app.create_table("Things", partition_key="k")
    await t.put({"k": "a"})
    brief = await app.create_table("Brief", partition_key="k", pitr=False)
    await brief.put({"k": "a"})
    await app.delete_table("Things")
    await app.delete_table("Brief")
    (system,) = await app.backups()
    assert (system.table, system.kind, system.items) == ("Things", "SYSTEM", 1)
    back = await app.restore_backup(system.id, target="Things")
    assert [i async for i in back.scan()] == [{"k": "a"}]
