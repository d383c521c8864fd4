"""Property tests of the hand-written Avro codec, with fastavro as the reference.

What must hold for every item of every DynamoDB type, nested:

- decode_image(encode_image(x)) is x, value for value and type for type;
- our bytes are byte-for-byte fastavro's for the same data, so any Avro reader
  reads them;
- plain fastavro, given only the ``.avsc`` file, decodes a whole record that
  encode_record wrote and every value is recoverable;
- the encoding is canonical: equal items, and only equal items, encode equally;
- no input bytes make the decoders raise anything but RecordFormatError.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamkit.exceptions import RecordFormatError
from streamkit.records import (
    FINGERPRINT,
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
    values_equal,
)
from streamkit.records._avro import lazy_record
from streamkit.records._record import datetime_from_ms
from tests.strategies import attribute_names, items, key_values, strings, values

AVSC = Path(__file__).parents[3] / "streamkit" / "records" / "change_record.avsc"
NS = "io.streamkit."

# --- fastavro's form of our data ------------------------------------------------------------


def to_fastavro(v: Any) -> tuple[str, dict[str, Any]]:
    """A normalized value as the (record name, record) union form fastavro writes."""
    t = type(v)
    if t is str:
        return (NS + "S", {"s": v})
    if t is Decimal:
        return (NS + "N", {"n": format(v, "f")})
    if t is bytes:
        return (NS + "B", {"b": v})
    if t is bool:
        return (NS + "BOOL", {"bool": v})
    if v is None:
        return (NS + "NULL", {})
    if t is dict:
        return (NS + "M", {"m": image_to_fastavro(v)})
    if t is list:
        return (NS + "L", {"l": [to_fastavro(x) for x in v]})
    first = next(iter(v))
    if type(first) is str:
        return (NS + "SS", {"ss": sorted(v)})
    if type(first) is Decimal:
        return (NS + "NS", {"ns": [format(x, "f") for x in sorted(v)]})
    return (NS + "BS", {"bs": sorted(v)})


def image_to_fastavro(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_fastavro(item[k]) for k in sorted(item)}


def from_fastavro(av: dict[str, Any]) -> Any:
    """A value as plain fastavro reads it (no record names) back to a normalized value.

    Each AttributeValue record has one field named after its type, except NULL which
    has none, so the field name alone tells the type, as in DynamoDB JSON.
    """
    if not av:
        return None
    ((tag, v),) = av.items()
    if tag == "s":
        return v
    if tag == "n":
        return Decimal(v)
    if tag == "b":
        return v
    if tag == "bool":
        return v
    if tag == "l":
        return [from_fastavro(x) for x in v]
    if tag == "m":
        return image_from_fastavro(v)
    if tag == "ss":
        return set(v)
    if tag == "ns":
        return {Decimal(x) for x in v}
    assert tag == "bs"
    return set(v)


def image_from_fastavro(image: dict[str, Any]) -> dict[str, Any]:
    return {k: from_fastavro(v) for k, v in image.items()}


# The map<AttributeValue> schema on its own, marked parsed as fastavro marks records.
IMAGE_SCHEMA = {
    **SCHEMA["fields"][3]["type"],
    "__fastavro_parsed": True,
    "__named_schemas": SCHEMA["__named_schemas"],
}


def fastavro_write(schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, datum)
    return out.getvalue()


def fastavro_read(schema: Any, data: bytes) -> Any:
    buf = io.BytesIO(data)
    value = fastavro.schemaless_reader(buf, schema, None)
    assert buf.tell() == len(data), "fastavro did not read the whole body"
    return value


# --- exact equality ---------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Type-exact, representation-exact equality (values_equal lets 1 == 1.0 Decimals pass)."""
    if type(a) is not type(b):
        return False
    if type(a) is Decimal:
        return bool(a.as_tuple() == b.as_tuple())
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is set:
        return a == b and all(
            any(same(x, y) for y in b) for x in a
        )  # same members, and each member of the same type/representation
    return bool(a == b)


