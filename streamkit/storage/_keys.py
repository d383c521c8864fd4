"""Key schemas and the byte encodings of key values.

Two encodings of a key attribute value:

* ``order_bytes`` — an order-preserving encoding used as the SQLite primary key
  columns, so that ``ORDER BY sk`` in SQL sorts exactly as DynamoDB sorts a
  sort key: strings by their UTF-8 bytes, binary by unsigned bytes, numbers
  numerically.
* ``message_key`` — the Kafka message key of a change record: the partition
  key's plain text (S), canonical digits (N) or raw bytes (B), so that any
  consumer can read it and Kafka's partitioner keeps one item on one partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from streamkit.exceptions import ValidationError
from streamkit.records._values import normalize_value

__all__ = ("KeyAttribute", "KeySchema", "message_key", "order_bytes")

KeyType = Literal["S", "N", "B"]

_MAX_PARTITION_KEY_BYTES = 2048
_MAX_SORT_KEY_BYTES = 1024
_DIGITS = b"0123456789"
_COMPLEMENT = bytes.maketrans(b"0123456789", b"9876543210")


@dataclass(frozen=True, slots=True)
class KeyAttribute:
    """One key attribute: its name and DynamoDB scalar type."""

    name: str
    type: KeyType = "S"

    @classmethod
    def parse(cls, spec: str | tuple[str, str] | KeyAttribute, role: str) -> KeyAttribute:
        """Accept ``"UserID"``, ``("UserID", "N")`` or a KeyAttribute."""
        if isinstance(spec, KeyAttribute):
            return spec
        if isinstance(spec, str):
            name, kind = spec, "S"
        elif isinstance(spec, tuple) and len(spec) == 2:
            name, kind = spec
        else:
            raise ValidationError(f"{role} must be a name or a (name, type) pair, got {spec!r}")
        if not isinstance(name, str) or not name or len(name.encode()) > 255:
            raise ValidationError(f"{role} name must be 1 to 255 bytes of text, got {name!r}")
        if kind not in ("S", "N", "B"):
            raise ValidationError(f"{role} type must be 'S', 'N' or 'B', got {kind!r}")
        return cls(name, kind)  # type: ignore[arg-type]


_PY_TYPE: dict[str, type] = {"S": str, "N": Decimal, "B": bytes}


@dataclass(frozen=True, slots=True)
class KeySchema:
    """A table's primary key: a partition key and an optional sort key."""

    partition: KeyAttribute
    sort: KeyAttribute | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The key attribute names, partition key first."""
        return (
            (self.partition.name,)
            if self.sort is None
            else (
                self.partition.name,
                self.sort.name,
            )
        )

    def check_value(self, attr: KeyAttribute, value: Any) -> Any:
        """Normalize one key value and check its type and size."""
        v = normalize_value(value, attr.name)
        if type(v) is not _PY_TYPE[attr.type]:
            raise ValidationError(
                f"key attribute {attr.name!r} must be of type {attr.type}, "
                f"got {type(value).__name__}",
                path=attr.name,
            )
        if isinstance(v, (str, bytes)) and not v:
            what = "string" if isinstance(v, str) else "binary value"
            raise ValidationError(
                f"key attribute {attr.name!r} must not be empty (got an empty {what})",
                path=attr.name,
            )
        return v

    def extract(self, item: Mapping[str, Any], *, exact: bool = False) -> tuple[bytes, bytes]:
        """The (partition, sort) order bytes of a normalized item or key.

        Args:
            item: a normalized item (or key).
            exact: the mapping must hold only the key attributes (a key argument).

        Raises:
            ValidationError: a key attribute is missing, mistyped or empty, or
                (with ``exact``) the key has other attributes.
        """
        names = self.names
        if exact and len(item) != len(names):
            extra = sorted(set(item) - set(names))
            missing = [n for n in names if n not in item]
            if extra:
                raise ValidationError(
                    f"the key has attributes that are not part of the table's key: {extra}"
                )
            raise ValidationError(f"the key is missing attribute(s) {missing}")
        p = self.partition
        try:
            pv = item[p.name]
        except KeyError:
            raise ValidationError(f"missing key attribute {p.name!r}", path=p.name) from None
        if type(pv) is not _PY_TYPE[p.type] or (p.type != "N" and not pv):
            self.check_value(p, pv)
        pb = order_bytes(pv)
        if len(pb) > _MAX_PARTITION_KEY_BYTES:
            raise ValidationError(
                f"partition key {p.name!r} is longer than 2048 bytes", path=p.name
            )
        s = self.sort
        if s is None:
            return pb, b""
        try:
            sv = item[s.name]
        except KeyError:
            raise ValidationError(f"missing key attribute {s.name!r}", path=s.name) from None
        if type(sv) is not _PY_TYPE[s.type] or (s.type != "N" and not sv):
            self.check_value(s, sv)
        sb = order_bytes(sv)
        if len(sb) > _MAX_SORT_KEY_BYTES:
            raise ValidationError(f"sort key {s.name!r} is longer than 1024 bytes", path=s.name)
        return pb, sb

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The key attributes of an item, as a new dict."""
        if self.sort is None:
            n = self.partition.name
            return {n: item[n]}
        return {
            self.partition.name: item[self.partition.name],
            self.sort.name: item[self.sort.name],
        }

    def parse_key(self, key: Mapping[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
        """Validate and normalize a key argument; also return its (partition, sort) bytes.

        The hot path of every get, update and delete: plain non-empty string keys skip
        the general normalization.
        """
        try:
            return self._parse_key(key)
        except UnicodeEncodeError:
            raise ValidationError("key values must be valid Unicode text") from None

    def _parse_key(self, key: Mapping[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
        p, s = self.partition, self.sort
        if type(key) is dict and len(key) == (1 if s is None else 2):
            pv = key.get(p.name)
            if p.type == "S" and type(pv) is str and pv and len(pv) <= 512:
                if s is None:
                    return {p.name: pv}, pv.encode("utf-8"), b""
                sv = key.get(s.name)
                if s.type == "S" and type(sv) is str and sv and len(sv) <= 256:
                    return {p.name: pv, s.name: sv}, pv.encode("utf-8"), sv.encode("utf-8")
        norm = self.normalize_key(key)
        pk, sk = self.extract(norm)
        return norm, pk, sk

    def normalize_key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a key argument (exactly the key attributes) and normalize it."""
        if not isinstance(key, Mapping):
            raise ValidationError(f"a key must be a mapping, got {type(key).__name__}")
        out = {}
        for attr in (self.partition, self.sort):
            if attr is None:
                continue
            if attr.name not in key:
                raise ValidationError(f"the key is missing attribute {attr.name!r}", path=attr.name)
            out[attr.name] = self.check_value(attr, key[attr.name])
        if len(key) != len(out):
            extra = sorted(str(k) for k in key if k not in out)
            raise ValidationError(
                f"the key has attributes that are not part of the table's key: {extra}"
            )
        return out


def order_bytes(value: Any) -> bytes:
    """Order-preserving bytes of a normalized S, N or B value."""
    t = type(value)
    if t is str:
        try:
            return value.encode("utf-8")  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            raise ValidationError("key values must be valid Unicode text") from None
    if t is bytes:
        return value  # type: ignore[no-any-return]
    if t is Decimal:
        return _number_order_bytes(value)
    raise ValidationError(f"key values must be strings, numbers or bytes, got {t.__name__}")


def _number_order_bytes(value: Decimal) -> bytes:
    # zero: 0x80. positive: 0x81, exponent+130 (0..255), digits as ASCII.
    # negative: 0x7F, 255-(exponent+130), complemented digits, then "~" so a shorter
    # (larger, closer to zero) negative sorts after a longer one with the same prefix.
    if value.is_zero():
        return b"\x80"
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    text = bytes(_DIGITS[d] for d in digits[:end])
    adjusted = exponent + len(digits) - 1 + 130
    if sign == 0:
        return b"\x81" + bytes((adjusted,)) + text
    return b"\x7f" + bytes((255 - adjusted,)) + text.translate(_COMPLEMENT) + b"~"


def message_key(value: Any) -> bytes:
    """The Kafka message key for a normalized partition key value."""
    t = type(value)
    if t is str:
        return value.encode("utf-8")  # type: ignore[no-any-return]
    if t is bytes:
        return value  # type: ignore[no-any-return]
    return format(value, "f").encode("ascii")
