"""Request bodies and DynamoDB JSON -> items at the endpoint, in DynamoDB's words.

What :mod:`streamkit.records` does for the Python API, redone for the endpoint:

* errors say what DynamoDB says (``One or more parameter values were invalid: ...``,
  type names S, N, M, ..., JSON's ``string`` / ``number`` / ``map``), never Python's;
* sizes are counted while converting, so an item or a value past 400 KB is refused as
  soon as the count passes the limit, not after the whole thing is built;
* a large body is parsed and converted in a worker thread (:func:`parse_large`): the
  operations, running on the event loop, then find its items and values converted
  (:data:`PREPARED`) and only look them up.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from streamkit.records._values import (
    MAX_DEPTH,
    MAX_ITEM_BYTES,
    Item,
    Value,
    canonical_number,
    significant_digits,
)
from streamkit.server._errors import INVALID, DynamoError, validation

__all__ = (
    "PREPARED",
    "check_name",
    "from_dynamodb_json",
    "item_from_dynamodb_json",
    "json_type",
    "parameter_error",
    "parameter_type",
    "parse_body",
    "parse_large",
    "shown",
    "timestamp",
)

ITEM_TOO_LARGE = "Item size has exceeded the maximum allowed size"
VALUE_TOO_LARGE = INVALID + "An AttributeValue has exceeded the maximum item size (400 KB)"
MAX_NAME_BYTES = 65535  # an attribute name (or map key): "64 KB", 65536 itself refused
NAME_TOO_LONG = (
    "1 validation error detected: Attribute name is too large, must be less than 65536 bytes"
)
NESTING = "Nesting Levels have exceeded supported limits"

_TAGS = frozenset(("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"))
_SETS = {"SS": "string", "NS": "number", "BS": "binary"}
_CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")  # as DynamoDB returns them
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_PREPARED = 250_000  # entries a large body's preparation keeps (the rest: on the loop)

Prepared = dict[tuple[int, bool], tuple[object, Any]]
"""``(id(json), is_item) -> (json, result)``: conversions done off the event loop."""

PREPARED: contextvars.ContextVar[Prepared | None] = contextvars.ContextVar(
    "streamkit_prepared", default=None
)
"""The current request's :func:`parse_large` conversions (None for a small body)."""


