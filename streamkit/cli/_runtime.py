"""Running an App and watching it: ``run``, ``relay``, ``status``, ``tail`` and
``dlq list / redrive``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamkit.cli._common import (
    EXIT_USAGE,
    _fail,
    _load_app,
    _run,
    _run_app,
    _run_read,
    _safe_url,
    _settings,
)
from streamkit.cli._jsonio import dumps, render_item
from streamkit.cli._options import JsonOpt

if TYPE_CHECKING:
    from streamkit._app import App
    from streamkit.records import ChangeRecord
    from streamkit.runtime._registry import HandlerSpec

__all__ = ("register",)

AppArg = Annotated[str, typer.Argument(help="module:app that declares the handler")]


async def _in_commit_order(
    app: App, table: str, start: Any, *, follow: bool, poll: float = 0.5
) -> AsyncIterator[ChangeRecord]:
    """A table's change records in sequence-number (commit) order across partitions.

    ``app.changes()`` keeps each item's order only; this merges the partitions: a record
    is let out once every partition has either a later record buffered or been read up
    to its end (anything it gets later was committed later, so has a larger number).
    """
    import heapq

    from streamkit.capture._changes import _check_start, _position
    from streamkit.capture._relay import table_topic
    from streamkit.records import decode_record

    _check_start(start)
    log = app.log
    topic = table_topic(app.namespace, table)
    await log.open()
    while await log.describe_topic(topic) is None:
        # nothing published yet: as app.changes() does, refuse what would wait for ever
        spec = await app.store.spec(table)  # TableNotFound
        if spec.stream is None:
            from streamkit.exceptions import ConfigurationError

            raise ConfigurationError(f"table {table!r} has no stream: it records no changes")
        if not follow:
            return
        await asyncio.sleep(poll)
    min_seq = start if isinstance(start, int) else None
    reader = log.reader(topic)
    try:
        await _position(reader, start)
        stop_at = None if follow else await reader.end_offsets()
        heap: list[tuple[int, int, int, ChangeRecord]] = []
        buffered: dict[int, int] = {}
        while True:
            for rec in await reader.fetch(max_records=500, timeout=poll):
                if stop_at is not None and rec.offset >= stop_at.get(rec.partition, 0):
                    continue
                record = decode_record(rec.value)
                if min_seq is not None and record.sequence_number < min_seq:
                    continue
                heapq.heappush(heap, (record.sequence_number, rec.partition, rec.offset, record))
                buffered[rec.partition] = buffered.get(rec.partition, 0) + 1
            ends = stop_at if stop_at is not None else await reader.end_offsets()
            done = {p for p, end in ends.items() if await reader.position(p) >= end}
            while heap and all(p in done or buffered.get(p, 0) for p in ends):
                _, p, _, record = heapq.heappop(heap)
                buffered[p] -= 1
                yield record
            if stop_at is not None and not heap and len(done) == len(ends):
                return
    finally:
        await reader.close()


_WAITING_EVERY = 5.0  # seconds between the log lines of a handler that has not started


async def _why_not_started(app: App, spec: HandlerSpec) -> str:
    """Why ``spec``'s handler has not started yet, naming where it looked."""
    from streamkit.capture._relay import table_topic
    from streamkit.exceptions import StreamkitError, TableNotFound

    storage = _safe_url(app.storage_url)
    try:
        table = await app.store.spec(spec.table)
    except TableNotFound:
        return f"table {spec.table!r} does not exist in storage {storage}"
    except StreamkitError as e:
        return f"cannot read the tables of storage {storage}: {type(e).__name__}: {e}"
    if table.stream is None:
        return f"table {spec.table!r} has no stream"
    topic = table_topic(app.namespace, spec.table)
    try:
        found = await app.log.describe_topic(topic)
    except StreamkitError as e:
        return f"cannot reach the log {_safe_url(app.log_url)}: {type(e).__name__}: {e}"
    if found is None:
        return (
            f"topic {topic!r} does not exist yet in the log {_safe_url(app.log_url)}: the relay "
            f"of storage {storage} and namespace {app.namespace!r} creates it - is one running?"
        )
    return f"joining consumer group of topic {topic!r} in the log {_safe_url(app.log_url)}"


async def _supervise(app: App, stop: asyncio.Event, log: Any, start_timeout: float | None) -> None:
    """Inside ``app.running()``: return when ``stop`` is set or a background task (relay,
    TTL sweeper, handler) has failed for good (leaving the block raises its error). While
    a handler has not started, log why every few seconds; after ``start_timeout`` s,
    exit 1 with the reason."""

    loop = asyncio.get_running_loop()
    started = loop.time()
    next_report = started + _WAITING_EVERY
    while not stop.is_set():
        # the running() block's tasks and handler runners (App keeps them private)
        if any(t.done() and not t.cancelled() and t.exception() is not None for t in app._tasks):
            log.error("stopping: a background task failed")
            return
        waiting = [r.spec for r in app._runners.values() if not r.ready.is_set()]
        now = loop.time()
        late = start_timeout is not None and now - started >= start_timeout
        if waiting and (late or now >= next_report):
            reasons = [(spec, await _why_not_started(app, spec)) for spec in waiting]
            if late:
                spec, why = reasons[0]
                _fail(
                    f"handler {spec.name!r} did not start within --start-timeout "
                    f"{start_timeout:g} s: {why}"
                )
            for spec, why in reasons:
                log.warning(
                    "handler not started yet; still trying",
                    handler=spec.name,
                    table=spec.table,
                    reason=why,
                    waited_s=round(now - started),
                )
            next_report = now + _WAITING_EVERY
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await stop.wait()


