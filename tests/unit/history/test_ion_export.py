"""The ``ion`` export format: DynamoDB's Ion mapping (S string, N decimal, B blob, BOOL,
NULL, L list, M struct, sets as lists annotated ``$dynamodb_SS`` / ``_NS`` / ``_BS``),
one ``$ion_1_0 {Item:{...}}`` a line, read back by amazon.ion and by the endpoint's
ImportTable reader."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from amazon.ion import simpleion
from amazon.ion.core import IonType
from hypothesis import given

import streamkit as sk
from streamkit.history._export import encode_rows, export_table
from streamkit.records import canonical_number, values_equal
from streamkit.records._values import item_to_dynamodb_json
from streamkit.server._imports import _ion_items
from tests.strategies import items

EVERY_TYPE: dict[str, Any] = {
    "id": "k1",
    "s": 'zażółć 日本語 🦑 "q" \\ \n\t',
    "empty": "",
    "n": Decimal(600),
    "price": Decimal("2000"),
    "frac": Decimal("-17.5"),
    "tiny": Decimal("1E-130"),
    "digits38": Decimal("12345678901234567890123456789012345678"),
    "huge": Decimal("-9.9999999999999999999999999999999999999E+125"),
    "zero": Decimal(0),
    "b": b"\x00\x01\xfe\xff",
    "no_bytes": b"",
    "yes": True,
    "no": False,
    "nothing": None,
    "ss": {"a", "b", ""},
    "ns": {Decimal(1), Decimal("3.5"), Decimal("1E-130")},
    "bs": {b"\x00", b"\x01", b""},
    "l": ["s", Decimal(1), [], {}, [None, {"x": {b"\x02"}}]],
    "m": {"a": {"b": "c"}, "a.b": [True], "$ion_1_0": "name", "$10": "not a symbol id"},
}
_SET_TYPES = {"$dynamodb_SS": IonType.STRING, "$dynamodb_NS": IonType.DECIMAL}


def _lines(rows: list[dict[str, Any]], *, changes: bool = False) -> list[bytes]:
    return gzip.decompress(encode_rows("ion", rows, changes=changes)).splitlines(keepends=True)


def _full(item: dict[str, Any]) -> dict[str, Any]:
    return {"Item": item_to_dynamodb_json(item)}


def _value(v: Any) -> Any:
    """An Ion value read back by DynamoDB's documented mapping (this test's own reading)."""
    annotations = [a.text for a in v.ion_annotations]
    if annotations:
        assert v.ion_type is IonType.LIST and len(annotations) == 1, annotations
        members = _SET_TYPES.get(annotations[0], IonType.BLOB)
        assert annotations[0] in ("$dynamodb_SS", "$dynamodb_NS", "$dynamodb_BS")
        assert v and all(m.ion_type is members and not m.ion_annotations for m in v)
        return {_value(m) for m in v}
    if v.ion_type is IonType.NULL:
        return None
    if v.ion_type is IonType.DECIMAL:
        return canonical_number(Decimal(v))
    if v.ion_type is IonType.STRING:
        return str(v)
    if v.ion_type is IonType.BLOB:
        return bytes(v)
    if v.ion_type is IonType.BOOL:
        return bool(v)
    if v.ion_type is IonType.LIST:
        return [_value(x) for x in v]
    assert v.ion_type is IonType.STRUCT, v.ion_type
    return {k: _value(x) for k, x in v.items()}


def test_each_item_is_one_line_an_ion_version_marker_and_the_item() -> None:
    lines = _lines([_full(EVERY_TYPE), _full({"id": "k2"})])
    assert len(lines) == 2
    assert all(line.startswith(b"$ion_1_0 {Item:{") and line.endswith(b"}}\n") for line in lines)
    value = simpleion.loads(lines[0])
    assert value.ion_type is IonType.STRUCT and list(value) == ["Item"]
    item = value["Item"]
    assert list(item) == sorted(EVERY_TYPE)  # attribute names in order, as DynamoDB's
    # the types DynamoDB's export writes, exactly
    for name in ("n", "price", "frac", "tiny", "digits38", "huge", "zero"):
        assert item[name].ion_type is IonType.DECIMAL, name
        assert Decimal(item[name]) == EVERY_TYPE[name], name
    # as DynamoDB's: no trailing zeros (600 is 6d2, 2000 is 2d3)
    assert Decimal(item["n"]).as_tuple() == (0, (6,), 2)
    assert Decimal(item["price"]).as_tuple() == (0, (2,), 3)
    assert (item["b"].ion_type, bytes(item["b"])) == (IonType.BLOB, b"\x00\x01\xfe\xff")
    assert (item["no_bytes"].ion_type, bytes(item["no_bytes"])) == (IonType.BLOB, b"")
    assert (item["empty"].ion_type, str(item["empty"])) == (IonType.STRING, "")
    assert item["nothing"].ion_type is IonType.NULL
    assert item["yes"].ion_type is IonType.BOOL
    for name, annotation in (
        ("ss", "$dynamodb_SS"),
        ("ns", "$dynamodb_NS"),
        ("bs", "$dynamodb_BS"),
    ):
        assert item[name].ion_type is IonType.LIST
        assert [a.text for a in item[name].ion_annotations] == [annotation]
    assert item["l"].ion_type is IonType.LIST and not item["l"].ion_annotations
    assert item["m"].ion_type is IonType.STRUCT
    assert _value(item) == EVERY_TYPE


@given(items())
def test_any_item_reads_back_the_same(item: dict[str, Any]) -> None:
    (line,) = _lines([_full(item)])
    assert line.startswith(b"$ion_1_0 ") and line.count(b"\n") == 1
    read = _value(simpleion.loads(line)["Item"])
    assert read.keys() == item.keys()
    assert all(values_equal(read[k], item[k]) for k in item)
    # and the endpoint's ImportTable reader (InputFormat ION) reads it as it was
    (imported,) = _ion_items(iter([line]))
    assert all(values_equal(imported[k], item[k]) for k in item) and imported.keys() == item.keys()


def test_an_incremental_row_keeps_its_metadata_keys_and_images() -> None:
    row = {
        "Metadata": {"WriteTimestampMicros": {"N": "1700000000123000"}},
        "Keys": item_to_dynamodb_json({"id": "k1"}),
        "NewImage": item_to_dynamodb_json({"id": "k1", "v": Decimal(2)}),
        "OldImage": item_to_dynamodb_json({"id": "k1", "v": Decimal(1), "ss": {"x"}}),
    }
    (line,) = _lines([row], changes=True)
    assert line.startswith(b"$ion_1_0 {Metadata:{WriteTimestampMicros:1700000000123000},")
    value = simpleion.loads(line)
    assert list(value) == ["Metadata", "Keys", "NewImage", "OldImage"]
    assert int(value["Metadata"]["WriteTimestampMicros"]) == 1_700_000_000_123_000
    assert _value(value["Keys"]) == {"id": "k1"}
    assert _value(value["NewImage"]) == {"id": "k1", "v": 2}
    assert _value(value["OldImage"]) == {"id": "k1", "v": 1, "ss": {"x"}}


async def test_an_ion_export_names_its_files_and_its_format(
    file_app: sk.App, tmp_path: Any
) -> None:
    users = await file_app.create_table("Users", partition_key="id")
    for i in range(3):
        await users.put({"id": f"k{i}", "v": i, "tags": {"a", f"t{i}"}})
    await users.put({**EVERY_TYPE, "id": "every"})
    result = await export_table(file_app.store, "Users", to=f"file://{tmp_path}/out", format="ion")
    assert (result.format, result.item_count) == ("ion", 4)
    base = tmp_path / "out" / "AWSDynamoDB" / result.export_id
    summary = json.loads((base / "manifest-summary.json").read_text())
    assert (summary["outputFormat"], summary["exportType"], summary["itemCount"]) == (
        "ION",
        "FULL_EXPORT",
        4,
    )
    (entry,) = [json.loads(x) for x in (base / "manifest-files.json").read_text().splitlines()]
    assert entry["dataFileS3Key"].startswith(f"AWSDynamoDB/{result.export_id}/data/")
    assert entry["dataFileS3Key"].endswith(".ion.gz")
    data = (tmp_path / "out" / entry["dataFileS3Key"]).read_bytes()
    assert entry["md5Checksum"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    read = {
        x["Item"]["id"]: _value(x["Item"])
        for x in simpleion.loads(gzip.decompress(data), single_value=False)
    }
    assert read["every"] == {**EVERY_TYPE, "id": "every"}
    assert read["k1"] == {"id": "k1", "v": 1, "tags": {"a", "t1"}}
    assert datetime.fromisoformat(summary["exportTime"]) <= datetime.now(UTC)
