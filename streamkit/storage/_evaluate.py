"""Running expressions: conditions, updates, projections and key conditions.

The compile step (:mod:`streamkit.storage._expressions`) hands this module
*resolved* trees: every name literal and every value a normalized
:class:`~streamkit.storage._conditions.Const`. Here they are turned into
plain Python closures once, so that evaluating a condition on an item costs a
few function calls and no tree walking.

DynamoDB's rules, as implemented:

* A missing attribute (or a path through something that is not a map or a
  list) makes every comparison and function false, except ``<>`` which is then
  true, and ``attribute_not_exists`` of course.
* ``=`` / ``<>`` / ``IN`` compare type and value: ``1`` never equals ``"1"``,
  map order does not matter. ``< <= > >= BETWEEN`` only order two strings
  (by code point, which is UTF-8 byte order), two numbers or two binaries;
  any other pair is false.
* ``size`` counts UTF-16 code units of a string, bytes of a binary, elements
  of a set, list or map; other types have no size.
* Updates work on a copy: the input item is never changed. Every right-hand
  side is evaluated against the item as it was before the update; list
  indexes refer to positions before the update; a list index past the end
  appends; REMOVE of list elements shifts the rest; DELETE that empties a set
  removes the attribute.

Compiled objects are immutable and hold their values, so one can be reused
for many items and many calls, from any thread.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal
from types import MappingProxyType
from typing import Any, Final, cast

from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.records._values import canonical_number, type_of, values_equal
from streamkit.storage._conditions import (
    And,
    Arith,
    AttributeType,
    BeginsWith,
    Between,
    Compare,
    Condition,
    Const,
    Contains,
    Exists,
    IfNotExists,
    In,
    ListAppend,
    Not,
    NotExists,
    Operand,
    Or,
    PathRef,
    Size,
    UpdateExpr,
    format_path,
    walk,
)

__all__ = (
    "MISSING",
    "NOT_FOR_KEYS",
    "CompiledCondition",
    "CompiledUpdate",
    "CompositeKeyCondition",
    "KeyCondition",
    "Projection",
    "composite_key_condition",
    "elements",
    "get_path",
    "key_condition",
    "top_level_names",
)

Item = Mapping[str, Any]
Path = tuple[str | int, ...]
Getter = Callable[[Item], Any]
Predicate = Callable[[Item], bool]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
"""What a path evaluates to when there is nothing there."""

_EMPTY: Final[Item] = MappingProxyType({})
_ORDERED: Final = frozenset({str, Decimal, bytes})
_SCALARS: Final = frozenset({str, Decimal, bytes, bool, type(None)})
_ORDER_OPS: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
# exact arithmetic: two 38-digit numbers 255 orders of magnitude apart still add exactly;
# canonical_number then refuses what DynamoDB cannot store
_ARITH: Final = Context(prec=400)


def elements(node: PathRef) -> Path:
    """A resolved path's elements (resolved trees hold no placeholders)."""
    return cast(Path, node.elements)


def get_path(item: Item, path: Path) -> Any:
    """The value at ``path`` in ``item``, or :data:`MISSING`."""
    cur: Any = item.get(cast(str, path[0]), MISSING)
    for e in path[1:]:
        if isinstance(e, str):
            if type(cur) is not dict:
                return MISSING
            cur = cur.get(e, MISSING)
        else:
            if type(cur) is not list or e >= len(cur):
                return MISSING
            cur = cur[e]
    return cur


def _path_getter(node: PathRef) -> Getter:
    path = elements(node)
    if len(path) == 1:
        name = cast(str, path[0])
        return lambda item: item.get(name, MISSING)
    return lambda item: get_path(item, path)


def _size(value: Any) -> Any:
    t = type(value)
    if t is str:
        # DynamoDB counts UTF-16 code units: a character outside the BMP counts twice
        return Decimal(len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2)
    if t is bytes or t is list or t is dict or t is set:
        return Decimal(len(value))
    return MISSING


def _getter(node: Operand) -> Getter:
    if isinstance(node, PathRef):
        return _path_getter(node)
    if isinstance(node, Const):
        value = node.value
        return lambda item: value
    if isinstance(node, Size):
        get = _path_getter(node.path)
        return lambda item: _size(get(item))
    raise TypeError(f"not a condition operand: {node!r}")


