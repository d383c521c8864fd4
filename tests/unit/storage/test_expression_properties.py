"""Property tests of the expression language.

(a) A random tree printed as DynamoDB text (by a printer written here, not the
    library's) parses back to an equal tree: conditions and updates.
(b) No input makes the compilers raise anything but ExpressionError, and no
    compiled condition raises on any item.
(c) A condition built with ``sk.attr()`` and the same condition written as
    text give the same tree and evaluate alike on random items, and both
    agree with a small reference model of DynamoDB's rules written here.
(d) Updates applied to random items agree with a reference model.
"""

from __future__ import annotations

import contextlib
import copy
import operator
from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.records._values import canonical_number
from streamkit.storage._conditions import (
    AddAction,
    And,
    Arith,
    AttributeType,
    BeginsWith,
    Between,
    Compare,
    Condition,
    Const,
    Contains,
    DeleteAction,
    Exists,
    IfNotExists,
    In,
    ListAppend,
    Not,
    NotExists,
    Operand,
    Or,
    PathRef,
    RemoveAction,
    SetAction,
    Size,
    UpdateExpr,
)
from streamkit.storage._expressions import (
    ExpressionContext,
    compile_condition,
    compile_key_condition,
    compile_projection,
    compile_update,
)
from tests.strategies import attribute_names, numbers, sets, values

# --- (a) print and parse back -------------------------------------------------------------------


