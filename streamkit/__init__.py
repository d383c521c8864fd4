"""streamkit: DynamoDB Streams + Lambda semantics on your own machines.

A DynamoDB-style table store whose every change becomes an INSERT / MODIFY /
REMOVE change record, and a runtime that runs handlers on them the way AWS
Lambda runs on DynamoDB Streams.

Example:
    ```python
    import streamkit as sk

    app = sk.App(storage="sqlite:///./shop.db")
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "123", "Name": "John Doe"})
    ```
"""

from streamkit._app import App
from streamkit.exceptions import (
    BackupNotFound,
    CancellationReason,
    ConditionFailed,
    ConfigurationError,
    DuplicateItem,
    ExpressionError,
    HistoryUnavailable,
    ItemCollectionSizeLimitExceeded,
    LogError,
    NotYetAvailable,
    ResourceError,
    StorageError,
    StreamkitError,
    TableExists,
    TableNotFound,
    ThroughputExceeded,
    TransactionCanceled,
    ValidationError,
)
from streamkit.history._backups import Backup
from streamkit.history._replay import ReplaySummary
from streamkit.records import ChangeRecord, StreamView, UserIdentity
from streamkit.runtime import Batch, BatchResult, Context, DeadLetter, Router, Window
from streamkit.storage import (
    BatchStatementResult,
    Cache,
    Condition,
    ConsumedCapacity,
    GlobalIndex,
    LocalIndex,
    OnDemand,
    Page,
    Provisioned,
    StatementPage,
    Table,
    Transaction,
    attr,
    key,
)
from streamkit.storage import measure as measure_capacity

__version__ = "0.1.0.dev0"

__all__ = (
    "App",
    "Backup",
    "BackupNotFound",
    "Batch",
    "BatchResult",
    "BatchStatementResult",
    "Cache",
    "CancellationReason",
    "ChangeRecord",
    "Condition",
    "ConditionFailed",
    "ConfigurationError",
    "ConsumedCapacity",
    "Context",
    "DeadLetter",
    "DuplicateItem",
    "ExpressionError",
    "GlobalIndex",
    "HistoryUnavailable",
    "ItemCollectionSizeLimitExceeded",
    "LocalIndex",
    "LogError",
    "NotYetAvailable",
    "OnDemand",
    "Page",
    "Provisioned",
    "ReplaySummary",
    "ResourceError",
    "Router",
    "StatementPage",
    "StorageError",
    "StreamView",
    "StreamkitError",
    "Table",
    "TableExists",
    "TableNotFound",
    "ThroughputExceeded",
    "Transaction",
    "TransactionCanceled",
    "UserIdentity",
    "ValidationError",
    "Window",
    "__version__",
    "attr",
    "key",
    "measure_capacity",
)
