"""The Kafka change log (``kafka://host:port[,host:port][?options]``), through aiokafka.

Topics are managed with ``AIOKafkaAdminClient``; every producer is an
``AIOKafkaProducer`` with a ``transactional_id`` (so idempotent, ``acks=all``) and
each :meth:`KafkaProducer.append` is one Kafka transaction; readers are
``AIOKafkaConsumer`` objects with ``isolation_level="read_committed"``, manual
partition assignment, and a ``group_id`` only to commit and fetch offsets (they
never join the group's rebalancing).

aiokafka's failure modes (``docs/design/kafka-broker.md``) shape the code:

- It never gives up while the broker is down: commits, sends and consumer commits
  wait for ever. Every call here has its own deadline (``append_timeout`` for an
  append, ``request_timeout_ms`` for the rest) and raises :class:`LogUnavailable`
  when it passes.
- Cancelling a commit does not abort it (``asyncio.shield``): a timed-out append is
  *in doubt*. Its aiokafka producer is then thrown away and the next append starts
  a new one with the same transactional id; that one's InitProducerId makes the
  coordinator finish or abort the old transaction before anything else is written,
  so the doubt is settled, for good, before the next append.
- It retries a broker host name that does not resolve for ever, as it does one that
  is down. :meth:`KafkaLog.open` resolves the bootstrap hosts first (a warning per
  retry, for up to ``request_timeout_ms``) and raises a non-retriable ``LogError``
  naming them when none resolves, so a misspelt URL stops the relay and the handlers.
- A fenced producer is unusable (``ProducerFenced``, then ``AssertionError`` on
  reuse): :class:`Fenced` is raised and the producer stays fenced; it is never
  re-created, which would fence the newer owner in turn.

Every aiokafka exception is translated to streamkit's in one place,
:func:`_kafka_errors`, with the cause chained.

Options: ``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username``,
``sasl_plain_password``, ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``,
``client_id``, ``request_timeout_ms`` (10000), ``append_timeout`` (seconds, 30),
``fetch_max_wait_ms`` (100),
``transaction_timeout_ms`` (60000), ``replication_factor`` (default: 3, or the
number of brokers if fewer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.helpers import create_ssl_context

from streamkit.exceptions import ConfigurationError, LogError, ValidationError
from streamkit.log._base import (
    Fenced,
    LogRecord,
    LogUnavailable,
    OutRecord,
    RebalanceListener,
    StartPosition,
    TopicConfig,
    TopicMismatch,
    TopicNotFound,
    UrlOptions,
    check_consumer_options,
    check_max_records,
    check_offset,
    check_reader_options,
    check_records,
    check_topic_name,
    check_transactional_id,
    partition_for_key,
)

if TYPE_CHECKING:
    from streamkit.log._kafka_consumer import KafkaConsumer

__all__ = ("KafkaLog", "KafkaProducer", "KafkaReader", "to_log_records")

_logger = logging.getLogger("streamkit.log.kafka")

_MAX_BATCH_BYTES = 1_000_000  # below the broker's default message.max.bytes (1 MiB)
_OPTIONS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "client_id",
    "request_timeout_ms",
    "fetch_max_wait_ms",
    "append_timeout",
    "transaction_timeout_ms",
    "replication_factor",
)
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
_STOP_GRACE = 5.0  # seconds a discarded producer gets to stop before it is torn down


# --- translating aiokafka errors, once ----------------------------------------------------
@dataclass(slots=True)
class _Txn:
    """What an append had got to when it failed (decides ``in_doubt``)."""

    commit_requested: bool = False


@contextlib.contextmanager
def _kafka_errors(
    what: str, *, topic: str | None = None, txn: _Txn | None = None
) -> Iterator[None]:
    """Translate aiokafka / network / deadline errors into streamkit's, cause chained.

    Args:
        what: the operation, for the message ("append to Kafka").
        topic: the topic concerned, for TopicNotFound.
        txn: an append's progress: a failure after its commit was requested is in doubt.
    """
    try:
        yield
    except kafka_errors.ProducerFenced as e:
        # also what a transaction that outlived transaction_timeout_ms gets; our append
        # deadline is shorter than that timeout, so here it means a newer producer
        raise Fenced(f"{what}: fenced by a newer producer with the same transactional id") from e
    except kafka_errors.UnknownTopicOrPartitionError as e:
        name = topic or "?"
        raise TopicNotFound(f"{what}: topic {name!r} does not exist", topic=name) from e
    except (TimeoutError, kafka_errors.KafkaTimeoutError, kafka_errors.RequestTimedOutError) as e:
        raise _unavailable(f"{what}: Kafka did not answer in time", txn) from e
    except (kafka_errors.KafkaConnectionError, kafka_errors.NodeNotReadyError, OSError) as e:
        raise _unavailable(f"{what}: cannot reach Kafka ({e})", txn) from e
    except kafka_errors.KafkaError as e:
        if e.retriable:
            raise _unavailable(f"{what}: {e!r}", txn) from e
        raise LogError(f"{what}: Kafka refused it: {e!r}", retriable=False) from e


def _unavailable(message: str, txn: _Txn | None) -> LogUnavailable:
    # read when the error happens, not when the block was entered: the commit request
    # is what turns a failed append into one that may still appear
    if txn is not None and txn.commit_requested:
        return LogUnavailable(
            f"{message} (the commit had been requested: the records may still appear; "
            "the next append settles it)",
            in_doubt=True,
        )
    return LogUnavailable(message)


def to_log_records(got: Mapping[Any, Sequence[Any]]) -> list[LogRecord]:
    """aiokafka's ``getmany()`` result as LogRecords."""
    out: list[LogRecord] = []
    append = out.append
    make = LogRecord
    for tp, messages in got.items():
        topic, partition = tp.topic, tp.partition
        for m in messages:
            value = m.value
            hs = m.headers
            if hs:
                headers = tuple(hs)
                for _, v in headers:
                    if v is None:  # Kafka allows null header values; ours are bytes
                        headers = tuple((k, b"" if v is None else v) for k, v in headers)
                        break
            else:
                headers = ()
            append(
                make(
                    topic,
                    partition,
                    m.offset,
                    m.key,
                    value if value is not None else b"",
                    headers,
                    m.timestamp,
                )
            )
    return out


