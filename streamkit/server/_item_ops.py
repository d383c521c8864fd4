"""DynamoDB's item operations: reads, writes, queries, scans, batches, transactions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamkit.exceptions import ThroughputExceeded, ValidationError
from streamkit.records._values import item_size, item_to_dynamodb_json
from streamkit.server import _batch
from streamkit.server import _transact as _tx
from streamkit.server._convert import (
    item_from_dynamodb_json,
    shown,
)
from streamkit.server._errors import INVALID, validation
from streamkit.server._key_conditions import check_query_filter, query_key_condition
from streamkit.storage._capacity import ConsumedCapacity, measure
from streamkit.storage._expressions import GENERATED
from streamkit.storage._transaction import Transaction

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
from streamkit.server._ops_common import (
    _BATCH_GET_BYTES,
    _BOTH_PROJECTIONS,
    _RETURN_VALUES,
    Body,
    ServiceBase,
    _capacities,
    _capacity,
    _capacity_problem_refused,
    _check_segments,
    _collection_metrics,
    _collection_mode,
    _combine,
    _key,
    _key_types,
    _Legacy,
    _names,
    _need,
    _no_duplicates,
    _opt,
    _values,
)

# the storage layer's words for an ADD / DELETE / list_append on a value of another type
_OPERAND_TYPE = "An operand in the update expression has an incorrect data type"


class ItemOps(ServiceBase):
    """DynamoDB's item operations: reads, writes, queries, scans, batches, transactions."""

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
        _capacity_problem_refused(body)
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
        generated = GENERATED.set("AttributesToGet" in body)  # no 4 KB limit on those
        try:
            with measure() as used:
                item = await self._table(spec.name).get(
                    key, projection=projection, names=legacy.names or None, consistent=consistent
                )
        finally:
            GENERATED.reset(generated)
        out: Body = {} if item is None else {"Item": item_to_dynamodb_json(item)}
        # the units of the whole item read (4 KB blocks), whatever the projection; a
        # cache hit reads no storage and costs the minimum
        units = 1.0 if consistent else 0.5
        meter = used if spec.name in used.by_table else None
        return {**out, **_capacity(body, spec.name, units, read=True, used=meter)}

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
            if body.get("ConditionExpression") is not None:
                raise validation(
                    "Can not use both expression and non-expression parameters in the same "
                    "request: Non-expression parameters: {AttributeUpdates} Expression "
                    "parameters: {ConditionExpression}"
                )
            expression = legacy.updates(_need(body, "AttributeUpdates", dict)) or None
        kwargs = self._write_args(body, legacy, _RETURN_VALUES)
        _collection_mode(body)
        _capacity_problem_refused(body)
        table = self._table(spec.name)
        legacy_updates = "AttributeUpdates" in body
        with measure() as used:
            if expression is None:
                result = await table.update(key, set={}, **kwargs)
            else:
                generated = GENERATED.set(legacy_updates)  # no 4 KB limit on those
                try:
                    result = await table.update(key, expression=expression, **kwargs)
                except ValidationError as e:
                    if legacy_updates and str(e).startswith(_OPERAND_TYPE):
                        raise validation(
                            INVALID + "Type mismatch for attribute to update"
                        ) from None
                    raise
                finally:
                    GENERATED.reset(generated)
        cap = _capacity(body, spec.name, 1.0, read=False, used=used, spec=spec)
        return {**self._attributes(result), **cap, **_collection_metrics(body, used, spec.name)}

    async def DeleteItem(self, body: Body) -> Body:
        spec = await self._spec(body)
        key = _key(body)
        _key_types(spec, key)
        legacy = _Legacy(_names(body), _values(body))
        args = self._write_args(body, legacy, {"NONE", "ALL_OLD"})
        _collection_mode(body)
        _capacity_problem_refused(body)
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
            raise validation(
                f"1 validation error detected: Value '{shown(select)}' at 'select' failed to "
                "satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, "
                "COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"
            )
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
        last = page.last_key
        if last is None and page.scanned_count == _opt(body, "Limit", int):
            last = page.end_key  # DynamoDB: a page that Limit stopped always has one
        if last is not None:
            out["LastEvaluatedKey"] = item_to_dynamodb_json(last)
        index = _opt(body, "IndexName", str)
        out.update(_capacity(body, spec.name, page.consumed, read=True, spec=spec, index=index))
        return out

    async def Query(self, body: Body) -> Body:
        spec = await self._spec(body)
        legacy = _Legacy(_names(body), _values(body))
        index = _opt(body, "IndexName", str)
        ix = None if index is None else spec.index(index)
        key = spec.key if ix is None else ix.key
        key_condition = query_key_condition(body, key, legacy, ix)
        check_query_filter(body, key.names if ix is None else ix.key_names)
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
            _check_segments(segment, total)
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
        requests = _batch.get_requests(body)
        with measure() as used:
            out, unprocessed = await self._batch_get(requests)
        return {
            "Responses": out,
            "UnprocessedKeys": unprocessed,
            **_capacities(body, [r[0] for r in requests], used, read=True, store=self.store),
        }

    async def _batch_get(
        self, requests: list[tuple[str, Body, list[Any]]]
    ) -> tuple[dict[str, list[Any]], Body]:
        """The items found, and the keys left for another call (as DynamoDB:
        ``UnprocessedKeys``, with the table's other request members): those past 16 MB of
        items, and those of a table whose read capacity ran out (the call fails only when
        it could read nothing at all)."""
        specs = [await self.store.spec(name) for name, _, _ in requests]  # every table first
        checked: list[tuple[str, Body, list[Any], dict[str, Any]]] = []
        for spec, (name, req, parsed) in zip(specs, requests, strict=True):
            legacy = _Legacy(_names(req), None)
            projection = _opt(req, "ProjectionExpression", str)
            if "AttributesToGet" in req:
                if projection is not None:
                    raise validation(_BOTH_PROJECTIONS)
                projection = legacy.projection(req["AttributesToGet"])
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
        throttled: ThroughputExceeded | None = None
        read_any = False
        for name, req, parsed, args in checked:
            table = self._table(name)
            items = out.setdefault(name, [])
            for i, k in enumerate(parsed):
                if budget <= 0:
                    unprocessed[name] = {**req, "Keys": req["Keys"][i:]}
                    break
                try:
                    item = await table.get(k, **args)
                except ThroughputExceeded as e:
                    throttled = throttled or e
                    unprocessed[name] = {**req, "Keys": req["Keys"][i:]}
                    break
                read_any = True
                if item is not None:
                    size = item_size(item)
                    if size > budget:  # the response would pass 16 MB: this one waits too
                        budget = 0
                        unprocessed[name] = {**req, "Keys": req["Keys"][i:]}
                        break
                    budget -= size
                    items.append(item_to_dynamodb_json(item))
        if throttled is not None and not read_any:
            raise throttled
        return out, unprocessed

    async def BatchWriteItem(self, body: Body) -> Body:
        parsed = _batch.write_requests(body)
        specs = [await self.store.spec(name) for name, _, _ in parsed]  # every table first
        for spec, (_, puts, deletes) in zip(specs, parsed, strict=True):  # then the keys
            _batch.check_write_keys(spec, puts, deletes)
            _no_duplicates(spec, [*puts, *deletes])
        requests = body["RequestItems"]
        unprocessed: dict[str, list[Any]] = {}
        throttled: ThroughputExceeded | None = None
        with measure() as used:
            for name, puts, deletes in parsed:
                try:
                    await self._table(name).batch_write(puts=puts, deletes=deletes)
                except ThroughputExceeded as e:
                    throttled = throttled or e
                    unprocessed[name] = requests[name]
        if throttled is not None and len(unprocessed) == len(parsed):
            raise throttled  # DynamoDB: nothing could be written at all
        return {
            "UnprocessedItems": unprocessed,
            **_capacities(body, [p[0] for p in parsed], used, read=False, store=self.store),
            **_collection_metrics(body, used),
        }

    async def TransactWriteItems(self, body: Body) -> Body:
        items = _need(body, "TransactItems", list)
        if not 1 <= len(items) <= 100:
            raise validation(_transact_count(items))
        token = _tx.check_token(body)
        _tx.check_table_names(items)
        earlier = _tx.replayed(self.store, token, body)
        if earlier is not None:
            return earlier
        tx = Transaction(self.store)
        tables: list[str] = []
        puts: list[Any] = []
        problems: list[str | None] = []
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
            problems.append(None)
            if kind == "Put":
                item = item_from_dynamodb_json(_need(spec, "Item", dict))
                puts.append(item)
                problems[-1] = _tx.put_key_problem(await self.store.spec(table), item)
                tx.put(table, item, condition=cond, **common)
            elif kind in ("Update", "Delete", "ConditionCheck"):
                key = _key(spec)
                problems[-1] = _tx.key_problem(await self.store.spec(table), key)
                if kind == "Update":
                    expression = _need(spec, "UpdateExpression")
                    tx.update(table, key, expression=expression, condition=cond, **common)
                elif kind == "Delete":
                    tx.delete(table, key, condition=cond, **common)
                else:
                    check = _need(spec, "ConditionExpression")
                    tx.condition_check(table, key, check, **common)
            else:
                raise validation(f"Unknown TransactItem action {kind!r}")
            tables.append(table)
            if common["values"]:
                puts.append(common["values"])
        _tx.check_payload(puts)
        _capacity(body, "", 0.0, read=False)  # a bad ReturnConsumedCapacity: refused first
        _collection_mode(body)
        _tx.cancel_invalid(problems)
        with measure() as used:
            await tx.commit()
        out = {
            **_capacities(body, tables, used, read=False, store=self.store),
            **_collection_metrics(body, used),
        }
        _tx.remember(self.store, token, body, out)
        return out

    async def TransactGetItems(self, body: Body) -> Body:
        items = _need(body, "TransactItems", list)
        if not 1 <= len(items) <= 100:
            raise validation(_transact_count(items))
        _tx.check_table_names(items)
        gets = []
        problems: list[str | None] = []
        keys: list[tuple[str, TableSpec, Any]] = []
        for action in items:
            spec = action.get("Get") if isinstance(action, dict) else None
            if not isinstance(spec, dict):
                raise validation("each TransactItem must hold a Get")
            legacy = _Legacy(_names(spec), None)
            table, key = _need(spec, "TableName"), _key(spec)
            gets.append((table, key, _opt(spec, "ProjectionExpression", str), legacy.names or None))
            schema = await self.store.spec(table)
            problems.append(_tx.key_problem(schema, key))
            keys.append((table, schema, key))
        _capacity(body, "", 0.0, read=True)  # a bad ReturnConsumedCapacity: refused first
        _tx.cancel_invalid(problems)
        _tx.no_duplicates(keys)
        responses = []
        with measure() as used:
            for table, key, projection, names in gets:
                item = await self._table(table).get(
                    key, projection=projection, names=names, consistent=True
                )
                responses.append({} if item is None else {"Item": item_to_dynamodb_json(item)})
            _transactional_reads(self.store, used)
        tables = [g[0] for g in gets]
        return {
            "Responses": responses,
            **_capacities(body, tables, used, read=True, store=self.store),
        }


def _transactional_reads(store: Any, used: ConsumedCapacity) -> None:
    """A transactional read costs twice a strongly consistent one (DynamoDB: 2 units per
    4 KB): charge each table the units its reads consumed once more."""
    for name, (read, _) in list(used.by_table.items()):
        spec = store.known(name)
        if spec is not None and read:
            store.charge(spec, read=read)


def _transact_count(items: list[Any]) -> str:
    bound = "less than or equal to 100" if items else "greater than or equal to 1"
    return (
        "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: "
        f"Member must have length {bound}"
    )
