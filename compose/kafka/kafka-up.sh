#!/usr/bin/env bash
# Start the single-node Kafka broker (KRaft) in the background and wait until
# it answers. Idempotent: if a broker already answers on the port, says so and
# exits 0. See lib.sh for the environment variables (KAFKA_PORT, ...).
#
#   compose/kafka/kafka-up.sh            # prints the bootstrap address on stdout
#
# Steps: resolve the jars with Maven if missing (first run ~50 MB), format the
# KRaft storage once (StorageTool format --standalone), start kafka.Kafka detached
# (setsid), write the pid file, poll probe.py until Metadata lists the broker.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MVN="${MVN:-mvn}"

java_bin() {
    if [[ -n "${JAVA:-}" ]]; then
        echo "$JAVA"
    elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        kafka_log "no java found (Kafka 4.x needs Java 17+; set JAVA or JAVA_HOME)"
        exit 1
    fi
}

check_java() {
    local ver major
    ver="$("$JAVA_BIN" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    major="${ver%%.*}"
    [[ "$major" == 1 ]] && major="$(echo "$ver" | cut -d. -f2)"
    if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
        kafka_log "Java $ver found at $JAVA_BIN; Kafka 4.x needs Java 17+"
        exit 1
    fi
}

# Resolve the broker classpath into $KAFKA_LIB_DIR if missing or stale (the
# stamp holds the pom's checksum). Done into a temp dir, then renamed.
resolve_jars() {
    local pom="$KAFKA_COMPOSE_DIR/pom.xml" stamp="$KAFKA_LIB_DIR/.resolved" want
    want="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    mkdir -p "$KAFKA_COMPOSE_DIR/.data"
    exec 8>"$KAFKA_COMPOSE_DIR/.data/.resolve.lock"
    flock -w 600 8
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        exec 8>&-
        return 0
    fi
    if ! command -v "$MVN" >/dev/null 2>&1; then
        kafka_log "Maven ('$MVN') not found; it is needed once to download the broker jars"
        exit 1
    fi
    kafka_log "resolving broker jars with Maven into $KAFKA_LIB_DIR (first run downloads ~45 MB)"
    local tmp="$KAFKA_LIB_DIR.tmp"
    rm -rf "$tmp"
    if ! "$MVN" -q -B -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_COMPOSE_DIR/.data/mvn.log" 2>&1; then
        kafka_log "mvn failed; see $KAFKA_COMPOSE_DIR/.data/mvn.log"
        tail -n 30 "$KAFKA_COMPOSE_DIR/.data/mvn.log" >&2
        exit 1
    fi
    echo "$want" >"$tmp/.resolved"
    rm -rf "$KAFKA_LIB_DIR"
    mv "$tmp" "$KAFKA_LIB_DIR"
    exec 8>&-
}

# Write $KAFKA_PROPS from the template with this instance's ports and dirs.
write_config() {
    local tmp="$KAFKA_PROPS.tmp" kv
    sed -e "s#^listeners=.*#listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT#" \
        -e "s#^advertised\.listeners=.*#advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT#" \
        -e "s#^controller\.quorum\.bootstrap\.servers=.*#controller.quorum.bootstrap.servers=$KAFKA_HOST:$KAFKA_CONTROLLER_PORT#" \
        -e "s#^log\.dirs=.*#log.dirs=$KAFKA_DATA_DIR/kraft-logs#" \
        "$KAFKA_COMPOSE_DIR/server.properties" >"$tmp"
    if [[ -n "${KAFKA_OVERRIDES:-}" ]]; then
        echo "# KAFKA_OVERRIDES" >>"$tmp"
        for kv in $KAFKA_OVERRIDES; do
            echo "$kv" >>"$tmp"
        done
    fi
    mv "$tmp" "$KAFKA_PROPS"
}

run_tool() {  # run a Kafka main class in the foreground, logging to the console
    "$JAVA_BIN" -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="$KAFKA_COMPOSE_DIR/log4j2.yaml" \
        -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
        -cp "$KAFKA_LIB_DIR/*" "$@"
}

