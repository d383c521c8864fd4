"""The item value model: Python values <-> DynamoDB's ten attribute types.

Inside streamkit every item is a ``dict[str, Value]`` of *normalized* values:

======  ===============================  ==========================================
type    Python (normalized)              accepted on input
======  ===============================  ==========================================
S       ``str``                          ``str``
N       ``decimal.Decimal`` (canonical)  ``int``, ``float``, ``Decimal`` (not bool)
B       ``bytes``                        ``bytes``, ``bytearray``, ``memoryview``
BOOL    ``bool``                         ``bool``
NULL    ``None``                         ``None``
L       ``list``                         ``list``, ``tuple``
M       ``dict`` (str keys)              any ``Mapping`` with str keys
SS      ``set[str]``                     non-empty ``set``/``frozenset`` of str
NS      ``set[Decimal]``                 non-empty set of numbers
BS      ``set[bytes]``                   non-empty set of bytes
======  ===============================  ==========================================

Numbers keep up to 38 significant digits exactly, with magnitudes from 1E-130
to under 1E+126, as DynamoDB does; anything else is a ValidationError, never a
silent rounding. Normalized numbers are canonical (``Decimal("1.0")`` becomes
``Decimal("1")``) so that equal numbers are stored and encoded identically.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from streamkit.exceptions import ValidationError

__all__ = (
    "MAX_ITEM_BYTES",
    "Item",
    "Value",
    "canonical_number",
    "from_dynamodb_json",
    "item_from_dynamodb_json",
    "item_size",
    "item_to_dynamodb_json",
    "items_equal",
    "normalize_item",
    "normalize_value",
    "significant_digits",
    "to_dynamodb_json",
    "type_of",
    "value_size",
    "values_equal",
)

Value = Any
"""A normalized item value (see the module docstring)."""
Item = dict[str, Any]

MAX_ITEM_BYTES = 400 * 1024
MAX_DEPTH = 32
_MAX_DIGITS = 38
_INT_BOUND = 10**_MAX_DIGITS  # an int below this in magnitude is a valid number as is
_MIN_ADJUSTED = -130  # smallest magnitude 1E-130
_MAX_ADJUSTED = 125  # largest magnitude 9.99..E+125
_CTX = Context(prec=_MAX_DIGITS + 2)
_ZERO = Decimal(0)


def canonical_number(value: Decimal, path: str = "") -> Decimal:
    """Check a Decimal against DynamoDB's number limits and return its canonical form.

    The canonical form is the one DynamoDB returns: plain notation, no trailing
    zeros after the point (``Decimal("1.50")`` -> ``Decimal("1.5")``, ``1E+2`` ->
    ``Decimal("100")``), and zero without a sign.
    """
    if not value.is_finite():
        raise ValidationError(f"{_at(path)}numbers must be finite, got {value}", path=path)
    if value.is_zero():
        return _ZERO
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    n = len(digits)
    end = n
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    sig = digits[:end]
    exp = exponent + (n - end)
    adjusted = exp + len(sig) - 1
    if adjusted > _MAX_ADJUSTED or adjusted < _MIN_ADJUSTED:  # checked first, as DynamoDB
        raise ValidationError(
            f"{_at(path)}number {value} is out of range (magnitude 1E-130 to 9.9E+125)",
            path=path,
        )
    if len(sig) > _MAX_DIGITS:
        raise ValidationError(
            f"{_at(path)}number {value} has {len(sig)} significant digits; at most 38 are kept",
            path=path,
        )
    if exponent == 0 or (exp < 0 and end == n):
        return value  # an integer in plain notation, or a fraction with no trailing zeros
    if exp >= 0:
        return Decimal((sign, sig + (0,) * exp, 0))
    return Decimal((sign, sig, exp))


def significant_digits(value: Decimal) -> int:
    """How many significant digits a canonical number has (for sizes)."""
    digits = value.as_tuple().digits
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    return end


def _number_text(value: Decimal) -> str:
    """The digits DynamoDB would return for a canonical number: plain notation."""
    return format(value, "f")


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def normalize_value(value: Any, path: str = "", depth: int = 0) -> Value:
    """Validate a Python value and return its normalized form.

    Raises:
        ValidationError: for a type DynamoDB cannot store, an empty set, a set
            of mixed types, a number outside DynamoDB's range, a map key that
            is not a non-empty str, or nesting deeper than 32 levels.
    """
    t = type(value)
    if t is str:
        if not value.isascii():
            _check_text(value, path)
        return value
    if value is None or t is bool:
        return value
    if t is Decimal:
        return canonical_number(value, path)
    if t is int:
        if -_INT_BOUND < value < _INT_BOUND:
            return Decimal(value)
        return canonical_number(Decimal(value), path)
    if t is float:
        if not math.isfinite(value):
            raise ValidationError(f"{_at(path)}numbers must be finite, got {value!r}", path=path)
        return canonical_number(Decimal(repr(value)), path)
    if t is bytes:
        return value
    if depth >= MAX_DEPTH:
        raise ValidationError(f"{_at(path)}nesting is deeper than {MAX_DEPTH} levels", path=path)
    if t is dict or isinstance(value, Mapping):
        out: dict[str, Value] = {}
        for k, v in value.items():
            if type(k) is not str or not k:
                raise ValidationError(
                    f"{_at(path)}map keys must be non-empty strings, got {k!r}", path=path
                )
            if not k.isascii():
                _check_text(k, path)
            out[k] = normalize_value(v, f"{path}.{k}" if path else k, depth + 1)
        return out
    if t is list or t is tuple:
        return [normalize_value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return _normalize_set(value, path)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return normalize_value(int(value), path, depth)
    if isinstance(value, Decimal):
        return canonical_number(Decimal(value), path)
    raise ValidationError(
        f"{_at(path)}unsupported type {t.__name__}; use str, number, bytes, bool, None, "
        "list, dict or a set of str/number/bytes",
        path=path,
    )


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            f"{_at(path)}text must be valid Unicode (it holds a lone surrogate)", path=path
        ) from None


def _normalize_set(value: set[Any] | frozenset[Any], path: str) -> set[Any]:
    if not value:
        raise ValidationError(f"{_at(path)}empty sets are not allowed", path=path)
    kinds = set()
    out: set[Any] = set()
    for v in value:
        if isinstance(v, bool):
            raise ValidationError(f"{_at(path)}sets may not contain booleans", path=path)
        if isinstance(v, str):
            kinds.add("SS")
            _check_text(v, path)
            out.add(str(v))
        elif isinstance(v, (int, float, Decimal)):
            kinds.add("NS")
            out.add(normalize_value(v, path))
        elif isinstance(v, (bytes, bytearray, memoryview)):
            kinds.add("BS")
            out.add(bytes(v))
        else:
            raise ValidationError(
                f"{_at(path)}sets hold only str, numbers or bytes, got {type(v).__name__}",
                path=path,
            )
    if len(kinds) > 1:
        raise ValidationError(
            f"{_at(path)}a set must hold one type (strings, numbers or bytes), not a mix",
            path=path,
        )
    return out


def normalize_item(item: Mapping[str, Any]) -> Item:
    """Validate a whole item (top-level names non-empty) and return its normalized form."""
    if type(item) is not dict and not isinstance(item, Mapping):  # (dict: no ABC check)
        raise ValidationError(f"an item must be a mapping, got {type(item).__name__}")
    out: Item = {}
    for k, v in item.items():
        if type(k) is not str or not k:
            raise ValidationError(f"attribute names must be non-empty strings, got {k!r}")
        if not k.isascii():
            _check_text(k, "")
        out[k] = normalize_value(v, k, 1)
    return out


def type_of(value: Value) -> str:
    """The DynamoDB type tag ("S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS")."""
    t = type(value)
    if t is str:
        return "S"
    if t is Decimal:
        return "N"
    if t is bool:
        return "BOOL"
    if value is None:
        return "NULL"
    if t is bytes:
        return "B"
    if t is dict:
        return "M"
    if t is list:
        return "L"
    if t is set or t is frozenset:
        e = next(iter(value))
        if type(e) is str:
            return "SS"
        if type(e) is Decimal:
            return "NS"
        return "BS"
    raise ValidationError(f"not a normalized value: {type(value).__name__}")


def values_equal(a: Value, b: Value) -> bool:
    """Semantic equality of two normalized values: type and value, map order ignored."""
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is dict:
        if a.keys() != b.keys():
            return False
        return all(values_equal(v, b[k]) for k, v in a.items())
    if ta is list:
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def items_equal(a: Item | None, b: Item | None) -> bool:
    """Semantic equality of two items (either may be None, meaning absent)."""
    if a is None or b is None:
        return a is b
    return values_equal(a, b)


def _number_size(value: Decimal) -> int:
    # DynamoDB: about one byte per two significant digits, plus one
    digits = value.as_tuple().digits
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    return (end + 1) // 2 + 1


def value_size(value: Value) -> int:
    """DynamoDB's size of a value in bytes (attribute name not included)."""
    t = type(value)
    if t is str:
        return len(value) if value.isascii() else len(value.encode("utf-8"))
    if t is Decimal:
        return _number_size(value)
    if t is bytes:
        return len(value)
    if t is bool or value is None:
        return 1
    if t is dict:
        return 3 + sum(_name_size(k) + value_size(v) + 1 for k, v in value.items())
    if t is list:
        return 3 + sum(value_size(v) + 1 for v in value)
    if t is set or t is frozenset:
        return sum(value_size(v) for v in value)
    raise ValidationError(f"not a normalized value: {type(value).__name__}")