def json_type(value: Any) -> str:
    """A JSON value's type in DynamoDB's words (``map``, not ``dict``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return "value"


def shown(value: Any, limit: int = 100) -> str:
    """A request's value as JSON text for an error message (``null``, not ``None``)."""
    try:
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
    except (TypeError, ValueError, RecursionError):
        text = json_type(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_PARAMETER_TYPES = {str: "string", dict: "map", list: "list", bool: "boolean", int: "integer"}


def parameter_type(kind: type | tuple[type, ...]) -> str:
    """What a request parameter of Python type(s) ``kind`` is called in DynamoDB's words."""
    if isinstance(kind, tuple):
        return "number" if int in kind else " or ".join(parameter_type(k) for k in kind)
    return _PARAMETER_TYPES.get(kind, "number")


def parameter_error(e: BaseException) -> DynamoError:
    """A ValidationException for input an operation did not anticipate (an overflow, a
    wrong type deep inside): the caller's fault, never a 500, never Python's words."""
    if isinstance(e, ArithmeticError):  # OverflowError above all
        return validation(INVALID + "A number in the request is out of the supported range")
    if isinstance(e, RecursionError):
        return validation(NESTING)
    return validation(INVALID + "A parameter has a value of the wrong type or out of range")


def timestamp(value: Any, name: str) -> datetime:
    """A request's epoch-seconds time parameter (``RestoreDateTime``) as a datetime."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, ValueError, OSError):
        raise validation(f"{INVALID}{name} is not a time DynamoDB can represent") from None


# --- bodies ---------------------------------------------------------------------------------


def _serialization(message: str) -> DynamoError:
    return DynamoError("SerializationException", message, coral=True)


_LONG = 2**63


def _integer(text: str) -> int:
    # integers in a request are parameters (numbers in items are strings): Java longs
    value = int(text) if len(text) <= 20 else _LONG
    if not -_LONG <= value < _LONG:
        raise validation(f"{INVALID}The number {text[:40]} is out of range for a parameter")
    return value


@functools.cache
def _decoder(hook: Any) -> json.JSONDecoder:
    # one decoder per hook, made once: json.loads with any option builds a new one per
    # call, which was a visible share of a small request
    return json.JSONDecoder(parse_float=Decimal, parse_int=_integer, object_hook=hook)


def _decode(raw: bytes, hook: Any) -> dict[str, Any]:
    try:
        # what json.loads does with bytes: UTF-8, -16 or -32, told by the first bytes
        body = _decoder(hook).decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except UnicodeDecodeError:
        raise _serialization("Malformed JSON: the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise _serialization(f"Malformed JSON: {e}") from None
    except RecursionError:
        raise _serialization("Malformed JSON: nesting too deep") from None
    if not isinstance(body, dict):
        raise _serialization("The request body must be a JSON object")
    return body


def parse_body(raw: bytes) -> dict[str, Any]:
    """A small request body (on the event loop)."""
    return _decode(raw, None) if raw else {}


def _let_others_run(obj: Any) -> Any:
    # a Python-level hook: json's C parser then hands the GIL back to the event loop's
    # thread between objects instead of holding it for the whole body
    return obj


def parse_large(raw: bytes) -> tuple[dict[str, Any], Prepared]:
    """A large request body, parsed and its items and values converted (in a worker thread:
    ``asyncio.to_thread(parse_large, raw)``)."""
    body = _decode(raw, _let_others_run)
    return body, _prepare(body)


def _is_av(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and next(iter(value)) in _TAGS


def _prepare(body: dict[str, Any]) -> Prepared:
    """Convert every item-shaped map (all values AttributeValues) and every outermost
    AttributeValue of ``body``, keeping each result (or its error) by identity."""
    out: Prepared = {}
    stack: list[Any] = [body]
    while stack and len(out) < _MAX_PREPARED:
        node = stack.pop()
        if type(node) is list:
            stack.extend(v for v in node if type(v) in (dict, list))
        elif type(node) is not dict:
            continue
        elif node and all(_is_av(v) for v in node.values()):
            out[(id(node), True)] = (node, _attempt(_item, node, out))
        elif _is_av(node):
            result = _value_entry(node, out)
            inner = next(iter(node.values()))
            if isinstance(result, _Bad) and not result.where and type(inner) in (dict, list):
                stack.append(inner)  # not an AttributeValue after all: look inside
        else:
            stack.extend(v for v in node.values() if type(v) in (dict, list))
    return out


# --- AttributeValues ------------------------------------------------------------------------


class _Bad(Exception):
    """A conversion error, with the path below where it happened (innermost first)."""

    def __init__(self, message: str, *, with_path: bool = True, body: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.with_path = with_path
        self.body = body  # the JSON itself is wrong: a SerializationException
        self.where: list[str] = []

    def under(self, segment: str) -> _Bad:
        """The same error one level further out (cached errors are never changed)."""
        bad = _Bad(self.message, with_path=self.with_path, body=self.body)
        bad.where = [*self.where, segment]
        return bad

    def error(self, root: str = "") -> DynamoError:
        if self.body:
            return _serialization(self.message)
        path = (root + "".join(reversed(self.where))).lstrip(".")
        if path and self.with_path:
            return validation(f"{self.message} (at {path})")
        return validation(self.message)


class _TooLarge(_Bad):
    def __init__(self) -> None:
        super().__init__(VALUE_TOO_LARGE, with_path=False)


def _wrong(tag: str, expected: str, value: Any) -> _Bad:
    if expected in ("string", "list of strings") and json_type(value) == "number":
        # DynamoDB's JSON reader refuses a JSON number where a string belongs
        return _Bad("NUMBER_VALUE cannot be converted to String", body=True)
    return _Bad(
        f"{INVALID}Invalid value for {tag}: expected type: {expected}, got: {json_type(value)}"
    )


def _text_size(text: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Bad(f"{INVALID}A string is not valid Unicode (it holds a lone surrogate)") from None


def _name_size(name: str) -> int:
    """An attribute name's (or map key's) size, at most 64 KB as DynamoDB's."""
    size = len(name) if name.isascii() else _text_size(name)
    if size > MAX_NAME_BYTES:
        raise _Bad(NAME_TOO_LONG, with_path=False)
    return size


def check_name(name: str) -> str:
    """An attribute name of a request (``ExpressionAttributeNames``, legacy parameters):
    a ValidationException in DynamoDB's words if it is longer than 64 KB."""
    if len(name) > MAX_NAME_BYTES // 4:  # shorter ones fit whatever their characters
        try:
            _name_size(name)
        except _Bad as e:
            raise e.error() from None
    return name


