"""Expression strings: DynamoDB's grammar, its errors, placeholders and evaluation rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import streamkit as sk
from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.records._values import normalize_value
from streamkit.storage._conditions import (
    And,
    Between,
    Compare,
    Condition,
    Const,
    Exists,
    Not,
    Or,
    PathRef,
)
from streamkit.storage._expressions import (
    RESERVED_WORDS,
    CompiledCondition,
    ExpressionContext,
    KeyCondition,
    compile_condition,
    compile_key_condition,
    compile_projection,
    compile_update,
    parse_condition,
)


def compiled(
    text: str, values: dict[str, Any] | None = None, names: dict[str, str] | None = None
) -> CompiledCondition:
    ctx = ExpressionContext(names, values)
    cond = compile_condition(text, ctx)
    ctx.check_all_used()
    assert cond is not None
    return cond


def a(name: str) -> PathRef:
    return PathRef((name,))


def v(value: Any) -> Const:
    return Const(normalize_value(value))


# --- grammar and precedence ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "a = :v OR b = :v AND c = :v",
            Or(
                Compare("=", a("a"), v(1)),
                And(Compare("=", a("b"), v(1)), Compare("=", a("c"), v(1))),
            ),
            id="and-binds-tighter-than-or",
        ),
        pytest.param(
            "NOT a = :v AND b = :v",
            And(Not(Compare("=", a("a"), v(1))), Compare("=", a("b"), v(1))),
            id="not-binds-tighter-than-and",
        ),
        pytest.param(
            "(a = :v OR b = :v) AND c = :v",
            And(
                Or(Compare("=", a("a"), v(1)), Compare("=", a("b"), v(1))),
                Compare("=", a("c"), v(1)),
            ),
            id="parentheses",
        ),
        pytest.param(
            "a BETWEEN :v AND :v AND b = :v",
            And(Between(a("a"), v(1), v(1)), Compare("=", a("b"), v(1))),
            id="between-and-is-not-logical-and",
        ),
        pytest.param(
            "a = :v AND b = :v AND c = :v",
            And(
                And(Compare("=", a("a"), v(1)), Compare("=", a("b"), v(1))),
                Compare("=", a("c"), v(1)),
            ),
            id="left-associative",
        ),
        pytest.param("NOT NOT attribute_exists(a)", Not(Not(Exists(a("a")))), id="double-not"),
        pytest.param(
            "  a=:v  aNd  b<>:v  ",
            And(Compare("=", a("a"), v(1)), Compare("<>", a("b"), v(1))),
            id="whitespace-and-keyword-case",
        ),
        pytest.param("attribute_exists (a)", Exists(a("a")), id="space-before-parenthesis"),
        pytest.param(
            "m.k[2][0].z = :v",
            Compare("=", PathRef(("m", "k", 2, 0, "z")), v(1)),
            id="nested-path",
        ),
    ],
)
def test_parse_structure(text: str, expected: Condition) -> None:
    assert compiled(text, {":v": 1} if ":v" in text else None).ast == expected


def test_names_substitute_whole_path_elements() -> None:
    cond = compiled("#a.#b[1] = :v", {":v": 1}, {"#a": "Safety.Warning", "#b": "x y"})
    assert cond.ast == Compare("=", PathRef(("Safety.Warning", "x y", 1)), v(1))
    assert cond.evaluate({"Safety.Warning": {"x y": [0, Decimal(1)]}})
    assert not cond.evaluate({"Safety": {"Warning": {"x y": [0, Decimal(1)]}}})


def test_parses_are_cached_by_text() -> None:
    assert parse_condition("a = :cache_me") is parse_condition("a = :cache_me")


# --- syntax errors carry the position ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "token"),
    [
        pytest.param("a = ", 4, "<EOF>", id="missing-operand"),
        pytest.param("a = 5", 4, '"5"', id="literal-number"),
        pytest.param("a = :v AND", 10, "<EOF>", id="dangling-and"),
        pytest.param("a == :v", 3, '"="', id="double-equals"),
        pytest.param("a != :v", 2, '"!"', id="bang-equals"),
        pytest.param("a IN ()", 6, '")"', id="empty-in"),
        pytest.param("a[-1] = :v", 2, '"-"', id="negative-index"),
        pytest.param("a[0.4] = :v", 3, '"."', id="fractional-index"),
        pytest.param("a[:i] = :v", 2, '":i"', id="placeholder-index"),
        pytest.param("(a = :v", 7, "<EOF>", id="unclosed-parenthesis"),
        pytest.param("a = :v)", 6, '")"', id="extra-parenthesis"),
        pytest.param("_a = :v", 0, '"_"', id="underscore-start"),
        pytest.param("1a = :v", 0, '"1"', id="digit-start"),
        pytest.param("a.# = :v", 2, '"#"', id="bare-hash"),
        pytest.param("a = :", 4, '":"', id="bare-colon"),
        pytest.param("a BETWEEN :v :v", 13, '":v"', id="between-without-and"),
        pytest.param("a = :v b = :v", 7, '"b"', id="missing-logical-operator"),
        pytest.param("a", 1, "<EOF>", id="bare-path"),
        pytest.param("a = :v AND OR b = :v", 11, '"OR"', id="keyword-as-operand"),
    ],
)
def test_syntax_errors_point_at_the_token(text: str, position: int, token: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_condition(text)
    err = info.value
    assert err.position == position
    assert err.expression == text
    assert f"token: {token}" in str(err)
    assert "\n  " + " " * position + "^" in str(err)


@pytest.mark.parametrize("text", [pytest.param("", id="empty"), pytest.param("   ", id="blank")])
def test_empty_expressions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError, match="can not be empty"):
        parse_condition(text)


def test_expression_longer_than_4kb_is_refused() -> None:
    text = " OR ".join(["a = :v"] * 100) + " " * 4000
    with pytest.raises(
        ExpressionError, match="Expression size has exceeded the maximum allowed size"
    ):
        parse_condition(text)


def test_operator_limit() -> None:
    ok = " OR ".join(["a = :v"] * 150)  # 150 comparisons + 149 ORs = 299 operators
    assert compiled(ok, {":v": 1}).evaluate({"a": Decimal(1)})
    with pytest.raises(ExpressionError, match="too many operators; operator count: 301"):
        parse_condition(" OR ".join(["a = :v"] * 151))


def test_parenthesis_nesting_is_bounded() -> None:
    assert compiled("(" * 150 + "a = :v" + ")" * 150, {":v": 1}).evaluate({"a": Decimal(1)})
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_condition("(" * 151 + "a = :v" + ")" * 151)
    with pytest.raises(ExpressionError):
        parse_condition("(" * 2000)  # no RecursionError, whatever the input


def test_path_depth_limit() -> None:
    assert compiled("a" + ".b" * 31 + " = :v", {":v": 1})
    with pytest.raises(ExpressionError, match="too many nesting levels; nesting levels: 33"):
        parse_condition("a" + "[0]" * 32 + " = :v")


def test_in_takes_at_most_100_operands() -> None:
    values = {f":v{i}": i for i in range(101)}
    hundred = "a IN (" + ", ".join(list(values)[:100]) + ")"
    ctx = ExpressionContext(None, values)
    cond = compile_condition(hundred, ctx)
    assert cond is not None and cond.evaluate({"a": Decimal(99)})
    with pytest.raises(ExpressionError, match="at most 100 operands"):
        parse_condition("a IN (" + ", ".join(values) + ")")


# --- reserved words -----------------------------------------------------------------------------


def test_reserved_word_list_is_dynamodbs() -> None:
    assert len(RESERVED_WORDS) == 573
    assert {
        "NAME",
        "STATUS",
        "DATA",
        "SIZE",
        "COMMENT",
        "YEAR",
        "TTL",
        "FLATTERN",
    } <= RESERVED_WORDS
    assert not {"EMAIL", "USERID", "PRICE", "A"} & RESERVED_WORDS


@pytest.mark.parametrize(
    ("text", "word", "position"),
    [
        pytest.param("Name = :v", "Name", 0, id="top-level"),
        pytest.param("status = :v", "status", 0, id="lower-case"),
        pytest.param("a.Data = :v", "Data", 2, id="nested"),
        pytest.param("attribute_exists(comment)", "comment", 17, id="function-argument"),
        pytest.param("a = :v AND b IN (year)", "year", 17, id="in-list"),
    ],
)
def test_reserved_words_need_a_placeholder(text: str, word: str, position: int) -> None:
    with pytest.raises(ExpressionError, match=f"reserved keyword: {word}") as info:
        compiled(text, {":v": 1})
    assert info.value.position == position
    assert f'"#{word.lower()}": "{word}"' in str(info.value)  # the message shows the fix


def test_reserved_words_work_through_names() -> None:
    cond = compiled("#n = :v", {":v": "x"}, {"#n": "Name"})
    assert cond.evaluate({"Name": "x"})


# --- placeholders -------------------------------------------------------------------------------


def test_undefined_name_and_value_point_at_the_placeholder() -> None:
    with pytest.raises(ExpressionError, match="attribute name: #b") as info:
        compiled("a = :v AND #b = :v", {":v": 1})
    assert info.value.position == 11
    with pytest.raises(ExpressionError, match="attribute value: :w") as info:
        compiled("a = :v AND b = :w", {":v": 1})
    assert info.value.position == 15


def test_unused_placeholders_are_refused_across_all_expressions_of_a_call() -> None:
    ctx = ExpressionContext({"#a": "a", "#b": "b", "#c": "c"}, {":one": 1, ":two": 2})
    compile_update(ctx, "SET #a = :one")
    compile_condition("#b = :two", ctx)
    with pytest.raises(ExpressionError, match=r"ExpressionAttributeNames unused .*\{#c\}"):
        ctx.check_all_used()
    compile_projection("#c", ctx)
    ctx.check_all_used()


def test_unused_values_are_named() -> None:
    with pytest.raises(ExpressionError, match=r"ExpressionAttributeValues unused .*\{:x, :y\}"):
        compiled("a = :v", {":v": 1, ":y": 2, ":x": 3})


@pytest.mark.parametrize(
    ("names", "values", "match"),
    [
        pytest.param(
            {"n": "a"}, None, "ExpressionAttributeNames contains invalid key", id="no-hash"
        ),
        pytest.param({"#a-b": "a"}, None, "invalid key", id="dash-in-name-key"),
        pytest.param({"#a": ""}, None, "non-empty string", id="empty-name"),
        pytest.param({"#a": 3}, None, "non-empty string", id="non-string-name"),
        pytest.param(
            None, {"v": 1}, "ExpressionAttributeValues contains invalid key", id="no-colon"
        ),
        pytest.param(None, {":": 1}, "invalid key", id="bare-colon"),
    ],
)
def test_bad_placeholder_maps(
    names: dict[str, Any] | None, values: dict[str, Any] | None, match: str
) -> None:
    with pytest.raises(ExpressionError, match=match):
        ExpressionContext(names, values)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(set(), id="empty-set"),
        pytest.param(object(), id="unsupported-type"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(Decimal("1" * 39), id="39-digits"),
    ],
)
def test_bad_values_name_their_placeholder(value: Any) -> None:
    with pytest.raises(ValidationError, match=":bad") as info:
        ExpressionContext(None, {":bad": value})
    assert not isinstance(info.value, ExpressionError)


# --- misused functions and operand types ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values", "match"),
    [
        pytest.param("size(a)", {}, "not allowed to be used this way.*size", id="size-alone"),
        pytest.param(
            "attribute_exists(a) = :v",
            {":v": 1},
            "not allowed to be used this way",
            id="exists-compared",
        ),
        pytest.param(
            "attribute_exists(:v)", {":v": 1}, "requires a document path", id="exists-of-value"
        ),
        pytest.param("size(:v) > :v", {":v": 1}, "requires a document path", id="size-of-value"),
        pytest.param("size(a, b) > :v", {":v": 1}, "number of operands: 2", id="size-arity"),
        pytest.param(
            "attribute_type(a, b)", {}, "attribute_type, operand type: {S,SS,", id="type-as-path"
        ),
        pytest.param(
            "attribute_type(a, :t)",
            {":t": "DOG"},
            "Invalid attribute type name found; type: DOG",
            id="unknown-type",
        ),
        pytest.param(
            "begins_with(a, :n)", {":n": 1}, "begins_with, operand type: N", id="begins-number"
        ),
        pytest.param("contains(a, a)", {}, "different paths", id="contains-same-path"),
        pytest.param("ATTRIBUTE_EXISTS(a)", {}, "Invalid function name", id="function-case"),
        pytest.param(
            "dog(a) = :v", {":v": 1}, "Invalid function name; function: dog", id="unknown"
        ),
        pytest.param(
            "if_not_exists(a, :v) = :v", {":v": 1}, "update expressions", id="update-function"
        ),
        pytest.param(
            "a < :l", {":l": [1]}, "operator or function: <, operand type: L", id="lt-list"
        ),
        pytest.param(":b >= a", {":b": True}, "operand type: BOOL", id="gte-bool-left"),
        pytest.param(
            "a BETWEEN :s AND :n", {":s": "a", ":n": 1}, "same data type", id="between-mixed-bounds"
        ),
        pytest.param(
            "a BETWEEN :h AND :l",
            {":h": 2, ":l": 1},
            "upper bound to be greater",
            id="between-reversed",
        ),
        pytest.param(
            "a BETWEEN :m AND :m", {":m": {"k": 1}}, "operand type: M", id="between-map-bounds"
        ),
    ],
)
def test_semantic_errors(text: str, values: dict[str, Any], match: str) -> None:
    with pytest.raises(ExpressionError, match=match) as info:
        compile_condition(text, ExpressionContext(None, values))
    assert info.value.position is not None


# --- evaluation: DynamoDB's rules --------------------------------------------------------------

ITEM: dict[str, Any] = {
    "s": "hello",
    "n": Decimal(5),
    "b": b"\x01\x02",
    "t": True,
    "z": None,
    "l": ["x", Decimal(1), ["y"]],
    "m": {"k": "v", "n": {"d": Decimal(2)}},
    "ss": {"a", "b"},
    "ns": {Decimal(1), Decimal(2)},
    "bs": {b"a"},
    "one": Decimal(1),
    "emoji": "é𝄞",
}


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        pytest.param("s = :v", {":v": "hello"}, True, id="eq-string"),
        pytest.param("n = :v", {":v": 5}, True, id="eq-number"),
        pytest.param("n = :v", {":v": "5"}, False, id="eq-number-vs-string"),
        pytest.param("n <> :v", {":v": "5"}, True, id="ne-different-types"),
        pytest.param("one = :v", {":v": True}, False, id="number-1-is-not-true"),
        pytest.param("t = :v", {":v": 1}, False, id="true-is-not-number-1"),
        pytest.param("t = :v", {":v": True}, True, id="eq-bool"),
        pytest.param("z = :v", {":v": None}, True, id="eq-null"),
        pytest.param("m = :v", {":v": {"n": {"d": 2}, "k": "v"}}, True, id="eq-map-any-order"),
        pytest.param("l = :v", {":v": ["x", 1, ["y"]]}, True, id="eq-list"),
        pytest.param("ns = :v", {":v": {2, 1}}, True, id="eq-set"),
        pytest.param("gone = :v", {":v": 1}, False, id="missing-is-not-equal"),
        pytest.param("gone <> :v", {":v": 1}, True, id="missing-is-unequal"),
        pytest.param("gone = also_gone", {}, False, id="two-missing-not-equal"),
        pytest.param("gone <> also_gone", {}, True, id="two-missing-unequal"),
        pytest.param("n < :v", {":v": 6}, True, id="lt-number"),
        pytest.param("n < :v", {":v": "6"}, False, id="lt-mixed-types"),
        pytest.param("s < :v", {":v": "help"}, True, id="lt-string"),
        pytest.param("b < :v", {":v": b"\x01\x03"}, True, id="lt-binary"),
        pytest.param("n >= :v", {":v": 5}, True, id="gte-equal"),
        pytest.param("l > :v", {":v": 1}, False, id="gt-list-attribute-is-false"),
        pytest.param("gone < :v", {":v": 1}, False, id="lt-missing"),
        pytest.param("n BETWEEN :l AND :h", {":l": 5, ":h": 5}, True, id="between-inclusive"),
        pytest.param("s BETWEEN :l AND :h", {":l": "a", ":h": "z"}, True, id="between-strings"),
        pytest.param("n BETWEEN :l AND :h", {":l": "a", ":h": "z"}, False, id="between-wrong-type"),
        pytest.param("n BETWEEN one AND s", {}, False, id="between-mixed-paths"),
        pytest.param("n IN (:a, :b)", {":a": "5", ":b": 5}, True, id="in-mixed-types"),
        pytest.param("t IN (:a)", {":a": 1}, False, id="in-true-is-not-1"),
        pytest.param("m IN (:a)", {":a": {"k": "v", "n": {"d": 2}}}, True, id="in-map"),
        pytest.param("n IN (one, s)", {}, False, id="in-paths"),
        pytest.param("m.n.d = :v", {":v": 2}, True, id="nested-map"),
        pytest.param("l[1] = :v", {":v": 1}, True, id="list-index"),
        pytest.param("l[2][0] = :v", {":v": "y"}, True, id="nested-list"),
        pytest.param("l[9] = :v", {":v": 1}, False, id="index-past-end"),
        pytest.param("s.x = :v", {":v": 1}, False, id="dot-into-string"),
        pytest.param("m[0] = :v", {":v": "v"}, False, id="index-into-map"),
        pytest.param("attribute_exists(m.k)", {}, True, id="exists-nested"),
        pytest.param("attribute_exists(z)", {}, True, id="exists-null"),
        pytest.param("attribute_exists(m.q)", {}, False, id="exists-missing"),
        pytest.param("attribute_not_exists(l[7])", {}, True, id="not-exists-index"),
        pytest.param("begins_with(s, :p)", {":p": "he"}, True, id="begins-string"),
        pytest.param("begins_with(b, :p)", {":p": b"\x01"}, True, id="begins-binary"),
        pytest.param("begins_with(s, :p)", {":p": b"he"}, False, id="begins-string-vs-binary"),
        pytest.param("begins_with(n, :p)", {":p": "5"}, False, id="begins-number-attribute"),
        pytest.param("begins_with(:p, s)", {":p": "hello world"}, True, id="begins-reversed"),
        pytest.param("contains(s, :v)", {":v": "ell"}, True, id="contains-substring"),
        pytest.param("contains(b, :v)", {":v": b"\x02"}, True, id="contains-bytes"),
        pytest.param("contains(ss, :v)", {":v": "a"}, True, id="contains-string-set"),
        pytest.param("contains(ns, :v)", {":v": 1}, True, id="contains-number-set"),
        pytest.param("contains(ns, :v)", {":v": True}, False, id="contains-true-not-in-ns"),
        pytest.param("contains(ss, :v)", {":v": 1}, False, id="contains-wrong-type"),
        pytest.param("contains(l, :v)", {":v": "x"}, True, id="contains-list-element"),
        pytest.param("contains(l, :v)", {":v": ["y"]}, True, id="contains-list-of-list"),
        pytest.param("contains(m, :v)", {":v": "k"}, False, id="contains-map"),
        pytest.param("contains(gone, :v)", {":v": "k"}, False, id="contains-missing"),
        pytest.param("size(s) = :v", {":v": 5}, True, id="size-string"),
        pytest.param("size(emoji) = :v", {":v": 3}, True, id="size-utf16-units"),
        pytest.param("size(b) = :v", {":v": 2}, True, id="size-binary"),
        pytest.param("size(l) = :v", {":v": 3}, True, id="size-list"),
        pytest.param("size(m) = :v", {":v": 2}, True, id="size-map"),
        pytest.param("size(ss) = :v", {":v": 2}, True, id="size-set"),
        pytest.param("size(n) = :v", {":v": 1}, False, id="size-of-number"),
        pytest.param("size(n) <> :v", {":v": 1}, True, id="size-of-number-unequal"),
        pytest.param("size(gone) >= :v", {":v": 0}, False, id="size-missing"),
        pytest.param("size(s) = :v", {":v": "5"}, False, id="size-vs-string"),
        pytest.param("size(l) = one", {}, False, id="size-vs-path"),
        pytest.param("size(m) BETWEEN :l AND :h", {":l": 1, ":h": 2}, True, id="size-between"),
        pytest.param("NOT s = :v", {":v": "hello"}, False, id="not"),
        pytest.param("s = :v OR gone = :v", {":v": "hello"}, True, id="or"),
        pytest.param("s = :v AND gone = :v", {":v": "hello"}, False, id="and"),
    ],
)
def test_evaluation(text: str, values: dict[str, Any], expected: bool) -> None:
    assert compiled(text, values).evaluate(ITEM) is expected


@pytest.mark.parametrize(
    ("attribute", "tag"),
    [
        pytest.param(name, tag, id=tag)
        for name, tag in [
            ("s", "S"),
            ("n", "N"),
            ("b", "B"),
            ("t", "BOOL"),
            ("z", "NULL"),
            ("l", "L"),
            ("m", "M"),
            ("ss", "SS"),
            ("ns", "NS"),
            ("bs", "BS"),
        ]
    ],
)
def test_attribute_type(attribute: str, tag: str) -> None:
    assert compiled(f"attribute_type({attribute}, :t)", {":t": tag}).evaluate(ITEM)
    other = "S" if tag != "S" else "N"
    assert not compiled(f"attribute_type({attribute}, :t)", {":t": other}).evaluate(ITEM)


def test_absent_item() -> None:
    assert compiled("attribute_not_exists(id)").evaluate(None)
    assert compiled("id <> :v", {":v": 1}).evaluate(None)
    assert not compiled("id = :v", {":v": 1}).evaluate(None)
    assert not compiled("attribute_exists(id)").evaluate(None)


def test_compiled_condition_reports_its_attributes() -> None:
    cond = compiled(
        "a.b = :v AND (size(c) > :v OR attribute_exists(#d[0]))", {":v": 1}, {"#d": "D"}
    )
    assert cond.attributes == {"a", "c", "D"}


def test_compile_condition_passes_through_none_and_compiled() -> None:
    ctx = ExpressionContext(None, None)
    assert compile_condition(None, ctx) is None
    done = compiled("attribute_exists(a)")
    assert compile_condition(done, ctx) is done


def test_compile_condition_explains_an_attribute_passed_as_condition() -> None:
    with pytest.raises(TypeError, match=r"attr\('a'\) is an attribute, not a condition"):
        compile_condition(sk.attr("a"), ExpressionContext(None, None))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a condition"):
        compile_condition(3, ExpressionContext(None, None))  # type: ignore[arg-type]


# --- key conditions -----------------------------------------------------------------------------


def key_condition(text: str, values: dict[str, Any], sort_key: str | None = "sk") -> KeyCondition:
    ctx = ExpressionContext(None, values)
    kc = compile_key_condition(text, ctx, partition_key="pk", sort_key=sort_key)
    ctx.check_all_used()
    return kc


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        pytest.param("pk = :p", {":p": "u1"}, KeyCondition("u1"), id="partition-only"),
        pytest.param(
            "pk = :p AND sk < :s",
            {":p": "u1", ":s": 3},
            KeyCondition("u1", "<", (Decimal(3),)),
            id="lt",
        ),
        pytest.param(
            ":p = pk AND :s < sk",
            {":p": "u1", ":s": 3},
            KeyCondition("u1", ">", (Decimal(3),)),
            id="reversed-operands-flip",
        ),
        pytest.param(
            "sk BETWEEN :a AND :b AND pk = :p",
            {":p": 1, ":a": "a", ":b": "b"},
            KeyCondition(Decimal(1), "between", ("a", "b")),
            id="sort-first",
        ),
        pytest.param(
            "pk = :p AND begins_with(sk, :s)",
            {":p": "u1", ":s": "2026-"},
            KeyCondition("u1", "begins_with", ("2026-",)),
            id="begins-with",
        ),
        pytest.param(
            "((pk = :p) AND (sk >= :s))",
            {":p": "u1", ":s": b"x"},
            KeyCondition("u1", ">=", (b"x",)),
            id="parentheses",
        ),
        pytest.param(
            "pk = :p",
            {":p": ["any", "type"]},
            KeyCondition(["any", "type"]),
            id="partition-type-is-callers-job",
        ),
    ],
)
def test_key_conditions(text: str, values: dict[str, Any], expected: KeyCondition) -> None:
    assert key_condition(text, values) == expected


@pytest.mark.parametrize(
    ("text", "values", "match"),
    [
        pytest.param("pk < :p", {":p": 1}, "partition key pk takes only =", id="partition-range"),
        pytest.param("sk = :s", {":s": 1}, "missed key schema element: pk", id="no-partition"),
        pytest.param(
            "pk = :p OR sk = :s", {":p": 1, ":s": 1}, "KeyConditionExpression: OR", id="or"
        ),
        pytest.param("NOT pk = :p", {":p": 1}, "KeyConditionExpression: NOT", id="not"),
        pytest.param(
            "pk = :p AND sk <> :s", {":p": 1, ":s": 1}, "KeyConditionExpression: <>", id="ne"
        ),
        pytest.param(
            "pk = :p AND sk IN (:s)", {":p": 1, ":s": 1}, "KeyConditionExpression: IN", id="in"
        ),
        pytest.param(
            "pk = :p AND attribute_exists(sk)",
            {":p": 1},
            "KeyConditionExpression: attribute_exists",
            id="function",
        ),
        pytest.param(
            "pk = :p AND contains(sk, :s)",
            {":p": 1, ":s": "a"},
            "KeyConditionExpression: contains",
            id="contains",
        ),
        pytest.param("pk = :p AND size(sk) > :s", {":p": 1, ":s": 1}, ": size", id="size"),
        pytest.param(
            "pk = :p AND price = :s",
            {":p": 1, ":s": 1},
            "price is not a key attribute",
            id="non-key",
        ),
        pytest.param("pk = :p AND pk = :p", {":p": 1}, "one condition per key", id="twice"),
        pytest.param(
            "pk = :p AND sk > :s AND sk < :s",
            {":p": 1, ":s": 1},
            "at most two conditions",
            id="three",
        ),
        pytest.param(
            "pk = :p AND begins_with(sk, :s)",
            {":p": 1, ":s": 1},
            "begins_with, operand type: N",
            id="begins-with-number",
        ),
        pytest.param(
            "pk = :p AND sk = :s", {":p": 1, ":s": [1]}, "operand type: L", id="list-value"
        ),
        pytest.param("pk.x = :p", {":p": 1}, "top-level key attributes", id="nested"),
        pytest.param("pk = sk", {}, "compares one key attribute with values", id="two-paths"),
    ],
)
def test_key_condition_errors(text: str, values: dict[str, Any], match: str) -> None:
    with pytest.raises(ExpressionError, match=match):
        key_condition(text, values)


def test_sort_condition_on_a_table_without_sort_key() -> None:
    with pytest.raises(ExpressionError, match="the table has no sort key"):
        key_condition("pk = :p AND sk = :s", {":p": 1, ":s": 1}, sort_key=None)


@pytest.mark.parametrize(
    ("kc", "value", "expected"),
    [
        pytest.param(KeyCondition("p"), "anything", True, id="no-sort-condition"),
        pytest.param(KeyCondition("p", "=", ("a",)), "a", True, id="eq"),
        pytest.param(KeyCondition("p", "<", (Decimal(3),)), Decimal(2), True, id="lt"),
        pytest.param(KeyCondition("p", ">=", (Decimal(3),)), Decimal(2), False, id="gte"),
        pytest.param(KeyCondition("p", "between", ("b", "d")), "d", True, id="between-inclusive"),
        pytest.param(KeyCondition("p", "begins_with", ("20",)), "2026", True, id="begins-with"),
        pytest.param(KeyCondition("p", "<", (Decimal(3),)), "2", False, id="type-mismatch"),
    ],
)
def test_sort_matches(kc: KeyCondition, value: Any, expected: bool) -> None:
    assert kc.sort_matches(value) is expected


# --- projections --------------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "a": {"b": Decimal(1), "z": Decimal(2)},
    "c": [{"x": Decimal(1), "y": Decimal(2)}, "five", "six", "seven"],
    "d": "dee",
}


@pytest.mark.parametrize(
    ("projection", "names", "expected"),
    [
        pytest.param("d, a", None, {"d": "dee", "a": DOC["a"]}, id="top-level"),
        pytest.param("d, gone", None, {"d": "dee"}, id="missing-left-out"),
        pytest.param("a.b", None, {"a": {"b": Decimal(1)}}, id="nested-map"),
        pytest.param(
            "c[3], c[1]", None, {"c": ["five", "seven"]}, id="list-elements-in-list-order"
        ),
        pytest.param(
            "c[0].x, c[1]", None, {"c": [{"x": Decimal(1)}, "five"]}, id="inside-list-element"
        ),
        pytest.param("a.q, c[9]", None, {}, id="nothing-there"),
        pytest.param("#a.#b", {"#a": "a", "#b": "b"}, {"a": {"b": Decimal(1)}}, id="names"),
        pytest.param(["a", "d"], None, {"a": DOC["a"], "d": "dee"}, id="list-of-names"),
        pytest.param(
            [sk.attr("a")["b"], "d", "d"], None, {"a": {"b": Decimal(1)}, "d": "dee"}, id="builders"
        ),
    ],
)
def test_projection(
    projection: Any, names: dict[str, str] | None, expected: dict[str, Any]
) -> None:
    ctx = ExpressionContext(names, None)
    proj = compile_projection(projection, ctx)
    ctx.check_all_used()
    assert proj is not None
    before = repr(DOC)
    assert proj.apply(DOC) == expected
    assert repr(DOC) == before


def test_projection_list_names_are_literal() -> None:
    proj = compile_projection(["a.b"], ExpressionContext(None, None))
    assert proj is not None
    assert proj.apply({"a.b": 1, "a": {"b": 2}}) == {"a.b": 1}


@pytest.mark.parametrize(
    ("projection", "match"),
    [
        pytest.param("a, a.b", r"overlap .*path one: \[a\], path two: \[a, b\]", id="prefix"),
        pytest.param("a, a", "overlap", id="duplicate"),
        pytest.param(
            "a.b, a[0]", r"conflict .*path one: \[a, b\], path two: \[a, \[0\]\]", id="map-vs-list"
        ),
        pytest.param("a, Size", "reserved keyword", id="reserved"),
        pytest.param("a,", "Syntax error", id="trailing-comma"),
    ],
)
def test_projection_errors(projection: str, match: str) -> None:
    with pytest.raises(ExpressionError, match=match):
        compile_projection(projection, ExpressionContext(None, None))


def test_projection_none_and_empty() -> None:
    assert compile_projection(None, ExpressionContext(None, None)) is None
    with pytest.raises(ValidationError, match="at least one attribute"):
        compile_projection([], ExpressionContext(None, None))
