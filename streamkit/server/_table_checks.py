"""CreateTable's, UpdateTable's and ListTables' request checks, in DynamoDB's words.

DynamoDB checks a request's shape first (lengths, enum values, missing members: every
broken rule in one ``N validation errors detected: ...`` message), then its meaning
(``One or more parameter values were invalid: ...``); a bad request changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from streamkit.server._convert import shown
from streamkit.server._errors import INVALID, validation
from streamkit.storage._capacity import Capacity, OnDemand, Provisioned
from streamkit.storage._spec import MAX_KEY_NAME, table_name_problems

__all__ = (
    "check_create_shape",
    "check_key_schema",
    "check_list_tables",
    "check_update_members",
    "check_update_shape",
    "created_capacity",
    "updated_capacity",
)

Body = dict[str, Any]
_TYPES = ("B", "N", "S")
_BILLING = ("PROVISIONED", "PAY_PER_REQUEST")
# what UpdateTable must change, as DynamoDB lists it when a request changes nothing
_UPDATE_MEMBERS = {
    "ProvisionedThroughput": "ProvisionedThroughput",
    "BillingMode": "BillingMode",
    "StreamSpecification": "UpdateStreamEnabled",
    "GlobalSecondaryIndexUpdates": "GlobalSecondaryIndexUpdates",
    "SSESpecification": "SSESpecification",
    "ReplicaUpdates": "ReplicaUpdates",
    "MultiAccountReplicaReady": "MultiAccountReplicaReady",
    "ReplicaTransitRoleArn": "ReplicaTransitRoleArn",
    "MultiRegionConsistency": "MultiRegionConsistency",
    "DeletionProtectionEnabled": "DeletionProtectionEnabled",
    "OnDemandThroughput": "OnDemandThroughput",
    "WarmThroughput": "WarmThroughput",
    "TableClass": "TableClass",
}
_PPR_UNITS = (
    f"{INVALID}Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when "
    "BillingMode is PAY_PER_REQUEST"
)


class _Shape:
    """The shape errors of one request, reported together as DynamoDB reports them."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, value: Any, member: str, rule: str) -> None:
        if value is None:
            shown = "null"
        elif isinstance(value, str):
            shown = f"'{value}'"
        else:
            shown = f"'{json.dumps(value, separators=(',', ':'))}'"
        self.errors.append(f"Value {shown} at '{member}' failed to satisfy constraint: {rule}")

    def name(self, value: Any, member: str, *, limit: int = MAX_KEY_NAME) -> None:
        if value is None:
            self.add(None, member, "Member must not be null")
        elif isinstance(value, str) and not value:
            self.add(value, member, "Member must have length greater than or equal to 1")
        elif isinstance(value, str) and len(value.encode()) > limit:
            self.add(value, member, f"Member must have length less than or equal to {limit}")

    def enum(self, value: Any, member: str, values: tuple[str, ...]) -> None:
        if value is None:
            self.add(None, member, "Member must not be null")
        elif value not in values:
            self.add(value, member, f"Member must satisfy enum value set: [{', '.join(values)}]")

    def done(self) -> None:
        n = len(self.errors)
        if n:
            raise validation(
                f"{n} validation error{'s' if n > 1 else ''} detected: {'; '.join(self.errors)}"
            )


def _billing_mode(shape: _Shape, mode: Any) -> None:
    """A BillingMode member (null: absent, as every member DynamoDB gets)."""
    if mode is None:
        return
    if not isinstance(mode, str):
        raise validation(f"Invalid BillingMode: {shown(mode)}")
    shape.enum(mode, "billingMode", _BILLING)


def _units(shape: _Shape, pt: Any, member: str = "provisionedThroughput") -> None:
    if not isinstance(pt, dict):
        return
    for unit in ("ReadCapacityUnits", "WriteCapacityUnits"):
        value = pt.get(unit)
        where = f"{member}.{unit[0].lower()}{unit[1:]}"
        if value is None:
            shape.add(None, where, "Member must not be null")
        elif isinstance(value, int) and not isinstance(value, bool) and value < 1:
            shape.add(str(value), where, "Member must have value greater than or equal to 1")


