"""Key encodings: order bytes sort exactly as DynamoDB sorts sort keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamkit.exceptions import ValidationError
from streamkit.records._values import normalize_value
from streamkit.storage._keys import KeyAttribute, KeySchema, message_key, order_bytes

numbers = st.builds(
    lambda sign, digits, exp: Decimal((sign, tuple(digits), exp - len(digits) + 1)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=38).filter(lambda d: d[0] != 0),
    st.integers(-130, 125),
) | st.just(Decimal(0))


@given(numbers, numbers)
def test_number_order_bytes_sort_numerically(a: Decimal, b: Decimal) -> None:
    na, nb = normalize_value(a), normalize_value(b)
    ea, eb = order_bytes(na), order_bytes(nb)
    assert (ea < eb) == (na < nb)
    assert (ea == eb) == (na == nb)


@given(st.text(), st.text())
def test_string_order_is_utf8_byte_order(a: str, b: str) -> None:
    assert (order_bytes(a) < order_bytes(b)) == (a.encode() < b.encode())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            ["-10", "-9.5", "-1", "0", "0.001", "1", "1.5", "10", "1E+20"], None, id="mixed"
        ),
        pytest.param(["-1.23", "-1.2", "-1"], None, id="negative-prefixes"),
    ],
)
def test_number_order_examples(values: list[str], expected: None) -> None:
    encoded = [order_bytes(normalize_value(Decimal(v))) for v in values]
    assert encoded == sorted(encoded)


def test_equal_numbers_encode_equally() -> None:
    assert order_bytes(normalize_value(Decimal("1.0"))) == order_bytes(normalize_value(1))
    assert message_key(normalize_value(Decimal("100"))) == b"100"


def test_key_schema_rejects_wrong_type_and_empty() -> None:
    schema = KeySchema(KeyAttribute("id", "S"), KeyAttribute("n", "N"))
    with pytest.raises(ValidationError, match="must be of type N"):
        schema.normalize_key({"id": "a", "n": "1"})
    with pytest.raises(ValidationError, match="must not be empty"):
        schema.normalize_key({"id": "", "n": 1})
    with pytest.raises(ValidationError, match="missing attribute 'n'"):
        schema.normalize_key({"id": "a"})
    with pytest.raises(ValidationError, match="not part of the table's key"):
        schema.normalize_key({"id": "a", "n": 1, "x": 2})
    assert schema.normalize_key({"id": "a", "n": 1.0}) == {"id": "a", "n": Decimal(1)}


@given(st.text(max_size=600), st.text(max_size=300))
def test_parse_key_fast_path_agrees_with_the_general_path(p: str, s: str) -> None:
    schema = KeySchema(KeyAttribute("p", "S"), KeyAttribute("s", "S"))
    key = {"p": p, "s": s}
    try:
        general = (schema.normalize_key(key), *schema.extract(schema.normalize_key(key)))
    except ValidationError:
        with pytest.raises(ValidationError):
            schema.parse_key(key)
        return
    assert schema.parse_key(key) == general


@given(st.one_of(st.text(min_size=1), st.binary(min_size=1)))
def test_a_string_or_binary_partition_keys_stored_bytes_are_its_message_key(value: Any) -> None:
    # a snapshot start picks each item's log partition from its stored key bytes,
    # without decoding the item, for S and B partition keys (runtime/_snapshot.py)
    try:
        stored = order_bytes(value)
    except ValidationError:
        return  # not valid Unicode: not a key value at all
    assert stored == message_key(value)