# --- round trips ----------------------------------------------------------------------------


@given(items())
@example({})
@example({"a": [], "b": {}, "c": b"", "d": ""})
def test_image_round_trip_is_exact(item: dict[str, Any]) -> None:
    data = encode_image(item)
    assert type(data) is bytes
    back = decode_image(data)
    assert values_equal(back, item)
    assert same(back, item)
    assert decode_image(memoryview(data)) == back


@given(values())
def test_every_value_round_trips_under_any_name(value: Any) -> None:
    back = decode_image(encode_image({"v": value}))["v"]
    assert same(back, value)


@given(items(max_size=4))
def test_bytes_equal_fastavro_bytes(item: dict[str, Any]) -> None:
    assert encode_image(item) == fastavro_write(IMAGE_SCHEMA, image_to_fastavro(item))


@given(items(max_size=4))
def test_fastavro_reads_our_images(item: dict[str, Any]) -> None:
    back = image_from_fastavro(fastavro_read(IMAGE_SCHEMA, encode_image(item)))
    assert same(back, item)


@given(items(max_size=4))
def test_we_read_fastavro_images(item: dict[str, Any]) -> None:
    assert same(decode_image(fastavro_write(IMAGE_SCHEMA, image_to_fastavro(item))), item)


# --- canonical form -------------------------------------------------------------------------


@given(items(), st.randoms(use_true_random=False))
def test_entry_order_does_not_change_the_bytes(item: dict[str, Any], rnd: Any) -> None:
    def shuffled(v: Any) -> Any:
        if type(v) is dict:
            names = list(v)
            rnd.shuffle(names)
            return {k: shuffled(v[k]) for k in names}
        if type(v) is list:
            return [shuffled(x) for x in v]
        return v

    assert encode_image(shuffled(item)) == encode_image(item)


@given(items(max_size=3), items(max_size=3))
def test_equal_bytes_exactly_when_equal_items(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert (encode_image(a) == encode_image(b)) == values_equal(a, b)


# --- whole records, read by plain fastavro from the .avsc alone -----------------------------

event_names = st.sampled_from(["INSERT", "MODIFY", "REMOVE", "SNAPSHOT"])
views = st.sampled_from(list(StreamView))
longs = st.integers(-(2**63), 2**63 - 1)
# The times a Python datetime can hold, in milliseconds since the epoch (years 1 to 9999).
MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999
identities = st.one_of(
    st.none(), st.just(TTL_IDENTITY), st.builds(UserIdentity, strings(), strings())
)


@st.composite
def record_fields(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(
        st.dictionaries(
            attribute_names(),
            st.one_of(key_values("S"), key_values("N"), key_values("B")),
            min_size=1,
            max_size=2,
        )
    )
    new = draw(st.none() | items(max_size=4).map(lambda i: {**i, **keys}))
    old = draw(st.none() | items(max_size=4).map(lambda i: {**i, **keys}))
    return {
        "event_id": draw(strings()),
        "event_name": draw(event_names),
        "table": draw(strings(min_size=1)),
        "keys": keys,
        "new_image": new,
        "old_image": old,
        "changed": draw(st.none() | st.lists(attribute_names(), max_size=4, unique=True)),
        "sequence_number": draw(longs),
        "created_at_ms": draw(st.integers(MIN_MS, MAX_MS)),
        "size_bytes": draw(longs),
        "view_type": draw(views),
        "user_identity": draw(identities),
        "origin": draw(st.none() | strings()),
    }


def encode_fields(f: dict[str, Any]) -> bytes:
    identity = f["user_identity"]
    return encode_record(
        **{
            **f,
            "keys": encode_image(f["keys"]),
            "new_image": None if f["new_image"] is None else encode_image(f["new_image"]),
            "old_image": None if f["old_image"] is None else encode_image(f["old_image"]),
            "user_identity": None if identity is None else (identity.type, identity.principal),
        }
    )


def test_fingerprint_is_fastavros_from_the_avsc_alone() -> None:
    schema = json.loads(AVSC.read_text(encoding="utf-8"))
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    assert bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")) == FINGERPRINT


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record_fields())
def test_plain_fastavro_decodes_every_record(f: dict[str, Any]) -> None:
    data = encode_fields(f)
    schema = json.loads(AVSC.read_text(encoding="utf-8"))
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    got = fastavro_read(fastavro.parse_schema(schema), data[10:])

    assert got["event_id"] == f["event_id"]
    assert got["event_name"] == f["event_name"]
    assert got["table"] == f["table"]
    assert same(image_from_fastavro(got["keys"]), f["keys"])
    for name in ("new_image", "old_image"):
        if f[name] is None:
            assert got[name] is None
        else:
            assert same(image_from_fastavro(got[name]), f[name])
    assert got["changed"] == (None if f["changed"] is None else sorted(f["changed"]))
    assert got["sequence_number"] == f["sequence_number"]
    # fastavro applies the timestamp-millis logical type
    assert got["created_at"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        milliseconds=f["created_at_ms"]
    )
    assert got["size_bytes"] == f["size_bytes"]
    assert got["view_type"] == f["view_type"].value
    identity = f["user_identity"]
    assert got["user_identity"] == (
        None if identity is None else {"type": identity.type, "principal": identity.principal}
    )
    assert got["origin"] == f["origin"]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record_fields())
