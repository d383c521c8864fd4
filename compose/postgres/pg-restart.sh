#!/usr/bin/env bash
# Start the server pg-up.sh made again on its existing data dir (pg_ctl start,
# no initdb: tables, data and the streamkit role stay), waiting up to
# PG_START_TIMEOUT (60 s) for readiness. For fault tests:
#
#   compose/postgres/pg-restart.sh          if it runs: clean stop (-m fast); then start
#   compose/postgres/pg-restart.sh --kill   if it runs: crash it (SIGKILL); then start,
#                                           which replays the WAL (crash recovery)
#
# A test can also crash the server itself and then run this script:
#   kill -9 "$(head -n1 compose/postgres/.data/<port>/postmaster.pid)"
# (the first line of the data dir's postmaster.pid is the postmaster's pid; its
# children exit by themselves, and this script waits for them). Same environment
# as pg-up.sh (PG_PORT, ...). Prints the URL when the server answers again.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kill_now=0
case "${1:-}" in
    "") ;;
    --kill | -9) kill_now=1 ;;
    *)
        echo "usage: $0 [--kill]" >&2
        exit 2
        ;;
esac

pg_resolve_paths
if [[ ! -f "$PG_DATA_DIR/PG_VERSION" ]]; then
    pg_log "no data dir at $PG_DATA_DIR: start the server with pg-up.sh first"
    exit 1
fi
pg_lock

pid="$(pg_find_pid)"
if [[ -n "$pid" ]]; then
    if ((kill_now)); then
        kill -KILL "$pid" 2>/dev/null || true
        pg_log "killed postmaster pid $pid (SIGKILL)"
    else
        as_pg "$PG_BIN_DIR/pg_ctl" stop -D "$PG_DATA_DIR" -m fast -w -t "$PG_STOP_TIMEOUT" -s \
            </dev/null >&2 || kill -KILL "$pid" 2>/dev/null || true
        pg_log "stopped pid $pid"
    fi
fi
if ! pg_reap 15; then
    pg_log "old server processes of $PG_DATA_DIR will not exit"
    exit 1
fi

finished=0
trap '((finished)) || { pg_log "restart failed: stopping the server"; pg_kill_all; }' EXIT
trap 'exit 130' INT TERM
pg_start || exit 1
finished=1
pg_log "up in ${PG_UP_IN}s (pid $(pg_find_pid)); data: $PG_DATA_DIR; log: $PG_LOG_FILE"
echo "$PG_URL"
