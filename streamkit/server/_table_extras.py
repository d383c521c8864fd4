"""A table's settings that only the DynamoDB endpoint knows: its table class and warm
throughput. Streamkit stores and shows them as DynamoDB does (they change no behaviour:
there is one storage class, and every table is as warm as the machine), kept in the
store's settings under ``dynamodb.extras/<table>/<table id>`` so they go with the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamkit.server._convert import shown
from streamkit.server._errors import validation

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = (
    "Extras",
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


def _key(spec: TableSpec) -> str:
    return f"dynamodb.extras/{spec.name}/{spec.table_id}"


async def load_extras(store: Store, spec: TableSpec) -> Extras:
    raw = (await store.read_meta((_key(spec),))).get(_key(spec))
    if not raw:
        return Extras()
    d = json.loads(raw)
    read, write = d["warm"]
    return Extras(d.get("class"), d.get("class_updated"), (int(read), int(write)))


async def save_extras(store: Store, spec: TableSpec, extras: Extras) -> None:
    value = {"class": extras.table_class, "class_updated": extras.class_updated}
    await store.write_meta({_key(spec): json.dumps({**value, "warm": list(extras.warm)})})


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


def created_extras(body: Body) -> Extras | None:
    """CreateTable's ``TableClass`` and ``WarmThroughput``, checked (None: neither given)."""
    if body.get("TableClass") is None and body.get("WarmThroughput") is None:
        return None
    extras = Extras()
    if body.get("TableClass") is not None:
        extras = Extras(_table_class(body["TableClass"]), None, extras.warm)
    if body.get("WarmThroughput") is not None:
        warm = _warm(body["WarmThroughput"], extras.warm, created=True)
        extras = Extras(extras.table_class, None, warm)
    return extras


def updated_extras(body: Body, current: Extras) -> Extras | None:
    """UpdateTable's ``TableClass`` and ``WarmThroughput`` applied to ``current``, checked
    (None: neither given). A changed class records when (``LastUpdateDateTime``)."""
    if body.get("TableClass") is None and body.get("WarmThroughput") is None:
        return None
    table_class, updated, warm = current.table_class, current.class_updated, current.warm
    if body.get("TableClass") is not None:
        wanted = _table_class(body["TableClass"])
        if wanted != (table_class or "STANDARD"):
            updated = time.time()
        table_class = wanted
    if body.get("WarmThroughput") is not None:
        warm = _warm(body["WarmThroughput"], warm, created=False)
    return Extras(table_class, updated, warm)


def describe_extras(extras: Extras) -> Body:
    """The members of a table description these settings give."""
    out: Body = {
        "WarmThroughput": {
            "ReadUnitsPerSecond": extras.warm[0],
            "WriteUnitsPerSecond": extras.warm[1],
            "Status": "ACTIVE",
        }
    }
    if extras.table_class is not None:
        summary: Body = {"TableClass": extras.table_class}
        if extras.class_updated is not None:
            summary["LastUpdateDateTime"] = extras.class_updated
        out["TableClassSummary"] = summary
    return out
