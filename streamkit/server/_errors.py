"""DynamoDB's error responses: ``__type`` names, messages, HTTP status."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from streamkit.exceptions import (
    BackupNotFound,
    ConditionFailed,
    DuplicateItem,
    HistoryUnavailable,
    ItemCollectionSizeLimitExceeded,
    RecordFormatError,
    StreamkitError,
    TableExists,
    TableNotFound,
    ThroughputExceeded,
    TransactionCanceled,
    ValidationError,
)
from streamkit.records._values import item_to_dynamodb_json

__all__ = ("INVALID", "DynamoError", "from_streamkit")

_DYNAMO = "com.amazonaws.dynamodb.v20120810#"
_CORAL = "com.amazon.coral.service#"
INVALID = "One or more parameter values were invalid: "
# the storage layer's key type error (the Python API's words), said as DynamoDB says it
_KEY_TYPE = re.compile(r"key attribute .+ must be of type (?P<want>[SNB]), got (?P<got>\w+)")
# the storage layer's key size errors, said as DynamoDB says them (its own spacing)
_KEY_SIZE = {
    re.compile(r"partition key .+ is longer than 2048 bytes"): (
        "Size of hashkey has exceeded the maximum size limit of2048 bytes"
    ),
    re.compile(r"sort key .+ is longer than 1024 bytes"): (
        "Aggregated size of all range keys has exceeded the size limit of 1024 bytes"
    ),
}
# the number limits (results of update arithmetic: the input's are checked when parsed)
_NUMBER_DIGITS = re.compile(r"(?:.+: )?number \S+ has \d+ significant digits; at most 38 are kept")
_NUMBER_RANGE = re.compile(r"(?:.+: )?number (?P<value>\S+) is out of range \(.*\)")
# other storage-layer words, said as DynamoDB says them
_SAID = {
    re.compile(r"a transaction cannot include more than one action on the same item .*"): (
        "Transaction request cannot include multiple operations on one item"
    ),
    re.compile(r"the key (has attributes that are not part of the table's key|is missing).*"): (
        "The provided key element does not match the schema"
    ),
    re.compile(r"missing key attribute .*"): (INVALID + "Missing the key {name} in the item"),
    re.compile(r"cannot update attribute .+: it is part of the table's key"): (
        INVALID + "Cannot update attribute {name}. This attribute is part of the key"
    ),
    re.compile(r"index key attribute .+ is a scalar: a nested path under it .*"): (
        "Key attributes must be scalars; list random access '[]' and map lookup '.' are "
        "not allowed: IndexKey: {name}"
    ),
}
# an empty string or binary key attribute (DynamoDB says "are not valid" here)
_EMPTY_KEY = re.compile(r"key attribute .+ must not be empty \(got an empty (string|binary)\b.*")
_TYPE_TAGS = {
    "str": "S",
    "Decimal": "N",
    "int": "N",
    "float": "N",
    "bytes": "B",
    "bool": "BOOL",
    "NoneType": "NULL",
    "list": "L",
    "dict": "M",
}


class DynamoError(Exception):
    """An error response: ``{"__type": ..., "message": ...}`` with an HTTP status."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        status: int = 400,
        coral: bool = False,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.type = (_CORAL if coral else _DYNAMO) + name
        self.message = message
        self.status = status
        self.close = close  # answer with ``Connection: close`` (the body was not all read)
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"__type": self.type}
        if self.message:  # DynamoDB says nothing more of an unknown operation
            out["message"] = self.message
        # boto3 reads "Message" for some services and "message" for others
        out.update(self.extra)
        return out


def validation(message: str) -> DynamoError:
    return DynamoError("ValidationException", message)


def from_streamkit(e: StreamkitError) -> DynamoError:
    """The DynamoDB error a streamkit error corresponds to."""
    if isinstance(e, TableNotFound):
        return DynamoError(
            "ResourceNotFoundException",
            f"Requested resource not found: Table: {e.table} not found"
            if e.table
            else "Requested resource not found",
        )
    if isinstance(e, BackupNotFound):
        return DynamoError("BackupNotFoundException", str(e))
    if isinstance(e, TableExists):
        return DynamoError("ResourceInUseException", f"Table already exists: {e.table}")
    if isinstance(e, DuplicateItem):
        return DynamoError("DuplicateItemException", str(e))
    if isinstance(e, ConditionFailed):
        extra: dict[str, Any] = {}
        if getattr(e, "item", None) is not None:
            extra["Item"] = item_to_dynamodb_json(e.item)  # type: ignore[arg-type]
        return DynamoError(
            "ConditionalCheckFailedException", "The conditional request failed", **extra
        )
    if isinstance(e, TransactionCanceled):
        reasons = []
        for r in e.reasons:
            reason: dict[str, Any] = {"Code": r.code}
            if r.code != "None":
                reason["Message"] = r.message or r.code
            if getattr(r, "item", None) is not None:
                reason["Item"] = item_to_dynamodb_json(r.item)  # type: ignore[arg-type]
            reasons.append(reason)
        codes = ", ".join(r["Code"] for r in reasons)
        return DynamoError(
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons "
            f"[{codes}]",
            CancellationReasons=reasons,
        )
    if isinstance(e, ItemCollectionSizeLimitExceeded):
        return DynamoError("ItemCollectionSizeLimitExceededException", str(e))
    if isinstance(e, ThroughputExceeded):
        return DynamoError(
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. "
            "Consider increasing your provisioning level with the UpdateTable API.",
        )
    if isinstance(e, ValidationError) and e.path:
        for pattern, said in _KEY_SIZE.items():
            if pattern.fullmatch(str(e)):
                return validation(INVALID + said)
        m = _EMPTY_KEY.fullmatch(str(e))
        if m is not None:
            return validation(
                "One or more parameter values are not valid. The AttributeValue for a key "
                f"attribute cannot contain an empty {m[1]} value. Key: {e.path}"
            )
        m = _KEY_TYPE.fullmatch(str(e))
        if m is not None:
            got = _TYPE_TAGS.get(m["got"], "SS, NS or BS" if m["got"] == "set" else m["got"])
            return validation(
                f"{INVALID}Type mismatch for key {e.path} expected: {m['want']} actual: {got}"
            )
    if isinstance(e, ValidationError) and not isinstance(e, RecordFormatError):
        text = str(e)
        for pattern, said in _SAID.items():
            if pattern.fullmatch(text):
                return validation(said.format(name=e.path))
        m = _NUMBER_RANGE.fullmatch(text)
        if _NUMBER_DIGITS.fullmatch(text) or m is not None:
            # an arithmetic result past 38 digits: DynamoDB calls it an overflow as well
            if m is None or Decimal(m["value"]).adjusted() > 0:
                return validation(
                    "Number overflow. Attempting to store a number with magnitude larger than "
                    "supported range"
                )
            return validation(
                "Number underflow. Attempting to store a number with magnitude smaller than "
                "supported range"
            )
    if isinstance(e, (ValidationError, HistoryUnavailable, RecordFormatError)):
        return validation(str(e))
    return DynamoError("InternalServerError", f"{type(e).__name__}: {e}", status=500)
