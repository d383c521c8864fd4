"""``streamkit replay`` / ``restore`` / ``backup`` as users run them: real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import streamkit as sk

APP_MODULE = """
import streamkit as sk

app = sk.App(storage={storage!r}, log={log!r}, namespace={namespace!r})


@app.on_change("Users", batch_size=10)
def audit(batch: sk.Batch) -> None:
    with open({seen!r}, "a") as f:
        for record in batch:
            f.write(record.event_name + " " + record.keys["UserID"] + "\\n")
"""


async def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamkit",
        *args,
        cwd=tmp_path,
        env={**os.environ, "STREAMKIT_STORAGE": f"sqlite:///{tmp_path}/shop.db"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode() + err.decode()


async def test_replay_restore_and_backups_from_the_command_line(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/shop.db"
    log = f"local://{tmp_path}/log?poll_interval=0.02"
    seen = tmp_path / "seen.txt"
    (tmp_path / "shop_app.py").write_text(
        APP_MODULE.format(
            storage=storage, log=log, namespace=f"h{uuid.uuid4().hex[:8]}", seen=str(seen)
        )
    )
    app = sk.App(storage=storage, log=log)
    users = await app.create_table("Users", partition_key="UserID")
    for uid in ("a", "b", "c"):
        await users.put({"UserID": uid})
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await users.delete({"UserID": "a"})
    await app.close()

    code, out = await _cli(
        tmp_path, "replay", "Users", "--handler", "shop_app:app:audit", "--since", "1h", "--json"
    )
    assert code == 0, out
    summary = json.loads(out)
    assert (summary["records"], summary["delivered"], summary["failed"]) == (4, 4, 0)
    assert sorted(seen.read_text().splitlines()) == [
        "INSERT a",
        "INSERT b",
        "INSERT c",
        "REMOVE a",
    ]
    later = datetime(2100, 1, 1, tzinfo=UTC).isoformat()
    code, out = await _cli(
        tmp_path,
        "replay",
        "Users",
        "--handler",
        "shop_app:app:audit",
        "--since",
        "1h",
        "--until",
        later,
    )
    assert code == 1 and "HistoryUnavailable" in out and "in the future" in out, out
    code, out = await _cli(
        tmp_path, "replay", "Users", "--handler", "shop_app:app", "--since", "1h"
    )
    assert code == 2 and "module:app:handler" in out

    code, out = await _cli(
        tmp_path, "restore", "Users", "--at", middle.isoformat(), "--target", "UsersThen"
    )
    assert code == 0 and "3 items" in out, out

    code, out = await _cli(tmp_path, "backup", "create", "Users", "--json")
    assert code == 0, out
    backup = json.loads(out)
    assert backup["items"] == 2
    code, out = await _cli(tmp_path, "backup", "list", "--json")
    assert [b["id"] for b in json.loads(out)] == [backup["id"]]
    code, out = await _cli(tmp_path, "backup", "restore", backup["id"], "--target", "UsersCopy")
    assert code == 0, out
    code, out = await _cli(tmp_path, "backup", "delete", backup["id"])
    assert code == 0 and backup["id"] in out
    code, out = await _cli(tmp_path, "backup", "delete", backup["id"])
    assert code == 1 and "BackupNotFound" in out

    check = sk.App(storage=storage, log=log)
    try:
        assert sorted([i["UserID"] async for i in check.table("UsersThen").scan()]) == [
            "a",
            "b",
            "c",
        ]
        assert sorted([i["UserID"] async for i in check.table("UsersCopy").scan()]) == ["b", "c"]
    finally:
        await check.close()