def _number(text: Any, tag: str = "N") -> tuple[Decimal, int]:
    """A number's canonical Decimal and its size."""
    if type(text) is not str:
        raise _wrong(tag, "string", text)
    if len(text) <= 40 and text != "-0" and _CANONICAL.fullmatch(text) is not None:
        # the common case: already canonical, at most 38 digits, well within range
        significant = len(text.replace("-", "").replace(".", "").strip("0"))
        if significant <= 38:
            return Decimal(text), (max(significant, 1) + 1) // 2 + 1
    if _NUMBER.fullmatch(text) is None:
        raise _not_numeric(text)
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):  # an exponent beyond what Decimal holds
        raise _not_numeric(text) from None
    if d.is_zero():
        return canonical_number(d), 2
    digits = significant_digits(d)
    if digits > 38:
        raise _Bad("Attempting to store more than 38 significant digits in a Number")
    if d.adjusted() > 125:
        raise _Bad(
            "Number overflow. Attempting to store a number with magnitude larger than "
            "supported range"
        )
    if d.adjusted() < -130:
        raise _Bad(
            "Number underflow. Attempting to store a number with magnitude smaller than "
            "supported range"
        )
    return canonical_number(d), (digits + 1) // 2 + 1


def _not_numeric(text: str) -> _Bad:
    said = "The parameter cannot be converted to a numeric value"
    return _Bad(f"{said}: {text[:100]}" if text else said)