# --- the URL ------------------------------------------------------------------------------
def _parse_bootstrap(url: str, hosts: str) -> list[str]:
    servers = []
    for raw in hosts.split(","):
        hp = raw.strip()
        if not hp:
            continue
        if hp.startswith("["):  # [IPv6]:port
            host, _, port = hp[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = hp.rpartition(":") if ":" in hp else (hp, "", "")
        port = port or "9092"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"bad broker address {hp!r} in change-log URL {url!r}")
        servers.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not servers:
        raise ConfigurationError(f"change-log URL {url!r} names no broker")
    return servers


def _redact(url: str) -> str:
    if "sasl_plain_password=" not in url:
        return url
    base, _, query = url.partition("?")
    parts = [
        "sasl_plain_password=***" if p.startswith("sasl_plain_password=") else p
        for p in query.split("&")
    ]
    return base + "?" + "&".join(parts)


# --- the log ------------------------------------------------------------------------------
class KafkaLog:
    """The change log on Apache Kafka. See the module docstring for the URL options.

    ``url`` is the URL given, with any password replaced by ``***``.
    """

    def __init__(self, url: str) -> None:
        if not url.startswith("kafka://"):
            raise ConfigurationError(f"not a kafka:// change-log URL: {_redact(url)!r}")
        self.url = _redact(url)
        hosts, _, query = url[len("kafka://") :].partition("?")
        self.bootstrap_servers = _parse_bootstrap(self.url, unquote(hosts))
        opts = UrlOptions(self.url, query, _OPTIONS)
        protocol = opts.get_str("security_protocol", "PLAINTEXT").upper()
        if protocol not in _SECURITY_PROTOCOLS:
            raise ConfigurationError(
                f"security_protocol={protocol!r} must be one of {list(_SECURITY_PROTOCOLS)}"
            )
        self.request_timeout_ms = opts.get_int("request_timeout_ms", 10_000)
        self.append_timeout = opts.get_float("append_timeout", 30.0)
        self.transaction_timeout_ms = opts.get_int("transaction_timeout_ms", 60_000)
        # how long the broker holds an empty fetch; aiokafka cannot cancel one in flight,
        # so after a seek the next fetch waits up to this long (aiokafka's default: 500)
        self.fetch_max_wait_ms = opts.get_int("fetch_max_wait_ms", 100)
        rf = opts.get_int("replication_factor", 0)
        self.replication_factor: int | None = rf or None
        self._cluster_rf: int | None = None  # without replication_factor: from the cluster
        if self.request_timeout_ms < 100 or self.append_timeout <= 0:
            raise ConfigurationError("request_timeout_ms and append_timeout must be positive")
        if self.append_timeout * 1000 >= self.transaction_timeout_ms:
            # an append must give up before the broker aborts its transaction, or a
            # timed-out transaction would look like fencing (both are ProducerFenced)
            raise ConfigurationError(
                "append_timeout must be shorter than transaction_timeout_ms "
                f"({self.append_timeout} s >= {self.transaction_timeout_ms} ms)"
            )
        self._client_kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": protocol,
        }
        if "client_id" in opts:
            self._client_kwargs["client_id"] = opts.get_str("client_id", "")
        if protocol.startswith("SASL"):
            self._client_kwargs["sasl_mechanism"] = opts.get_str("sasl_mechanism", "PLAIN")
            for name in ("sasl_plain_username", "sasl_plain_password"):
                if name in opts:
                    self._client_kwargs[name] = opts.get_str(name, "")
        self._ssl_files = {
            k: opts.get_str(f"ssl_{k}", "")
            for k in ("cafile", "certfile", "keyfile")
            if f"ssl_{k}" in opts
        }
        if self._ssl_files and not protocol.endswith("SSL"):
            raise ConfigurationError(
                f"ssl_* options need security_protocol=SSL or SASL_SSL (it is {protocol})"
            )
        self._use_ssl = protocol.endswith("SSL")
        self._admin: Any = None
        self._open_lock = asyncio.Lock()
        # strong references: a reader dropped without close() still holds connections
        # (Kafka) or a wake-up registration (local) that close() must release
        self._children: set[KafkaProducer | KafkaReader | KafkaConsumer] = set()
        self._partition_counts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"KafkaLog({self.url!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def client_kwargs(self) -> dict[str, Any]:
        """Connection settings shared by every aiokafka client this log creates."""
        kwargs = dict(self._client_kwargs)
        if self._use_ssl:
            kwargs["ssl_context"] = create_ssl_context(**self._ssl_files)
        return kwargs

    # --- lifecycle ---
    async def open(self) -> None:
        """Connect the admin client (fails fast with LogUnavailable if no broker answers).

        Raises:
            LogError: (not retriable) no broker host of the URL resolves in DNS within
                ``request_timeout_ms``: a misspelt host would otherwise be retried for ever.
        """
        async with self._open_lock:
            if self._admin is not None:
                return
            await self._resolve_brokers()
            admin = AIOKafkaAdminClient(**self.client_kwargs())
            try:
                with _kafka_errors(f"connect to Kafka at {','.join(self.bootstrap_servers)}"):
                    await admin.start()
            except BaseException:
                await _quietly(admin.close())
                raise
            self._admin = admin

    async def _resolve_brokers(self) -> None:
        """Wait (up to ``request_timeout_ms``, a warning per retry) until at least one
        bootstrap host resolves; raise a non-retriable LogError naming them if none does.

        Only when the log is opened: a broker whose name stops resolving later is a
        broker that is down (LogUnavailable, retried), not a wrong URL.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_ms / 1000
        delay = 0.1
        while True:
            failed: dict[str, str] = {}
            for server in self.bootstrap_servers:
                host, _, port = server.rpartition(":")
                host = host.strip("[]")
                try:
                    async with asyncio.timeout(max(0.05, deadline - loop.time())):
                        await loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
                except socket.gaierror as e:
                    failed[host] = e.strerror or str(e)
                except TimeoutError:
                    failed[host] = "no answer from DNS"
            if len(failed) < len(self.bootstrap_servers):
                for host, why in failed.items():
                    _logger.warning("Kafka broker host %r does not resolve (%s)", host, why)
                return
            hosts = ", ".join(f"{h!r} ({why})" for h, why in failed.items())
            left = deadline - loop.time()
            if left <= 0:
                raise LogError(
                    f"cannot resolve the Kafka broker host of {self.url}: {hosts}; "
                    f"gave up after {self.request_timeout_ms / 1000:g} s (request_timeout_ms)"
                    " - check the kafka:// URL",
                    retriable=False,
                )
            _logger.warning(
                "cannot resolve the Kafka broker host of %s: %s; retrying for %.1f s more",
                self.url,
                hosts,
                left,
            )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        """Close this log's producers and readers, then the admin client."""
        for child in list(self._children):
            await child.close()
        admin, self._admin = self._admin, None
        if admin is not None:
            await _quietly(admin.close())

    def _need_admin(self) -> Any:
        if self._admin is None:
            raise LogError("the Kafka log is not open: await log.open() first")
        return self._admin

    def _deadline(self) -> asyncio.Timeout:
        return asyncio.timeout(self.request_timeout_ms / 1000)

    # --- topics ---
    async def _metadata(self, name: str) -> dict[str, Any] | None:
        admin = self._need_admin()
        with _kafka_errors(f"describe topic {name!r}", topic=name):
            async with self._deadline():
                topics = await admin.describe_topics([name])
        for t in topics:
            if t["topic"] != name:
                continue
            if t["error_code"] == _UNKNOWN_TOPIC:
                return None
            if t["error_code"]:
                with _kafka_errors(f"describe topic {name!r}", topic=name):
                    raise kafka_errors.for_code(t["error_code"])()
            result: dict[str, Any] = t
            return result
        return None

    async def partition_count(self, name: str) -> int:
        """The topic's partition count (cached per log), or TopicNotFound."""
        n = self._partition_counts.get(name)
        if n is None:
            meta = await self._metadata(name)
            if meta is None or not meta["partitions"]:
                raise TopicNotFound(f"topic {name!r} does not exist", topic=name)
            n = self._partition_counts[name] = len(meta["partitions"])
        return n

    async def describe_topic(self, name: str) -> TopicConfig | None:
        """The topic's partition count, ``retention.ms`` and ``cleanup.policy``."""
        meta = await self._metadata(name)
        if meta is None or not meta["partitions"]:
            return None
        admin = self._need_admin()
        with _kafka_errors(f"describe topic {name!r}", topic=name):
            async with self._deadline():
                responses = await admin.describe_configs(
                    [
                        ConfigResource(
                            ConfigResourceType.TOPIC,
                            name,
                            {"retention.ms": None, "cleanup.policy": None},
                        )
                    ]
                )
        configs: dict[str, str] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                if resource["error_code"] == _UNKNOWN_TOPIC:
                    return None
                if resource["error_code"]:
                    with _kafka_errors(f"describe topic {name!r}", topic=name):
                        raise kafka_errors.for_code(resource["error_code"])()
                for entry in resource["config_entries"]:
                    # aiokafka names the key field `config_names` (sic)
                    configs[entry["config_names"]] = entry["config_value"]
        return TopicConfig(
            partitions=len(meta["partitions"]),
            retention_ms=int(configs.get("retention.ms", "604800000")),
            cleanup_policy=configs.get("cleanup.policy", "delete"),
        )

    async def ensure_topic(self, name: str, config: TopicConfig) -> None:
        """Create the topic (partitions, ``retention.ms``, ``cleanup.policy``) if missing.

        Raises:
            TopicMismatch: it exists with another partition count, retention or policy.
            LogUnavailable: no broker answered in time.
        """
        check_topic_name(name)
        admin = self._need_admin()
        rf = self.replication_factor or self._cluster_rf
        if rf is None:
            # once per log: aiokafka's describe_cluster fetches (and decodes) the metadata
            # of every topic in the cluster, which made a relay's start with N tables
            # cost O(N x topics): 70 ms a table on a broker with a few hundred topics
            with _kafka_errors("read the cluster size"):
                async with self._deadline():
                    cluster = await admin.describe_cluster()
            rf = self._cluster_rf = max(1, min(3, len(cluster.get("brokers", ())) or 1))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_ms / 1000
        while True:
            topic = NewTopic(
                name,
                config.partitions,
                rf,
                topic_configs={
                    "retention.ms": str(config.retention_ms),
                    "cleanup.policy": config.cleanup_policy,
                },
            )
            with _kafka_errors(f"create topic {name!r}", topic=name):
                async with self._deadline():
                    response = await admin.create_topics([topic])
            errors = response.to_object()["topic_errors"]
            code = next((e["error_code"] for e in errors if e["topic"] == name), 0)
            if code == 0:
                await self._wait_ready(name, config.partitions)
                return
            if code != _TOPIC_ALREADY_EXISTS:
                with _kafka_errors(f"create topic {name!r}", topic=name):
                    raise kafka_errors.for_code(code)()
            actual = await self.describe_topic(name)
            if actual is not None:
                if actual != config:
                    raise TopicMismatch(name, wanted=config, actual=actual)
                await self._wait_ready(name, config.partitions)
                return
            # "exists" but not describable: a deletion of that name is still under way
            if loop.time() > deadline:
                raise LogUnavailable(f"topic {name!r} is still being deleted; try again")
            await asyncio.sleep(0.2)

    async def _wait_ready(self, name: str, partitions: int) -> None:
        # create_topics returns before every partition has a leader; a reader or
        # producer started in that window would see an unknown topic
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_ms / 1000
        while True:
            meta = await self._metadata(name)
            if (
                meta is not None
                and len(meta["partitions"]) == partitions
                and all(p["leader"] >= 0 for p in meta["partitions"])
            ):
                self._partition_counts[name] = partitions
                return
            if loop.time() > deadline:
                raise LogUnavailable(f"topic {name!r} was created but has no leaders yet")
            await asyncio.sleep(0.05)

    async def delete_topic(self, name: str) -> None:
        """Delete the topic; returns once the brokers no longer list it."""
        admin = self._need_admin()
        self._partition_counts.pop(name, None)
        with _kafka_errors(f"delete topic {name!r}", topic=name):
            async with self._deadline():
                response = await admin.delete_topics([name])
        for entry in response.to_object()["topic_error_codes"]:
            if entry["error_code"] not in (0, _UNKNOWN_TOPIC):
                with _kafka_errors(f"delete topic {name!r}", topic=name):
                    raise kafka_errors.for_code(entry["error_code"])()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_ms / 1000
        # deletion is asynchronous on the brokers; polling metadata is the only signal
        while loop.time() < deadline:
            if await self._metadata(name) is None:
                return
            await asyncio.sleep(0.1)

    def partition_for(self, topic_partitions: int, key: bytes) -> int:
        """Kafka's default (murmur2) partition for ``key``."""
        return partition_for_key(topic_partitions, key)

    # --- producers and readers ---
    def producer(self, transactional_id: str) -> KafkaProducer:
        """A transactional producer; ``await start()`` before appending."""
        check_transactional_id(transactional_id)
        p = KafkaProducer(self, transactional_id)
        self._children.add(p)
        return p

    def consumer(
        self,
        topic: str,
        *,
        group: str,
        listener: RebalanceListener,
        start: StartPosition = "earliest",
        session_timeout: float = 10.0,
    ) -> KafkaConsumer:
        """A consumer-group member; see :class:`~streamkit.log.LogConsumer`."""
        from streamkit.log._kafka_consumer import KafkaConsumer

        check_consumer_options(start, group, session_timeout)
        c = KafkaConsumer(
            self,
            topic,
            group=group,
            listener=listener,
            start=start,
            session_timeout=session_timeout,
        )
        self._children.add(c)
        return c

    def reader(
        self,
        topic: str,
        *,
        group: str | None = None,
        partitions: Sequence[int] | None = None,
        start: StartPosition = "earliest",
    ) -> KafkaReader:
        """A read-committed reader of ``topic``; see :class:`~streamkit.log.LogReader`."""
        check_reader_options(start, group)
        r = KafkaReader(self, topic, group=group, partitions=partitions, start=start)
        self._children.add(r)
        return r


