"""The transactions' request rules that DynamoDB applies before any action runs: the
``ClientRequestToken`` (idempotency for 10 minutes), the 4 MB payload, the actions'
table names, and an item or key that does not fit the key schema (a cancellation with
a ``ValidationError`` reason, not a ``ValidationException``)."""

from __future__ import annotations

import hashlib
import json
import time
import weakref
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import CancellationReason, TransactionCanceled
from streamkit.records._values import item_size, type_of
from streamkit.server._errors import DynamoError, validation
from streamkit.server._ops_common import _KEY_TYPES, _constraints
from streamkit.storage._spec import table_name_problems

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

Body = dict[str, Any]

TOKEN_TTL = 600.0  # DynamoDB: a token is remembered for 10 minutes
PAYLOAD_LIMIT = 4 * 1024 * 1024
_INVALID = "One or more parameter values were invalid: "
SCHEMA_MISMATCH = "The provided key element does not match the schema"

# per store: token -> (expiry, request fingerprint, the first response)
_TOKENS: weakref.WeakKeyDictionary[Store, dict[str, tuple[float, str, Body]]] = (
    weakref.WeakKeyDictionary()
)


def check_token(body: Body) -> str | None:
    token = body.get("ClientRequestToken")
    if token is None:
        return None
    if not isinstance(token, str) or not 1 <= len(token) <= 36:
        raise validation(
            f"1 validation error detected: Value '{token}' at 'clientRequestToken' failed to "
            "satisfy constraint: Member must have length less than or equal to 36"
        )
    return token


def _fingerprint(body: Body) -> str:
    same = {k: v for k, v in body.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


def replayed(store: Store, token: str | None, body: Body) -> Body | None:
    """The first response of an earlier request with this token (nothing runs again);
    ``IdempotentParameterMismatchException`` when that request was a different one."""
    if token is None:
        return None
    seen = _TOKENS.setdefault(store, {})
    now = time.monotonic()
    for t in [t for t, (expiry, _, _) in seen.items() if expiry <= now]:
        del seen[t]
    hit = seen.get(token)
    if hit is None:
        return None
    if hit[1] != _fingerprint(body):
        raise DynamoError(
            "IdempotentParameterMismatchException",
            "The request uses the same client token as a previous, but non-identical request.",
        )
    return hit[2]


def remember(store: Store, token: str | None, body: Body, response: Body) -> None:
    if token is not None:
        entry = (time.monotonic() + TOKEN_TTL, _fingerprint(body), response)
        _TOKENS.setdefault(store, {})[token] = entry


def check_payload(payload: list[dict[str, Any]]) -> None:
    """The ``Put`` items and the expression values of one transaction (each a mapping of
    names to values): at most 4 MB together."""
    size = sum(item_size(i) if isinstance(i, dict) else 0 for i in payload)
    if size > PAYLOAD_LIMIT:
        raise validation("Transaction payload size cannot exceed 4 MB")


def put_key_problem(spec: TableSpec, item: Any) -> str | None:
    """Why a ``Put`` item does not fit the table's key schema (DynamoDB's words), if it
    does not."""
    if not isinstance(item, dict):
        return None
    for attr in (spec.key.partition, spec.key.sort):
        if attr is None:
            continue
        if attr.name not in item:
            return f"{_INVALID}Missing the key {attr.name} in the item"
        actual = type_of(item[attr.name])
        if actual != attr.type:
            return (
                f"{_INVALID}Type mismatch for key {attr.name} expected: {attr.type} "
                f"actual: {actual}"
            )
    return None


def check_table_names(items: list[Any]) -> None:
    """Every action's ``TableName``, checked as DynamoDB checks it before anything else
    (its words name the action's position and kind: ``transactItems.2.member.update``)."""
    for i, action in enumerate(items, 1):
        if not isinstance(action, dict) or len(action) != 1:
            continue
        ((kind, spec),) = action.items()
        name = spec.get("TableName") if isinstance(spec, dict) else None
        if isinstance(name, str) and isinstance(kind, str) and kind:
            member = f"transactItems.{i}.member.{kind[0].lower()}{kind[1:]}.tableName"
            _constraints(name, member, table_name_problems(name))


def key_problem(spec: TableSpec, key: Any) -> str | None:
    """Why the key of an ``Update``, ``Delete``, ``ConditionCheck`` or ``Get`` does not
    fit the table's key schema (a missing, extra or wrongly typed key attribute), in
    DynamoDB's words, if it does not."""
    if not isinstance(key, dict):
        return None
    if set(key) != set(spec.key.names):
        return SCHEMA_MISMATCH
    for attr in (spec.key.partition, spec.key.sort):
        if attr is not None and type(key[attr.name]) is not _KEY_TYPES[attr.type]:
            return SCHEMA_MISMATCH
    return None


def no_duplicates(keys: list[tuple[str, TableSpec, Any]]) -> None:
    """TransactGetItems: DynamoDB refuses two reads of one item, as two writes."""
    seen: set[tuple[str, bytes, bytes]] = set()
    for table, spec, key in keys:
        k = (table, *spec.key.extract(key))
        if k in seen:
            raise validation("Transaction request cannot include multiple operations on one item")
        seen.add(k)


def cancel_invalid(problems: list[str | None]) -> None:
    """DynamoDB validates the actions in order and stops at the first bad one: that one's
    reason is ``ValidationError``, every other one's ``None``."""
    for i, problem in enumerate(problems):
        if problem is not None:
            reasons = [CancellationReason("None") for _ in problems]
            reasons[i] = CancellationReason("ValidationError", problem)
            raise TransactionCanceled(reasons)