def _equal(a: Any, b: Any) -> bool:
    return a is not MISSING and b is not MISSING and values_equal(a, b)


def _compare(node: Compare) -> Predicate:
    op, left, right = node.op, node.left, node.right
    if op == "<>":
        eq = _compare(Compare("=", left, right))
        return lambda item: not eq(item)
    lg = _getter(left)
    if op == "=":
        if isinstance(right, Const) and type(right.value) in _SCALARS:
            # the common `attr = :value`: one type test and one == per item
            v, tv = right.value, type(right.value)
            if isinstance(left, PathRef) and len(left.elements) == 1:
                name = cast(str, left.elements[0])
                return lambda item: type(a := item.get(name, MISSING)) is tv and a == v
            return lambda item: type(a := lg(item)) is tv and a == v
        rg = _getter(right)
        return lambda item: _equal(lg(item), rg(item))
    rg = _getter(right)
    cmp = _ORDER_OPS[op]

    def ordered(item: Item) -> bool:
        a, b = lg(item), rg(item)
        ta = type(a)
        return ta is type(b) and ta in _ORDERED and cmp(a, b)

    return ordered


def _in(node: In) -> Predicate:
    get = _getter(node.operand)
    consts = [o for o in node.options if isinstance(o, Const)]
    if len(consts) == len(node.options):
        values = [o.value for o in consts]
        keys = frozenset((type(v), v) for v in values if type(v) in _SCALARS)
        others = [v for v in values if type(v) not in _SCALARS]

        def in_constants(item: Item) -> bool:
            a = get(item)
            ta = type(a)
            if ta in _SCALARS:
                return (ta, a) in keys
            return a is not MISSING and any(values_equal(a, v) for v in others)

        return in_constants
    getters = [_getter(o) for o in node.options]
    return lambda item: any(_equal(get(item), g(item)) for g in getters)


def _between(node: Between) -> Predicate:
    get, low, high = _getter(node.operand), _getter(node.low), _getter(node.high)

    def between(item: Item) -> bool:
        a, lo, hi = get(item), low(item), high(item)
        ta = type(a)
        return ta in _ORDERED and ta is type(lo) and ta is type(hi) and lo <= a <= hi

    return between


def _begins_with(node: BeginsWith) -> Predicate:
    get, prefix = _getter(node.operand), _getter(node.prefix)

    def begins_with(item: Item) -> bool:
        a = get(item)
        ta = type(a)
        if ta is not str and ta is not bytes:
            return False
        p = prefix(item)
        return type(p) is ta and bool(a.startswith(p))

    return begins_with


def _contains(node: Contains) -> Predicate:
    get, operand = _getter(node.operand), _getter(node.value)

    def contains(item: Item) -> bool:
        a = get(item)
        ta = type(a)
        if ta is str or ta is bytes:
            b = operand(item)
            return type(b) is ta and b in a
        if ta is set:
            # sets hold one type and never equal across types, but bool == 1 in Python
            b = operand(item)
            return type(b) in _ORDERED and b in a
        if ta is list:
            b = operand(item)
            return b is not MISSING and any(values_equal(x, b) for x in a)
        return False

    return contains


def _chain(node: Condition, cls: type[And | Or]) -> list[Condition]:
    """The operands of a run of ANDs (or ORs), left to right, without recursion."""
    out: list[Condition] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, cls):
            stack.append(n.right)
            stack.append(n.left)
        else:
            out.append(n)
    return out


def _predicate(node: Condition) -> Predicate:
    if isinstance(node, Compare):
        return _compare(node)
    if isinstance(node, (And, Or)):
        parts = [_predicate(c) for c in _chain(node, type(node))]
        if len(parts) == 2:
            p, q = parts
            if isinstance(node, And):
                return lambda item: p(item) and q(item)
            return lambda item: p(item) or q(item)
        if isinstance(node, And):
            return lambda item: all(p(item) for p in parts)
        return lambda item: any(p(item) for p in parts)
    if isinstance(node, Not):
        inner = _predicate(node.operand)
        return lambda item: not inner(item)
    if isinstance(node, Exists):
        get = _path_getter(node.path)
        return lambda item: get(item) is not MISSING
    if isinstance(node, NotExists):
        get = _path_getter(node.path)
        return lambda item: get(item) is MISSING
    if isinstance(node, In):
        return _in(node)
    if isinstance(node, Between):
        return _between(node)
    if isinstance(node, BeginsWith):
        return _begins_with(node)
    if isinstance(node, Contains):
        return _contains(node)
    if isinstance(node, AttributeType):
        get = _getter(node.operand)
        tag = cast(Const, node.type).value
        return lambda item: (a := get(item)) is not MISSING and type_of(a) == tag
    raise TypeError(f"not a condition: {node!r}")