def test_record_bytes_equal_fastavro_bytes(f: dict[str, Any]) -> None:
    identity = f["user_identity"]
    datum = {
        **f,
        "keys": image_to_fastavro(f["keys"]),
        "new_image": None if f["new_image"] is None else image_to_fastavro(f["new_image"]),
        "old_image": None if f["old_image"] is None else image_to_fastavro(f["old_image"]),
        "changed": None if f["changed"] is None else sorted(f["changed"]),
        "created_at": f["created_at_ms"],
        "view_type": f["view_type"].value,
        "user_identity": None
        if identity is None
        else {"type": identity.type, "principal": identity.principal},
    }
    del datum["created_at_ms"]
    assert encode_fields(f)[10:] == fastavro_write(SCHEMA, datum)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record_fields())
def test_decode_record_inverts_encode_record(f: dict[str, Any]) -> None:
    record = decode_record(encode_fields(f))
    assert record.event_id == f["event_id"]
    assert record.event_name == f["event_name"]
    assert record.table == f["table"]
    assert same(dict(record.keys), f["keys"])
    for name in ("new_image", "old_image"):
        image = getattr(record, name)
        assert (image is None) == (f[name] is None)
        if image is not None:
            assert same(dict(image), f[name])
    assert record.changed == (None if f["changed"] is None else tuple(sorted(f["changed"])))
    assert record.sequence_number == f["sequence_number"]
    assert record.created_at_ms == f["created_at_ms"]
    assert record.created_at.tzinfo is UTC
    assert record.size_bytes == f["size_bytes"]
    assert record.view_type is f["view_type"]
    assert record.user_identity == f["user_identity"]
    assert record.origin == f["origin"]
    # and back again, byte for byte
    assert encode_change_record(record) == encode_fields(f)


@given(st.integers(MIN_MS, MAX_MS) | st.integers(0, 2**32 * 1000 + 10**6))
@example(0)
@example((1 << 32) * 1000 - 1)
@example((1 << 32) * 1000)
def test_millisecond_times_are_exact(ms: int) -> None:
    when = datetime_from_ms(ms)
    assert when == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert when.tzinfo is UTC


# --- nothing but RecordFormatError ----------------------------------------------------------


def _decode_any(data: bytes) -> None:
    for decode in (decode_image, decode_record):
        with contextlib.suppress(RecordFormatError):
            decode(data)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_record_format_error(data: bytes) -> None:
    _decode_any(data)
    _decode_any(b"\xc3\x01" + FINGERPRINT + data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record_fields(), st.data())
