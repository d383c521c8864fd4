"""``replica_fields``: the few fields a global table's replicator reads, equal to what the
full decoder gives (the old image skipped, the new image's bytes as stored)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from streamkit.exceptions import RecordFormatError
from streamkit.records import TTL_IDENTITY, decode_record, encode_image, encode_record
from streamkit.records._avro import lazy_record, raw_record, replica_fields

OLD = {
    "K": "a",
    "n": Decimal(7),
    "b": b"\x00\x01",
    "ok": True,
    "nil": None,
    "m": {"x": [Decimal(1), "y", {"z": {"q"}}]},
    "ns": {Decimal(1), Decimal(2)},
    "bs": {b"a", b"b"},
    "long": "x" * 300,
}
NEW = {"K": "a", "n": Decimal(8), "pad": "p" * 70}


def _record(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "event_id": "e1",
        "event_name": "MODIFY",
        "table": "Items",
        "keys": encode_image({"K": "a"}),
        "new_image": encode_image(NEW),
        "old_image": encode_image(OLD),
        "changed": sorted(set(OLD) | set(NEW)),
        "sequence_number": 123_456_789,
        "created_at_ms": 1_767_225_600_123,
        "size_bytes": 999,
        "view_type": "NEW_AND_OLD_IMAGES",
        "user_identity": None,
        "origin": "us-east-1",
    }
    fields.update(changes)
    return encode_record(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="modify"),
        pytest.param({"event_name": "INSERT", "old_image": None, "changed": None}, id="insert"),
        pytest.param(
            {
                "event_name": "REMOVE",
                "new_image": None,
                "changed": None,
                "user_identity": ("Service", "dynamodb.amazonaws.com"),
            },
            id="ttl-remove",
        ),
        pytest.param({"origin": None}, id="no-origin"),
    ],
)
def test_replica_fields_agree_with_the_full_decoder(changes: dict[str, Any]) -> None:
    data = _record(**changes)
    full = decode_record(data)
    event, kdata, keys, new_data, new, created_ms, identity, origin = replica_fields(data)
    assert event == full.event_name
    assert keys == dict(full.keys) and kdata == encode_image(keys)
    if full.new_image is None:
        assert new is None and new_data is None
    else:
        assert new == dict(full.new_image) and new_data == encode_image(new)
    assert created_ms == full.created_at_ms
    assert identity == full.user_identity
    if identity is not None and identity == TTL_IDENTITY:
        assert identity is TTL_IDENTITY
    assert origin == full.origin


def test_raw_record_only_of_lazy_records() -> None:
    data = _record()
    assert raw_record(lazy_record(data)) == data
    assert raw_record(decode_record(data)) is None


@pytest.mark.parametrize("cut", [1, 5, 40])
def test_a_truncated_record_is_refused(cut: int) -> None:
    with pytest.raises(RecordFormatError):
        replica_fields(_record()[:-cut])
