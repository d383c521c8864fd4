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
:func:`_kafka_errors` (in ``_kafka_util.py``), with the cause chained.
:class:`KafkaProducer` and :class:`KafkaReader` live in ``_kafka_clients.py`` and
are re-exported here.

Options: ``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username``,
``sasl_plain_password``, ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``,
``client_id``, ``request_timeout_ms`` (10000), ``append_timeout`` (seconds, 30),
``fetch_max_wait_ms`` (100),
``transaction_timeout_ms`` (60000), ``replication_factor`` (default: 3, or the
number of brokers if fewer).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.helpers import create_ssl_context

from streamkit.exceptions import ConfigurationError, LogError
from streamkit.log._base import (
    LogUnavailable,
    RebalanceListener,
    StartPosition,
    TopicConfig,
    TopicMismatch,
    TopicNotFound,
    UrlOptions,
    check_consumer_options,
    check_reader_options,
    check_topic_name,
    check_transactional_id,
    partition_for_key,
)
from streamkit.log._kafka_clients import KafkaProducer, KafkaReader
from streamkit.log._kafka_util import _kafka_errors, _quietly, to_log_records

if TYPE_CHECKING:
    from streamkit.log._kafka_consumer import KafkaConsumer

__all__ = ("KafkaLog", "KafkaProducer", "KafkaReader", "to_log_records")

_logger = logging.getLogger("streamkit.log.kafka")

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
