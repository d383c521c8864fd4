"""BatchGetItem's and BatchWriteItem's request checks, in DynamoDB's words and order: the
request's shape first (all its shape errors in one message), then its values, the number
of items, the tables, and last the keys against each table's schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamkit.server._convert import item_from_dynamodb_json, json_type
from streamkit.server._errors import INVALID, validation
from streamkit.server._ops_common import (
    _KEY_TYPES,
    Body,
    _capacity_problem,
    _collection_problem,
    _need,
)
from streamkit.storage._spec import table_name_problems

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec

__all__ = ("check_write_keys", "get_requests", "write_requests")

_MAP_KEYS = (
    "Map keys must satisfy constraint: [Member must have length less than or equal to 255, "
    "Member must have length greater than or equal to 3, Member must satisfy regular "
    "expression pattern: [a-zA-Z0-9_.-]+]"
)
_WRITES_PER_TABLE = (
    "Map value must satisfy constraint: [Member must have length less than or equal to 25, "
    "Member must have length greater than or equal to 1]"
)
# DynamoDB's words for a WriteRequest with no action, or both
_ONE_ACTION = (
    "Supplied AttributeValue has more than one datatypes set, must contain exactly one of "
    "the supported datatypes"
)
_NO_MATCH = "The provided key element does not match the schema"


def _detected(errors: list[str]) -> None:
    """Refuse the request with every shape error found (``N validation errors ...``)."""
    if errors:
        n = len(errors)
        raise validation(
            f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors)
        )


def _typed(value: Any, kind: type, member: str, kind_name: str) -> Any:
    if not isinstance(value, kind):
        raise validation(
            f"{INVALID}Invalid type for parameter {member}, expected type: {kind_name}, "
            f"got: {json_type(value)}"
        )
    return value


def _request_items(body: Body, *, writes: bool) -> tuple[Body, list[str]]:
    """``RequestItems`` (a map of at least one table) and the shape errors shared by
    both batches: a bad ``ReturnConsumedCapacity`` / ``ReturnItemCollectionMetrics``
    and a bad table name."""
    requests = _need(body, "RequestItems", dict)
    problems = [_capacity_problem(body)]
    if writes:
        problems.append(_collection_problem(body))
    errors = [p for p in problems if p is not None]
    if not requests:
        errors.append(
            "Value '{}' at 'requestItems' failed to satisfy constraint: Member must have "
            "length greater than or equal to 1"
        )
        _detected(errors)
    if any(table_name_problems(name) for name in requests):
        errors.append(f"Value at 'requestItems' failed to satisfy constraint: {_MAP_KEYS}")
    return requests, errors


def get_requests(body: Body) -> list[tuple[str, Body, list[Any]]]:
    """BatchGetItem's tables, each with its request and its keys (parsed), once the
    request is known good in shape, values and number of keys (at most 100)."""
    requests, errors = _request_items(body, writes=False)
    for name, req in requests.items():
        _typed(req, dict, f"RequestItems.{name}", "map")
        keys = req.get("Keys")
        at = f"'requestItems.{name}.member.keys'"
        if keys is None:
            errors.append(
                f"Value null at {at} failed to satisfy constraint: Member must not be null"
            )
        elif not _typed(keys, list, f"RequestItems.{name}.Keys", "list"):
            errors.append(
                f"Value '[]' at {at} failed to satisfy constraint: Member must have length "
                "greater than or equal to 1"
            )
        elif len(keys) > 100:
            errors.append(
                f"Value at {at} failed to satisfy constraint: Member must have length less "
                "than or equal to 100"
            )
    _detected(errors)
    parsed = [
        (name, req, [item_from_dynamodb_json(_typed(k, dict, "Keys", "map")) for k in req["Keys"]])
        for name, req in requests.items()
    ]
    if sum(len(keys) for _, _, keys in parsed) > 100:
        raise validation("Too many items requested for the BatchGetItem call")
    return parsed


def write_requests(body: Body) -> list[tuple[str, list[Any], list[Any]]]:
    """BatchWriteItem's tables, each with its items to put and keys to delete (parsed),
    once the request is known good in shape, values and number of writes (at most 25)."""
    requests, errors = _request_items(body, writes=True)
    for name, writes in requests.items():
        _typed(writes, list, f"RequestItems.{name}", "list")
    if any(not 1 <= len(writes) <= 25 for writes in requests.values()):
        errors.append(f"Value at 'requestItems' failed to satisfy constraint: {_WRITES_PER_TABLE}")
    for name, writes in requests.items():
        for i, w in enumerate(writes, 1):
            _typed(w, dict, f"RequestItems.{name}[{i - 1}]", "map")
            for member, field in (("DeleteRequest", "Key"), ("PutRequest", "Item")):
                action = w.get(member)
                if isinstance(action, dict) and action.get(field) is None:
                    errors.append(
                        f"Value null at 'requestItems.{name}.member.{i}.member."
                        f"{member[0].lower()}{member[1:]}.{field.lower()}' failed to satisfy "
                        "constraint: Member must not be null"
                    )
    _detected(errors)
    parsed = []
    for name, writes in requests.items():
        puts: list[Any] = []
        deletes: list[Any] = []
        for w in writes:
            actions = [m for m, v in w.items() if v is not None]
            if actions == ["PutRequest"]:
                item = _typed(w["PutRequest"], dict, "PutRequest", "map")["Item"]
                puts.append(item_from_dynamodb_json(_typed(item, dict, "Item", "map")))
            elif actions == ["DeleteRequest"]:
                key = _typed(w["DeleteRequest"], dict, "DeleteRequest", "map")["Key"]
                deletes.append(item_from_dynamodb_json(_typed(key, dict, "Key", "map")))
            else:
                raise validation(_ONE_ACTION)
        parsed.append((name, puts, deletes))
    if sum(len(p) + len(d) for _, p, d in parsed) > 25:
        raise validation("Too many items requested for the BatchWriteItem call")
    return parsed


def check_write_keys(spec: TableSpec, puts: list[Any], deletes: list[Any]) -> None:
    """BatchWriteItem's items and keys against the table's key schema (an item without a
    key attribute of the right type, or a key with other attributes, is refused with the
    words DynamoDB uses in batches; PutItem's are more precise) and the items' index keys
    against the indexes' (in PutItem's words)."""
    attrs = [a for a in (spec.key.partition, spec.key.sort) if a is not None]
    for item, exact in [(i, False) for i in puts] + [(k, True) for k in deletes]:
        if exact and len(item) != len(attrs):
            raise validation(_NO_MATCH)
        for a in attrs:
            if a.name not in item or type(item[a.name]) is not _KEY_TYPES[a.type]:
                raise validation(_NO_MATCH)
    # key sizes and index keys of the wrong type: refused before any table is written
    for key in deletes:
        spec.key.parse_key(key)
    for item in puts:
        pk, sk = spec.key.extract(item)
        for ix in spec.indexes:
            ix.entry_key(item, pk, sk)
