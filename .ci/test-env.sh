#!/usr/bin/env bash
# Run a command (the test suite) with the services the tests need: starts the
# local Kafka broker when none answers on 127.0.0.1:9092 and the local S3 server
# (S3Proxy) when none answers on 127.0.0.1:9000, and stops only what it started,
# whatever the command's outcome.
set -uo pipefail
cd "$(dirname "$0")/.."

KAFKA_DIR=compose/kafka
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export S3_PORT="${S3_PORT:-9000}"
started=0
s3_started=0
cleanup() {
    if [[ $started == 1 ]]; then
        "$KAFKA_DIR/kafka-down.sh" >&2 || true
    fi
    if [[ $s3_started == 1 ]]; then
        compose/s3/s3-down.sh >&2 || true
    fi
}
trap cleanup EXIT INT TERM

if [[ -z "${STREAMKIT_TEST_KAFKA:-}" ]]; then
    if PYTHON="${1:-python3}" bash -c "source $KAFKA_DIR/lib.sh && kafka_probe 2" >/dev/null 2>&1; then
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

if [[ -z "${STREAMKIT_TEST_S3:-}" ]]; then
    if curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null; then
        echo "test-env: using the S3 server already on 127.0.0.1:$S3_PORT" >&2
    else
        echo "test-env: starting S3Proxy on 127.0.0.1:$S3_PORT" >&2
        if ! PYTHON="${1:-python3}" compose/s3/s3-up.sh >&2; then
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

"$@"
status=$?
# pytest exits 5 when it collected no test: that is a failure here, not a pass
exit $status
