"""The Avro codec for change records: a hand-written encoder and decoder for one fixed schema.

The schema is ``change_record.avsc`` beside this module. Item images are
``map<AttributeValue>``, where AttributeValue is a union of one small record per
DynamoDB type. Capture never re-encodes an image: the storage layer encodes an
item once with :func:`encode_image`, stores those bytes, and at commit
:func:`encode_record` splices the stored bytes into the record body, which is
possible because an Avro record's encoding is just its fields' encodings in
order, and a ``["null", map]`` union is one branch byte and then the map.

fastavro reads the schema and computes its fingerprint; the hot path is written
out by hand because fastavro's generic encoder costs tens of microseconds per
nested value. Measured when the schema was chosen (fastavro 1.13's
``schemaless_writer`` / ``schemaless_reader``, Python 3.11, one core, a MODIFY
record of a 5-attribute item with both images): AttributeValue as a union of one
named record per type, as here, 15,000 encodes/s and 31,000 decodes/s (204 bytes);
as a record of nullable fields, 6,300 and 13,100/s (303 bytes); images as
DynamoDB-JSON strings, 52,300 and 88,400/s (335 bytes; ``json.dumps`` of the whole
record: 100,600/s). Property tests check that the bytes are exactly fastavro's
and that plain fastavro decodes every record.

Binary encoding, per the Avro specification: ``long`` (and lengths, counts,
union branch indexes, enum indexes) are zigzag varints; ``string`` and
``bytes`` are a length and then the bytes; maps and arrays are blocks of
``count, items...`` ended by a zero count. Images are written canonically:
map entries sorted by name, set members sorted, numbers in DynamoDB's plain
text. Two items are semantically equal exactly when their encodings are equal.

The codec is split by concern: :mod:`._avro_schema` (the schema, its fingerprint and the
check that the codec matches it), :mod:`._avro_encode` (the encoder), :mod:`._avro_decode`
(the decoder). This module re-exports their public functions and holds the readers that
take only part of a record: :func:`lazy_record`, :func:`replica_fields` and
:func:`record_new_image`.
"""

from __future__ import annotations

from typing import Any, cast

from streamkit.exceptions import RecordFormatError
from streamkit.records._avro_decode import (
    _DECODE_ERRORS,
    _EVENT_BY_BYTE,
    _as_bytes,
    _bad_header,
    _dec_map,
    _dec_other,
    _Malformed,
    _read_count,
    _read_long,
    _read_size,
    _read_str,
    _reason,
    decode_image,
    decode_record,
)
from streamkit.records._avro_encode import encode_change_record, encode_image, encode_record
from streamkit.records._avro_schema import (
    _HEADER,
    _HEADER_LEN,
    FINGERPRINT,
    MARKER,
    PARSING_CANONICAL_FORM,
    SCHEMA,
    schema_text,
)
from streamkit.records._record import TTL_IDENTITY, ChangeRecord, UserIdentity

__all__ = (
    "FINGERPRINT",
    "MARKER",
    "PARSING_CANONICAL_FORM",
    "SCHEMA",
    "decode_image",
    "decode_record",
    "encode_change_record",
    "encode_image",
    "encode_record",
    "schema_text",
)


