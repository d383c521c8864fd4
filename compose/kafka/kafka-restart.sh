#!/usr/bin/env bash
# Stop and start the same broker, keeping its data (topics, offsets,
# transactions). For fault tests:
#
#   compose/kafka/kafka-restart.sh          clean stop (SIGTERM), then start
#   compose/kafka/kafka-restart.sh --kill   crash (SIGKILL), then start: the
#                                           broker recovers its logs on start
#
# Same environment as kafka-up.sh (KAFKA_PORT, ...). Prints the bootstrap
# address when the broker answers again. A test can also crash the broker
# itself with `kill -9 $(cat compose/kafka/.data/<port>/kafka.pid)` and later
# run kafka-up.sh, which reuses the data dir.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
    "" ) "$here/kafka-down.sh" ;;
    --kill | -9) "$here/kafka-down.sh" --kill ;;
    *) echo "usage: $0 [--kill]" >&2; exit 2 ;;
esac
exec "$here/kafka-up.sh"
