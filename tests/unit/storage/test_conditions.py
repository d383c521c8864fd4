"""The Python builders: ``sk.attr()`` / ``sk.key()`` make the same trees as expression strings."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

import streamkit as sk
from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.storage._conditions import (
    And,
    Compare,
    Condition,
    Const,
    Not,
    Or,
    PathRef,
    Size,
)
from streamkit.storage._expressions import (
    CompiledCondition,
    ExpressionContext,
    KeyCondition,
    compile_condition,
    compile_key_condition,
)


def built(cond: Condition) -> CompiledCondition:
    compiled = compile_condition(cond, ExpressionContext(None, None))
    assert compiled is not None
    return compiled


def parsed(text: str, values: dict[str, Any], names: dict[str, str] | None = None) -> Condition:
    ctx = ExpressionContext(names, values)
    compiled = compile_condition(text, ctx)
    ctx.check_all_used()
    assert compiled is not None
    return compiled.ast


@pytest.mark.parametrize(
    ("builder", "text", "values"),
    [
        pytest.param(sk.attr("a").eq("x"), "a = :v", {":v": "x"}, id="eq"),
        pytest.param(sk.attr("a").ne(1), "a <> :v", {":v": 1}, id="ne"),
        pytest.param(sk.attr("a").lt(1), "a < :v", {":v": 1}, id="lt"),
        pytest.param(sk.attr("a").lte(1.5), "a <= :v", {":v": Decimal("1.5")}, id="lte-float"),
        pytest.param(sk.attr("a").gt(b"x"), "a > :v", {":v": b"x"}, id="gt-bytes"),
        pytest.param(sk.attr("a").gte("x"), "a >= :v", {":v": "x"}, id="gte"),
        pytest.param(
            sk.attr("a").between(1, 9), "a BETWEEN :l AND :h", {":l": 1, ":h": 9}, id="between"
        ),
        pytest.param(
            sk.attr("a").begins_with("x"), "begins_with(a, :v)", {":v": "x"}, id="begins-with"
        ),
        pytest.param(sk.attr("a").contains(3), "contains(a, :v)", {":v": 3}, id="contains"),
        pytest.param(sk.attr("a").exists(), "attribute_exists(a)", {}, id="exists"),
        pytest.param(sk.attr("a").not_exists(), "attribute_not_exists(a)", {}, id="not-exists"),
        pytest.param(
            sk.attr("a").is_in(["x", 2]), "a IN (:x, :y)", {":x": "x", ":y": 2}, id="is-in"
        ),
        pytest.param(
            sk.attr("a").attribute_type("SS"), "attribute_type(a, :t)", {":t": "SS"}, id="type"
        ),
        pytest.param(sk.attr("a").size().gt(3), "size(a) > :v", {":v": 3}, id="size-gt"),
        pytest.param(
            sk.attr("a").size().between(1, 2),
            "size(a) BETWEEN :l AND :h",
            {":l": 1, ":h": 2},
            id="size-between",
        ),
        pytest.param(
            sk.attr("a").size().is_in([0, 1]),
            "size(a) IN (:x, :y)",
            {":x": 0, ":y": 1},
            id="size-in",
        ),
        pytest.param(sk.attr("a").lt(sk.attr("b")), "a < b", {}, id="attribute-vs-attribute"),
        pytest.param(
            sk.attr("a").eq(sk.attr("b").size()), "a = size(b)", {}, id="attribute-vs-size"
        ),
        pytest.param(sk.attr("m")["k"][2].eq(1), "m.k[2] = :v", {":v": 1}, id="nested-path"),
        pytest.param(
            sk.attr("a").exists() & sk.attr("b").eq(1),
            "attribute_exists(a) AND b = :v",
            {":v": 1},
            id="and",
        ),
        pytest.param(
            sk.attr("a").exists() | sk.attr("b").eq(1) & sk.attr("c").eq(1),
            "attribute_exists(a) OR b = :v AND c = :v",
            {":v": 1},
            id="python-precedence-matches-dynamodb",
        ),
        pytest.param(
            ~sk.attr("a").exists() & sk.attr("b").eq(1),
            "NOT attribute_exists(a) AND b = :v",
            {":v": 1},
            id="not",
        ),
        pytest.param(
            (sk.attr("a").eq(1) | sk.attr("b").eq(1)) & sk.attr("c").eq(1),
            "(a = :v OR b = :v) AND c = :v",
            {":v": 1},
            id="grouping",
        ),
    ],
)
def test_builder_equals_string(builder: Condition, text: str, values: dict[str, Any]) -> None:
    assert built(builder).ast == parsed(text, values)


def test_reserved_words_and_odd_names_need_no_escaping() -> None:
    cond = sk.attr("Name").eq("x") & sk.attr("a.b").exists() & sk.attr("#x y").exists()
    assert built(cond).ast == parsed(
        "#n = :v AND attribute_exists(#d) AND attribute_exists(#s)",
        {":v": "x"},
        {"#n": "Name", "#d": "a.b", "#s": "#x y"},
    )


def test_names_are_literal_and_indexing_makes_paths() -> None:
    dotted = built(sk.attr("a.b").eq(1))
    nested = built(sk.attr("a")["b"].eq(1))
    flat_item = {"a.b": Decimal(1)}
    nested_item = {"a": {"b": Decimal(1)}}
    assert dotted.evaluate(flat_item) and not dotted.evaluate(nested_item)
    assert nested.evaluate(nested_item) and not nested.evaluate(flat_item)
    assert sk.attr("l")[0].path == ("l", 0)


def test_operators_build_the_tree() -> None:
    x, y = sk.attr("x").exists(), sk.attr("y").exists()
    assert (x & y) == And(x, y)
    assert (x | y) == Or(x, y)
    assert ~x == Not(x)
    assert (x & y & x) == And(And(x, y), x)


def test_conditions_have_no_truth_value() -> None:
    x, y = sk.attr("x").exists(), sk.attr("y").exists()
    with pytest.raises(TypeError, match="combine conditions"):
        bool(x)
    with pytest.raises(TypeError, match="combine conditions"):
        _ = x and y


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(True, id="bool"),
        pytest.param("a = :v", id="string"),
        pytest.param(sk.attr("a"), id="attr"),
    ],
)
def test_combining_with_a_non_condition_is_a_type_error(other: Any) -> None:
    with pytest.raises(TypeError):
        _ = sk.attr("x").exists() & other
    with pytest.raises(TypeError):
        _ = sk.attr("x").exists() | other


def test_values_are_normalized_when_built() -> None:
    assert sk.attr("a").eq(1.5) == Compare("=", PathRef(("a",)), Const(Decimal("1.5")))
    assert sk.attr("a").eq((1, "x")) == Compare("=", PathRef(("a",)), Const([Decimal(1), "x"]))
    assert sk.attr("a").size().eq(2) == Compare("=", Size(PathRef(("a",))), Const(Decimal(2)))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        pytest.param(
            lambda: sk.attr("a").eq(set()), ValidationError, "a: empty sets", id="empty-set"
        ),
        pytest.param(
            lambda: sk.attr("a")["b"].eq(object()),
            ValidationError,
            r"a\.b: unsupported",
            id="bad-type",
        ),
        pytest.param(
            lambda: sk.attr("a").is_in([]), ValidationError, "at least one value", id="empty-in"
        ),
        pytest.param(
            lambda: sk.attr("a").is_in("abc"), TypeError, "list of values", id="in-string"
        ),
        pytest.param(lambda: sk.attr(""), ValidationError, "non-empty", id="empty-name"),
        pytest.param(lambda: sk.attr("a")[-1], ValidationError, ">= 0", id="negative-index"),
        pytest.param(
            lambda: sk.attr("a")[True], ValidationError, "non-empty strings", id="bool-index"
        ),
        pytest.param(lambda: sk.attr(3), ValidationError, "starts with a name", id="int-name"),  # type: ignore[arg-type]
        pytest.param(lambda: sk.key("a")["b"], TypeError, "top-level", id="nested-key"),
        pytest.param(
            lambda: sk.attr("a").eq(sk.attr("b").exists()),
            TypeError,
            "cannot be used as a value",
            id="condition-as-value",
        ),
    ],
)
def test_builder_errors(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("cond", "match"),
    [
        pytest.param(sk.attr("a").lt([1]), "operand type: L", id="lt-list"),
        pytest.param(
            sk.attr("a").between(5, 1), "upper bound to be greater", id="between-reversed"
        ),
        pytest.param(sk.attr("a").between(1, "z"), "same data type", id="between-mixed"),
        pytest.param(sk.attr("a").attribute_type("DOG"), "type: DOG", id="unknown-type"),
        pytest.param(
            sk.attr("a").begins_with(1), "begins_with, operand type: N", id="begins-with-number"
        ),
        pytest.param(sk.attr("a").contains(sk.attr("a")), "different paths", id="contains-itself"),
    ],
)
def test_builders_are_checked_like_strings(cond: Condition, match: str) -> None:
    with pytest.raises(ExpressionError, match=match) as info:
        built(cond)
    assert info.value.position is None  # nothing to point at in Python code


def test_long_builder_chains_are_refused_without_recursion() -> None:
    cond = sk.attr("a").exists()
    for _ in range(10_000):
        cond = cond & sk.attr("a").exists()
    with pytest.raises(ExpressionError, match="more than 300 operators"):
        built(cond)
    ok = sk.attr("a").exists()
    for _ in range(149):  # 150 functions and 149 ORs: 299 operators
        ok = ok | sk.attr("a").exists()
    assert built(ok).evaluate({"a": "x"})


def test_conditions_are_immutable_and_reusable() -> None:
    cond = sk.attr("a").eq(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.op = "<"  # type: ignore[attr-defined]
    first, second = built(cond), built(cond)
    assert first.evaluate({"a": Decimal(1)}) and second.evaluate({"a": Decimal(1)})


def test_key_builders_make_key_conditions() -> None:
    cond = sk.key("pk").eq("u1") & sk.key("sk").begins_with("2026-")
    kc = compile_key_condition(
        cond, ExpressionContext(None, None), partition_key="pk", sort_key="sk"
    )
    assert kc == KeyCondition("u1", "begins_with", ("2026-",))
    reversed_sides = sk.key("sk").between(1, 3) & sk.key("pk").eq(7)
    kc = compile_key_condition(
        reversed_sides, ExpressionContext(None, None), partition_key="pk", sort_key="sk"
    )
    assert kc == KeyCondition(Decimal(7), "between", (Decimal(1), Decimal(3)))


def test_key_builder_errors() -> None:
    ctx = ExpressionContext(None, None)
    with pytest.raises(ExpressionError, match="partition key pk takes only ="):
        compile_key_condition(sk.key("pk").gt(1), ctx, partition_key="pk", sort_key=None)
    with pytest.raises(ExpressionError, match="KeyConditionExpression: OR"):
        compile_key_condition(
            sk.key("pk").eq(1) | sk.key("sk").eq(1), ctx, partition_key="pk", sort_key="sk"
        )


def test_reprs_read_like_the_code() -> None:
    assert repr(sk.attr("a")["b"][0]) == "attr('a', 'b', 0)"
    assert repr(sk.key("pk")) == "key('pk')"
    assert repr(sk.attr("tags").size()) == "attr('tags').size()"


def test_attributes_compare_by_path() -> None:
    assert sk.attr("a")["b"] == sk.attr("a")["b"]
    assert sk.attr("a") != sk.attr("b")
    assert sk.key("a") != sk.attr("a")
    assert len({sk.attr("a"), sk.attr("a")}) == 1
