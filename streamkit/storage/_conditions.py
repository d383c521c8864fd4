"""Conditions in Python: the expression AST and the ``attr()`` / ``key()`` builders.

Every expression streamkit understands, whether written as a DynamoDB string
or built in Python, becomes a tree of the frozen dataclasses defined here.
The parser (:mod:`streamkit.storage._expressions`) produces them from text;
the builders produce them directly, the way ``boto3.dynamodb.conditions``
does::

    import streamkit as sk

    sk.attr("Name").exists() & ~sk.attr("Banned").eq(True)
    sk.attr("tags").size().gt(3) | sk.attr("kind").is_in(["a", "b"])
    sk.attr("address")["city"].begins_with("Ber")          # nested map key
    sk.attr("scores")[0].between(10, 20)                   # list element
    sk.key("OrderDate").begins_with("2026-")               # a sort key condition

Names given to builders are literal attribute names: ``attr("a.b")`` is the
top-level attribute called ``a.b`` (what ``#n`` with ``names={"#n": "a.b"}``
means in a string), never a nested path, and reserved words need no escaping.
Nested paths are spelled with indexing: ``attr("a")["b"]`` is ``a.b`` and
``attr("a")[2]`` is ``a[2]``. Values are plain Python values, normalized at
once (a bad value raises :class:`~streamkit.exceptions.ValidationError`).

:class:`Binder` applies DynamoDB's semantic rules (operand types, BETWEEN
bounds, overlapping update paths, ...) to a tree, resolving the placeholders
of a parsed one on the way: parsed and built trees are checked by the same
code and refused with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Protocol

from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.records._values import normalize_value, type_of
from streamkit.storage._expression_words import shown_value

__all__ = (
    "COMPARATORS",
    "MAX_IN_OPERANDS",
    "MAX_OPERATORS",
    "AddAction",
    "And",
    "Arith",
    "Attr",
    "AttributeType",
    "BeginsWith",
    "Between",
    "Binder",
    "Compare",
    "Condition",
    "Const",
    "Contains",
    "DeleteAction",
    "Exists",
    "IfNotExists",
    "In",
    "Key",
    "ListAppend",
    "NameRef",
    "Node",
    "Not",
    "NotExists",
    "Operand",
    "Or",
    "PathRef",
    "Placeholders",
    "RemoveAction",
    "SetAction",
    "Size",
    "SizeOf",
    "UpdateExpr",
    "ValueRef",
    "attr",
    "builder_binder",
    "format_path",
    "key",
    "walk",
)

# --- the AST -----------------------------------------------------------------------------------
#
# Nodes are frozen dataclasses compared by value. ``pos`` (the character offset
# of the node in its expression, -1 when built in Python) is left out of
# equality so that a parsed tree equals the same tree built with the builders.


def _pos() -> Any:
    return field(default=-1, compare=False, repr=False)


class Node:
    """Base of every AST node."""

    __slots__ = ()


class Operand(Node):
    """A node that evaluates to a value, or to nothing when an attribute is missing."""

    __slots__ = ()


class Condition(Node):
    """A node that evaluates to true or false.

    Conditions combine with ``&`` (AND), ``|`` (OR) and ``~`` (NOT). They have
    no truth value of their own, so that ``a and b`` (which Python would
    silently reduce to ``b``) is an error instead of a wrong condition.
    """

    __slots__ = ()

    def __and__(self, other: object) -> And:
        if not isinstance(other, Condition):
            return NotImplemented
        return And(self, other)

    def __or__(self, other: object) -> Or:
        if not isinstance(other, Condition):
            return NotImplemented
        return Or(self, other)

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a condition has no truth value; combine conditions with &, | and ~ "
            "(not with 'and', 'or', 'not')"
        )


@dataclass(frozen=True, slots=True)
class NameRef(Node):
    """An unresolved ``#name`` placeholder inside a parsed path."""

    name: str
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class PathRef(Operand):
    """A document path: attribute names (``str``) and list indexes (``int``).

    In a parsed, not yet resolved tree an element may also be a :class:`NameRef`.
    """

    elements: tuple[str | int | NameRef, ...]
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class ValueRef(Operand):
    """An unresolved ``:value`` placeholder."""

    name: str
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class Const(Operand):
    """A constant: a normalized value (see :mod:`streamkit.records._values`)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Size(Operand):
    """``size(path)``: the length of a string, binary, set, list or map."""

    path: PathRef
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class IfNotExists(Operand):
    """``if_not_exists(path, default)`` (update expressions only)."""

    path: PathRef
    default: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class ListAppend(Operand):
    """``list_append(first, second)`` (update expressions only)."""

    first: Operand
    second: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class Arith(Operand):
    """``left + right`` or ``left - right`` (update expressions only)."""

    op: str
    left: Operand
    right: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class Compare(Condition):
    """``left op right`` with op one of ``= <> < <= > >=``."""

    op: str
    left: Operand
    right: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class Between(Condition):
    """``operand BETWEEN low AND high`` (inclusive)."""

    operand: Operand
    low: Operand
    high: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class In(Condition):
    """``operand IN (option, ...)``."""

    operand: Operand
    options: tuple[Operand, ...]
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class Exists(Condition):
    """``attribute_exists(path)``."""

    path: PathRef
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class NotExists(Condition):
    """``attribute_not_exists(path)``."""

    path: PathRef
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class AttributeType(Condition):
    """``attribute_type(operand, :type)``; the type is one of the ten type tags."""

    operand: Operand
    type: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class BeginsWith(Condition):
    """``begins_with(operand, prefix)`` for strings and binaries."""

    operand: Operand
    prefix: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class Contains(Condition):
    """``contains(operand, value)``: substring, set member or list element."""

    operand: Operand
    value: Operand
    pos: int = _pos()


@dataclass(frozen=True, slots=True)
class And(Condition):
    """``left AND right``."""

    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Or(Condition):
    """``left OR right``."""

    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """``NOT operand``."""

    operand: Condition


@dataclass(frozen=True, slots=True)
class SetAction(Node):
    """``SET path = value``."""

    path: PathRef
    value: Operand


@dataclass(frozen=True, slots=True)
class RemoveAction(Node):
    """``REMOVE path``."""

    path: PathRef


@dataclass(frozen=True, slots=True)
class AddAction(Node):
    """``ADD path :value`` (numbers and sets)."""

    path: PathRef
    value: Operand


@dataclass(frozen=True, slots=True)
class DeleteAction(Node):
    """``DELETE path :value`` (sets)."""

    path: PathRef
    value: Operand


@dataclass(frozen=True, slots=True)
class UpdateExpr(Node):
    """A whole update expression, its actions grouped by clause, in text order."""

    sets: tuple[SetAction, ...] = ()
    removes: tuple[RemoveAction, ...] = ()
    adds: tuple[AddAction, ...] = ()
    deletes: tuple[DeleteAction, ...] = ()


def format_path(elements: tuple[str | int | NameRef, ...]) -> str:
    """A path as DynamoDB writes it: ``a.b[2].c`` (placeholders as ``#name``)."""
    out: list[str] = []
    for e in elements:
        if type(e) is int:
            out.append(f"[{e}]")
        else:
            text = e.name if isinstance(e, NameRef) else str(e)
            out.append(f".{text}" if out else text)
    return "".join(out)


def walk(node: Node) -> Iterator[Node]:
    """Every node of a tree, the root first (iterative, so any depth is safe)."""
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        yield n
        for name in _children(type(n)):
            child = getattr(n, name)
            if isinstance(child, Node):
                stack.append(child)
            elif isinstance(child, tuple):
                stack.extend(c for c in child if isinstance(c, Node))


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _children(cls: type) -> tuple[str, ...]:
    names = _CHILD_FIELDS.get(cls)
    if names is None:
        names = _CHILD_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name != "pos")
    return names


