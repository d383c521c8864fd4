"""The Avro codec by example: exact bytes, framing, errors and the shipped schema."""

from __future__ import annotations

import importlib.resources
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from streamkit.exceptions import RecordFormatError, ValidationError
from streamkit.records import (
    FINGERPRINT,
    MARKER,
    PARSING_CANONICAL_FORM,
    SCHEMA,
    TTL_IDENTITY,
    ChangeRecord,
    StreamView,
    UserIdentity,
    decode_image,
    decode_record,
    encode_change_record,
    encode_image,
    encode_record,
    normalize_item,
    schema_text,
)

AVSC = Path(__file__).parents[3] / "streamkit" / "records" / "change_record.avsc"


def modify_fields(**changes: Any) -> dict[str, Any]:
    old = normalize_item({"UserID": "123", "Name": "John Doe", "Email": "john@example.com"})
    new = {**old, "Email": "j@example.com"}
    fields: dict[str, Any] = {
        "event_id": "e1",
        "event_name": "MODIFY",
        "table": "Users",
        "keys": encode_image({"UserID": "123"}),
        "new_image": encode_image(new),
        "old_image": encode_image(old),
        "changed": ["Email"],
        "sequence_number": 42,
        "created_at_ms": 1_767_225_600_123,
        "size_bytes": 99,
        "view_type": "NEW_AND_OLD_IMAGES",
        "user_identity": None,
        "origin": None,
    }
    fields.update(changes)
    return fields


# --- the schema -------------------------------------------------------------------------------


def test_schema_text_is_the_shipped_avsc() -> None:
    assert schema_text() == AVSC.read_text(encoding="utf-8")
    shipped = importlib.resources.files("streamkit.records") / "change_record.avsc"
    assert shipped.is_file()
    assert json.loads(schema_text())["name"] == "ChangeRecord"


def test_schema_is_parsed_by_fastavro() -> None:
    assert SCHEMA["name"] == "io.streamkit.ChangeRecord"
    assert [f["name"] for f in SCHEMA["fields"]] == [
        "event_id",
        "event_name",
        "table",
        "keys",
        "new_image",
        "old_image",
        "changed",
        "sequence_number",
        "created_at",
        "size_bytes",
        "view_type",
        "user_identity",
        "origin",
    ]


def test_every_field_and_type_is_documented() -> None:
    raw = json.loads(schema_text())
    assert raw["doc"]
    assert all(f.get("doc") for f in raw["fields"])
    named = [t for t in SCHEMA["__named_schemas"].values() if t["type"] in ("record", "enum")]
    assert all(t.get("doc") for t in named)


def test_attribute_value_branches_are_in_their_fixed_order() -> None:
    # Readers of old records depend on these indexes: new types may only be appended.
    branches = SCHEMA["fields"][3]["type"]["values"]
    names = [b["name"] if isinstance(b, dict) else b for b in branches]
    assert names == [
        f"io.streamkit.{t}" for t in ("S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M")
    ]
    for field in ("new_image", "old_image"):
        nullable = SCHEMA["fields"][[f["name"] for f in SCHEMA["fields"]].index(field)]
        assert nullable["type"][1]["values"] == names
        assert nullable["default"] is None


def test_fingerprint_is_crc64_avro_of_the_canonical_form() -> None:
    assert len(FINGERPRINT) == 8
    assert MARKER == b"\xc3\x01"
    assert PARSING_CANONICAL_FORM.startswith('{"name":"io.streamkit.ChangeRecord","type":"record"')
    assert "doc" not in PARSING_CANONICAL_FORM  # docs never change the fingerprint
    expected = fastavro.schema.fingerprint(PARSING_CANONICAL_FORM, "CRC-64-AVRO")
    assert FINGERPRINT.hex() == expected


def test_crc64_avro_matches_the_specification() -> None:
    # The Avro specification's reference algorithm, written out, on the canonical form.
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in PARSING_CANONICAL_FORM.encode():
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    assert fp.to_bytes(8, "little") == FINGERPRINT


