"""Every error streamkit raises, in one tree.

::

    StreamkitError
    ├── ValidationError (ValueError)          bad input: names the attribute or position
    │   ├── ExpressionError                   a DynamoDB expression that does not parse or check
    │   ├── RecordFormatError                 bytes that are not a change record this version reads
    │   ├── HistoryUnavailable                a time range past what is kept (log, PITR archive)
    │   └── FilterError*                      a malformed filter= pattern of a handler
    ├── ConditionFailed                       a condition= was false; nothing was written
    │   └── DuplicateItem                     a PartiQL INSERT of a key that already exists
    ├── TransactionCanceled                   a transaction did not commit; .reasons per action
    ├── ItemCollectionSizeLimitExceeded       a partition of a table with local indexes is full
    ├── ThroughputExceeded                    provisioned capacity exhausted; .retry_after seconds
    ├── ResourceError
    │   ├── TableNotFound (LookupError)
    │   ├── TableExists
    │   └── BackupNotFound (LookupError)      no backup of that id
    ├── ConfigurationError (ValueError)       a URL, option or environment variable is wrong,
    │   │                                     or the extra a piece needs is not installed
    │   └── TopicMismatch*                    a topic exists with other settings
    ├── StorageError                          the database failed; .retriable: may a retry help
    ├── LogError                              the change log failed; .retriable: may a retry help
    │   ├── LogUnavailable*                   not reached in time (retriable); .in_doubt
    │   ├── Fenced*                           a newer producer took the transactional id
    │   ├── CommitRefused*                    offsets of partitions no longer owned
    │   └── TopicNotFound* (LookupError)
    └── NotYetAvailable (NotImplementedError) a capability not built yet

``*``: defined elsewhere — ``FilterError`` in ``streamkit.runtime._patterns`` (catch it
as ValidationError), the others in ``streamkit.log``.

A call that raises changes nothing: no item is written and no change record
is emitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = (
    "BackupNotFound",
    "CancellationReason",
    "ConditionFailed",
    "ConfigurationError",
    "DuplicateItem",
    "ExpressionError",
    "HistoryUnavailable",
    "ItemCollectionSizeLimitExceeded",
    "LogError",
    "NotYetAvailable",
    "RecordFormatError",
    "ResourceError",
    "StorageError",
    "StreamkitError",
    "TableExists",
    "TableNotFound",
    "ThroughputExceeded",
    "TransactionCanceled",
    "ValidationError",
)


class StreamkitError(Exception):
    """The base of every error streamkit raises."""


class ValidationError(StreamkitError, ValueError):
    """Input that streamkit refuses: a bad item, key, argument or expression.

    Attributes:
        path: the attribute path the problem is at, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ExpressionError(ValidationError):
    """A DynamoDB expression that does not parse, or uses names/values wrongly.

    Attributes:
        expression: the expression text.
        position: the 0-based character offset of the problem, when known.
    """

    def __init__(
        self, message: str, *, expression: str | None = None, position: int | None = None
    ) -> None:
        if expression is not None and position is not None:
            caret = " " * position + "^"
            message = f"{message} (at position {position})\n  {expression}\n  {caret}"
        super().__init__(message)
        self.expression = expression
        self.position = position


class RecordFormatError(ValidationError):
    """Bytes that are not a change record (or item image) this version of streamkit reads.

    Raised for a missing single-object marker, a schema fingerprint this version
    does not know, and truncated or malformed Avro data; never IndexError or
    the like.
    """


class HistoryUnavailable(ValidationError):
    """A time range reaches past the history streamkit keeps (the change log's retention
    and the point-in-time archive's recovery window); the message says what is kept."""


class ConditionFailed(StreamkitError):
    """The write's ``condition=`` evaluated to false; nothing was written.

    Attributes:
        table: the table name.
        key: the key of the item the condition was checked against.
        item: the item as it was (only when the caller asked for it).
    """

    def __init__(
        self,
        message: str = "the conditional request failed",
        *,
        table: str | None = None,
        key: Mapping[str, Any] | None = None,
        item: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.key = dict(key) if key is not None else None
        self.item = dict(item) if item is not None else None


class DuplicateItem(ConditionFailed):
    """A PartiQL ``INSERT`` found an item with the same key; nothing was written."""

    def __init__(
        self,
        message: str = "Duplicate primary key exists in table",
        *,
        table: str | None = None,
        key: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, table=table, key=key)


@dataclass(frozen=True, slots=True)
class CancellationReason:
    """Why one action of a cancelled transaction failed (``code`` "None" when it did not).

    ``code`` is one of "None", "ConditionalCheckFailed", "ValidationError",
    "TransactionConflict", "ItemCollectionSizeLimitExceeded" and, for a PartiQL
    ``INSERT`` of an existing key, "DuplicateItem".
    """

    code: str
    message: str | None = None
    item: Mapping[str, Any] | None = None


class TransactionCanceled(StreamkitError):
    """A transaction did not commit. ``reasons`` has one entry per action, in order."""

    def __init__(self, reasons: Sequence[CancellationReason], message: str | None = None) -> None:
        self.reasons = list(reasons)
        codes = ", ".join(r.code for r in self.reasons)
        super().__init__(message or f"transaction cancelled, reasons: [{codes}]")


class ItemCollectionSizeLimitExceeded(StreamkitError):
    """A write would take an item collection past its size limit (DynamoDB: 10 GB).

    Only tables with local secondary indexes have the limit: the items of one partition
    key value and their local index entries together. Nothing was written.

    Attributes:
        table: the table name.
        key: the key of the item whose write was refused.
    """

    def __init__(
        self,
        message: str = "Collection size exceeded.",
        *,
        table: str | None = None,
        key: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.key = dict(key) if key is not None else None


class ThroughputExceeded(StreamkitError):
    """The table's provisioned capacity is exhausted.

    Attributes:
        table: the table name.
        retry_after: seconds until enough capacity has accumulated to retry.
    """

    def __init__(self, message: str, *, table: str, retry_after: float) -> None:
        super().__init__(message)
        self.table = table
        self.retry_after = retry_after


class ResourceError(StreamkitError):
    """A table (or other named resource) is missing or already there."""

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class TableNotFound(ResourceError, LookupError):
    """No table of that name exists."""


class TableExists(ResourceError):
    """A table of that name already exists."""


class BackupNotFound(ResourceError, LookupError):
    """No backup of that id exists."""


class ConfigurationError(StreamkitError, ValueError):
    """A storage or log URL, an option or an environment variable is wrong."""


class StorageError(StreamkitError):
    """The storage engine failed for a reason that is not the caller's input.

    Attributes:
        retriable: whether trying the call again may succeed (a lost connection, a
            database restarting, a serialization conflict). When a write fails this
            way it either committed whole, with its change records, or not at all.
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class LogError(StreamkitError):
    """The change log failed.

    Attributes:
        retriable: whether trying again later may succeed (a broker that is down).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class NotYetAvailable(StreamkitError, NotImplementedError):
    """A documented capability that this version does not provide yet."""
