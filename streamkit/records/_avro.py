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
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, NoReturn, cast

import fastavro
import fastavro.schema

from streamkit.exceptions import RecordFormatError, ValidationError
from streamkit.records._record import (
    _FAST_MS_LIMIT,
    EVENT_NAMES,
    TTL_IDENTITY,
    ChangeRecord,
    StreamView,
    UserIdentity,
    _trusted_record,
    datetime_from_ms,
)
from streamkit.records._values import canonical_number

_fromtimestamp = datetime.fromtimestamp

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


def schema_text() -> str:
    """The Avro schema of change records (the ``.avsc`` file shipped in the package)."""
    resource = importlib.resources.files("streamkit.records").joinpath("change_record.avsc")
    return resource.read_text(encoding="utf-8")


SCHEMA: Final[dict[str, Any]] = cast(
    "dict[str, Any]", fastavro.parse_schema(json.loads(schema_text()))
)
"""The schema, parsed by fastavro (pass it to ``fastavro.schemaless_reader``)."""

PARSING_CANONICAL_FORM: Final[str] = fastavro.schema.to_parsing_canonical_form(SCHEMA)
"""The schema's Parsing Canonical Form, the text its fingerprint is taken of."""

FINGERPRINT: Final[bytes] = bytes.fromhex(
    # fastavro gives the CRC-64-AVRO fingerprint as the hex of its little-endian bytes,
    # which is the byte order the single-object encoding wants.
    fastavro.schema.fingerprint(PARSING_CANONICAL_FORM, "CRC-64-AVRO")
)
"""The schema's CRC-64-AVRO fingerprint, 8 bytes little-endian."""

MARKER: Final = b"\xc3\x01"
"""The two bytes that open every Avro single-object encoding."""

# The fingerprint of the schema the code below was written for. Editing the .avsc in a way
# that changes the wire format without changing the codec would make streamkit write bodies
# that do not match the fingerprint it puts in front of them: refuse to start instead.
_CODEC_FINGERPRINT: Final = bytes.fromhex("7499467ae1e085de")
if FINGERPRINT != _CODEC_FINGERPRINT:  # pragma: no cover - guards future edits
    raise RuntimeError(
        f"change_record.avsc has fingerprint {FINGERPRINT.hex()}, but the hand-written codec "
        f"in {__name__} was written for {_CODEC_FINGERPRINT.hex()}: update the codec"
    )

_HEADER: Final = MARKER + FINGERPRINT
_HEADER_LEN: Final = len(_HEADER)

# --- encoding ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """The varint of a non-negative (already zigzagged) integer."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_LONG_MIN: Final = -(1 << 63)
_LONG_MAX: Final = (1 << 63) - 1
_NSMALL: Final = 1024
# _SIZE[n] is the encoding of the non-negative long n (a length or block count).
_SIZE: Final = tuple(_varint(n << 1) for n in range(_NSMALL))


def _size(n: int) -> bytes:
    return _SIZE[n] if n < _NSMALL else _varint(n << 1)


def _long(n: int) -> bytes:
    if 0 <= n < _NSMALL:  # sizes, counts: the zigzag of a non-negative n is n << 1
        return _SIZE[n]
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValidationError(f"{n} does not fit in an Avro long")
    return _varint((n << 1) ^ (n >> 63))


# The records of one millisecond share their creation time: keep its encoding (one
# tuple, replaced whole, so threads encoding records at once never see half of it).
_LAST_MS: Final[list[tuple[int, bytes]]] = [(-1, b"")]


def _ms(n: int) -> bytes:
    last = _LAST_MS[0]
    if last[0] == n:
        return last[1]
    b = _long(n)
    _LAST_MS[0] = (n, b)
    return b


def _string(s: str) -> bytes:
    b = s.encode()
    return _size(len(b)) + b


# Union branch indexes of AttributeValue, in schema order, as their one-byte encodings.
_S, _N, _B, _BOOL, _NULL, _SS, _NS, _BS, _L, _M = (bytes([2 * i]) for i in range(10))
# The branch byte and the length together, for the short values that are most of an item.
_S_HEAD: Final = tuple(_S + s for s in _SIZE)
_N_HEAD: Final = tuple(_N + s for s in _SIZE)
_TRUE: Final = _BOOL + b"\x01"
_FALSE: Final = _BOOL + b"\x00"
_END: Final = b"\x00"

