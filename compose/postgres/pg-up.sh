#!/usr/bin/env bash
# Start a throwaway local PostgreSQL 15 on 127.0.0.1:${PG_PORT:-5432} in the
# background and wait until it accepts connections. Idempotent: if a server
# already answers on the port, says so and exits 0. See lib.sh for the
# environment variables (PG_PORT, PG_KEEP_DATA, ...) and for how to crash it.
#
#   compose/postgres/pg-up.sh     # prints postgresql://streamkit:streamkit@127.0.0.1:5432/streamkit
#
# Steps: install Debian's postgresql-15 if /usr/lib/postgresql/15/bin is missing
# (as root; the system cluster is neither created nor started), pick the OS user
# (as root: `postgres`, else a system user `streamkit-pg`, since initdb refuses
# root), initdb a fresh data dir (compose/postgres/.data/<port>; an old stopped
# one is removed unless PG_KEEP_DATA=1), pg_ctl start, create role and database
# `streamkit`. A start that fails midway leaves no server running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_DEFAULT_BIN_DIR=/usr/lib/postgresql/15/bin

install_postgres() {
    local b missing=0
    for b in initdb pg_ctl postgres pg_isready psql; do
        [[ -x "$PG_BIN_DIR/$b" ]] || missing=1
    done
    ((missing)) || return 0
    if [[ "$PG_BIN_DIR" != "$PG_DEFAULT_BIN_DIR" ]]; then
        pg_log "no PostgreSQL binaries in PG_BIN_DIR=$PG_BIN_DIR"
        exit 1
    fi
    if [[ $EUID != 0 ]]; then
        pg_log "PostgreSQL 15 is not installed ($PG_BIN_DIR missing): run 'sudo apt-get install postgresql-15', or this script as root"
        exit 1
    fi
    mkdir -p "$PG_COMPOSE_DIR/.data"
    exec 8>"$PG_COMPOSE_DIR/.data/.install.lock"
    flock -w 900 8
    if [[ ! -x "$PG_BIN_DIR/pg_ctl" || ! -x "$PG_BIN_DIR/pg_isready" ]]; then
        pg_log "installing Debian's postgresql-15 (apt-get)"
        # Only our own servers are wanted: no auto-created (and auto-started) 15/main
        # cluster on port 5432. postgresql-common reads this drop-in.
        mkdir -p /etc/postgresql-common/createcluster.d
        if [[ ! -e /etc/postgresql-common/createcluster.d/streamkit.conf ]]; then
            echo "create_main_cluster = false  # streamkit compose/postgres/pg-up.sh" \
                >/etc/postgresql-common/createcluster.d/streamkit.conf
        fi
        local log="$PG_COMPOSE_DIR/.data/apt.log"
        if ! {
            DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update &&
                DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
                    --no-install-recommends install postgresql-15
        } </dev/null >"$log" 2>&1; then
            pg_log "apt-get install postgresql-15 failed; see $log"
            tail -n 20 "$log" >&2
            exit 1
        fi
    fi
    exec 8>&-
    for b in initdb pg_ctl postgres pg_isready psql; do
        if [[ ! -x "$PG_BIN_DIR/$b" ]]; then
            pg_log "installed postgresql-15 but $PG_BIN_DIR/$b is missing"
            exit 1
        fi
    done
}

# As root with neither PG_OS_USER nor a `postgres` user: create the system user.
ensure_os_user() {
    [[ $EUID == 0 ]] || return 0
    local user
    user="$(pg_os_user)"
    if [[ "$user" == root ]]; then
        pg_log "initdb refuses to run as root: set PG_OS_USER to another user"
        exit 1
    fi
    getent passwd "$user" >/dev/null && return 0
    if [[ "$user" != "$PG_SYSTEM_USER" ]]; then
        pg_log "PG_OS_USER=$user does not exist"
        exit 1
    fi
    pg_log "creating system user $user to run the server (initdb refuses root)"
    useradd --system --no-create-home --user-group --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$user" 2>/dev/null || getent passwd "$user" >/dev/null
}

