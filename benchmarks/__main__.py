"""Run the benchmarks and print (and save) their figures.

python -m benchmarks [--seconds 3] [--out .bench/results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from benchmarks import storage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--seconds", type=float, default=3.0, help="per figure")
    parser.add_argument("--out", default=".bench/results.json")
    args = parser.parse_args()
    results = asyncio.run(storage.run(args.seconds))
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds_per_figure": args.seconds,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "storage": results}, indent=2))
    print("| figure | value |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value} |")
    print(f"\n(saved to {out})")


main()
