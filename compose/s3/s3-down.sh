#!/usr/bin/env bash
# Stop the S3 server s3-up.sh started on ${S3_PORT:-9000} (and forget its data).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${S3_PORT:-9000}"
DATA="${S3_DATA_DIR:-$HERE/.data/$PORT}"
if [[ -f "$DATA/pid" ]]; then
    pid="$(cat "$DATA/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "s3[$PORT]: stopped pid $pid" >&2
fi
rm -rf "$DATA"
