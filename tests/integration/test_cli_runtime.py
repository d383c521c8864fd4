"""``streamkit run`` / ``dlq`` / ``status`` as users run them: real processes, a real module:app."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
import uuid
from pathlib import Path

import streamkit as sk

APP_MODULE = """
import os
import streamkit as sk

app = sk.App(storage={storage!r}, log={log!r}, namespace={namespace!r}, session_timeout=2)


@app.on_insert("Users", retries=1, retry_delay=0.01)
def greet(record: sk.ChangeRecord) -> None:
    if record.keys["UserID"] == "poison" and not os.environ.get("FIXED"):
        raise ValueError("cannot greet poison")
    with open({seen!r}, "a") as f:
        f.write(record.keys["UserID"] + "\\n")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamkit",
        *args,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_run_dlq_and_status_from_the_command_line(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/shop.db"
    log = f"local://{tmp_path}/log?poll_interval=0.02"
    namespace = f"cli{uuid.uuid4().hex[:8]}"
    seen = tmp_path / "seen.txt"
    (tmp_path / "shop_app.py").write_text(
        APP_MODULE.format(storage=storage, log=log, namespace=namespace, seen=str(seen))
    )
    app = sk.App(storage=storage, log=log, namespace=namespace)
    users = await app.create_table("Users", partition_key="UserID")
    for uid in ("a", "poison", "b"):
        await users.put({"UserID": uid})
    async with app.running(handlers=[]):
        await app.drain()
    await app.close()

    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamkit",
        "run",
        "shop_app:app",
        "--metrics-port",
        str(port),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            if seen.exists() and sorted(seen.read_text().split()) == ["a", "b"]:
                break
            await asyncio.sleep(0.1)
        assert sorted(seen.read_text().split()) == ["a", "b"]
        expected = (
            'streamkit_handler_records_processed_total{handler="greet",table="Users"} 2.0',
            'streamkit_handler_records_dead_lettered_total{handler="greet",table="Users"} 1.0',
        )
        metrics = ""
        for _ in range(100):  # counted when the handler's chunk ends, just after the calls
            metrics = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            )
            if all(line in metrics for line in expected):
                break
            await asyncio.sleep(0.1)
        for line in expected:
            assert line in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()[-2000:]

    code, out = await _cli(tmp_path, "dlq", "list", "shop_app:app", "greet", "--json")
    assert code == 0, out
    letters = json.loads(out)
    assert len(letters) == 1
    assert letters[0]["error_type"] == "ValueError"
    assert letters[0]["keys"] == {"UserID": {"S": "poison"}}
    assert letters[0]["attempts"] == 2

    code, out = await _cli(tmp_path, "status", "shop_app:app", "--json")
    assert code == 0, out
    (handler,) = json.loads(out)["handlers"]
    assert handler["handler"] == "greet"
    assert handler["lag"] == 0
    assert handler["dlq_depth"] == 1

    code, out = await _cli(tmp_path, "dlq", "redrive", "shop_app:app", "greet")
    assert code == 1, out  # still failing: it stays in the DLQ
    assert "still failing 1" in out
    code, out = await _cli(
        tmp_path, "dlq", "redrive", "shop_app:app", "greet", "--json", env={"FIXED": "1"}
    )
    assert code == 0, out
    assert json.loads(out) == {"redriven": 1, "failed": 0, "pending": 0}
    assert sorted(seen.read_text().split()) == ["a", "b", "poison"]

    code, out = await _cli(tmp_path, "run", "nowhere:app")
    assert code == 2
    assert "cannot import 'nowhere'" in out
