"""Handler filters: EventBridge patterns on change records, in both record shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamkit as sk
from streamkit.records import UserIdentity
from streamkit.records._record import TTL_IDENTITY
from streamkit.runtime._patterns import FilterError, compile_filter
from streamkit.testing import make_record

ORDER = make_record(
    "INSERT",
    {"OrderID": "o-17"},
    new={
        "OrderID": "o-17",
        "Quantity": 12,
        "Price": Decimal("9.99"),
        "Email": "Ann@Example.com",
        "Tags": {"red", "big"},
        "Lines": [{"sku": "A1", "n": 2}, {"sku": "B7", "n": 1}],
        "Gift": True,
        "Note": None,
        "Address": {"City": "Oslo", "Zip": "0150"},
    },
    table="Orders",
)
MODIFY = make_record(
    "MODIFY",
    {"OrderID": "o-17"},
    old={"OrderID": "o-17", "Status": "new", "Quantity": 1},
    new={"OrderID": "o-17", "Status": "paid", "Quantity": 1},
    table="Orders",
)
REMOVE = sk.ChangeRecord(
    event_id="e1",
    event_name="REMOVE",
    table="Orders",
    keys={"OrderID": "o-1"},
    new_image=None,
    old_image={"OrderID": "o-1", "Quantity": 3},
    changed=None,
    sequence_number=5,
    created_at=ORDER.created_at,
    size_bytes=10,
    view_type=sk.StreamView.NEW_AND_OLD_IMAGES,
    user_identity=TTL_IDENTITY,
)


def _matches(pattern: Any, record: sk.ChangeRecord = ORDER) -> bool:
    f = compile_filter(pattern)
    assert f is not None
    return f.matches(record)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param({"event_name": ["INSERT"]}, True, id="exact-str"),
        pytest.param({"event_name": ["MODIFY", "REMOVE"]}, False, id="exact-none-of"),
        pytest.param({"new_image": {"Quantity": [12]}}, True, id="exact-number"),
        pytest.param({"new_image": {"Quantity": [12.0]}}, True, id="exact-number-spelling"),
        pytest.param({"new_image": {"Quantity": ["12"]}}, False, id="number-is-not-str"),
        pytest.param({"new_image": {"Gift": [True]}}, True, id="exact-bool"),
        pytest.param({"new_image": {"Gift": [1]}}, False, id="bool-is-not-number"),
        pytest.param({"new_image": {"Note": [None]}}, True, id="exact-null"),
        pytest.param({"new_image": {"Email": [{"prefix": "Ann@"}]}}, True, id="prefix"),
        pytest.param({"new_image": {"Email": [{"suffix": ".org"}]}}, False, id="suffix"),
        pytest.param(
            {"new_image": {"Email": [{"equals-ignore-case": "ann@example.COM"}]}},
            True,
            id="equals-ignore-case",
        ),
        pytest.param({"new_image": {"Email": [{"wildcard": "*@Example.*"}]}}, True, id="wildcard"),
        pytest.param({"new_image": {"Quantity": [{"numeric": [">", 10]}]}}, True, id="numeric-gt"),
        pytest.param(
            {"new_image": {"Price": [{"numeric": [">=", 5, "<", 9.99]}]}}, False, id="range-open"
        ),
        pytest.param(
            {"new_image": {"Price": [{"numeric": [">", 5, "<=", 9.99]}]}}, True, id="range-closed"
        ),
        pytest.param({"new_image": {"Email": [{"numeric": [">", 0]}]}}, False, id="numeric-on-str"),
        pytest.param({"new_image": {"Missing": [{"exists": False}]}}, True, id="not-exists"),
        pytest.param({"new_image": {"Email": [{"exists": True}]}}, True, id="exists"),
        pytest.param({"new_image": {"Email": [{"exists": False}]}}, False, id="exists-false"),
        pytest.param({"new_image": {"Missing": ["x"]}}, False, id="missing-field"),
        pytest.param({"new_image": {"Tags": ["red"]}}, True, id="set-any-element"),
        pytest.param({"new_image": {"Tags": ["blue"]}}, False, id="set-no-element"),
        pytest.param({"new_image": {"Lines": {"sku": ["B7"]}}}, True, id="list-of-maps"),
        pytest.param({"new_image": {"Address": {"City": ["Oslo"]}}}, True, id="nested"),
        pytest.param({"new_image": {"Address": {"City": ["Bergen"]}}}, False, id="nested-miss"),
        pytest.param(
            {"new_image": {"Email": [{"anything-but": ["x@y.z"]}]}}, True, id="anything-but"
        ),
        pytest.param(
            {"new_image": {"Quantity": [{"anything-but": 12}]}}, False, id="anything-but-number"
        ),
        pytest.param(
            {"new_image": {"Email": [{"anything-but": {"prefix": "Ann"}}]}},
            False,
            id="anything-but-prefix",
        ),
        pytest.param({"new_image": {"Missing": [{"anything-but": "x"}]}}, False, id="ab-missing"),
        pytest.param(
            {"$or": [{"event_name": ["MODIFY"]}, {"new_image": {"Gift": [True]}}]}, True, id="$or"
        ),
        pytest.param(
            [{"event_name": ["MODIFY"]}, {"table": ["Orders"], "event_name": ["INSERT"]}],
            True,
            id="list-is-or",
        ),
        pytest.param({"keys": {"OrderID": [{"prefix": "o-"}]}}, True, id="keys"),
        pytest.param({"old_image": {"OrderID": [{"exists": True}]}}, False, id="no-old-image"),
        # Lambda's record shape
        pytest.param({"eventName": ["INSERT"]}, True, id="lambda-eventName"),
        pytest.param(
            {"dynamodb": {"NewImage": {"Quantity": {"N": [{"numeric": [">", 10]}]}}}},
            True,
            id="lambda-numeric-on-N",
        ),
        pytest.param(
            {"dynamodb": {"NewImage": {"Quantity": {"N": ["12"]}}}}, True, id="lambda-exact-N"
        ),
        pytest.param(
            {"dynamodb": {"Keys": {"OrderID": {"S": [{"prefix": "o-"}]}}}}, True, id="lambda-keys"
        ),
        pytest.param(
            {"dynamodb": {"NewImage": {"Gift": {"BOOL": [False]}}}}, False, id="lambda-bool"
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"Quantity": [{"exists": False}]}}},
            True,
            id="lambda-exists",
        ),
        pytest.param({"eventSource": ["aws:dynamodb"]}, True, id="lambda-eventSource"),
    ],
)
def test_operators(pattern: Any, expected: bool) -> None:
    assert _matches(pattern) is expected


def test_modify_changed_and_remove_records() -> None:
    assert _matches({"changed": ["Status"]}, MODIFY)
    assert not _matches({"changed": ["Quantity"]}, MODIFY)
    assert _matches({"new_image": {"Status": [{"exists": False}]}}, REMOVE)
    assert _matches({"user_identity": {"principal": ["streamkit.ttl"]}}, REMOVE)
    assert _matches({"userIdentity": {"type": ["Service"]}}, REMOVE)
    assert not _matches({"user_identity": {"type": ["Service"]}}, ORDER)
    ident = UserIdentity("User", "alice")
    assert ident.type == "User"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        pytest.param({"event_name": "INSERT"}, "must be a list", id="leaf-not-list"),
        pytest.param({"event_name": []}, "empty list", id="empty-list"),
        pytest.param(
            {"new_image": {"q": [{"numeric": ["~", 1]}]}}, "numeric operator", id="num-op"
        ),
        pytest.param({"new_image": {"q": [{"numeric": [">"]}]}}, "one or two", id="num-arity"),
        pytest.param({"new_image": {"q": [{"numeric": [">", "x"]}]}}, "not a number", id="num-x"),
        pytest.param(
            {"new_image": {"q": [{"numeric": [">", 1, ">", 2]}]}}, "lower and one upper", id="rng"
        ),
        pytest.param({"new_image": {"q": [{"exists": "yes"}]}}, "true or false", id="exists"),
        pytest.param({"new_image": {"q": [{"prefix": 1}]}}, "takes a string", id="prefix"),
        pytest.param({"new_image": {"q": [{"wildcard": "a**b"}]}}, "consecutive", id="wildcard"),
        pytest.param({"new_image": {"q": [{"nope": 1}]}}, "unknown operator", id="operator"),
        pytest.param({"new_image": {"q": [{"a": 1, "b": 2}]}}, "exactly one key", id="two-keys"),
        pytest.param({"new_image": {"q": [{"anything-but": []}]}}, "at least one", id="ab-empty"),
        pytest.param(
            {"new_image": {"q": [{"anything-but": {"wildcard": "x"}}]}}, "not 'wildcard'", id="ab"
        ),
        pytest.param({"newimage": {"q": [1]}}, "unknown record field", id="unknown-field"),
        pytest.param({"eventName": ["INSERT"], "new_image": {}}, "mixes", id="mixed-shapes"),
        pytest.param({"$or": [{"event_name": ["INSERT"]}]}, "at least two", id="or-one"),
        pytest.param("INSERT", r"pattern \(dict\)", id="not-a-pattern"),
        pytest.param({"event_name": [[1]]}, "not a value", id="nested-list"),
        pytest.param({"new_image": {}}, "empty pattern", id="empty-object"),
    ],
)
def test_malformed_patterns_are_rejected_with_a_location(pattern: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(pattern)


def test_deep_nesting_is_refused() -> None:
    pattern: dict[str, Any] = {"x": ["v"]}
    for _ in range(15):
        pattern = {"x": pattern}
    with pytest.raises(FilterError, match="nest at most"):
        compile_filter({"new_image": pattern})


# --- properties ------------------------------------------------------------------------------
scalars = st.one_of(
    st.text(max_size=8),
    st.integers(-(10**6), 10**6),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-1000, max_value=1000),
    st.booleans(),
    st.none(),
)
operators = st.one_of(
    scalars,
    st.builds(lambda s: {"prefix": s}, st.text(max_size=4)),
    st.builds(lambda s: {"suffix": s}, st.text(max_size=4)),
    st.builds(lambda s: {"equals-ignore-case": s}, st.text(max_size=4)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(lambda n: {"numeric": [">", n]}, st.integers(-100, 100)),
    st.builds(
        lambda a, b: {"numeric": [">=", a, "<", a + b]}, st.integers(-100, 100), st.integers(1, 50)
    ),
    st.builds(lambda v: {"anything-but": v}, st.lists(st.text(max_size=4), min_size=1, max_size=3)),
)
leaves = st.lists(operators, min_size=1, max_size=3)
names = st.sampled_from(["a", "b", "Quantity", "Email", "Tags"])
image_patterns = st.recursive(
    st.dictionaries(names, leaves, min_size=1, max_size=3),
    lambda inner: st.dictionaries(names, st.one_of(leaves, inner), min_size=1, max_size=3),
    max_leaves=6,
)
patterns = st.fixed_dictionaries(
    {},
    optional={
        "event_name": st.lists(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]), min_size=1),
        "new_image": image_patterns,
        "old_image": image_patterns,
        "keys": image_patterns,
    },
).filter(bool)
values = st.recursive(
    scalars.filter(lambda v: not isinstance(v, float)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=6,
)
images = st.dictionaries(names, values, max_size=4)


def _record(event: str, image: dict[str, Any]) -> sk.ChangeRecord:
    item = {"k": "1", **image}
    if event == "REMOVE":
        return make_record(event, {"k": "1"}, old=item)
    if event == "MODIFY":
        return make_record(event, {"k": "1"}, old={"k": "1"}, new=item)
    return make_record(event, {"k": "1"}, new=item)


@given(patterns, st.sampled_from(["INSERT", "MODIFY", "REMOVE"]), images)
def test_valid_patterns_compile_and_never_raise_when_matching(
    pattern: dict[str, Any], event: str, image: dict[str, Any]
) -> None:
    f = compile_filter(pattern)
    assert f is not None
    assert f.matches(_record(event, image)) in (True, False)


@given(
    st.recursive(
        st.one_of(scalars, st.text(), st.lists(scalars, max_size=2)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=12), inner, max_size=3),
        ),
        max_leaves=8,
    )
)
def test_arbitrary_input_either_compiles_or_raises_filter_error(spec: Any) -> None:
    try:
        f = compile_filter(spec)
    except FilterError:
        return
    if f is not None:
        f.matches(ORDER)


flat_values = st.one_of(
    st.text(min_size=1, max_size=8),
    st.integers(-1000, 1000),
    st.booleans(),
)


@given(st.dictionaries(names, flat_values, min_size=1, max_size=4))
def test_a_records_own_values_match_and_anything_but_them_does_not(image: dict[str, Any]) -> None:
    record = _record("INSERT", image)
    exact = {"new_image": {name: [value] for name, value in image.items()}}
    assert _matches(exact, record)
    name, value = next(iter(image.items()))
    assert not _matches({"new_image": {name: [{"anything-but": [value]}]}}, record)
    lambda_type = "BOOL" if isinstance(value, bool) else "N" if isinstance(value, int) else "S"
    lambda_value = value if isinstance(value, bool) else str(value)
    lam = {"dynamodb": {"NewImage": {name: {lambda_type: [lambda_value]}}}}
    assert _matches(lam, record)
