"""The table store: keys, items, expressions, tables, transactions, TTL and capacity.

It writes items and their change records (the outbox) in one transaction and
knows nothing of Kafka or handlers.
"""

from streamkit.storage._cache import Cache
from streamkit.storage._capacity import ConsumedCapacity, OnDemand, Provisioned, measure
from streamkit.storage._conditions import Condition, attr, key
from streamkit.storage._indexes import GlobalIndex, LocalIndex
from streamkit.storage._keys import KeyAttribute, KeySchema
from streamkit.storage._partiql_exec import BatchStatementResult, StatementPage
from streamkit.storage._spec import TableSpec
from streamkit.storage._store import Store
from streamkit.storage._table import Page, Table
from streamkit.storage._transaction import Transaction

__all__ = (
    "BatchStatementResult",
    "Cache",
    "Condition",
    "ConsumedCapacity",
    "GlobalIndex",
    "KeyAttribute",
    "KeySchema",
    "LocalIndex",
    "OnDemand",
    "Page",
    "Provisioned",
    "StatementPage",
    "Store",
    "Table",
    "TableSpec",
    "Transaction",
    "attr",
    "key",
    "measure",
)
