"""What DynamoDB's JSON 1.0 operations share: request member checks, the legacy
parameters, capacity figures, and the service's base (its store, log, region, ARNs).

Requests are validated the way DynamoDB validates them; anything wrong raises
:class:`DynamoError` (a 400 with DynamoDB's ``__type``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from streamkit.records._values import item_to_dynamodb_json, type_of
from streamkit.server._auth import REQUEST_REGION
from streamkit.server._convert import (
    check_name,
    from_dynamodb_json,
    item_from_dynamodb_json,
    json_type,
    parameter_type,
    shown,
)
from streamkit.server._errors import INVALID, validation
from streamkit.server._shapes import wrong_type
from streamkit.server._stream_history import spec_label
from streamkit.storage._capacity import ConsumedCapacity
from streamkit.storage._keys import order_bytes
from streamkit.storage._spec import check_table_name, table_name_problems
from streamkit.storage._store import Store
from streamkit.storage._table import Table

if TYPE_CHECKING:
    from streamkit.log import ChangeLog
    from streamkit.storage._spec import TableSpec

Body = dict[str, Any]

_TYPES = {"S", "N", "B"}
_DEFAULT_REGION = "us-east-1"  # for a request that is not signed (no region given either)
_RETURN_VALUES = {"NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"}


def _need(
    body: Body, name: str, kind: type | tuple[type, ...] = str, *, java: str | None = None
) -> Any:
    """Member ``name`` of ``body``, of Python type ``kind``; ``java``: its Java type when
    it is a map DynamoDB's words need (see :func:`wrong_type`)."""
    if body.get(name) is None:  # DynamoDB reads a JSON null as a missing member
        raise validation(
            f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' "
            "failed to satisfy constraint: Member must not be null"
        )
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        wrong = wrong_type(name, kind, value, java)
        if wrong is not None:
            raise wrong
        raise validation(
            f"{INVALID}Invalid type for parameter {name}, expected type: "
            f"{parameter_type(kind)}, got: {json_type(value)}"
        )
    return value


def _constraints(value: Any, member: str, rules: list[str]) -> None:
    """DynamoDB's request-shape error (``N validation error(s) detected: ...``) when a
    member breaks ``rules`` (its constraint words); nothing when ``rules`` is empty."""
    if not rules:
        return
    shown_value = "null" if value is None else f"'{value}'"
    errors = "; ".join(
        f"Value {shown_value} at '{member}' failed to satisfy constraint: {r}" for r in rules
    )
    count = f"{len(rules)} validation error{'s' if len(rules) > 1 else ''}"
    raise validation(f"{count} detected: {errors}")


def _table_name(body: Body, name: str = "TableName") -> str:
    """A request's table name, checked as DynamoDB checks it (before looking it up)."""
    value = _need(body, name)
    _constraints(value, name[0].lower() + name[1:], table_name_problems(value))
    return str(value)