def top_level_names(node: Any) -> frozenset[str]:
    """The top-level attribute names a tree reads or writes."""
    return frozenset(
        n.elements[0]
        for n in walk(node)
        if isinstance(n, PathRef) and isinstance(n.elements[0], str)
    )


class CompiledCondition:
    """A condition or filter, resolved, checked and ready to evaluate.

    Attributes:
        ast: the resolved tree.
        expression: the text it came from (None for a builder condition).
        attributes: the top-level attribute names it reads.
    """

    __slots__ = ("_fn", "ast", "attributes", "expression")

    def __init__(
        self,
        ast: Condition,
        expression: str | None = None,
        attributes: frozenset[str] | set[str] | None = None,
    ) -> None:
        self.ast = ast
        self.expression = expression
        self.attributes = frozenset(top_level_names(ast) if attributes is None else attributes)
        self._fn = _predicate(ast)

    def evaluate(self, item: Item | None) -> bool:
        """Whether ``item`` satisfies the condition; ``None`` is an absent item.

        Never raises for a normalized item: a type mismatch is simply false.
        """
        return self._fn(_EMPTY if item is None else item)

    def __repr__(self) -> str:
        return f"CompiledCondition({self.expression or self.ast!r})"


# --- key conditions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyCondition:
    """A checked key condition: the partition key value and the sort key range.

    Attributes:
        partition_value: the normalized value the partition key must equal
            (its type is for the caller to check against the table).
        sort_op: None (the whole partition), "=", "<", "<=", ">", ">=",
            "between" or "begins_with".
        sort_values: the operands of ``sort_op`` (two for "between", else one).
    """

    partition_value: Any
    sort_op: str | None = None
    sort_values: tuple[Any, ...] = ()

    def sort_matches(self, value: Any) -> bool:
        """Whether a sort key value lies in the range (type mismatches are false)."""
        op = self.sort_op
        if op is None:
            return True
        first = self.sort_values[0]
        if type(value) is not type(first):
            return False
        if op == "=":
            return bool(value == first)
        if op == "between":
            return bool(first <= value <= self.sort_values[1])
        if op == "begins_with":
            return bool(value.startswith(first))
        return bool(_ORDER_OPS[op](value, first))


_FLIPPED: Final = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# the conditions a key condition may not use, as DynamoDB names them in its refusal
NOT_FOR_KEYS: Final = {
    Or: "OR",
    Not: "NOT",
    In: "IN",
    Exists: "attribute_exists",
    NotExists: "attribute_not_exists",
    AttributeType: "attribute_type",
    Contains: "contains",
}
Fail = Callable[[str, int], ExpressionError]


def key_condition(
    tree: Condition, *, partition_key: str, sort_key: str | None, fail: Fail
) -> KeyCondition:
    """The :class:`KeyCondition` a resolved tree states, or ``fail(message, position)``."""
    parts: dict[str, tuple[str, tuple[Any, ...], int]] = {}
    for leaf in [tree.left, tree.right] if isinstance(tree, And) else [tree]:
        name, op, values, pos = _key_part(leaf, fail)
        if name in parts:
            raise fail("KeyConditionExpressions must only contain one condition per key", pos)
        parts[name] = (op, values, pos)
    if partition_key not in parts:
        raise fail(f"Query condition missed key schema element: {partition_key}", -1)
    op, values, pos = parts.pop(partition_key)
    if op != "=":
        raise fail(
            f"Query key condition not supported: the partition key {partition_key} takes only "
            f"= (got {op})",
            pos,
        )
    if not parts:
        return KeyCondition(values[0])
    ((name, (op, sort_values, pos)),) = parts.items()
    if name != sort_key:
        has = f"the sort key is {sort_key}" if sort_key else "the table has no sort key"
        raise fail(
            f"Query key condition not supported: {name} is not a key attribute ({has}); "
            "use filter= for other attributes",
            pos,
        )
    _check_sort_operands(op, sort_values, pos, fail)
    return KeyCondition(values[0], op, sort_values)