def test_damaged_records_raise_only_record_format_error(f: dict[str, Any], data: Any) -> None:
    good = encode_fields(f)
    cut = data.draw(st.integers(0, len(good) - 1), label="cut")
    with pytest.raises(RecordFormatError):
        decode_record(good[:cut])
    # flip, insert or delete a byte of the body: decodes to something, or RecordFormatError
    at = data.draw(st.integers(10, len(good) - 1), label="at")
    byte = data.draw(st.integers(0, 255), label="byte")
    for damaged in (
        good[:at] + bytes([byte]) + good[at + 1 :],
        good[:at] + bytes([byte]) + good[at:],
        good[:at] + good[at + 1 :],
    ):
        try:
            record = decode_record(damaged)
        except RecordFormatError:
            continue
        assert isinstance(record, ChangeRecord)


@given(items(max_size=4), st.data())
def test_damaged_images_raise_only_record_format_error(item: dict[str, Any], data: Any) -> None:
    good = encode_image(item)
    if len(good) > 1:
        cut = data.draw(st.integers(1, len(good) - 1), label="cut")
        with pytest.raises(RecordFormatError):
            decode_image(good[:cut])
    at = data.draw(st.integers(0, len(good) - 1), label="at")
    byte = data.draw(st.integers(0, 255), label="byte")
    for damaged in (good[:at] + bytes([byte]) + good[at + 1 :], good + bytes([byte])):
        with contextlib.suppress(RecordFormatError):
            decode_image(damaged)


# --- DynamoDB JSON of random records --------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record_fields())
def test_dynamodb_json_carries_the_images_the_view_includes(f: dict[str, Any]) -> None:
    # as the storage layer writes them: sequence numbers count up from zero
    f = {**f, "sequence_number": abs(f["sequence_number"]) % 2**63}
    record = decode_record(encode_fields(f))
    out = record.to_dynamodb_json()
    stream = out["dynamodb"]
    view = f["view_type"]
    assert ("NewImage" in stream) == (f["new_image"] is not None and view.has_new_image)
    assert ("OldImage" in stream) == (f["old_image"] is not None and view.has_old_image)
    assert stream["StreamViewType"] == view.value
    assert stream["SequenceNumber"] == str(f["sequence_number"])
    assert stream["SequenceNumber"].isdigit()
    assert stream["ApproximateCreationDateTime"] == f["created_at_ms"] // 1000
    assert ("userIdentity" in out) == (f["user_identity"] is not None)
    json.dumps(out)  # plain JSON all the way down
    back = ChangeRecord.from_dynamodb_json(out, table=record.table)
    assert same(dict(back.keys), f["keys"])
    if "NewImage" in stream:
        assert back.new_image is not None
        assert same(dict(back.new_image), f["new_image"])
    if "OldImage" in stream:
        assert back.old_image is not None
        assert same(dict(back.old_image), f["old_image"])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(record_fields(), st.sampled_from(list(ChangeRecord.__dataclass_fields__)))
def test_a_lazy_record_is_the_decoded_record(f: dict[str, Any], first: str) -> None:
    data = encode_fields(f)
    decoded = decode_record(data)
    lazy = lazy_record(data)
    assert isinstance(lazy, ChangeRecord)
    # whichever field is read first, every field then equals the eager decoder's
    assert getattr(lazy, first) == getattr(decoded, first)
    for name in ChangeRecord.__dataclass_fields__:
        assert getattr(lazy, name) == getattr(decoded, name), name
    assert lazy == decoded
    assert decoded == lazy
    assert hash(lazy) == hash(decoded)
    if decoded.sequence_number >= 0:  # the constructor (which unpickling calls) wants that
        assert pickle.loads(pickle.dumps(lazy)) == decoded


@given(st.binary(max_size=40))
def test_a_lazy_record_of_bad_bytes_fails_typed(data: bytes) -> None:
    try:
        record = lazy_record(b"\xc3\x01" + FINGERPRINT + data)
    except RecordFormatError:
        return
    try:
        _ = record.event_name
    except RecordFormatError:
        return
