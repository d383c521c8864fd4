"""``streamkit demo``: the story so far, on the embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table as RichTable

from streamkit.cli._jsonio import dumps, render_item
from streamkit.exceptions import ConditionFailed, TableNotFound, TransactionCanceled
from streamkit.records import ChangeRecord, StreamView
from streamkit.runtime import Batch
from streamkit.storage import GlobalIndex, Table, attr, key

if TYPE_CHECKING:
    from streamkit._app import App

__all__ = ("run_demo",)

USERS = "DemoUsers"
ORDERS = "DemoOrders"
RESTORED = "DemoUsersThen"
AUDIT = "DemoAudit"
GLOBAL = "DemoGlobalUsers"


class _Mailbox:
    """A local SMTP server (aiosmtpd) the welcome handler sends real e-mail to."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.port = 0
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"

    def __enter__(self) -> _Mailbox:
        import socket

        from aiosmtpd.controller import Controller

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


async def _live(app: App, users: Table, orders: Table, out: Console, story: dict[str, Any]) -> None:
    """Handlers running while users sign up and order: welcome e-mails over SMTP, a
    filtered batch handler, a poison order in the DLQ, a TTL expiry."""
    from streamkit.handlers.audit import TableSink, audit_router, prepare
    from streamkit.handlers.welcome import welcome_router

    big: list[str] = []
    fixed = {"yes": False}

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

    with _Mailbox() as mailbox:
        app.include_router(
            welcome_router(USERS, name="demo_welcome", smtp_port=mailbox.port, retries=2)
        )
        sink = TableSink(AUDIT)
        await prepare(app, sink)
        app.include_router(
            audit_router(
                [USERS, ORDERS],
                sink,
                name="demo_audit",
                actor_attribute="changed_by",
                start=story["started"],  # this run's tables (the topics outlive them)
            )
        )
        async with app.running():  # relay + TTL sweeper + the handlers
            out.print(
                f"handlers running: {', '.join(sorted(app.handlers))} "
                f"(SMTP server on 127.0.0.1:{mailbox.port})"
            )
            for uid, name in (("u1", "Ada"), ("u2", "Grace"), ("u3", "Linus")):
                await users.put(
                    {"UserID": uid, "Name": name, "Email": f"{name.lower()}@example.com"}
                )
            out.print("3 users signed up")
            await orders.put({"UserID": "u1", "OrderDate": "2026-03-01", "Quantity": 2})
            await orders.put({"UserID": "u2", "OrderDate": "2026-03-02", "Quantity": 20})
            await orders.put(
                {"UserID": "u2", "OrderDate": "2026-03-03", "Quantity": 13, "Note": "poison"}
            )
            await orders.put({"UserID": "u3", "OrderDate": "2026-03-04", "Quantity": 40})
            await orders.update(
                {"UserID": "u1", "OrderDate": "2026-03-01"}, set={"Status": "SHIPPED"}
            )
            out.print("4 orders placed (one of them poison), one shipped")
            story["before_changes"] = datetime.now(UTC)
            await asyncio.sleep(0.01)
            await users.update({"UserID": "u3"}, set={"Name": "Linus T.", "changed_by": "support"})
            await users.delete({"UserID": "u2"})
            await users.put({"UserID": "tmp", "Name": "Trial", "expires_at": int(time.time()) - 1})
            out.print("renamed u3, deleted u2, and a trial user whose TTL has passed")
            deadline = time.monotonic() + 10
            # the TTL sweeper runs inside running(), every ttl_interval
            while await users.get({"UserID": "tmp"}) is not None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            out.print("the TTL sweeper deleted the trial user (a REMOVE by the TTL service)")
            await app.drain(timeout=60)
        out.print(
            f"demo_welcome sent {len(mailbox.received)} welcome e-mail(s) over SMTP: "
            f"{', '.join(sorted(mailbox.received))}"
        )
    story["emails"] = len(mailbox.received)
    out.print(f"demo_big_orders (filter Quantity > 10, batches of 10) shipped {sorted(big)}")
    letters = [letter async for letter in app.dead_letters("demo_big_orders")]
    for letter in letters:
        assert letter.record is not None
        out.print(
            f"dead letter: {dumps(render_item(dict(letter.record.keys), dynamodb_json=False))} "
            f"[red]{letter.error_type}: {letter.error_message}[/red] after {letter.attempts} "
            "attempts (the records behind it were processed)"
        )
    story["dead_letters"] = len(letters)
    fixed["yes"] = True
    summary = await app.redrive("demo_big_orders")
    out.print(f"fixed the handler and redrove the DLQ: {summary}")
    story["redriven"] = summary.get("redriven", 0)


