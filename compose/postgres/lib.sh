# shellcheck shell=bash
# Shared settings for pg-up.sh / pg-down.sh / pg-restart.sh (a throwaway local
# PostgreSQL 15 for development and the tests). Sourced, not run. Everything can
# be overridden from the environment:
#
#   PG_PORT            TCP port on 127.0.0.1, default 5432
#   PG_BIN_DIR         PostgreSQL binaries, default /usr/lib/postgresql/15/bin
#                      (Debian's postgresql-15; pg-up.sh installs it if missing)
#   PG_DATA_DIR        the cluster's data directory (PGDATA), default
#                      compose/postgres/.data/<PG_PORT>; as root, when the server's
#                      user cannot reach that path, /tmp/streamkit-pg-<PG_PORT>
#   PG_OS_USER         as root: the OS user the server runs as (initdb refuses
#                      root). Default `postgres` if it exists, else `streamkit-pg`
#                      (pg-up.sh creates it as a system user). Not root: yourself.
#   PG_KEEP_DATA=1     pg-up.sh reuses an existing data dir instead of a fresh one,
#                      pg-down.sh keeps it
#   PG_START_TIMEOUT   seconds to wait for readiness, default 60
#   PG_STOP_TIMEOUT    seconds pg-down.sh waits for a fast shutdown, default 30
#
# The server: listen_addresses=127.0.0.1, its unix socket in the data dir, role
# and database `streamkit` (password `streamkit`, superuser), so
#   postgresql://streamkit:streamkit@127.0.0.1:<PG_PORT>/streamkit
# works; scram-sha-256 over TCP, trust on the unix socket. Log: <data dir>/postgres.log.
#
# The postmaster's pid is the first line of <data dir>/postmaster.pid, e.g.
#   kill -9 "$(head -n1 compose/postgres/.data/5432/postmaster.pid)"
# crashes the server (a fault test); compose/postgres/pg-restart.sh then starts it
# again on the same data dir (crash recovery replays the WAL).

PG_COMPOSE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$PG_COMPOSE_DIR/../.." && pwd)"

PG_HOST=127.0.0.1
PG_PORT="${PG_PORT:-5432}"
if ! [[ "$PG_PORT" =~ ^[0-9]+$ ]] || ((PG_PORT < 1 || PG_PORT > 65535)); then
    echo "postgres: bad PG_PORT '$PG_PORT'" >&2
    exit 2
fi
PG_BIN_DIR="${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"
PG_STOP_TIMEOUT="${PG_STOP_TIMEOUT:-30}"
PG_KEEP_DATA="${PG_KEEP_DATA:-0}"
PG_ROLE=streamkit
PG_PASSWORD=streamkit
PG_DATABASE=streamkit
# shellcheck disable=SC2034
PG_URL="postgresql://$PG_ROLE:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DATABASE"
PG_TMP_DATA_DIR="/tmp/streamkit-pg-$PG_PORT"
PG_SYSTEM_USER=streamkit-pg

pg_log() { echo "postgres[$PG_PORT]: $*" >&2; }

# The OS user the server runs as (see PG_OS_USER above). Does not create it.
pg_os_user() {
    if [[ -n "${PG_OS_USER:-}" ]]; then
        echo "$PG_OS_USER"
    elif [[ $EUID != 0 ]]; then
        id -un
    elif getent passwd postgres >/dev/null; then
        echo postgres
    else
        echo "$PG_SYSTEM_USER"
    fi
}

# as_pg CMD...: run CMD as the server's user (from /, so that an unreadable
# working directory such as /root does not matter). fd 9 (our lock) is closed so
# that a server started here does not hold the lock forever.
as_pg() {
    if [[ $EUID == 0 && "$PG_USER" != root ]]; then
        (cd / && exec runuser -u "$PG_USER" -- "$@") 9>&-
    else
        (cd / && exec "$@") 9>&-
    fi
}

# Can the server's user reach (traverse into) DIR? A user that does not exist yet
# needs o+x on every directory up to /.
pg_user_can_reach() {
    local dir="$1"
    if [[ $EUID != 0 || "$PG_USER" == root ]]; then
        return 0
    fi
    if getent passwd "$PG_USER" >/dev/null; then
        (cd / && runuser -u "$PG_USER" -- test -x "$dir") 2>/dev/null
        return
    fi
    while [[ -n "$dir" && "$dir" != / ]]; do
        [[ "$(stat -c %A "$dir" 2>/dev/null)" == *x ]] || return 1
        dir="$(dirname "$dir")"
    done
    return 0
}

