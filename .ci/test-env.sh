#!/usr/bin/env bash
# Run a command (the test suite) with the services the tests need: starts the
# local Kafka broker when none answers on 127.0.0.1:9092 (and a second one on
# 127.0.0.1:9094, KAFKA2_PORT, for the global-table tests), the local S3 server
# (S3Proxy) when none answers on 127.0.0.1:9000 and a throwaway PostgreSQL 15
# when none answers on 127.0.0.1:5432 (PG_PORT), and stops only what it started,
# whatever the command's outcome.
set -uo pipefail
cd "$(dirname "$0")/.."
# the Python the service scripts' probes use: TEST_PYTHON, else the command's first word
py="${TEST_PYTHON:-${1:-python3}}"

KAFKA_DIR=compose/kafka
export KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA2_PORT="${KAFKA2_PORT:-9094}"
export S3_PORT="${S3_PORT:-9000}"
export PG_PORT="${PG_PORT:-5432}"
started=0
started2=0
s3_started=0
pg_started=0
cleanup() {
    if [[ $started == 1 ]]; then
        "$KAFKA_DIR/kafka-down.sh" >&2 || true
    fi
    if [[ $started2 == 1 ]]; then
        KAFKA_PORT="$KAFKA2_PORT" "$KAFKA_DIR/kafka-down.sh" >&2 || true
    fi
    if [[ $s3_started == 1 ]]; then
        compose/s3/s3-down.sh >&2 || true
    fi
    if [[ $pg_started == 1 ]]; then
        compose/postgres/pg-down.sh >&2 || true
    fi
}
trap cleanup EXIT INT TERM

if [[ -z "${STREAMKIT_TEST_KAFKA:-}" ]]; then
    if PYTHON="$py" bash -c "source $KAFKA_DIR/lib.sh && kafka_probe 2" >/dev/null 2>&1; then
        echo "test-env: using the Kafka broker already on 127.0.0.1:$KAFKA_PORT" >&2
    else
        echo "test-env: starting Kafka on 127.0.0.1:$KAFKA_PORT" >&2
        if ! "$KAFKA_DIR/kafka-up.sh" >&2; then
            echo "test-env: the Kafka broker did not start; Kafka tests cannot run" >&2
            exit 1
        fi
        started=1
    fi
    export STREAMKIT_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
fi

# a second, separate broker: each region of a global table has its own Kafka cluster
if [[ -z "${STREAMKIT_TEST_KAFKA2:-}" ]]; then
    if KAFKA_PORT="$KAFKA2_PORT" PYTHON="$py" bash -c "source $KAFKA_DIR/lib.sh && kafka_probe 2" >/dev/null 2>&1; then
        echo "test-env: using the second Kafka broker already on 127.0.0.1:$KAFKA2_PORT" >&2
    else
        echo "test-env: starting a second Kafka broker on 127.0.0.1:$KAFKA2_PORT" >&2
        if ! KAFKA_PORT="$KAFKA2_PORT" KAFKA_HEAP_OPTS="${KAFKA2_HEAP_OPTS:--Xms128m -Xmx384m}" \
            "$KAFKA_DIR/kafka-up.sh" >&2; then
            echo "test-env: the second Kafka broker did not start; global-table Kafka tests cannot run" >&2
            exit 1
        fi
        started2=1
    fi
    export STREAMKIT_TEST_KAFKA2="127.0.0.1:$KAFKA2_PORT"
fi

if [[ -z "${STREAMKIT_TEST_S3:-}" ]]; then
    if curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null; then
        echo "test-env: using the S3 server already on 127.0.0.1:$S3_PORT" >&2
    else
        echo "test-env: starting S3Proxy on 127.0.0.1:$S3_PORT" >&2
        if ! PYTHON="$py" compose/s3/s3-up.sh >&2; then
            echo "test-env: the S3 server did not start; S3 tests cannot run" >&2
            exit 1
        fi
        s3_started=1
    fi
    export STREAMKIT_TEST_S3="http://127.0.0.1:$S3_PORT"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-streamkit}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-streamkit-secret}"
    export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
fi

# Does a PostgreSQL server answer on 127.0.0.1:$PG_PORT? (pg_isready when installed,
# else: does anything accept a TCP connection there)
pg_answers() {
    local isready=/usr/lib/postgresql/15/bin/pg_isready
    [[ -x "$isready" ]] || isready="$(command -v pg_isready || true)"
    if [[ -n "$isready" ]]; then
        "$isready" -q -h 127.0.0.1 -p "$PG_PORT" -U streamkit -d streamkit -t 2 >/dev/null 2>&1
    else
        bash -c "</dev/tcp/127.0.0.1/$PG_PORT" >/dev/null 2>&1
    fi
}

if [[ -z "${STREAMKIT_TEST_POSTGRES:-}" ]]; then
    if pg_answers; then
        echo "test-env: using the PostgreSQL server already on 127.0.0.1:$PG_PORT" >&2
    else
        echo "test-env: starting PostgreSQL on 127.0.0.1:$PG_PORT" >&2
        if ! compose/postgres/pg-up.sh >&2; then
            echo "test-env: the PostgreSQL server did not start; PostgreSQL tests cannot run" >&2
            exit 1
        fi
        pg_started=1
    fi
    export STREAMKIT_TEST_POSTGRES="postgresql://streamkit:streamkit@127.0.0.1:$PG_PORT/streamkit"
fi

"$@"
status=$?
# pytest exits 5 when it collected no test: that is a failure here, not a pass
exit $status