# --- resolving and checking --------------------------------------------------------------------

MAX_OPERATORS: Final = 300
"""DynamoDB's limit on operators and functions in one expression."""
MAX_IN_OPERANDS: Final = 100
"""DynamoDB's limit on the list of an ``IN``."""
COMPARATORS: Final = ("=", "<>", "<", "<=", ">", ">=")
_TYPE_TAGS: Final = frozenset({"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"})
_SCALAR_TAGS: Final = frozenset({"S", "N", "B"})
_SET_TAGS: Final = frozenset({"SS", "NS", "BS"})


class Placeholders(Protocol):
    """Where ``#name`` / ``:value`` placeholders are looked up (an ExpressionContext)."""

    def name(self, placeholder: str) -> str | None:
        """The name behind ``#placeholder``, or None."""

    def value(self, placeholder: str) -> Any:
        """The value behind ``:placeholder``; KeyError when undefined."""


class Binder:
    """Resolves placeholders and applies DynamoDB's checks to one expression.

    Works on parsed trees (text given, placeholders resolved through ``ctx``)
    and on builder trees (no text, nothing to resolve) alike, so both forms
    are refused for the same reasons with the same messages. Returns new,
    resolved trees; the input is never changed.
    """

    __slots__ = ("attributes", "ctx", "kind", "text")

    def __init__(self, ctx: Placeholders | None, kind: str, text: str | None) -> None:
        self.ctx = ctx
        self.kind = kind
        self.text = text
        self.attributes: set[str] = set()
        """The top-level attribute names of every path resolved so far."""

    def error(self, message: str, pos: int = -1) -> ExpressionError:
        at = pos if pos >= 0 and self.text is not None else None
        return ExpressionError(f"Invalid {self.kind}: {message}", expression=self.text, position=at)

    def operand_type(self, what: str, value: Any, pos: int) -> ExpressionError:
        return self.error(
            "Incorrect operand type for operator or function; "
            f"operator or function: {what}, operand type: {type_of(value)}",
            pos,
        )

    def path(self, node: PathRef) -> PathRef:
        first = node.elements[0]
        if type(first) is str:
            self.attributes.add(first)
        if not any(type(e) is NameRef for e in node.elements):
            return node
        out: list[str | int | NameRef] = []
        for e in node.elements:
            if type(e) is NameRef:
                name = self.ctx.name(e.name) if self.ctx is not None else None
                if name is None:
                    raise self.error(
                        "An expression attribute name used in the document path is not "
                        f"defined; attribute name: {e.name}",
                        e.pos,
                    )
                out.append(name)
            else:
                out.append(e)
        if type(out[0]) is str:
            self.attributes.add(out[0])
        return PathRef(tuple(out), pos=node.pos)

    def operand(self, node: Operand, *, update: bool = False) -> Operand:
        if isinstance(node, PathRef):
            return self.path(node)
        if isinstance(node, Const):
            return node
        if isinstance(node, ValueRef):
            try:
                if self.ctx is None:
                    raise KeyError(node.name)
                return Const(self.ctx.value(node.name))
            except KeyError:
                raise self.error(
                    "An expression attribute value used in expression is not defined; "
                    f"attribute value: {node.name}",
                    node.pos,
                ) from None
        if isinstance(node, Size) and not update:
            return Size(self.path(node.path), pos=node.pos)
        if isinstance(node, Arith) and update:
            left, right = (
                self.operand(node.left, update=True),
                self.operand(node.right, update=True),
            )
            for side in (left, right):
                if isinstance(side, Const) and type_of(side.value) != "N":
                    raise self.operand_type(node.op, side.value, node.pos)
            return Arith(node.op, left, right, pos=node.pos)
        if isinstance(node, ListAppend) and update:
            first = self.operand(node.first, update=True)
            second = self.operand(node.second, update=True)
            for side in (first, second):
                if isinstance(side, Const) and type(side.value) is not list:
                    raise self.operand_type("list_append", side.value, node.pos)
            return ListAppend(first, second, pos=node.pos)
        if isinstance(node, IfNotExists) and update:
            default = self.operand(node.default, update=True)
            return IfNotExists(self.path(node.path), default, pos=node.pos)
        raise self.error(f"{type(node).__name__} is not allowed here")

    def ordered(self, op: str, operand: Operand, pos: int) -> None:
        """``< <= > >= BETWEEN`` take strings, numbers or binaries only."""
        if isinstance(operand, Const) and type_of(operand.value) not in _SCALAR_TAGS:
            raise self.operand_type(op, operand.value, pos)

    def condition(self, node: Condition) -> Condition:
        if isinstance(node, And):
            return And(self.condition(node.left), self.condition(node.right))
        if isinstance(node, Or):
            return Or(self.condition(node.left), self.condition(node.right))
        if isinstance(node, Not):
            return Not(self.condition(node.operand))
        if isinstance(node, Compare):
            left, right = self.operand(node.left), self.operand(node.right)
            if node.op not in COMPARATORS:
                raise self.error(f"unknown comparator {node.op!r}", node.pos)
            if node.op not in ("=", "<>"):
                self.ordered(node.op, left, node.pos)
                self.ordered(node.op, right, node.pos)
            return Compare(node.op, left, right, pos=node.pos)
        if isinstance(node, Between):
            return self.between(node)
        if isinstance(node, In):
            options = tuple(self.operand(o) for o in node.options)
            if not 1 <= len(options) <= MAX_IN_OPERANDS:
                raise self.error(f"IN takes 1 to {MAX_IN_OPERANDS} operands", node.pos)
            return In(self.operand(node.operand), options, pos=node.pos)
        if isinstance(node, Exists):
            return Exists(self.path(node.path), pos=node.pos)
        if isinstance(node, NotExists):
            return NotExists(self.path(node.path), pos=node.pos)
        if isinstance(node, AttributeType):
            return self.attribute_type(node)
        if isinstance(node, BeginsWith):
            operand, prefix = self.operand(node.operand), self.operand(node.prefix)
            for side in (operand, prefix):
                if isinstance(side, Const) and type(side.value) not in (str, bytes):
                    raise self.operand_type("begins_with", side.value, node.pos)
            return BeginsWith(operand, prefix, pos=node.pos)
        if isinstance(node, Contains):
            operand, value = self.operand(node.operand), self.operand(node.value)
            if isinstance(operand, PathRef) and operand == value:
                raise self.error(
                    "The first and second operands of contains must be different paths; "
                    f"got {format_path(operand.elements)} twice",
                    node.pos,
                )
            return Contains(operand, value, pos=node.pos)
        raise TypeError(f"not a condition: {node!r}")

    def between(self, node: Between) -> Condition:
        operand, low, high = (
            self.operand(node.operand),
            self.operand(node.low),
            self.operand(node.high),
        )
        for side in (operand, low, high):
            self.ordered("BETWEEN", side, node.pos)
        if isinstance(low, Const) and isinstance(high, Const):
            lo, hi = low.value, high.value
            if type(lo) is not type(hi):
                raise self.error(
                    "The BETWEEN operator requires same data type for lower and upper bounds; "
                    f"lower bound operand: {shown_value(lo)}, "
                    f"upper bound operand: {shown_value(hi)}",
                    node.pos,
                )
            if lo > hi:
                raise self.error(
                    "The BETWEEN operator requires upper bound to be greater than or equal to "
                    f"lower bound; lower bound operand: {shown_value(lo)}, "
                    f"upper bound operand: {shown_value(hi)}",
                    node.pos,
                )
        return Between(operand, low, high, pos=node.pos)

    def attribute_type(self, node: AttributeType) -> Condition:
        type_operand = self.operand(node.type)
        if not isinstance(type_operand, Const):
            raise self.error("attribute_type takes its type as a value (:type)", node.pos)
        tag = type_operand.value
        if type(tag) is not str:
            raise self.operand_type("attribute_type", tag, node.pos)
        if tag not in _TYPE_TAGS:
            raise self.error(
                f"Invalid attribute type name found; type: {tag}, "
                "valid types: { S; N; B; BOOL; NULL; L; M; SS; NS; BS }",
                node.pos,
            )
        return AttributeType(self.operand(node.operand), type_operand, pos=node.pos)

    def update(self, node: UpdateExpr) -> UpdateExpr:
        sets = tuple(
            SetAction(self.path(a.path), self.operand(a.value, update=True)) for a in node.sets
        )
        removes = tuple(RemoveAction(self.path(a.path)) for a in node.removes)
        adds = tuple(
            AddAction(self.path(a.path), self.set_operand("ADD", a.value)) for a in node.adds
        )
        deletes = tuple(
            DeleteAction(self.path(a.path), self.set_operand("DELETE", a.value))
            for a in node.deletes
        )
        bound = UpdateExpr(sets, removes, adds, deletes)
        targets = [a.path for a in sets] + [a.path for a in removes]
        self.check_overlaps(targets + [a.path for a in adds] + [a.path for a in deletes])
        return bound

    def set_operand(self, clause: str, node: Operand) -> Const:
        value = self.operand(node)
        if not isinstance(value, Const):
            raise self.error(f"{clause} takes a value (:value)")
        tag = type_of(value.value)
        if tag not in _SET_TAGS and not (clause == "ADD" and tag == "N"):
            raise self.operand_type(clause, value.value, getattr(node, "pos", -1))
        return value

    def check_overlaps(self, paths: list[PathRef]) -> None:
        """No path may be another's prefix, or use one level as both a map and a list."""
        by_root: dict[Any, list[PathRef]] = {}
        for p in paths:
            by_root.setdefault(p.elements[0], []).append(p)
        for group in by_root.values():
            for i, p in enumerate(group):
                for q in group[i + 1 :]:
                    a, b = p.elements, q.elements
                    k = 0
                    while k < len(a) and k < len(b) and a[k] == b[k] and type(a[k]) is type(b[k]):
                        k += 1
                    if k < len(a) and k < len(b) and type(a[k]) is type(b[k]):
                        continue
                    what = "overlap" if k == len(a) or k == len(b) else "conflict"
                    raise self.error(
                        f"Two document paths {what} with each other; must remove or rewrite one "
                        f"of these paths; path one: {_listed(a)}, path two: {_listed(b)}",
                        q.pos,
                    )