# Sets PG_DATA_DIR (see above) and the paths derived from it.
pg_resolve_paths() {
    PG_USER="$(pg_os_user)"
    if [[ -z "${PG_DATA_DIR:-}" ]]; then
        PG_DATA_DIR="$PG_COMPOSE_DIR/.data/$PG_PORT"
        local why=""
        # a unix socket path is limited to 107 bytes
        if ((${#PG_DATA_DIR} + 16 > 107)); then
            why="the socket path under $PG_DATA_DIR would be too long"
        elif ! pg_user_can_reach "$PG_COMPOSE_DIR"; then
            why="user $PG_USER cannot traverse $PG_COMPOSE_DIR"
        fi
        if [[ -n "$why" ]]; then
            PG_DATA_DIR="$PG_TMP_DATA_DIR"
            PG_DATA_NOTE="data dir is $PG_DATA_DIR: $why"
        fi
    fi
    PG_LOG_FILE="$PG_DATA_DIR/postgres.log"
    PG_PID_FILE="$PG_DATA_DIR/postmaster.pid"
    PG_LOCK_FILE="$PG_DATA_DIR.lock"
}

# probe [timeout]: pg_isready's exit code on 127.0.0.1:PORT: 0 accepting
# connections, 1 starting up / shutting down, 2 no answer, 3 no attempt made.
pg_probe() {
    "$PG_BIN_DIR/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DATABASE" \
        -t "${1:-1}" 2>/dev/null
}

pg_port_open() { (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null; }

# The pids of all processes of *this* cluster (postmaster and children): a
# postgres binary whose working directory is our data dir. Guards against pid
# reuse and against touching anybody else's postgres (e.g. one on another port).
pg_cluster_pids() {
    local real p exe
    real="$(realpath -e "$PG_DATA_DIR" 2>/dev/null)" || return 0
    for p in /proc/[0-9]*; do
        [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$real" ]] || continue
        exe="$(readlink "$p/exe" 2>/dev/null)" || continue
        [[ "${exe##*/}" == postgres ]] || continue
        echo "${p#/proc/}"
    done
}

# The postmaster's pid (postmaster.pid's first line) if it is alive and ours; empty otherwise.
pg_find_pid() {
    local pid
    [[ -r "$PG_PID_FILE" ]] || return 0
    pid="$(head -n1 "$PG_PID_FILE" 2>/dev/null | tr -dc '0-9')"
    [[ -n "$pid" ]] || return 0
    local p
    for p in $(pg_cluster_pids); do
        if [[ "$p" == "$pid" ]]; then
            echo "$pid"
            return 0
        fi
    done
}

# Wait up to SECONDS for every process of this cluster to exit; SIGKILL the rest.
# (After a postmaster is SIGKILLed its children notice and exit by themselves; a
# new postmaster refuses to start while they still hold the old shared memory.)
pg_reap() {
    local deadline=$((SECONDS + ${1:-10})) pids
    while :; do
        pids="$(pg_cluster_pids)"
        [[ -z "$pids" ]] && return 0
        if ((SECONDS >= deadline)); then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            sleep 0.5
            [[ -z "$(pg_cluster_pids)" ]]
            return
        fi
        sleep 0.2
    done
}

# Stop this cluster now, whatever state it is in (for a failed start).
pg_kill_all() {
    local pids
    pids="$(pg_cluster_pids)"
    # shellcheck disable=SC2086
    [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
    pg_reap 10 || true
}

# Does DIR look like a data dir made by pg-up.sh (so that removing it is safe)?
pg_is_our_data_dir() {
    local dir="$1" entry
    [[ -d "$dir" && ! -L "$dir" ]] || return 1
    [[ -f "$dir/.streamkit-pg" ]] && return 0
    for entry in "$dir"/* "$dir"/.[!.]*; do
        [[ -e "$entry" ]] && return 1
    done
    return 0  # empty
}

pg_wipe_data_dir() {
    if [[ ! -e "$PG_DATA_DIR" ]]; then
        return 0
    fi
    if pg_is_our_data_dir "$PG_DATA_DIR"; then
        rm -rf -- "$PG_DATA_DIR"
    else
        pg_log "refusing to remove $PG_DATA_DIR: it does not look like a pg-up.sh data dir"
        return 1
    fi
}

pg_tail_log() {
    if [[ -s "$PG_LOG_FILE" ]]; then
        echo "----- tail of $PG_LOG_FILE -----" >&2
        tail -n "${1:-30}" "$PG_LOG_FILE" >&2
    fi
}

pg_elapsed() {  # pg_elapsed T0 (from date +%s.%N)
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'
}

# Serialise up/down/restart on one data dir (fd 9).
pg_lock() {
    mkdir -p "$(dirname "$PG_LOCK_FILE")"
    exec 9>"$PG_LOCK_FILE"
    if ! flock -w 120 9; then
        pg_log "could not lock $PG_LOCK_FILE (another pg-up/pg-down running?)"
        exit 1
    fi
}

# Start the server on the existing data dir and wait (PG_START_TIMEOUT) until it
# accepts connections on 127.0.0.1:PORT. Returns non-zero (leaving the caller to
# clean up) if it does not.
pg_start() {
    local t0 deadline
    t0=$(date +%s.%N)
    deadline=$((SECONDS + PG_START_TIMEOUT))
    # No process of this cluster is alive (the callers make sure): the postmaster.pid
    # and socket lock file left by a SIGKILLed server are stale. Remove them: their
    # pid may still exist for a while as an unreaped zombie (PID 1 of a container
    # need not reap), which would make the new postmaster refuse to start.
    if [[ -z "$(pg_cluster_pids)" ]]; then
        rm -f "$PG_PID_FILE" "$PG_DATA_DIR/.s.PGSQL.$PG_PORT.lock" "$PG_DATA_DIR/.s.PGSQL.$PG_PORT"
    fi
    # pg_ctl forks the postmaster in its own session (setsid), detached from ours
    if ! as_pg "$PG_BIN_DIR/pg_ctl" start -D "$PG_DATA_DIR" -l "$PG_LOG_FILE" \
        -w -t "$PG_START_TIMEOUT" -s </dev/null >&2; then
        pg_log "pg_ctl start failed"
        pg_tail_log
        return 1
    fi
    while ! pg_probe 1; do
        if ((SECONDS >= deadline)) || [[ -z "$(pg_find_pid)" ]]; then
            pg_log "server did not accept connections on $PG_HOST:$PG_PORT within ${PG_START_TIMEOUT}s"
            pg_tail_log
            return 1
        fi
        sleep 0.2
    done
    PG_UP_IN="$(pg_elapsed "$t0")"
}
