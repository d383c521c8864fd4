"""Binding a PartiQL statement's parameters, and planning a SELECT's key access.

:mod:`streamkit.storage._partiql_exec` runs statements; what it reads from a parsed
tree is here: each :class:`~streamkit.storage._partiql.Value` bound to a ``Const``
(``_Bound``), the whole key a ``WHERE`` fixes (``_key_lookup`` before binding,
``_full_key`` after), the partitions it restricts a read to (``_partitions``,
``_composite_partitions``), the sort-key term a key condition can hold
(``_sort_term``), and a projection list as a ProjectionExpression (``_projection``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import fields, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from streamkit.exceptions import ValidationError
from streamkit.records._values import normalize_value, type_of, values_equal
from streamkit.storage._conditions import (
    And,
    BeginsWith,
    Between,
    Compare,
    Condition,
    Const,
    In,
    Node,
    Or,
    PathRef,
)
from streamkit.storage._partiql import (
    ListValue,
    Literal,
    MapValue,
    Param,
    Statement,
    Value,
    ValueExpr,
)

if TYPE_CHECKING:
    from streamkit.storage._indexes import IndexSpec
    from streamkit.storage._spec import TableSpec

_INCOMPLETE_KEY: Final = "Where clause does not contain a mandatory equality on all key attributes"
_PARAMS: Final = "Number of parameters in request and statement don't match."


# --- binding values ------------------------------------------------------------------------------


def _python(expr: ValueExpr, params: Sequence[Any]) -> Any:
    """A value expression as a Python value (normalized later, as a whole)."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Param):
        return params[expr.index]
    if isinstance(expr, ListValue):
        return [_python(v, params) for v in expr.items]
    if isinstance(expr, MapValue):
        return {k: _python(v, params) for k, v in expr.entries}
    members = [_python(v, params) for v in expr.items]
    for m in members:
        if type(m) not in (str, Decimal, bytes, int, float):
            raise ValidationError(
                "Unsupported data type in Bag. DynamoDB only supports either numbers or "
                "strings in bags"
            )
    return set(members)


def _value(expr: ValueExpr, params: Sequence[Any]) -> Any:
    return normalize_value(_python(expr, params), "root")


_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(cls: type) -> tuple[str, ...]:
    """The fields of a tree node class that can hold nodes (not its position)."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name != "pos")
    return names


class _Bound:
    """Replaces every :class:`Value` of a tree with a ``Const`` of its parameters."""

    __slots__ = ("params",)

    def __init__(self, params: Sequence[Any]) -> None:
        self.params = params

    def node(self, node: Any) -> Any:
        if isinstance(node, Value):
            return Const(_value(node.expr, self.params))
        if not isinstance(node, Node):
            return node
        changes: dict[str, Any] = {}
        for name in _child_fields(type(node)):
            child = getattr(node, name)
            if isinstance(child, Node):
                new = self.node(child)
            elif isinstance(child, tuple):
                new = tuple(self.node(c) for c in child)
            else:
                continue
            if new is not child:
                changes[name] = new
        return replace(node, **changes) if changes else node  # type: ignore[type-var]


def _check_params(stmt: Statement, params: Sequence[Any]) -> None:
    # DynamoDB refuses too few parameters and ignores extra ones
    if len(params) < stmt.params:
        raise ValidationError(_PARAMS)


# --- conditions ------------------------------------------------------------------------------


def _conjuncts(node: Condition) -> list[Condition]:
    """The top-level AND terms of a condition, in text order (without recursion)."""
    out: list[Condition] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, And):
            stack += (n.right, n.left)
        else:
            out.append(n)
    return out


def _and(terms: Sequence[Condition]) -> Condition | None:
    if not terms:
        return None
    node = terms[0]
    for t in terms[1:]:
        node = And(node, t)
    return node


def _attr_const(node: Compare, name: str) -> Any:
    """The constant ``name`` is compared with in ``name op const`` (either side), or None."""
    for path, other in ((node.left, node.right), (node.right, node.left)):
        if isinstance(path, PathRef) and path.elements == (name,) and isinstance(other, Const):
            return other
    return None


_KEY_TERMS: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ValueExpr], ...] | None] = {}


def _key_lookup(
    text: str, names: tuple[str, ...], where: Condition, params: Sequence[Any]
) -> dict[str, Any] | None:
    """The key a WHERE (not yet bound) names with exactly one ``key = value`` term per
    key attribute and nothing else, or None (then the bound tree decides). Which terms
    those are is found once per statement text and key."""
    cache_key = (text, names)
    if cache_key in _KEY_TERMS:
        terms = _KEY_TERMS[cache_key]
    else:
        if len(_KEY_TERMS) >= 1024:
            _KEY_TERMS.clear()
        terms = _KEY_TERMS[cache_key] = _key_terms(names, where)
    if terms is None:
        return None
    return {name: _value(expr, params) for name, expr in terms}


def _key_terms(
    names: tuple[str, ...], where: Condition
) -> tuple[tuple[str, ValueExpr], ...] | None:
    terms = _conjuncts(where)
    if len(terms) != len(names):
        return None
    found: dict[str, ValueExpr] = {}
    for term in terms:
        if not isinstance(term, Compare) or term.op != "=":
            return None
        for path, other in ((term.left, term.right), (term.right, term.left)):
            if (
                isinstance(path, PathRef)
                and len(path.elements) == 1
                and path.elements[0] in names
                and isinstance(other, Value)
            ):
                name = str(path.elements[0])
                if name in found:
                    return None
                found[name] = other.expr
                break
        else:
            return None
    return tuple(found.items()) if len(found) == len(names) else None


def _full_key(spec: TableSpec, where: Condition) -> tuple[dict[str, Any], Condition | None]:
    """The item key a write's WHERE fixes, and the rest of the WHERE as its condition."""
    names = spec.key.names
    found: dict[str, Any] = {}
    rest: list[Condition] = []
    for term in _conjuncts(where):
        hit = None
        if isinstance(term, Compare) and term.op == "=":
            for n in names:
                c = _attr_const(term, n)
                if c is not None:
                    hit = (n, c.value)
                    break
        if hit is None:
            rest.append(term)
        elif hit[0] in found:
            raise ValidationError(
                f"Multiple conditions on same key {hit[0]}. Only single item "
                "Update/Insert/Delete are supported"
            )
        else:
            found[hit[0]] = hit[1]
    if len(found) != len(names):
        raise ValidationError(_INCOMPLETE_KEY)
    return found, _and(rest)


