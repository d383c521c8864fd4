"""The Avro encoder of change records and item images, written out by hand for the one
fixed schema (:mod:`._avro_schema`); :mod:`._avro` describes the format.

:func:`encode_image` writes an item canonically (entries sorted by name, set members
sorted, numbers in DynamoDB's plain text); :func:`encode_record` splices already encoded
images into a record in single-object encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from streamkit.exceptions import ValidationError
from streamkit.records._avro_schema import _HEADER, _VIEWS
from streamkit.records._record import EVENT_NAMES, ChangeRecord
from streamkit.records._values import canonical_number

__all__ = (
    "encode_change_record",
    "encode_image",
    "encode_record",
)


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