# --- images: exact bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param("x", "00 02 78", id="S"),
        pytest.param("", "00 00", id="S-empty"),
        pytest.param("é", "00 04 c3a9", id="S-utf8"),
        pytest.param(Decimal("42"), "02 04 3432", id="N"),
        pytest.param(Decimal("-0.5"), "02 08 2d302e35", id="N-fraction"),
        pytest.param(Decimal("100"), "02 06 313030", id="N-plain-not-1E+2"),
        pytest.param(b"\x00\xff", "04 04 00ff", id="B"),
        pytest.param(True, "06 01", id="BOOL-true"),
        pytest.param(False, "06 00", id="BOOL-false"),
        pytest.param(None, "08", id="NULL"),
        pytest.param({"b", "a"}, "0a 04 0261 0262 00", id="SS-sorted"),
        pytest.param({Decimal(10), Decimal(9)}, "0c 04 0239 043130 00", id="NS-numeric-order"),
        pytest.param({b"\x02", b"\x01"}, "0e 04 0201 0202 00", id="BS-sorted"),
        pytest.param([], "10 00", id="L-empty"),
        pytest.param(["x", None], "10 04 00 0278 08 00", id="L"),
        pytest.param({}, "12 00", id="M-empty"),
        pytest.param({"b": None, "a": True}, "12 04 0261 0601 0262 08 00", id="M-sorted"),
    ],
)
def test_each_type_encodes_to_known_bytes(value: Any, encoded: str) -> None:
    # an image {"v": value}: one entry, the name "v", the value, the end of the map
    expected = bytes.fromhex("02 0276" + encoded.replace(" ", "") + "00")
    assert encode_image({"v": value}) == expected
    assert decode_image(expected) == {"v": value}


def test_empty_image_is_one_zero_byte() -> None:
    assert encode_image({}) == b"\x00"
    assert decode_image(b"\x00") == {}


def test_long_values_use_multi_byte_lengths() -> None:
    item = {"s": "x" * 5000, "b": bytes(range(256)) * 20, "l": [None] * 300, "n" * 70: True}
    data = encode_image(item)
    assert decode_image(data) == item
    assert data == _fastavro_image_bytes(item)


def _fastavro_image_bytes(item: dict[str, Any]) -> bytes:
    from tests.unit.records.test_avro_properties import IMAGE_SCHEMA, image_to_fastavro

    out = io.BytesIO()
    fastavro.schemaless_writer(out, IMAGE_SCHEMA, image_to_fastavro(item))
    return out.getvalue()


def test_extreme_numbers_are_written_in_plain_notation() -> None:
    item = normalize_item(
        {"tiny": Decimal("1E-130"), "huge": Decimal("9.9E+125"), "neg": Decimal("-1E-7")}
    )
    data = encode_image(item)
    assert b"E" not in data
    assert b"0." + b"0" * 129 + b"1" in data
    assert decode_image(data) == item
    assert decode_image(data)["tiny"].as_tuple() == item["tiny"].as_tuple()


