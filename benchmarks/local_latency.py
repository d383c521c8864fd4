"""Cross-process latency on the embedded log (``local://``), and what waiting costs.

python -m benchmarks.local_latency [--seconds 5] [--rate 200] [--idle 5] [--json]
                                    [--only log|app|app_relay_elsewhere]

Each figure runs two processes on one machine, sharing a temporary directory.
Latencies are ``time.monotonic_ns()`` differences (CLOCK_MONOTONIC: one clock for
every process of the machine), p50/p99/max in ms over ``rate`` x ``seconds`` samples.

- **log**: a child process appends one record at a time (paced at ``rate``/s, its
  value the time of the append call) to a topic of 8 partitions; this process reads
  the topic with ``LocalReader.fetch`` and takes ``received - appended``.
- **app**: what a handler sees. A child process runs an ``App`` (SQLite storage file,
  the relay running) and puts items (``sent`` = the put's return time); this
  process runs a per-record handler on the same storage and log with
  ``running(relay=False)``, as ``streamkit run --no-relay`` does, and takes the
  handler's call time - ``sent``.
- **app_relay_elsewhere**: the child only writes (no relay); this process runs the
  relay and the handler. The relay learns of another process's commits by its own
  idle poll (``streamkit/capture``, not the log), so this one shows the relay's
  cadence, not the log's.

``idle_cpu_percent``: after the samples, the reading process keeps waiting (the
reader fetching / the handler running) with nothing written for ``idle`` seconds;
its CPU time (user + system, every thread) / wall time. ``baseline_cpu_percent``
is the same process asleep (``asyncio.sleep``) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "latency"
TABLE = "LatencyBench"


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[i]


def _summary(latencies_ns: list[int], expected: int) -> dict[str, Any]:
    ms = sorted(n / 1e6 for n in latencies_ns)
    return {
        "samples": len(ms),
        "missing": expected - len(ms),
        "p50_ms": round(_percentile(ms, 50), 2),
        "p99_ms": round(_percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else float("nan"),
    }


async def _cpu_percent(seconds: float, work: Any = None) -> float:
    """CPU used by this process (all threads) per wall second, in %, over ``seconds``."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    await (work if work is not None else asyncio.sleep(seconds))
    return round(100 * (time.process_time() - cpu0) / (time.monotonic() - wall0), 2)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.local_latency",
        "--child",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process) -> None:
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the child process failed:\n{out.decode()}\n{err.decode()}")


# --- the children --------------------------------------------------------------------------
async def _child_log(url: str, count: int, rate: float) -> None:
    from streamkit.log import OutRecord, from_url

    async with from_url(url) as log:
        producer = log.producer(f"latency-{uuid.uuid4().hex[:8]}")
        await producer.start()
        start = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            key = b"%d" % i
            await producer.append([OutRecord(TOPIC, key, b"%d" % time.monotonic_ns())])
        await producer.close()


async def _child_app(storage: str, log: str, namespace: str, count: int, rate: float) -> None:
    import streamkit as sk

    relay = os.environ.get("LATENCY_RELAY") == "1"
    app = sk.App(storage=storage, log=log, namespace=namespace)
    table = await app.create_table(TABLE, partition_key="id")
    async with contextlib.AsyncExitStack() as stack:
        if relay:
            await stack.enter_async_context(app.running(ttl=False))
        await asyncio.sleep(2.0)  # the other process's handler joins its group
        start = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            await table.put({"id": str(i), "sent": time.monotonic_ns()})
        if relay:
            await app.drain(timeout=60)
    await app.close()


