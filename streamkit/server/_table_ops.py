"""DynamoDB's table operations: tables, TTL, backups, point-in-time recovery."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamkit.capture._tables import check_stream_change, create_table
from streamkit.exceptions import TableNotFound
from streamkit.history import _backups
from streamkit.history._archive import restore_to_time, set_recovery
from streamkit.records import StreamView
from streamkit.replication._admin import set_replicas
from streamkit.server._convert import (
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
    plan_index_updates,
)
from streamkit.server._replicas import describe_replicas, plan_replica_updates
from streamkit.server._stream_history import (
    check_view_type,
    disable_stream,
    enable_stream,
    keep_deleted_streams,
)
from streamkit.server._table_checks import (
    check_create_shape,
    check_key_schema,
    check_list_tables,
    check_update_members,
    check_update_shape,
    created_capacity,
    unchanged_throughput,
    unused_definitions,
    updated_capacity,
)
from streamkit.server._table_extras import (
    check_deletable,
    created_extras,
    describe_extras,
    load_extras,
    save_extras,
    updated_extras,
)
from streamkit.server._tags import check_tags
from streamkit.storage._capacity import OnDemand, Provisioned
from streamkit.storage._index_admin import add_index, backfill, drop_index

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
from streamkit.server._ops_common import (
    Body,
    ServiceBase,
    _need,
    _opt,
)

_NOT_IN_DELETED = (
    "CreationDateTime",
    "KeySchema",
    "AttributeDefinitions",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
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
        billing: Body = {"BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST"}
        if not provisioned:
            billing["LastUpdateToPayPerRequestDateTime"] = await self._on_demand_since(spec)
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
            "BillingModeSummary": billing,
            "ProvisionedThroughput": {
                "ReadCapacityUnits": cap.read if isinstance(cap, Provisioned) else 0,
                "WriteCapacityUnits": cap.write if isinstance(cap, Provisioned) else 0,
                "NumberOfDecreasesToday": await self._decreases_today(spec),
            },
        }
        out.update(describe_extras(await load_extras(self.store, spec)))
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
        out.update(describe_replicas(spec))
        return out

    def _on_demand_key(self, spec: TableSpec) -> str:
        return f"dynamodb.on-demand-since/{spec.name}/{spec.table_id}"

    async def _on_demand_since(self, spec: TableSpec) -> float:
        """When the table last became PAY_PER_REQUEST: its creation, or the UpdateTable
        that switched it."""
        key = self._on_demand_key(spec)
        since = (await self.store.read_meta((key,))).get(key)
        if since is not None:
            return float(since)
        return spec.created_at.timestamp() if spec.created_at else time.time()

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

    async def _counts(self, spec: TableSpec) -> tuple[int, int]:
        return await self.store.engine.table_stats(spec.table_id)

    # --- tables ---------------------------------------------------------------------------
    async def CreateTable(self, body: Body) -> Body:
        types = check_create_shape(body)
        name = _need(body, "TableName")
        schema = _need(body, "KeySchema", list)
        _need(body, "AttributeDefinitions", list)
        check_key_schema(schema)
        hash_key, range_key = parse_key_schema(schema, types)
        used = {k["AttributeName"] for k in schema} | index_key_names(body)
        undefined = sorted(used - set(types))
        if undefined:
            raise validation(
                "One or more parameter values were invalid: Some index key attributes are not "
                f"defined in AttributeDefinitions. Keys: [{', '.join(undefined)}], "
                f"AttributeDefinitions: [{', '.join(types)}]"
            )
        unused_definitions(body, types, used)
        capacity = created_capacity(body)
        stream = self._stream(body.get("StreamSpecification"))
        gsis = body.get("GlobalSecondaryIndexes")
        lsis = body.get("LocalSecondaryIndexes")
        for member, value in (("GlobalSecondaryIndexes", gsis), ("LocalSecondaryIndexes", lsis)):
            if value is not None and (not isinstance(value, list) or not value):
                raise validation(
                    f"One or more parameter values were invalid: List of {member} is empty"
                )
        provisioned = isinstance(capacity, Provisioned)
        # an empty Tags list is no tags (as DynamoDB: TagResource refuses one)
        tags = check_tags(body["Tags"]) if body.get("Tags") not in (None, []) else []
        extras = created_extras(body)  # TableClass, WarmThroughput: checked before creating
        await create_table(
            self.store,
            self.namespace,
            name,
            partition_key=hash_key,
            sort_key=range_key,
            stream=stream,
            capacity=capacity,
            # PITR off, as DynamoDB creates tables; on with the cache, which follows a
            # table's change rows (a table with neither stream nor PITR keeps none)
            pitr=self.store.cache is not None,
            global_indexes=[
                parse_global(d, types, provisioned, f"globalSecondaryIndexes.{i}.member")
                for i, d in enumerate(gsis or (), start=1)
            ],
            local_indexes=[
                parse_local(d, types, hash_key[0], f"localSecondaryIndexes.{i}.member")
                for i, d in enumerate(lsis or (), start=1)
            ],
        )
        spec = await self.store.spec(name)
        if extras is not None:
            await save_extras(self.store, spec, extras)
        if tags:
            given = tuple(sorted(dict(tags).items()))
            spec = await self.store.change_spec(name, lambda s: replace(s, tags=given))
        desc = await self.describe(spec)
        desc["TableStatus"] = "ACTIVE"
        return {"TableDescription": desc}

    def _stream(self, spec: Any) -> StreamView | None:
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise validation("StreamSpecification must be an object")
        if spec.get("StreamEnabled") is None:
            raise validation(
                "1 validation error detected: Value null at "
                "'streamSpecification.streamEnabled' failed to satisfy constraint: "
                "Member must not be null"
            )
        view = spec.get("StreamViewType")
        check_view_type(view)
        if not spec.get("StreamEnabled"):
            return None
        if view is None:
            raise validation("Invalid StreamViewType: null")
        return StreamView(view)

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
        check_view_type(update.get("StreamViewType"))
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
        desc = await self.describe(await self._spec(body))
        if desc["TableName"] in self.creating:  # an import still fills it
            desc["TableStatus"] = "CREATING"
        return {"Table": desc}

    async def DeleteTable(self, body: Body) -> Body:
        spec = await self._spec(body)
        if spec.name in self.creating:
            raise DynamoError(
                "ResourceInUseException",
                "Attempt to change a resource which is still in use: Table is being created: "
                f"{spec.name}",
            )
        await check_deletable(self.store, spec)
        desc = await self.describe(spec)
        await self.store.delete_table(spec.name)
        # its streams stay readable for 24 h, as DynamoDB's (kept once it is gone: a
        # delete that fails leaves the table's streams as they were)
        await keep_deleted_streams(self.store, spec)
        desc["TableStatus"] = "DELETING"
        # as DynamoDB: the description of a deleted table leaves out its schema
        for member in _NOT_IN_DELETED:
            desc.pop(member, None)
        return {"TableDescription": desc}

    async def ListTables(self, body: Body) -> Body:
        limit = _opt(body, "Limit", int, 100)
        start = _opt(body, "ExclusiveStartTableName", str)
        check_list_tables(body)
        names = [n for n in await self.store.table_names() if start is None or n > start]
        out: Body = {"TableNames": names[:limit]}
        if len(names) > limit:
            out["LastEvaluatedTableName"] = names[limit - 1]
        return out

    async def UpdateTable(self, body: Body) -> Body:
        spec = await self._spec(body)
        check_update_members(body)
        check_update_shape(body)
        extras = updated_extras(body, await load_extras(self.store, spec))  # checked first
        changed = spec
        stream_change = None
        if "StreamSpecification" in body:
            stream_change = self._stream_update(spec, body["StreamSpecification"])
            changed = replace(changed, stream=stream_change[0])
        if "BillingMode" in body or "ProvisionedThroughput" in body:
            changed = replace(changed, capacity=updated_capacity(body, spec.capacity))
        old_cap, new_cap = spec.capacity, changed.capacity
        if (
            isinstance(old_cap, Provisioned)
            and isinstance(new_cap, Provisioned)
            and "ProvisionedThroughput" in body
            and not any(m in body for m in ("StreamSpecification", "GlobalSecondaryIndexUpdates"))
        ):
            unchanged_throughput(old_cap, new_cap)
        decreased = (
            isinstance(old_cap, Provisioned)
            and isinstance(new_cap, Provisioned)
            and (new_cap.read < old_cap.read or new_cap.write < old_cap.write)
        )
        index_plan = (  # checked before anything changes
            plan_index_updates(changed, body["GlobalSecondaryIndexUpdates"], body)
            if body.get("GlobalSecondaryIndexUpdates") is not None
            else []
        )
        replica_plan = (  # checked before anything changes too
            plan_replica_updates(
                spec,
                body["ReplicaUpdates"],
                region=self.home_region,
                log_url=self.log_url,
                peers=self.peers,
            )
            if body.get("ReplicaUpdates") is not None
            else None
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
            changed = await self.store.change_spec(spec.name, _apply_update(spec, changed))
        if isinstance(old_cap, Provisioned) and isinstance(new_cap, OnDemand):
            await self.store.write_meta({self._on_demand_key(spec): repr(time.time())})
        if decreased:
            await self._count_decrease(spec)
        if index_plan:
            await self._index_update(changed, index_plan)
            changed = await self.store.spec(spec.name)
        if replica_plan is not None:
            assert self.home_region is not None  # plan_replica_updates checked it
            changed = await set_replicas(
                self.store,
                spec.name,
                self.home_region,
                self.log_url,
                replica_plan,
                namespace=self.namespace,
            )
        if extras is not None:
            await save_extras(self.store, spec, extras)
        return {"TableDescription": await self.describe(changed)}

    async def _index_update(self, spec: TableSpec, plan: list[tuple[str, Any]]) -> None:
        """Apply checked ``GlobalSecondaryIndexUpdates`` (:func:`plan_index_updates`)."""
        for action, what in plan:
            if action == "Delete":
                await drop_index(self.store, spec.name, what)
            elif action == "Create":
                await add_index(self.store, spec.name, what)
                task = asyncio.create_task(
                    backfill(self.store, spec.name, what.name), name=f"backfill-{spec.name}"
                )
                self._backfills.add(task)  # finished by App.running() if this process stops
                task.add_done_callback(self._backfills.discard)
            else:  # Update: the index's provisioned throughput

                def throughput(latest: TableSpec, what: Any = what) -> TableSpec:
                    indexes = tuple(what if ix.name == what.name else ix for ix in latest.indexes)
                    return replace(latest, indexes=indexes)

                await self.store.change_spec(spec.name, throughput)

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

        def check(latest: TableSpec) -> None:  # against the settings the change applies to
            current = latest.ttl_attribute
            if current is not None and current != attr:
                raise validation(
                    "TimeToLive is active on a different AttributeName: current AttributeName "
                    f"is {current}"
                )
            if enabled and current is not None:
                raise validation("TimeToLive is already enabled")
            if not enabled and current is None:
                raise validation("TimeToLive is already disabled")

        # a key attribute is allowed, as in DynamoDB (items expire by their key)
        await set_ttl(self.store, spec.name, attr if enabled else None, check=check)
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

    async def _backups_spec(self, body: Body) -> TableSpec:
        """The table of a continuous-backups call: a missing one is DynamoDB's
        ``TableNotFoundException`` there, not ``ResourceNotFoundException``."""
        try:
            return await self._spec(body)
        except TableNotFound as e:
            raise DynamoError("TableNotFoundException", f"Table not found: {e.table}") from None

    async def DescribeContinuousBackups(self, body: Body) -> Body:
        from streamkit.history._archive import archive_window

        spec = await self._backups_spec(body)
        window = archive_window(spec)
        status = "ENABLING" if spec.pitr_enabling else "ENABLED" if window else "DISABLED"
        pitr: Body = {"PointInTimeRecoveryStatus": status}
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
        spec = await self._backups_spec({"TableName": source})
        if not spec.pitr or spec.pitr_enabling:
            raise DynamoError(
                "PointInTimeRecoveryUnavailableException",
                f"Point in time recovery is not enabled for table '{spec.name}'",
            )
        await restore_to_time(self.store, source, at=at, target=target, namespace=self.namespace)
        return {"TableDescription": await self.describe(await self.store.spec(target))}

    async def UpdateContinuousBackups(self, body: Body) -> Body:
        spec = await self._backups_spec(body)
        pitr = _need(body, "PointInTimeRecoverySpecification", dict)
        enabled = pitr.get("PointInTimeRecoveryEnabled")
        if not isinstance(enabled, bool):
            raise validation("PointInTimeRecoveryEnabled must be true or false")

        days = pitr.get("RecoveryPeriodInDays")
        if days is not None and (
            not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 35
        ):
            raise validation("RecoveryPeriodInDays must be between 1 and 35")

        if enabled and (not spec.pitr or spec.pitr_enabling):
            await self._enable_pitr(spec.name, days)
        else:
            await set_recovery(self.store, spec.name, enabled, days)
        return await self.DescribeContinuousBackups({"TableName": spec.name})

    async def _enable_pitr(self, name: str, days: int | None) -> None:
        """Turn PITR on (ENABLING) and enter the table's items in its archive in the
        background, as DynamoDB answers at once and enables within minutes; a process
        that stops meanwhile leaves it ENABLING, finished by ``App.running()``."""
        from streamkit.history._archive import seed_archive, start_pitr

        spec = await start_pitr(self.store, name, days)
        if spec.pitr_enabling:
            task = asyncio.create_task(seed_archive(self.store, name), name=f"pitr-{name}")
            self._backfills.add(task)
            task.add_done_callback(self._backfills.discard)


_UPDATED = ("stream", "stream_label", "capacity")  # the settings UpdateTable itself changes


def _apply_update(read: TableSpec, changed: TableSpec) -> Callable[[TableSpec], TableSpec]:
    """UpdateTable's change as a function of the latest settings (``Store.change_spec``):
    the stream and capacity it checked against ``read``, applied to settings others may
    have changed since (tags, indexes, TTL); if those very settings changed meanwhile, the
    checks no longer hold and the table is busy, as DynamoDB's is while it is UPDATING."""
    wanted = {f: getattr(changed, f) for f in _UPDATED}
    checked = tuple(getattr(read, f) for f in _UPDATED)

    def apply(latest: TableSpec) -> TableSpec:
        if latest.table_id != read.table_id or tuple(getattr(latest, f) for f in _UPDATED) != (
            checked
        ):
            raise DynamoError(
                "ResourceInUseException",
                "Attempt to change a resource which is still in use: "
                f"Table is being updated: {read.name}",
            )
        return replace(latest, **wanted)

    return apply