def _partitions(node: Condition, pk: str) -> list[Any] | None:
    """The partition key values a WHERE restricts the result to, or None (a scan)."""
    if isinstance(node, Compare) and node.op == "=":
        c = _attr_const(node, pk)
        return None if c is None else [c.value]
    if isinstance(node, In):
        if (
            isinstance(node.operand, PathRef)
            and node.operand.elements == (pk,)
            and all(isinstance(o, Const) for o in node.options)
        ):
            return _unique([o.value for o in node.options if isinstance(o, Const)])
        return None
    if isinstance(node, And):
        left, right = _partitions(node.left, pk), _partitions(node.right, pk)
        if left is None or right is None:
            return left if right is None else right
        return [v for v in left if any(values_equal(v, w) for w in right)]
    if isinstance(node, Or):
        left, right = _partitions(node.left, pk), _partitions(node.right, pk)
        if left is None or right is None:
            return None
        return _unique(left + right)
    return None


_MOST_PARTITIONS = 100  # of a multi-attribute partition key: more, and PartiQL scans


def _composite_partitions(node: Condition, ix: IndexSpec) -> list[Any] | None:
    """The partitions (tuples of the partition key attributes' values) of an index with
    a multi-attribute partition key that a WHERE restricts the result to, or None (a
    scan). Combinations the WHERE rules out are read and dropped by it."""
    values = [_partitions(node, a.name) for a in ix.hash_attrs]
    if any(v is None for v in values):
        return None
    combos = list(itertools.product(*values))  # type: ignore[arg-type]
    return combos if len(combos) <= _MOST_PARTITIONS else None


def _only_partitions(node: Condition, pk: str) -> bool:
    """Whether a term says nothing but which partitions (``pk = v``, ``pk IN``, their OR)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Or):
            stack += (n.left, n.right)
        elif not (isinstance(n, (Compare, In)) and _partitions(n, pk) is not None):
            return False
    return True


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(values_equal(v, w) for w in out):
            out.append(v)
    return out


def _sort_term(term: Condition, sk: str, sk_type: str) -> bool:
    """Whether a top-level term is a sort-key condition a key condition can hold."""

    def ok(c: Any) -> bool:
        return isinstance(c, Const) and type_of(c.value) == sk_type

    def is_sk(p: Any) -> bool:
        return isinstance(p, PathRef) and p.elements == (sk,)

    if isinstance(term, Compare) and term.op != "<>":
        return ok(_attr_const(term, sk))
    if isinstance(term, Between):
        return is_sk(term.operand) and ok(term.low) and ok(term.high)
    if isinstance(term, BeginsWith):
        return is_sk(term.operand) and ok(term.prefix) and sk_type in ("S", "B")
    return False


def _projection(paths: tuple[PathRef, ...] | None) -> tuple[str | None, dict[str, str] | None]:
    """A projection list as a ProjectionExpression with ``#name`` placeholders."""
    if paths is None:
        return None, None
    refs: dict[str, str] = {}  # attribute name -> placeholder

    def ref(name: str) -> str:
        if name not in refs:
            refs[name] = f"#p{len(refs)}"
        return refs[name]

    texts = []
    for p in paths:
        text = ""
        for e in p.elements:
            text += f"[{e}]" if type(e) is int else (f".{ref(str(e))}" if text else ref(str(e)))
        texts.append(text)
    return ", ".join(texts), {r: n for n, r in refs.items()}
