"""The command line as users meet it: one-line errors with the documented exit codes, no
silent hangs, settings shared with the app, the item commands. Real processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import streamkit as sk

SHOP = """
import streamkit as sk

app = sk.App(storage={storage!r}, log={log!r}, namespace="shop")


@app.on_insert("Orders")
def ship(record: sk.ChangeRecord) -> None:
    pass
"""


async def _cli(
    cwd: Path,
    *args: str,
    env: dict[str, str | None] | None = None,
    timeout: float = 60,  # noqa: ASYNC109 - a deadline for the process
) -> tuple[int, str, str]:
    """Run ``streamkit ARGS`` in ``cwd`` (``env``: None unsets); exit code, stdout, stderr."""
    environ = {
        **os.environ,
        "STREAMKIT_STORAGE": f"sqlite:///{cwd}/default.db",
        "STREAMKIT_LOG": f"local://{cwd}/log?poll_interval=0.02",
        "COLUMNS": "80",
    }
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamkit",
        *args,
        cwd=cwd,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"streamkit {' '.join(args)} did not end in {timeout}s") from None
    return proc.returncode or 0, out.decode(), err.decode()


def _one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one `error: ...` line, no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


# --- 13: one line and the documented exit code -------------------------------------------
async def test_errors_are_one_line_with_the_documented_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    (tmp_path / "noapp.py").write_text("x = 1\n")
    (tmp_path / "bare.py").write_text(
        "import streamkit as sk\napp = sk.App()\n\n@app.on_insert\ndef greet(record): ...\n"
    )
    (tmp_path / "empty.py").write_text("import streamkit as sk\napp = sk.App()\n")
    await sk.App(storage=f"sqlite:///{tmp_path}/default.db").create_table("Users", "UserID")
    no_aws: dict[str, str | None] = {
        **{name: None for name in os.environ if name.startswith("AWS_")},
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    cases = [
        (("run", "raises:app"), 2, "RuntimeError: boom"),
        (("run", "syntax:app"), 2, "SyntaxError"),
        (("run", "noapp:app"), 2, "has no attribute 'app'"),
        (("run", "bare:app"), 2, '@app.on_insert("Table")'),
        (("run", "empty:app"), 2, "has no handlers"),
        (("export", "Users", "--to", "file:///proc/nope"), 1, "No such file or directory"),
        (("export", "Users", "--to", "s3://bucket/prefix"), 2, "NoCredentialsError"),
        (("tables", "describe", "Nope"), 1, "TableNotFound"),
        (("--log", "nolog://x", "tables", "list"), 2, "ConfigurationError"),
    ]
    results = await asyncio.gather(
        *(_cli(tmp_path, *args, env=no_aws if "s3" in args[-1] else None) for args, _, _ in cases)
    )
    for (args, code, text), (got, _, err) in zip(cases, results, strict=True):
        assert got == code, (args, got, err)
        assert text in _one_error_line(err), (args, err)
    # where the user's error is
    _, _, err = results[0]
    assert "raises.py, line 1" in err

    code, _, err = await _cli(tmp_path, "run", "raises:app", "--debug")
    assert code == 2
    assert "Traceback" in err and "error: cannot import 'raises'" in err
    code, _, err = await _cli(tmp_path, "run", "raises:app", env={"STREAMKIT_DEBUG": "1"})
    assert "Traceback" in err


# --- 14: no silent hangs ------------------------------------------------------------------
async def test_tail_of_a_missing_table_fails_at_once(tmp_path: Path) -> None:
    # no store at all: said so (read-only commands create nothing), a configuration error
    code, _, err = await _cli(tmp_path, "tail", "NoSuchTable", timeout=30)
    assert code == 2
    assert "no streamkit store" in _one_error_line(err)
    assert not (tmp_path / "default.db").exists()
    code, _, err = await _cli(tmp_path, "tables", "create", "Other", "--partition-key", "k")
    assert code == 0, err
    code, _, err = await _cli(tmp_path, "tail", "NoSuchTable", timeout=30)
    assert code == 1
    line = _one_error_line(err)
    assert "TableNotFound" in line and "NoSuchTable" in line
    assert f"sqlite:///{tmp_path}/default.db" in line  # where it looked


async def test_a_kafka_host_that_does_not_resolve_stops_the_relay(tmp_path: Path) -> None:
    started = time.monotonic()
    code, _, err = await _cli(
        tmp_path,
        "relay",
        "--log",
        "kafka://no-such-host.invalid:9092?request_timeout_ms=1000",
        timeout=60,
    )
    assert code == 1
    assert "LogError" in _one_error_line(err)
    assert "no-such-host.invalid" in _one_error_line(err)
    assert time.monotonic() - started < 30


# --- 16: a handler that cannot start ------------------------------------------------------
async def test_run_exits_when_a_handler_cannot_start(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/shop.db"
    (tmp_path / "shop.py").write_text(
        SHOP.format(storage=storage, log=f"local://{tmp_path}/log?poll_interval=0.02")
    )
    app = sk.App(storage=storage)
    await app.create_table("Orders", partition_key="OrderID", stream=None)
    await app.close()
    code, _, err = await _cli(tmp_path, "run", "shop:app", timeout=60)
    assert code == 2
    assert "has no stream" in _one_error_line(err)


async def test_run_says_why_a_handler_waits_and_gives_up_after_start_timeout(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path}/shop.db"
    (tmp_path / "shop.py").write_text(
        SHOP.format(storage=storage, log=f"local://{tmp_path}/log?poll_interval=0.02")
    )
    code, _, err = await _cli(tmp_path, "run", "shop:app", "--start-timeout", "6", timeout=60)
    assert code == 1
    line = _one_error_line(err)
    assert "'ship' did not start within --start-timeout 6 s" in line
    assert f"table 'Orders' does not exist in storage {storage}" in line
    # the retries are visible before that: a log line naming the store
    waiting = [json.loads(x) for x in err.splitlines() if "handler not started yet" in x]
    assert waiting, err
    assert waiting[0]["handler"] == "ship"
    assert storage in waiting[0]["reason"]
    running = next(json.loads(x) for x in err.splitlines() if "streamkit running" in x)
    assert (running["storage"], running["namespace"]) == (storage, "shop")


# --- 18: one world of settings ------------------------------------------------------------
async def test_global_options_after_the_command_and_app_settings(tmp_path: Path) -> None:
    shop_db = f"sqlite:///{tmp_path}/shop.db"
    (tmp_path / "shop.py").write_text(SHOP.format(storage=shop_db, log=f"local://{tmp_path}/log"))
    code, _, err = await _cli(
        tmp_path, "tables", "create", "Orders", "-p", "OrderID", "--storage", shop_db
    )
    assert code == 0, err
    code, out, err = await _cli(tmp_path, "tables", "list", "--storage", shop_db)
    assert (code, out.split()) == (0, ["Orders"]), err
    code, out, _ = await _cli(tmp_path, "tables", "list")  # the default store: not there
    assert out.split() == []
    for args in (("--app", "shop:app", "tables", "list"), ("tables", "list", "--app", "shop:app")):
        code, out, err = await _cli(tmp_path, *args)
        assert (code, out.split()) == (0, ["Orders"]), (args, err)
    code, out, err = await _cli(
        tmp_path, "--app", "shop:app", "tables", "list", "--storage", f"sqlite:///{tmp_path}/x.db"
    )
    assert out.split() == ["Orders"]
    assert "warning: --storage" in err and "is not used" in err
    # an option of the command's own is not taken for the global one
    code, _, err = await _cli(tmp_path, "put", "Orders", '{"OrderID": "o1"}', "--app", "shop:app")
    assert code == 0, err
    code, out, _ = await _cli(tmp_path, "get", "Orders", '{"OrderID": "o1"}', "--app", "shop:app")
    assert json.loads(out) == {"OrderID": "o1"}


# --- 19: the missing commands and the small defects ---------------------------------------
async def test_update_and_delete(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/default.db")
    orders = await app.create_table("Orders", partition_key="OrderID")
    await orders.put({"OrderID": "o1", "Amount": 5, "Status": "new"})
    await app.close()
    key = '{"OrderID": "o1"}'

    code, out, err = await _cli(
        tmp_path, "update", "Orders", key, "--set", '{"Status": "paid"}', "--return", "ALL_NEW"
    )
    assert code == 0, err
    assert json.loads(out) == {"OrderID": "o1", "Amount": 5, "Status": "paid"}
    code, out, err = await _cli(
        tmp_path,
        "update",
        "Orders",
        key,
        "--expression",
        "SET Amount = Amount + :n REMOVE #s",
        "--names",
        '{"#s": "Status"}',
        "--values",
        '{":n": 2}',
        "--return",
        "ALL_NEW",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out) == {"OrderID": "o1", "Amount": 7}
    code, _, err = await _cli(
        tmp_path, "update", "Orders", key, "--set", '{"Amount": 1}', "--condition", "Amount > :a",
        "--values", '{":a": 100}',
    )  # fmt: skip
    assert code == 1 and "ConditionFailed" in _one_error_line(err)
    code, _, err = await _cli(tmp_path, "update", "Orders", key)
    assert code == 2 and "nothing to update" in err

    code, _, err = await _cli(
        tmp_path, "delete", "Orders", key, "--condition", "Amount > :a", "--values", '{":a": 100}'
    )
    assert code == 1 and "ConditionFailed" in _one_error_line(err)
    code, out, err = await _cli(tmp_path, "delete", "Orders", key, "--return", "ALL_OLD", "--json")
    assert code == 0, err
    assert json.loads(out) == {"OrderID": "o1", "Amount": 7}
    code, _, _ = await _cli(tmp_path, "get", "Orders", key)
    assert code == 2  # gone


async def test_query_where_narrows_the_given_partition(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/default.db")
    orders = await app.create_table("Orders", "CustomerID", ("Total", "N"))
    for customer, total in (("c1", 5), ("c1", 50), ("c2", 70), ("c2", 1)):
        await orders.put({"CustomerID": customer, "Total": total})
    await app.close()
    code, out, err = await _cli(
        tmp_path, "query", "Orders", "c1", "--where", "#t > :min", "--names", '{"#t": "Total"}',
        "--values", '{":min": 10}', "--json",
    )  # fmt: skip
    assert code == 0, err
    assert [json.loads(x) for x in out.splitlines()] == [{"CustomerID": "c1", "Total": 50}]


async def test_backup_list_prints_whole_ids_in_80_columns(tmp_path: Path) -> None:
    name = "CustomerOrdersByRegionAndDay"
    app = sk.App(storage=f"sqlite:///{tmp_path}/default.db")
    await app.create_table(name, partition_key="k")
    backup = await app.backup(name)
    await app.close()
    code, out, err = await _cli(tmp_path, "backup", "list")
    assert code == 0, err
    assert backup.id in out


async def test_export_to_a_relative_directory(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/default.db")
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "a"})
    await app.close()
    code, out, err = await _cli(tmp_path, "export", "Users", "--to", "exports", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["item_count"] == 1
    assert result["location"].startswith(f"file://{tmp_path}/exports/")
    assert list((tmp_path / "exports").rglob("manifest-summary.json"))


async def test_tail_prints_in_commit_order(tmp_path: Path) -> None:
    app = sk.App(
        storage=f"sqlite:///{tmp_path}/default.db",
        log=f"local://{tmp_path}/log?poll_interval=0.02",
        topic_partitions=8,
    )
    users = await app.create_table("Users", partition_key="UserID")
    for i in range(60):
        await users.put({"UserID": f"u{i}"})
    async with app.running(handlers=[]):
        await app.drain()
    await app.close()
    code, out, err = await _cli(
        tmp_path, "tail", "Users", "--start", "trim_horizon", "--no-follow", "--json"
    )
    assert code == 0, err
    seqs = [int(json.loads(x)["dynamodb"]["SequenceNumber"]) for x in out.splitlines()]
    assert len(seqs) == 60
    assert seqs == sorted(seqs)


async def test_restore_and_backup_show_progress_in_a_terminal(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/default.db")
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "a"})
    await app.close()
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    code, out, err = await _cli(tmp_path, "backup", "create", "Users", env=terminal)
    assert code == 0, err
    assert "backup" in err and "Users" in err  # the spinner's line, on stderr
    backup_id = out.split()[0]
    code, _, err = await _cli(
        tmp_path, "backup", "restore", backup_id, "--target", "UsersCopy", env=terminal
    )
    assert code == 0, err
    assert "restore" in err and "UsersCopy" in err
    code, out, err = await _cli(
        tmp_path, "restore", "Users", "--at", "now", "--target", "UsersThen", env=terminal
    )
    assert code == 0, err
    assert "restore" in err and "UsersThen" in err
    # not a terminal: no progress, not even a blank line
    code, _, err = await _cli(tmp_path, "backup", "create", "Users")
    assert (code, err) == (0, "")


async def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = await _cli(tmp_path, "serve", "--port", str(port), timeout=30)
    assert code == 1
    assert "in use" in _one_error_line(err)


async def test_sql_runs_partiql(tmp_path: Path) -> None:
    app = sk.App(storage=f"sqlite:///{tmp_path}/default.db")
    await app.create_table("Orders", "UserID", ("Seq", "N"))
    await app.close()
    insert = "INSERT INTO Orders VALUE {'UserID': ?, 'Seq': ?, 'Total': 5}"
    for seq in ("1", "2"):
        code, out, err = await _cli(tmp_path, "sql", insert, "--param", '"u1"', "--param", seq)
        assert (code, out) == (0, ""), err
    code, out, err = await _cli(
        tmp_path, "sql", "SELECT Seq, Total FROM Orders WHERE UserID = 'u1' ORDER BY Seq DESC",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert [json.loads(x) for x in out.splitlines()] == [
        {"Seq": 2, "Total": 5}, {"Seq": 1, "Total": 5},
    ]  # fmt: skip
    code, out, err = await _cli(
        tmp_path, "sql", "UPDATE Orders SET Total = Total + ? WHERE UserID = ? AND Seq = 1 "
        "RETURNING MODIFIED NEW *", "--param", '{"N": "2"}', "--param", '{"S": "u1"}',
        "--dynamodb-json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"Total": {"N": "7"}}
    code, _, err = await _cli(tmp_path, "sql", insert, "--param", '"u1"', "--param", "1")
    assert code == 1
    assert _one_error_line(err) == "error: DuplicateItem: Duplicate primary key exists in table"
    code, _, err = await _cli(tmp_path, "sql", "SELECT * FROM Orders WHERE")
    assert code == 1
    assert "Statement wasn't well formed" in _one_error_line(err)


async def test_tables_with_secondary_indexes_from_the_command_line(tmp_path: Path) -> None:
    code, _, err = await _cli(
        tmp_path, "tables", "create", "Orders", "-p", "UserID", "-s", "OrderDate",
        "--global-index", "ByStatus=Status,Total:N", "--local-index", "ByTotal=Total:N/KEYS_ONLY",
    )  # fmt: skip
    assert code == 0, err
    for uid, total in (("u1", "5"), ("u2", "3")):
        item = {"UserID": uid, "OrderDate": "d1", "Status": "NEW", "Total": int(total)}
        code, _, err = await _cli(tmp_path, "put", "Orders", json.dumps(item))
        assert code == 0, err
    code, out, err = await _cli(tmp_path, "query", "Orders", "NEW", "--index", "ByStatus", "--json")
    assert code == 0, err
    assert [json.loads(x)["UserID"] for x in out.splitlines()] == ["u2", "u1"]
    code, out, err = await _cli(tmp_path, "scan", "Orders", "--index", "ByTotal", "--json")
    assert code == 0, err
    assert [set(json.loads(x)) for x in out.splitlines()] == [{"UserID", "OrderDate", "Total"}] * 2
    code, _, err = await _cli(
        tmp_path, "tables", "add-index", "Orders", "ByDate=OrderDate/KEYS_ONLY"
    )
    assert code == 0, err
    code, out, err = await _cli(tmp_path, "query", "Orders", "d1", "-i", "ByDate", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 2
    code, _, err = await _cli(tmp_path, "tables", "delete-index", "Orders", "ByDate")
    assert code == 0, err
    code, _, err = await _cli(tmp_path, "tables", "create", "Bad", "-p", "k", "-g", "nope")
    assert code != 0
    assert "expected NAME=PK" in err


def test_every_command_prints_its_help() -> None:
    """``--help`` of every command and subcommand prints its usage and exits 0 (help
    texts are Rich markup: a bracket that reads as a tag, like ``[/PROJECTION]``, used
    to end ``tables create --help`` in a MarkupError)."""
    import typer.main
    from typer.testing import CliRunner

    from streamkit.cli._main import cli

    def paths(command: object, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        out = [prefix]
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            out.extend(paths(sub, (*prefix, name)))
        return out

    every = paths(typer.main.get_command(cli), ())
    assert len(every) > 30
    for path in every:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output and "error:" not in result.output, (path, result.output)
