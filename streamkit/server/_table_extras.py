"""A table's settings that only the DynamoDB endpoint knows: its table class, warm
throughput and deletion protection. Streamkit stores and shows them as DynamoDB does
(the first two change no behaviour: there is one storage class, and every table is as
warm as the machine; deletion protection refuses the endpoint's DeleteTable), kept in
the store's settings under ``dynamodb.extras/<table>/<table id>`` so they go with the
table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from streamkit.server._convert import shown
from streamkit.server._errors import validation

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = (
    "Extras",
    "check_deletable",
    "created_extras",
    "describe_extras",
    "load_extras",
    "save_extras",
    "updated_extras",
)

Body = dict[str, Any]
TABLE_CLASSES = ("STANDARD", "STANDARD_INFREQUENT_ACCESS")
# DynamoDB's warm throughput of a new on-demand table, and the least one may ask for
WARM_DEFAULT = {"ReadUnitsPerSecond": 12_000, "WriteUnitsPerSecond": 4_000}
_UNITS = tuple(WARM_DEFAULT)


@dataclass(frozen=True, slots=True)
class Extras:
    """``table_class`` None: never given (DescribeTable then shows no TableClassSummary);
    ``class_updated``: when UpdateTable last changed it; ``warm``: units per second."""

    table_class: str | None = None
    class_updated: float | None = None
    warm: tuple[int, int] = (
        WARM_DEFAULT["ReadUnitsPerSecond"],
        WARM_DEFAULT["WriteUnitsPerSecond"],
    )
    protected: bool = False  # DeletionProtectionEnabled


def _key(spec: TableSpec) -> str:
    return f"dynamodb.extras/{spec.name}/{spec.table_id}"


async def load_extras(store: Store, spec: TableSpec) -> Extras:
    raw = (await store.read_meta((_key(spec),))).get(_key(spec))
    if not raw:
        return Extras()
    d = json.loads(raw)
    read, write = d["warm"]
    warm = (int(read), int(write))
    return Extras(d.get("class"), d.get("class_updated"), warm, bool(d.get("protected")))


async def save_extras(store: Store, spec: TableSpec, extras: Extras) -> None:
    value: dict[str, Any] = {"class": extras.table_class, "class_updated": extras.class_updated}
    value |= {"warm": list(extras.warm), "protected": extras.protected}
    await store.write_meta({_key(spec): json.dumps(value)})


def _table_class(value: Any) -> str:
    if value not in TABLE_CLASSES:
        raise validation(
            "Invalid table-class parameter provided. Please try again with a valid "
            f"table-class value: [{', '.join(TABLE_CLASSES)}]."
        )
    return str(value)


def _warm(value: Any, current: tuple[int, int], *, created: bool) -> tuple[int, int]:
    """A checked WarmThroughput: each unit given at least DynamoDB's minimum and (after
    creation) not below the table's current one; a unit not given stays as it is."""
    if not isinstance(value, dict) or not value or set(value) - set(_UNITS):
        raise validation(f"Invalid WarmThroughput: {shown(value)}")
    out = list(current)
    for i, unit in enumerate(_UNITS):
        if unit not in value:
            continue
        n = value[unit]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise validation(
                f"1 validation error detected: Value '{shown(n)}' at 'warmThroughput."
                f"{unit[0].lower()}{unit[1:]}' failed to satisfy constraint: Member must have "
                "value greater than or equal to 1"
            )
        if n < WARM_DEFAULT[unit]:
            raise validation(
                f"One or more parameter values were invalid: WarmThroughput {unit} {n} is "
                f"lower than the minimum of {WARM_DEFAULT[unit]}"
            )
        if not created and n < current[i]:
            raise validation(
                f"One or more parameter values were invalid: Requested {unit} {n} is lower "
                f"than current WarmThroughput {unit} {current[i]}: warm throughput cannot be "
                "decreased"
            )
        out[i] = n
    return out[0], out[1]


_MEMBERS = ("TableClass", "WarmThroughput", "DeletionProtectionEnabled")


def _protected(value: Any) -> bool:
    if not isinstance(value, bool):
        raise validation(f"Invalid DeletionProtectionEnabled: {shown(value)}")
    return value


def created_extras(body: Body) -> Extras | None:
    """CreateTable's ``TableClass``, ``WarmThroughput`` and ``DeletionProtectionEnabled``,
    checked (None: none given)."""
    if all(body.get(m) is None for m in _MEMBERS):
        return None
    extras = Extras()
    if body.get("TableClass") is not None:
        extras = replace(extras, table_class=_table_class(body["TableClass"]))
    if body.get("WarmThroughput") is not None:
        extras = replace(extras, warm=_warm(body["WarmThroughput"], extras.warm, created=True))
    if body.get("DeletionProtectionEnabled") is not None:
        extras = replace(extras, protected=_protected(body["DeletionProtectionEnabled"]))
    return extras


def updated_extras(body: Body, current: Extras) -> Extras | None:
    """UpdateTable's ``TableClass``, ``WarmThroughput`` and ``DeletionProtectionEnabled``
    applied to ``current``, checked (None: none given). A changed class records when
    (``LastUpdateDateTime``)."""
    if all(body.get(m) is None for m in _MEMBERS):
        return None
    extras = current
    if body.get("TableClass") is not None:
        wanted = _table_class(body["TableClass"])
        if wanted != (current.table_class or "STANDARD"):
            extras = replace(extras, class_updated=time.time())
        extras = replace(extras, table_class=wanted)
    if body.get("WarmThroughput") is not None:
        extras = replace(extras, warm=_warm(body["WarmThroughput"], current.warm, created=False))
    if body.get("DeletionProtectionEnabled") is not None:
        extras = replace(extras, protected=_protected(body["DeletionProtectionEnabled"]))
    return extras


def describe_extras(extras: Extras) -> Body:
    """The members of a table description these settings give."""
    out: Body = {
        "DeletionProtectionEnabled": extras.protected,
        "WarmThroughput": {
            "ReadUnitsPerSecond": extras.warm[0],
            "WriteUnitsPerSecond": extras.warm[1],
            "Status": "ACTIVE",
        },
    }
    if extras.table_class is not None:
        summary: Body = {"TableClass": extras.table_class}
        if extras.class_updated is not None:
            summary["LastUpdateDateTime"] = extras.class_updated
        out["TableClassSummary"] = summary
    return out


async def check_deletable(store: Store, spec: TableSpec) -> None:
    """DeleteTable of a table with deletion protection on: DynamoDB's ValidationException."""
    if (await load_extras(store, spec)).protected:
        raise validation(
            "Resource cannot be deleted as it is currently protected against deletion. "
            "Disable deletion protection first."
        )