def _check_sort_operands(op: str, values: Sequence[Any], pos: int, fail: Fail) -> None:
    """A sort key condition compares S, N or B values (begins_with: S or B only)."""
    for v in values:
        if type(v) not in _ORDERED or (op == "begins_with" and type(v) is Decimal):
            raise fail(
                "Incorrect operand type for operator or function; "
                f"operator or function: {op}, operand type: {type_of(v)}",
                pos,
            )


@dataclass(frozen=True, slots=True)
class CompositeKeyCondition:
    """A checked key condition on an index with a multi-attribute key.

    Attributes:
        hash_values: the value of each partition key attribute, in key order.
        equal: the values of the leading sort key attributes compared with ``=``.
        sort_op: None, or the condition on the sort key attribute after those
            (as :class:`KeyCondition`'s), with ``sort_values``.
    """

    hash_values: tuple[Any, ...]
    equal: tuple[Any, ...] = ()
    sort_op: str | None = None
    sort_values: tuple[Any, ...] = ()


def _leaves(tree: Condition) -> list[Condition]:
    return [*_leaves(tree.left), *_leaves(tree.right)] if isinstance(tree, And) else [tree]


def composite_key_condition(
    tree: Condition, *, hash_keys: Sequence[str], range_keys: Sequence[str], fail: Fail
) -> CompositeKeyCondition:
    """The :class:`CompositeKeyCondition` a resolved tree states: every partition key
    attribute with ``=``, then sort key attributes left to right with no gap, each ``=``
    but the last conditioned one (DynamoDB's rules for multi-attribute keys)."""
    parts: dict[str, tuple[str, tuple[Any, ...], int]] = {}
    for leaf in _leaves(tree):
        name, op, values, pos = _key_part(leaf, fail)
        if name in parts:
            raise fail("KeyConditionExpressions must only contain one condition per key", pos)
        parts[name] = (op, values, pos)
    for name, (_, _, pos) in parts.items():
        if name not in hash_keys and name not in range_keys:
            raise fail(
                f"Query key condition not supported: {name} is not a key attribute of the "
                "index (its HASH attributes: "
                f"{', '.join(hash_keys)}; its RANGE attributes: {', '.join(range_keys) or 'none'})",
                pos,
            )
    hash_values = []
    for name in hash_keys:
        if name not in parts:
            raise fail(
                "Query key condition not supported: every HASH attribute of the index key "
                f"needs an equality condition; {name} has none",
                -1,
            )
        op, values, pos = parts[name]
        if op != "=":
            raise fail(
                f"Query key condition not supported: the HASH attribute {name} takes only an "
                f"equality condition (got {op})",
                pos,
            )
        hash_values.append(values[0])
    given = [n for n in range_keys if n in parts]
    expected = list(range_keys[: len(given)])
    if given != expected:
        missing = next(n for n in expected if n not in parts)
        raise fail(
            "Query key condition not supported: RANGE attributes are conditioned left to "
            f"right, each with an equality condition before the last; {missing} has none",
            -1,
        )
    equal: list[Any] = []
    for i, name in enumerate(given):
        op, values, pos = parts[name]
        if op == "=" and i < len(given) - 1:
            equal.append(values[0])
            continue
        if i < len(given) - 1:
            raise fail(
                f"Query key condition not supported: the RANGE attribute {name} has {op}, but "
                "only the last conditioned RANGE attribute may have other than an equality "
                "condition",
                pos,
            )
        _check_sort_operands(op, values, pos, fail)
        return CompositeKeyCondition(tuple(hash_values), tuple(equal), op, values)
    return CompositeKeyCondition(tuple(hash_values), tuple(equal))