async def _quietly(aw: Any) -> None:
    """Await a clean-up step whose failure must not hide the error being raised."""
    try:
        await aw
    except Exception:  # clean-up of a broken client: report, never raise
        _logger.debug("ignored error while closing an aiokafka client", exc_info=True)


async def _stop_producer(producer: Any) -> None:
    """Stop an aiokafka producer, even one whose broker is gone.

    ``AIOKafkaProducer.stop()`` first waits until every queued batch is delivered,
    which is for ever while the broker is down. After a grace period the sender
    task (private, aiokafka 0.14) is cancelled and the connections closed; any
    transaction it left open is aborted by the coordinator when the next producer
    with the same transactional id starts, or when it times out.
    """
    stop = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait([stop], timeout=_STOP_GRACE)
    sender = getattr(producer, "_sender", None)
    if not done:
        if sender is not None:
            await _quietly(sender.close())
        await _quietly(producer.client.close())
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await stop
    _consume_stray_errors(producer)


def _consume_stray_errors(producer: Any) -> None:
    """Mark errors we already reported as read in aiokafka's internal futures.

    After a failed or fenced transaction, aiokafka (0.14, private attributes) leaves
    the error in its transaction waiter and sender task, which nobody awaits; asyncio
    would log "Future exception was never retrieved" at ERROR for an error this
    module has already raised as Fenced or LogError.
    """
    sender = getattr(producer, "_sender", None)
    txn_manager = getattr(producer, "_txn_manager", None)
    for fut in (
        getattr(sender, "sender_task", None),
        getattr(txn_manager, "_transaction_waiter", None),
    ):
        if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
            fut.exception()


