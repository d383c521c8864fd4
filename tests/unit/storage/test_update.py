"""Update expressions and the keyword form: parsing, checks and DynamoDB's update semantics."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from streamkit.exceptions import ExpressionError, ValidationError
from streamkit.records._values import normalize_item
from streamkit.storage._expressions import CompiledUpdate, ExpressionContext, compile_update


def update(
    text: str, values: dict[str, Any] | None = None, names: dict[str, str] | None = None
) -> CompiledUpdate:
    ctx = ExpressionContext(names, values)
    upd = compile_update(ctx, text)
    ctx.check_all_used()
    return upd


def run(
    text: str, item: dict[str, Any], values: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """Apply an update to a normalized copy of ``item`` and check the input was left alone."""
    norm = normalize_item(item)
    before = copy.deepcopy(norm)
    result = update(text, values, kw.get("names")).apply(norm, item_exists=kw.get("exists", True))
    assert norm == before
    return result


def n(value: Any) -> Any:
    return normalize_item({"x": value})["x"]


# --- SET ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "item", "values", "expected"),
    [
        pytest.param("SET a = :v", {}, {":v": "x"}, {"a": "x"}, id="new-attribute"),
        pytest.param("SET a = :v, b = :v", {"a": 1}, {":v": 2}, {"a": 2, "b": 2}, id="several"),
        pytest.param("set a = :v", {}, {":v": 1}, {"a": 1}, id="keyword-case"),
        pytest.param("SET b = a", {"a": [1]}, {}, {"a": [1], "b": [1]}, id="copy-attribute"),
        pytest.param(
            "SET a = b, b = a", {"a": 1, "b": 2}, {}, {"a": 2, "b": 1}, id="swap-reads-old-item"
        ),
        pytest.param("SET m.k = :v", {"m": {}}, {":v": 1}, {"m": {"k": 1}}, id="new-map-key"),
        pytest.param(
            "SET m.k = :v",
            {"m": {"k": 0, "o": 2}},
            {":v": 1},
            {"m": {"k": 1, "o": 2}},
            id="replace-map-key",
        ),
        pytest.param(
            "SET l[1] = :v",
            {"l": [0, 0, 0]},
            {":v": 1},
            {"l": [0, 1, 0]},
            id="replace-list-element",
        ),
        pytest.param(
            "SET l[7] = :v",
            {"l": ["a"]},
            {":v": "b"},
            {"l": ["a", "b"]},
            id="index-past-end-appends",
        ),
        pytest.param(
            "SET l[84] = :a, l[37] = :b, l[50] = :c",
            {"l": ["x"]},
            {":a": "84", ":b": "37", ":c": "50"},
            {"l": ["x", "37", "50", "84"]},
            id="appends-in-index-order",
        ),
        pytest.param(
            "SET a.c[1].#x.y[1] = :v",
            {"a": {"c": ["hi", {"x": {"y": [3, 5, 7]}}]}},
            {":v": 9},
            {"a": {"c": ["hi", {"x": {"y": [3, 9, 7]}}]}},
            id="deep-path",
        ),
        pytest.param(
            "SET z = a.c[0]", {"a": {"c": [4]}}, {}, {"a": {"c": [4]}, "z": 4}, id="deep-source"
        ),
        pytest.param(
            "SET a = :v", {"a": {"deep": [1]}}, {":v": 7}, {"a": 7}, id="replace-with-other-type"
        ),
        pytest.param(
            "SET a = :e, b = :m",
            {},
            {":e": [], ":m": {}},
            {"a": [], "b": {}},
            id="empty-list-and-map",
        ),
    ],
)
def test_set(
    text: str, item: dict[str, Any], values: dict[str, Any], expected: dict[str, Any]
) -> None:
    names = {"#x": "x"} if "#x" in text else None
    assert run(text, item, values, names=names) == normalize_item(expected)


@pytest.mark.parametrize(
    ("text", "item", "values", "expected"),
    [
        pytest.param("SET a = a + :v", {"a": 2}, {":v": 3}, {"a": 5}, id="add"),
        pytest.param("SET a = :v - a", {"a": 2}, {":v": 7}, {"a": 5}, id="subtract"),
        pytest.param(
            "SET a = :x + :y", {}, {":x": "0.1", ":y": "0.2"}, None, id="strings-refused-at-compile"
        ),
        pytest.param("SET a = a + :v", {"a": "0.1"}, {":v": "0.2"}, None, id="strings-refused"),
        pytest.param(
            "SET a = :x + :y", {}, {":x": 0.1, ":y": 0.2}, {"a": Decimal("0.3")}, id="exact-decimal"
        ),
        pytest.param(
            "SET a = :x + :y",
            {},
            {":x": Decimal("1.50"), ":y": 1},
            {"a": Decimal("2.5")},
            id="canonical",
        ),
        pytest.param("SET a = :x - :x", {}, {":x": 3}, {"a": 0}, id="zero"),
        pytest.param(
            "SET c = if_not_exists(c, :zero) + :one",
            {},
            {":zero": 0, ":one": 1},
            {"c": 1},
            id="counter-new",
        ),
        pytest.param(
            "SET c = if_not_exists(c, :zero) + :one",
            {"c": 41},
            {":zero": 0, ":one": 1},
            {"c": 42},
            id="counter-existing",
        ),
        pytest.param(
            "SET a = if_not_exists(a, :v)", {"a": 1}, {":v": 2}, {"a": 1}, id="if-not-exists-keeps"
        ),
        pytest.param(
            "SET b = if_not_exists(a, :v)",
            {"a": 1},
            {":v": 2},
            {"a": 1, "b": 1},
            id="if-not-exists-copies",
        ),
        pytest.param(
            "SET l = list_append(l, :v)", {"l": [1]}, {":v": [2]}, {"l": [1, 2]}, id="append"
        ),
        pytest.param(
            "SET l = list_append(:v, l)", {"l": [1]}, {":v": [0]}, {"l": [0, 1]}, id="prepend"
        ),
        pytest.param(
            "SET l = list_append(if_not_exists(l, :e), :v)",
            {},
            {":e": [], ":v": ["a"]},
            {"l": ["a"]},
            id="append-to-missing-list",
        ),
    ],
)
def test_set_functions(
    text: str, item: dict[str, Any], values: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    if expected is None:
        with pytest.raises(ValidationError, match=r"operand type: S|incorrect data type"):
            run(text, item, values)
    else:
        assert run(text, item, values) == normalize_item(expected)


@pytest.mark.parametrize(
    ("text", "item", "values", "match"),
    [
        pytest.param("SET a = b", {}, {}, "does not exist in the item: b", id="copy-missing"),
        pytest.param(
            "SET x = :v, y = x", {}, {":v": 1}, "does not exist in the item: x", id="reads-old-item"
        ),
        pytest.param(
            "SET a = a + :v", {}, {":v": 1}, "does not exist in the item: a", id="add-to-missing"
        ),
        pytest.param(
            "SET a = a + :v",
            {"a": True},
            {":v": 1},
            "incorrect data type: a: \\+ needs two numbers",
            id="add-to-bool",
        ),
        pytest.param(
            "SET l = list_append(l, :v)",
            {"l": "x"},
            {":v": [1]},
            "list_append needs two lists",
            id="append-to-string",
        ),
        pytest.param("SET m.k = :v", {}, {":v": 1}, "invalid for update: m.k", id="missing-parent"),
        pytest.param(
            "SET m.k = :v", {"m": "x"}, {":v": 1}, "invalid for update", id="scalar-parent"
        ),
        pytest.param(
            "SET m.k.j = :v", {"m": {}}, {":v": 1}, "invalid for update", id="missing-grandparent"
        ),
        pytest.param(
            "SET l[0] = :v", {"l": {"0": 1}}, {":v": 1}, "invalid for update", id="index-into-map"
        ),
        pytest.param(
            "SET l.k = :v", {"l": [1]}, {":v": 1}, "invalid for update", id="key-into-list"
        ),
        pytest.param(
            "SET l[5].k = :v", {"l": [{}]}, {":v": 1}, "invalid for update", id="missing-element"
        ),
        pytest.param(
            "SET a = a + :v",
            {"a": Decimal("1" * 38)},
            {":v": Decimal("0.1")},
            "39 significant digits",
            id="precision",
        ),
        pytest.param(
            "SET a = a - :v",
            {"a": Decimal("1E+125")},
            {":v": Decimal("-9E+125")},
            "out of range",
            id="out-of-range",
        ),
    ],
)
def test_set_runtime_errors(
    text: str, item: dict[str, Any], values: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        run(text, item, values)
    assert info.value.path is not None


# --- REMOVE -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "item", "expected"),
    [
        pytest.param("REMOVE a, b", {"a": 1, "b": 2, "c": 3}, {"c": 3}, id="top-level"),
        pytest.param("REMOVE gone", {"a": 1}, {"a": 1}, id="missing-is-fine"),
        pytest.param("REMOVE m.k", {"m": {"k": 1}}, {"m": {}}, id="leaves-empty-map"),
        pytest.param("REMOVE m.q", {"m": {"k": 1}}, {"m": {"k": 1}}, id="missing-leaf-is-fine"),
        pytest.param("REMOVE l[1]", {"l": [0, 1, 2]}, {"l": [0, 2]}, id="list-element-shifts"),
        pytest.param("REMOVE l[0]", {"l": [0]}, {"l": []}, id="leaves-empty-list"),
        pytest.param(
            "REMOVE l[1], l[3]", {"l": [0, 1, 2, 3, 4]}, {"l": [0, 2, 4]}, id="original-positions"
        ),
        pytest.param("REMOVE l[17]", {"l": [0]}, {"l": [0]}, id="past-end-is-fine"),
        pytest.param(
            "REMOVE a.c[1].x.y[1], a.c[1].q",
            {"a": {"c": ["hi", {"x": {"y": [3, 5, 7]}, "q": 2}]}},
            {"a": {"c": ["hi", {"x": {"y": [3, 7]}}]}},
            id="nested",
        ),
    ],
)
def test_remove(text: str, item: dict[str, Any], expected: dict[str, Any]) -> None:
    assert run(text, item) == normalize_item(expected)


def test_remove_and_set_use_positions_before_the_update() -> None:
    item = {"l": [2, 3, 4, 5, 6, 7]}
    for text in ("REMOVE l[1] SET l[3] = :v", "SET l[3] = :v REMOVE l[1]"):
        assert run(text, item, {":v": 17}) == normalize_item({"l": [2, 4, 17, 6, 7]})
    # an element appended by SET is not the old list's l[3]
    assert run("SET l[9] = :v REMOVE l[3]", {"l": [0, 1, 2]}, {":v": 9}) == normalize_item(
        {"l": [0, 1, 2, 9]}
    )


@pytest.mark.parametrize(
    ("text", "item"),
    [
        pytest.param("REMOVE m.k", {}, id="missing-parent"),
        pytest.param("REMOVE m.k", {"m": "x"}, id="scalar-parent"),
        pytest.param("REMOVE l[0]", {"l": "x"}, id="index-into-string"),
        pytest.param("REMOVE l[0]", {}, id="index-into-missing"),
    ],
)
def test_remove_through_a_bad_parent(text: str, item: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="invalid for update"):
        run(text, item)
    # ...unless the item does not exist at all, where DynamoDB lets it pass
    assert run(text, item, exists=False) == normalize_item(item)


# --- ADD and DELETE -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "item", "values", "expected"),
    [
        pytest.param("ADD n :v", {"n": 5}, {":v": 2}, {"n": 7}, id="number"),
        pytest.param("ADD n :v", {"n": 5}, {":v": -7}, {"n": -2}, id="negative"),
        pytest.param("ADD n :v", {}, {":v": 3}, {"n": 3}, id="missing-number-counts-from-zero"),
        pytest.param(
            "ADD s :v",
            {"s": {"a", "b"}},
            {":v": {"b", "c"}},
            {"s": {"a", "b", "c"}},
            id="set-union",
        ),
        pytest.param("ADD s :v", {}, {":v": {1, 2}}, {"s": {1, 2}}, id="new-set"),
        pytest.param("ADD m.n :v", {"m": {"n": 1}}, {":v": 1}, {"m": {"n": 2}}, id="nested"),
        pytest.param(
            "ADD n :a, s :b", {}, {":a": 1, ":b": {b"x"}}, {"n": 1, "s": {b"x"}}, id="two"
        ),
        pytest.param(
            "DELETE s :v", {"s": {"a", "b"}}, {":v": {"b", "z"}}, {"s": {"a"}}, id="delete"
        ),
        pytest.param(
            "DELETE s :v", {"s": {"a"}, "k": 1}, {":v": {"a"}}, {"k": 1}, id="delete-all-removes"
        ),
        pytest.param("DELETE s :v", {"k": 1}, {":v": {"a"}}, {"k": 1}, id="delete-from-missing"),
        pytest.param(
            "DELETE l[0] :v",
            {"l": [{1}, 2]},
            {":v": {1}},
            {"l": [2]},
            id="emptied-list-element-goes",
        ),
    ],
)
def test_add_and_delete(
    text: str, item: dict[str, Any], values: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert run(text, item, values) == normalize_item(expected)


@pytest.mark.parametrize(
    ("text", "item", "values"),
    [
        pytest.param("ADD n :v", {"n": "x"}, {":v": 1}, id="number-to-string"),
        pytest.param("ADD s :v", {"s": {"a"}}, {":v": {1}}, id="number-set-to-string-set"),
        pytest.param("ADD s :v", {"s": [1]}, {":v": {1}}, id="set-to-list"),
        pytest.param("ADD n :v", {"n": 1}, {":v": {1}}, id="set-to-number"),
        pytest.param("DELETE s :v", {"s": "a"}, {":v": {"a"}}, id="delete-from-string"),
        pytest.param("DELETE s :v", {"s": {1}}, {":v": {"a"}}, id="delete-other-set-type"),
    ],
)
def test_add_and_delete_type_errors(
    text: str, item: dict[str, Any], values: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError, match="incorrect data type"):
        run(text, item, values)


def test_add_number_overflow() -> None:
    with pytest.raises(ValidationError, match="39 significant digits") as info:
        run("ADD n :v", {"n": Decimal("1" * 38)}, {":v": Decimal("0.1")})
    assert info.value.path == "n"


# --- checks at compile time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values", "match"),
    [
        pytest.param(
            "SET a = :v SET b = :v",
            {":v": 1},
            'The "SET" section can only be used once',
            id="two-sets",
        ),
        pytest.param(
            "SET a = :v REMOVE b SET c = :v", {":v": 1}, "only be used once", id="interleaved"
        ),
        pytest.param("HELLO a = :v", {":v": 1}, 'token: "HELLO"', id="unknown-clause"),
        pytest.param("SET a = :v + :v + :v", {":v": 1}, 'token: "\\+"', id="three-terms"),
        pytest.param("SET :a = :v", {":v": 1, ":a": 1}, 'token: ":a"', id="value-as-target"),
        pytest.param(
            "SET a = if_not_exists(a, :v + :v)", {":v": 1}, 'token: "\\+"', id="plus-in-argument"
        ),
        pytest.param("SET a[:i] = :v", {":v": 1, ":i": 1}, 'token: ":i"', id="value-index"),
        pytest.param("SET a = :v,", {":v": 1}, "<EOF>", id="trailing-comma"),
        pytest.param("ADD a b", {}, 'token: "b"', id="add-path"),
        pytest.param("", {}, "can not be empty", id="empty"),
        pytest.param(
            "SET a = :s + :v",
            {":s": "x", ":v": 1},
            "operator or function: \\+, operand type: S",
            id="plus-string",
        ),
        pytest.param(
            "SET a = list_append(:v, :l)",
            {":v": 1, ":l": [1]},
            "list_append, operand type: N",
            id="append-number",
        ),
        pytest.param(
            "SET a = list_append(:l)", {":l": [1]}, "number of operands: 1", id="append-arity"
        ),
        pytest.param(
            "SET a = if_not_exists(:v, :v)",
            {":v": 1},
            "requires a document path",
            id="if-not-exists-value",
        ),
        pytest.param(
            "SET a = size(b)", {}, "not allowed in an update expression; function: size", id="size"
        ),
        pytest.param(
            "SET a = attribute_exists(b)",
            {},
            "not allowed in an update expression",
            id="condition-function",
        ),
        pytest.param(
            "SET a = LIST_APPEND(a, :l)",
            {":l": [1]},
            "Invalid function name; function: LIST_APPEND",
            id="function-case",
        ),
        pytest.param(
            "SET a = f(b)", {}, "Invalid function name; function: f", id="unknown-function"
        ),
        pytest.param(
            "ADD a :v", {":v": "x"}, "operator or function: ADD, operand type: S", id="add-string"
        ),
        pytest.param("ADD a :v", {":v": [1]}, "ADD, operand type: L", id="add-list"),
        pytest.param("DELETE a :v", {":v": 1}, "DELETE, operand type: N", id="delete-number"),
        pytest.param("SET Name = :v", {":v": 1}, "reserved keyword: Name", id="reserved"),
        pytest.param("SET a = :missing", {}, "attribute value: :missing", id="undefined-value"),
        pytest.param("SET #a = :v", {":v": 1}, "attribute name: #a", id="undefined-name"),
    ],
)
def test_update_expression_errors(text: str, values: dict[str, Any], match: str) -> None:
    with pytest.raises(ExpressionError, match=match):
        compile_update(ExpressionContext(None, values), text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(text, id=text)
        for text in [
            "SET a = :v REMOVE a",
            "SET a = :v, a = :v",
            "SET a = :v, a.b = :v",
            "SET a.b = :v, a = :v",
            "SET a.b.c = :v, a.b = :v",
            "SET a[1] = :v, a = :v",
            "SET a[1][1] = :v, a[1] = :v",
            "ADD a :v DELETE a :s",
            "REMOVE a.b ADD a :v",
        ]
    ],
)
def test_overlapping_paths(text: str) -> None:
    with pytest.raises(ExpressionError, match="Two document paths overlap"):
        compile_update(ExpressionContext(None, {":v": 1, ":s": {1}}), text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("SET a.b = :v, a[1] = :v", id="map-and-list"),
        pytest.param("SET a.b.c = :v, a.b[2] = :v", id="nested"),
    ],
)
def test_conflicting_paths(text: str) -> None:
    with pytest.raises(ExpressionError, match="Two document paths conflict"):
        compile_update(ExpressionContext(None, {":v": 1}), text)


def test_overlap_check_resolves_names_first() -> None:
    with pytest.raises(ExpressionError, match=r"overlap .*path one: \[a\], path two: \[a\]"):
        compile_update(ExpressionContext({"#x": "a", "#y": "a"}, {":v": 1}), "SET #x = :v, #y = :v")


def test_non_overlapping_nested_updates_combine() -> None:
    item = {"a": {"x": 3, "y": 4, "c": {"y": 3}}, "b": {"x": 1, "y": 2}}
    result = run(
        "SET a.b = :v1, a.c.d = :v2, b.x = :v3 REMOVE a.x, b.y",
        item,
        {":v1": 10, ":v2": "dog", ":v3": 17},
    )
    assert result == normalize_item(
        {"a": {"y": 4, "b": 10, "c": {"y": 3, "d": "dog"}}, "b": {"x": 17}}
    )


def test_touched_names_the_top_level_attributes() -> None:
    upd = update("SET a.b = :v, c = d REMOVE e[1] ADD f :v DELETE g :s", {":v": 1, ":s": {1}})
    assert upd.touched == {"a", "c", "e", "f", "g"}


def test_results_do_not_share_values_with_the_compiled_update() -> None:
    upd = update("SET l = :l, m.k = :m", {":l": [1, [2]], ":m": {"x": {1}}})
    first = upd.apply(normalize_item({"m": {}}))
    first["l"][1].append(3)
    first["m"]["k"]["x"].add(Decimal(2))
    second = upd.apply(normalize_item({"m": {}}))
    assert second == normalize_item({"l": [1, [2]], "m": {"k": {"x": {1}}}})


def test_unchanged_parts_are_shared_and_changed_parts_copied() -> None:
    item = normalize_item({"keep": {"big": [1, 2]}, "m": {"k": 1, "deep": {"x": 1}}})
    result = update("SET m.k = :v", {":v": 2}).apply(item)
    assert result["keep"] is item["keep"]  # untouched values are not copied
    assert result["m"] is not item["m"]
    assert result["m"]["deep"] is item["m"]["deep"]
    assert item["m"]["k"] == 1


def test_compiled_update_is_reusable() -> None:
    upd = update("ADD n :one", {":one": 1})
    item = normalize_item({"n": 1})
    for _ in range(3):
        item = upd.apply(item)
    assert item == normalize_item({"n": 4})


# --- the keyword form ---------------------------------------------------------------------------


def keywords(**kw: Any) -> CompiledUpdate:
    return compile_update(ExpressionContext(None, None), **kw)


def test_keyword_form() -> None:
    upd = keywords(
        set={"Name": "Jane", "a.b": [1]},
        remove=["gone", "Status"],
        add={"n": 1, "s": {"x"}},
        delete={"t": {1}},
    )
    item = normalize_item({"Name": "J", "gone": 1, "Status": "x", "n": 1, "t": {1, 2}})
    assert upd.apply(item) == normalize_item(
        {"Name": "Jane", "a.b": [1], "n": 2, "s": {"x"}, "t": {2}}
    )
    assert upd.touched == {"Name", "a.b", "gone", "Status", "n", "s", "t"}


def test_keyword_form_takes_a_single_name_to_remove() -> None:
    assert keywords(remove="abc").apply({"abc": 1, "a": 2}) == {"a": 2}


def test_no_update_changes_nothing() -> None:
    upd = keywords()
    item = normalize_item({"a": 1})
    assert upd.apply(item) == item
    assert upd.touched == frozenset()


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        pytest.param({"set": {"a": set()}}, ValidationError, "a: empty sets", id="bad-value"),
        pytest.param({"set": {"": 1}}, ValidationError, "non-empty strings", id="empty-name"),
        pytest.param(
            {"set": {"a": 1}, "remove": ["a"]}, ExpressionError, "overlap", id="set-and-remove"
        ),
        pytest.param({"add": {"a": "x"}}, ExpressionError, "ADD, operand type: S", id="add-string"),
        pytest.param(
            {"delete": {"a": 1}}, ExpressionError, "DELETE, operand type: N", id="delete-number"
        ),
    ],
)
def test_keyword_form_errors(kw: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        keywords(**kw)


def test_both_forms_are_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        compile_update(ExpressionContext(None, {":v": 1}), "SET a = :v", set={"b": 1})