def _key_schema_shape(shape: _Shape, schema: Any, member: str, most: int = 2) -> None:
    """``most``: 2 for a table's or local index's key, 8 for a global index's (DynamoDB's
    multi-attribute keys: up to four HASH and four RANGE attributes)."""
    if not isinstance(schema, list):
        return
    if not 1 <= len(schema) <= most:
        bound = "greater than or equal to 1" if not schema else f"less than or equal to {most}"
        shape.add(schema, member, f"Member must have length {bound}")
    for i, k in enumerate(schema, 1):
        if isinstance(k, dict):
            shape.name(k.get("AttributeName"), f"{member}.{i}.member.attributeName")
            shape.enum(k.get("KeyType"), f"{member}.{i}.member.keyType", ("HASH", "RANGE"))


def check_create_shape(body: Body) -> dict[str, str]:
    """CreateTable's shape checks (name, key names, attribute types, billing, units);
    the attribute definitions as name -> type."""
    shape = _Shape()
    name = body.get("TableName")
    if name is None:
        shape.add(None, "tableName", "Member must not be null")
    elif isinstance(name, str):
        for rule in table_name_problems(name):
            shape.add(name, "tableName", rule)
    defs = body.get("AttributeDefinitions")
    if defs is None:
        shape.add(None, "attributeDefinitions", "Member must not be null")
    if body.get("KeySchema") is None:
        shape.add(None, "keySchema", "Member must not be null")
    _key_schema_shape(shape, body.get("KeySchema"), "keySchema")
    for i, d in enumerate(defs if isinstance(defs, list) else (), 1):
        if isinstance(d, dict):
            where = f"attributeDefinitions.{i}.member"
            shape.name(d.get("AttributeName"), f"{where}.attributeName")
            shape.enum(d.get("AttributeType"), f"{where}.attributeType", _TYPES)
    for member in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = body.get(member)
        for j, ix in enumerate(indexes if isinstance(indexes, list) else (), 1):
            if isinstance(ix, dict):
                where = f"{member[0].lower()}{member[1:]}.{j}.member.keySchema"
                most = 8 if member == "GlobalSecondaryIndexes" else 2
                _key_schema_shape(shape, ix.get("KeySchema"), where, most)
    _billing_mode(shape, body.get("BillingMode"))
    _units(shape, body.get("ProvisionedThroughput"))
    shape.done()
    types: dict[str, str] = {}
    for d in defs if isinstance(defs, list) else ():
        if not isinstance(d, dict) or not isinstance(d.get("AttributeName"), str):
            continue
        attr = d["AttributeName"]
        if attr in types:
            raise validation(f"Attribute Name is duplicated: {attr}")
        types[attr] = str(d["AttributeType"])
    return types


def check_key_schema(schema: Any) -> None:
    """The order rules of a table's KeySchema (its shape is checked already)."""
    if not isinstance(schema, list) or not all(isinstance(k, dict) for k in schema):
        return
    kinds = [k.get("KeyType") for k in schema]
    if kinds[:1] != ["HASH"]:
        raise validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    if len(kinds) == 2 and kinds[1] != "RANGE":
        raise validation("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
    if len(schema) == 2 and schema[0].get("AttributeName") == schema[1].get("AttributeName"):
        raise validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name"
        )


def unused_definitions(body: Body, types: dict[str, str], used: set[str]) -> None:
    """DynamoDB refuses an attribute definition no key of the table or its indexes uses."""
    if set(types) == used:
        return
    if body.get("GlobalSecondaryIndexes") or body.get("LocalSecondaryIndexes"):
        raise validation(
            f"{INVALID}Some AttributeDefinitions are not used. AttributeDefinitions: "
            f"[{', '.join(types)}], keys used: [{', '.join(sorted(used))}]"
        )
    raise validation(
        f"{INVALID}Number of attributes in KeySchema does not exactly match number of "
        "attributes defined in AttributeDefinitions"
    )