format_storage() {
    local logs="$KAFKA_DATA_DIR/kraft-logs"
    if [[ -f "$logs/meta.properties" ]]; then
        return 0
    fi
    local id=""
    # A Kafka cluster id is 16 random bytes, URL-safe base64 without padding.
    # One that starts with '-' would be parsed as an option: draw again.
    while [[ -z "$id" || "$id" == -* ]]; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    kafka_log "formatting $logs (cluster id $id)"
    if ! run_tool kafka.tools.StorageTool format --standalone --ignore-formatted \
        -t "$id" -c "$KAFKA_PROPS" >"$KAFKA_LOG_DIR/format.log" 2>&1; then
        kafka_log "storage format failed:"
        cat "$KAFKA_LOG_DIR/format.log" >&2
        exit 1
    fi
}

start_broker() {
    : >"$KAFKA_STDOUT_LOG"
    local -a heap extra
    read -ra heap <<<"$KAFKA_HEAP_OPTS"
    read -ra extra <<<"${KAFKA_JVM_OPTS:-}"
    local -a jvm=(
        "${heap[@]}"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15
        -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$KAFKA_COMPOSE_DIR/log4j2.yaml"
        -Dkafka.logs.dir="$KAFKA_LOG_DIR"
        "${extra[@]}"
    )
    # setsid: own session, so Ctrl-C in the caller's terminal or the end of a
    # make/pytest process group does not take the broker down. The inner bash
    # writes its own pid, then execs java (same pid). fd 9 (our lock) is closed.
    # shellcheck disable=SC2016  # $$ and $1 are for the inner bash
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launcher "$KAFKA_PID_FILE" \
        "$JAVA_BIN" "${jvm[@]}" -cp "$KAFKA_LIB_DIR/*" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_STDOUT_LOG" 2>&1 9>&- &
    disown $! 2>/dev/null || true
}

main() {
    kafka_lock

    local pid rc msg
    pid="$(kafka_find_pid)"
    set +e
    msg="$(kafka_probe 1)"
    rc=$?
    set -e
    if [[ $rc == 0 ]]; then
        if [[ -n "$pid" ]]; then
            kafka_log "already running (pid $pid, $msg)"
        else
            kafka_log "a Kafka broker not started by this script already answers on $KAFKA_BOOTSTRAP ($msg); not starting another"
        fi
        echo "$KAFKA_BOOTSTRAP"
        return 0
    fi
    if [[ -z "$pid" && $rc == 2 ]]; then
        kafka_log "port $KAFKA_PORT is taken by something that is not a ready Kafka broker ($msg)"
        exit 1
    fi

    JAVA_BIN="$(java_bin)"
    local t0=$SECONDS
    if [[ -z "$pid" ]]; then
        check_java
        if (exec 3<>"/dev/tcp/$KAFKA_HOST/$KAFKA_CONTROLLER_PORT") 2>/dev/null; then
            kafka_log "controller port $KAFKA_CONTROLLER_PORT is already in use (set KAFKA_CONTROLLER_PORT)"
            exit 1
        fi
        resolve_jars
        mkdir -p "$KAFKA_LOG_DIR"
        rm -f "$KAFKA_PID_FILE"
        write_config
        format_storage
        local t_start
        t_start=$(date +%s.%N)
        start_broker
        # wait for the launcher to write the pid file
        for _ in $(seq 50); do
            [[ -s "$KAFKA_PID_FILE" ]] && break
            sleep 0.1
        done
        pid="$(tr -dc '0-9' <"$KAFKA_PID_FILE" 2>/dev/null || true)"
        kafka_log "started pid $pid; waiting up to ${KAFKA_START_TIMEOUT}s for $KAFKA_BOOTSTRAP"
    else
        kafka_log "broker pid $pid is running but not answering yet; waiting up to ${KAFKA_START_TIMEOUT}s"
        t_start=$(date +%s.%N)
    fi

    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            kafka_log "broker process ${pid:-?} exited during startup"
            rm -f "$KAFKA_PID_FILE"
            kafka_tail_log
            exit 1
        fi
        set +e
        msg="$(kafka_probe 1)"
        rc=$?
        set -e
        if [[ $rc == 0 ]]; then
            local took
            took="$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')"
            kafka_log "up in ${took}s (total $((SECONDS - t0))s, pid $pid, $msg); log: $KAFKA_SERVER_LOG"
            echo "$KAFKA_BOOTSTRAP"
            return 0
        fi
        sleep 0.25
    done
    kafka_log "broker did not answer on $KAFKA_BOOTSTRAP within ${KAFKA_START_TIMEOUT}s (last probe: $msg); stopping pid $pid"
    kafka_tail_log
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$KAFKA_PID_FILE"
    exit 1
}

main "$@"
