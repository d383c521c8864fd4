"""DynamoDB's JSON 1.0 operations on a streamkit App.

Each operation takes the decoded request body (a dict) and returns the response body.
Requests are validated the way DynamoDB validates them; anything wrong raises
:class:`DynamoError` (a 400 with DynamoDB's ``__type``), streamkit's own errors are
mapped by :func:`from_streamkit`.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from streamkit.capture._tables import check_stream_change, create_table
from streamkit.history import _backups
from streamkit.history._archive import restore_to_time
from streamkit.records import StreamView
from streamkit.records._values import item_size, item_to_dynamodb_json
from streamkit.server._auth import REQUEST_REGION
from streamkit.server._convert import (
    from_dynamodb_json,
    item_from_dynamodb_json,
    json_type,
    parameter_type,
    shown,
    timestamp,
)
from streamkit.server._errors import INVALID, DynamoError, validation
from streamkit.server._indexes import (
    attribute_definitions,
    describe_indexes,
    index_key_names,
    parse_global,
    parse_key_schema,
    parse_local,
)
from streamkit.server._stream_history import disable_stream, enable_stream, spec_label
from streamkit.server._tags import MAX_TAGS, check_tags
from streamkit.storage._capacity import ConsumedCapacity, OnDemand, Provisioned, measure
from streamkit.storage._index_admin import add_index, backfill, drop_index
from streamkit.storage._spec import check_table_name
from streamkit.storage._store import Store
from streamkit.storage._table import Table
from streamkit.storage._transaction import Transaction

if TYPE_CHECKING:
    from streamkit.log import ChangeLog
    from streamkit.storage._spec import TableSpec

__all__ = ("OPERATIONS", "Service")

Body = dict[str, Any]

_TYPES = {"S", "N", "B"}
_DEFAULT_REGION = "us-east-1"  # for a request that is not signed (no region given either)
_RETURN_VALUES = {"NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"}


def _need(body: Body, name: str, kind: type | tuple[type, ...] = str) -> Any:
    if name not in body:
        raise validation(
            f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' "
            "failed to satisfy constraint: Member must not be null"
        )
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise validation(
            f"{INVALID}Invalid type for parameter {name}, expected type: "
            f"{parameter_type(kind)}, got: {json_type(value)}"
        )
    return value


def _opt(body: Body, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if name not in body or body[name] is None:
        return default
    return _need(body, name, kind)


_EXPRESSIONS = (
    "ConditionExpression",
    "UpdateExpression",
    "ProjectionExpression",
    "KeyConditionExpression",
    "FilterExpression",
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
            raise validation(f"ExpressionAttributeNames value for {k} must be a string")
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
        self.names[ref] = attr
        return ref

    def value(self, av: Any) -> str:
        self._n += 1
        ref = f":legacy{self._n}"
        self.values[ref] = from_dynamodb_json(av, ref)
        return ref

    def conditions(self, spec: Mapping[str, Any], joiner: str = "AND") -> str:
        parts = []
        for attr, cond in spec.items():
            if not isinstance(cond, dict):
                raise validation(f"condition for {attr} must be an object")
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
        args = cond.get("AttributeValueList", [])
        if not isinstance(args, list):
            raise validation("AttributeValueList must be a list")
        refs = [self.value(a) for a in args]
        want = {"NULL": 0, "NOT_NULL": 0, "BETWEEN": 2, "IN": None}.get(op, 1)
        if want is not None and len(refs) != want:
            raise validation(
                f"One or more parameter values were invalid: Invalid number of argument(s) "
                f"for the {shown(op)} ComparisonOperator"
            )
        if op in self._OPS:
            return f"{n} {self._OPS[op]} {refs[0]}"
        if op == "BEGINS_WITH":
            return f"begins_with({n}, {refs[0]})"
        if op == "CONTAINS":
            return f"contains({n}, {refs[0]})"
        if op == "NOT_CONTAINS":
            return f"NOT contains({n}, {refs[0]})"
        if op == "BETWEEN":
            return f"{n} BETWEEN {refs[0]} AND {refs[1]}"
        if op == "IN":
            if not refs:
                raise validation("IN needs at least one value")
            return f"{n} IN ({', '.join(refs)})"
        if op == "NULL":
            return f"attribute_not_exists({n})"
        if op == "NOT_NULL":
            return f"attribute_exists({n})"
        raise validation(f"Unsupported ComparisonOperator: {shown(op)}")

    def projection(self, attrs: list[Any]) -> str:
        if not attrs or not all(isinstance(a, str) for a in attrs):
            raise validation("AttributesToGet must be a non-empty list of names")
        return ", ".join(self.name(a) for a in attrs)

    def updates(self, spec: Mapping[str, Any]) -> str:
        sets, removes, adds, deletes = [], [], [], []
        for attr, upd in spec.items():
            if not isinstance(upd, dict):
                raise validation(f"AttributeUpdates for {attr} must be an object")
            action = upd.get("Action", "PUT")
            n = self.name(attr)
            if action == "PUT":
                sets.append(f"{n} = {self.value(upd['Value'])}")
            elif action == "DELETE":
                if "Value" in upd:
                    deletes.append(f"{n} {self.value(upd['Value'])}")
                else:
                    removes.append(n)
            elif action == "ADD":
                adds.append(f"{n} {self.value(upd['Value'])}")
            else:
                raise validation(f"Unknown AttributeUpdates action {shown(action)}")
        clauses = []
        for word, parts in (("SET", sets), ("REMOVE", removes), ("ADD", adds), ("DELETE", deletes)):
            if parts:
                clauses.append(f"{word} {', '.join(parts)}")
        return " ".join(clauses)


def _combine(
    body: Body, expr_field: str, legacy_field: str, legacy: _Legacy, *, joiner: str = "AND"
) -> str | None:
    expr = _opt(body, expr_field, str)
    old = _opt(body, legacy_field, dict)
    if expr is not None and old is not None:
        raise validation(
            f"Can not use both expression and non-expression parameters in the same request: "
            f"Non-expression parameters: {{{legacy_field}}} Expression parameters: "
            f"{{{expr_field}}}"
        )
    if old is not None:
        if not old:
            return None
        op = _opt(body, "ConditionalOperator", str, joiner)
        if op not in ("AND", "OR"):
            raise validation("ConditionalOperator must be AND or OR")
        return legacy.conditions(old, op)
    return None if expr is None else str(expr)


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
    mode = body.get("ReturnConsumedCapacity", "NONE")
    if mode not in ("NONE", "TOTAL", "INDEXES"):
        raise validation(f"Invalid ReturnConsumedCapacity: {shown(mode)}")
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
    mode = body.get("ReturnItemCollectionMetrics", "NONE")
    if mode not in ("NONE", "SIZE"):
        raise validation(
            f"1 validation error detected: Value '{shown(mode)}' at "
            "'returnItemCollectionMetrics' failed to satisfy constraint: Member must satisfy "
            "enum value set: [SIZE, NONE]"
        )
    return bool(mode == "SIZE")


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


class Service:
    """The operations, bound to a store and a change log (not to an ``App``: the App
    wires them and runs the background work; see ``_asgi.service_for``).

    Args:
        store: the table store.
        log: the change log the store's tables are captured into (the Streams API).
        namespace: the topic prefix (table and topic names are checked against it).
        partitions: the partitions of a table topic not created yet.
    """

    def __init__(
        self,
        store: Store,
        log: ChangeLog,
        *,
        namespace: str,
        partitions: int = 8,
        region: str | None = None,
        account: str = "000000000000",
    ):
        self.store = store
        self.log = log
        self.namespace = namespace
        self.partitions = partitions
        self.configured_region = region
        self.account = account
        self._backfills: set[asyncio.Task[Any]] = set()

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
        name = _need(body, "TableName")
        return await self.store.spec(name)

    def _table(self, name: str) -> Table:
        return Table(self.store, check_table_name(name))

    async def describe(self, spec: TableSpec) -> dict[str, Any]:
        key = spec.key
        schema = [{"AttributeName": key.partition.name, "KeyType": "HASH"}]
        if key.sort is not None:
            schema.append({"AttributeName": key.sort.name, "KeyType": "RANGE"})
        defs = attribute_definitions(spec)
        cap = spec.capacity
        provisioned = isinstance(cap, Provisioned)
        count, size = await self._counts(spec)
        out: dict[str, Any] = {
            "TableName": spec.name,
            "TableStatus": "ACTIVE",
            "KeySchema": schema,
            "AttributeDefinitions": defs,
            "CreationDateTime": spec.created_at.timestamp() if spec.created_at else time.time(),
            "ItemCount": count,
            "TableSizeBytes": size,
            "TableArn": self.arn(spec.name),
            "TableId": str(uuid.UUID(int=spec.table_id)),
            "BillingModeSummary": {
                "BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST"
            },
            "ProvisionedThroughput": {
                "ReadCapacityUnits": cap.read if isinstance(cap, Provisioned) else 0,
                "WriteCapacityUnits": cap.write if isinstance(cap, Provisioned) else 0,
                "NumberOfDecreasesToday": await self._decreases_today(spec),
            },
            "DeletionProtectionEnabled": False,
        }
        out.update(
            await describe_indexes(spec, self.arn(spec.name), self.store.engine.table_stats,
                                   provisioned)
        )  # fmt: skip
        if spec.stream is not None:
            out["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": spec.stream.value,
            }
        if spec.stream is not None or spec.stream_label is not None:
            # as DynamoDB: the latest stream's ARN stays after the stream is turned off
            out["LatestStreamLabel"] = self.stream_label(spec)
            out["LatestStreamArn"] = self.stream_arn(spec)
        return out

    def _decreases_key(self, spec: TableSpec) -> str:
        return f"dynamodb.decreases/{spec.name}/{spec.table_id}"

    async def _decreases_today(self, spec: TableSpec) -> int:
        """How many times the table's provisioned throughput was decreased today (UTC)."""
        key = self._decreases_key(spec)
        day, _, count = (await self.store.read_meta((key,))).get(key, "").partition(":")
        return int(count) if day == time.strftime("%Y-%m-%d", time.gmtime()) else 0

    async def _count_decrease(self, spec: TableSpec) -> None:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        count = await self._decreases_today(spec) + 1
        await self.store.write_meta({self._decreases_key(spec): f"{today}:{count}"})

    async def save_spec(self, spec: TableSpec) -> None:
        """Store a table's changed settings (the operations of other modules use it)."""
        await self._save(spec)

    async def _save(self, spec: TableSpec) -> None:
        """Store a table's changed settings (and tell this process's catalog)."""
        store = self.store
        store.remember(await store.engine.update_table(spec))

    async def _counts(self, spec: TableSpec) -> tuple[int, int]:
        return await self.store.engine.table_stats(spec.table_id)

    # --- tables ---------------------------------------------------------------------------
    async def CreateTable(self, body: Body) -> Body:
        name = _need(body, "TableName")
        schema = _need(body, "KeySchema", list)
        defs = _need(body, "AttributeDefinitions", list)
        types: dict[str, str] = {}
        for d in defs:
            if not isinstance(d, dict):
                raise validation("AttributeDefinitions members must be objects")
            attr, t = d.get("AttributeName"), d.get("AttributeType")
            if not isinstance(attr, str) or t not in _TYPES:
                raise validation(
                    "1 validation error detected: Value at 'attributeDefinitions' failed to "
                    "satisfy constraint: AttributeType must be one of [B, N, S]"
                )
            types[attr] = t
        hash_key, range_key = parse_key_schema(schema, types)
        used = {k["AttributeName"] for k in schema} | index_key_names(body)
        undefined = sorted(used - set(types))
        if undefined:
            raise validation(
                "One or more parameter values were invalid: Some index key attributes are not "
                f"defined in AttributeDefinitions. Keys: [{', '.join(undefined)}], "
                f"AttributeDefinitions: [{', '.join(types)}]"
            )
        if set(types) != used:
            raise validation(
                "One or more parameter values were invalid: Number of attributes in KeySchema "
                "does not exactly match number of attributes defined in AttributeDefinitions"
            )
        capacity = self._capacity_mode(body)
        stream = self._stream(body.get("StreamSpecification"))
        gsis = body.get("GlobalSecondaryIndexes")
        lsis = body.get("LocalSecondaryIndexes")
        for member, value in (("GlobalSecondaryIndexes", gsis), ("LocalSecondaryIndexes", lsis)):
            if value is not None and (not isinstance(value, list) or not value):
                raise validation(
                    f"One or more parameter values were invalid: List of {member} is empty"
                )
        provisioned = isinstance(capacity, Provisioned)
        tags = check_tags(body["Tags"]) if body.get("Tags") is not None else []
        if len(dict(tags)) > MAX_TAGS:
            raise DynamoError(
                "LimitExceededException",
                f"The number of tags on a resource cannot exceed {MAX_TAGS}",
            )
        await create_table(
            self.store,
            self.namespace,
            name,
            partition_key=hash_key,
            sort_key=range_key,
            stream=stream,
            capacity=capacity,
            global_indexes=[parse_global(d, types, provisioned) for d in gsis or ()],
            local_indexes=[parse_local(d, types, hash_key[0]) for d in lsis or ()],
        )
        spec = await self.store.spec(name)
        if tags:
            from dataclasses import replace

            spec = replace(spec, tags=tuple(sorted(dict(tags).items())))
            await self._save(spec)
        desc = await self.describe(spec)
        desc["TableStatus"] = "ACTIVE"
        return {"TableDescription": desc}

    def _capacity_mode(self, body: Body) -> Any:
        mode = body.get("BillingMode", "PROVISIONED")
        if mode == "PAY_PER_REQUEST":
            return OnDemand()
        if mode != "PROVISIONED":
            raise validation(f"Invalid BillingMode: {shown(mode)}")
        pt = body.get("ProvisionedThroughput")
        if not isinstance(pt, dict):
            raise validation(
                "One or more parameter values were invalid: ReadCapacityUnits and "
                "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"
            )
        r, w = pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")
        if not (isinstance(r, int) and isinstance(w, int) and r >= 1 and w >= 1):
            raise validation("ProvisionedThroughput units must be positive integers")
        return Provisioned(read=r, write=w)

    def _stream(self, spec: Any) -> StreamView | None:
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise validation("StreamSpecification must be an object")
        if not spec.get("StreamEnabled"):
            return None
        view = spec.get("StreamViewType")
        try:
            return StreamView(str(view))
        except ValueError:
            raise validation(f"Invalid StreamViewType: {shown(view)}") from None

    def _stream_update(self, spec: TableSpec, update: Any) -> tuple[StreamView | None]:
        """The stream a table gets from UpdateTable's StreamSpecification, checked as
        DynamoDB checks it (a stream is turned on or off, never changed in place)."""
        if not isinstance(update, dict):
            raise validation("StreamSpecification must be an object")
        enabled = update.get("StreamEnabled")
        if not isinstance(enabled, bool):
            raise validation(
                "1 validation error detected: Value null at "
                "'streamSpecification.streamEnabled' failed to satisfy constraint: "
                "Member must not be null"
            )
        has_view = update.get("StreamViewType") is not None
        if enabled:
            if spec.stream is not None:
                raise validation(f"Table already has an enabled stream: TableName: {spec.name}")
            if not has_view:
                raise validation(
                    "One or more parameter values were invalid: If stream is being enabled "
                    "then UpdateViewType is required"
                )
            return (self._stream(update),)
        if has_view:
            raise validation(
                "One or more parameter values were invalid: If stream is being disabled, "
                "then UpdateViewType must not be specified"
            )
        if spec.stream is None:
            raise validation(f"Table has no stream to disable: TableName: {spec.name}")
        return (None,)

    async def DescribeTable(self, body: Body) -> Body:
        return {"Table": await self.describe(await self._spec(body))}

    async def DeleteTable(self, body: Body) -> Body:
        spec = await self._spec(body)
        desc = await self.describe(spec)
        await self.store.delete_table(spec.name)
        desc["TableStatus"] = "DELETING"
        return {"TableDescription": desc}

    async def ListTables(self, body: Body) -> Body:
        limit = _opt(body, "Limit", int, 100)
        if not 1 <= limit <= 100:
            raise validation("Limit must be between 1 and 100")
        start = _opt(body, "ExclusiveStartTableName", str)
        names = [n for n in await self.store.table_names() if start is None or n > start]
        out: Body = {"TableNames": names[:limit]}
        if len(names) > limit:
            out["LastEvaluatedTableName"] = names[limit - 1]
        return out

    async def UpdateTable(self, body: Body) -> Body:
        from dataclasses import replace

        spec = await self._spec(body)
        changed = spec
        stream_change = None
        if "StreamSpecification" in body:
            stream_change = self._stream_update(spec, body["StreamSpecification"])
            changed = replace(changed, stream=stream_change[0])
        if "BillingMode" in body or "ProvisionedThroughput" in body:
            mode = {"BillingMode": body.get("BillingMode", "PROVISIONED"), **body}
            changed = replace(changed, capacity=self._capacity_mode(mode))
        old_cap, new_cap = spec.capacity, changed.capacity
        decreased = (
            isinstance(old_cap, Provisioned)
            and isinstance(new_cap, Provisioned)
            and (new_cap.read < old_cap.read or new_cap.write < old_cap.write)
        )
        updates = body.get("GlobalSecondaryIndexUpdates")
        if updates is not None and (not isinstance(updates, list) or len(updates) != 1):
            raise validation(
                "One or more parameter values were invalid: GlobalSecondaryIndexUpdates must "
                "hold one Create, Update or Delete"
                if not updates
                else "Subscriber limit exceeded: Only 1 online index can be created or deleted "
                "simultaneously per table"
            )
        # the topic must be able to exist
        await check_stream_change(self.store, self.namespace, spec, changed)
        if stream_change is not None:
            view = stream_change[0]
            if view is None:
                label = await disable_stream(self.store, spec)
            else:
                label = await enable_stream(self.store, spec, view.value)
            changed = replace(changed, stream_label=label)
        if changed != spec:
            await self._save(changed)
        if decreased:
            await self._count_decrease(spec)
        if updates:
            await self._index_update(changed, updates[0], body)
            changed = await self.store.spec(spec.name)
        return {"TableDescription": await self.describe(changed)}

    async def _index_update(self, spec: TableSpec, update: Any, body: Body) -> None:
        if not isinstance(update, dict) or len(update) != 1:
            raise validation(
                "a GlobalSecondaryIndexUpdates member holds one of Create/Update/Delete"
            )
        ((action, d),) = update.items()
        if action == "Delete":
            name = d.get("IndexName") if isinstance(d, dict) else None
            if not isinstance(name, str):
                raise validation("Delete needs an IndexName")
            if not any(ix.name == name for ix in spec.indexes):
                raise DynamoError(
                    "ResourceNotFoundException", f"Requested resource not found: Index: {name}"
                )
            await drop_index(self.store, spec.name, name)
        elif action == "Create":
            types: dict[str, str] = {
                a.name: a.type for ix in spec.indexes for a in (ix.key.partition, ix.key.sort) if a
            }
            types.update({a.name: a.type for a in (spec.key.partition, spec.key.sort) if a})
            for a in body.get("AttributeDefinitions") or ():
                if isinstance(a, dict) and a.get("AttributeType") in _TYPES:
                    types.setdefault(str(a.get("AttributeName")), str(a["AttributeType"]))
            index = parse_global(d, types, isinstance(spec.capacity, Provisioned))
            await add_index(self.store, spec.name, index)
            task = asyncio.create_task(
                backfill(self.store, spec.name, index.name), name=f"backfill-{spec.name}"
            )
            self._backfills.add(task)  # finished by App.running() if this process stops
            task.add_done_callback(self._backfills.discard)
        elif action == "Update":
            name = d.get("IndexName") if isinstance(d, dict) else None
            if not any(ix.name == name for ix in spec.indexes):
                raise DynamoError(
                    "ResourceNotFoundException", f"Requested resource not found: Index: {name}"
                )
            raise validation("Updating an index's provisioned throughput is not supported yet")
        else:
            raise validation(f"Unknown GlobalSecondaryIndexUpdates action: {action}")

    async def UpdateTimeToLive(self, body: Body) -> Body:
        from streamkit.storage._ttl import set_ttl

        ttl = _need(body, "TimeToLiveSpecification", dict)
        enabled = ttl.get("Enabled")
        attr = ttl.get("AttributeName")
        where = "timeToLiveSpecification"
        if enabled is None or attr is None:
            missing = "enabled" if enabled is None else "attributeName"
            raise validation(
                f"1 validation error detected: Value null at '{where}.{missing}' failed to "
                "satisfy constraint: Member must not be null"
            )
        _need(ttl, "Enabled", bool)
        _need(ttl, "AttributeName", str)
        if not 1 <= len(attr) <= 255:
            bound = "greater than or equal to 1" if not attr else "less than or equal to 255"
            raise validation(
                f"1 validation error detected: Value '{attr}' at '{where}.attributeName' "
                f"failed to satisfy constraint: Member must have length {bound}"
            )
        spec = await self._spec(body)
        current = spec.ttl_attribute
        if current is not None and current != attr:
            raise validation(
                "TimeToLive is active on a different AttributeName: current AttributeName is "
                f"{current}"
            )
        if enabled and current is not None:
            raise validation("TimeToLive is already enabled")
        if not enabled and current is None:
            raise validation("TimeToLive is already disabled")
        # a key attribute is allowed, as in DynamoDB (items expire by their key)
        await set_ttl(self.store, spec.name, attr if enabled else None)
        return {"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attr}}

    async def DescribeTimeToLive(self, body: Body) -> Body:
        spec = await self._spec(body)
        if spec.ttl_attribute is None:
            return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        return {
            "TimeToLiveDescription": {
                "TimeToLiveStatus": "ENABLED",
                "AttributeName": spec.ttl_attribute,
            }
        }

    async def DescribeContinuousBackups(self, body: Body) -> Body:
        from streamkit.history._archive import archive_window

        spec = await self._spec(body)
        window = archive_window(spec)
        pitr: Body = {"PointInTimeRecoveryStatus": "ENABLED" if window else "DISABLED"}
        if window:
            pitr["EarliestRestorableDateTime"] = window[0] / 1000
            pitr["LatestRestorableDateTime"] = window[1] / 1000
            pitr["RecoveryPeriodInDays"] = spec.recovery_days
        return {
            "ContinuousBackupsDescription": {
                "ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": pitr,
            }
        }

    # --- backups and point-in-time recovery ------------------------------------------------
    def _backup_arn(self, table: str, backup_id: str) -> str:
        return f"{self.arn(table)}/backup/{backup_id}"

    def _backup_id(self, body: Body) -> str:
        arn = _need(body, "BackupArn")
        if "/backup/" not in arn:
            raise validation(f"Invalid BackupArn: {arn}")
        return str(arn.rsplit("/backup/", 1)[1])

    def _backup_details(self, b: Any) -> Body:
        return {
            "BackupArn": self._backup_arn(b.table, b.id),
            "BackupName": b.id,
            "BackupSizeBytes": b.size_bytes,
            "BackupStatus": "AVAILABLE",
            "BackupType": b.kind,
            "BackupCreationDateTime": b.created_at.timestamp(),
        }

    async def CreateBackup(self, body: Body) -> Body:
        spec = await self._spec(body)
        _need(body, "BackupName")
        b = await _backups.create(self.store, spec.name)
        return {"BackupDetails": self._backup_details(b)}

    async def ListBackups(self, body: Body) -> Body:
        table = _opt(body, "TableName", str)
        kind = _opt(body, "BackupType", str, "ALL")
        out = []
        for b in await _backups.list_backups(self.store, table):
            if kind not in ("ALL", b.kind):
                continue
            out.append(
                {
                    **self._backup_details(b),
                    "TableName": b.table,
                    "TableArn": self.arn(b.table),
                }
            )
        return {"BackupSummaries": out}

    async def _find_backup(self, backup_id: str) -> Any:
        for b in await _backups.list_backups(self.store):
            if b.id == backup_id:
                return b
        raise DynamoError("BackupNotFoundException", f"Backup not found: {backup_id}")

    async def DescribeBackup(self, body: Body) -> Body:
        b = await self._find_backup(self._backup_id(body))
        return {
            "BackupDescription": {
                "BackupDetails": self._backup_details(b),
                "SourceTableDetails": {
                    "TableName": b.table,
                    "TableArn": self.arn(b.table),
                    "ItemCount": b.items,
                    "TableSizeBytes": b.size_bytes,
                },
            }
        }

    async def DeleteBackup(self, body: Body) -> Body:
        described = await self.DescribeBackup(body)
        await _backups.delete(self.store, self._backup_id(body))
        described["BackupDescription"]["BackupDetails"]["BackupStatus"] = "DELETED"
        return described

    async def RestoreTableFromBackup(self, body: Body) -> Body:
        target = _need(body, "TargetTableName")
        backup_id = self._backup_id(body)
        await self._find_backup(backup_id)
        await _backups.restore(self.store, backup_id, target=target, namespace=self.namespace)
        return {"TableDescription": await self.describe(await self.store.spec(target))}

    async def RestoreTableToPointInTime(self, body: Body) -> Body:
        from datetime import UTC, datetime

        source = _need(body, "SourceTableName")
        target = _need(body, "TargetTableName")
        if body.get("UseLatestRestorableTime"):
            at = datetime.now(UTC)
        else:
            at = timestamp(_need(body, "RestoreDateTime", (int, float, Decimal)), "RestoreDateTime")
        await restore_to_time(self.store, source, at=at, target=target, namespace=self.namespace)
        return {"TableDescription": await self.describe(await self.store.spec(target))}

    async def UpdateContinuousBackups(self, body: Body) -> Body:
        from dataclasses import replace

        spec = await self._spec(body)
        pitr = _need(body, "PointInTimeRecoverySpecification", dict)
        enabled = pitr.get("PointInTimeRecoveryEnabled")
        if not isinstance(enabled, bool):
            raise validation("PointInTimeRecoveryEnabled must be true or false")
        days = pitr.get("RecoveryPeriodInDays", spec.recovery_days)
        if not isinstance(days, int) or not 1 <= days <= 35:
            raise validation("RecoveryPeriodInDays must be between 1 and 35")
        if enabled and not spec.pitr:
            raise validation(
                "Enabling point-in-time recovery on an existing table is not supported by "
                "streamkit yet: create the table with it (the default)"
            )
        changed = replace(spec, pitr=enabled, recovery_days=days)
        await self._save(changed)
        return await self.DescribeContinuousBackups({"TableName": spec.name})

    # --- items ----------------------------------------------------------------------------
    def _returns(self, body: Body, allowed: set[str]) -> str:
        rv = _opt(body, "ReturnValues", str, "NONE")
        if rv not in allowed:
            raise validation(
                f"1 validation error detected: Value '{rv}' at 'returnValues' failed to "
                f"satisfy constraint: Member must satisfy enum value set: {sorted(allowed)}"
            )
        return str(rv)

    def _old_on_failure(self, body: Body) -> bool:
        v = _opt(body, "ReturnValuesOnConditionCheckFailure", str, "NONE")
        if v not in ("NONE", "ALL_OLD"):
            raise validation("ReturnValuesOnConditionCheckFailure must be NONE or ALL_OLD")
        return bool(v == "ALL_OLD")

    def _write_args(self, body: Body, legacy: _Legacy, allowed: set[str]) -> dict[str, Any]:
        """The keyword arguments every single-item write shares."""
        return {
            "condition": _combine(body, "ConditionExpression", "Expected", legacy),
            "names": legacy.names or None,
            "values": legacy.values or None,
            "returns": self._returns(body, allowed),
            "return_old_on_condition_failure": self._old_on_failure(body),
        }

    @staticmethod
    def _attributes(item: Any) -> Body:
        return {} if not item else {"Attributes": item_to_dynamodb_json(item)}

    async def PutItem(self, body: Body) -> Body:
        spec = await self._spec(body)
        item = item_from_dynamodb_json(_need(body, "Item", dict))
        legacy = _Legacy(_names(body), _values(body))
        args = self._write_args(body, legacy, {"NONE", "ALL_OLD"})
        _collection_mode(body)
        with measure() as used:
            old = await self._table(spec.name).put(item, **args)
        cap = _capacity(body, spec.name, 1.0, read=False, used=used, spec=spec)
        return {**self._attributes(old), **cap, **_collection_metrics(body, used, spec.name)}

    async def GetItem(self, body: Body) -> Body:
        spec = await self._spec(body)
        key = _key(body)
        _key_types(spec, key)
        legacy = _Legacy(_names(body), None)
        projection = _opt(body, "ProjectionExpression", str)
        if "AttributesToGet" in body:
            if projection is not None:
                raise validation(
                    "Can not use both expression and non-expression parameters in the same "
                    "request: Non-expression parameters: {AttributesToGet} Expression "
                    "parameters: {ProjectionExpression}"
                )
            projection = legacy.projection(body["AttributesToGet"])
        consistent = _opt(body, "ConsistentRead", bool, False)
        item = await self._table(spec.name).get(
            key, projection=projection, names=legacy.names or None, consistent=consistent
        )
        out: Body = {} if item is None else {"Item": item_to_dynamodb_json(item)}
        units = 1.0 if consistent else 0.5
        return {**out, **_capacity(body, spec.name, units, read=True)}

    async def UpdateItem(self, body: Body) -> Body:
        spec = await self._spec(body)
        key = _key(body)
        _key_types(spec, key)
        legacy = _Legacy(_names(body), _values(body))
        expression = _opt(body, "UpdateExpression", str)
        if "AttributeUpdates" in body:
            if expression is not None:
                raise validation(
                    "Can not use both expression and non-expression parameters in the same "
                    "request: Non-expression parameters: {AttributeUpdates} Expression "
                    "parameters: {UpdateExpression}"
                )
            expression = legacy.updates(_need(body, "AttributeUpdates", dict)) or None
        kwargs = self._write_args(body, legacy, _RETURN_VALUES)
        _collection_mode(body)
        table = self._table(spec.name)
        with measure() as used:
            if expression is None:
                result = await table.update(key, set={}, **kwargs)
            else:
                result = await table.update(key, expression=expression, **kwargs)
        cap = _capacity(body, spec.name, 1.0, read=False, used=used, spec=spec)
        return {**self._attributes(result), **cap, **_collection_metrics(body, used, spec.name)}

    async def DeleteItem(self, body: Body) -> Body:
        spec = await self._spec(body)
        key = _key(body)
        _key_types(spec, key)
        legacy = _Legacy(_names(body), _values(body))
        args = self._write_args(body, legacy, {"NONE", "ALL_OLD"})
        _collection_mode(body)
        with measure() as used:
            old = await self._table(spec.name).delete(key, **args)
        cap = _capacity(body, spec.name, 1.0, read=False, used=used, spec=spec)
        return {**self._attributes(old), **cap, **_collection_metrics(body, used, spec.name)}

    # --- query and scan -------------------------------------------------------------------
    def _select(self, body: Body, projection: str | None) -> str:
        select = _opt(body, "Select", str)
        if select is None:
            if projection:
                return "SPECIFIC_ATTRIBUTES"
            return "ALL_PROJECTED_ATTRIBUTES" if "IndexName" in body else "ALL_ATTRIBUTES"
        if select not in (
            "ALL_ATTRIBUTES",
            "ALL_PROJECTED_ATTRIBUTES",
            "SPECIFIC_ATTRIBUTES",
            "COUNT",
        ):
            raise validation(f"Invalid Select value: {select}")
        if select == "ALL_PROJECTED_ATTRIBUTES" and "IndexName" not in body:
            raise validation(
                "One or more parameter values were invalid: Select type "
                "ALL_PROJECTED_ATTRIBUTES is supported only for index queries"
            )
        if select == "SPECIFIC_ATTRIBUTES" and not projection:
            raise validation(
                "One or more parameter values were invalid: Select type SPECIFIC_ATTRIBUTES "
                "requires ProjectionExpression or AttributesToGet"
            )
        if select in ("ALL_ATTRIBUTES", "COUNT") and projection:
            raise validation(
                f"One or more parameter values were invalid: Cannot specify the "
                f"AttributesToGet or ProjectionExpression when choosing to get {select}"
            )
        return str(select)

    def _page_args(self, body: Body, legacy: _Legacy, filter_legacy: str) -> dict[str, Any]:
        projection = _opt(body, "ProjectionExpression", str)
        if "AttributesToGet" in body:
            if projection is not None:
                raise validation(
                    "Can not use both expression and non-expression parameters in the same request"
                )
            projection = legacy.projection(body["AttributesToGet"])
        limit = _opt(body, "Limit", int)
        if limit is not None and limit < 1:
            raise validation(
                "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
                "Member must have value greater than or equal to 1"
            )
        start = _opt(body, "ExclusiveStartKey", dict)
        return {
            "filter": _combine(body, "FilterExpression", filter_legacy, legacy),
            "projection": projection,
            "limit": limit,
            "start_key": None if start is None else item_from_dynamodb_json(start),
            "consistent": _opt(body, "ConsistentRead", bool, False),
            "index": _opt(body, "IndexName", str),
        }

    def _page_out(self, body: Body, spec: TableSpec, page: Any, select: str) -> Body:
        out: Body = {"Count": page.count, "ScannedCount": page.scanned_count}
        if select != "COUNT":
            out["Items"] = [item_to_dynamodb_json(i) for i in page.items]
        if page.last_key is not None:
            out["LastEvaluatedKey"] = item_to_dynamodb_json(page.last_key)
        index = _opt(body, "IndexName", str)
        out.update(_capacity(body, spec.name, page.consumed, read=True, spec=spec, index=index))
        return out

    async def Query(self, body: Body) -> Body:
        spec = await self._spec(body)
        legacy = _Legacy(_names(body), _values(body))
        key_condition = _combine(body, "KeyConditionExpression", "KeyConditions", legacy)
        if key_condition is None:
            raise validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified "
                "in the request."
            )
        args = self._page_args(body, legacy, "QueryFilter")
        select = self._select(body, args["projection"])
        forward = _opt(body, "ScanIndexForward", bool, True)
        page = await self._table(spec.name).query_page(
            key_condition=key_condition,
            names=legacy.names or None,
            values=legacy.values or None,
            reverse=not forward,
            select=select,
            **args,
        )
        return self._page_out(body, spec, page, select)

    async def Scan(self, body: Body) -> Body:
        spec = await self._spec(body)
        legacy = _Legacy(_names(body), _values(body))
        args = self._page_args(body, legacy, "ScanFilter")
        select = self._select(body, args["projection"])
        segment = _opt(body, "Segment", int)
        total = _opt(body, "TotalSegments", int)
        if (segment is None) != (total is None):
            raise validation(
                "The TotalSegments parameter is required but was not present in the request "
                "when Segment parameter is present"
                if total is None
                else "The Segment parameter is required but was not present in the request "
                "when parameter TotalSegments is present"
            )
        seg: dict[str, Any] = {}
        if total is not None:
            seg = {"segment": segment, "total_segments": total}
        page = await self._table(spec.name).scan_page(
            names=legacy.names or None,
            values=legacy.values or None,
            select=select,
            **args,
            **seg,
        )
        return self._page_out(body, spec, page, select)

    # --- batches and transactions -----------------------------------------------------------
    async def BatchGetItem(self, body: Body) -> Body:
        requests = _need(body, "RequestItems", dict)
        if not requests:
            raise validation("RequestItems must not be empty")
        _capacity(body, "", 0.0, read=True)  # a bad ReturnConsumedCapacity: refused first
        with measure() as used:
            out, unprocessed = await self._batch_get(requests)
        return {
            "Responses": out,
            "UnprocessedKeys": unprocessed,
            **_capacities(body, list(requests), used, read=True, store=self.store),
        }

    async def _batch_get(self, requests: Body) -> tuple[dict[str, list[Any]], Body]:
        """The items found, and the keys left for another call past 16 MB of items (as
        DynamoDB: ``UnprocessedKeys``, with the table's other request members)."""
        total = 0
        checked: list[tuple[str, Body, list[Any], dict[str, Any]]] = []
        for name, req in requests.items():  # every table's request is checked first
            if not isinstance(req, dict):
                raise validation("RequestItems values must be objects")
            keys = req.get("Keys")
            if not isinstance(keys, list) or not keys:
                raise validation("Keys must be a non-empty list")
            total += len(keys)
            if total > 100:
                raise validation(
                    "Too many items requested for the BatchGetItem call (the limit is 100)"
                )
            legacy = _Legacy(_names(req), None)
            projection = _opt(req, "ProjectionExpression", str)
            if "AttributesToGet" in req:
                if projection is not None:
                    raise validation(_BOTH_PROJECTIONS)
                projection = legacy.projection(req["AttributesToGet"])
            spec = await self.store.spec(name)
            parsed = [item_from_dynamodb_json(k) for k in keys]
            for k in parsed:
                _key_types(spec, k)
            _no_duplicates(spec, parsed)
            args = {
                "projection": projection,
                "names": legacy.names or None,
                "consistent": bool(req.get("ConsistentRead", False)),
            }
            checked.append((name, req, parsed, args))
        out: dict[str, list[Any]] = {}
        unprocessed: Body = {}
        budget = _BATCH_GET_BYTES
        for name, req, parsed, args in checked:
            table = self._table(name)
            items = out.setdefault(name, [])
            for i, k in enumerate(parsed):
                if budget <= 0:
                    unprocessed[name] = {**req, "Keys": req["Keys"][i:]}
                    break
                item = await table.get(k, **args)
                if item is not None:
                    size = item_size(item)
                    if size > budget:  # the response would pass 16 MB: this one waits too
                        budget = 0
                        unprocessed[name] = {**req, "Keys": req["Keys"][i:]}
                        break
                    budget -= size
                    items.append(item_to_dynamodb_json(item))
        return out, unprocessed

    async def BatchWriteItem(self, body: Body) -> Body:
        from streamkit.exceptions import ThroughputExceeded

        requests = _need(body, "RequestItems", dict)
        if not requests:
            raise validation("RequestItems must not be empty")
        count = sum(len(v) if isinstance(v, list) else 0 for v in requests.values())
        if count > 25:
            raise validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy "
                "constraint: Map value must satisfy constraint: [Member must have length less "
                "than or equal to 25, Member must have length greater than or equal to 1]"
            )
        parsed: dict[str, tuple[list[Any], list[Any]]] = {}
        for name, writes in requests.items():
            if not isinstance(writes, list) or not writes:
                raise validation("RequestItems values must be non-empty lists")
            puts, deletes = [], []
            for w in writes:
                if not isinstance(w, dict) or len(w) != 1:
                    raise validation("each write must hold exactly one PutRequest or DeleteRequest")
                if "PutRequest" in w:
                    puts.append(item_from_dynamodb_json(_need(w["PutRequest"], "Item", dict)))
                elif "DeleteRequest" in w:
                    deletes.append(item_from_dynamodb_json(_need(w["DeleteRequest"], "Key", dict)))
                else:
                    raise validation("each write must hold exactly one PutRequest or DeleteRequest")
            _no_duplicates(await self.store.spec(name), [*puts, *deletes])
            parsed[name] = (puts, deletes)
        _capacity(body, "", 0.0, read=False)  # a bad ReturnConsumedCapacity: refused first
        _collection_mode(body)
        unprocessed: dict[str, list[Any]] = {}
        with measure() as used:
            for name, (puts, deletes) in parsed.items():
                try:
                    await self._table(name).batch_write(puts=puts, deletes=deletes)
                except ThroughputExceeded:
                    unprocessed[name] = requests[name]
        return {
            "UnprocessedItems": unprocessed,
            **_capacities(body, list(parsed), used, read=False, store=self.store),
            **_collection_metrics(body, used),
        }

    async def TransactWriteItems(self, body: Body) -> Body:
        items = _need(body, "TransactItems", list)
        if not 1 <= len(items) <= 100:
            raise validation("TransactItems must hold 1 to 100 actions")
        tx = Transaction(self.store)
        tables: list[str] = []
        for action in items:
            if not isinstance(action, dict) or len(action) != 1:
                raise validation("each TransactItem must hold exactly one action")
            ((kind, spec),) = action.items()
            if not isinstance(spec, dict):
                raise validation(f"{kind} must be an object")
            table = _need(spec, "TableName")
            legacy = _Legacy(_names(spec), _values(spec))
            cond = _opt(spec, "ConditionExpression", str)
            common: dict[str, Any] = {
                "names": legacy.names or None,
                "values": legacy.values or None,
                "return_old_on_condition_failure": self._old_on_failure(spec),
            }
            if kind == "Put":
                tx.put(
                    table,
                    item_from_dynamodb_json(_need(spec, "Item", dict)),
                    condition=cond,
                    **common,
                )
            elif kind == "Update":
                tx.update(
                    table,
                    _key(spec),
                    expression=_need(spec, "UpdateExpression"),
                    condition=cond,
                    **common,
                )
            elif kind == "Delete":
                tx.delete(table, _key(spec), condition=cond, **common)
            elif kind == "ConditionCheck":
                tx.condition_check(table, _key(spec), _need(spec, "ConditionExpression"), **common)
            else:
                raise validation(f"Unknown TransactItem action {kind!r}")
            tables.append(table)
        _capacity(body, "", 0.0, read=False)  # a bad ReturnConsumedCapacity: refused first
        _collection_mode(body)
        with measure() as used:
            await tx.commit()
        return {
            **_capacities(body, tables, used, read=False, store=self.store),
            **_collection_metrics(body, used),
        }

    async def TransactGetItems(self, body: Body) -> Body:
        items = _need(body, "TransactItems", list)
        if not 1 <= len(items) <= 100:
            raise validation("TransactItems must hold 1 to 100 actions")
        gets = []
        for action in items:
            spec = action.get("Get") if isinstance(action, dict) else None
            if not isinstance(spec, dict):
                raise validation("each TransactItem must hold a Get")
            legacy = _Legacy(_names(spec), None)
            gets.append(
                (
                    _need(spec, "TableName"),
                    _key(spec),
                    _opt(spec, "ProjectionExpression", str),
                    legacy.names or None,
                )
            )
        _capacity(body, "", 0.0, read=True)  # a bad ReturnConsumedCapacity: refused first
        responses = []
        with measure() as used:
            for table, key, projection, names in gets:
                item = await self._table(table).get(key, projection=projection, names=names)
                responses.append({} if item is None else {"Item": item_to_dynamodb_json(item)})
        tables = [g[0] for g in gets]
        return {
            "Responses": responses,
            **_capacities(body, tables, used, read=True, store=self.store),
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


Operation = Callable[[Service, Body], Awaitable[Body]]
OPERATIONS: dict[str, Operation] = {
    name: getattr(Service, name)
    for name in (
        "CreateTable",
        "DescribeTable",
        "DeleteTable",
        "ListTables",
        "UpdateTable",
        "UpdateTimeToLive",
        "DescribeTimeToLive",
        "DescribeContinuousBackups",
        "UpdateContinuousBackups",
        "CreateBackup",
        "ListBackups",
        "DescribeBackup",
        "DeleteBackup",
        "RestoreTableFromBackup",
        "RestoreTableToPointInTime",
        "PutItem",
        "GetItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "TransactGetItems",
    )
}

_ = Decimal  # numbers are Decimals throughout (from_dynamodb_json)

# PartiQL: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction (they use the helpers
# above, so they are imported once those exist)
from streamkit.server._partiql_ops import PARTIQL_OPERATIONS  # noqa: E402
from streamkit.server._tags import TAG_OPERATIONS  # noqa: E402

OPERATIONS.update(PARTIQL_OPERATIONS)
OPERATIONS.update(TAG_OPERATIONS)