async def _audit(app: App, out: Console, story: dict[str, Any]) -> None:
    """Verify the audit trail and show one item's history."""
    from streamkit.handlers.audit import TableSink, history, verify

    sink = TableSink(AUDIT)
    report = await verify(app, sink)
    out.print(
        f"audit trail verified: {report.entries} entries in {report.chains} hash chains, "
        + ("[green]intact[/green]" if report.ok else f"[red]BROKEN {report.problems}[/red]")
    )
    story["audited"] = report.entries
    table = RichTable(title=f"the history of user u3 (streamkit audit show {USERS} ...)")
    for col in ("seq", "event", "who", "Name before", "Name after"):
        table.add_column(col)
    for e in await history(app, USERS, {"UserID": "u3"}, sink):
        who = e["who"]["actor"] or (e["who"]["identity"] or {}).get("principal") or "-"
        before = (e["old_image"] or {}).get("Name", {}).get("S", "")
        after = (e["new_image"] or {}).get("Name", {}).get("S", "")
        table.add_row(str(e["sequence_number"]), e["event"], who, before, after)
    out.print(table)


async def _history(app: App, out: Console, story: dict[str, Any], started: datetime) -> None:
    """Replay, point-in-time restore and a backup."""
    events: dict[str, int] = {}

    async def count(record: ChangeRecord) -> None:
        events[record.event_name] = events.get(record.event_name, 0) + 1

    summary = await app.replay(USERS, count, since=started)
    out.print(
        f"replayed the last {(datetime.now(UTC) - started).total_seconds():.1f} s of "
        f"{USERS} into a fresh handler: {summary.records} records "
        f"({', '.join(f'{n} {e}' for e, n in sorted(events.items()))}) — "
        f"{summary.from_log} from the change log, {summary.from_archive} from the archive"
    )
    story["replayed"] = summary.records
    restored = await app.restore_to_time(USERS, at=story["before_changes"], target=RESTORED)
    names = sorted([str(i["Name"]) async for i in restored.scan()])
    out.print(
        f"restored {USERS} as it was before the rename and the deletion into "
        f"[bold]{RESTORED}[/bold]: {', '.join(names)}"
    )
    story["restored_items"] = len(names)
    backup = await app.backup(ORDERS)
    out.print(f"backed up {ORDERS}: {backup.id} ({backup.items} items)")
    story["backup"] = backup.id
    target = Path(os.getcwd()) / "streamkit-export"
    export = await app.export(USERS, to=target.as_uri(), format="dynamodb-json")
    changes = await app.export(
        USERS, to=target.as_uri(), format="parquet", since=story["before_changes"]
    )
    out.print(
        f"exported {USERS}: {export.item_count} items as DynamoDB JSON, and the "
        f"{changes.item_count} items changed since the restore point as Parquet, to "
        f"{target} (manifest-summary.json lists the files and their checksums)"
    )
    story["exported"] = export.item_count


async def _storage(app: App, users: Table, orders: Table, out: Console) -> None:
    """Writes and reads: conditions, updates, transactions, queries, scans."""
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
    await app.update_table(
        ORDERS, create_index=GlobalIndex("ByQuantity", partition_key=("Quantity", "N"))
    )
    twelve = [o async for o in orders.query(12, index="ByQuantity")]
    out.print(
        f"added a secondary index ByQuantity (backfilled): {len(twelve)} order(s) of 12 "
        "found by query, not scan"
    )
    rows = await app.execute(f'SELECT OrderDate FROM "{ORDERS}" WHERE UserID = ?', ["123"])
    out.print(f"PartiQL: SELECT OrderDate FROM {ORDERS} WHERE UserID = '123' -> {len(rows)} rows")
    item = await users.get({"UserID": "123"})
    assert item is not None
    out.print("user 123 now:", dumps(render_item(item, dynamodb_json=False)))


async def _records(app: App, out: Console, first_seq: int) -> int:
    records = [
        r
        for name in (USERS, ORDERS)
        async for r in app.changes(name, start=first_seq + 1, follow=False)
    ]
    records.sort(key=lambda r: r.sequence_number)
    txns = {r.seq for r in await app.store.read_changes(first_seq, 1_000_000) if r.txn}
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
    return len(records)


