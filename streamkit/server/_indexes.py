"""Secondary indexes in DynamoDB's request and response shapes (CreateTable,
UpdateTable's ``GlobalSecondaryIndexUpdates``, DescribeTable)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from streamkit.server._convert import shown
from streamkit.server._errors import INVALID, DynamoError, validation
from streamkit.server._ops_common import _constraints
from streamkit.server._shapes import wrong_type
from streamkit.storage._capacity import Provisioned
from streamkit.storage._indexes import MAX_KEY_ATTRIBUTES, GlobalIndex, IndexSpec, LocalIndex
from streamkit.storage._spec import table_name_problems

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec

__all__ = (
    "describe_indexes",
    "parse_global",
    "parse_global_key_schema",
    "parse_key_schema",
    "parse_local",
    "plan_index_updates",
)

Body = dict[str, Any]


def _element(k: Any, types: dict[str, str]) -> tuple[str, Any]:
    """One KeySchema element's attribute name (defined in ``types``) and key type."""
    if not isinstance(k, dict):
        raise validation("KeySchema members must be objects")
    attr, kind = k.get("AttributeName"), k.get("KeyType")
    if attr not in types:
        raise validation(
            "One or more parameter values were invalid: Some index key attributes are not "
            f"defined in AttributeDefinitions. Keys: [{shown(attr)}], AttributeDefinitions: "
            f"[{', '.join(types)}]"
        )
    return str(attr), kind


def parse_key_schema(
    schema: Any, types: dict[str, str], *, index: str | None = None, local: bool = False
) -> tuple[tuple[str, str], tuple[str, str] | None]:
    """A ``KeySchema`` as (hash, range) ``(name, type)`` pairs: the table's, or with
    ``index`` an index's (its messages name it; ``local`` needs a range key)."""
    if index is None:
        size, bad, first = (
            "KeySchema must have one or two elements",
            "Invalid KeySchema: one HASH key and at most one RANGE key",
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key",
        )
    else:
        size, bad, first = (
            f"Index KeySchema of {index} must have one or two elements",
            f"Invalid KeySchema of index {index}: one HASH and at most one RANGE",
            f"Invalid KeySchema of index {index}: The first KeySchemaElement is not a HASH key",
        )
    if not isinstance(schema, list) or not 1 <= len(schema) <= 2:
        raise validation(size)
    hash_key = range_key = None
    for k in schema:
        attr, kind = _element(k, types)
        if kind == "HASH" and hash_key is None:
            hash_key = (attr, types[attr])
        elif kind == "RANGE" and range_key is None:
            range_key = (attr, types[attr])
        else:
            raise validation(bad)
    if hash_key is None:
        raise validation(first)
    if index is not None and range_key is not None and range_key[0] == hash_key[0]:
        raise validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name"
        )
    if local and range_key is None:
        raise validation(
            "One or more parameter values were invalid: Index KeySchema does not have a range "
            f"key for index: {index}"
        )
    return hash_key, range_key


