"""Kafka-only: the change log across a broker crash (``kill -9``) and restart.

Needs ``STREAMKIT_TEST_KAFKA`` (skipped, saying so, when unset; failing when set
and the broker is unreachable) and the project's broker scripts: the test kills
the broker with ``compose/kafka/kafka-down.sh --kill`` and starts it again with
``kafka-up.sh`` on the same data (``KAFKA_PORT`` from the environment, else the
port of ``STREAMKIT_TEST_KAFKA``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamkit.log import ChangeLog, LogUnavailable, OutRecord, TopicConfig, from_url
from tests.kafka_env import KAFKA_ENV, SCRIPTS, broker, needs_kafka, script_env

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.exclusive,
    pytest.mark.timeout(180),
    needs_kafka,
]


@dataclass
class Writer:
    """Appends one record at a time and remembers what happened to each."""

    name: str
    acked: list[int] = field(default_factory=list)
    in_doubt: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    slowest: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    def value(self, i: int) -> bytes:
        return f"{self.name}:{i}".encode()


async def _write(
    log: ChangeLog, writer: Writer, topic: str, stop: asyncio.Event, pause: float
) -> None:
    producer = log.producer(f"crash-{writer.name}-{uuid.uuid4().hex}")
    await producer.start()
    i = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await producer.append([OutRecord(topic, b"key-%d" % (i % 8), writer.value(i))])
            writer.acked.append(i)
        except LogUnavailable as e:
            (writer.in_doubt if e.in_doubt else writer.refused).append(i)
            writer.errors[type(e.__cause__).__name__] += 1
        writer.slowest = max(writer.slowest, time.monotonic() - started)
        i += 1
        await asyncio.sleep(pause)
    await producer.close()


async def test_acknowledged_appends_survive_a_broker_crash_exactly_once() -> None:
    """Kill -9 the broker while two producers append, restart it, count every record.

    ``patient`` has ``append_timeout`` 40 s, longer than the outage:
    its appends wait for the broker and complete after the restart, none fails.
    ``hasty`` has 2 s: its appends fail with LogUnavailable during the outage (in
    doubt when the commit had been requested) and succeed again afterwards.
    Afterwards every acknowledged append is in the topic exactly once, an in-doubt
    one at most once, and a refused one (commit never requested) not at all.
    """
    address = os.environ[KAFKA_ENV]
    loop = asyncio.get_running_loop()
    patient_log = from_url(f"kafka://{address}?request_timeout_ms=5000&append_timeout=40")
    hasty_log = from_url(f"kafka://{address}?request_timeout_ms=2000&append_timeout=2")
    await patient_log.open()
    await hasty_log.open()
    topic = f"crash.{uuid.uuid4().hex}"
    await patient_log.ensure_topic(topic, TopicConfig(partitions=4))
    patient, hasty = Writer("patient"), Writer("hasty")
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_write(patient_log, patient, topic, stop, 0.01)),
        asyncio.create_task(_write(hasty_log, hasty, topic, stop, 0.2)),
    ]
    try:
        await asyncio.sleep(1.0)
        before = len(patient.acked), len(hasty.acked)
        assert min(before) > 0, "nothing was appended before the crash"
        killed = await broker("kafka-down.sh", "--kill")
        await asyncio.sleep(3.0)  # longer than hasty's append_timeout
        restarted = await broker("kafka-up.sh")
        # both carry on after the restart
        deadline = loop.time() + 60
        while len(patient.acked) < before[0] + 20 or len(hasty.acked) < before[1] + 5:
            assert loop.time() < deadline, f"no progress after the restart: {patient}, {hasty}"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker("kafka-up.sh")  # whatever happened, leave a broker running

    try:
        reader = patient_log.reader(topic)
        expected = len(patient.acked) + len(hasty.acked)
        seen: Counter[bytes] = Counter()
        order: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
        deadline = loop.time() + 30
        while sum(seen.values()) < expected + len(hasty.in_doubt) and loop.time() < deadline:
            batch = await reader.fetch(max_records=10_000, timeout=1.0)
            if not batch and sum(seen.values()) >= expected:
                break
            for r in batch:
                seen[r.value] += 1
                name, _, i = r.value.decode().partition(":")
                assert r.key is not None
                order[r.key].append((name, int(i)))
    finally:
        await patient_log.delete_topic(topic)
        await patient_log.close()
        await hasty_log.close()

    report = (
        f"kill {killed:.1f} s, restart {restarted:.1f} s; patient: {len(patient.acked)} acked, "
        f"slowest append {patient.slowest:.1f} s, errors {dict(patient.errors)}; hasty: "
        f"{len(hasty.acked)} acked, {len(hasty.in_doubt)} in doubt, {len(hasty.refused)} "
        f"refused, errors {dict(hasty.errors)}"
    )
    print(report)  # the figures docs/design/change-log.md quotes
    duplicates = {v: n for v, n in seen.items() if n > 1}
    assert not duplicates, f"records seen twice: {list(duplicates)[:5]} ({report})"
    for w in (patient, hasty):
        missing = [i for i in w.acked if seen[w.value(i)] != 1]
        assert not missing, f"{w.name}: acknowledged appends missing: {missing[:10]} ({report})"
        ghosts = [i for i in w.refused if seen[w.value(i)]]
        assert not ghosts, f"{w.name}: refused appends appeared: {ghosts} ({report})"
    # the patient writer never saw an error: its appends waited for the broker
    assert not patient.refused and not patient.in_doubt, report
    assert patient.slowest > 2.0, f"the patient writer never waited for the broker ({report})"
    # the hasty one did, and then carried on
    assert hasty.refused or hasty.in_doubt, report
    # per key, each writer's records are in append order
    for key, items in order.items():
        for name in ("patient", "hasty"):
            mine = [i for n, i in items if n == name]
            assert mine == sorted(mine), f"{name}'s records of {key!r} out of order"


def _broker_pid() -> int:
    """The pid of the process listening on the test broker's port (from /proc: the pid
    file is only the scripts' record of it), else the pid file's."""
    port = script_env()["KAFKA_PORT"]
    listening = _listener(int(port))
    if listening is not None:
        return listening
    data = Path(os.environ.get("KAFKA_DATA_DIR", SCRIPTS / ".data" / port))
    return int((data / "kafka.pid").read_text().split()[0])


def _listener(port: int) -> int | None:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{f[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def _state(pid: int) -> str:
    """A process's state letter (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def test_an_in_doubt_append_is_settled_by_the_next_one() -> None:
    """Freeze the broker (SIGSTOP) just as an append asks to commit.

    The append gives up after ``append_timeout`` with ``LogUnavailable(in_doubt=True)``.
    Once the broker runs again, the next append succeeds, and from then on the
    in-doubt record is either there once or not at all, and stays that way.
    """
    address = os.environ[KAFKA_ENV]
    log = from_url(f"kafka://{address}?request_timeout_ms=5000&append_timeout=1.5")
    await log.open()
    topic = f"doubt.{uuid.uuid4().hex}"
    await log.ensure_topic(topic, TopicConfig(partitions=2))
    producer = log.producer(f"doubt-{uuid.uuid4().hex}")
    await producer.start()
    await producer.append([OutRecord(topic, b"k", b"before")])

    pid = _broker_pid()
    inner = producer._producer  # type: ignore[attr-defined]  # the aiokafka producer
    commit = inner.commit_transaction

    async def freeze_then_commit() -> None:
        os.kill(pid, signal.SIGSTOP)
        for _ in range(100):  # the test's premise: the broker is frozen before the commit
            if _state(pid) == "T":
                break
            await asyncio.sleep(0.01)
        assert _state(pid) == "T", f"broker pid {pid} did not stop (state {_state(pid)})"
        await commit()

    inner.commit_transaction = freeze_then_commit
    try:
        with pytest.raises(LogUnavailable) as info:
            await producer.append([OutRecord(topic, b"k", b"in doubt")])
        assert info.value.in_doubt
    finally:
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGCONT)

    # the broker may need a few seconds to come back to itself after the freeze
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        try:
            await producer.append([OutRecord(topic, b"k", b"after")])
            break
        except LogUnavailable:
            assert loop.time() < deadline, "no append succeeded after the broker resumed"
    try:
        first = await _read_all(log, topic)
        await asyncio.sleep(2.0)
        second = await _read_all(log, topic)
    finally:
        await producer.close()
        await log.delete_topic(topic)
        await log.close()
    print(f"in-doubt append after settling: {first}")  # the figure the design doc quotes
    assert first == second, "the in-doubt append changed its mind"
    assert first[0] == b"before"
    assert first[-1] == b"after"
    assert first[1:-1] in ([], [b"in doubt"])


async def _read_all(log: ChangeLog, topic: str) -> list[bytes]:
    reader = log.reader(topic)
    try:
        values: list[bytes] = []
        while not values or values[-1] != b"after":
            batch = await reader.fetch(timeout=5.0)
            assert batch, f"'after' never arrived: {values}"
            values.extend(r.value for r in batch)
        values.extend(r.value for r in await reader.fetch(timeout=0.3))
        return values
    finally:
        await reader.close()