def register(cli: typer.Typer) -> None:
    """Add ``tail``, ``relay``, ``status``, ``run`` and the ``dlq`` commands to ``cli``."""

    @cli.command("tail")
    def tail(
        table: str,
        start: Annotated[
            str, typer.Option(help="trim_horizon, latest, an ISO time (UTC) or a sequence number")
        ] = "latest",
        follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep waiting.")] = True,
        images: Annotated[bool, typer.Option("--images", help="Show old and new images.")] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="One DynamoDB Streams record (JSON) per line.")
        ] = False,
    ) -> None:
        """Show a table's change records as they arrive in the log, in commit order."""
        from datetime import UTC, datetime

        begin: Any = start
        if start.isdigit():
            begin = int(start)
        elif start not in ("trim_horizon", "latest"):
            try:
                begin = datetime.fromisoformat(start)
            except ValueError:
                _fail(f"--start {start!r} is not trim_horizon, latest, a time or a sequence number")
            if begin.tzinfo is None:
                begin = begin.replace(tzinfo=UTC)

        async def go(app: App) -> None:
            from rich.console import Console

            out = Console(highlight=False)
            async for record in _in_commit_order(app, table, begin, follow=follow):
                if as_json:
                    typer.echo(dumps(record.to_dynamodb_json()))
                    continue
                keys = dumps(render_item(dict(record.keys), dynamodb_json=False))
                colour = {"INSERT": "green", "MODIFY": "yellow", "REMOVE": "red"}.get(
                    record.event_name, "white"
                )
                when = f"{record.created_at:%H:%M:%S.%f}"[:-3]
                event = f"[{colour}]{record.event_name:<6}[/{colour}]"
                line = f"{when}  {record.sequence_number:>8}  {event}  {keys}"
                if record.changed:
                    line += f"  changed: {', '.join(record.changed)}"
                if record.user_identity is not None:
                    line += f"  by {record.user_identity.principal}"
                out.print(line)
                if images:
                    for label, image in (("old", record.old_image), ("new", record.new_image)):
                        if image is not None:
                            rendered = dumps(render_item(dict(image), dynamodb_json=False))
                            out.print(f"    {label}: {rendered}")

        try:
            _run_read(go)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

    @cli.command("relay")
    def relay() -> None:
        """Run the capture relay alone: publish committed changes to the log until stopped."""

        async def go(app: App) -> None:
            await app.relay.run()

        try:
            _run(go)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

    @cli.command("status")
    def status(
        target: Annotated[
            str | None,
            typer.Argument(help="module:app to also show its handlers (lag, iterator age, DLQ)."),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Capture progress (and any table whose capture is set aside: FAILING) and, given
        module:app, each handler's lag, iterator age, DLQ depth and hours of retention
        headroom."""

        async def go(app: App) -> dict[str, Any]:
            info: dict[str, Any] = {
                "storage": app.storage_url,
                "log": app.log_url,
                "relay": await app.capture_status(),
            }
            if target is not None:
                info["handlers"] = await app.handler_status()
            return info

        info = _run_app(_load_app(target), go) if target is not None else _run_read(go)
        if as_json:
            typer.echo(dumps(info))
            return
        r = info["relay"]
        typer.echo(f"storage  {info['storage']}\nlog      {info['log']}")
        typer.echo(
            f"relay    published up to #{r['published_up_to']} of #{r['latest_committed']}"
            f"  ({r['behind']} behind"
            + (
                f", oldest waiting {r['oldest_unpublished_age_s']}s)"
                if r["oldest_unpublished_age_s"] is not None
                else ")"
            )
        )
        for f in r.get("failing", []):
            typer.echo(
                f"FAILING  table {f['table']}: change capture set aside since {f['since']}; "
                f"rows kept in storage, not published: {f['rows_kept']}\n"
                f"         {f['error']}"
            )
        if "handlers" in info:
            from rich.console import Console
            from rich.table import Table as RichTable

            grid = RichTable("handler", "table", "lag", "iterator age", "DLQ", "headroom")
            for h in info["handlers"]:
                headroom = h["retention_headroom_h"]
                grid.add_row(
                    h["handler"],
                    h["table"],
                    str(h["lag"]),
                    f"{h['iterator_age_s']:.1f}s",
                    str(h["dlq_depth"]),
                    "forever" if headroom is None else f"{headroom:.1f}h",
                )
            Console().print(grid)

    @cli.command("run")
    def run(
        target: Annotated[
            str | None,
            typer.Argument(help="module:app, e.g. shop.handlers:app (default: --app)"),
        ] = None,
        handler: Annotated[
            list[str] | None,
            typer.Option("--handler", "-h", help="Run only this handler (repeatable)."),
        ] = None,
        metrics_port: Annotated[
            int | None,
            typer.Option("--metrics-port", help="Serve Prometheus metrics on this port."),
        ] = None,
        metrics_host: Annotated[str, typer.Option("--metrics-host")] = "127.0.0.1",
        no_relay: Annotated[
            bool, typer.Option("--no-relay", help="Do not run the capture relay in this process.")
        ] = False,
        start_timeout: Annotated[
            float | None,
            typer.Option(
                "--start-timeout",
                envvar="STREAMKIT_START_TIMEOUT",
                min=0,
                help="Exit 1 when a handler has not started within this many seconds "
                "(default: keep trying, logging why every 5 s).",
            ),
        ] = None,
    ) -> None:
        """Run an App's handlers (and the relay and TTL sweeper) until SIGTERM / Ctrl-C.

        Start more processes to scale out: they share each table's partitions. Exits
        non-zero, with the reason, when the relay or a handler fails for good (a table
        without a stream, a fenced relay, a Kafka host that does not resolve).
        """
        import signal

        import structlog

        target = target or _settings.app_target
        if target is None:
            _fail("run needs MODULE:APP (or the global --app MODULE:APP)", code=EXIT_USAGE)
        app = _load_app(target)
        if not app.handlers:
            _fail(
                f"{target} has no handlers, so there is nothing to run: declare them with "
                '@app.on_insert("Table") (with the parentheses) / on_modify / on_remove / '
                "on_change, or include_router(); `streamkit relay` runs the relay alone",
                code=EXIT_USAGE,
            )
        unknown = sorted(set(handler or ()) - set(app.handlers))
        if unknown:
            _fail(
                f"no handler named {', '.join(map(repr, unknown))} in {target}; it has "
                f"{', '.join(sorted(app.handlers))}",
                code=EXIT_USAGE,
            )
        log = structlog.get_logger("streamkit.run")

        async def go(app: App) -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if metrics_port is not None:
                if not no_relay:
                    app.metrics.watch_capture(app.relay.status)
                app.metrics.serve(metrics_port, metrics_host)
            names = handler or None
            async with app.running(handlers=names, relay=not no_relay):
                log.warning(
                    "streamkit running",
                    handlers=sorted(names or app.handlers),
                    storage=_safe_url(app.storage_url),
                    log=_safe_url(app.log_url),
                    namespace=app.namespace,
                    metrics_port=metrics_port,
                )
                await _supervise(app, stop, log, start_timeout)
                log.warning(
                    "stopping: finishing in-flight work",
                    deadline_s=app.runtime_options.shutdown_timeout,
                )
            log.warning("stopped")

        _run_app(app, go)

    dlq_cli = typer.Typer(help="Look at a handler's dead letters, or send them back through it.")
    cli.add_typer(dlq_cli, name="dlq")

    @dlq_cli.command("list")
    def dlq_list(
        target: AppArg,
        handler: Annotated[str, typer.Argument(help="the handler's name")],
        include_redriven: Annotated[
            bool, typer.Option("--all", help="Include letters already redriven.")
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """The records HANDLER gave up on: key, error, attempts, times."""

        async def go(app: App) -> list[dict[str, Any]]:
            return [
                letter.describe()
                async for letter in app.dead_letters(handler, include_redriven=include_redriven)
            ]

        letters = _run_app(_load_app(target), go)
        if as_json:
            typer.echo(dumps(letters))
            return
        if not letters:
            typer.echo(f"no dead letters for {handler}")
            return
        from rich.console import Console
        from rich.table import Table as RichTable

        grid = RichTable("offset", "event", "keys", "error", "attempts", "failed at")
        for d in letters:
            grid.add_row(
                str(d["dlq_offset"]),
                str(d["event_name"]),
                dumps(d["keys"]),
                f"{d['error_type']}: {d['error_message']}"[:80],
                str(d["attempts"]),
                str(d["failed_at"]),
            )
        Console().print(grid)

    @dlq_cli.command("redrive")
    def dlq_redrive(
        target: AppArg,
        handler: Annotated[str, typer.Argument(help="the handler's name")],
        limit: Annotated[int | None, typer.Option("--limit", help="At most this many.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Send HANDLER's dead letters back through it, oldest first; stops at one that fails."""

        async def go(app: App) -> dict[str, int]:
            return await app.redrive(handler, limit=limit)

        summary = _run_app(_load_app(target), go)
        if as_json:
            typer.echo(dumps(summary))
        else:
            typer.echo(
                f"redriven {summary['redriven']}, still failing {summary['failed']}, "
                f"pending {summary['pending']}"
            )
        if summary["failed"]:
            raise typer.Exit(1)