def _listed(elements: tuple[Any, ...]) -> str:
    return "[" + ", ".join(f"[{e}]" if type(e) is int else str(e) for e in elements) + "]"


def _operator_count(node: Node) -> int:
    """AND, OR, NOT and every comparison or function below them, without recursion.

    Only chains of AND / OR / NOT can grow deep; the leaves below them are
    shallow, so each counts once (plus its ``size()`` operands).
    """
    count = 0
    stack = [node]
    while stack and count <= MAX_OPERATORS:
        n = stack.pop()
        count += 1
        if isinstance(n, (And, Or)):
            stack += (n.left, n.right)
        elif isinstance(n, Not):
            stack.append(n.operand)
        elif isinstance(n, Compare):
            count += isinstance(n.left, Size) + isinstance(n.right, Size)
        elif isinstance(n, Between):
            count += isinstance(n.operand, Size)
    return count


def builder_binder(node: Node, kind: str) -> Binder:
    # parsed trees are bounded by the parser; a tree built in Python is checked here,
    # iteratively, before anything recurses into it
    if _operator_count(node) > MAX_OPERATORS:
        raise ExpressionError(
            f"Invalid {kind}: more than {MAX_OPERATORS} operators and functions in one expression"
        )
    return Binder(None, kind, None)


# --- builders ----------------------------------------------------------------------------------


