"""The DynamoDB endpoint against other DynamoDB-compatible servers, same client, same run.

boto3 PutItem / GetItem / Query against:

* ``streamkit serve`` (SQLite file storage, the relay publishing to the local log);
* moto's server mode (``python -m moto.server``, in memory);
* dynalite (npm, MIT licence) in memory and on disk (LevelDB).

Amazon's DynamoDB Local is not measured: its licence is the vendor's own terms, which
this project's environment guidance says not to use.

Each figure: one boto3 client calling sequentially for ``seconds`` (latency p50/p99 and
calls/s), then 8 threads with a client each (calls/s).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
DYNALITE_DIR = ROOT / ".bench" / "dynalite"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(port: int) -> Any:
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=16),
    )


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    c = _client(port)
    deadline = time.monotonic() + 60
    while True:
        try:
            c.list_tables()
            return
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on {port} did not start") from None
            time.sleep(0.1)


def _dynalite() -> Path | None:
    exe = DYNALITE_DIR / "node_modules" / ".bin" / "dynalite"
    if exe.exists():
        return exe
    if shutil.which("npm") is None:
        return None
    DYNALITE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--silent", "--prefix", str(DYNALITE_DIR), "dynalite@3"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return exe if exe.exists() else None


def _servers(tmp: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    py = sys.executable
    out = [
        (
            "streamkit",
            [py, "-m", "streamkit", "serve", "--port", "{port}"],
            {"STREAMKIT_STORAGE": f"sqlite:///{tmp}/sk.db", "STREAMKIT_LOG": f"local://{tmp}/log"},
        ),
        (
            "streamkit_cache",  # the DAX node: the same endpoint with the cache in front
            [py, "-m", "streamkit", "serve", "--port", "{port}", "--cache"],
            {
                "STREAMKIT_STORAGE": f"sqlite:///{tmp}/skc.db",
                "STREAMKIT_LOG": f"local://{tmp}/logc",
            },
        ),
        ("moto_server", [py, "-m", "moto.server", "-p", "{port}"], {}),
    ]
    exe = _dynalite()
    if exe is not None:
        out.append(("dynalite_memory", [str(exe), "--port", "{port}"], {}))
        out.append(
            ("dynalite_disk", [str(exe), "--port", "{port}", "--path", str(tmp / "dynalite")], {})
        )
    return out


def _create(c: Any) -> None:
    c.create_table(
        TableName="Bench",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for _ in range(100):
        if c.describe_table(TableName="Bench")["Table"]["TableStatus"] == "ACTIVE":
            return
        time.sleep(0.1)


def _item(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"user{i % 100}"},
        "sk": {"N": str(i)},
        "name": {"S": f"name {i}"},
        "n": {"N": str(i * 3)},
        "tags": {"SS": ["a", "b"]},
    }


def _calls(kind: str) -> Any:
    def put(c: Any, i: int) -> None:
        c.put_item(TableName="Bench", Item=_item(i))

    def get(c: Any, i: int) -> None:
        c.get_item(
            TableName="Bench", Key={"pk": {"S": f"user{i % 100}"}, "sk": {"N": str(i % 500)}}
        )

    def query(c: Any, i: int) -> None:
        c.query(
            TableName="Bench",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": f"user{i % 100}"}},
            Limit=10,
        )

    return {"put": put, "get": get, "query": query}[kind]


def _sequential(port: int, kind: str, seconds: float) -> dict[str, Any]:
    c = _client(port)
    call = _calls(kind)
    lat: list[float] = []
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        call(c, i)
        lat.append(time.perf_counter() - t)
        i += 1
    lat.sort()
    return {
        "calls_per_s": round(len(lat) / sum(lat)),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
    }


def _threads(port: int, kind: str, seconds: float, n: int = 8) -> int:
    counts = [0] * n
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        c = _client(port)
        call = _calls(kind)
        i = k * 1_000_000
        while time.perf_counter() < stop:
            call(c, i)
            i += 1
            counts[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(sum(counts) / (time.perf_counter() - started))


@contextlib.contextmanager
def serving(argv: list[str], env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A server started from ``argv`` (``{port}`` replaced by a free port), its ``Bench``
    table made and the 500 items ``get`` and ``query`` read loaded; stopped at the end.
    Yields its port and its process."""
    port = _port()
    cmd = [a.replace("{port}", str(port)) for a in argv]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(port, proc)
        c = _client(port)
        _create(c)
        for i in range(500):  # what get and query read
            c.put_item(TableName="Bench", Item=_item(i))
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(seconds: float = 3.0, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sk-bench-endpoint-") as d:
        tmp = Path(d)
        for name, argv, env in _servers(tmp):
            if only is not None and name not in only:
                continue
            with serving(argv, env) as (port, _):
                figures: dict[str, Any] = {}
                for kind in ("put", "get", "query"):
                    figures[kind] = _sequential(port, kind, seconds)
                    figures[kind]["calls_per_s_8_threads"] = _threads(port, kind, seconds)
                results[name] = figures
    sk = results.get("streamkit", {})
    ratios: dict[str, Any] = {}
    for other, figures in results.items():
        if other.startswith("streamkit"):
            continue
        for kind in ("put", "get", "query"):
            a, b = sk.get(kind), figures.get(kind)
            if a and b:
                ratios[f"{kind}_vs_{other}"] = {
                    "sequential": round(a["calls_per_s"] / b["calls_per_s"], 2),
                    "8_threads": round(a["calls_per_s_8_threads"] / b["calls_per_s_8_threads"], 2),
                }
    cached = results.get("streamkit_cache", {})
    for kind in ("get", "query"):
        a, b = cached.get(kind), sk.get(kind)
        if a and b:
            ratios[f"{kind}_cache_vs_no_cache"] = {
                "sequential": round(a["calls_per_s"] / b["calls_per_s"], 2),
                "8_threads": round(a["calls_per_s_8_threads"] / b["calls_per_s_8_threads"], 2),
            }
    results["streamkit_ratio"] = ratios
    return results
