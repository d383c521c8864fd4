"""Every name streamkit gives to things outside one package: topics, consumer groups,
transactional ids, record headers and storage meta keys, and the rules that keep them
from colliding.

This module imports nothing of streamkit but its exceptions, so every layer may use it.

**Topics** (Kafka's rules: 1-249 characters of ``A-Z a-z 0-9 . _ -``; and Kafka
refuses to create a topic that equals an existing one once every ``.`` is read as
``_``, so names are compared that way here too):

=====================  ============================================  ========================
what                   name                                          made by
=====================  ============================================  ========================
a table's changes      ``{namespace}.{table}``                       the capture relay
a handler's DLQ        ``{namespace}.{table}.dlq.{handler}``         the handler runtime
the audit trail        ``{namespace}.audit`` (``LogSink`` default)   ``streamkit.handlers.audit``
=====================  ============================================  ========================

Why they cannot collide:

* A table name may not contain the segment ``dlq`` between two separators
  (``.dlq.``, ``_dlq_``, ``.dlq_``, ``_dlq.``), so no table topic has the DLQ shape.
  Handler names have no ``.``, so two DLQ topics are equal only for the same table
  and handler.
* The table name ``audit`` is reserved, so no table topic is the audit topic. A
  ``LogSink`` given its own topic must name one outside ``{namespace}.`` (every name
  there may be a table's some day).
* Two streamed tables may not have topics that Kafka reads as one (``a.b`` and
  ``a_b``), and a table topic may be no longer than 249 characters, so a streamed
  table's name has at most ``248 - len(namespace)`` characters.
* No table topic may be one of Kafka's internal topics (``__consumer_offsets``,
  ``__transaction_state``).

Tables created before these rules (or whose topic the broker refuses) are set aside
by the relay instead of stopping it: see ``docs/design/capture.md``.

**Consumer groups**: a handler's ``{namespace}.{table}.{handler}``; the redrive
position of its DLQ ``{namespace}.{table}.dlq.{handler}.redrive`` (a handler group
could only equal it for a table whose name has a ``dlq`` segment).

**Transactional ids**: the relay's ``streamkit-relay-{namespace}-{storage_id}``
(one live relay per storage and namespace); DLQ and audit producers use their topic
plus a random suffix.

**Headers** of a change record in a table topic: ``event`` and ``sequence_number``.

**Storage meta keys** (``sk_meta``): ``relay.{namespace}.done`` and
``relay.{namespace}.intent`` (the relay's position);
``relay.{namespace}.parked/{table}/{table_id}`` (a table set aside: ``/`` never occurs
in a namespace or a table name, so such a key can never be read as another
namespace's position); a handler's checkpoints
``runtime.{group}.{partition}.{lane}``, ``runtime.{group}.{partition}.snapshot`` and
``runtime.{group}.snapshot``
(handler names have no ``.``, so keys are read from the right unambiguously).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from streamkit.exceptions import ConfigurationError, ValidationError

__all__ = (
    "AUDIT_TABLE",
    "EVENT_HEADER",
    "KAFKA_INTERNAL_TOPICS",
    "MAX_TOPIC_LENGTH",
    "RESERVED_SEGMENT",
    "SEQUENCE_HEADER",
    "audit_topic",
    "check_audit_topic",
    "check_dlq_topic",
    "check_reserved_table_name",
    "check_table_topic",
    "checkpoint_key",
    "checkpoint_prefix",
    "dlq_redrive_group",
    "dlq_topic",
    "group_snapshot_key",
    "handler_group",
    "kafka_equivalent",
    "max_table_name_length",
    "parse_relay_key",
    "relay_done_key",
    "relay_intent_key",
    "relay_parked_key",
    "relay_parked_prefix",
    "relay_transactional_id",
    "reserved_segment",
    "snapshot_key",
    "table_topic",
)

#: Kafka's longest topic name.
MAX_TOPIC_LENGTH = 249
#: The table-name segment reserved for dead-letter queues.
RESERVED_SEGMENT = "dlq"
#: The table name reserved for the audit trail's topic.
AUDIT_TABLE = "audit"
#: Topics Kafka keeps for itself.
KAFKA_INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")
#: Headers of a change record in its table topic.
EVENT_HEADER = "event"
SEQUENCE_HEADER = "sequence_number"

_RESERVED = re.compile(rf"[._]{RESERVED_SEGMENT}[._]")
_TABLE_NAME_MAX = 255  # DynamoDB's


# --- topics, groups, ids ---------------------------------------------------------------------
def table_topic(namespace: str, table: str) -> str:
    """The topic of a table's change records: ``{namespace}.{table}``."""
    return f"{namespace}.{table}"


