"""Export to a directory and to a real S3-compatible server (S3Proxy, started by
compose/s3/s3-up.sh; ``make test`` starts it and sets STREAMKIT_TEST_S3)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import streamkit as sk
from tests import s3_env


class Store:
    """Reads back what an export wrote, from a directory or a bucket."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        if kind == "file":
            self.root = tmp_path / "exports"
            self.url = f"file://{self.root}"
        else:
            self.bucket = f"sk-{uuid.uuid4().hex[:12]}"
            self.s3 = s3_env.client()
            self.s3.create_bucket(Bucket=self.bucket)
            self.url = f"s3://{self.bucket}/exports"

    def read(self, key: str) -> bytes:
        if self.kind == "file":
            return (self.root / key).read_bytes()
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=f"exports/{key}")["Body"].read())

    def keys(self) -> list[str]:
        if self.kind == "file":
            if not self.root.exists():
                return []
            return sorted(
                str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
            )
        got = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(o["Key"][len("exports/") :] for o in got)


@pytest.fixture(params=["file", s3_env.s3_param()])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "s3":
        # the export finds the endpoint the usual AWS way
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
    return Store(request.param, tmp_path)


def _rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "dynamodb-json":
        return [json.loads(line) for line in gzip.decompress(data).splitlines()]
    if fmt == "avro":
        import fastavro

        return list(fastavro.reader(io.BytesIO(data)))
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def _items(fmt: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if fmt == "dynamodb-json":
        return [r["Item"] for r in rows]
    return [json.loads(r["item"]) for r in rows]


def _check_manifest(store: Store, result: Any) -> list[dict[str, Any]]:
    base = result.location.split("/exports/", 1)[1] if "/exports/" in result.location else ""
    summary = json.loads(store.read(f"{base}/manifest-summary.json"))
    lines = store.read(f"{base}/manifest-files.json")
    assert hashlib.sha256(lines).hexdigest() == summary["manifestFilesSha256"]
    files = [json.loads(line) for line in lines.splitlines()]
    assert summary["itemCount"] == sum(f["itemCount"] for f in files) == result.item_count
    for f in files:
        data = store.read(f["dataFileS3Key"])
        assert base64.b64encode(hashlib.md5(data).digest()).decode() == f["md5Checksum"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert len(data) == f["sizeBytes"]
    return files


@pytest.mark.parametrize("fmt", ["dynamodb-json", "avro", "parquet"])
async def test_full_and_incremental_exports(store: Store, tmp_path: Path, fmt: str) -> None:
    async with sk.App(storage=f"sqlite:///{tmp_path}/t.db") as app:
        t = await app.create_table("Things", partition_key="k", sort_key=("n", "N"))
        for i in range(50):
            await t.put({"k": f"k{i % 5}", "n": i, "tags": {"a", "b"}, "blob": b"\x00\x01"})
        await asyncio.sleep(0.01)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await t.update({"k": "k0", "n": 0}, set={"v": "changed"})
        await t.delete({"k": "k1", "n": 1})
        await t.put({"k": "new", "n": 1})

        full = await app.export("Things", to=store.url, format=fmt)
        files = _check_manifest(store, full)
        items = [i for f in files for i in _items(fmt, _rows(fmt, store.read(f["dataFileS3Key"])))]
        assert full.item_count == len(items) == 50
        assert sum(1 for i in items if i.get("v") == {"S": "changed"}) == 1
        old = [i for i in items if i["k"] != {"S": "new"}]
        assert all(i["blob"] == {"B": base64.b64encode(b"\x00\x01").decode()} for i in old)
        assert all(i["tags"] == {"SS": ["a", "b"]} for i in old)

        past = await app.export("Things", to=store.url, format=fmt, until=middle)
        files = _check_manifest(store, past)
        items = [i for f in files for i in _items(fmt, _rows(fmt, store.read(f["dataFileS3Key"])))]
        assert len(items) == 50 and not any("v" in i for i in items)
        assert not any(i["k"] == {"S": "new"} for i in items)

        inc = await app.export("Things", to=store.url, format=fmt, since=middle)
        assert inc.export_type == "INCREMENTAL_EXPORT"
        files = _check_manifest(store, inc)
        rows = [r for f in files for r in _rows(fmt, store.read(f["dataFileS3Key"]))]
        assert len(rows) == inc.item_count == 3
        if fmt == "dynamodb-json":
            by_key = {json.dumps(r["Keys"], sort_keys=True): r for r in rows}
            gone = by_key[json.dumps({"k": {"S": "k1"}, "n": {"N": "1"}}, sort_keys=True)]
            assert "NewImage" not in gone and gone["OldImage"]["k"] == {"S": "k1"}
            created = by_key[json.dumps({"k": {"S": "new"}, "n": {"N": "1"}}, sort_keys=True)]
            assert "OldImage" not in created
            # DynamoDB's shape: the write time is a DynamoDB JSON number
            assert all(int(r["Metadata"]["WriteTimestampMicros"]["N"]) > 0 for r in rows)


async def test_bad_exports_write_nothing(store: Store, tmp_path: Path) -> None:
    async with sk.App(storage=f"sqlite:///{tmp_path}/t.db") as app:
        t = await app.create_table("Things", partition_key="k")
        await t.put({"k": "a"})
        now = datetime.now(UTC)
        cases: list[tuple[dict[str, Any], type[Exception]]] = [
            ({"to": store.url, "format": "csv"}, sk.ValidationError),
            ({"to": "ftp://x/y"}, sk.ValidationError),
            ({"to": "file://relative/dir"}, sk.ValidationError),
            ({"to": store.url, "since": datetime.now()}, sk.ValidationError),
            (
                {"to": store.url, "since": now, "until": now - timedelta(seconds=1)},
                sk.ValidationError,
            ),
            ({"to": store.url, "until": now + timedelta(hours=1)}, sk.ValidationError),
            ({"to": store.url, "since": now - timedelta(days=40)}, sk.HistoryUnavailable),
        ]
        for kwargs, error in cases:
            with pytest.raises(error):
                await app.export("Things", **kwargs)
        with pytest.raises(sk.TableNotFound):
            await app.export("Nope", to=store.url)
        assert store.keys() == []


def test_streamkit_export_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    async def fill() -> None:
        async with sk.App(storage=f"sqlite:///{tmp_path}/t.db") as app:
            t = await app.create_table("Things", partition_key="k")
            for i in range(10):
                await t.put({"k": f"k{i}"})

    asyncio.run(fill())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamkit",
            "--storage",
            f"sqlite:///{tmp_path}/t.db",
            "export",
            "Things",
            "--to",
            f"file://{tmp_path}/out",
            "--format",
            "parquet",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["item_count"] == 10 and result["format"] == "parquet"
    assert Path(result["manifest"][len("file://") :]).exists()