def parse_global_key_schema(
    schema: Any, types: dict[str, str], index: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A global index's ``KeySchema`` as its HASH and RANGE ``(name, type)`` pairs: one
    to four of each (DynamoDB's multi-attribute keys), every HASH before every RANGE."""
    if not isinstance(schema, list) or not 1 <= len(schema) <= 2 * MAX_KEY_ATTRIBUTES:
        raise validation(
            f"Index KeySchema of {index} must have one to {2 * MAX_KEY_ATTRIBUTES} elements: "
            f"one to {MAX_KEY_ATTRIBUTES} HASH and up to {MAX_KEY_ATTRIBUTES} RANGE"
        )
    hashes: list[tuple[str, str]] = []
    ranges: list[tuple[str, str]] = []
    for i, k in enumerate(schema):
        attr, kind = _element(k, types)
        if i == 0 and kind != "HASH":
            raise validation(
                f"Invalid KeySchema of index {index}: The first KeySchemaElement is not a HASH key"
            )
        if kind == "HASH" and ranges:
            raise validation(
                f"Invalid KeySchema of index {index}: every HASH key element must precede "
                "every RANGE key element"
            )
        if kind not in ("HASH", "RANGE"):
            raise validation(f"Invalid KeySchema of index {index}: KeyType must be HASH or RANGE")
        if any(n == attr for n, _ in (*hashes, *ranges)):
            if len(schema) == 2 and kind == "RANGE" and len(hashes) == 1:
                raise validation(
                    "Both the Hash Key and the Range Key element in the KeySchema have the "
                    "same name"
                )
            raise validation(
                f"Invalid KeySchema of index {index}: two key elements have the same name: {attr}"
            )
        (hashes if kind == "HASH" else ranges).append((attr, types[attr]))
    for kind, got in (("HASH", hashes), ("RANGE", ranges)):
        if len(got) > MAX_KEY_ATTRIBUTES:
            raise validation(
                f"Invalid KeySchema of index {index}: at most {MAX_KEY_ATTRIBUTES} {kind} key "
                f"elements are allowed, got {len(got)}"
            )
    return hashes, ranges


def _projection(name: str, p: Any) -> Any:
    if not isinstance(p, dict):
        raise validation(f"One or more parameter values were invalid: Projection of {name} missing")
    kind = p.get("ProjectionType")
    extra = p.get("NonKeyAttributes")
    if kind is None:
        raise validation("One or more parameter values were invalid: Unknown ProjectionType: null")
    if kind in ("ALL", "KEYS_ONLY"):
        if extra:
            raise validation(
                "One or more parameter values were invalid: ProjectionType is "
                f"{kind}, but NonKeyAttributes is specified"
            )
        return kind
    if kind == "INCLUDE":
        if not isinstance(extra, list) or not extra:
            raise validation(
                "One or more parameter values were invalid: ProjectionType is INCLUDE, but "
                "NonKeyAttributes is not specified"
            )
        seen: set[Any] = set()
        for a in extra:
            if not isinstance(a, str):
                raise wrong_type("NonKeyAttributes", str, a) or DynamoError(
                    "SerializationException",
                    f"NonKeyAttributes must hold strings, not {shown(a)}",
                )
            if a in seen:
                raise validation(
                    "One or more parameter values were invalid: Duplicate NonKeyAttributes "
                    f"entry: {a} for index: {name}"
                )
            seen.add(a)
        return list(extra)
    raise validation(f"One or more parameter values were invalid: Unknown ProjectionType: {kind}")


def _name(d: Any, member: str) -> str:
    """An index definition's IndexName, checked as DynamoDB checks names (``member``:
    where it is in the request, as DynamoDB's message names it)."""
    if not isinstance(d, dict) or not isinstance(d.get("IndexName"), str):
        raise validation(
            f"1 validation error detected: Value null at '{member}.indexName' failed to "
            "satisfy constraint: Member must not be null"
        )
    name = str(d["IndexName"])
    _constraints(name, f"{member}.indexName", table_name_problems(name))
    return name


def _throughput(name: str, pt: Any, provisioned: bool) -> Provisioned | None:
    """An index's ``ProvisionedThroughput`` (None for an on-demand table's index)."""
    if provisioned:
        if not isinstance(pt, dict):
            raise validation(
                "One or more parameter values were invalid: ProvisionedThroughput must be "
                f"specified for index: {name}"
            )
        r, w = pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")
        if not (isinstance(r, int) and isinstance(w, int) and r >= 1 and w >= 1):
            raise validation("ProvisionedThroughput units must be positive integers")
        return Provisioned(read=r, write=w)
    if pt is not None:
        raise validation(
            "One or more parameter values were invalid: ProvisionedThroughput should not be "
            f"specified for index: {name} when BillingMode is PAY_PER_REQUEST"
        )
    return None


def parse_global(
    d: Any,
    types: dict[str, str],
    provisioned: bool,
    member: str = "globalSecondaryIndexUpdate.create",
) -> GlobalIndex:
    """One ``GlobalSecondaryIndexes`` member (or an UpdateTable ``Create``)."""
    name = _name(d, member)
    hashes, ranges = parse_global_key_schema(d.get("KeySchema"), types, name)
    capacity = _throughput(name, d.get("ProvisionedThroughput"), provisioned)
    return GlobalIndex(
        name,
        partition_key=hashes[0] if len(hashes) == 1 else list(hashes),
        sort_key=None if not ranges else ranges[0] if len(ranges) == 1 else list(ranges),
        projection=_projection(name, d.get("Projection")),
        capacity=capacity,
    )


def parse_local(
    d: Any, types: dict[str, str], table_hash: str, member: str = "localSecondaryIndexes"
) -> LocalIndex:
    """One ``LocalSecondaryIndexes`` member."""
    name = _name(d, member)
    hash_key, range_key = parse_key_schema(d.get("KeySchema"), types, index=name, local=True)
    if hash_key[0] != table_hash:
        raise validation(
            "One or more parameter values were invalid: Index KeySchema does not have the same "
            f"leading hash key as table KeySchema for index: {name}. index hash key: "
            f"{hash_key[0]}, table hash key: {table_hash}"
        )
    assert range_key is not None
    return LocalIndex(name, sort_key=range_key, projection=_projection(name, d.get("Projection")))


def index_key_names(body: Body) -> set[str]:
    """Every attribute the indexes of a CreateTable request use as a key."""
    out: set[str] = set()
    for member in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for d in body.get(member) or ():
            if isinstance(d, dict) and isinstance(d.get("KeySchema"), list):
                out |= {
                    k["AttributeName"]
                    for k in d["KeySchema"]
                    if isinstance(k, dict) and isinstance(k.get("AttributeName"), str)
                }
    return out


def _schema(ix: IndexSpec) -> list[Body]:
    return [{"AttributeName": a.name, "KeyType": "HASH"} for a in ix.hash_attrs] + [
        {"AttributeName": a.name, "KeyType": "RANGE"} for a in ix.range_attrs
    ]


def _projection_out(ix: IndexSpec) -> Body:
    p: Body = {"ProjectionType": ix.projection}
    if ix.projection == "INCLUDE":
        p["NonKeyAttributes"] = list(ix.include)
    return p


def attribute_definitions(spec: TableSpec) -> list[Body]:
    """The table's and its indexes' key attributes, each once."""
    seen: dict[str, str] = {}
    attrs = [spec.key.partition, spec.key.sort]
    for ix in spec.indexes:
        attrs += [*ix.hash_attrs, *ix.range_attrs]
    for a in attrs:
        if a is not None and a.name not in seen:
            seen[a.name] = a.type
    return [{"AttributeName": n, "AttributeType": t} for n, t in seen.items()]


async def describe_indexes(
    spec: TableSpec, arn: str, stats: Any, provisioned: bool
) -> dict[str, list[Body]]:
    """``GlobalSecondaryIndexes`` / ``LocalSecondaryIndexes`` of a DescribeTable."""
    out: dict[str, list[Body]] = {}
    for ix in spec.indexes:
        count, size = await stats(ix.storage_id(spec.table_id))
        d: Body = {
            "IndexName": ix.name,
            "KeySchema": _schema(ix),
            "Projection": _projection_out(ix),
            "IndexSizeBytes": size,
            "ItemCount": count,
            "IndexArn": f"{arn}/index/{ix.name}",
        }
        if ix.kind == "GLOBAL":
            d["IndexStatus"] = ix.status
            if ix.status == "CREATING":
                d["Backfilling"] = True
            cap = ix.capacity
            d["ProvisionedThroughput"] = {
                "ReadCapacityUnits": cap.read if cap is not None else 0,
                "WriteCapacityUnits": cap.write if cap is not None else 0,
                "NumberOfDecreasesToday": 0,
            }
            if not provisioned:
                d["ProvisionedThroughput"]["ReadCapacityUnits"] = 0
                d["ProvisionedThroughput"]["WriteCapacityUnits"] = 0
            out.setdefault("GlobalSecondaryIndexes", []).append(d)
        else:
            out.setdefault("LocalSecondaryIndexes", []).append(d)
    return out


# --- UpdateTable's GlobalSecondaryIndexUpdates ----------------------------------------------

_NOTHING_TO_UPDATE = (
    "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, "
    "GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required"
)
_ACTIONS = ("Update", "Create", "Delete")
_ONE_ACTION = "GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create, "
_ONE_ACTION += "GlobalSecondaryIndexUpdate.Delete"


def _schema_words(schema: list[tuple[str, str, str]]) -> str:
    elements = ", ".join(f"SchemaElement: key{{{n}:{t}:{k}}}" for n, t, k in schema)
    return f"Schema:[{elements}]"


def _key_schemas(spec: TableSpec) -> list[list[tuple[str, str, str]]]:
    """The key schemas of the table and of its indexes, as (name, type, HASH|RANGE)."""
    key = spec.key
    table: list[tuple[str, str, str]] = [(key.partition.name, key.partition.type, "HASH")]
    if key.sort is not None:
        table.append((key.sort.name, key.sort.type, "RANGE"))
    out = [table]
    for ix in spec.indexes:
        schema: list[tuple[str, str, str]] = [(a.name, a.type, "HASH") for a in ix.hash_attrs]
        schema += [(a.name, a.type, "RANGE") for a in ix.range_attrs]
        out.append(schema)
    return out


def _new_global(spec: TableSpec, d: Any, body: Body, member: str) -> GlobalIndex:
    """An UpdateTable ``Create``: its key attributes must be in the request's
    AttributeDefinitions (even those the table knows), with the types they already have."""
    defs: dict[str, str] = {}
    for a in body.get("AttributeDefinitions") or ():
        if not isinstance(a, dict) or a.get("AttributeType") not in ("S", "N", "B"):
            raise validation(
                "1 validation error detected: Value at 'attributeDefinitions' failed to "
                "satisfy constraint: AttributeType must be one of [B, N, S]"
            )
        defs[str(a.get("AttributeName"))] = str(a["AttributeType"])
    index = parse_global(d, defs, isinstance(spec.capacity, Provisioned), member)
    new: list[tuple[str, str, str]] = []
    for given, kind in ((index.partition_key, "HASH"), (index.sort_key, "RANGE")):
        for attr in given if isinstance(given, list) else [given]:
            if isinstance(attr, tuple):
                new.append((attr[0], attr[1], kind))
    for schema in _key_schemas(spec):
        for name, t, _ in schema:
            if any(n == name and nt != t for n, nt, _ in new):
                raise validation(
                    f"{INVALID}Attributes cannot be redefined. Please check that your attribute "
                    "has the same type as previously defined. Existing schema: "
                    f"{_schema_words(schema)} New schema: {_schema_words(new)}"
                )
    return index


def plan_index_updates(spec: TableSpec, updates: Any, body: Body) -> list[tuple[str, Any]]:
    """UpdateTable's ``GlobalSecondaryIndexUpdates``, checked before anything changes, as
    DynamoDB checks them: ``("Create", GlobalIndex)``, ``("Delete", name)`` and
    ``("Update", IndexSpec)`` (the index with its new provisioned throughput)."""
    if not isinstance(updates, list) or not updates:
        raise validation(_NOTHING_TO_UPDATE)
    members: list[tuple[str, Any]] = []
    for u in updates:
        present = [a for a in _ACTIONS if isinstance(u, dict) and u.get(a) is not None]
        if not present:
            raise validation(f"{INVALID}One of {_ONE_ACTION} must not be null")
        if len(present) > 1:
            raise validation(f"{INVALID}Only one of {_ONE_ACTION} can be given in one update")
        members.append((present[0], u[present[0]]))
    names: set[str] = set()
    for i, (action, d) in enumerate(members, start=1):
        name = _name(d, f"globalSecondaryIndexUpdates.{i}.member.{action.lower()}")
        if name in names:
            raise validation(
                f"{INVALID}Only one global secondary index update per index is allowed "
                f"simultaneously. Index: {name}"
            )
        names.add(name)
    online = sum(1 for action, _ in members if action != "Update")
    if online > 1 or (online and any(ix.status == "CREATING" for ix in spec.indexes)):
        raise DynamoError(
            "LimitExceededException",
            "Subscriber limit exceeded: Only 1 online index can be created or deleted "
            "simultaneously per table",
        )
    out: list[tuple[str, Any]] = []
    for i, (action, d) in enumerate(members, start=1):
        name = str(d["IndexName"])
        existing = next((ix for ix in spec.indexes if ix.name == name), None)
        if action == "Create":
            if existing is not None:
                raise validation(f"Attempting to create an index which already exists: {name}")
            member = f"globalSecondaryIndexUpdates.{i}.member.create"
            out.append((action, _new_global(spec, d, body, member)))
            continue
        if existing is None:
            if action == "Update":
                raise validation(
                    "This operation cannot be performed with given input values. Please "
                    "contact DynamoDB service team for more info: Action Blocked: IndexUpdate"
                )
            raise DynamoError(
                "ResourceNotFoundException", f"Requested resource not found: Index: {name}"
            )
        if existing.kind != "GLOBAL":
            raise validation(
                f"{INVALID}Index {name} is a local secondary index: only global secondary "
                "indexes can be updated or deleted"
            )
        if action == "Delete":
            out.append((action, name))
            continue
        provisioned = isinstance(spec.capacity, Provisioned)
        pt = d.get("ProvisionedThroughput")
        if provisioned or pt is not None:
            out.append((action, replace(existing, capacity=_throughput(name, pt, provisioned))))
    return out