def _key_part(leaf: Condition, fail: Fail) -> tuple[str, str, tuple[Any, ...], int]:
    """One part of a key condition as (key name, operator, values, position)."""
    pos: int = getattr(leaf, "pos", -1)
    if isinstance(leaf, And):
        raise fail("a key condition holds at most two conditions joined by AND", pos)
    if type(leaf) in NOT_FOR_KEYS:
        label = NOT_FOR_KEYS[type(leaf)]
        raise fail(f"Invalid operator used in KeyConditionExpression: {label}", pos)
    operands: tuple[Operand, ...]
    if isinstance(leaf, Compare):
        op, path, value = leaf.op, leaf.left, leaf.right
        if op == "<>":
            raise fail("Invalid operator used in KeyConditionExpression: <>", pos)
        if isinstance(path, Const) and not isinstance(value, Const):
            op, path, value = _FLIPPED[op], value, path  # `:v < sk` is `sk > :v`
        operands = (value,)
    elif isinstance(leaf, Between):
        op, path, operands = "between", leaf.operand, (leaf.low, leaf.high)
    elif isinstance(leaf, BeginsWith):
        op, path, operands = "begins_with", leaf.operand, (leaf.prefix,)
    else:  # pragma: no cover - every condition class is handled above
        raise TypeError(f"not a condition: {leaf!r}")
    if isinstance(path, Size) or any(isinstance(o, Size) for o in operands):
        raise fail("Invalid operator used in KeyConditionExpression: size", pos)
    values = tuple(o.value for o in operands if isinstance(o, Const))
    if not isinstance(path, PathRef) or len(values) != len(operands):
        raise fail("a key condition compares one key attribute with values", pos)
    name = path.elements[0]
    if len(path.elements) != 1 or not isinstance(name, str):
        raise fail(
            f"key conditions use top-level key attributes, not {format_path(path.elements)}", pos
        )
    return name, op, values, pos


# --- projections -------------------------------------------------------------------------------


class Projection:
    """A projection: which attributes (and nested parts) of an item to return.

    ``a.b`` keeps ``{"a": {"b": ...}}``; list indexes keep the chosen elements,
    in list order (``a[3], a[1]`` gives ``{"a": [a1, a3]}``); paths that lead
    nowhere are left out. Returned values are shared with the item, not copied.

    Attributes:
        paths: the projected paths.
        expression: the text it came from, if any.
        attributes: the top-level attribute names it keeps.
    """

    __slots__ = ("_flat", "_tree", "attributes", "expression", "paths")

    def __init__(self, paths: Sequence[Path], expression: str | None = None) -> None:
        self.paths = tuple(paths)
        self.expression = expression
        self.attributes = frozenset(p[0] for p in self.paths if type(p[0]) is str)
        self._flat = all(len(p) == 1 for p in self.paths)
        tree: dict[Any, Any] = {}
        for p in self.paths:
            node = tree
            for e in p[:-1]:
                node = node.setdefault(e, {})
            node[p[-1]] = None
        self._tree = tree

    def apply(self, item: Item) -> dict[str, Any]:
        """The projected copy of ``item``."""
        if self._flat:
            return {k: item[k] for k in self._tree if k in item}
        out = _project(self._tree, item)
        return {} if out is MISSING else cast(dict[str, Any], out)

    def __repr__(self) -> str:
        return f"Projection({', '.join(format_path(p) for p in self.paths)})"


def _project(tree: dict[Any, Any] | None, value: Any) -> Any:
    if tree is None:
        return value
    if type(next(iter(tree))) is str:
        if not isinstance(value, Mapping):
            return MISSING
        out: dict[str, Any] = {}
        for k, sub in tree.items():
            v = value.get(k, MISSING)
            if v is not MISSING and (r := _project(sub, v)) is not MISSING:
                out[k] = r
        return out or MISSING
    if type(value) is not list:
        return MISSING
    elements = [_project(tree[i], value[i]) for i in sorted(tree) if i < len(value)]
    return [e for e in elements if e is not MISSING] or MISSING


# --- updates -----------------------------------------------------------------------------------


def _invalid_path(path: Path) -> ValidationError:
    text = format_path(path)
    return ValidationError(
        f"The document path provided in the update expression is invalid for update: {text} "
        "(the attribute that should contain it is missing or is not a map or list)",
        path=text,
    )


def _wrong_type(path: Path, what: str, *values: Any) -> ValidationError:
    text = format_path(path)
    tags = ", ".join(type_of(v) for v in values)
    return ValidationError(
        f"An operand in the update expression has an incorrect data type: {text}: "
        f"{what} (got {tags})",
        path=text,
    )


def _number(value: Decimal, path: Path) -> Decimal:
    """An arithmetic result as DynamoDB stores it, or the error naming the target path."""
    try:
        return canonical_number(value)
    except ValidationError as exc:  # the path is only worth formatting when it is needed
        text = format_path(path)
        raise ValidationError(f"{text}: {exc}", path=text) from None


