"""handlers/s3_sink.py through the real runtime, to a directory and to S3Proxy."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from streamkit.handlers.s3_sink import s3_sink_router
from tests import s3_env


def _read(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "avro":
        import fastavro

        return list(fastavro.reader(io.BytesIO(data)))
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
@pytest.mark.parametrize("where", ["file", s3_env.s3_param()])
async def test_changes_land_in_date_partitioned_files_once(
    tmp_path: Path, fmt: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "file":
        to = f"file://{tmp_path}/lake"

        def files() -> dict[str, bytes]:
            root = tmp_path / "lake"
            return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.*")}
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
        bucket = f"lake-{uuid.uuid4().hex[:10]}"
        s3 = s3_env.client()
        s3.create_bucket(Bucket=bucket)
        to = f"s3://{bucket}/raw"

        def files() -> dict[str, bytes]:
            got = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            return {
                o["Key"][len("raw/") :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                for o in got
                if not o["Key"].endswith("/")  # S3Proxy's filesystem lists directories
            }

    app = sk.App(
        storage=f"sqlite:///{tmp_path}/t.db",
        log=f"local://{tmp_path}/log?poll_interval=0.02",
        namespace=f"s3{uuid.uuid4().hex[:6]}",
        topic_partitions=2,
    )
    app.include_router(s3_sink_router("Orders", to=to, format=fmt, batch_size=7, batch_window=0.05))
    try:
        orders = await app.create_table("Orders", partition_key="id")
        async with app.running():
            for i in range(20):
                await orders.put({"id": f"o{i}", "qty": i})
            await orders.delete({"id": "o3"})
            await app.drain()
        # a second handler runs over the same records (as after a lost checkpoint)
        before = files()
        again = sk.App(storage=app.storage_url, log=app.log_url, namespace=app.namespace)
        again.include_router(
            s3_sink_router("Orders", to=to, format=fmt, batch_size=7, name="s3_sink_again")
        )
        async with again.running(relay=False):
            await again.drain()
        await again.close()
    finally:
        await app.close()
    written = files()
    assert all(k.startswith("table=Orders/date=") and k.endswith(f".{fmt}") for k in written)
    rows = [r for k in sorted(before) for r in _read(fmt, before[k])]
    assert sorted(r["sequence_number"] for r in rows) == list(range(1, 22))
    assert sum(r["event"] == "REMOVE" for r in rows) == 1
    # its batches may be cut differently (at least once): every change is still there,
    # and a file written twice under one name was overwritten, not appended to
    rows_after = {r["sequence_number"] for k in written for r in _read(fmt, written[k])}
    assert rows_after == set(range(1, 22))


def test_bad_settings_fail_at_registration() -> None:
    with pytest.raises(sk.ValidationError):
        s3_sink_router("Orders", to="s3://bucket/x", format="csv")
    with pytest.raises(sk.ValidationError):
        s3_sink_router("Orders", to="http://example.com/x")
