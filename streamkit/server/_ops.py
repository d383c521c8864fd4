"""DynamoDB's JSON 1.0 operations on a streamkit App.

Each operation takes the decoded request body (a dict) and returns the response body.
Requests are validated the way DynamoDB validates them; anything wrong raises
:class:`DynamoError` (a 400 with DynamoDB's ``__type``), streamkit's own errors are
mapped by :func:`from_streamkit`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from streamkit.server._item_ops import ItemOps
from streamkit.server._ops_common import Body
from streamkit.server._table_ops import TableOps

__all__ = ("OPERATIONS", "Service")


class Service(TableOps, ItemOps):
    """The operations, bound to a store and a change log (not to an ``App``: the App
    wires them and runs the background work; see ``_asgi.service_for``).

    Args:
        store: the table store.
        log: the change log the store's tables are captured into (the Streams API).
        namespace: the topic prefix (table and topic names are checked against it).
        partitions: the partitions of a table topic not created yet.
    """


Operation = Callable[[Service, Body], Awaitable[Body]]
OPERATIONS: dict[str, Operation] = {
    name: getattr(Service, name)
    for name in (
        "CreateTable",
        "DescribeTable",
        "DeleteTable",
        "ListTables",
        "UpdateTable",
        "UpdateTimeToLive",
        "DescribeTimeToLive",
        "DescribeContinuousBackups",
        "UpdateContinuousBackups",
        "CreateBackup",
        "ListBackups",
        "DescribeBackup",
        "DeleteBackup",
        "RestoreTableFromBackup",
        "RestoreTableToPointInTime",
        "PutItem",
        "GetItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "TransactGetItems",
    )
}


# PartiQL: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction (they use the helpers
# above, so they are imported once those exist)
from streamkit.server._exports import EXPORT_OPERATIONS  # noqa: E402
from streamkit.server._imports import IMPORT_OPERATIONS  # noqa: E402
from streamkit.server._partiql_ops import PARTIQL_OPERATIONS  # noqa: E402
from streamkit.server._tags import TAG_OPERATIONS  # noqa: E402

OPERATIONS.update(PARTIQL_OPERATIONS)
OPERATIONS.update(EXPORT_OPERATIONS)
OPERATIONS.update(IMPORT_OPERATIONS)
OPERATIONS.update(TAG_OPERATIONS)
