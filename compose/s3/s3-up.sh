#!/usr/bin/env bash
# Start a local S3-compatible server (S3Proxy from Maven Central, filesystem backend)
# on 127.0.0.1:${S3_PORT:-9000}, in the background. Idempotent: does nothing when one
# already answers there. Credentials: streamkit / streamkit-secret (or S3_ACCESS_KEY /
# S3_SECRET_KEY). State and logs: compose/s3/.data/<port>/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${S3_PORT:-9000}"
DATA="${S3_DATA_DIR:-$HERE/.data/$PORT}"
LIB="$HERE/.lib"
KEY="${S3_ACCESS_KEY:-streamkit}"
SECRET="${S3_SECRET_KEY:-streamkit-secret}"
PY="${PYTHON:-python3}"

probe() {
    "$PY" - "$PORT" <<'PROBE' >/dev/null 2>&1
import socket, sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
except urllib.error.HTTPError:
    pass  # 403 without credentials: it answers
PROBE
}

if probe; then
    echo "s3[$PORT]: already up" >&2
    exit 0
fi
mkdir -p "$DATA/buckets"
if [[ ! -f "$LIB/.complete" ]]; then
    exec 8>"$HERE/.resolve.lock"
    flock 8
    if [[ ! -f "$LIB/.complete" ]]; then
        tmp="$(mktemp -d "$HERE/.lib.XXXX")"
        echo "s3: resolving S3Proxy from Maven Central" >&2
        if ! mvn -q -f "$HERE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$tmp" >"$HERE/.mvn.log" 2>&1; then
            echo "s3: mvn failed; see $HERE/.mvn.log" >&2
            tail -n 20 "$HERE/.mvn.log" >&2
            rm -rf "$tmp"
            exit 1
        fi
        rm -rf "$LIB"
        mv "$tmp" "$LIB"
        touch "$LIB/.complete"
    fi
    flock -u 8
fi
cat >"$DATA/s3proxy.conf" <<CONF
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$KEY
s3proxy.credential=$SECRET
jclouds.provider=filesystem
jclouds.filesystem.basedir=$DATA/buckets
CONF
# logback's default configuration logs at DEBUG: INFO is plenty
cat >"$DATA/logback.xml" <<'XML'
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %level %logger{20} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="FILE"/></root>
</configuration>
XML
setsid java -Xmx256m -Dlogback.configurationFile="$DATA/logback.xml" -cp "$LIB/*" \
    org.gaul.s3proxy.Main --properties "$DATA/s3proxy.conf" >"$DATA/s3proxy.log" 2>&1 &
echo $! >"$DATA/pid"
for _ in $(seq 1 120); do
    if probe; then
        echo "s3[$PORT]: up (pid $(cat "$DATA/pid")); log: $DATA/s3proxy.log" >&2
        exit 0
    fi
    if ! kill -0 "$(cat "$DATA/pid")" 2>/dev/null; then
        echo "s3[$PORT]: S3Proxy exited; see $DATA/s3proxy.log" >&2
        tail -n 20 "$DATA/s3proxy.log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "s3[$PORT]: did not answer within 60 s" >&2
exit 1
