"""DynamoDB's table operations: tables, TTL, backups, point-in-time recovery."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamkit.capture._tables import check_stream_change, create_table
from streamkit.history import _backups
from streamkit.history._archive import restore_to_time
from streamkit.records import StreamView
from streamkit.server._convert import (
    shown,
    timestamp,
)
from streamkit.server._errors import DynamoError, validation
from streamkit.server._indexes import (
    attribute_definitions,
    describe_indexes,
    index_key_names,
    parse_global,
    parse_key_schema,
    parse_local,
)
from streamkit.server._stream_history import disable_stream, enable_stream
from streamkit.server._tags import MAX_TAGS, check_tags
from streamkit.storage._capacity import OnDemand, Provisioned
from streamkit.storage._index_admin import add_index, backfill, drop_index

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
from streamkit.server._ops_common import (
    _TYPES,
    Body,
    ServiceBase,
    _need,
    _opt,
)


class TableOps(ServiceBase):
    """DynamoDB's table operations: tables, TTL, backups, point-in-time recovery."""

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
