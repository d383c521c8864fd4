#!/usr/bin/env bash
# Stop the PostgreSQL server that pg-up.sh started on ${PG_PORT:-5432} (found via
# its data dir's postmaster.pid; never any other postgres) and remove its data dir.
#
#   compose/postgres/pg-down.sh           pg_ctl stop -m fast (SIGKILL after
#                                         PG_STOP_TIMEOUT, 30 s), then remove the
#                                         data dir (kept with PG_KEEP_DATA=1 or --keep)
#   compose/postgres/pg-down.sh --keep    stop, keep the data dir
#   compose/postgres/pg-down.sh --kill    SIGKILL the postmaster at once (a crash,
#                                         for fault tests); keeps the data dir
# Exits 0 if no server of ours was running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kill_now=0
keep="$PG_KEEP_DATA"
for arg in "$@"; do
    case "$arg" in
        --kill | -9) kill_now=1 keep=1 ;;
        --keep) keep=1 ;;
        -h | --help)
            sed -n '2,11p' "$0"
            exit 0
            ;;
        *)
            echo "usage: $0 [--keep] [--kill]" >&2
            exit 2
            ;;
    esac
done

pg_resolve_paths
if [[ ! -d "$PG_DATA_DIR" ]]; then
    pg_log "not running (no $PG_DATA_DIR)"
    rm -f "$PG_LOCK_FILE"
    exit 0
fi
pg_lock

pid="$(pg_find_pid)"
if [[ -z "$pid" ]]; then
    pg_log "not running"
elif ((kill_now)); then
    kill -KILL "$pid" 2>/dev/null || true
    pg_log "killed postmaster pid $pid (SIGKILL)"
else
    t0=$(date +%s.%N)
    if as_pg "$PG_BIN_DIR/pg_ctl" stop -D "$PG_DATA_DIR" -m fast -w -t "$PG_STOP_TIMEOUT" -s \
        </dev/null >&2; then
        pg_log "stopped pid $pid in $(pg_elapsed "$t0")s"
    else
        pg_log "pid $pid did not stop within ${PG_STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
fi
# the postmaster's children exit by themselves once it is gone
if ! pg_reap 15; then
    pg_log "processes of $PG_DATA_DIR survived SIGKILL?"
    exit 1
fi

if [[ "$keep" != 1 ]]; then
    pg_wipe_data_dir
    rm -f "$PG_LOCK_FILE"
    pg_log "removed $PG_DATA_DIR"
fi