def dlq_topic(namespace: str, table: str, handler: str) -> str:
    """The DLQ topic of a handler: ``{namespace}.{table}.dlq.{handler}``."""
    return f"{namespace}.{table}.{RESERVED_SEGMENT}.{handler}"


def dlq_redrive_group(namespace: str, table: str, handler: str) -> str:
    """The consumer group holding a DLQ's redrive position."""
    return f"{dlq_topic(namespace, table, handler)}.redrive"


def handler_group(namespace: str, table: str, handler: str) -> str:
    """A handler's consumer group (and the prefix of its stored checkpoints)."""
    return f"{namespace}.{table}.{handler}"


def audit_topic(namespace: str) -> str:
    """The audit trail's default topic: ``{namespace}.audit``."""
    return table_topic(namespace, AUDIT_TABLE)


def relay_transactional_id(namespace: str, storage_id: str) -> str:
    """The relay's transactional id: one per storage database and namespace."""
    return f"streamkit-relay-{namespace}-{storage_id}"


def kafka_equivalent(topic: str) -> str:
    """The form Kafka compares topics in for collisions: every ``.`` read as ``_``."""
    return topic.replace(".", "_")


# --- storage meta keys ------------------------------------------------------------------------
def relay_lease(namespace: str) -> str:
    """The lease the relays of one namespace take turns on (one publishes at a time)."""
    return f"relay.{namespace}"


def ttl_lease(namespace: str) -> str:
    """The lease the TTL sweepers of one namespace take turns on."""
    return f"ttl.{namespace}"


def relay_done_key(namespace: str) -> str:
    """Every outbox row up to this position is in the log (or set aside)."""
    return f"relay.{namespace}.done"


def relay_intent_key(namespace: str) -> str:
    """The last row of the batch the relay was appending."""
    return f"relay.{namespace}.intent"


def relay_parked_prefix(namespace: str) -> str:
    """The prefix of the relay's set-aside tables' keys."""
    return f"relay.{namespace}.parked/"


def relay_parked_key(namespace: str, table: str, table_id: int) -> str:
    """Where the relay keeps a set-aside table's state (per table id: a table deleted
    and re-created under its name is another table, with its own entry)."""
    return f"{relay_parked_prefix(namespace)}{table}/{table_id}"


def parse_relay_key(key: str) -> tuple[str, str, str | None] | None:
    """``(kind, namespace, table)`` of a relay meta key: kind ``done`` / ``intent``
    (table None) or ``parked``; None for any other key."""
    if not key.startswith("relay."):
        return None
    rest = key[len("relay.") :]
    if "/" in rest:
        head, _, tail = rest.partition("/")
        table, _, table_id = tail.rpartition("/")
        if head.endswith(".parked") and table and table_id.isdigit():
            return "parked", head[: -len(".parked")], table
        return None
    for kind in ("done", "intent"):
        if rest.endswith(f".{kind}"):
            return kind, rest[: -len(kind) - 1], None
    return None


def checkpoint_prefix(group: str) -> str:
    """The prefix of every stored checkpoint of a handler's group."""
    return f"runtime.{group}."


def checkpoint_key(group: str, partition: int, lane: int) -> str:
    """A lane's stored checkpoint (the offset after the last record whose writes are in)."""
    return f"{checkpoint_prefix(group)}{partition}.{lane}"


def group_snapshot_key(group: str) -> str:
    """The sequence number below which every partition of a handler's group skips
    records (a copy of the table it started from holds them: a global table's seed)."""
    return f"{checkpoint_prefix(group)}snapshot"


def snapshot_key(group: str, partition: int) -> str:
    """The sequence number of the snapshot a partition of a handler started from."""
    return f"{checkpoint_prefix(group)}{partition}.snapshot"


# --- the rules ----------------------------------------------------------------------------------
def reserved_segment(table: str) -> str | None:
    """The reserved ``dlq`` segment in a table name (``.dlq.``, ``_dlq_``, ...), if any."""
    found = _RESERVED.search(table)
    return None if found is None else found.group(0)