def test_equal_items_encode_equally_whatever_their_order_or_spelling() -> None:
    a = normalize_item({"x": 1, "y": {"q": [1.0, "s"], "p": {"a", "b"}}})
    b = normalize_item({"y": {"p": {"b", "a"}, "q": [Decimal("1.00"), "s"]}, "x": Decimal("1")})
    assert encode_image(a) == encode_image(b)


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"n": 1}, id="int-not-normalized"),
        pytest.param({"n": 1.5}, id="float-not-normalized"),
        pytest.param({"t": (1, 2)}, id="tuple"),
        pytest.param({"s": set()}, id="empty-set"),
        pytest.param({"s": {"a", b"b"}}, id="mixed-set"),
        pytest.param({"s": {Decimal(1), 2}}, id="set-with-int"),
        pytest.param({"s": "\ud800"}, id="lone-surrogate"),
        pytest.param({"o": object()}, id="object"),
        pytest.param({"n": Decimal("NaN")}, id="nan"),
        pytest.param({"n": Decimal("-Infinity")}, id="infinity"),
        pytest.param({"n": Decimal("1E+5000")}, id="out-of-range"),
        pytest.param({"s": {Decimal("NaN")}}, id="nan-in-set"),
        pytest.param({"s": {Decimal("NaN"), Decimal(1)}}, id="nan-among-numbers"),
        pytest.param({"l": [Decimal("1E-131")]}, id="too-small-in-list"),
    ],
)
def test_encode_image_refuses_what_is_not_normalized(item: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        encode_image(item)


# --- images: bad bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x02\x02v", id="cut-after-name"),
        pytest.param(b"\x02\x02v\x00\x10ab\x00", id="string-runs-past-the-end"),
        pytest.param(b"\x02\x02v\x08\x00\x00", id="trailing-bytes"),
        pytest.param(b"\x02\x02v\x14\x00", id="unknown-branch"),
        pytest.param(b"\x02\x02v\x06\x02\x00", id="bool-not-0-or-1"),
        pytest.param(b"\x02\x02v\x02\x06NaN\x00", id="nan"),
        pytest.param(b"\x02\x02v\x02\x06abc\x00", id="not-a-number"),
        pytest.param(b"\x02\x02v\x00\x02\xff\x00", id="bad-utf8"),
        pytest.param(b"\x02\x01v\x08\x00", id="negative-length"),
        pytest.param(b"\xfe\xff\xff\xff\x0f\x00", id="count-larger-than-data"),
        pytest.param(b"\x02\x02v\x0a\x00\x00", id="empty-set"),
        pytest.param(b"\x02\x02v\x0a\x04\x02a\x02a\x00\x00", id="duplicate-set-members"),
        pytest.param(b"\x02\x02v" + b"\x10\x02" * 5000 + b"\x08", id="nested-too-deeply"),
        pytest.param(b"\x80" * 11, id="varint-too-long"),
    ],
)
def test_bad_images_raise_record_format_error(data: bytes) -> None:
    with pytest.raises(RecordFormatError):
        decode_image(data)


def test_negative_block_counts_are_read() -> None:
    # Avro lets a writer give a block's count as negative, followed by its size in bytes.
    data = b"\x01\x06\x02v\x08" + b"\x00"  # count -1, block of 3 bytes, then the end
    assert decode_image(data) == {"v": None}
    from tests.unit.records.test_avro_properties import IMAGE_SCHEMA, fastavro_read

    assert fastavro_read(IMAGE_SCHEMA, data) == {"v": {}}


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode_image({"a": "b"})
    assert decode_image(bytearray(data)) == decode_image(memoryview(data)) == {"a": "b"}


# --- records ----------------------------------------------------------------------------------


def test_record_is_marker_fingerprint_body() -> None:
    data = encode_record(**modify_fields())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == FINGERPRINT
    body: Any = fastavro.schemaless_reader(io.BytesIO(data[10:]), SCHEMA, None)
    assert body["event_name"] == "MODIFY"
    assert body["created_at"] == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)


def test_stored_image_bytes_are_spliced_in_unchanged() -> None:
    fields = modify_fields()
    data = encode_record(**fields)
    assert fields["keys"] + b"\x02" + fields["new_image"] + b"\x02" + fields["old_image"] in data


def test_decode_record_gives_a_change_record() -> None:
    record = decode_record(encode_record(**modify_fields()))
    assert record.event_name == "MODIFY"
    assert record.keys == {"UserID": "123"}
    assert record.new_image is not None and record.new_image["Email"] == "j@example.com"
    assert record.old_image is not None and record.old_image["Email"] == "john@example.com"
    assert record.changed == ("Email",)
    assert record.sequence_number == 42
    assert record.created_at == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert record.view_type is StreamView.NEW_AND_OLD_IMAGES
    assert record.user_identity is None
    assert record.origin is None