def _binary(text: Any, tag: str = "B") -> bytes:
    if type(text) is not str:
        raise _wrong(tag, "string (base64)", text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{INVALID}A value provided for {tag} is not valid base64") from None


def _shape(av: Any) -> _Bad:
    if type(av) is not dict:
        return _Bad(f"{INVALID}Invalid AttributeValue: expected type: map, got: {json_type(av)}")
    return _Bad(
        INVALID
        + (
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
            if not av
            else "Supplied AttributeValue has more than one datatypes set, must contain "
            "exactly one of the supported datatypes"
        )
    )


class _Converter:
    """One AttributeValue -> its normalized value, counting its size against ``left``
    (DynamoDB's sizes: a container's overhead is counted before its members are read)."""

    __slots__ = ("deepest", "left")

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.deepest = 0  # the deepest nesting level reached (the top is 0)

    def value(self, av: Any, depth: int) -> Value:
        if type(av) is not dict or len(av) != 1:
            raise _shape(av)
        ((tag, v),) = av.items()
        if tag == "S":
            if type(v) is not str:
                raise _wrong("S", "string", v)
            self.left -= len(v) if v.isascii() else _text_size(v)
        elif tag == "N":
            v, size = _number(v)
            self.left -= size
        elif tag == "M":
            return self.map(v, depth)
        elif tag == "L":
            return self.list(v, depth)
        elif tag == "BOOL":
            if type(v) is not bool:
                raise _wrong("BOOL", "boolean", v)
            self.left -= 1
        elif tag == "NULL":
            if v is not True:
                raise _Bad(f"{INVALID}Null attribute value types must have the value of true")
            self.left -= 1
            v = None
        elif tag == "B":
            v = _binary(v)
            self.left -= len(v)
        elif tag in _SETS:
            return self.set(tag, v)
        else:
            raise _Bad(
                f"{INVALID}Supplied AttributeValue has an unsupported datatype {tag[:40]!r}: "
                "expected one of S, N, B, BOOL, NULL, M, L, SS, NS, BS"
            )
        if self.left < 0:
            raise _TooLarge
        return v

    def _enter(self, members: int, depth: int) -> None:
        self.left -= 3 + members  # the container, and one byte per member
        if self.left < 0:
            raise _TooLarge
        if members and depth + 1 > self.deepest:
            if depth + 1 >= MAX_DEPTH:
                raise _Bad(NESTING)
            self.deepest = depth + 1

    def map(self, v: Any, depth: int) -> dict[str, Value]:
        if type(v) is not dict:
            raise _wrong("M", "map", v)
        self._enter(len(v), depth)
        out: dict[str, Value] = {}
        for k, x in v.items():
            if not k:
                raise _Bad(f"{INVALID}A map key may not be empty")
            self.left -= _name_size(k)
            try:
                out[k] = self.value(x, depth + 1)
            except _Bad as e:
                e.where.append("." + k)
                raise
        return out

    def list(self, v: Any, depth: int) -> list[Value]:
        if type(v) is not list:
            raise _wrong("L", "list", v)
        self._enter(len(v), depth)
        out: list[Value] = []
        for i, x in enumerate(v):
            try:
                out.append(self.value(x, depth + 1))
            except _Bad as e:
                e.where.append(f"[{i}]")
                raise
        return out

    def set(self, tag: str, v: Any) -> set[Any]:
        if type(v) is not list:
            raise _wrong(tag, "list", v)
        if not v:  # DynamoDB's words, its grammar and spacing included
            raise _Bad(
                INVALID
                + (
                    "Binary sets should not be empty"
                    if tag == "BS"
                    else f"An {_SETS[tag]} set  may not be empty"
                )
            )
        out: set[Any] = set()
        for x in v:
            member: Any = x
            if tag == "SS":
                if type(x) is not str:
                    raise _wrong(tag, "list of strings", x)
                self.left -= _text_size(x)
            elif tag == "NS":
                member, size = _number(x, tag)
                self.left -= size
            else:
                member = _binary(x, tag)
                self.left -= len(member)
            if self.left < 0:
                raise _TooLarge
            out.add(member)
        if len(out) != len(v):  # DynamoDB's words, as it says them for each type
            if tag == "NS":
                raise _Bad("Input collection contains duplicates")
            shown_members = ", ".join(str(x) for x in v)[:200]
            of_type = "of type BS " if tag == "BS" else " "
            raise _Bad(f"{INVALID}Input collection [{shown_members}]{of_type}contains duplicates.")
        return out


_ValueEntry = tuple[Value, int, int]  # (value, size, levels of nesting)


def _convert_value(av: Any) -> _ValueEntry | _Bad:
    c = _Converter(MAX_ITEM_BYTES)
    try:
        value = c.value(av, 0)
    except _Bad as e:
        return e
    return value, MAX_ITEM_BYTES - c.left, c.deepest + 1


def _value_entry(av: Any, prepared: Prepared | None) -> _ValueEntry | _Bad:
    """A value's conversion: prepared (then forgotten, so it is never shared) or done now.
    With ``prepared`` being filled (:func:`_prepare`), it is kept there."""
    if prepared is not None:
        key = (id(av), False)
        hit = prepared.get(key)
        if hit is not None and hit[0] is av:
            return hit[1]  # type: ignore[no-any-return]
        result = _convert_value(av)
        prepared[key] = (av, result)
        return result
    current = PREPARED.get()
    if current is not None:
        hit = current.pop((id(av), False), None)
        if hit is not None and hit[0] is av:
            return hit[1]  # type: ignore[no-any-return]
    return _convert_value(av)


def _item(obj: Any, prepared: Prepared | None) -> Item:
    if type(obj) is not dict:
        raise _Bad(f"{INVALID}Invalid item: expected type: map, got: {json_type(obj)}")
    if prepared is None and PREPARED.get() is None:
        return _item_now(obj)
    out: Item = {}
    size = 0
    for name, av in obj.items():
        if not name:
            raise _Bad(f"{INVALID}An attribute name may not be empty")
        entry = _value_entry(av, prepared)
        if isinstance(entry, _TooLarge):
            raise _Bad(ITEM_TOO_LARGE, with_path=False)
        if isinstance(entry, _Bad):
            raise entry.under(name)
        value, value_size, levels = entry
        if levels >= MAX_DEPTH:  # an item's attributes are one level down already
            raise _Bad(NESTING).under(name)
        size += _name_size(name) + value_size
        if size > MAX_ITEM_BYTES:
            raise _Bad(ITEM_TOO_LARGE, with_path=False)
        out[name] = value
    return out


def _item_now(obj: dict[str, Any]) -> Item:
    """An item converted in one pass, its size counted against one 400 KB budget."""
    c = _Converter(MAX_ITEM_BYTES)
    out: Item = {}
    for name, av in obj.items():
        if not name:
            raise _Bad(f"{INVALID}An attribute name may not be empty")
        c.left -= _name_size(name)
        try:
            out[name] = c.value(av, 1)  # an item's attributes are one level down already
        except _TooLarge:
            raise _Bad(ITEM_TOO_LARGE, with_path=False) from None
        except _Bad as e:
            e.where.append(name)
            raise
    if c.left < 0:
        raise _Bad(ITEM_TOO_LARGE, with_path=False)
    return out


def _attempt(fn: Any, obj: Any, prepared: Prepared) -> Any:
    try:
        return fn(obj, prepared)
    except _Bad as e:
        return e


def from_dynamodb_json(av: Any, path: str = "") -> Value:
    """An AttributeValue of a request (``ExpressionAttributeValues``, legacy values) as a
    normalized value; a ValidationException in DynamoDB's words if it is not one."""
    entry = _value_entry(av, None)
    if isinstance(entry, _Bad):
        raise entry.error(path)
    return entry[0]


def item_from_dynamodb_json(obj: Any) -> Item:
    """An item (or key) of a request as a normalized item; at most 400 KB."""
    current = PREPARED.get()
    if current is not None:
        hit = current.pop((id(obj), True), None)
        if hit is not None and hit[0] is obj:
            if isinstance(hit[1], _Bad):
                raise hit[1].error()
            return hit[1]  # type: ignore[no-any-return]
    try:
        return _item(obj, None)
    except _Bad as e:
        raise e.error() from None