def check_reserved_table_name(namespace: str, table: str) -> None:
    """Refuse a table name that could name a DLQ's or the audit trail's topic.

    Raises:
        ValidationError: the name has a ``dlq`` segment, or is ``audit``.
    """
    segment = reserved_segment(table)
    if segment is not None:
        raise ValidationError(
            f"table name {table!r} contains {segment!r}: the segment "
            f"'{RESERVED_SEGMENT}' is reserved for dead-letter queues, whose topics are "
            f"{dlq_topic(namespace, '{table}', '{handler}')!r}, and Kafka treats '.' and '_' "
            f"alike, so a table name may not contain '.{RESERVED_SEGMENT}.', "
            f"'_{RESERVED_SEGMENT}_', '.{RESERVED_SEGMENT}_' or '_{RESERVED_SEGMENT}.'"
        )
    if table == AUDIT_TABLE:
        raise ValidationError(
            f"table name {table!r} is reserved: its topic would be "
            f"{audit_topic(namespace)!r}, the audit trail's (streamkit.handlers.audit.LogSink)"
        )


def max_table_name_length(namespace: str) -> int:
    """The longest name a streamed table may have in ``namespace`` (its topic
    ``{namespace}.{table}`` must fit Kafka's 249 characters)."""
    return min(_TABLE_NAME_MAX, MAX_TOPIC_LENGTH - len(namespace) - 1)


def check_table_topic(
    namespace: str, table: str, existing_streamed_tables: Iterable[str] = ()
) -> str:
    """The topic of a streamed table, if it can exist next to the others; else why not.

    Args:
        namespace: the App's namespace.
        table: the table's name (already a valid DynamoDB table name).
        existing_streamed_tables: the other tables whose topics exist or may (the
            table itself is skipped).

    Raises:
        ValidationError: a reserved name (see :func:`check_reserved_table_name`); a
            topic over 249 characters (the message names the longest table name this
            namespace allows); a topic Kafka would take for another table's or for
            one of its own (the same once '.' and '_' are read alike).
    """
    check_reserved_table_name(namespace, table)
    topic = table_topic(namespace, table)
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ValidationError(
            f"table name {table!r} is {len(table)} characters: its change-log topic "
            f"{namespace}.<table> would be {len(topic)} characters and Kafka allows "
            f"{MAX_TOPIC_LENGTH}; in namespace {namespace!r} a table with a stream may "
            f"have a name of at most {max_table_name_length(namespace)} characters"
        )
    same = kafka_equivalent(topic)
    for other in existing_streamed_tables:
        if other == table:
            continue
        other_topic = table_topic(namespace, other)
        if kafka_equivalent(other_topic) == same:
            raise ValidationError(
                f"table {table!r} would publish to topic {topic!r}, which Kafka takes for "
                f"the topic {other_topic!r} of table {other!r} ('.' and '_' are the same "
                "in Kafka topic names): choose a name that differs in more than '.' and '_'"
            )
    for reserved in KAFKA_INTERNAL_TOPICS:
        if kafka_equivalent(reserved) == same:
            raise ValidationError(
                f"table {table!r} would publish to topic {topic!r}, which Kafka takes for "
                f"its internal topic {reserved!r}"
            )
    return topic


def check_dlq_topic(namespace: str, table: str, handler: str) -> str:
    """A handler's DLQ topic, if Kafka can hold it.

    Raises:
        ConfigurationError: the topic would be over 249 characters (the message names
            the longest handler name this table allows).
    """
    topic = dlq_topic(namespace, table, handler)
    if len(topic) > MAX_TOPIC_LENGTH:
        longest = MAX_TOPIC_LENGTH - len(dlq_topic(namespace, table, ""))
        raise ConfigurationError(
            f"handler {handler!r} on table {table!r}: its dead-letter topic would be "
            f"{len(topic)} characters and Kafka allows {MAX_TOPIC_LENGTH}; "
            + (
                f"use a handler name of at most {longest} characters"
                if longest > 0
                else "the table's name is too long for any DLQ: use on_failure='drop' or 'block'"
            )
        )
    return topic


def check_audit_topic(namespace: str, topic: str) -> str:
    """The audit trail's topic: the default, or one outside ``{namespace}.`` (where
    any name may one day be a table's).

    Raises:
        ConfigurationError: a topic inside the namespace other than the default.
    """
    default = audit_topic(namespace)
    if topic == default:
        return topic
    if kafka_equivalent(topic).startswith(kafka_equivalent(f"{namespace}.")):
        raise ConfigurationError(
            f"audit topic {topic!r} is inside namespace {namespace!r}, where topics are "
            f"tables' ({namespace}.<table>) and dead-letter queues': use {default!r} or a "
            f"topic that does not start with {namespace + '.'!r}"
        )
    return topic