# Attribute names repeat from item to item: keep their encodings (bounded).
_NAME_CACHE: dict[str, bytes] = {}
_NAME_CACHE_MAX: Final = 4096


def _name(name: str) -> bytes:
    b = name.encode()
    n = len(b)
    encoded = (_SIZE[n] if n < _NSMALL else _varint(n << 1)) + b
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = encoded
    return encoded


def _number_text(d: Decimal) -> str:
    # DynamoDB's plain notation. str() is three times faster than format(d, "f") and gives
    # the same text except for very small or large numbers, where it uses an exponent, and
    # for NaN and infinities, which end in a letter: those take the slow, checked path.
    s = str(d)
    if "E" in s or s[-1] > "9":
        s = _slow_number_text(d)
    return s


def _slow_number_text(d: Decimal) -> str:
    # Never write a number that decode would refuse (NaN, out of DynamoDB's range).
    return format(canonical_number(d), "f")


def _enc_map(m: Mapping[str, Any], out: bytearray) -> None:
    n = len(m)
    if n:
        out += _SIZE[n] if n < _NSMALL else _varint(n << 1)
        cache = _NAME_CACHE
        for k in sorted(m):
            kb = cache.get(k)
            out += kb if kb is not None else _name(k)
            v = m[k]
            t = type(v)
            # Strings and numbers are most values: write them here, without a call.
            if t is str:
                b = v.encode()
                ln = len(b)
                out += _S_HEAD[ln] if ln < _NSMALL else _S + _varint(ln << 1)
                out += b
            elif t is Decimal:
                s = str(v)
                if "E" in s or s[-1] > "9":
                    s = _slow_number_text(v)
                out += _N_HEAD[len(s)]
                out += s.encode()
            else:
                _ENCODERS[t](v, out)
    out += _END


def _enc_value(v: Any, out: bytearray) -> None:
    t = type(v)
    if t is str:
        b = v.encode()
        ln = len(b)
        out += _S_HEAD[ln] if ln < _NSMALL else _S + _varint(ln << 1)
        out += b
    elif t is Decimal:
        s = _number_text(v)
        out += _N_HEAD[len(s)]
        out += s.encode()
    else:
        _ENCODERS[t](v, out)


def _enc_bytes(v: bytes, out: bytearray) -> None:
    out += _B
    out += _size(len(v))
    out += v


def _enc_bool(v: bool, out: bytearray) -> None:
    out += _TRUE if v else _FALSE


def _enc_null(_: None, out: bytearray) -> None:
    out += _NULL


def _enc_list(v: list[Any], out: bytearray) -> None:
    out += _L
    if v:
        out += _size(len(v))
        for x in v:
            _enc_value(x, out)
    out += _END


def _enc_dict(v: dict[str, Any], out: bytearray) -> None:
    out += _M
    _enc_map(v, out)


def _enc_set(v: set[Any] | frozenset[Any], out: bytearray) -> None:
    if not v:
        raise ValidationError("empty sets cannot be stored")
    members = sorted(v)  # a set of mixed types does not sort: TypeError
    t = type(members[0])
    if t is str:
        out += _SS
        out += _size(len(members))
        for s in members:
            b = s.encode()
            out += _size(len(b))
            out += b
    elif t is Decimal:
        out += _NS
        out += _size(len(members))
        for d in members:
            if type(d) is not Decimal:
                raise TypeError(d)
            s = _number_text(d)
            out += _SIZE[len(s)]
            out += s.encode()
    elif t is bytes:
        out += _BS
        out += _size(len(members))
        for b in members:
            out += _size(len(b))
            out += b
    else:
        raise TypeError(t)
    out += _END


_ENCODERS: Final[dict[type, Callable[[Any, bytearray], None]]] = {
    bytes: _enc_bytes,
    bool: _enc_bool,
    type(None): _enc_null,
    list: _enc_list,
    dict: _enc_dict,
    set: _enc_set,
    frozenset: _enc_set,
}


