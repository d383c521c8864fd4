#!/usr/bin/env bash
# Stop the broker that kafka-up.sh started (found via the pid file, or by its
# command line naming our server.properties; never any other java process).
#
#   compose/kafka/kafka-down.sh           SIGTERM (clean shutdown), SIGKILL after
#                                          KAFKA_STOP_TIMEOUT (30 s); data is kept
#   compose/kafka/kafka-down.sh --kill    SIGKILL at once (a crash, for fault
#                                          tests); data is kept
#   compose/kafka/kafka-down.sh --wipe    stop, then delete this broker's data dir
#                                          (compose/kafka/.data/<KAFKA_PORT>)
# Options combine. Exits 0 if no broker of ours was running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kill_now=0
wipe=0
for arg in "$@"; do
    case "$arg" in
        --kill | -9) kill_now=1 ;;
        --wipe) wipe=1 ;;
        -h | --help)
            sed -n '2,12p' "$0"
            exit 0
            ;;
        *)
            echo "usage: $0 [--kill] [--wipe]" >&2
            exit 2
            ;;
    esac
done

if [[ ! -d "$KAFKA_DATA_DIR" ]]; then
    kafka_log "not running (no $KAFKA_DATA_DIR)"
    exit 0
fi
kafka_lock

wait_gone() {  # wait_gone PID SECONDS -> 0 if it exited
    local pid="$1" deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    return 0
}

pid="$(kafka_find_pid)"
if [[ -z "$pid" ]]; then
    kafka_log "not running"
elif ((kill_now)); then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || { kafka_log "pid $pid survived SIGKILL?"; exit 1; }
    kafka_log "killed pid $pid (SIGKILL)"
else
    t0=$(date +%s.%N)
    kill -TERM "$pid" 2>/dev/null || true
    if wait_gone "$pid" "$KAFKA_STOP_TIMEOUT"; then
        kafka_log "stopped pid $pid in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')s"
    else
        kafka_log "pid $pid still running after ${KAFKA_STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || { kafka_log "pid $pid survived SIGKILL?"; exit 1; }
    fi
fi
rm -f "$KAFKA_PID_FILE"

if ((wipe)); then
    # Only ever a directory we own: refuse anything that does not look like a
    # broker data dir made by kafka-up.sh (KAFKA_DATA_DIR may point anywhere).
    ours=1
    if [[ ! -f "$KAFKA_DATA_DIR/server.properties" && ! -d "$KAFKA_DATA_DIR/kraft-logs" ]]; then
        for entry in "$KAFKA_DATA_DIR"/* "$KAFKA_DATA_DIR"/.[!.]*; do
            [[ -e "$entry" && "${entry##*/}" != .lock ]] && ours=0
        done
    fi
    if ((ours)); then
        rm -rf -- "$KAFKA_DATA_DIR"
        kafka_log "wiped $KAFKA_DATA_DIR"
    else
        kafka_log "refusing to wipe $KAFKA_DATA_DIR: it does not look like a kafka-up.sh data dir"
        exit 1
    fi
fi