def _name_size(name: str) -> int:
    return len(name) if name.isascii() else len(name.encode("utf-8"))


def item_size(item: Item) -> int:
    """DynamoDB's size of an item: attribute names plus values."""
    size = 0
    for k, v in item.items():
        size += len(k) if k.isascii() else len(k.encode("utf-8"))
        t = type(v)
        if t is str:
            size += len(v) if v.isascii() else len(v.encode("utf-8"))
        elif t is Decimal:
            size += _number_size(v)
        elif t is bool or v is None:
            size += 1
        else:
            size += value_size(v)
    return size


# --- DynamoDB JSON ({"S": "x"}, {"N": "1"}, ...) -------------------------------------------


def to_dynamodb_json(value: Value) -> dict[str, Any]:
    """A normalized value as a DynamoDB JSON AttributeValue (bytes as base64 text)."""
    t = type(value)
    if t is str:
        return {"S": value}
    if t is Decimal:
        return {"N": _number_text(value)}
    if t is bool:
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if t is bytes:
        return {"B": base64.b64encode(value).decode("ascii")}
    if t is dict:
        return {"M": {k: to_dynamodb_json(v) for k, v in value.items()}}
    if t is list:
        return {"L": [to_dynamodb_json(v) for v in value]}
    tag = type_of(value)
    if tag == "SS":
        return {"SS": sorted(value)}
    if tag == "NS":
        return {"NS": [_number_text(v) for v in sorted(value)]}
    return {"BS": [base64.b64encode(v).decode("ascii") for v in sorted(value)]}