def _operand(value: Any, where: str) -> Operand:
    """A builder argument as an operand: another attribute, a size, or a constant."""
    if isinstance(value, Attr):
        return value._ref
    if isinstance(value, SizeOf):
        return value._node
    if isinstance(value, Node):
        raise TypeError(f"{where}: a {type(value).__name__} cannot be used as a value")
    return Const(normalize_value(value, where))


def _options(values: Iterable[Any], where: str) -> tuple[Operand, ...]:
    if isinstance(values, (str, bytes, Mapping)):
        raise TypeError(f"{where}: is_in() takes a list of values, got {type(values).__name__}")
    options = tuple(_operand(v, where) for v in values)
    if not options:
        raise ValidationError(f"{where}: is_in() needs at least one value", path=where)
    return options


class _Comparable:
    """The comparisons shared by attributes and ``size()``."""

    __slots__ = ()

    def _where(self) -> str:
        raise NotImplementedError

    def eq(self, value: Any) -> Condition:
        """True when equal to ``value`` (same type and value); ``=``."""
        return Compare("=", self._operand(), _operand(value, self._where()))

    def ne(self, value: Any) -> Condition:
        """True when not equal to ``value``, or when the attribute is missing; ``<>``."""
        return Compare("<>", self._operand(), _operand(value, self._where()))

    def lt(self, value: Any) -> Condition:
        """True when less than ``value`` (strings, numbers or binaries of the same type)."""
        return Compare("<", self._operand(), _operand(value, self._where()))

    def lte(self, value: Any) -> Condition:
        """True when less than or equal to ``value``; ``<=``."""
        return Compare("<=", self._operand(), _operand(value, self._where()))

    def gt(self, value: Any) -> Condition:
        """True when greater than ``value``; ``>``."""
        return Compare(">", self._operand(), _operand(value, self._where()))

    def gte(self, value: Any) -> Condition:
        """True when greater than or equal to ``value``; ``>=``."""
        return Compare(">=", self._operand(), _operand(value, self._where()))

    def between(self, low: Any, high: Any) -> Condition:
        """True when ``low <= self <= high`` (all of one type: S, N or B)."""
        where = self._where()
        return Between(self._operand(), _operand(low, where), _operand(high, where))

    def is_in(self, values: Iterable[Any]) -> Condition:
        """True when equal to one of ``values`` (1 to 100 of them); ``IN``."""
        return In(self._operand(), _options(values, self._where()))

    def _operand(self) -> Operand:
        raise NotImplementedError