class KafkaProducer:
    """A transactional producer on Kafka (see :class:`~streamkit.log.LogProducer`)."""

    def __init__(self, log: KafkaLog, transactional_id: str) -> None:
        self._log = log
        self.transactional_id = transactional_id
        self._producer: Any = None
        self._lock = asyncio.Lock()
        self._started = False
        self._fenced = False
        self._closed = False
        self._stopping: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"KafkaProducer({self.transactional_id!r})"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise LogError("the producer is closed")
        if self._fenced:
            raise Fenced(
                f"producer {self.transactional_id!r} was fenced by a newer one",
                transactional_id=self.transactional_id,
            )

    async def start(self) -> None:
        """Connect and register the transactional id, fencing older producers.

        Raises:
            LogUnavailable: no broker answered within ``append_timeout``.
        """
        self._check_usable()
        async with self._lock:
            if self._started and self._producer is not None:
                return
            with _kafka_errors(f"start producer {self.transactional_id!r}"):
                async with asyncio.timeout(self._log.append_timeout):
                    await self._connect()
            self._started = True

    async def _connect(self) -> Any:
        """A started aiokafka producer holding the current epoch (call under the lock)."""
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            **self._log.client_kwargs(),
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            transaction_timeout_ms=self._log.transaction_timeout_ms,
            linger_ms=0,
            # appends are sent as one batch per partition (see _transaction): let a
            # batch hold a whole relay append's share of a partition
            max_batch_size=_MAX_BATCH_BYTES,
        )
        try:
            await producer.start()
            # An empty transaction waits for InitProducerId, which is what fences the
            # older epochs (and settles their open transactions); aiokafka ends an
            # empty transaction locally, without a request.
            await producer.begin_transaction()
            await producer.abort_transaction()
        except BaseException:
            self._discard(producer)
            raise
        self._producer = producer
        return producer

    def _discard(self, producer: Any) -> None:
        # stopped in the background: with the broker down that takes _STOP_GRACE, and
        # the caller is already late. close() waits for these.
        if producer is self._producer:
            self._producer = None
        task = asyncio.ensure_future(_stop_producer(producer))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append all records in one Kafka transaction (see :class:`LogProducer`).

        Waits at most ``append_timeout`` seconds; then raises :class:`LogUnavailable`,
        whose ``in_doubt`` says whether the commit had been requested.
        """
        recs = check_records(records)
        self._check_usable()
        if not self._started:
            raise LogError("the producer is not started: await producer.start() first")
        if not recs:
            return
        async with self._lock:
            self._check_usable()
            txn = _Txn()
            try:
                with _kafka_errors(f"append to Kafka ({len(recs)} records)", txn=txn):
                    async with asyncio.timeout(self._log.append_timeout):
                        await self._transaction(recs, txn)
            except Fenced:
                self._fenced = True
                if self._producer is not None:
                    self._discard(self._producer)
                raise

    async def _transaction(self, recs: list[OutRecord], txn: _Txn) -> None:
        # group by partition, keeping each partition's order: one aiokafka batch per
        # partition costs far less than one send() per record (profiled: the relay
        # spent most of its time in per-record send bookkeeping)
        counts: dict[str, int] = {}
        by_partition: dict[tuple[str, int], list[OutRecord]] = {}
        for i, r in enumerate(recs):
            n = counts.get(r.topic)
            if n is None:
                with _kafka_errors("append to Kafka", topic=r.topic):
                    n = counts[r.topic] = await self._log.partition_count(r.topic)
            part = partition_for_key(n, r.key) if r.partition is None else r.partition
            if part >= n:
                raise ValidationError(
                    f"records[{i}].partition={part} but topic {r.topic!r} has {n} partitions"
                )
            by_partition.setdefault((r.topic, part), []).append(r)
        producer = await self._connect()
        clean = False
        try:
            await producer.begin_transaction()
            futures = []
            for (topic, part), group in by_partition.items():
                batch = producer.create_batch()
                for r in group:
                    headers = list(r.headers)
                    if (
                        batch.append(
                            timestamp=r.timestamp_ms, key=r.key, value=r.value, headers=headers
                        )
                        is None
                    ):
                        batch.close()
                        futures.append(await producer.send_batch(batch, topic, partition=part))
                        batch = producer.create_batch()
                        if (
                            batch.append(
                                timestamp=r.timestamp_ms, key=r.key, value=r.value, headers=headers
                            )
                            is None
                        ):  # pragma: no cover - check_records bounds record size
                            raise ValidationError(f"a record for {topic!r} does not fit a batch")
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=part))
            await asyncio.wait(futures)
            failed = next((f.exception() for f in futures if f.exception() is not None), None)
            if failed is not None:
                if isinstance(failed, kafka_errors.ProducerFenced):
                    raise failed
                # The broker refused a record (a timestamp too far ahead, a size limit):
                # abort, so none of the others become visible either. The producer is
                # replaced all the same (clean stays False): aiokafka has counted the
                # refused batch's sequence numbers, so its next send to that partition
                # would fail with OutOfOrderSequenceNumber; a new producer id resets them.
                _consume_stray_errors(producer)
                await producer.abort_transaction()
                raise failed
            txn.commit_requested = True
            await producer.commit_transaction()
            clean = True
        finally:
            if not clean:
                # cancelled, timed out or failed mid-transaction: this aiokafka
                # producer's state is unknown (maybe still committing). A new one,
                # same transactional id, settles the old transaction when it starts.
                self._discard(producer)

    async def close(self) -> None:
        """Stop the producer (an open transaction is aborted by the broker)."""
        self._closed = True
        self._log._children.discard(self)
        async with self._lock:
            if self._producer is not None:
                self._discard(self._producer)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


class KafkaReader:
    """A read-committed reader on Kafka (see :class:`~streamkit.log.LogReader`)."""

    def __init__(
        self,
        log: KafkaLog,
        topic: str,
        *,
        group: str | None,
        partitions: Sequence[int] | None,
        start: StartPosition,
    ) -> None:
        self._log = log
        self.topic = topic
        self.group = group
        self._wanted = None if partitions is None else sorted(set(partitions))
        self._start: StartPosition = start
        self._consumer: Any = None
        self._partitions: list[int] = []
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaReader({self.topic!r}, group={self.group!r})"

    async def __aenter__(self) -> Self:
        await self._ensure()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure(self) -> Any:
        if self._closed:
            raise LogError("the reader is closed")
        if self._consumer is not None:
            return self._consumer
        async with self._lock:
            if self._consumer is not None:
                return self._consumer
            n = await self._log.partition_count(self.topic)
            parts = list(range(n)) if self._wanted is None else self._wanted
            bad = [p for p in parts if not 0 <= p < n]
            if bad:
                raise ValidationError(f"topic {self.topic!r} has no partitions {bad} (it has {n})")
            consumer = AIOKafkaConsumer(
                **self._log.client_kwargs(),
                group_id=self.group,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset=self._start,
                fetch_max_wait_ms=self._log.fetch_max_wait_ms,
            )
            try:
                with _kafka_errors(f"start a reader of {self.topic!r}", topic=self.topic):
                    async with self._log._deadline():
                        await consumer.start()
                tps = [TopicPartition(self.topic, p) for p in parts]
                consumer.assign(tps)
                # aiokafka resolves starting positions (committed offset, else reset)
                # lazily, in the background; resolving them here makes a "latest"
                # reader start at the end as of now, and the first fetch's timeout
                # mean the same as every later one's
                with _kafka_errors(f"start a reader of {self.topic!r}", topic=self.topic):
                    async with self._log._deadline():
                        for tp in tps:
                            await consumer.position(tp)
            except BaseException:
                await _quietly(consumer.stop())
                raise
            self._consumer, self._partitions = consumer, parts
            return consumer

    def _tp(self, partition: int) -> TopicPartition:
        if partition not in self._partitions:
            raise ValidationError(
                f"partition {partition} is not read by this reader of {self.topic!r} "
                f"(it reads {self._partitions})"
            )
        return TopicPartition(self.topic, partition)

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _kafka_errors(f"{what} ({self.topic!r})", topic=self.topic)

    async def partitions(self) -> list[int]:
        """The partitions this reader reads, ascending."""
        await self._ensure()
        return list(self._partitions)

    async def position(self, partition: int) -> int:
        """The offset of the next record :meth:`fetch` returns from ``partition``."""
        consumer = await self._ensure()
        tp = self._tp(partition)
        with self._errors("read the position"):
            async with self._log._deadline():
                return int(await consumer.position(tp))

    async def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (reset to ``start`` if out of range)."""
        check_offset(offset)
        consumer = await self._ensure()
        consumer.seek(self._tp(partition), offset)

    async def _seek_bound(self, partition: int | None, to_end: bool) -> None:
        consumer = await self._ensure()
        tps = (
            [self._tp(partition)]
            if partition is not None
            else [TopicPartition(self.topic, p) for p in self._partitions]
        )
        # aiokafka resolves these lazily; resolving now makes position() and the next
        # fetch agree with the offsets as they are at this call
        with self._errors("seek"):
            async with self._log._deadline():
                offsets = await (
                    consumer.end_offsets(tps) if to_end else consumer.beginning_offsets(tps)
                )
        for tp, off in offsets.items():
            consumer.seek(tp, off)

    async def seek_to_beginning(self, partition: int | None = None) -> None:
        """Move to the oldest kept record (of one partition, or all)."""
        await self._seek_bound(partition, to_end=False)

    async def seek_to_end(self, partition: int | None = None) -> None:
        """Move past the last committed record (of one partition, or all)."""
        await self._seek_bound(partition, to_end=True)

    async def beginning_offsets(self) -> dict[int, int]:
        """The oldest kept offset of each partition read."""
        consumer = await self._ensure()
        with self._errors("read the beginning offsets"):
            async with self._log._deadline():
                got = await consumer.beginning_offsets(
                    [TopicPartition(self.topic, p) for p in self._partitions]
                )
        return {tp.partition: int(off) for tp, off in sorted(got.items())}

    async def end_offsets(self) -> dict[int, int]:
        """The last stable offset (after the last committed record) of each partition."""
        consumer = await self._ensure()
        with self._errors("read the end offsets"):
            async with self._log._deadline():
                got = await consumer.end_offsets(
                    [TopicPartition(self.topic, p) for p in self._partitions]
                )
        return {tp.partition: int(off) for tp, off in sorted(got.items())}

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """The first kept offset with a timestamp >= ``timestamp_ms``; None past the end."""
        consumer = await self._ensure()
        tp = self._tp(partition)
        with self._errors("look up an offset by time"):
            async with self._log._deadline():
                got = await consumer.offsets_for_times({tp: max(0, int(timestamp_ms))})
        found = got.get(tp)
        return None if found is None else int(found.offset)

    async def fetch(
        self,
        *,
        max_records: int = 500,
        timeout: float = 0.5,  # noqa: ASYNC109 - a long-poll wait, as getmany(timeout_ms)
    ) -> list[LogRecord]:
        """The next committed records, waiting up to ``timeout`` s for the first one.

        While the broker is down this returns ``[]`` after ``timeout`` (aiokafka only
        logs connection errors while fetching) and resumes once it is back.
        """
        check_max_records(max_records)
        consumer = await self._ensure()
        with self._errors("fetch"):
            got = await consumer.getmany(
                timeout_ms=max(0, int(timeout * 1000)), max_records=max_records
            )
        return to_log_records(got)

    def _need_group(self) -> str:
        if self.group is None:
            raise ConfigurationError(
                f"this reader of {self.topic!r} has no group: pass group= to log.reader()"
            )
        return self.group

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Store the group's next offset to read for each given partition.

        With the broker down this raises LogUnavailable after ``request_timeout_ms``;
        the commit may still land when the broker is back (committing again is safe).
        """
        self._need_group()
        consumer = await self._ensure()
        items = {}
        for p, off in dict(offsets).items():
            check_offset(off, f"offset for partition {p}")
            items[self._tp(p)] = off
        if not items:
            return
        with self._errors("commit offsets"):
            async with self._log._deadline():
                await consumer.commit(items)

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets for the partitions read."""
        self._need_group()
        consumer = await self._ensure()
        tps = [TopicPartition(self.topic, p) for p in self._partitions]
        with self._errors("read committed offsets"):
            async with self._log._deadline():
                got = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
        return {tp.partition: int(off) for tp, off in zip(tps, got, strict=True) if off is not None}

    async def close(self) -> None:
        """Stop the consumer."""
        self._closed = True
        self._log._children.discard(self)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _quietly(consumer.stop())
