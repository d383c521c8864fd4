#!/usr/bin/env python3
"""Is a Kafka broker answering on HOST:PORT?  Standard library only.

Sends ApiVersions (v0) and then Metadata (v4, no topics) and checks that the
broker lists itself.  Used by kafka-up.sh; prints one line on stdout.

Exit status: 0 ready (prints "ready cluster_id=... brokers=N"),
             1 nothing listening (connection refused / timed out),
             2 something listens but is not (yet) a ready Kafka broker.
"""

from __future__ import annotations

import socket
import struct
import sys

CLIENT_ID = b"streamkit-kafka-probe"


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, corr, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _read(sock, 4))[0]
    if not 0 < size < 64 * 1024 * 1024:
        raise ValueError(f"bad response size {size}")
    data = _read(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise ValueError("correlation id mismatch")
    return data[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s


def probe(host: str, port: int, timeout: float) -> tuple[int, str]:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return 1, f"not listening: {exc}"
    try:
        with sock:
            sock.settimeout(timeout)
            # ApiVersions v0: empty body; response: error_code int16, ...
            r = _Reader(_request(sock, 18, 0, 1, b""))
            err = r.take(">h")
            if err != 0:
                return 2, f"ApiVersions error_code={err}"
            # Metadata v4: topics = [] (none), allow_auto_topic_creation = false
            r = _Reader(_request(sock, 3, 4, 2, struct.pack(">ib", 0, 0)))
            r.take(">i")  # throttle_time_ms
            brokers = r.take(">i")
            for _ in range(max(brokers, 0)):
                r.take(">i")  # node_id
                r.string()  # host
                r.take(">i")  # port
                r.string()  # rack
            cluster_id = r.string()
            controller_id = r.take(">i")
            if brokers < 1 or controller_id < 0:
                return 2, f"no live broker yet (brokers={brokers} controller={controller_id})"
            return 0, f"ready cluster_id={cluster_id} brokers={brokers}"
    except (OSError, ValueError, struct.error) as exc:
        return 2, f"not a ready Kafka broker: {exc!r}"


def main() -> int:
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9092
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    code, message = probe(host, port, timeout)
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