def item_to_dynamodb_json(item: Item) -> dict[str, dict[str, Any]]:
    """A normalized item as a DynamoDB JSON map of AttributeValues."""
    return {k: to_dynamodb_json(v) for k, v in item.items()}


def _parse_number(text: Any, path: str) -> Decimal:
    if not isinstance(text, str):
        raise ValidationError(f"{_at(path)}N must be a string of digits, got {text!r}", path=path)
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"{_at(path)}{text!r} is not a number", path=path) from None
    return canonical_number(d, path)


def _parse_bytes(text: Any, path: str) -> bytes:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if not isinstance(text, str):
        raise ValidationError(f"{_at(path)}B must be base64 text, got {text!r}", path=path)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValidationError(f"{_at(path)}{text!r} is not valid base64", path=path) from None


def from_dynamodb_json(av: Any, path: str = "", depth: int = 0) -> Value:
    """Parse a DynamoDB JSON AttributeValue into a normalized value.

    Raises:
        ValidationError: when ``av`` is not exactly one well-formed type descriptor.
    """
    if not isinstance(av, Mapping) or len(av) != 1:
        raise ValidationError(
            f"{_at(path)}an AttributeValue must be an object with exactly one type key, got {av!r}",
            path=path,
        )
    if depth >= MAX_DEPTH:
        raise ValidationError(f"{_at(path)}nesting is deeper than {MAX_DEPTH} levels", path=path)
    ((tag, v),) = av.items()
    if tag == "S":
        if not isinstance(v, str):
            raise ValidationError(f"{_at(path)}S must be a string", path=path)
        return v
    if tag == "N":
        return _parse_number(v, path)
    if tag == "B":
        return _parse_bytes(v, path)
    if tag == "BOOL":
        if not isinstance(v, bool):
            raise ValidationError(f"{_at(path)}BOOL must be true or false", path=path)
        return v
    if tag == "NULL":
        if v is not True:
            raise ValidationError(f"{_at(path)}NULL must be true", path=path)
        return None
    if tag == "M":
        if not isinstance(v, Mapping):
            raise ValidationError(f"{_at(path)}M must be an object", path=path)
        out = {}
        for k, x in v.items():
            if not isinstance(k, str) or not k:
                raise ValidationError(f"{_at(path)}map keys must be non-empty strings", path=path)
            out[k] = from_dynamodb_json(x, f"{path}.{k}" if path else k, depth + 1)
        return out
    if tag == "L":
        if not isinstance(v, list):
            raise ValidationError(f"{_at(path)}L must be an array", path=path)
        return [from_dynamodb_json(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
    if tag in ("SS", "NS", "BS"):
        if not isinstance(v, list) or not v:
            raise ValidationError(f"{_at(path)}{tag} must be a non-empty array", path=path)
        if tag == "SS":
            if not all(isinstance(x, str) for x in v):
                raise ValidationError(f"{_at(path)}SS must hold strings", path=path)
            out_set: set[Any] = set(v)
        elif tag == "NS":
            out_set = {_parse_number(x, path) for x in v}
        else:
            out_set = {_parse_bytes(x, path) for x in v}
        if len(out_set) != len(v):
            raise ValidationError(f"{_at(path)}{tag} holds duplicate values", path=path)
        return out_set
    raise ValidationError(f"{_at(path)}unknown AttributeValue type {tag!r}", path=path)


def item_from_dynamodb_json(item: Any) -> Item:
    """Parse a DynamoDB JSON item (a map of name to AttributeValue)."""
    if not isinstance(item, Mapping):
        raise ValidationError("an item must be an object of attribute name to AttributeValue")
    out: Item = {}
    for k, v in item.items():
        if not isinstance(k, str) or not k:
            raise ValidationError(f"attribute names must be non-empty strings, got {k!r}")
        out[k] = from_dynamodb_json(v, k, 1)
    return out
