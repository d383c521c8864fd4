"""The change log: one interface, two backends chosen by URL.

``local://path`` is a durable embedded log in a SQLite file (one machine, no
services); ``kafka://host:port[,host:port]`` is Apache Kafka through aiokafka.
Both are loaded only when :func:`from_url` asks for them, so importing
``streamkit`` or ``streamkit.log`` does not import aiokafka.

Example:
    ```python
    from streamkit.log import OutRecord, TopicConfig, from_url

    async with from_url("local://./.streamkit/log") as log:
        await log.ensure_topic("shop.Users", TopicConfig(partitions=8))
        producer = log.producer("relay-shop")
        await producer.start()
        await producer.append([OutRecord("shop.Users", key=b"123", value=b"...")])
        reader = log.reader("shop.Users", group="audit")
        records = await reader.fetch(timeout=1.0)
    ```
"""

from streamkit.log._base import (
    MAX_RECORD_BYTES,
    ChangeLog,
    CommitRefused,
    Fenced,
    LogConsumer,
    LogProducer,
    LogReader,
    LogRecord,
    LogUnavailable,
    OutRecord,
    RebalanceListener,
    StartPosition,
    TopicConfig,
    TopicMismatch,
    TopicNotFound,
    from_url,
    murmur2,
    partition_for_key,
    read_until,
)

__all__ = (
    "MAX_RECORD_BYTES",
    "ChangeLog",
    "CommitRefused",
    "Fenced",
    "LogConsumer",
    "LogProducer",
    "LogReader",
    "LogRecord",
    "LogUnavailable",
    "OutRecord",
    "RebalanceListener",
    "StartPosition",
    "TopicConfig",
    "TopicMismatch",
    "TopicNotFound",
    "from_url",
    "murmur2",
    "partition_for_key",
    "read_until",
)