class Attr(_Comparable):
    """An attribute, or a path into one, to build conditions on.

    Create with :func:`attr`; index with ``[name]`` for a map key and ``[n]``
    for a list element. Every method returns a :class:`Condition`.
    """

    __slots__ = ("_ref",)

    def __init__(self, *elements: str | int) -> None:
        if not elements:
            raise TypeError("an attribute needs a name")
        for i, e in enumerate(elements):
            if type(e) is int:
                if i == 0 or e < 0:
                    raise ValidationError(
                        f"a path starts with a name and list indexes are >= 0, got {e!r}"
                    )
            elif type(e) is not str or not e:
                raise ValidationError(f"attribute names are non-empty strings, got {e!r}")
        if len(elements) > 33:
            raise ValidationError("a document path may have at most 32 dereferences")
        self._ref = PathRef(tuple(elements))

    @property
    def path(self) -> tuple[str | int, ...]:
        """The path's elements: names (``str``) and list indexes (``int``)."""
        return self._ref.elements  # type: ignore[return-value]

    def __getitem__(self, element: str | int) -> Attr:
        return Attr(*self.path, element)

    def __repr__(self) -> str:
        return f"attr({', '.join(repr(e) for e in self.path)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attr) and type(other) is type(self) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref.elements)

    def _operand(self) -> Operand:
        return self._ref

    def _where(self) -> str:
        return format_path(self._ref.elements)

    def begins_with(self, prefix: Any) -> Condition:
        """True when a string (or binary) attribute starts with ``prefix``."""
        return BeginsWith(self._ref, _operand(prefix, self._where()))

    def contains(self, value: Any) -> Condition:
        """True for a substring of a string, a member of a set or an element of a list."""
        return Contains(self._ref, _operand(value, self._where()))

    def exists(self) -> Condition:
        """True when the attribute is present; ``attribute_exists``."""
        return Exists(self._ref)

    def not_exists(self) -> Condition:
        """True when the attribute (or the whole item) is absent; ``attribute_not_exists``."""
        return NotExists(self._ref)

    def attribute_type(self, type_name: str) -> Condition:
        """True when the attribute has the DynamoDB type ``type_name`` ("S", "N", "L", ...)."""
        return AttributeType(self._ref, Const(type_name))

    def size(self) -> SizeOf:
        """The attribute's size, to compare: ``attr("tags").size().gt(3)``.

        Strings count UTF-16 code units (as DynamoDB does), binaries bytes, and
        sets, lists and maps their elements; other types have no size, which
        makes every comparison false.
        """
        return SizeOf(self._ref)


