"""The endpoint under load from a generator that is not the bottleneck.

``benchmarks/endpoint.py`` drives each server with boto3, which costs ~2 ms of client CPU
a call here and hides the server. This one sends DynamoDB requests signed once in
advance (botocore's SigV4, ``REQUESTS`` distinct requests per kind, cycled) over
keep-alive HTTP/1.1 connections from ``PROCESSES`` client processes, each keeping
``DEPTH`` connections busy from its own threads, for ``seconds`` per kind:

* throughput: responses/s (every response is checked to be a 200);
* **server CPU per request**: the server process's user + system CPU time (from
  ``/proc/{pid}/stat``) over the run divided by the responses — what a request costs
  the server, whoever else shares the machine's 2 cores;
* client CPU per request, to show the generator is the lighter side.

Servers: ``streamkit serve`` (SQLite file storage, the relay publishing to the local
log), ``streamkit serve --cache``, and dynalite (Node, in memory; the npm package is
installed into ``.bench/dynalite`` by ``benchmarks/endpoint.py``). Kinds: ``PutItem``
(distinct keys), ``GetItem`` and ``Query`` (``Limit`` 10) of the 500 items loaded first.

One run, no repeats.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.endpoint import _item, serving
from benchmarks.endpoint import _servers as endpoint_servers

PROCESSES = 3
DEPTH = 2  # connections (threads) per client process
REQUESTS = 2000  # distinct signed requests per kind
SERVERS = ("streamkit", "streamkit_cache", "dynalite_memory")
# the same uvicorn serving an app that only parses and answers JSON: the HTTP floor
FLOOR = (
    "uvicorn_floor",
    [
        *("{python}", "-m", "uvicorn", "benchmarks.asgi_floor:app", "--port", "{port}"),
        *("--log-level", "warning", "--no-access-log"),
    ],
    {},
)


def _signed(port: int, kind: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """``n`` requests of ``kind``, each its body and signed headers."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials("bench", "bench")
    out = []
    for i in range(n):
        body: dict[str, Any]
        if kind == "put":
            target, body = "PutItem", {"TableName": "Bench", "Item": _item(10_000 + i)}
        elif kind == "get":
            target = "GetItem"
            body = {
                "TableName": "Bench",
                "Key": {"pk": {"S": f"user{i % 100}"}, "sk": {"N": str(i % 500)}},
            }
        else:
            target = "Query"
            body = {
                "TableName": "Bench",
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": f"user{i % 100}"}},
                "Limit": 10,
            }
        data = json.dumps(body).encode()
        req = AWSRequest(
            method="POST",
            url=f"http://127.0.0.1:{port}/",
            data=data,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"DynamoDB_20120810.{target}",
            },
        )
        SigV4Auth(creds, "dynamodb", "us-east-1").add_auth(req)
        out.append((data, dict(req.headers.items())))
    return out


def _client_process(
    port: int, requests: list[tuple[bytes, dict[str, str]]], seconds: float, offset: int, q: Any
) -> None:
    counts = [0] * DEPTH
    errors = [0] * DEPTH
    start_cpu = time.process_time()
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        i = offset + k * 7919
        n = len(requests)
        while time.perf_counter() < stop:
            body, headers = requests[i % n]
            conn.request("POST", "/", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                counts[k] += 1
            else:
                errors[k] += 1
            i += 1
        conn.close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(DEPTH)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put((sum(counts), sum(errors), time.process_time() - start_cpu))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(port: int, pid: int, kind: str, seconds: float) -> dict[str, Any]:
    requests = _signed(port, kind, REQUESTS)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_client_process, args=(port, requests, seconds, p * 613, q))
        for p in range(PROCESSES)
    ]
    cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
    done = sum(r[0] for r in results)
    return {
        "requests_per_s": round(done / elapsed),
        "errors": sum(r[1] for r in results),
        "server_cpu_us_per_request": round(cpu / max(done, 1) * 1e6, 1),
        "client_cpu_us_per_request": round(sum(r[2] for r in results) / max(done, 1) * 1e6, 1),
    }


def _servers(tmp: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    name, argv, env = FLOOR
    floor = (name, [a.replace("{python}", sys.executable) for a in argv], env)
    return [*(s for s in endpoint_servers(tmp) if s[0] in SERVERS), floor]


def run(seconds: float = 4.0) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sk-bench-load-") as d:
        tmp = Path(d)
        for name, argv, env in _servers(tmp):
            with serving(argv, env) as (port, proc):
                results[name] = {
                    k: _load(port, proc.pid, k, seconds) for k in ("put", "get", "query")
                }
    sk, peer = results.get("streamkit", {}), results.get("dynalite_memory", {})
    ratios: dict[str, Any] = {}
    for kind in ("put", "get", "query"):
        a, b = sk.get(kind), peer.get(kind)
        if a and b:
            ratios[f"{kind}_vs_dynalite"] = {
                "throughput": round(a["requests_per_s"] / b["requests_per_s"], 2),
                "server_cpu": round(
                    b["server_cpu_us_per_request"] / a["server_cpu_us_per_request"], 2
                ),
            }
    floor = results.get("uvicorn_floor", {})
    for kind in ("put", "get", "query"):
        a, f = sk.get(kind), floor.get(kind)
        if a and f:  # how much of streamkit's cost is the HTTP server's own
            ratios[f"{kind}_http_floor_share_of_cpu"] = round(
                f["server_cpu_us_per_request"] / a["server_cpu_us_per_request"], 2
            )
    results["streamkit_ratio"] = ratios
    return results


if __name__ == "__main__":
    print(json.dumps(run(float(os.environ.get("STREAMKIT_BENCH_SECONDS", "4"))), indent=2))
