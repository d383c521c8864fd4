"""The PostgreSQL engine's pool side: everything that runs on one connection of its pool.

:class:`_PostgresPool` holds the pool calls (a read, optionally in one snapshot; a
write transaction, retried once on a new connection when the old one was lost before
COMMIT) and the operations made of them: item reads, the change log and the archive,
backups, settings, positions and leases. :class:`~streamkit.storage._postgres.PostgresEngine`
inherits them; it opens and closes the pool and adds the catalog, the group writer and
the LISTEN doorbell. The SQL shared with those is in :mod:`streamkit.storage._pg_schema`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from streamkit.exceptions import BackupNotFound, StorageError, TableNotFound
from streamkit.storage import _pg_schema as S
from streamkit.storage._engine import (
    ArchivedRecord,
    BackupInfo,
    ChangeRow,
    ItemRow,
    StateRow,
    TableRead,
)
from streamkit.storage._postgres_conn import _dropping_lost, _guard, _is_lost, _Target

T = TypeVar("T")
_FIVE_YEARS = 5 * 365 * 86400.0


class _PostgresPool:
    """The operations of :class:`~streamkit.storage._postgres.PostgresEngine` that run on
    a pool connection (``_pool``, set while the engine is open)."""

    _pool: Any
    _target: _Target

    # --- pool connections --------------------------------------------------------------
    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StorageError(f"storage {self._target.where} is not open (or was closed)")
        return self._pool

    async def _read(self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False) -> T:
        """Run ``fn(conn)`` on a pool connection (in one REPEATABLE READ READ ONLY
        transaction with ``snapshot``); a lost connection is retried once on a new one."""
        pool = self._require_pool()
        with _guard(self._target):
            for attempt in (0, 1):
                try:
                    async with pool.acquire() as conn, _dropping_lost(conn):
                        if not snapshot:
                            return await fn(conn)
                        async with conn.transaction(isolation="repeatable_read", readonly=True):
                            return await fn(conn)
                except Exception as e:
                    if attempt or not _is_lost(e):
                        raise
                    await pool.expire_connections()
        raise AssertionError("unreachable")

    async def _transact(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in a READ COMMITTED write transaction on a pool connection.

        Retried once on a new connection if the old one was lost before COMMIT; a
        connection lost during COMMIT raises a retriable StorageError (outcome unknown).
        """
        pool = self._require_pool()
        with _guard(self._target):
            for attempt in (0, 1):
                committing = False
                try:
                    async with pool.acquire() as conn, _dropping_lost(conn), conn.transaction():
                        result = await fn(conn)
                        committing = True
                    return result
                except Exception as e:
                    if committing or attempt or not _is_lost(e):
                        raise
                    await pool.expire_connections()
        raise AssertionError("unreachable")

    # --- item reads --------------------------------------------------------------------
    async def _fetch(self, sql: str, *args: Any, snapshot: bool = False) -> list[Any]:
        return await self._read(lambda conn: conn.fetch(sql, *args), snapshot=snapshot)

    async def get(self, table_id: int, pk: bytes, sk: bytes) -> tuple[bytes, int] | None:
        """One item's image bytes and DynamoDB size, or None."""
        rows = await self._fetch(
            "SELECT data, size FROM sk_items WHERE tid=$1 AND pk=$2 AND sk=$3", table_id, pk, sk
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def get_many(
        self, table_id: int, keys: Sequence[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, int]]:
        """The (image, size) of those of ``keys`` that exist, in the order of ``keys``
        (one statement: one snapshot)."""
        rows = await self._fetch(
            "SELECT i.data, i.size FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY "
            "AS k(pk, sk, n) JOIN sk_items i ON i.tid = $1 AND i.pk = k.pk AND i.sk = k.sk "
            "ORDER BY k.n",
            table_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return [(r[0], r[1]) for r in rows]

    async def range(
        self,
        table_id: int,
        pk: bytes,
        *,
        low: bytes | None,
        low_inclusive: bool,
        high: bytes | None,
        high_inclusive: bool,
        reverse: bool,
        limit: int,
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` (sort bytes, image bytes) of one partition, in bytewise order
        (bytea compares as unsigned bytes, like SQLite's BLOB)."""
        sql = ["SELECT sk, data FROM sk_items WHERE tid=$1 AND pk=$2"]
        args: list[Any] = [table_id, pk]
        if low is not None:
            args.append(low)
            sql.append(f"AND sk {'>=' if low_inclusive else '>'} ${len(args)}")
        if high is not None:
            args.append(high)
            sql.append(f"AND sk {'<=' if high_inclusive else '<'} ${len(args)}")
        args.append(limit)
        sql.append(f"ORDER BY sk {'DESC' if reverse else 'ASC'} LIMIT ${len(args)}")
        return [(r[0], r[1]) for r in await self._fetch(" ".join(sql), *args)]

    async def scan(
        self,
        table_id: int,
        *,
        after: tuple[bytes, bytes] | None,
        limit: int,
        segment: int,
        total_segments: int,
    ) -> list[ItemRow]:
        """Up to ``limit`` items after ``after`` in key order (of segment
        ``crc32(pk) % total_segments``: ``seg`` holds the crc32)."""
        sql = ["SELECT pk, sk, data FROM sk_items WHERE tid=$1"]
        args: list[Any] = [table_id]
        if after is not None:
            args.extend(after)
            sql.append("AND (pk, sk) > ($2, $3)")
        if total_segments > 1:
            args.extend((total_segments, segment))
            sql.append(f"AND seg % ${len(args) - 1} = ${len(args)}")
        args.append(limit)
        sql.append(f"ORDER BY pk, sk LIMIT ${len(args)}")
        return [(r[0], r[1], r[2]) for r in await self._fetch(" ".join(sql), *args)]

    async def snapshot(self, table_id: int) -> tuple[int, list[ItemRow]]:
        """Every item of a table and the newest sequence number, from one snapshot."""

        async def fn(conn: Any) -> tuple[int, list[ItemRow]]:
            seq = int(await conn.fetchval("SELECT seq FROM sk_counter"))
            return seq, await S.key_rows(conn, "sk_items", "tid", table_id)

        return await self._read(fn, snapshot=True)

    @contextlib.asynccontextmanager
    async def read_table(self, table_id: int, at_ms: int | None = None) -> AsyncIterator[TableRead]:
        """A table read from one snapshot a chunk at a time (see the protocol): a cursor
        in a REPEATABLE READ READ ONLY transaction on a pool connection held until the
        context exits."""
        pool = self._require_pool()
        with _guard(self._target):
            async with (
                pool.acquire() as conn,
                _dropping_lost(conn),
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                seq = int(await conn.fetchval("SELECT seq FROM sk_counter"))
                if at_ms is None:
                    cur = await conn.cursor(S.CURRENT_ROWS, table_id)
                else:
                    cur = await conn.cursor(S.STATE_AT, table_id, at_ms)
                yield _PgRead(seq, cur, self._target)

    async def snapshots(self, storage_ids: Sequence[int]) -> tuple[int, list[list[ItemRow]]]:
        """The rows of several storage ids and the newest sequence number, from one
        snapshot."""

        async def fn(conn: Any) -> tuple[int, list[list[ItemRow]]]:
            seq = int(await conn.fetchval("SELECT seq FROM sk_counter"))
            return seq, [await S.key_rows(conn, "sk_items", "tid", i) for i in storage_ids]

        return await self._read(fn, snapshot=True)

    async def expired(self, table_id: int, cutoff: float, limit: int) -> list[bytes]:
        """Images of items whose TTL is at or before ``cutoff`` (and under five years old)."""
        rows = await self._fetch(
            "SELECT data FROM sk_items WHERE tid=$1 AND expires IS NOT NULL "
            "AND expires <= $2 AND expires >= $3 ORDER BY expires LIMIT $4",
            table_id,
            cutoff,
            cutoff - _FIVE_YEARS,
            limit,
        )
        return [r[0] for r in rows]

    async def table_stats(self, table_id: int) -> tuple[int, int]:
        """``(item count, total item bytes)`` of a table."""
        ((count, size),) = await self._fetch(
            "SELECT count(*), coalesce(sum(size), 0) FROM sk_items WHERE tid=$1", table_id
        )
        return int(count), int(size)

    # --- the change log ----------------------------------------------------------------
    async def changes(self, after_seq: int, limit: int) -> list[ChangeRow]:
        """Change rows after ``after_seq`` in order (numbers follow commit order: no gap
        that an in-flight transaction could fill)."""
        rows = await self._fetch(
            "SELECT seq, tid, tname, event, txn, key, record, created_ms, publish, image "
            "FROM sk_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            after_seq,
            limit,
        )
        return [ChangeRow(*r) for r in rows]

    async def max_sequence(self) -> int:
        """The newest committed change row's sequence number (0 when there is none)."""
        return int((await self._fetch("SELECT seq FROM sk_counter"))[0][0])

    async def archive_rows(
        self,
        table_id: int,
        *,
        after_seq: int,
        since_ms: int,
        until_ms: int,
        before_seq: int | None,
        limit: int,
    ) -> list[ArchivedRecord]:
        """A table's archived records in [since_ms, until_ms) after ``after_seq``."""
        return await self._read(
            lambda c: S.archive_rows(c, table_id, after_seq, since_ms, until_ms, before_seq, limit)
        )

    async def archive_tail(
        self, table_id: int, *, position_key: str, since_ms: int, until_ms: int, limit: int
    ) -> tuple[int, list[ArchivedRecord]]:
        """The position under ``position_key`` and the archive rows after it, one snapshot."""

        async def fn(conn: Any) -> tuple[int, list[ArchivedRecord]]:
            value = await conn.fetchval("SELECT value FROM sk_meta WHERE key=$1", position_key)
            pos = 0 if value is None else int(value)
            return pos, await S.archive_rows(conn, table_id, pos, since_ms, until_ms, None, limit)

        return await self._read(fn, snapshot=True)

    async def prune_changes(self, *, upto: int, now_ms: int, limit: int) -> int:
        """Prune and compact the archive (see :func:`_pg_schema.compact`)."""
        return await self._transact(lambda c: S.compact(c, upto=upto, now_ms=now_ms, limit=limit))

    # --- backups -----------------------------------------------------------------------
    async def create_backup(self, name: str, backup_id: str, kind: str) -> BackupInfo:
        """Copy a table's items into a new backup, as one instant. Raises TableNotFound."""

        async def fn(conn: Any) -> BackupInfo:
            row = await conn.fetchrow("SELECT id FROM sk_tables WHERE name=$1", name)
            if row is not None:
                # keep delete_table out while copying, then look again: it may have won
                await conn.execute(
                    "SELECT pg_advisory_xact_lock_shared($1, $2)", S.LOCK_NS_TABLE, row[0]
                )
                row = await conn.fetchrow("SELECT id, spec FROM sk_tables WHERE id=$1", row[0])
            if row is None:
                raise TableNotFound(f"table {name!r} does not exist", table=name)
            return await S.backup(conn, name, row[0], row[1], backup_id, kind)

        return await self._transact(fn)

    async def list_backups(self, table: str | None = None) -> list[BackupInfo]:
        """Every backup (of one table), oldest first."""
        rows = await self._fetch(
            f"{S.BACKUP_COLUMNS} WHERE $1::text IS NULL OR tname=$1 ORDER BY created_ms, id", table
        )
        return [S.backup_info(r) for r in rows]

    async def delete_backup(self, backup_id: str) -> BackupInfo:
        """Delete a backup and its items. Raises BackupNotFound."""

        async def fn(conn: Any) -> BackupInfo:
            row = await conn.fetchrow(
                f"DELETE FROM sk_backups WHERE id=$1 RETURNING {S.BACKUP_FIELDS}", backup_id
            )
            if row is None:
                raise BackupNotFound(f"backup {backup_id!r} does not exist")
            await conn.execute("DELETE FROM sk_backup_items WHERE bid=$1", backup_id)
            return S.backup_info(row)

        return await self._transact(fn)

    # --- settings, positions and leases ------------------------------------------------
    async def read_meta(self, keys: Sequence[str]) -> dict[str, str]:
        """Values of ``sk_meta`` keys (absent keys are left out)."""
        rows = await self._fetch(
            "SELECT key, value FROM sk_meta WHERE key = ANY($1::text[])", list(keys)
        )
        return {r[0]: r[1] for r in rows}

    async def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every ``sk_meta`` key starting with ``prefix``, with its value."""
        rows = await self._fetch(
            "SELECT key, value FROM sk_meta WHERE left(key, length($1)) = $1", prefix
        )
        return {r[0]: r[1] for r in rows}

    async def write_meta(self, values: dict[str, str]) -> None:
        """Set ``sk_meta`` keys in one transaction, under the keys' advisory locks (so a
        checkpoint read-check-write in a group commit is never interleaved)."""
        if not values:
            return
        locks = sorted({S.meta_lock(k) for k in values})

        async def fn(conn: Any) -> None:
            await conn.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k", locks
            )
            await conn.execute(
                "INSERT INTO sk_meta (key, value) SELECT * FROM unnest($1::text[], $2::text[]) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values),
                list(values.values()),
            )

        await self._transact(fn)

    async def try_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew lease ``name`` for ``holder``, by the database's clock: one
        atomic upsert that only overwrites an expired lease or ``holder``'s own."""
        sql = (
            "INSERT INTO sk_leases (name, holder, expires) "
            "VALUES ($1, $2, now() + make_interval(secs => $3)) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
            "WHERE sk_leases.expires <= now() OR sk_leases.holder = excluded.holder "
            "RETURNING holder"
        )
        got = await self._transact(lambda c: c.fetchval(sql, name, holder, float(seconds)))
        return got is not None

    async def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease if ``holder`` holds it."""
        sql = "DELETE FROM sk_leases WHERE name=$1 AND holder=$2"
        await self._transact(lambda c: c.execute(sql, name, holder))


class _PgRead:
    """A ``TableRead`` through an asyncpg cursor."""

    def __init__(self, seq: int, cursor: Any, target: _Target) -> None:
        self.seq = seq
        self._cursor = cursor
        self._target = target

    async def chunk(self, n: int) -> list[StateRow]:
        with _guard(self._target):
            rows = await self._cursor.fetch(n)
        return [(r[0], r[1], r[2], r[3]) for r in rows]