def created_capacity(body: Body) -> Capacity:
    """A new table's capacity (its shape is checked already)."""
    pt = body.get("ProvisionedThroughput")
    if (body.get("BillingMode") or "PROVISIONED") == "PAY_PER_REQUEST":
        if pt is not None:
            raise validation(_PPR_UNITS)
        return OnDemand()
    if not isinstance(pt, dict):
        raise validation(
            f"{INVALID}ReadCapacityUnits and WriteCapacityUnits must both be specified when "
            "BillingMode is PROVISIONED"
        )
    return _provisioned(pt)


def _provisioned(pt: Body) -> Provisioned:
    r, w = pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")
    if not (isinstance(r, int) and isinstance(w, int)) or isinstance(r, bool):
        raise validation(f"{INVALID}ProvisionedThroughput units must be integers")
    return Provisioned(read=r, write=w)


def check_update_members(body: Body) -> None:
    """UpdateTable must change something."""
    if not any(m in body for m in _UPDATE_MEMBERS):
        raise validation(f"At least one of {_or_list(list(_UPDATE_MEMBERS.values()))} is required")


def check_update_shape(body: Body) -> None:
    """UpdateTable's attribute and index key names (at most 255 bytes), reported as
    CreateTable's are: before any name is looked up."""
    shape = _Shape()
    defs = body.get("AttributeDefinitions")
    for i, d in enumerate(defs if isinstance(defs, list) else (), 1):
        if isinstance(d, dict):
            shape.name(d.get("AttributeName"), f"attributeDefinitions.{i}.member.attributeName")
    updates = body.get("GlobalSecondaryIndexUpdates")
    for j, u in enumerate(updates if isinstance(updates, list) else (), 1):
        create = u.get("Create") if isinstance(u, dict) else None
        if isinstance(create, dict):
            where = f"globalSecondaryIndexUpdates.{j}.member.create.keySchema"
            _key_schema_shape(shape, create.get("KeySchema"), where, 8)
    shape.done()


def _or_list(names: list[str]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


def updated_capacity(body: Body, current: Capacity) -> Capacity:
    """A table's capacity after UpdateTable, checked as DynamoDB checks it."""
    shape = _Shape()
    mode, pt = body.get("BillingMode"), body.get("ProvisionedThroughput")
    _billing_mode(shape, mode)
    _units(shape, pt)
    shape.done()
    if mode == "PAY_PER_REQUEST":
        if pt is not None:
            raise validation(_PPR_UNITS)
        return OnDemand()
    if mode is None and pt is None:
        return current
    if not isinstance(pt, dict):
        if isinstance(current, Provisioned):
            return current
        raise validation(
            f"{INVALID}ProvisionedThroughput must be specified when BillingMode is PROVISIONED"
        )
    if mode is None and isinstance(current, OnDemand):
        raise validation(
            f"{INVALID}ProvisionedThroughput cannot be specified when BillingMode is "
            "PAY_PER_REQUEST"
        )
    return _provisioned(pt)


def unchanged_throughput(old: Provisioned, new: Provisioned) -> None:
    """DynamoDB refuses an UpdateTable whose only change is the current throughput."""
    if old == new:
        raise validation(
            "The provisioned throughput for the table will not change. The requested value "
            "equals the current value. Current ReadCapacityUnits provisioned for the table: "
            f"{old.read}. Requested ReadCapacityUnits: {new.read}. Current WriteCapacityUnits "
            f"provisioned for the table: {old.write}. Requested WriteCapacityUnits: "
            f"{new.write}. Refer to the Amazon DynamoDB Developer Guide for current limits "
            "and how to request higher limits."
        )


def check_list_tables(body: Body) -> None:
    """ListTables' shape checks (Limit 1-100, a well-formed start name)."""
    shape = _Shape()
    limit = body.get("Limit")
    if isinstance(limit, int) and not isinstance(limit, bool) and not 1 <= limit <= 100:
        rule = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
        shape.add(str(limit), "limit", f"Member must have value {rule}")
    start = body.get("ExclusiveStartTableName")
    if isinstance(start, str):
        for rule in table_name_problems(start):
            shape.add(start, "exclusiveStartTableName", rule)
    shape.done()