def record_new_image(data: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """The new image of an encoded change record, as image bytes (the stored item's
    encoding) and decoded, without decoding the rest; None when it has none.

    Raises:
        RecordFormatError: not a well-formed change record of this schema.
    """
    if data[:_HEADER_LEN] != _HEADER:
        _bad_header(data)
    try:
        _, pos = _read_str(data, _HEADER_LEN)  # event id
        pos += 1  # event name
        _, pos = _read_str(data, pos)  # table
        pos = _skip_map(data, pos)  # keys
        branch = data[pos]
        if not branch:
            return None
        if branch != 2:
            raise _Malformed(f"bad union branch for new_image (encoded {branch})")
        image, end = _dec_map(data, pos + 1)
    except _DECODE_ERRORS as e:
        raise RecordFormatError(f"malformed or truncated change record: {_reason(e)}") from e
    return data[pos + 1 : end], image


def _skip_map(data: bytes, pos: int) -> int:
    """The position after an encoded map, without building its values."""
    while True:
        count, pos = _read_count(data, pos)
        if not count:
            return pos
        for _ in range(count):
            n, pos = _read_size(data, pos)
            pos = _skip_value(data, pos + n)


def _skip_value(data: bytes, pos: int) -> int:
    tag = data[pos]
    pos += 1
    if tag in (0, 2, 4):  # S, N, B: a length and its bytes
        n, pos = _read_size(data, pos)
        return pos + n
    if tag == 8:
        return pos
    if tag == 6:
        return pos + 1
    if tag == 18:
        return _skip_map(data, pos)
    if tag in (10, 12, 14, 16):  # sets and lists: blocks of values
        while True:
            count, pos = _read_count(data, pos)
            if not count:
                return pos
            for _ in range(count):
                if tag == 16:
                    pos = _skip_value(data, pos)
                else:
                    n, pos = _read_size(data, pos)
                    pos += n
    return _dec_other(data, pos, tag)[1]


def replica_fields(
    data: bytes,
) -> tuple[
    str,
    bytes,
    dict[str, Any],
    bytes | None,
    dict[str, Any] | None,
    int,
    UserIdentity | None,
    str | None,
]:
    """What a global table's replicator needs of an encoded change record, without the
    rest: ``(event name, keys as image bytes, keys, new image bytes, new image,
    created_at ms, user identity, origin)``. The old image is skipped, not decoded;
    image bytes are the stored item's encoding (nothing to re-encode).

    Raises:
        RecordFormatError: not a well-formed change record of this schema.
    """
    if data[:_HEADER_LEN] != _HEADER:
        _bad_header(data)
    try:
        _, pos = _read_str(data, _HEADER_LEN)  # event id
        event_name = _EVENT_BY_BYTE[data[pos]]
        _, pos = _read_str(data, pos + 1)  # table
        start = pos
        keys, pos = _dec_map(data, pos)
        keys_data = data[start:pos]
        new_data: bytes | None = None
        new_image: dict[str, Any] | None = None
        branch = data[pos]
        if branch:
            if branch != 2:
                raise _Malformed(f"bad union branch for new_image (encoded {branch})")
            new_image, end = _dec_map(data, pos + 1)
            new_data = data[pos + 1 : end]
            pos = end
        else:
            pos += 1
        branch = data[pos]
        pos = _skip_map(data, pos + 1) if branch else pos + 1
        branch = data[pos]
        pos += 1
        if branch:  # changed: an array of names
            while True:
                count, pos = _read_count(data, pos)
                if not count:
                    break
                for _ in range(count):
                    n, pos = _read_size(data, pos)
                    pos += n
        _, pos = _read_long(data, pos)  # sequence number
        created_ms, pos = _read_long(data, pos)
        _, pos = _read_long(data, pos)  # size
        branch = data[pos + 1]
        pos += 2
        identity: UserIdentity | None = None
        if branch:
            identity_type, pos = _read_str(data, pos)
            principal, pos = _read_str(data, pos)
            identity = UserIdentity(identity_type, principal)
            if identity == TTL_IDENTITY:
                identity = TTL_IDENTITY
        origin: str | None = None
        if data[pos]:
            origin, pos = _read_str(data, pos + 1)
        else:
            pos += 1
    except _DECODE_ERRORS as e:
        raise RecordFormatError(f"malformed or truncated change record: {_reason(e)}") from e
    if pos != len(data):
        raise RecordFormatError("malformed change record: its length does not match")
    return event_name, keys_data, keys, new_data, new_image, created_ms, identity, origin


def raw_record(record: ChangeRecord) -> bytes | None:
    """The encoded bytes of a record from :func:`lazy_record` (None for any other)."""
    if type(record) is _LazyRecord:
        return cast(bytes, object.__getattribute__(record, "_raw"))
    return None


class _LazyRecord(ChangeRecord):
    """A ChangeRecord whose bytes are decoded on first use of any field.

    The handler runtime hands these to handlers: a handler that looks only at some
    records (or none of their fields) does not pay for decoding the rest. It is a
    ``ChangeRecord`` in every way: equal to the decoded record, same hash, pickles as
    one; a malformed record raises ``RecordFormatError`` on first access.
    """

    __slots__ = ("_raw",)

    def __getattr__(self, name: str) -> Any:
        # called only for slots not filled yet: decode everything, once
        if name not in _FIELD_NAMES:
            raise AttributeError(name)
        full = decode_record(object.__getattribute__(self, "_raw"))
        for field, setter in zip(_FIELDS, _SETTERS, strict=True):
            setter(self, getattr(full, field))
        return getattr(full, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChangeRecord):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    def __hash__(self) -> int:
        return ChangeRecord.__hash__(self)

    def __repr__(self) -> str:
        return ChangeRecord.__repr__(self).replace(type(self).__qualname__, "ChangeRecord", 1)


_FIELDS = tuple(ChangeRecord.__dataclass_fields__)
_FIELD_NAMES = frozenset(_FIELDS)
_SETTERS = tuple(getattr(ChangeRecord, f).__set__ for f in _FIELDS)


def lazy_record(data: bytes) -> ChangeRecord:
    """A record that decodes ``data`` (single-object encoding) when a field is first read.

    The header (marker and schema fingerprint) is checked now.

    Raises:
        RecordFormatError: not a single-object encoded record of this schema.
    """
    if type(data) is not bytes:
        data = _as_bytes(data)
    if data[:_HEADER_LEN] != _HEADER:
        _bad_header(data)
    record = object.__new__(_LazyRecord)
    object.__setattr__(record, "_raw", data)
    return record
