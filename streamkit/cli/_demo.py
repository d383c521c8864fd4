"""``streamkit demo``: the story so far, on the embedded defaults."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table as RichTable

from streamkit.cli._jsonio import dumps, render_item
from streamkit.exceptions import ConditionFailed, TableNotFound, TransactionCanceled
from streamkit.records import ChangeRecord, StreamView
from streamkit.runtime import Batch
from streamkit.storage import Table, attr, key

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("run_demo",)

USERS = "DemoUsers"
ORDERS = "DemoOrders"


async def _handlers(app: App, orders: Table, out: Console) -> None:
    """Welcome e-mails on INSERT, a filtered batch handler, a poison record, the DLQ."""
    welcomed: list[str] = []
    big: list[str] = []
    fixed = {"yes": False}

    @app.on_insert(USERS, name="demo_welcome")
    async def welcome(record: ChangeRecord) -> None:
        email = (record.new_image or {}).get("Email")
        if email:
            welcomed.append(str(email))

    @app.on_insert(
        ORDERS,
        name="demo_big_orders",
        batch_size=10,
        batch_window=0.1,
        filter={"new_image": {"Quantity": [{"numeric": [">", 10]}]}},
        bisect_on_error=True,
        retries=1,
        retry_delay=0.01,
    )
    async def big_orders(batch: Batch) -> None:
        for r in batch:
            assert r.new_image is not None
            if r.new_image.get("Note") == "poison" and not fixed["yes"]:
                raise ValueError("cannot ship a poison order")
        big.extend(str(r.keys["OrderDate"]) for r in batch)

    await orders.put({"UserID": "456", "OrderDate": "2026-03-03", "Quantity": 13, "Note": "poison"})
    await orders.put({"UserID": "456", "OrderDate": "2026-03-04", "Quantity": 20})
    async with app.running():  # relay + TTL sweeper + the two handlers
        await app.drain(timeout=60)
    out.print(f"demo_welcome sent {len(welcomed)} welcome e-mail(s): {', '.join(welcomed)}")
    out.print(f"demo_big_orders (filter Quantity > 10, batches of 10) handled orders {sorted(big)}")
    letters = [letter async for letter in app.dead_letters("demo_big_orders")]
    for letter in letters:
        assert letter.record is not None
        out.print(
            f"dead letter: {dumps(render_item(dict(letter.record.keys), dynamodb_json=False))} "
            f"[red]{letter.error_type}: {letter.error_message}[/red] after {letter.attempts} "
            "attempts (the records behind it were processed)"
        )
    fixed["yes"] = True
    summary = await app.redrive("demo_big_orders")
    out.print(f"fixed the handler and redrove the DLQ: {summary}")


async def run_demo(app: App) -> None:
    """Create two tables, write and read them, and show the change records they produced."""
    out = Console()
    out.rule("[bold]streamkit demo")
    out.print(f"storage: [cyan]{app.storage_url}[/cyan]   namespace: [cyan]{app.namespace}[/cyan]")
    for name in (USERS, ORDERS):
        with contextlib.suppress(TableNotFound):
            await app.delete_table(name)
    first_seq = max((r.seq for r in await app._store.read_changes(0, 1_000_000)), default=0)

    users = await app.create_table(
        USERS,
        partition_key="UserID",
        stream=StreamView.NEW_AND_OLD_IMAGES,
        ttl_attribute="expires_at",
    )
    orders = await app.create_table(ORDERS, partition_key="UserID", sort_key="OrderDate")
    out.print(f"created tables [bold]{USERS}[/bold] and [bold]{ORDERS}[/bold]")

    await users.put({"UserID": "123", "Name": "John Doe", "Email": "john@example.com"})
    await users.put(
        {"UserID": "456", "Name": "Ann Lee", "Email": "ann@example.com", "Tags": {"vip"}}
    )
    await users.put({"UserID": "123", "Name": "John Doe", "Email": "john@example.com"})
    out.print("put 2 users (and one identical put again: [italic]no change record[/italic])")

    try:
        await users.put(
            {"UserID": "123", "Name": "Impostor"}, condition=attr("UserID").not_exists()
        )
    except ConditionFailed:
        out.print("conditional put refused: [yellow]ConditionFailed[/yellow] (nothing written)")

    await users.update(
        {"UserID": "123"}, expression="SET #n = :n", names={"#n": "Name"}, values={":n": "Jane Doe"}
    )
    out.print("renamed user 123 with an UpdateExpression")

    async with app.transaction() as tx:
        for day in ("2026-01-05", "2026-02-11", "2026-02-20"):
            tx.put(
                orders,
                {"UserID": "123", "OrderDate": day, "Quantity": 3 if day < "2026-02" else 12},
            )
        tx.update(users, {"UserID": "123"}, add={"OrderCount": 3})
    out.print("a transaction: 3 orders and a counter, all or nothing")

    try:
        async with app.transaction() as tx:
            tx.put(orders, {"UserID": "456", "OrderDate": "2026-03-01", "Quantity": 1})
            tx.condition_check(users, {"UserID": "456"}, attr("OrderCount").gte(1))
    except TransactionCanceled as e:
        out.print(
            f"a cancelled transaction: reasons {[r.code for r in e.reasons]} (nothing written)"
        )

    feb = [o async for o in orders.query("123", sort=key("OrderDate").begins_with("2026-02"))]
    out.print(f"query orders of 123 in February: {len(feb)} found")
    big = [o async for o in orders.scan(filter=attr("Quantity").gt(10))]
    out.print(f"scan for orders with Quantity > 10: {len(big)} found")

    await users.put({"UserID": "789", "Name": "Temp", "expires_at": int(time.time()) - 5})
    swept = await app.sweep_expired()
    out.print(f"TTL sweep deleted {swept} expired item(s)")

    await users.delete({"UserID": "456"})
    await users.delete({"UserID": "nobody"})
    out.print("deleted user 456 (and an absent one: no change record)")

    item = await users.get({"UserID": "123"})
    assert item is not None
    out.print("user 123 now:", dumps(render_item(item, dynamodb_json=False)))

    out.rule("[bold]handlers")
    await _handlers(app, orders, out)
    records = [
        r
        for name in (USERS, ORDERS)
        async for r in app.changes(name, start=first_seq + 1, follow=False)
    ]
    records.sort(key=lambda r: r.sequence_number)
    txns = {r.seq for r in await app._store.read_changes(first_seq, 1_000_000) if r.txn}
    table = RichTable(title=f"change records, read back from the change log ({app.log_url})")
    for col in ("seq", "event", "table", "keys", "changed", "who"):
        table.add_column(col)
    for rec in records:
        who = "" if rec.user_identity is None else rec.user_identity.principal
        table.add_row(
            str(rec.sequence_number),
            rec.event_name,
            rec.table,
            dumps(render_item(dict(rec.keys), dynamodb_json=False)),
            ", ".join(rec.changed or ()),
            who + (" (txn)" if rec.sequence_number in txns else ""),
        )
    out.print(table)
    out.print(
        f"{len(records)} records in topics [cyan]{app.namespace}.{USERS}[/cyan] and "
        f"[cyan]{app.namespace}.{ORDERS}[/cyan]; try `streamkit tail {USERS} --start trim_horizon`"
    )
    out.rule()