def encode_image(item: Mapping[str, Any]) -> bytes:
    """Encode a normalized item as the Avro binary of ``map<AttributeValue>``.

    The encoding is canonical: entries sorted by name, set members sorted,
    numbers in DynamoDB's plain text, so two items are equal (by
    :func:`~streamkit.records.values_equal`) exactly when their encodings are.

    Raises:
        ValidationError: when ``item`` is not a normalized item (an ``int``
            where a ``Decimal`` belongs, a set of mixed types, a string that is
            not valid Unicode...). Normalize with ``normalize_item`` first.
    """
    out = bytearray()
    try:
        _enc_map(item, out)
    except ValidationError:
        raise
    except (
        KeyError,
        TypeError,
        AttributeError,
        UnicodeError,
        RecursionError,
        IndexError,
        ArithmeticError,
    ) as e:
        raise ValidationError(f"cannot encode the item: it is not a normalized item ({e!r})") from e
    return bytes(out)


_EVENT_INDEX: Final[dict[str, bytes]] = {name: bytes([2 * i]) for i, name in enumerate(EVENT_NAMES)}
_VIEWS: Final = tuple(StreamView)
_VIEW_INDEX: Final = {view.value: bytes([2 * i]) for i, view in enumerate(_VIEWS)}


def encode_record(
    *,
    event_id: str,
    event_name: str,
    table: str,
    keys: bytes,
    new_image: bytes | None,
    old_image: bytes | None,
    changed: Sequence[str] | None,
    sequence_number: int,
    created_at_ms: int,
    size_bytes: int,
    view_type: str,
    user_identity: tuple[str, str] | None,
    origin: str | None,
) -> bytes:
    """Encode a change record in Avro single-object encoding.

    ``keys``, ``new_image`` and ``old_image`` are images already encoded by
    :func:`encode_image` (as the storage layer keeps them): they are copied
    into the record as they are. ``changed`` is written sorted.

    Returns:
        ``C3 01``, the 8-byte schema fingerprint, then the record body.

    Raises:
        ValidationError: for an unknown event name or view type, or a number
            that does not fit in an Avro long.
    """
    try:
        event = _EVENT_INDEX[event_name]
        view = _VIEW_INDEX[view_type]
    except KeyError as e:
        raise ValidationError(f"unknown event name or view type {e.args[0]!r}") from None
    parts = [_HEADER, _string(event_id), event, _string(table), keys]
    if new_image is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x02")
        parts.append(new_image)
    if old_image is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x02")
        parts.append(old_image)
    if changed is None:
        parts.append(b"\x00")
    else:
        if isinstance(changed, str):
            raise ValidationError("changed must be a sequence of names, not a str")
        parts.append(b"\x02")
        if changed:
            parts.append(_size(len(changed)))
            parts.extend(_string(name) for name in sorted(changed))
        parts.append(_END)
    parts.append(_long(sequence_number))
    parts.append(_ms(created_at_ms))
    parts.append(_long(size_bytes))
    parts.append(view)
    if user_identity is None:
        parts.append(b"\x00")
    else:
        identity_type, principal = user_identity
        parts.append(b"\x02" + _string(identity_type) + _string(principal))
    if origin is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x02" + _string(origin))
    return b"".join(parts)


def encode_change_record(record: ChangeRecord) -> bytes:
    """Encode a :class:`ChangeRecord` (encoding its images) in single-object encoding."""
    identity = record.user_identity
    return encode_record(
        event_id=record.event_id,
        event_name=record.event_name,
        table=record.table,
        keys=encode_image(record.keys),
        new_image=None if record.new_image is None else encode_image(record.new_image),
        old_image=None if record.old_image is None else encode_image(record.old_image),
        changed=record.changed,
        sequence_number=record.sequence_number,
        created_at_ms=record.created_at_ms,
        size_bytes=record.size_bytes,
        view_type=record.view_type,
        user_identity=None if identity is None else (identity.type, identity.principal),
        origin=record.origin,
    )


# --- decoding ------------------------------------------------------------------------------
#
# Decoders take the buffer and a position and return (value, new position). They index
# bytes directly and let a read past the end raise IndexError; the public functions turn
# every such low-level error into one RecordFormatError. A slice past the end does not
# raise, so the public functions also check that decoding ended exactly at the end.


class _Malformed(Exception):
    """Raised inside the decoder; the public functions turn it into RecordFormatError."""