def _clone(value: Any) -> Any:
    """A fresh copy of a constant, so no result item shares it with the compiled update."""
    t = type(value)
    if t is list:
        return [_clone(v) for v in value]
    if t is dict:
        return {k: _clone(v) for k, v in value.items()}
    if t is set:
        return set(value)
    return value


ValueFn = Callable[[Item], Any]


def _value_fn(node: Operand, target: Path) -> ValueFn:
    """The right-hand side of a SET, evaluated against the item before the update."""
    if isinstance(node, Const):
        value = node.value
        if type(value) in _SCALARS:
            return lambda item: value
        return lambda item: _clone(value)
    if isinstance(node, PathRef):
        get = _path_getter(node)

        def read(item: Item) -> Any:
            v = get(item)
            if v is MISSING:
                text = format_path(target)
                raise ValidationError(
                    "The provided expression refers to an attribute that does not exist in "
                    f"the item: {format_path(node.elements)} (in the value for {text})",
                    path=text,
                )
            return v

        return read
    if isinstance(node, IfNotExists):
        get = _path_getter(node.path)
        default = _value_fn(node.default, target)
        return lambda item: default(item) if (v := get(item)) is MISSING else v
    if isinstance(node, ListAppend):
        first, second = _value_fn(node.first, target), _value_fn(node.second, target)

        def append(item: Item) -> Any:
            a, b = first(item), second(item)
            if type(a) is not list or type(b) is not list:
                raise _wrong_type(target, "list_append needs two lists", a, b)
            return a + b

        return append
    if isinstance(node, Arith):
        left, right = _value_fn(node.left, target), _value_fn(node.right, target)
        op = node.op
        fn = _ARITH.add if op == "+" else _ARITH.subtract

        def arith(item: Item) -> Any:
            a, b = left(item), right(item)
            if type(a) is not Decimal or type(b) is not Decimal:
                raise _wrong_type(target, f"{op} needs two numbers", a, b)
            return _number(fn(a, b), target)

        return arith
    raise TypeError(f"not an update operand: {node!r}")


def _sort_key(path: Path) -> tuple[tuple[int, Any], ...]:
    return tuple((1, e) if type(e) is int else (0, e) for e in path)


def _parent(root: dict[str, Any], path: Path, fresh: dict[int, Any]) -> Any:
    """The container that holds the last element of ``path``, copied for writing.

    Containers on the way are copied the first time they are written through
    (copy on write), so the input item and its nested values stay untouched.
    """
    cur: Any = root
    for e in path[:-1]:
        child: Any
        if isinstance(e, str):
            child = cur.get(e, MISSING) if type(cur) is dict else MISSING
        else:
            child = cur[e] if type(cur) is list and e < len(cur) else MISSING
        tc = type(child)
        if tc is dict or tc is list:
            if id(child) not in fresh:
                child = dict(child) if tc is dict else list(child)
                fresh[id(child)] = child
                cur[e] = child
        elif child is MISSING:
            raise _invalid_path(path)
        cur = child
    return cur


def _read(parent: Any, path: Path) -> Any:
    last = path[-1]
    if isinstance(last, str):
        if type(parent) is not dict:
            raise _invalid_path(path)
        return parent.get(last, MISSING)
    if type(parent) is not list:
        raise _invalid_path(path)
    return parent[last] if last < len(parent) else MISSING


def _write(parent: Any, path: Path, value: Any) -> None:
    last = path[-1]
    if isinstance(last, str):
        if type(parent) is not dict:
            raise _invalid_path(path)
        parent[last] = value
    elif type(parent) is not list:
        raise _invalid_path(path)
    elif last < len(parent):
        parent[last] = value
    else:
        parent.append(value)  # past the end appends, as DynamoDB does


def _same_set_type(a: set[Any], b: set[Any]) -> bool:
    return type(next(iter(a))) is type(next(iter(b)))