async def _regions(app: App, out: Console, story: dict[str, Any]) -> None:
    """Global tables: two regions (each an App with its own store and embedded log, in
    the demo directory), one item written in both before either hears of the other;
    last writer wins, the loser is counted, both regions end identical."""
    import shutil

    from streamkit import App as _App
    from streamkit.replication._config import settings_of
    from streamkit.replication._settings import publish_settings

    home = Path(".streamkit") / "demo-regions"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    us_r, eu_r = "us-east-1", "eu-west-1"
    logs = {r: f"local://{home.resolve()}/{r}-log" for r in (us_r, eu_r)}
    apps = {
        r: _App(storage=f"sqlite:///{home}/{r}.db", log=logs[r], region=r, namespace=app.namespace)
        for r in (us_r, eu_r)
    }
    try:
        for a in apps.values():
            spec = await a.create_table(GLOBAL, partition_key="UserID", replicas=logs)
            # say what the table is at once (the replicators would within ~2 s)
            await publish_settings(a.log, a.namespace, settings_of(await a.store.spec(spec.name)))
        us, eu = apps[us_r], apps[eu_r]
        await us.table(GLOBAL).put({"UserID": "g1", "Plan": "pro", "Region": us_r})
        await asyncio.sleep(0.005)  # eu-west-1's write comes a few ms later: it wins
        await eu.table(GLOBAL).put({"UserID": "g1", "Plan": "free", "Region": eu_r})
        out.print(f"{us_r} and {eu_r} each wrote item g1 before hearing of the other")
        async with us.running(handlers=[]), eu.running(handlers=[]):
            deadline = time.monotonic() + 10
            while True:
                items = [await a.table(GLOBAL).get({"UserID": "g1"}) for a in (us, eu)]
                conflicts = {
                    r: sum(p["conflicts"] for p in (await a.replication_status(GLOBAL))["peers"])
                    for r, a in apps.items()
                }
                if items[0] == items[1] and sum(conflicts.values()) >= 1:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the regions did not converge: {items}, {conflicts}")
                await asyncio.sleep(0.01)
        winner = render_item(items[0] or {}, dynamodb_json=False)
        out.print(f"last writer wins: both regions hold {dumps(winner)}")
        out.print(
            "conflicts (the losing write, counted where it lost): "
            + ", ".join(f"{r} {n}" for r, n in conflicts.items())
        )
        story["regions"] = f"2, identical; {sum(conflicts.values())} conflict"
    finally:
        for a in apps.values():
            await a.close()


async def run_demo(app: App) -> None:
    """The whole story: tables, writes and reads, handlers (welcome e-mails, the audit
    trail, a filtered batch handler, a poison order and the DLQ, a TTL expiry), then
    history: the audit trail verified, an item's history, replay, point-in-time
    restore, a backup, an export."""
    out = Console()
    clock = time.monotonic()
    out.rule("[bold]streamkit demo")
    out.print(
        f"storage: [cyan]{app.storage_url}[/cyan]   log: [cyan]{app.log_url}[/cyan]   "
        f"namespace: [cyan]{app.namespace}[/cyan]"
    )
    for name in (USERS, ORDERS, RESTORED, AUDIT):
        with contextlib.suppress(TableNotFound):
            await app.delete_table(name)
    for b in await app.backups():
        if b.table in (USERS, ORDERS):
            await app.delete_backup(b.id)
    first_seq = max((r.seq for r in await app.store.read_changes(0, 1_000_000)), default=0)
    started = datetime.now(UTC)
    story: dict[str, Any] = {"started": started}

    users = await app.create_table(
        USERS,
        partition_key="UserID",
        stream=StreamView.NEW_AND_OLD_IMAGES,
        ttl_attribute="expires_at",
    )
    orders = await app.create_table(ORDERS, partition_key="UserID", sort_key="OrderDate")
    out.print(f"created tables [bold]{USERS}[/bold] and [bold]{ORDERS}[/bold]")
    out.rule("[bold]tables")
    await _storage(app, users, orders, out)
    out.rule("[bold]handlers")
    await _live(app, users, orders, out, story)
    out.rule("[bold]history")
    await _audit(app, out, story)
    await _history(app, out, story, started)
    out.rule("[bold]global tables")
    await _regions(app, out, story)
    out.rule("[bold]change records")
    story["records"] = await _records(app, out, first_seq)

    summary = RichTable(title="summary", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("change records", f"{story['records']} in topics {app.namespace}.{USERS} / .{ORDERS}"),
        ("welcome e-mails sent over SMTP", story["emails"]),
        ("audit entries, hash chain verified", story["audited"]),
        ("dead letters, then redriven", f"{story['dead_letters']}, {story['redriven']}"),
        ("records replayed into a fresh handler", story["replayed"]),
        (f"items in {RESTORED} (restored to a moment ago)", story["restored_items"]),
        ("backup", story["backup"]),
        ("items exported (DynamoDB JSON)", story["exported"]),
        ("regions of a global table", story["regions"]),
        ("took", f"{time.monotonic() - clock:.1f} s"),
    ):
        summary.add_row(label, str(value))
    out.print(summary)
    out.print(f"try `streamkit tail {USERS} --start trim_horizon` or `streamkit backup list`")
    out.rule()
