"""Handler filters, adversarially: malformed patterns, arrays of maps, a record's own values.

``test_patterns.py`` covers each operator in both shapes; this file holds the
regressions found by probing the engine and properties over whole random items.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamkit as sk
from streamkit.runtime._patterns import FilterError, compile_filter
from streamkit.testing import make_record
from tests import strategies as sks

LINES = make_record(
    "INSERT",
    {"id": "1"},
    new={"id": "1", "Lines": [{"sku": "A1", "n": 2}, {"sku": "B7"}], "Empty": [], "Nums": [1, 2]},
)


def _matches(pattern: Any, record: sk.ChangeRecord = LINES) -> bool:
    f = compile_filter(pattern)
    assert f is not None
    return f.matches(record)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param({"Lines": {"sku": ["B7"]}}, True, id="any-element"),
        pytest.param({"Lines": {"sku": ["A1"], "n": [2]}}, True, id="same-element"),
        # EventBridge keeps array consistency: both fields from one element
        pytest.param({"Lines": {"sku": ["B7"], "n": [2]}}, False, id="peer-elements"),
        pytest.param({"Lines": {"sku": [{"exists": True}]}}, True, id="exists-in-elements"),
        pytest.param({"Lines": {"sku": [{"exists": False}]}}, False, id="every-element-has-it"),
        pytest.param({"Lines": {"n": [{"exists": False}]}}, True, id="one-element-lacks-it"),
        pytest.param({"Empty": {"sku": [{"exists": False}]}}, True, id="empty-list-absent"),
        pytest.param({"Nums": {"sku": [{"exists": False}]}}, True, id="no-maps-absent"),
        pytest.param({"Nums": [{"numeric": [">", 1]}]}, True, id="numeric-any-element"),
        pytest.param({"Nums": [{"anything-but": [1, 2]}]}, False, id="anything-but-all"),
    ],
)
def test_lists_of_maps_and_values(pattern: dict[str, Any], expected: bool) -> None:
    assert _matches({"new_image": pattern}) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        pytest.param(
            {"new_image": {"q": [{"numeric": [[">"], 1]}]}},
            r"new_image\.q\[0\]: numeric operator \[",
            id="numeric-op-list",
        ),
        pytest.param(
            {"new_image": {"q": [{"numeric": [{">": 1}, 1]}]}},
            r"new_image\.q\[0\]: numeric operator \{",
            id="numeric-op-dict",
        ),
        pytest.param(
            {"new_image": {"q": [{1: 2, "a": 3}]}},
            r"new_image\.q\[0\]: an operator object has exactly one key",
            id="operator-keys-mixed-types",
        ),
        pytest.param({1: ["x"], "zz": ["y"]}, "field names are strings", id="top-key-int"),
        pytest.param(
            {"eventName": ["INSERT"], 2: ["x"]}, "field names are strings", id="lambda-int"
        ),
        pytest.param({"$or": [{1: ["x"]}, {"zz": ["y"]}]}, "field names are strings", id="or-int"),
        pytest.param(
            [{"event_name": ["INSERT"]}, {"new_image": {"q": [{"exists": 1}]}}],
            r"filter\[1\]\.new_image\.q\[0\]: exists takes true or false",
            id="second-pattern-located",
        ),
    ],
)
def test_malformed_patterns_raise_filter_error_only(pattern: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(pattern)


# --- properties ------------------------------------------------------------------------------
_hashable_or_not = st.one_of(
    st.text(max_size=3),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_keys = st.one_of(
    st.sampled_from(
        ["event_name", "new_image", "eventName", "dynamodb", "NewImage", "N", "S", "$or", "q"]
    ),
    st.sampled_from(["prefix", "numeric", "exists", "anything-but", "wildcard", "suffix"]),
    st.text(max_size=6),
    st.integers(-2, 2),
)
_junk = st.recursive(
    _hashable_or_not,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=12,
)


@given(_junk)
def test_any_input_compiles_or_raises_filter_error(spec: Any) -> None:
    try:
        f = compile_filter(spec)
    except FilterError:
        return
    if f is not None:
        assert f.matches(LINES) in (True, False)


_bad_leaves = st.one_of(
    st.just("INSERT"),  # a leaf must be a list
    st.just([]),
    st.just([{"nope": 1}]),
    st.just([{"prefix": 1}]),
    st.builds(lambda op: [{"numeric": [op, 1]}], st.sampled_from(["~", "==", "!", [">"], 1])),
    st.builds(lambda n: [{"numeric": [">", n]}], st.sampled_from(["1", None, True, [1]])),
    st.just([{"numeric": [">"]}]),
    st.just([{"numeric": [">", 1, ">", 2]}]),
    st.builds(lambda v: [{"exists": v}], st.sampled_from([1, 0, "true", None, []])),
    st.builds(lambda w: [{"wildcard": w}], st.sampled_from(["a**", "**", "x***y"])),
    st.just([{"anything-but": []}]),
    st.just([{"anything-but": {"wildcard": "a*"}}]),
    st.just([{"anything-but": [{"prefix": "a"}]}]),
    st.just([{"prefix": "a", "suffix": "b"}]),
    st.just([["nested"]]),
    st.just([float("nan")]),
)


@given(
    st.sampled_from(["Quantity", "Email"]),
    _bad_leaves,
    st.integers(0, 3),
    st.booleans(),
)
def test_malformed_leaves_anywhere_raise_filter_error(
    name: str, leaf: Any, depth: int, lambda_shape: bool
) -> None:
    inner: Any = leaf
    for _ in range(depth):
        inner = {"Address": inner}
    if lambda_shape:
        pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {name: {"S": inner}}}}
    else:
        pattern = {"event_name": ["INSERT"], "new_image": {name: inner}}
    with pytest.raises(FilterError):
        compile_filter([{"table": ["t"]}, pattern])


def _record(image: dict[str, Any]) -> sk.ChangeRecord:
    return make_record("INSERT", {"pk": "k"}, new={"pk": "k", **image})


def _elements(value: Any) -> list[Any]:
    return sorted(value, key=repr) if isinstance(value, (set, frozenset, list)) else [value]


_flat = st.one_of(sks.scalars(), sks.sets(), st.lists(sks.scalars(), min_size=1, max_size=3))

# "$or" is EventBridge's operator, reserved in patterns: an attribute of that name
# cannot be matched by a field pattern (in Lambda's filters either)
_PATTERN_NAMES = sks.attribute_names().filter(lambda n: n != "$or")


@given(st.dictionaries(_PATTERN_NAMES, _flat, min_size=1, max_size=5))
def test_a_records_own_values_match_and_anything_but_them_does_not(image: dict[str, Any]) -> None:
    record = _record(image)
    exact = {"new_image": {n: [_elements(v)[0]] for n, v in image.items()}}
    assert _matches(exact, record)
    for name, value in image.items():
        elements = _elements(value)
        if any(isinstance(e, bytes) for e in elements):
            continue  # anything-but takes strings and numbers (and here None and bools)
        assert not _matches({"new_image": {name: [{"anything-but": elements}]}}, record)


@given(st.dictionaries(_PATTERN_NAMES, _flat, min_size=1, max_size=5))
def test_lambda_patterns_built_from_the_records_json_match_it(image: dict[str, Any]) -> None:
    record = _record(image)
    new_image = record.to_dynamodb_json()["dynamodb"]["NewImage"]
    for name, typed in new_image.items():
        ((kind, value),) = typed.items()
        if kind in ("L", "M"):
            continue
        elements = value if kind in ("SS", "NS", "BS") else [value]
        pattern = {"dynamodb": {"NewImage": {name: {kind: [elements[0]]}}}}
        assert _matches(pattern, record), pattern
        but = {"dynamodb": {"NewImage": {name: {kind: [{"anything-but": elements}]}}}}
        assert not _matches(but, record), but
