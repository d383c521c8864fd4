"""DynamoDB's answer to a request member of the wrong JSON type.

DynamoDB reads a request into its Java model before it validates anything, so a member
whose JSON type does not fit (a string for a boolean, a list for a map) is a
``SerializationException`` in the words of that reader, not a ``ValidationException``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from streamkit.server._errors import DynamoError

_MODEL = "com.amazonaws.dynamodb.v20120810"
_ATTRIBUTE_MAP = f"java.util.Map<java.lang.String, {_MODEL}.AttributeValue>"
_STRING_MAP = "java.util.Map<java.lang.String, java.lang.String>"

# the Java type of the map-valued members (a structure member is its own class)
MAP_TYPES = {
    "Item": _ATTRIBUTE_MAP,
    "Key": _ATTRIBUTE_MAP,
    "ExclusiveStartKey": _ATTRIBUTE_MAP,
    "ExpressionAttributeValues": _ATTRIBUTE_MAP,
    "ExpressionAttributeNames": _STRING_MAP,
    "Expected": f"java.util.Map<java.lang.String, {_MODEL}.ExpectedAttributeValue>",
    "AttributeUpdates": f"java.util.Map<java.lang.String, {_MODEL}.AttributeValueUpdate>",
    "KeyConditions": f"java.util.Map<java.lang.String, {_MODEL}.Condition>",
    "QueryFilter": f"java.util.Map<java.lang.String, {_MODEL}.Condition>",
    "ScanFilter": f"java.util.Map<java.lang.String, {_MODEL}.Condition>",
}
BATCH_GET_ITEMS = f"java.util.Map<java.lang.String, {_MODEL}.KeysAndAttributes>"
BATCH_WRITE_ITEMS = f"java.util.Map<java.lang.String, java.util.List<{_MODEL}.WriteRequest>>"


def serialization(message: str) -> DynamoError:
    return DynamoError("SerializationException", message, coral=True)


def _scalar(value: Any) -> str | None:
    """How DynamoDB's JSON reader names a scalar token."""
    if value is True:
        return "TRUE_VALUE"
    if value is False:
        return "FALSE_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    if isinstance(value, int):
        return "NUMBER_VALUE"
    if isinstance(value, (float, Decimal)):
        return "DECIMAL_VALUE"
    return None


def wrong_type(
    name: str, kind: type | tuple[type, ...], value: Any, java: str | None = None
) -> DynamoError | None:
    """The ``SerializationException`` for member ``name`` (of Python type ``kind``)
    holding ``value``; None where DynamoDB's answer is not known (the caller keeps its
    own). ``java``: the member's Java type when it is a map not in :data:`MAP_TYPES`."""
    if isinstance(value, dict):
        return serialization("Start of structure or map found where not expected")
    scalar = _scalar(value)
    if kind is str:
        if isinstance(value, list):
            return serialization("Unrecognized collection type class java.lang.String")
        if scalar is not None:
            return serialization(f"{scalar} cannot be converted to String")
    elif kind is bool:
        if isinstance(value, list):
            return serialization("Unrecognized collection type class java.lang.Boolean")
        if scalar == "STRING_VALUE":
            return serialization("Unexpected token received from parser")
        if scalar is not None:
            return serialization(f"{scalar} cannot be converted to Boolean")
    elif kind is int:
        if isinstance(value, list):
            return serialization("Unrecognized collection type class java.lang.Integer")
        if scalar in ("STRING_VALUE", "TRUE_VALUE", "FALSE_VALUE"):
            return serialization(f"{scalar} cannot be converted to Integer")
    elif kind is list:
        if scalar is not None:
            return serialization("Unexpected field type")
    elif kind is dict:
        if scalar is not None:
            return serialization("Unexpected field type")
        if isinstance(value, list):
            shape = java or MAP_TYPES.get(name) or f"class {_MODEL}.{name}"
            return serialization(f"Unrecognized collection type {shape}")
    return None