# --- the figures ---------------------------------------------------------------------------
async def log_figure(seconds: float, rate: float, idle: float) -> dict[str, Any]:
    from streamkit.log import TopicConfig, from_url

    count = int(seconds * rate)
    with tempfile.TemporaryDirectory(prefix="streamkit-latency-") as tmp:
        url = f"local://{tmp}/log"
        async with from_url(url) as log:
            await log.ensure_topic(TOPIC, TopicConfig(partitions=8))
            reader = log.reader(TOPIC)
            await reader.partitions()
            baseline = await _cpu_percent(min(idle, 2.0))
            child = await _spawn("log", url, str(count), str(rate))
            latencies: list[int] = []
            deadline = time.monotonic() + seconds + 30
            while len(latencies) < count and time.monotonic() < deadline:
                for rec in await reader.fetch(timeout=1.0):
                    latencies.append(time.monotonic_ns() - int(rec.value))
            await _finish(child)

            async def wait_idle() -> None:
                end = time.monotonic() + idle
                while time.monotonic() < end:
                    await reader.fetch(timeout=max(0.0, end - time.monotonic()))

            idle_cpu = await _cpu_percent(idle, wait_idle())
            await reader.close()
    return {
        **_summary(latencies, count),
        "idle_cpu_percent": idle_cpu,
        "baseline_cpu_percent": baseline,
    }


async def app_figure(
    seconds: float, rate: float, idle: float, *, relay_here: bool
) -> dict[str, Any]:
    import streamkit as sk

    count = int(seconds * rate)
    latencies: list[int] = []
    got_all = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="streamkit-latency-") as tmp:
        storage, log = f"sqlite:///{tmp}/store.db", f"local://{tmp}/log"
        namespace = f"lat{uuid.uuid4().hex[:8]}"
        app = sk.App(storage=storage, log=log, namespace=namespace)

        @app.on_insert(TABLE)
        async def measure(record: sk.ChangeRecord) -> None:
            assert record.new_image is not None
            latencies.append(time.monotonic_ns() - int(record.new_image["sent"]))
            if len(latencies) >= count:
                got_all.set()

        baseline = await _cpu_percent(min(idle, 2.0))
        os.environ["LATENCY_RELAY"] = "0" if relay_here else "1"
        child = await _spawn("app", storage, log, namespace, str(count), str(rate))
        async with app.running(relay=relay_here, ttl=False):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds + 60):
                    await got_all.wait()
            await _finish(child)
            idle_cpu = await _cpu_percent(idle)
        await app.close()
    return {
        **_summary(latencies, count),
        "idle_cpu_percent": idle_cpu,
        "baseline_cpu_percent": baseline,
    }


async def run(
    seconds: float = 5.0, rate: float = 200.0, idle: float = 5.0, only: str | None = None
) -> dict[str, Any]:
    """Every figure (or ``only`` one), as plain data."""
    out: dict[str, Any] = {}
    if only in (None, "log"):
        out["log"] = await log_figure(seconds, rate, idle)
    if only in (None, "app"):
        out["app"] = await app_figure(seconds, rate, idle, relay_here=False)
    if only in (None, "app_relay_elsewhere"):
        out["app_relay_elsewhere"] = await app_figure(seconds, rate, idle, relay_here=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--child"]:
        kind, *rest = args_list[1:]
        if kind == "log":
            url, count, rate = rest
            asyncio.run(_child_log(url, int(count), float(rate)))
        else:
            storage, log, namespace, count, rate = rest
            asyncio.run(_child_app(storage, log, namespace, int(count), float(rate)))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_latency")
    parser.add_argument("--seconds", type=float, default=5.0, help="of writing, per figure")
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measure")
    parser.add_argument("--only", choices=("log", "app", "app_relay_elsewhere"))
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(args_list)
    results = asyncio.run(run(args.seconds, args.rate, args.idle, args.only))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| figure | samples | p50 ms | p99 ms | max ms | idle CPU % (asleep: %) |")
    print("|---|---|---|---|---|---|")
    for name, f in results.items():
        print(
            f"| {name} | {f['samples']} (missing {f['missing']}) | {f['p50_ms']} | "
            f"{f['p99_ms']} | {f['max_ms']} | {f['idle_cpu_percent']} "
            f"({f['baseline_cpu_percent']}) |"
        )


if __name__ == "__main__":
    main()