def _opt(body: Body, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if name not in body or body[name] is None:
        return default
    return _need(body, name, kind)


_EXPRESSIONS = (  # in the order DynamoDB lists them in its messages
    "UpdateExpression",
    "ConditionExpression",
    "ProjectionExpression",
    "FilterExpression",
    "KeyConditionExpression",
)


def _only_with_expressions(body: Body, member: str) -> None:
    """DynamoDB refuses placeholders in a request that has no expression at all (one with
    only legacy parameters, or none)."""
    if not any(k in body for k in _EXPRESSIONS):
        raise validation(f"{member} can only be specified when using expressions")


def _values(body: Body) -> dict[str, Any] | None:
    raw = _opt(body, "ExpressionAttributeValues", dict)
    if raw is None:
        return None
    if not raw:
        raise validation("ExpressionAttributeValues must not be empty")
    _only_with_expressions(body, "ExpressionAttributeValues")
    return {k: from_dynamodb_json(v, k) for k, v in raw.items()}


def _names(body: Body) -> dict[str, str] | None:
    raw = _opt(body, "ExpressionAttributeNames", dict)
    if raw is None:
        return None
    if not raw:
        raise validation("ExpressionAttributeNames must not be empty")
    _only_with_expressions(body, "ExpressionAttributeNames")
    for k, v in raw.items():
        if not isinstance(v, str):
            raise wrong_type(k, str, v) or validation(
                f"ExpressionAttributeNames value for {k} must be a string"
            )
        check_name(v)
    return dict(raw)


def _key(body: Body, name: str = "Key") -> dict[str, Any]:
    return item_from_dynamodb_json(_need(body, name, dict))


class _Legacy:
    """Expected / KeyConditions / QueryFilter / ScanFilter / AttributesToGet /
    AttributeUpdates, rewritten as expressions with generated placeholders."""

    _OPS: ClassVar[dict[str, str]] = {
        "EQ": "=",
        "NE": "<>",
        "LE": "<=",
        "LT": "<",
        "GE": ">=",
        "GT": ">",
    }

    def __init__(self, names: dict[str, str] | None, values: dict[str, Any] | None) -> None:
        self.names = dict(names or {})
        self.values = dict(values or {})
        self._n = 0

    def name(self, attr: str) -> str:
        self._n += 1
        ref = f"#legacy{self._n}"
        self.names[ref] = check_name(attr) if isinstance(attr, str) else attr
        return ref

    def value(self, av: Any) -> str:
        self._n += 1
        ref = f":legacy{self._n}"
        self.values[ref] = from_dynamodb_json(av, ref)
        return ref

    def conditions(
        self, spec: Mapping[str, Any], joiner: str = "AND", member: str = "expected"
    ) -> str:
        """``member``: the request member's name as DynamoDB spells it in its messages
        (``expected``, ``keyConditions``, ``queryFilter``, ``scanFilter``)."""
        parts = []
        for attr, cond in spec.items():
            if not isinstance(cond, dict):
                raise validation(f"condition for {attr} must be an object")
            op = cond.get("ComparisonOperator")
            if op is not None and op not in COMPARISON_OPERATORS:
                raise validation(
                    f"1 validation error detected: Value '{shown(op)}' at "
                    f"'{member}.{attr}.member.comparisonOperator' failed to satisfy "
                    "constraint: Member must satisfy enum value set: "
                    f"[{', '.join(COMPARISON_OPERATORS)}]"
                )
            parts.append(self._one(attr, cond))
        return f" {joiner} ".join(parts)

    def _one(self, attr: str, cond: Mapping[str, Any]) -> str:
        n = self.name(attr)
        if "ComparisonOperator" not in cond:  # Expected's Exists / Value form
            exists = cond.get("Exists", True)
            if "Value" in cond:
                if exists is False:
                    raise validation(
                        "One or more parameter values were invalid: Value cannot be used "
                        "when Exists is false"
                    )
                return f"{n} = {self.value(cond['Value'])}"
            if exists is False:
                return f"attribute_not_exists({n})"
            raise validation(
                "One or more parameter values were invalid: Value must be provided when "
                "Exists is true"
            )
        op = cond["ComparisonOperator"]
        if "Value" in cond or "Exists" in cond:
            raise validation(
                "One or more parameter values were invalid: Exists and Value cannot be used "
                "together with ComparisonOperator"
            )
        args = cond.get("AttributeValueList", [])
        if not isinstance(args, list):
            raise validation("AttributeValueList must be a list")
        refs = [self.value(a) for a in args]
        want = {"NULL": 0, "NOT_NULL": 0, "BETWEEN": 2, "IN": None}.get(op, 1)
        if len(refs) != want if want is not None else not refs:
            raise validation(
                f"One or more parameter values were invalid: Invalid number of argument(s) "
                f"for the {shown(op)} ComparisonOperator"
            )
        self._check_types(op, [self.values[r] for r in refs])
        if op in self._OPS:
            return f"{n} {self._OPS[op]} {refs[0]}"
        if op == "BEGINS_WITH":
            return f"begins_with({n}, {refs[0]})"
        if op == "CONTAINS":
            return f"contains({n}, {refs[0]})"
        if op == "NOT_CONTAINS":  # DynamoDB: false for a missing attribute (as CONTAINS)
            return f"(attribute_exists({n}) AND NOT contains({n}, {refs[0]}))"
        if op == "BETWEEN":
            return f"{n} BETWEEN {refs[0]} AND {refs[1]}"
        if op == "IN":
            return f"{n} IN ({', '.join(refs)})"
        if op == "NULL":
            return f"attribute_not_exists({n})"
        if op == "NOT_NULL":
            return f"attribute_exists({n})"
        raise AssertionError(op)  # pragma: no cover - conditions() checked the operator

    # the types each legacy operator takes (EQ and NE take any)
    _SCALARS: ClassVar[dict[str, tuple[str, ...]]] = {
        "LT": ("S", "N", "B"),
        "LE": ("S", "N", "B"),
        "GT": ("S", "N", "B"),
        "GE": ("S", "N", "B"),
        "BETWEEN": ("S", "N", "B"),
        "IN": ("S", "N", "B"),
        "CONTAINS": ("S", "N", "B"),
        "NOT_CONTAINS": ("S", "N", "B"),
        "BEGINS_WITH": ("S", "B"),
    }

    def _check_types(self, op: str, args: list[Any]) -> None:
        """A legacy operator's values, checked before the rewrite, in DynamoDB's words."""
        allowed = self._SCALARS.get(op)
        if allowed is None:
            return
        types = [type_of(v) for v in args]
        for t in types:
            if t not in allowed:
                raise validation(
                    f"One or more parameter values were invalid: ComparisonOperator {op} is "
                    f"not valid for {t} AttributeValue type"
                )
        if len(set(types)) > 1:
            raise validation(
                "One or more parameter values were invalid: AttributeValues inside "
                "AttributeValueList must be of same type"
            )
        if op == "BETWEEN" and order_bytes(args[0]) > order_bytes(args[1]):
            raise validation(
                "The BETWEEN condition was provided a range where the lower bound is greater "
                "than the upper bound"
            )

    def projection(self, attrs: list[Any]) -> str:
        if not attrs or not all(isinstance(a, str) for a in attrs):
            raise validation("AttributesToGet must be a non-empty list of names")
        seen: set[str] = set()
        for a in attrs:
            if a in seen:
                raise validation(f"{INVALID}Duplicate value in attribute name: {a}")
            seen.add(a)
        return ", ".join(self.name(a) for a in attrs)

    def updates(self, spec: Mapping[str, Any]) -> str:
        sets, removes, adds, deletes = [], [], [], []
        for attr, upd in spec.items():
            if not isinstance(upd, dict):
                raise validation(f"AttributeUpdates for {attr} must be an object")
            action = upd.get("Action", "PUT")
            if action not in ("PUT", "DELETE", "ADD"):
                raise validation(
                    f"1 validation error detected: Value '{shown(action)}' at "
                    f"'attributeUpdates.{attr}.member.action' failed to satisfy constraint: "
                    "Member must satisfy enum value set: [ADD, PUT, DELETE]"
                )
            value = upd.get("Value")
            if value is None and action != "DELETE":
                raise validation(
                    f"{INVALID}Only DELETE action is allowed when no attribute value is specified"
                )
            tag = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
            n = self.name(attr)
            if action == "PUT":
                sets.append(f"{n} = {self.value(value)}")
            elif value is None:
                removes.append(n)
            elif action == "DELETE":
                if tag not in (None, "SS", "NS", "BS"):
                    raise validation(
                        f"{INVALID}DELETE action with value is not supported for the type {tag}"
                    )
                deletes.append(f"{n} {self.value(value)}")
            elif tag == "L":  # DynamoDB appends a list (as if to an empty one when missing)
                empty = self.value({"L": []})
                sets.append(f"{n} = list_append(if_not_exists({n}, {empty}), {self.value(value)})")
            else:
                if tag not in (None, "N", "SS", "NS", "BS"):
                    raise validation(f"{INVALID}ADD action is not supported for the type {tag}")
                adds.append(f"{n} {self.value(value)}")
        clauses = []
        for word, parts in (("SET", sets), ("REMOVE", removes), ("ADD", adds), ("DELETE", deletes)):
            if parts:
                clauses.append(f"{word} {', '.join(parts)}")
        return " ".join(clauses)


# DynamoDB lists them in this order in its messages
COMPARISON_OPERATORS = (
    "IN",
    "NULL",
    "BETWEEN",
    "LT",
    "NOT_CONTAINS",
    "EQ",
    "GT",
    "NOT_NULL",
    "NE",
    "LE",
    "BEGINS_WITH",
    "GE",
    "CONTAINS",
)

_NON_EXPRESSIONS = (  # likewise
    "AttributesToGet",
    "AttributeUpdates",
    "Expected",
    "QueryFilter",
    "ScanFilter",
    "ConditionalOperator",
    "KeyConditions",
)


def _no_mixing(body: Body) -> None:
    """DynamoDB refuses any expression parameter together with any legacy one, except
    ``KeyConditions`` without a ``KeyConditionExpression`` (a Query may filter and
    project with expressions then)."""
    old = [k for k in _NON_EXPRESSIONS if k in body]
    new = [k for k in _EXPRESSIONS if k in body]
    if "KeyConditions" in old and "KeyConditionExpression" not in body:
        old.remove("KeyConditions")
    if old and new:
        raise validation(
            "Can not use both expression and non-expression parameters in the same request: "
            f"Non-expression parameters: {{{', '.join(old)}}} Expression parameters: "
            f"{{{', '.join(new)}}}"
        )


def _combine(
    body: Body, expr_field: str, legacy_field: str, legacy: _Legacy, *, joiner: str = "AND"
) -> str | None:
    _no_mixing(body)
    expr = _opt(body, expr_field, str)
    old = _opt(body, legacy_field, dict)
    if expr is not None and old is not None:
        raise validation(
            f"Can not use both expression and non-expression parameters in the same request: "
            f"Non-expression parameters: {{{legacy_field}}} Expression parameters: "
            f"{{{expr_field}}}"
        )
    op = _opt(body, "ConditionalOperator", str, joiner)
    if op not in ("AND", "OR"):
        raise validation(
            f"1 validation error detected: Value '{shown(op)}' at 'conditionalOperator' failed "
            "to satisfy constraint: Member must satisfy enum value set: [OR, AND]"
        )
    if "ConditionalOperator" in body and body["ConditionalOperator"] is not None:
        # as DynamoDB: the operator joins two or more legacy conditions, nothing else
        if old is None:
            raise validation("ConditionalOperator cannot be used without Filter or Expected")
        if len(old) < 2:
            raise validation(
                "ConditionalOperator can only be used when Filter or Expected has two or more "
                "elements"
            )
    if old is not None:
        if not old:
            return None
        member = legacy_field[0].lower() + legacy_field[1:]
        return legacy.conditions(old, op, member)
    return None if expr is None else str(expr)


def _check_segments(segment: int, total: int) -> None:
    """A parallel scan's ``Segment`` / ``TotalSegments``, in DynamoDB's words."""
    if not 1 <= total <= 1_000_000:
        bound = "less than or equal to 1000000" if total > 1 else "greater than or equal to 1"
        raise validation(
            f"1 validation error detected: Value '{total}' at 'totalSegments' failed to "
            f"satisfy constraint: Member must have value {bound}"
        )
    if segment < 0:
        raise validation(
            f"1 validation error detected: Value '{segment}' at 'segment' failed to satisfy "
            "constraint: Member must have value greater than or equal to 0"
        )
    if segment >= total:
        raise validation(
            "The Segment parameter is zero-based and must be less than parameter "
            f"TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
        )


def _capacity_problem(body: Body) -> str | None:
    """A bad ``ReturnConsumedCapacity``, in DynamoDB's constraint words (None: good)."""
    mode = body.get("ReturnConsumedCapacity", "NONE")
    if mode in ("NONE", "TOTAL", "INDEXES"):
        return None
    return (
        f"Value '{shown(mode)}' at 'returnConsumedCapacity' failed to satisfy constraint: "
        "Member must satisfy enum value set: [INDEXES, TOTAL, NONE]"
    )


def _capacity_problem_refused(body: Body) -> None:
    """Refuse a bad ``ReturnConsumedCapacity`` before the call changes anything."""
    problem = _capacity_problem(body)
    if problem is not None:
        raise validation(f"1 validation error detected: {problem}")


def _collection_problem(body: Body) -> str | None:
    """A bad ``ReturnItemCollectionMetrics``, in DynamoDB's constraint words."""
    mode = body.get("ReturnItemCollectionMetrics", "NONE")
    if mode in ("NONE", "SIZE"):
        return None
    return (
        f"Value '{shown(mode)}' at 'returnItemCollectionMetrics' failed to satisfy "
        "constraint: Member must satisfy enum value set: [SIZE, NONE]"
    )


def _capacity(
    body: Body,
    table: str,
    units: float,
    *,
    read: bool,
    used: ConsumedCapacity | None = None,
    spec: TableSpec | None = None,
    index: str | None = None,
) -> dict[str, Any]:
    """``ConsumedCapacity`` as DynamoDB returns it. With ``used`` (a meter around the
    call) the units are what the call consumed, its indexes' included; ``index``: a
    read of that index (its units are the index's, not the table's)."""
    _capacity_problem_refused(body)
    mode = body.get("ReturnConsumedCapacity", "NONE")
    if mode == "NONE":
        return {}
    per_index: dict[str, float] = {}
    if used is not None:
        r, w = used.by_table.get(table, (0.0, 0.0))
        units = r + w
        per_index = {ix: rr + ww for (t, ix), (rr, ww) in used.by_index.items() if t == table}
    if index is not None:
        per_index[index] = per_index.get(index, 0.0) + units
    cap: dict[str, Any] = {"TableName": table, "CapacityUnits": units}
    cap["ReadCapacityUnits" if read else "WriteCapacityUnits"] = units
    if mode == "INDEXES":
        cap["Table"] = {"CapacityUnits": units - sum(per_index.values())}
        kinds = {} if spec is None else {ix.name: ix.kind for ix in spec.indexes}
        for name, u in per_index.items():
            member = (
                "LocalSecondaryIndexes"
                if kinds.get(name) == "LOCAL"
                else ("GlobalSecondaryIndexes")
            )
            cap.setdefault(member, {})[name] = {"CapacityUnits": u}
    return {"ConsumedCapacity": cap}


_BATCH_GET_BYTES = 16 * 1024 * 1024  # what one BatchGetItem returns at most (DynamoDB)
_BOTH_PROJECTIONS = (
    "Can not use both expression and non-expression parameters in the same request: "
    "Non-expression parameters: {AttributesToGet} Expression parameters: "
    "{ProjectionExpression}"
)


_KEY_TYPES = {"S": str, "N": Decimal, "B": bytes}


def _key_types(spec: TableSpec, key: Any) -> None:
    """A key argument (not an item) whose key attribute has another type: DynamoDB says
    it does not match the schema (an item's gets ``Type mismatch for key``)."""
    if not isinstance(key, dict):
        return
    for attr in (spec.key.partition, spec.key.sort):
        if attr is None or attr.name not in key:
            continue
        if type(key[attr.name]) is not _KEY_TYPES[attr.type]:
            raise validation("The provided key element does not match the schema")


def _no_duplicates(spec: TableSpec, items: list[Any]) -> None:
    """DynamoDB refuses a batch naming one item twice (BatchGetItem, BatchWriteItem)."""
    seen: set[tuple[bytes, bytes]] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        try:
            k = spec.key.extract(item)
        except (ValueError, KeyError, TypeError):
            continue  # a bad key: refused by the operation itself, in its own words
        if k in seen:
            raise validation("Provided list of item keys contains duplicates")
        seen.add(k)


def _collection_mode(body: Body) -> bool:
    """Whether the request asks for ``ItemCollectionMetrics`` (refuses a bad value)."""
    problem = _collection_problem(body)
    if problem is not None:
        raise validation(f"1 validation error detected: {problem}")
    return bool(body.get("ReturnItemCollectionMetrics", "NONE") == "SIZE")


def _collection_metric(key: dict[str, Any], size: int) -> Body:
    low = float(size // 2**30)
    return {
        "ItemCollectionKey": item_to_dynamodb_json(key),
        "SizeEstimateRangeGB": [low, low + 1.0],
    }


def _collection_metrics(body: Body, used: ConsumedCapacity, table: str | None = None) -> Body:
    """``ItemCollectionMetrics`` of the item collections the writes in ``used`` changed
    (only tables with local indexes have them): of one write (``table``), or per table
    (BatchWriteItem, TransactWriteItems)."""
    if not _collection_mode(body):
        return {}
    if table is not None:
        for (name, _), (key, size) in used.collections.items():
            if name == table:
                return {"ItemCollectionMetrics": _collection_metric(key, size)}
        return {}
    per_table: dict[str, list[Body]] = {}
    for (name, _), (key, size) in used.collections.items():
        per_table.setdefault(name, []).append(_collection_metric(key, size))
    return {"ItemCollectionMetrics": per_table} if per_table else {}


def _capacities(
    body: Body, tables: list[str], used: ConsumedCapacity, *, read: bool, store: Store
) -> Body:
    """``ConsumedCapacity`` of a call over several tables: one entry per table, in the
    order the request names them (BatchGetItem, BatchWriteItem, the transactions)."""
    out = []
    for name in dict.fromkeys(tables):
        cap = _capacity(body, name, 0.0, read=read, used=used, spec=store.known(name))
        if cap:
            out.append(cap["ConsumedCapacity"])
    return {"ConsumedCapacity": out} if out else {}


class ServiceBase:
    """The store, the change log and the names the operations share (see ``Service``)."""

    def __init__(
        self,
        store: Store,
        log: ChangeLog,
        *,
        namespace: str,
        partitions: int = 8,
        region: str | None = None,
        account: str = "000000000000",
        home_region: str | None = None,
        log_url: str = "",
        peers: Mapping[str, str] | None = None,
    ):
        self.store = store
        self.log = log
        self.namespace = namespace
        self.partitions = partitions
        self.configured_region = region
        self.account = account
        # global tables (UpdateTable ReplicaUpdates): this App's region (None: it has
        # none), its change log's URL, and the other regions' logs by region
        self.home_region = home_region
        self.log_url = log_url
        self.peers = dict(peers or {})
        self._backfills: set[asyncio.Task[Any]] = set()
        # tables this process is still filling (ImportTable): name -> import id. Such a
        # table is CREATING and cannot be deleted, as DynamoDB's
        self.creating: dict[str, str] = {}

    # --- helpers ---------------------------------------------------------------------------
    @property
    def region(self) -> str:
        """The region ARNs and records name: the configured one, else the one the request
        was signed for (as DynamoDB, which serves the region it is called in)."""
        return self.configured_region or REQUEST_REGION.get() or _DEFAULT_REGION

    def arn(self, table: str) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{table}"

    def stream_label(self, spec: TableSpec) -> str:
        return spec_label(spec)

    def stream_arn(self, spec: TableSpec, label: str | None = None) -> str:
        return f"{self.arn(spec.name)}/stream/{label or self.stream_label(spec)}"

    async def _spec(self, body: Body) -> TableSpec:
        return await self.store.spec(_table_name(body))

    def _table(self, name: str) -> Table:
        return Table(self.store, check_table_name(name))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
