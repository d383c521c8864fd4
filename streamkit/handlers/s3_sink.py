"""ETL of a table's changes to S3 (or a directory) as Avro or Parquet, partitioned by date.

Example:
    ```python
    import streamkit as sk
    from streamkit.handlers.s3_sink import s3_sink_router

    app = sk.App(storage="sqlite:///./shop.db")
    app.include_router(s3_sink_router("Orders", to="s3://lake/raw", format="parquet"))
    ```

Each batch becomes one file per day it touches::

    <to>/table=Orders/date=2026-11-24/part-<first seq>-<last seq>.parquet

one row per change record (keys, new and old images in DynamoDB JSON, the commit
time in microseconds, the event and the sequence number: the export's incremental
schema). Delivery is at least once: file names come from the records' sequence
numbers, so a retried batch overwrites its own file; records redelivered after a crash
in differently cut batches can land in two files — deduplicate on
``sequence_number`` downstream. The S3 endpoint
and credentials are found the usual AWS way (``AWS_ENDPOINT_URL_S3``, the environment,
profiles, roles).
"""

from __future__ import annotations

import asyncio
from typing import Any

import streamkit as sk
from streamkit.history._export import change_row, encode_rows, open_destination

__all__ = ("s3_sink_router",)

_EXT = {"avro": ".avro", "parquet": ".parquet"}


def s3_sink_router(
    table: str,
    *,
    to: str,
    format: str = "parquet",
    name: str | None = None,
    batch_size: int = 1000,
    batch_window: float = 5.0,
    **options: Any,
) -> sk.Router:
    """A router with one batch handler writing ``table``'s changes under ``to``.

    Args:
        to: ``s3://bucket/prefix`` or ``file:///dir``.
        format: "parquet" or "avro".
        batch_size, batch_window: how many records (or seconds) make one file.
        options: other handler options (``filter=``, ``retries=``, ``start=``...).
    """
    if format not in _EXT:
        raise sk.ValidationError(f"format={format!r} must be 'parquet' or 'avro'")
    dest = open_destination(to)  # a bad URL fails here, at registration
    router = sk.Router()
    handler_name = name or f"s3_sink_{table}".replace(".", "_").replace("-", "_")

    async def sink(batch: sk.Batch) -> None:
        by_day: dict[str, list[sk.ChangeRecord]] = {}
        for r in batch:
            by_day.setdefault(r.created_at.strftime("%Y-%m-%d"), []).append(r)
        for day, records in sorted(by_day.items()):
            rows = [change_row(r, with_event=True) for r in records]
            data = await asyncio.to_thread(encode_rows, format, rows, changes=True)
            key = (
                f"table={table}/date={day}/part-{records[0].sequence_number:020d}-"
                f"{records[-1].sequence_number:020d}{_EXT[format]}"
            )
            await asyncio.to_thread(dest.put, key, data)

    sink.__name__ = handler_name
    router.on_change(
        table, name=handler_name, batch_size=batch_size, batch_window=batch_window, **options
    )(sink)
    return router
