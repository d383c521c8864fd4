"""TagResource, UntagResource and ListTagsOfResource: a table's tags, kept in its spec.

DynamoDB's rules: at most 50 tags per table, a key of 1-128 characters that does not
start with ``aws:``, a value of 0-256 characters (both of letters, digits, whitespace
and ``_ . : / = + - @``); tagging a key again replaces its value, untagging an absent
key is not an error.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from streamkit.exceptions import TableNotFound
from streamkit.server._convert import shown
from streamkit.server._errors import DynamoError, validation

if TYPE_CHECKING:
    from streamkit.server._ops import Service
    from streamkit.storage._spec import TableSpec

__all__ = ("TAG_OPERATIONS", "check_tags")

Body = dict[str, Any]
MAX_TAGS = 50
_PATTERN = re.compile(r"^[\w\s.:/=+\-@]*$")


def _constraint(value: Any, member: str, rule: str) -> DynamoError:
    return validation(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {rule}"
    )


def check_tags(tags: Any, member: str = "tags") -> list[tuple[str, str]]:
    """A ``Tags`` list as (key, value) pairs, checked as DynamoDB checks them."""
    if not isinstance(tags, list) or not tags:
        raise _constraint(tags, member, "Member must have length greater than or equal to 1")
    out: list[tuple[str, str]] = []
    for i, tag in enumerate(tags, 1):
        if not isinstance(tag, dict):
            raise validation(f"Invalid Tag: {shown(tag)}")
        key, value = tag.get("Key"), tag.get("Value")
        where = f"{member}.{i}.member"
        if not isinstance(key, str):
            raise _constraint(None, f"{where}.key", "Member must not be null")
        if not isinstance(value, str):
            raise _constraint(None, f"{where}.value", "Member must not be null")
        _check_key(key, f"{where}.key")
        if len(value) > 256:
            raise _constraint(
                value, f"{where}.value", "Member must have length less than or equal to 256"
            )
        if not _PATTERN.match(value):
            raise _constraint(
                value,
                f"{where}.value",
                r"Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]*",
            )
        out.append((key, value))
    return out


def _check_key(key: str, member: str) -> None:
    if not key:
        raise _constraint(key, member, "Member must have length greater than or equal to 1")
    if len(key) > 128:
        raise _constraint(key, member, "Member must have length less than or equal to 128")
    if not _PATTERN.match(key):
        raise _constraint(
            key,
            member,
            r"Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]*",
        )
    if key.startswith("aws:"):
        raise validation(
            "One or more parameter values were invalid: Tag keys starting with 'aws:' are "
            "reserved for AWS use"
        )


def merged(spec: TableSpec, tags: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The table's tags with ``tags`` added (LimitExceeded past 50)."""
    current = dict(spec.tags)
    current.update(tags)
    if len(current) > MAX_TAGS:
        raise DynamoError(
            "LimitExceededException",
            f"The number of tags on a resource cannot exceed {MAX_TAGS}",
        )
    return tuple(sorted(current.items()))


async def _table_of(service: Service, arn: Any) -> TableSpec:
    if not isinstance(arn, str):
        raise _constraint(None, "resourceArn", "Member must not be null")
    if not 1 <= len(arn) <= 1283:
        raise _constraint(arn, "resourceArn", "Member must have length less than or equal to 1283")
    if ":table/" not in arn or not arn.startswith("arn:"):
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    name = arn.split(":table/", 1)[1]
    missing = DynamoError(
        "ResourceNotFoundException", f"Requested resource not found: ResourcArn: {arn} not found"
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


async def TagResource(service: Service, body: Body) -> Body:
    tags = check_tags(body.get("Tags"))
    spec = await _table_of(service, body.get("ResourceArn"))
    await service.save_spec(replace(spec, tags=merged(spec, tags)))
    return {}


async def UntagResource(service: Service, body: Body) -> Body:
    keys = body.get("TagKeys")
    if not isinstance(keys, list) or not keys:
        raise _constraint(keys, "tagKeys", "Member must have length greater than or equal to 1")
    for i, k in enumerate(keys, 1):
        if not isinstance(k, str):
            raise _constraint(None, f"tagKeys.{i}.member", "Member must not be null")
        if not 1 <= len(k) <= 128:
            raise _constraint(
                k, f"tagKeys.{i}.member", "Member must have length less than or equal to 128"
            )
    spec = await _table_of(service, body.get("ResourceArn"))
    drop = set(keys)
    kept = tuple(t for t in spec.tags if t[0] not in drop)
    if kept != spec.tags:
        await service.save_spec(replace(spec, tags=kept))
    return {}


async def ListTagsOfResource(service: Service, body: Body) -> Body:
    spec = await _table_of(service, body.get("ResourceArn"))
    return {"Tags": [{"Key": k, "Value": v} for k, v in spec.tags]}


TAG_OPERATIONS = {
    "TagResource": TagResource,
    "UntagResource": UntagResource,
    "ListTagsOfResource": ListTagsOfResource,
}