class Printer:
    """Trees to text: every name a ``#nN`` placeholder, every constant a ``:vN`` one."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}

    def path(self, node: PathRef) -> str:
        out = ""
        for e in node.elements:
            if isinstance(e, int):
                out += f"[{e}]"
                continue
            assert isinstance(e, str)
            alias = self._aliases.setdefault(e, f"#n{len(self._aliases)}")
            self.names[alias] = e
            out += f".{alias}" if out else alias
        return out

    def operand(self, node: Operand) -> str:
        match node:
            case PathRef():
                return self.path(node)
            case Const(value):
                key = f":v{len(self.values)}"
                self.values[key] = value
                return key
            case Size(path):
                return f"size({self.path(path)})"
            case IfNotExists(path, default):
                return f"if_not_exists({self.path(path)}, {self.operand(default)})"
            case ListAppend(first, second):
                return f"list_append({self.operand(first)}, {self.operand(second)})"
            case Arith(op, left, right):
                return f"{self.operand(left)} {op} {self.operand(right)}"
        raise AssertionError(node)

    def condition(self, node: Condition) -> str:
        match node:
            case And(left, right):
                return f"({self.condition(left)}) AND ({self.condition(right)})"
            case Or(left, right):
                return f"({self.condition(left)}) or ({self.condition(right)})"
            case Not(inner):
                return f"NOT ({self.condition(inner)})"
            case Compare(op, left, right):
                return f"{self.operand(left)} {op} {self.operand(right)}"
            case Between(operand, low, high):
                return (
                    f"{self.operand(operand)} between {self.operand(low)} AND {self.operand(high)}"
                )
            case In(operand, options):
                return f"{self.operand(operand)} IN ({', '.join(map(self.operand, options))})"
            case Exists(path):
                return f"attribute_exists({self.path(path)})"
            case NotExists(path):
                return f"attribute_not_exists ({self.path(path)})"
            case AttributeType(operand, type_):
                return f"attribute_type({self.operand(operand)}, {self.operand(type_)})"
            case BeginsWith(operand, prefix):
                return f"begins_with({self.operand(operand)}, {self.operand(prefix)})"
            case Contains(operand, value):
                return f"contains({self.operand(operand)}, {self.operand(value)})"
        raise AssertionError(node)

    def update(self, node: UpdateExpr) -> str:
        clauses = []
        if node.sets:
            sets = ", ".join(f"{self.path(a.path)} = {self.operand(a.value)}" for a in node.sets)
            clauses.append("SET " + sets)
        if node.removes:
            clauses.append("remove " + ", ".join(self.path(a.path) for a in node.removes))
        for word, actions in (("ADD", node.adds), ("DELETE", node.deletes)):
            if actions:
                body = ", ".join(f"{self.path(a.path)} {self.operand(a.value)}" for a in actions)
                clauses.append(f"{word} {body}")
        return " ".join(reversed(clauses))  # clauses may come in any order


ordered_scalars = st.one_of(st.text(max_size=6), numbers(), st.binary(max_size=6))


@st.composite
def paths(draw: st.DrawFn) -> PathRef:
    first = draw(attribute_names())
    rest = draw(st.lists(st.one_of(attribute_names(), st.integers(0, 30)), max_size=2))
    return PathRef((first, *rest))


@st.composite
def between_bounds(draw: st.DrawFn) -> tuple[Operand, Operand]:
    kind = draw(st.sampled_from([st.text(max_size=6), numbers(), st.binary(max_size=6)]))
    pair: list[Any] = [draw(kind), draw(kind)]
    low, high = sorted(pair)
    return Const(low), Const(high)


def operands(ordered: bool = False) -> st.SearchStrategy[Operand]:
    consts = st.builds(Const, ordered_scalars if ordered else values(max_leaves=4))
    return st.one_of(paths(), consts, st.builds(Size, paths()))


ops = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])

leaf_conditions: st.SearchStrategy[Condition] = st.one_of(
    st.builds(Compare, st.sampled_from(["=", "<>"]), operands(), operands()),
    st.builds(
        Compare,
        st.sampled_from(["<", "<=", ">", ">="]),
        operands(True),
        operands(True),
    ),
    st.builds(lambda o, b: Between(o, *b), operands(True), between_bounds()),
    st.builds(
        lambda o, opts: In(o, tuple(opts)), operands(), st.lists(operands(), min_size=1, max_size=4)
    ),
    st.builds(Exists, paths()),
    st.builds(NotExists, paths()),
    st.builds(
        AttributeType,
        st.one_of(paths(), st.builds(Const, values(max_leaves=3))),
        st.sampled_from(["S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"]).map(Const),
    ),
    st.builds(
        BeginsWith,
        st.one_of(paths(), st.builds(Const, st.one_of(st.text(max_size=4), st.binary(max_size=4)))),
        st.one_of(paths(), st.builds(Const, st.one_of(st.text(max_size=4), st.binary(max_size=4)))),
    ),
    st.builds(Contains, paths(), st.one_of(st.builds(Const, values(max_leaves=3)), paths())).filter(
        lambda c: c.operand != c.value
    ),
)

condition_trees = st.recursive(
    leaf_conditions,
    lambda inner: st.one_of(
        st.builds(And, inner, inner), st.builds(Or, inner, inner), st.builds(Not, inner)
    ),
    max_leaves=8,
)


@given(condition_trees)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_printed_conditions_parse_back(tree: Condition) -> None:
    printer = Printer()
    text = printer.condition(tree)
    ctx = ExpressionContext(printer.names, printer.values)
    compiled = compile_condition(text, ctx)
    ctx.check_all_used()
    assert compiled is not None
    assert compiled.ast == tree
    assert compile_condition(tree, ExpressionContext(None, None)).ast == tree  # type: ignore[union-attr]


number_consts = st.builds(Const, numbers())
list_consts = st.builds(Const, st.lists(values(max_leaves=2), max_size=3))
set_consts = st.builds(Const, sets())


def set_values(path_strategy: st.SearchStrategy[PathRef]) -> st.SearchStrategy[Operand]:
    leaf = st.one_of(path_strategy, st.builds(Const, values(max_leaves=4)))
    return st.one_of(
        leaf,
        st.builds(
            Arith,
            st.sampled_from(["+", "-"]),
            st.one_of(path_strategy, number_consts),
            st.one_of(path_strategy, number_consts),
        ),
        st.builds(IfNotExists, path_strategy, leaf),
        st.builds(
            ListAppend, st.one_of(path_strategy, list_consts), st.one_of(path_strategy, list_consts)
        ),
    )


@st.composite
def update_trees(draw: st.DrawFn) -> UpdateExpr:
    # distinct top-level names per action keep the target paths from overlapping
    roots = draw(st.lists(attribute_names(), min_size=1, max_size=6, unique=True))
    actions: dict[str, list[Any]] = {"set": [], "remove": [], "add": [], "delete": []}
    for root in roots:
        rest = draw(st.lists(st.one_of(attribute_names(), st.integers(0, 5)), max_size=2))
        target = PathRef((root, *rest))
        kind = draw(st.sampled_from(list(actions)))
        if kind == "set":
            actions[kind].append(SetAction(target, draw(set_values(paths()))))
        elif kind == "remove":
            actions[kind].append(RemoveAction(target))
        elif kind == "add":
            actions[kind].append(AddAction(target, draw(st.one_of(number_consts, set_consts))))
        else:
            actions[kind].append(DeleteAction(target, draw(set_consts)))
    return UpdateExpr(*(tuple(actions[k]) for k in ("set", "remove", "add", "delete")))


@given(update_trees())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_printed_updates_parse_back(tree: UpdateExpr) -> None:
    printer = Printer()
    text = printer.update(tree)
    ctx = ExpressionContext(printer.names, printer.values)
    compiled = compile_update(ctx, text)
    ctx.check_all_used()
    assert compiled.ast == tree


# --- (b) any input: ExpressionError or success ---------------------------------------------------

TOKENS = [
    *("a", "b.c", "l[0]", "#n", "#m", "#zz", ":v", ":s", ":l", ":set", ":zz", "(", ")", "=", "<>"),
    *("<", "<=", ">", ">=", "AND", "or", "Not", "BETWEEN", "IN", ",", "[", "]", "0", "1", ".", "+"),
    *("-", "SET", "remove", "ADD", "DELETE", "size", "attribute_exists", "attribute_not_exists"),
    *("attribute_type", "begins_with", "contains", "if_not_exists", "list_append", "Name", "x"),
    *("pk", "sk", "@", '"', "dog", "_", "#", ":"),
]

inputs = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=25).map("".join),
)


def context() -> ExpressionContext:
    return ExpressionContext(
        {"#n": "n", "#m": "Name"}, {":v": 1, ":s": "x", ":l": [1], ":set": {"a"}}
    )


PROBE_ITEMS = [{}, {"a": Decimal(1), "b": {"c": "x"}, "l": [b"x"], "n": {"a"}, "Name": None}]


@given(inputs)
@settings(max_examples=1500)
def test_compilers_raise_only_expression_errors(text: str) -> None:
    compilers: list[Callable[[], Any]] = [
        lambda: compile_condition(text, context()),
        lambda: compile_update(context(), text),
        lambda: compile_projection(text, context()),
        lambda: compile_key_condition(text, context(), partition_key="pk", sort_key="sk"),
    ]
    for compile_ in compilers:
        try:
            result = compile_()
        except ExpressionError:
            continue
        for item in PROBE_ITEMS:  # whatever compiled runs without surprises
            if hasattr(result, "evaluate"):
                assert result.evaluate(item) in (True, False)
            elif hasattr(result, "touched"):
                with contextlib.suppress(ValidationError):
                    result.apply(item)
            elif hasattr(result, "apply"):
                result.apply(item)


# --- (c) builders, text and a reference model agree ----------------------------------------------

MISSING = object()
PATHS: list[tuple[str | int, ...]] = [
    ("a",),
    ("b",),
    ("s",),
    ("m", "x"),
    ("m", "y"),
    ("l", 0),
    ("l", 1),
]
SCALARS: list[Any] = [
    "", "a", "ab", "b", "é𝄞", "𝄞", Decimal(0), Decimal(1), Decimal(2), Decimal(-1), Decimal("1.5"),
    b"", b"a", b"ab", True, False, None,
]  # fmt: skip
# values where Python and DynamoDB disagree (True == 1, len() of non-BMP text) come up often
TRICKY: list[Any] = [True, Decimal(1), "a", b"a", "é𝄞", "𝄞", Decimal(2), ["a"], {"x": "a"}]
ORDERED = [v for v in SCALARS if type(v) in (str, Decimal, bytes)]
TAGS = ["S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"]
pool_scalars = st.one_of(st.sampled_from(SCALARS), st.sampled_from(TRICKY[:6]))
pool_sets = st.sampled_from([{"a"}, {"a", "b"}, {Decimal(1)}, {Decimal(1), Decimal(2)}, {b"a"}])
pool_strings = st.sampled_from(["é𝄞", "𝄞", "ab", ""])
pool_values = st.one_of(
    pool_scalars,
    pool_sets,
    pool_strings,
    st.lists(pool_scalars, max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), pool_scalars, max_size=2),
)
pool_items = st.fixed_dictionaries(
    {},
    optional={
        "a": pool_values,
        "b": pool_values,
        "s": pool_values,
        "m": st.one_of(
            st.dictionaries(st.sampled_from(["x", "y"]), pool_values, max_size=2), pool_scalars
        ),
        "l": st.one_of(st.lists(pool_values, max_size=3), pool_scalars),
    },
)


def get(item: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    cur: Any = item
    for e in path:
        if isinstance(e, str):
            if not isinstance(cur, dict) or e not in cur:
                return MISSING
        elif not isinstance(cur, list) or e >= len(cur):
            return MISSING
        cur = cur[e]
    return cur


def same(x: Any, y: Any) -> bool:
    if type(x) is not type(y) or x is MISSING:
        return False
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return len(x) == len(y) and all(map(same, x, y))
    return bool(x == y)


def tag(x: Any) -> str:
    if isinstance(x, (set, frozenset)):
        return {str: "SS", Decimal: "NS", bytes: "BS"}[type(next(iter(x)))]
    return {
        str: "S",
        Decimal: "N",
        bytes: "B",
        bool: "BOOL",
        type(None): "NULL",
        list: "L",
        dict: "M",
    }[type(x)]


def size_of(x: Any) -> Any:
    if isinstance(x, str):
        return Decimal(len(x.encode("utf-16-le")) // 2)
    if isinstance(x, (bytes, list, dict, set)):
        return Decimal(len(x))
    return MISSING


def ordered(op: str, x: Any, y: Any) -> bool:
    fn = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]
    return type(x) is type(y) and type(x) in (str, Decimal, bytes) and bool(fn(x, y))


def contains(x: Any, y: Any) -> bool:
    if type(x) in (str, bytes):
        return type(y) is type(x) and y in x
    if isinstance(x, set):
        return any(same(e, y) for e in x)
    if isinstance(x, list):
        return any(same(e, y) for e in x)
    return False


Recipe = tuple[Condition, str, dict[str, Any], Callable[[dict[str, Any]], bool]]


def text_of(path: tuple[str | int, ...]) -> str:
    return "".join(
        f"[{e}]" if isinstance(e, int) else (f".{e}" if i else e) for i, e in enumerate(path)
    )


def attr_of(path: tuple[str | int, ...]) -> sk.storage._conditions.Attr:
    ref = sk.attr(str(path[0]))
    for e in path[1:]:
        ref = ref[e]
    return ref


@st.composite
def recipes(draw: st.DrawFn, depth: int = 0, counter: list[int] | None = None) -> Recipe:
    counter = [0] if counter is None else counter

    def placeholder(value: Any) -> tuple[str, dict[str, Any]]:
        counter[0] += 1
        return f":v{counter[0]}", {f":v{counter[0]}": value}

    kinds = [
        "cmp",
        "cmp-paths",
        "between",
        "in",
        "begins",
        "contains",
        "exists",
        "missing",
        "type",
        "size",
    ]
    kind = draw(st.sampled_from(kinds + (["and", "or", "not"] * 3 if depth < 3 else [])))
    p = draw(st.sampled_from(PATHS))
    pt, pb = text_of(p), attr_of(p)
    if kind in ("and", "or", "not"):
        b1, t1, v1, r1 = draw(recipes(depth + 1, counter))
        if kind == "not":
            return ~b1, f"NOT ({t1})", v1, lambda i: not r1(i)
        b2, t2, v2, r2 = draw(recipes(depth + 1, counter))
        if kind == "and":
            return b1 & b2, f"({t1}) AND ({t2})", v1 | v2, lambda i: r1(i) and r2(i)
        return b1 | b2, f"({t1}) OR ({t2})", v1 | v2, lambda i: r1(i) or r2(i)
    if kind == "cmp":
        op = draw(ops)
        value = draw(st.sampled_from(ORDERED) if op not in ("=", "<>") else pool_values)
        ph, vals = placeholder(value)
        method = {"=": pb.eq, "<>": pb.ne, "<": pb.lt, "<=": pb.lte, ">": pb.gt, ">=": pb.gte}[op]
        if op == "=":
            return method(value), f"{pt} = {ph}", vals, lambda i: same(get(i, p), value)
        if op == "<>":
            return method(value), f"{pt} <> {ph}", vals, lambda i: not same(get(i, p), value)
        return method(value), f"{pt} {op} {ph}", vals, lambda i: ordered(op, get(i, p), value)
    if kind == "cmp-paths":
        q = draw(st.sampled_from(PATHS))
        op = draw(ops)
        method = {"=": pb.eq, "<>": pb.ne, "<": pb.lt, "<=": pb.lte, ">": pb.gt, ">=": pb.gte}[op]

        def ref(i: dict[str, Any]) -> bool:
            x, y = get(i, p), get(i, q)
            if op in ("=", "<>"):
                return same(x, y) == (op == "=")
            return ordered(op, x, y)

        return method(attr_of(q)), f"{pt} {op} {text_of(q)}", {}, ref
    if kind == "between":
        low, high = sorted(
            draw(st.sampled_from([[v, w] for v in ORDERED for w in ORDERED if type(v) is type(w)]))
        )
        lp, lv = placeholder(low)
        hp, hv = placeholder(high)
        return (
            pb.between(low, high),
            f"{pt} BETWEEN {lp} AND {hp}",
            lv | hv,
            lambda i: ordered(">=", get(i, p), low) and ordered("<=", get(i, p), high),
        )
    if kind == "in":
        options = draw(st.lists(pool_values, min_size=1, max_size=3))
        phs = [placeholder(o) for o in options]
        vals = {k: v for _, d in phs for k, v in d.items()}
        text = f"{pt} IN ({', '.join(ph for ph, _ in phs)})"
        return pb.is_in(options), text, vals, lambda i: any(same(get(i, p), o) for o in options)
    if kind == "begins":
        prefix: Any = draw(st.sampled_from(["", "a", "é", b"", b"a"]))
        ph, vals = placeholder(prefix)

        def begins(i: dict[str, Any]) -> bool:
            x = get(i, p)
            return type(x) is type(prefix) and x.startswith(prefix)

        return pb.begins_with(prefix), f"begins_with({pt}, {ph})", vals, begins
    if kind == "contains":
        value = draw(st.sampled_from(TRICKY) | st.sampled_from([True, Decimal(1)]))
        ph, vals = placeholder(value)
        return (
            pb.contains(value),
            f"contains({pt}, {ph})",
            vals,
            lambda i: contains(get(i, p), value),
        )
    if kind == "exists":
        return pb.exists(), f"attribute_exists({pt})", {}, lambda i: get(i, p) is not MISSING
    if kind == "missing":
        return pb.not_exists(), f"attribute_not_exists({pt})", {}, lambda i: get(i, p) is MISSING
    if kind == "type":
        t = draw(st.sampled_from(TAGS))
        ph, vals = placeholder(t)
        return (
            pb.attribute_type(t),
            f"attribute_type({pt}, {ph})",
            vals,
            lambda i: get(i, p) is not MISSING and tag(get(i, p)) == t,
        )
    op = draw(ops)
    n = Decimal(draw(st.sampled_from([2, 3]) | st.integers(0, 3)))
    ph, vals = placeholder(n)
    method = {"=": pb.size().eq, "<>": pb.size().ne, "<": pb.size().lt, "<=": pb.size().lte,
              ">": pb.size().gt, ">=": pb.size().gte}[op]  # fmt: skip

    def sized(i: dict[str, Any]) -> bool:
        size = size_of(get(i, p))
        if op in ("=", "<>"):
            return same(size, n) == (op == "=")
        return ordered(op, size, n)

    return method(n), f"size({pt}) {op} {ph}", vals, sized


@given(recipes(depth=3), st.lists(pool_items, min_size=4, max_size=12))
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_single_conditions_match_the_reference(recipe: Recipe, items: list[dict[str, Any]]) -> None:
    check_recipe(recipe, items)


@given(recipes(), st.lists(pool_items, min_size=4, max_size=12))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_builder_text_and_reference_agree(recipe: Recipe, items: list[dict[str, Any]]) -> None:
    check_recipe(recipe, items)


def check_recipe(recipe: Recipe, items: list[dict[str, Any]]) -> None:
    builder, text, vals, reference = recipe
    ctx = ExpressionContext(None, vals)
    from_text = compile_condition(text, ctx)
    ctx.check_all_used()
    from_builder = compile_condition(builder, ExpressionContext(None, None))
    assert from_text is not None and from_builder is not None
    assert from_text.ast == from_builder.ast
    for item in items:
        expected = reference(item)
        assert from_text.evaluate(item) is expected, (text, item)
        assert from_builder.evaluate(item) is expected


# --- (d) updates against a reference model -------------------------------------------------------

TOP = ["a", "b", "n", "s", "l", "m"]
EXACT = Context(prec=400)
Action = tuple[str, str, dict[str, Any], Callable[[dict[str, Any], dict[str, Any]], None]]


def fail() -> None:
    raise ValidationError("reference: invalid")


@st.composite
def actions(draw: st.DrawFn, target: str, counter: list[int]) -> Action:
    def placeholder(value: Any) -> tuple[str, dict[str, Any]]:
        counter[0] += 1
        return f":v{counter[0]}", {f":v{counter[0]}": value}

    src = draw(st.sampled_from(TOP))
    kinds = ["set", "copy", "arith", "ifne", "append", "remove", "add", "delete"]
    kind = draw(st.sampled_from([*kinds, "set-key", "remove-index", "set-index"]))
    if kind == "set":
        ph, vals = placeholder(draw(pool_values))
        return "SET", f"{target} = {ph}", vals, lambda old, new: new.__setitem__(target, vals[ph])
    if kind == "copy":

        def copy_(old: dict[str, Any], new: dict[str, Any]) -> None:
            if src not in old:
                fail()
            new[target] = old[src]

        return "SET", f"{target} = {src}", {}, copy_
    if kind == "arith":
        op = draw(st.sampled_from(["+", "-"]))
        ph, vals = placeholder(
            draw(st.sampled_from([Decimal(1), Decimal("-2.5"), Decimal("1E+125")]))
        )

        def arith(old: dict[str, Any], new: dict[str, Any]) -> None:
            x = old.get(src, MISSING)
            if type(x) is not Decimal:
                fail()
            fn = EXACT.add if op == "+" else EXACT.subtract
            new[target] = canonical_number(fn(x, vals[ph]))

        return "SET", f"{target} = {src} {op} {ph}", vals, arith
    if kind == "ifne":
        ph, vals = placeholder(draw(pool_values))
        return (
            "SET",
            f"{target} = if_not_exists({src}, {ph})",
            vals,
            lambda old, new: new.__setitem__(target, old.get(src, vals[ph])),
        )
    if kind == "append":
        ph, vals = placeholder(draw(st.lists(pool_scalars, max_size=2)))
        first = draw(st.booleans())

        def append(old: dict[str, Any], new: dict[str, Any]) -> None:
            x = old.get(src, MISSING)
            if type(x) is not list:
                fail()
            new[target] = x + vals[ph] if first else vals[ph] + x

        args = f"{src}, {ph}" if first else f"{ph}, {src}"
        return "SET", f"{target} = list_append({args})", vals, append
    if kind == "remove":
        return "REMOVE", target, {}, lambda old, new: new.pop(target, None)
    if kind in ("add", "delete"):
        value = draw(
            st.one_of(pool_sets, st.sampled_from([Decimal(1), Decimal("0.5")]))
            if kind == "add"
            else pool_sets
        )
        ph, vals = placeholder(value)

        def add_or_delete(old: dict[str, Any], new: dict[str, Any]) -> None:
            x = old.get(target, MISSING)
            if x is MISSING:
                if kind == "add":
                    new[target] = copy.copy(value)
                return
            if kind == "add" and type(x) is Decimal and type(value) is Decimal:
                new[target] = canonical_number(EXACT.add(x, value))
            elif type(x) is set and type(value) is set and tag(x) == tag(value):
                rest = x | value if kind == "add" else x - value
                if rest:
                    new[target] = rest
                else:
                    new.pop(target)
            else:
                fail()

        return kind.upper(), f"{target} {ph}", vals, add_or_delete
    if kind == "set-key":
        key = draw(st.sampled_from(["x", "y"]))
        ph, vals = placeholder(draw(pool_values))

        def set_key(old: dict[str, Any], new: dict[str, Any]) -> None:
            if type(old.get(target)) is not dict:
                fail()
            new[target] = {**old[target], key: vals[ph]}

        return "SET", f"{target}.{key} = {ph}", vals, set_key
    index = draw(st.integers(0, 3))
    if kind == "remove-index":

        def remove_index(old: dict[str, Any], new: dict[str, Any]) -> None:
            if type(old.get(target)) is not list:
                fail()
            new[target] = [e for k, e in enumerate(old[target]) if k != index]

        return "REMOVE", f"{target}[{index}]", {}, remove_index
    ph, vals = placeholder(draw(pool_values))

    def set_index(old: dict[str, Any], new: dict[str, Any]) -> None:
        if type(old.get(target)) is not list:
            fail()
        lst = list(old[target])
        if index < len(lst):
            lst[index] = vals[ph]
        else:
            lst.append(vals[ph])
        new[target] = lst

    return "SET", f"{target}[{index}] = {ph}", vals, set_index


@st.composite
def updates(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[Action]]:
    targets = draw(st.lists(st.sampled_from(TOP), min_size=1, max_size=4, unique=True))
    counter = [0]
    acts = [draw(actions(t, counter)) for t in targets]
    clauses: dict[str, list[str]] = {}
    for clause, fragment, _, _ in acts:
        clauses.setdefault(clause, []).append(fragment)
    text = " ".join(f"{clause} {', '.join(parts)}" for clause, parts in clauses.items())
    vals = {k: v for _, _, d, _ in acts for k, v in d.items()}
    return text, vals, acts


update_items = st.fixed_dictionaries(
    {},
    optional={
        "a": pool_values,
        "b": pool_values,
        "n": st.one_of(
            st.sampled_from([Decimal(3), Decimal("-1E+125"), Decimal("0.1")]), pool_values
        ),
        "s": st.one_of(pool_sets, pool_values),
        "l": st.one_of(st.lists(pool_values, max_size=4), pool_values),
        "m": st.one_of(
            st.dictionaries(st.sampled_from(["x", "y"]), pool_values, max_size=2), pool_values
        ),
    },
)


@given(updates(), update_items)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_updates_match_the_reference(
    update: tuple[str, dict[str, Any], list[Action]], item: dict[str, Any]
) -> None:
    text, vals, acts = update
    compiled = compile_update(ExpressionContext(None, vals), text)
    old = copy.deepcopy(item)
    expected: dict[str, Any] | None = copy.deepcopy(item)
    try:
        for _, _, _, apply in acts:
            assert expected is not None
            apply(old, expected)
    except ValidationError:
        expected = None
    try:
        result: dict[str, Any] | None = compiled.apply(item)
    except ValidationError:
        result = None
    assert same(item, old), "the input item was changed"
    if expected is None or result is None:
        assert expected is result, (text, vals, item, result)
    else:
        assert same(result, expected), (text, vals, item)
    assert compiled.touched == {
        fragment.split()[0].split(".")[0].split("[")[0] for _, fragment, _, _ in acts
    }