def test_ttl_identity_and_origin_round_trip() -> None:
    fields = modify_fields(
        event_name="REMOVE",
        new_image=None,
        changed=None,
        user_identity=("Service", "streamkit.ttl"),
        origin="eu-west-1",
    )
    record = decode_record(encode_record(**fields))
    assert record.user_identity is TTL_IDENTITY
    assert record.origin == "eu-west-1"
    assert record.new_image is None


def test_changed_is_written_sorted() -> None:
    record = decode_record(encode_record(**modify_fields(changed=["b", "a", "c"])))
    assert record.changed == ("a", "b", "c")
    assert decode_record(encode_record(**modify_fields(changed=[]))).changed == ()


def test_encode_change_record_round_trips() -> None:
    record = ChangeRecord(
        event_id="e",
        event_name="INSERT",
        table="T",
        keys={"k": b"\x01"},
        new_image={"k": b"\x01", "n": Decimal("1.5"), "s": {"x"}, "l": [{"m": None}]},
        old_image=None,
        changed=None,
        sequence_number=7,
        created_at=datetime(2026, 5, 1, 12, 0, 0, 5000, tzinfo=UTC),
        size_bytes=30,
        view_type=StreamView.NEW_IMAGE,
        user_identity=UserIdentity("Service", "replicator"),
        origin="us-east-1",
    )
    assert decode_record(encode_change_record(record)) == record


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"event_name": "UPSERT"}, id="unknown-event"),
        pytest.param({"view_type": "ALL"}, id="unknown-view"),
        pytest.param({"sequence_number": 2**63}, id="long-overflow"),
        pytest.param({"created_at_ms": -(2**63) - 1}, id="long-underflow"),
        pytest.param({"changed": "Email"}, id="changed-as-str"),
    ],
)
def test_encode_record_refuses_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        encode_record(**modify_fields(**changes))


def test_view_type_may_be_a_stream_view() -> None:
    data = encode_record(**modify_fields(view_type=StreamView.KEYS_ONLY))
    assert decode_record(data).view_type is StreamView.KEYS_ONLY


# --- records: bad bytes -----------------------------------------------------------------------


def test_wrong_marker_is_refused() -> None:
    data = encode_record(**modify_fields())
    with pytest.raises(RecordFormatError, match="single-object"):
        decode_record(b"\x00" + data[1:])
    with pytest.raises(RecordFormatError, match="single-object"):
        decode_record(b"")


def test_unknown_fingerprint_is_refused_with_both_fingerprints() -> None:
    data = encode_record(**modify_fields())
    other = bytes(8)
    with pytest.raises(RecordFormatError, match=f"{other.hex()}.*{FINGERPRINT.hex()}"):
        decode_record(MARKER + other + data[10:])


def test_every_truncation_is_refused() -> None:
    data = encode_record(**modify_fields(user_identity=("a", "b"), origin="r"))
    for end in range(len(data)):
        with pytest.raises(RecordFormatError):
            decode_record(data[:end])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(RecordFormatError, match="trailing"):
        decode_record(encode_record(**modify_fields()) + b"\x00")


@pytest.mark.parametrize(
    ("offset", "byte"),
    [
        pytest.param(13, 0x10, id="event-name-out-of-range"),
        pytest.param(13, 0x01, id="event-name-negative"),
    ],
)
def test_bad_enum_is_refused(offset: int, byte: int) -> None:
    data = bytearray(encode_record(**modify_fields()))
    assert data[10:13] == b"\x04e1" and data[13] == 0x02  # event_id "e1", then MODIFY
    data[offset] = byte
    with pytest.raises(RecordFormatError):
        decode_record(bytes(data))


def test_record_format_error_is_a_validation_error() -> None:
    assert issubclass(RecordFormatError, ValidationError)
    assert issubclass(RecordFormatError, ValueError)