init_cluster() {
    if [[ "$PG_KEEP_DATA" == 1 && -f "$PG_DATA_DIR/PG_VERSION" ]]; then
        pg_log "PG_KEEP_DATA=1: reusing $PG_DATA_DIR"
        return 0
    fi
    pg_wipe_data_dir
    mkdir -m 700 "$PG_DATA_DIR"
    if [[ $EUID == 0 ]]; then
        chown "$PG_USER:$(id -gn "$PG_USER")" "$PG_DATA_DIR"
    fi
    local pwfile
    pwfile="$(mktemp)"
    # initdb's own files need not be fsynced: the server runs with fsync=on
    if ! as_pg "$PG_BIN_DIR/initdb" -D "$PG_DATA_DIR" -U postgres -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync \
        >"$pwfile" 2>&1 </dev/null; then
        pg_log "initdb failed:"
        cat "$pwfile" >&2
        rm -f "$pwfile"
        exit 1
    fi
    rm -f "$pwfile"
    as_pg touch "$PG_DATA_DIR/.streamkit-pg"  # marks the dir as ours (safe to wipe)
    # settings for a small (2-core) test box; fsync stays on: crash-safety is tested
    cat >>"$PG_DATA_DIR/postgresql.conf" <<CONF

# ---- compose/postgres/pg-up.sh ----
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_DATA_DIR'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = 'scram-sha-256'
logging_collector = off          # pg_ctl -l: stderr goes to postgres.log
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
CONF
    cat >"$PG_DATA_DIR/pg_hba.conf" <<'HBA'
# compose/postgres/pg-up.sh: trust on the unix socket (in the data dir), passwords
# over TCP, which listens on 127.0.0.1 only.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
local   replication  all                  trust
host    replication  all   127.0.0.1/32   scram-sha-256
HBA
}

# Role and database `streamkit` (created if missing, so also on a kept data dir).
create_role_and_db() {
    local -a psql=("$PG_BIN_DIR/psql" -X -q -At -v ON_ERROR_STOP=1
        -h "$PG_DATA_DIR" -p "$PG_PORT" -U postgres -d postgres)
    if [[ -z "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" ]]; then
        as_pg "${psql[@]}" -c "CREATE ROLE $PG_ROLE LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'"
    fi
    if [[ -z "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]]; then
        as_pg "${psql[@]}" -c "CREATE DATABASE $PG_DATABASE OWNER $PG_ROLE"
    fi
    # the URL the tests use must work: password auth over TCP
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 "$PG_BIN_DIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
        "host=$PG_HOST port=$PG_PORT user=$PG_ROLE dbname=$PG_DATABASE" -c 'SELECT 1' >/dev/null
}

started=0
finished=0
on_exit() {
    if ((started && !finished)); then
        pg_log "start failed midway: stopping the server this script started"
        pg_kill_all
        pg_log "its data dir stays for inspection: $PG_DATA_DIR (pg-down.sh removes it)"
    fi
}

main() {
    install_postgres
    ensure_os_user
    pg_resolve_paths
    if [[ $EUID == 0 && "$PG_DATA_DIR" == "$PG_COMPOSE_DIR/.data/"* ]]; then
        # the server's user must be able to traverse .data (whatever the umask)
        mkdir -p "$PG_COMPOSE_DIR/.data"
        chmod 0755 "$PG_COMPOSE_DIR/.data"
    fi
    pg_lock
    [[ -n "${PG_DATA_NOTE:-}" ]] && pg_log "note: $PG_DATA_NOTE"

    local pid
    pid="$(pg_find_pid)"
    if pg_probe 2; then
        if [[ -n "$pid" ]]; then
            pg_log "already running (pid $pid, data dir $PG_DATA_DIR)"
        else
            pg_log "a PostgreSQL server not started by this script already answers on $PG_HOST:$PG_PORT; not starting another"
        fi
        echo "$PG_URL"
        return 0
    fi

    local t0=$SECONDS
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    if [[ -n "$pid" ]]; then
        # ours, but not (yet) accepting connections: starting up, crash recovery
        pg_log "server pid $pid is running but not ready; waiting up to ${PG_START_TIMEOUT}s"
        started=1
        local deadline=$((SECONDS + PG_START_TIMEOUT)) t_start
        t_start=$(date +%s.%N)
        while ! pg_probe 1; do
            if ((SECONDS >= deadline)) || [[ -z "$(pg_find_pid)" ]]; then
                pg_log "server did not accept connections within ${PG_START_TIMEOUT}s"
                pg_tail_log
                exit 1
            fi
            sleep 0.2
        done
        PG_UP_IN="$(pg_elapsed "$t_start")"
    else
        if pg_port_open; then
            pg_log "port $PG_PORT is taken by something that is not a ready PostgreSQL server (set PG_PORT)"
            exit 1
        fi
        # children of a SIGKILLed postmaster of ours may linger briefly
        pg_reap 15 || { pg_log "old server processes of $PG_DATA_DIR will not exit"; exit 1; }
        init_cluster
        started=1
        pg_start || exit 1
    fi
    create_role_and_db
    finished=1
    pid="$(pg_find_pid)"
    pg_log "up in ${PG_UP_IN}s (total $((SECONDS - t0))s, pid $pid); data: $PG_DATA_DIR; log: $PG_LOG_FILE"
    echo "$PG_URL"
}

main "$@"