class CompiledUpdate:
    """An update (expression or keyword form), resolved, checked and ready to apply.

    Attributes:
        ast: the resolved :class:`UpdateExpr`.
        expression: the text it came from, if any.
        touched: the top-level attribute names the update writes or removes.
        updated: the paths it writes or removes as a projection, when one is nested.
    """

    __slots__ = (
        "_adds",
        "_deletes",
        "_removes",
        "_sets",
        "ast",
        "expression",
        "touched",
        "updated",
    )

    def __init__(self, ast: UpdateExpr, expression: str | None = None) -> None:
        self.ast = ast
        self.expression = expression
        targets = [a.path for a in ast.sets] + [a.path for a in ast.removes]
        targets += [a.path for a in ast.adds] + [a.path for a in ast.deletes]
        self.touched = frozenset(cast(str, p.elements[0]) for p in targets)
        # ``UPDATED_OLD``/``UPDATED_NEW`` return the updated paths, not whole attributes
        # (as DynamoDB: ``SET a.b = :v`` returns ``{"a": {"b": ...}}``); None: all top-level
        paths = list(dict.fromkeys(elements(p) for p in targets))
        self.updated = None if all(len(p) == 1 for p in paths) else Projection(paths)
        sets = [(elements(a.path), a.value) for a in ast.sets]
        if len(sets) > 1 and any(type(e) is int for path, _ in sets for e in path):
            # in path order: several appends past the end of one list land in index order
            sets.sort(key=lambda s: _sort_key(s[0]))
        self._sets = [(path, _value_fn(value, path)) for path, value in sets]
        self._removes = [elements(a.path) for a in ast.removes]
        self._adds = [(elements(a.path), cast(Const, a.value).value) for a in ast.adds]
        self._deletes = [(elements(a.path), cast(Const, a.value).value) for a in ast.deletes]

    def apply(self, item: Item, *, item_exists: bool = True) -> dict[str, Any]:
        """The item after the update; ``item`` itself is left unchanged.

        The result shares unchanged nested values with ``item``; treat both as
        read-only (streamkit does).

        Args:
            item: the current item (for a missing item, its key attributes).
            item_exists: False when the item does not exist yet: then, as in
                DynamoDB, REMOVE of a nested path is a no-op instead of an error.

        Raises:
            ValidationError: a right-hand side refers to a missing attribute,
                an operand has the wrong type, a nested path's parent is
                missing, or a number result has more than 38 digits.
        """
        values = [fn(item) for _, fn in self._sets]  # all against the old item
        new = dict(item)
        fresh: dict[int, Any] = {id(new): new}
        for (path, _), value in zip(self._sets, values, strict=True):
            if len(path) == 1:
                new[cast(str, path[0])] = value
            else:
                _write(_parent(new, path, fresh), path, value)
        emptied: list[Path] = []
        for path, value in self._adds:
            parent = _parent(new, path, fresh)
            current = _read(parent, path)
            if current is MISSING:
                result = _clone(value)
            elif type(current) is Decimal and type(value) is Decimal:
                result = _number(_ARITH.add(current, value), path)
            elif type(current) is set and type(value) is set and _same_set_type(current, value):
                result = current | value
            else:
                raise _wrong_type(
                    path,
                    "ADD needs a number to add to a number, or a set "
                    "to add to a set of the same type",
                    current,
                    value,
                )
            _write(parent, path, result)
        for path, value in self._deletes:
            parent = _parent(new, path, fresh)
            current = _read(parent, path)
            if current is MISSING:
                continue
            if type(current) is not set or not _same_set_type(current, value):
                raise _wrong_type(
                    path, "DELETE removes elements from a set of the same type", current, value
                )
            rest = current - value
            if rest:
                _write(parent, path, rest)
            else:
                emptied.append(path)  # sets cannot be empty: the attribute goes
        removes = self._removes + emptied if emptied else self._removes
        if len(removes) > 1:
            # highest list index first, so each removal leaves the others' positions alone
            removes = sorted(removes, key=_sort_key, reverse=True)
        for path in removes:
            _remove(new, item, path, fresh=fresh, strict=item_exists)
        return new

    def __repr__(self) -> str:
        return f"CompiledUpdate({self.expression or self.ast!r})"


def _remove(
    new: dict[str, Any], old: Item, path: Path, *, fresh: dict[int, Any], strict: bool
) -> None:
    last = path[-1]
    if len(path) == 1:
        new.pop(cast(str, last), None)
        return
    try:
        parent = _parent(new, path, fresh)
        _read(parent, path)  # checks that the parent is a map (or a list, for an index)
    except ValidationError:
        if strict:
            raise
        return
    if isinstance(last, str):
        parent.pop(last, None)
        return
    # positions are those before the update: an index the old list did not have is a no-op
    before = get_path(old, path[:-1])
    if type(before) is list and last < len(before) and last < len(parent):
        del parent[last]
