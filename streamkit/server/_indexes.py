"""Secondary indexes in DynamoDB's request and response shapes (CreateTable,
UpdateTable's ``GlobalSecondaryIndexUpdates``, DescribeTable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamkit.server._convert import shown
from streamkit.server._errors import validation
from streamkit.storage._capacity import Provisioned
from streamkit.storage._indexes import GlobalIndex, IndexSpec, LocalIndex

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec

__all__ = ("describe_indexes", "parse_global", "parse_key_schema", "parse_local")

Body = dict[str, Any]


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
        if not isinstance(k, dict):
            raise validation("KeySchema members must be objects")
        attr, kind = k.get("AttributeName"), k.get("KeyType")
        if attr not in types:
            raise validation(
                "One or more parameter values were invalid: Some index key attributes are not "
                f"defined in AttributeDefinitions. Keys: [{shown(attr)}], AttributeDefinitions: "
                f"[{', '.join(types)}]"
            )
        if kind == "HASH" and hash_key is None:
            hash_key = (attr, types[attr])
        elif kind == "RANGE" and range_key is None:
            range_key = (attr, types[attr])
        else:
            raise validation(bad)
    if hash_key is None:
        raise validation(first)
    if local and range_key is None:
        raise validation(
            "One or more parameter values were invalid: Index KeySchema does not have a range "
            f"key for index: {index}"
        )
    return hash_key, range_key


def _projection(name: str, p: Any) -> Any:
    if not isinstance(p, dict):
        raise validation(f"One or more parameter values were invalid: Projection of {name} missing")
    kind = p.get("ProjectionType")
    extra = p.get("NonKeyAttributes")
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
                "One or more parameter values were invalid: NonKeyAttributes must be specified "
                "when ProjectionType is INCLUDE"
            )
        return list(extra)
    raise validation(f"One or more parameter values were invalid: Unknown ProjectionType: {kind}")


def _name(d: Any) -> str:
    if not isinstance(d, dict) or not isinstance(d.get("IndexName"), str):
        raise validation("Index definitions must be objects with an IndexName")
    return str(d["IndexName"])


def parse_global(d: Any, types: dict[str, str], provisioned: bool) -> GlobalIndex:
    """One ``GlobalSecondaryIndexes`` member (or an UpdateTable ``Create``)."""
    name = _name(d)
    hash_key, range_key = parse_key_schema(d.get("KeySchema"), types, index=name)
    capacity = None
    pt = d.get("ProvisionedThroughput")
    if provisioned:
        if not isinstance(pt, dict):
            raise validation(
                "One or more parameter values were invalid: ProvisionedThroughput must be "
                f"specified for index: {name}"
            )
        r, w = pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")
        if not (isinstance(r, int) and isinstance(w, int) and r >= 1 and w >= 1):
            raise validation("ProvisionedThroughput units must be positive integers")
        capacity = Provisioned(read=r, write=w)
    elif pt is not None:
        raise validation(
            "One or more parameter values were invalid: ProvisionedThroughput should not be "
            f"specified for index: {name} when BillingMode is PAY_PER_REQUEST"
        )
    return GlobalIndex(
        name,
        partition_key=hash_key,
        sort_key=range_key,
        projection=_projection(name, d.get("Projection")),
        capacity=capacity,
    )


def parse_local(d: Any, types: dict[str, str], table_hash: str) -> LocalIndex:
    """One ``LocalSecondaryIndexes`` member."""
    name = _name(d)
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
    out = [{"AttributeName": ix.key.partition.name, "KeyType": "HASH"}]
    if ix.key.sort is not None:
        out.append({"AttributeName": ix.key.sort.name, "KeyType": "RANGE"})
    return out


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
        attrs += [ix.key.partition, ix.key.sort]
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