class Key(Attr):
    """A key attribute, for key conditions (``query(sort=...)``).

    It has the methods of :class:`Attr`; a key condition accepts only ``eq``
    on the partition key and ``eq lt lte gt gte between begins_with`` on the
    sort key, which :func:`~streamkit.storage._expressions.compile_key_condition`
    checks.
    """

    __slots__ = ()

    def __getitem__(self, element: str | int) -> Attr:
        raise TypeError("key attributes are top-level attributes; use attr() for nested paths")

    def __repr__(self) -> str:
        return f"key({self.path[0]!r})"


class SizeOf(_Comparable):
    """``size(path)`` of an attribute, to compare; made by :meth:`Attr.size`."""

    __slots__ = ("_node",)

    def __init__(self, ref: PathRef) -> None:
        self._node = Size(ref)

    def __repr__(self) -> str:
        return f"{Attr(*self._node.path.elements)!r}.size()"  # type: ignore[arg-type]

    def _operand(self) -> Operand:
        return self._node

    def _where(self) -> str:
        return f"size({format_path(self._node.path.elements)})"


def attr(name: str) -> Attr:
    """An attribute to build a condition or filter on (``name`` is taken literally).

    Example:
        ``sk.attr("Name").exists() & sk.attr("Age").gte(18)``
    """
    return Attr(name)


def key(name: str) -> Key:
    """A key attribute to build a key condition on (``name`` is taken literally).

    Example:
        ``orders.query("123", sort=sk.key("OrderDate").begins_with("2026-"))``
    """
    return Key(name)
