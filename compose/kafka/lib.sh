# shellcheck shell=bash
# Shared settings for kafka-up.sh / kafka-down.sh / kafka-restart.sh.
# Sourced, not run. Everything can be overridden from the environment:
#
#   KAFKA_PORT             client (PLAINTEXT) port, default 9092
#   KAFKA_CONTROLLER_PORT  KRaft controller port, default KAFKA_PORT+1
#   KAFKA_HOST             listen/advertise address, default 127.0.0.1
#   KAFKA_DATA_DIR         runtime state, default compose/kafka/.data/<KAFKA_PORT>
#   KAFKA_LIB_DIR          broker jars, default compose/kafka/.lib
#   KAFKA_HEAP_OPTS        default "-Xms256m -Xmx768m"
#   KAFKA_JVM_OPTS         extra JVM flags, appended
#   KAFKA_OVERRIDES        extra server properties, "k=v k2=v2" (appended, last wins)
#   KAFKA_START_TIMEOUT    seconds kafka-up.sh waits for the broker, default 90
#   KAFKA_STOP_TIMEOUT     seconds kafka-down.sh waits after SIGTERM, default 30
#   PYTHON                 interpreter for probe.py (stdlib only), default: the
#                          project's .venv/bin/python, else python3
#   JAVA / JAVA_HOME       Java 17+; MVN  Maven binary, default mvn

KAFKA_COMPOSE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$KAFKA_COMPOSE_DIR/../.." && pwd)"

KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
if ! [[ "$KAFKA_PORT" =~ ^[0-9]+$ ]] || ((KAFKA_PORT < 1 || KAFKA_PORT > 65534)); then
    echo "kafka: bad KAFKA_PORT '$KAFKA_PORT'" >&2
    exit 2
fi
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_COMPOSE_DIR/.data/$KAFKA_PORT}"
KAFKA_LIB_DIR="${KAFKA_LIB_DIR:-$KAFKA_COMPOSE_DIR/.lib}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"

KAFKA_PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
KAFKA_PROPS="$KAFKA_DATA_DIR/server.properties"
KAFKA_LOG_DIR="$KAFKA_DATA_DIR/logs"
KAFKA_SERVER_LOG="$KAFKA_LOG_DIR/server.log"
KAFKA_STDOUT_LOG="$KAFKA_LOG_DIR/stdout.log"
KAFKA_LOCK_FILE="$KAFKA_DATA_DIR/.lock"
# shellcheck disable=SC2034  # used by the scripts that source this file
KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"

kafka_log() { echo "kafka[$KAFKA_PORT]: $*" >&2; }

kafka_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
    elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        echo "$REPO_ROOT/.venv/bin/python"
    else
        command -v python3 || echo python3
    fi
}

# probe [timeout]: 0 ready, 1 nothing listening, 2 listening but not ready.
kafka_probe() {
    "$(kafka_python)" "$KAFKA_COMPOSE_DIR/probe.py" "$KAFKA_HOST" "$KAFKA_PORT" "${1:-2}"
}

# True if PID is alive and is the broker for *this* data dir (guards against
# pid reuse and against touching anybody else's java).
kafka_is_ours() {
    local pid="$1" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" kafka.Kafka $KAFKA_PROPS"* ]]
}

# Prints the pid of our broker (from the pid file, else by scanning /proc for
# a java whose command line names our server.properties). Empty if none.
kafka_find_pid() {
    local pid=""
    if [[ -f "$KAFKA_PID_FILE" ]]; then
        pid="$(tr -dc '0-9' <"$KAFKA_PID_FILE")"
        if kafka_is_ours "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    local p
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        if kafka_is_ours "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 0
}

kafka_tail_log() {
    local n="${1:-40}"
    if [[ -s "$KAFKA_STDOUT_LOG" ]]; then
        echo "----- tail of $KAFKA_STDOUT_LOG -----" >&2
        tail -n 15 "$KAFKA_STDOUT_LOG" >&2
    fi
    if [[ -f "$KAFKA_SERVER_LOG" ]]; then
        if grep -qE '^\[[^]]*\] (ERROR|FATAL) ' "$KAFKA_SERVER_LOG"; then
            echo "----- last errors in $KAFKA_SERVER_LOG -----" >&2
            grep -E '^\[[^]]*\] (ERROR|FATAL) |^Caused by: ' "$KAFKA_SERVER_LOG" | tail -n 8 >&2
        fi
        echo "----- tail of $KAFKA_SERVER_LOG -----" >&2
        tail -n "$n" "$KAFKA_SERVER_LOG" >&2
    fi
}

# Serialise up/down/restart on one data dir (fd 9).
kafka_lock() {
    mkdir -p "$KAFKA_DATA_DIR"
    exec 9>"$KAFKA_LOCK_FILE"
    if ! flock -w 120 9; then
        kafka_log "could not lock $KAFKA_LOCK_FILE (another kafka-up/down running?)"
        exit 1
    fi
}
