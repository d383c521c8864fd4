"""Run the benchmarks and print (and save) their figures.

python -m benchmarks [--seconds 3] [--out .bench/results.json] [--kafka HOST:PORT]
                     [--postgres URL]
                     [--only storage|capture|runtime|history|endpoint|endpoint_load|postgres
                             |indexes|cache|replication|scaling]

The capture figures run on the local log always, and on Kafka when ``--kafka`` (or
``STREAMKIT_TEST_KAFKA``) names a broker. The runtime figures (handler throughput
against raw aiokafka and FastStream, write-to-handler latency, memory under a
backlog) need Kafka; without it only the local-log latency runs. The PostgreSQL storage
figures run when ``--postgres`` (or ``STREAMKIT_TEST_POSTGRES``) names a server. The
scaling figures (``--only scaling``) fill a 200,000-item table (1,000,000 with
``STREAMKIT_BENCH_BIG=1``); their scale-out part needs Kafka (``--kafka``, or
``STREAMKIT_BENCH_KAFKA``) and is skipped, with a note, without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from benchmarks import (
    cache,
    capture,
    endpoint,
    endpoint_load,
    history,
    indexes,
    postgres,
    replication,
    runtime,
    scaling,
    storage,
)


def _rows(prefix: str, figures: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for name, value in figures.items():
        if isinstance(value, dict):
            rows.extend(_rows(f"{prefix}{name}.", value))
        else:
            rows.append((f"{prefix}{name}", value))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--seconds", type=float, default=3.0, help="per figure")
    parser.add_argument("--out", default=".bench/results.json")
    parser.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        default=os.environ.get(capture.KAFKA_ENV),
        help="a Kafka broker for the capture and runtime figures (default: $STREAMKIT_TEST_KAFKA)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get(postgres.POSTGRES_ENV),
        help="a PostgreSQL server for the postgres figures, each in a fresh database made "
        "and dropped there (default: $STREAMKIT_TEST_POSTGRES)",
    )
    parser.add_argument(
        "--only",
        choices=(
            "storage",
            "capture",
            "runtime",
            "history",
            "endpoint",
            "endpoint_load",
            "postgres",
            "indexes",
            "cache",
            "replication",
            "scaling",
        ),
        help="run one section",
    )
    args = parser.parse_args()
    if args.only == "postgres" and not args.postgres:
        parser.error(f"--only postgres needs a server: --postgres URL or ${postgres.POSTGRES_ENV}")
    results: dict[str, Any] = {}
    if args.only in (None, "storage"):
        results["storage"] = asyncio.run(storage.run(args.seconds))
    if args.only in (None, "capture"):
        # the latency run writes for at least 5 s: fewer samples make a p99 meaningless
        results["capture"] = asyncio.run(
            capture.run(max(5.0, args.seconds), kafka=args.kafka or None)
        )
    if args.only in (None, "runtime"):
        results["runtime"] = asyncio.run(runtime.run(args.seconds, kafka=args.kafka or None))
    if args.only in (None, "history"):
        results["history"] = asyncio.run(history.run(kafka=args.kafka or None))
    if args.only in (None, "endpoint"):
        results["endpoint"] = endpoint.run(args.seconds)
    if args.only in (None, "endpoint_load"):
        results["endpoint_load"] = endpoint_load.run(max(4.0, args.seconds))
    if args.only in (None, "indexes"):
        results["indexes"] = asyncio.run(indexes.run(args.seconds, postgres=args.postgres))
    if args.only in (None, "cache"):
        results["cache"] = asyncio.run(cache.run(args.seconds))
    if args.only in (None, "replication"):
        results["replication"] = asyncio.run(replication.run(args.seconds))
    if args.only in (None, "scaling"):
        results["scaling"] = asyncio.run(scaling.run(args.seconds, kafka=args.kafka or None))
    if args.only in (None, "postgres") and args.postgres:
        results["postgres"] = asyncio.run(postgres.run(args.seconds, url=args.postgres))
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds_per_figure": args.seconds,
        "kafka": args.kafka or None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, **results}, indent=2))
    for section, figures in results.items():
        print(f"\n### {section}\n\n| figure | value |\n|---|---|")
        for name, value in _rows("", figures):
            print(f"| {name} | {value} |")
    print(f"\n(saved to {out})")


main()
