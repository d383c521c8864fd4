"""TagResource, UntagResource and ListTagsOfResource: a table's tags, kept in its spec.

DynamoDB's rules: at most 50 tags per table, a key of 1-128 characters that does not
start with ``aws:``, a value of 0-256 characters (both of letters, digits, whitespace
and ``_ . : / = + - @``); tagging a key again replaces its value, untagging an absent
key is not an error. Every broken rule is a ValidationException in DynamoDB's words (the
50-tag limit too), and nothing is changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import TableNotFound
from streamkit.server._convert import shown
from streamkit.server._errors import INVALID, DynamoError, validation

if TYPE_CHECKING:
    from streamkit.server._ops import Service
    from streamkit.storage._spec import TableSpec

__all__ = ("TAG_OPERATIONS", "check_tags")

Body = dict[str, Any]
MAX_TAGS = 50
_PATTERN = re.compile(r"^[\w\s.:/=+\-@]*$")


def _constraint(value: Any, member: str, rule: str) -> DynamoError:
    shown_value = "null" if value is None else f"'{value}'"
    return validation(
        f"1 validation error detected: Value {shown_value} at '{member}' failed to satisfy "
        f"constraint: {rule}"
    )


def _bad_key(key: Any) -> DynamoError:
    return validation(f"The Tag Key provided is invalid, Key: {'null' if key is None else key}")


def check_tags(tags: Any, member: str = "tags") -> list[tuple[str, str]]:
    """A ``Tags`` list as (key, value) pairs, checked as DynamoDB checks them."""
    if tags is None:
        raise _constraint(None, member, "Member must not be null")
    if not isinstance(tags, list) or not tags:
        raise validation("Atleast one Tag needs to be provided as Input.")
    out: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, dict):
            raise validation(f"Invalid Tag: {shown(tag)}")
        key, value = tag.get("Key"), tag.get("Value")
        key = _check_key(key)
        if not isinstance(value, str) or len(value) > 256 or not _PATTERN.match(value):
            shown_value = "null" if value is None else value
            raise validation(f"The Tag Value provided is invalid, Value: {shown_value}")
        if key in out:
            raise validation(f"Duplicate Tag Keys provided as input: Duplicate Tag Key found {key}")
        out[key] = value
    if len(out) > MAX_TAGS:
        raise too_many_tags()
    return list(out.items())


def too_many_tags() -> DynamoError:
    return validation("Number of Tags exceed the current limit for the provided ResourceArn")


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or not _PATTERN.match(key):
        raise _bad_key(key)
    if key.startswith("aws:"):
        raise validation(f"Tag Key cannot be prefixed with aws:, Key: {key}")
    return key


def merged(spec: TableSpec, tags: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The table's tags with ``tags`` added (ValidationException past 50, as DynamoDB)."""
    current = dict(spec.tags)
    current.update(tags)
    if len(current) > MAX_TAGS:
        raise too_many_tags()
    return tuple(sorted(current.items()))


async def _table_of(service: Service, arn: Any) -> TableSpec:
    if not isinstance(arn, str):
        raise _constraint(None, "resourceArn", "Member must not be null")
    if not 1 <= len(arn) <= 1283:
        raise _constraint(arn, "resourceArn", "Member must have length less than or equal to 1283")
    if not arn.startswith("arn:"):
        raise validation(f"{INVALID}ARNs must start with 'arn:': {arn}")
    if ":table/" not in arn:
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    name = arn.split(":table/", 1)[1]
    missing = _missing(arn)
    if "/index/" in name:
        # an index's ARN (DynamoDB tags tables only)
        raise validation(
            f"{INVALID}Invalid resource arn provided, only table or stream is accepted. "
            f"Provided resource arn: {arn}"
        )
    if "/" in name:
        raise missing
    try:
        spec = await service.store.spec(name)
    except TableNotFound:
        raise missing from None
    if service.arn(name) != arn:
        raise missing
    return spec


def _missing(arn: Any) -> DynamoError:
    return DynamoError(
        "ResourceNotFoundException", f"Requested resource not found: ResourcArn: {arn} not found"
    )


async def _change_tags(
    service: Service, arn: Any, change: Callable[[TableSpec], tuple[tuple[str, str], ...]]
) -> None:
    """Change the table's tags without undoing a concurrent change of its settings (two
    concurrent tag requests, say): ``Store.change_spec``."""
    table = await _table_of(service, arn)

    def changed(spec: TableSpec) -> TableSpec:
        if spec.table_id != table.table_id:  # deleted (and made again) meanwhile
            raise _missing(arn)
        return replace(spec, tags=change(spec))

    try:
        await service.store.change_spec(table.name, changed)
    except TableNotFound:
        raise DynamoError(
            "ResourceNotFoundException",
            f"Requested resource not found: ResourcArn: {arn} not found",
        ) from None


async def TagResource(service: Service, body: Body) -> Body:
    tags = check_tags(body.get("Tags"))
    await _change_tags(service, body.get("ResourceArn"), lambda spec: merged(spec, tags))
    return {}


async def UntagResource(service: Service, body: Body) -> Body:
    keys = body.get("TagKeys")
    if keys is None:
        raise _constraint(None, "tagKeys", "Member must not be null")
    if not isinstance(keys, list) or not keys:
        raise validation("Atleast one Tag Key needs to be provided as Input.")
    for k in keys:
        if not isinstance(k, str) or not 1 <= len(k) <= 128:
            raise _bad_key(k)
    if len(keys) > MAX_TAGS:
        raise too_many_tags()
    drop = set(keys)
    await _change_tags(
        service,
        body.get("ResourceArn"),
        lambda spec: tuple(t for t in spec.tags if t[0] not in drop),
    )
    return {}


async def ListTagsOfResource(service: Service, body: Body) -> Body:
    spec = await _table_of(service, body.get("ResourceArn"))
    return {"Tags": [{"Key": k, "Value": v} for k, v in spec.tags]}


TAG_OPERATIONS = {
    "TagResource": TagResource,
    "UntagResource": UntagResource,
    "ListTagsOfResource": ListTagsOfResource,
}