def _varint_tail(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """Finish reading a varint whose first byte ``first`` had its continuation bit set."""
    # Unrolled for the 2-6 byte varints of sequence numbers and millisecond timestamps.
    b = data[pos]
    n = (first & 0x7F) | (b & 0x7F) << 7
    if b < 0x80:
        return n, pos + 1
    b = data[pos + 1]
    n |= (b & 0x7F) << 14
    if b < 0x80:
        return n, pos + 2
    b = data[pos + 2]
    n |= (b & 0x7F) << 21
    if b < 0x80:
        return n, pos + 3
    b = data[pos + 3]
    n |= (b & 0x7F) << 28
    if b < 0x80:
        return n, pos + 4
    b = data[pos + 4]
    n |= (b & 0x7F) << 35
    if b < 0x80:
        return n, pos + 5
    pos += 5
    shift = 42
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise _Malformed("a varint is longer than 64 bits")
            return n, pos
        shift += 7
        if shift > 63:
            raise _Malformed("a varint is longer than 10 bytes")


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    n = data[pos]
    pos += 1
    if n & 0x80:
        n, pos = _varint_tail(data, pos, n)
    return (n >> 1) ^ -(n & 1), pos


def _read_size(data: bytes, pos: int) -> tuple[int, int]:
    """A length: a long that must not be negative."""
    n = data[pos]
    pos += 1
    if n & 0x80:
        n, pos = _varint_tail(data, pos, n)
    if n & 1:
        raise _Malformed("a negative length")
    return n >> 1, pos


def _read_count(data: bytes, pos: int) -> tuple[int, int]:
    """A map or array block count; a negative count is followed by the block's byte size."""
    n = data[pos]
    pos += 1
    if n & 0x80:
        n, pos = _varint_tail(data, pos, n)
    if n & 1:
        n = (n >> 1) + 1
        _, pos = _read_long(data, pos)
    else:
        n >>= 1
    # Every item of our maps and arrays takes at least one byte: a count larger than what
    # is left is corrupt (and would otherwise let a few bytes ask for a huge loop).
    if n > len(data) - pos:
        raise _Malformed("a block count larger than the data left")
    return n, pos


def _read_str(data: bytes, pos: int) -> tuple[str, int]:
    n = data[pos]
    pos += 1
    if n & 0x80:
        n, pos = _varint_tail(data, pos, n)
    if n & 1:
        raise _Malformed("a negative length")
    end = pos + (n >> 1)
    return data[pos:end].decode(), end


def _read_number(data: bytes, pos: int) -> tuple[Decimal, int]:
    n = data[pos]
    pos += 1
    if n & 0x80:
        n, pos = _varint_tail(data, pos, n)
    if n & 1:
        raise _Malformed("a negative length")
    end = pos + (n >> 1)
    # The text is canonical (our encoder wrote it), so Decimal(text) is the canonical number.
    d = Decimal(data[pos:end].decode("ascii"))
    if not d.is_finite():
        raise _Malformed("a number that is not finite")
    return d, end


def _dec_map(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    # The hot loop of every decode: lengths and counts below 64 are one even byte, so one
    # test (& 0x81: continuation bit or sign bit) sends everything else to the general path.
    out: dict[str, Any] = {}
    while True:
        count = data[pos]
        if count & 0x81:
            count, pos = _read_count(data, pos)
        else:
            pos += 1
            count >>= 1
            if count > len(data) - pos:
                raise _Malformed("a block count larger than the data left")
        if not count:
            return out, pos
        for _ in range(count):
            n = data[pos]
            if n & 0x81:
                n, pos = _read_size(data, pos)
            else:
                pos += 1
                n >>= 1
            end = pos + n
            k = data[pos:end].decode()
            tag = data[end]
            pos = end + 1
            # Strings and numbers inline, as in the encoder.
            if tag == 0:
                n = data[pos]
                if n & 0x81:
                    n, pos = _read_size(data, pos)
                else:
                    pos += 1
                    n >>= 1
                end = pos + n
                out[k] = data[pos:end].decode()
                pos = end
            elif tag == 2:
                n = data[pos]
                if n & 0x81:
                    n, pos = _read_size(data, pos)
                else:
                    pos += 1
                    n >>= 1
                end = pos + n
                # The text is canonical (our encoder wrote it): Decimal(text) is the canonical
                # number, without the cost of checking it.
                d = Decimal(data[pos:end].decode("ascii"))
                if not d.is_finite():
                    raise _Malformed("a number that is not finite")
                out[k] = d
                pos = end
            else:
                out[k], pos = _dec_other(data, pos, tag)


def _dec_value(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == 0:
        return _read_str(data, pos)
    if tag == 2:
        return _read_number(data, pos)
    return _dec_other(data, pos, tag)


def _dec_other(data: bytes, pos: int, tag: int) -> tuple[Any, int]:
    if tag == 8:  # NULL
        return None, pos
    if tag == 6:  # BOOL
        b = data[pos]
        if b > 1:
            raise _Malformed("a boolean that is neither 0 nor 1")
        return b == 1, pos + 1
    if tag == 18:  # M
        return _dec_map(data, pos)
    if tag == 16:  # L
        out: list[Any] = []
        while True:
            count, pos = _read_count(data, pos)
            if not count:
                return out, pos
            for _ in range(count):
                v, pos = _dec_value(data, pos)
                out.append(v)
    if tag == 4:  # B
        n, pos = _read_size(data, pos)
        end = pos + n
        return data[pos:end], end
    if tag == 10:  # SS
        return _dec_set(data, pos, _read_str)
    if tag == 12:  # NS
        return _dec_set(data, pos, _read_number)
    if tag == 14:  # BS
        return _dec_set(data, pos, _read_bytes)
    if tag & 0x80:  # a branch index written in more bytes than it needs: odd, but legal Avro
        tag, pos = _varint_tail(data, pos, tag)
        if tag == 0:
            return _read_str(data, pos)
        if tag == 2:
            return _read_number(data, pos)
        if tag < 0x80:
            return _dec_other(data, pos, tag)
    raise _Malformed(f"unknown AttributeValue branch (encoded {tag})")


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _read_size(data, pos)
    end = pos + n
    return data[pos:end], end


def _dec_set(
    data: bytes, pos: int, read: Callable[[bytes, int], tuple[Any, int]]
) -> tuple[set[Any], int]:
    members: list[Any] = []
    while True:
        count, pos = _read_count(data, pos)
        if not count:
            break
        for _ in range(count):
            v, pos = read(data, pos)
            members.append(v)
    out = set(members)
    if not out:
        raise _Malformed("an empty set")
    if len(out) != len(members):
        raise _Malformed("a set with duplicate members")
    return out, pos


_DECODE_ERRORS: Final = (
    _Malformed,
    IndexError,
    ValueError,  # UnicodeDecodeError among them
    ArithmeticError,  # decimal.InvalidOperation, OverflowError
    RecursionError,
    KeyError,
    TypeError,
)


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, got {type(data).__name__}")


def decode_image(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode an image encoded by :func:`encode_image` into a normalized item.

    Raises:
        RecordFormatError: when ``data`` is not exactly one encoded image.
    """
    data = _as_bytes(data)
    try:
        item, pos = _dec_map(data, 0)
    except _DECODE_ERRORS as e:
        raise RecordFormatError(f"malformed or truncated item image: {_reason(e)}") from e
    if pos != len(data):
        raise RecordFormatError(
            "truncated item image" if pos > len(data) else "trailing bytes after the item image"
        )
    return item


def _reason(e: BaseException) -> str:
    if isinstance(e, IndexError):
        return "the data ends too soon"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e) or type(e).__name__


# Enum symbols and union branches below 64 are one byte: the envelope reads them by table.
_EVENT_BY_BYTE: Final = {2 * i: name for i, name in enumerate(EVENT_NAMES)}
_VIEW_BY_BYTE: Final = {2 * i: view for i, view in enumerate(_VIEWS)}


def decode_record(data: bytes | bytearray | memoryview) -> ChangeRecord:
    """Decode a change record from its Avro single-object encoding.

    Raises:
        RecordFormatError: when ``data`` does not start with the single-object
            marker, was written with another schema (fingerprint), or is
            truncated or malformed.
    """
    if type(data) is not bytes:
        data = _as_bytes(data)
    if data[:_HEADER_LEN] != _HEADER:
        _bad_header(data)
    # Written out in full, field by field in schema order, because the envelope is a third
    # of the decoding time of a typical record. Strings: a one-byte length in the common
    # case, else the general reader.
    try:
        pos = _HEADER_LEN
        n = data[pos]
        if n & 0x81:
            event_id, pos = _read_str(data, pos)
        else:
            pos += 1 + (n >> 1)
            event_id = data[_HEADER_LEN + 1 : pos].decode()
        event_name = _EVENT_BY_BYTE[data[pos]]
        pos += 1
        n = data[pos]
        if n & 0x81:
            table, pos = _read_str(data, pos)
        else:
            end = pos + 1 + (n >> 1)
            table = data[pos + 1 : end].decode()
            pos = end
        keys, pos = _dec_map(data, pos)
        branch = data[pos]
        new_image: MappingProxyType[str, Any] | None = None
        if branch:
            if branch != 2:
                raise _Malformed(f"bad union branch for new_image (encoded {branch})")
            image, pos = _dec_map(data, pos + 1)
            new_image = MappingProxyType(image)
        else:
            pos += 1
        branch = data[pos]
        old_image: MappingProxyType[str, Any] | None = None
        if branch:
            if branch != 2:
                raise _Malformed(f"bad union branch for old_image (encoded {branch})")
            image, pos = _dec_map(data, pos + 1)
            old_image = MappingProxyType(image)
        else:
            pos += 1
        branch = data[pos]
        pos += 1
        changed: tuple[str, ...] | None = None
        if branch:
            if branch != 2:
                raise _Malformed(f"bad union branch for changed (encoded {branch})")
            names: list[str] = []
            while True:
                count, pos = _read_count(data, pos)
                if not count:
                    break
                for _ in range(count):
                    name, pos = _read_str(data, pos)
                    names.append(name)
            changed = tuple(names)
        # three longs: zigzag varints, several bytes each
        n = data[pos]
        if n & 0x80:
            n, pos = _varint_tail(data, pos + 1, n)
        else:
            pos += 1
        sequence_number = (n >> 1) ^ -(n & 1)
        n = data[pos]
        if n & 0x80:
            n, pos = _varint_tail(data, pos + 1, n)
        else:
            pos += 1
        created_ms = (n >> 1) ^ -(n & 1)
        created_at = (
            _fromtimestamp(created_ms / 1000, UTC)
            if 0 <= created_ms < _FAST_MS_LIMIT
            else datetime_from_ms(created_ms)
        )
        n = data[pos]
        if n & 0x80:
            n, pos = _varint_tail(data, pos + 1, n)
        else:
            pos += 1
        size_bytes = (n >> 1) ^ -(n & 1)
        view_type = _VIEW_BY_BYTE[data[pos]]
        branch = data[pos + 1]
        pos += 2
        identity: UserIdentity | None = None
        if branch:
            if branch != 2:
                raise _Malformed(f"bad union branch for user_identity (encoded {branch})")
            identity_type, pos = _read_str(data, pos)
            principal, pos = _read_str(data, pos)
            identity = UserIdentity(identity_type, principal)
            if identity == TTL_IDENTITY:
                identity = TTL_IDENTITY
        branch = data[pos]
        pos += 1
        origin: str | None = None
        if branch:
            if branch != 2:
                raise _Malformed(f"bad union branch for origin (encoded {branch})")
            origin, pos = _read_str(data, pos)
    except _DECODE_ERRORS as e:
        raise RecordFormatError(f"malformed or truncated change record: {_reason(e)}") from e
    if pos != len(data):
        raise RecordFormatError(
            "truncated change record"
            if pos > len(data)
            else "trailing bytes after the change record"
        )
    return _trusted_record(
        event_id,
        event_name,
        table,
        MappingProxyType(keys),
        new_image,
        old_image,
        changed,
        sequence_number,
        created_at,
        size_bytes,
        view_type,
        identity,
        origin,
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
        _, pos = _dec_map(data, pos)  # keys
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


def _bad_header(data: bytes) -> NoReturn:
    if data[:2] != MARKER:
        raise RecordFormatError(
            f"not an Avro single-object encoding: starts with {data[:2].hex() or 'nothing'}, "
            f"expected {MARKER.hex()}"
        )
    written_with = data[2:_HEADER_LEN]
    if len(written_with) < len(FINGERPRINT):
        raise RecordFormatError("truncated change record: the schema fingerprint is cut short")
    raise RecordFormatError(
        f"change record written with an unknown schema (fingerprint {written_with.hex()}); "
        f"this version of streamkit reads {FINGERPRINT.hex()}: written by a newer streamkit?"
    )


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
