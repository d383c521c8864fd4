"""The Avro decoder of change records and item images, written out by hand for the one
fixed schema (:mod:`._avro_schema`); :mod:`._avro` describes the format.

Holds the low-level readers (varints, lengths, block counts, strings, numbers, maps and
AttributeValues), :func:`decode_image`, :func:`decode_record` and the header check. The
readers that take only part of a record (``lazy_record``, ``replica_fields``,
``record_new_image``) are in :mod:`._avro` and use the ones here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, NoReturn

from streamkit.exceptions import RecordFormatError
from streamkit.records._avro_schema import _HEADER, _HEADER_LEN, _VIEWS, FINGERPRINT, MARKER
from streamkit.records._record import (
    _FAST_MS_LIMIT,
    EVENT_NAMES,
    TTL_IDENTITY,
    ChangeRecord,
    UserIdentity,
    _trusted_record,
    datetime_from_ms,
)

_fromtimestamp = datetime.fromtimestamp

__all__ = (
    "decode_image",
    "decode_record",
)


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
