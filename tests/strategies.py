"""Hypothesis strategies for normalized item values, shared by the test suites.

Every strategy here produces *normalized* values, exactly as
``streamkit.records.normalize_value`` would return them: ``str``, canonical
``Decimal``, ``bytes``, ``bool``, ``None``, ``list``, ``dict`` and non-empty
``set`` of str / Decimal / bytes. Sizes are bounded so that an item stays far
below DynamoDB's 400 KB and nesting below its 32 levels.

Use ``items()`` for whole items and ``values()`` for single attribute values;
the smaller strategies are there to build key attributes and the like.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from streamkit.records import canonical_number

__all__ = (
    "attribute_names",
    "binaries",
    "binary_sets",
    "items",
    "key_values",
    "number_sets",
    "numbers",
    "scalars",
    "sets",
    "string_sets",
    "strings",
    "values",
)

# DynamoDB's number limits: 38 significant digits, magnitudes from 1E-130 to 9.99..E+125.
_MAX_DIGITS = 38
_MIN_ADJUSTED = -130
_MAX_ADJUSTED = 125


def strings(*, min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    """Unicode text (any plane, no lone surrogates, which UTF-8 cannot hold), short."""
    return st.text(min_size=min_size, max_size=max_size)


def attribute_names(*, max_size: int = 12) -> st.SearchStrategy[str]:
    """Non-empty attribute names: mostly ASCII identifiers, some arbitrary Unicode."""
    return st.one_of(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True),
        st.text(min_size=1, max_size=max_size),
    )


@st.composite
def _wide_numbers(draw: st.DrawFn) -> Decimal:
    """Any number DynamoDB can hold: 1 to 38 digits, anywhere in the exponent range."""
    ndigits = draw(st.integers(1, _MAX_DIGITS))
    first = draw(st.integers(1, 9))
    rest = draw(st.lists(st.integers(0, 9), min_size=ndigits - 1, max_size=ndigits - 1))
    adjusted = draw(
        st.one_of(
            st.integers(_MIN_ADJUSTED, _MAX_ADJUSTED),
            st.sampled_from([_MIN_ADJUSTED, _MAX_ADJUSTED, -7, -6, -1, 0, 37, 38]),
        )
    )
    sign = draw(st.integers(0, 1))
    digits = (first, *rest)
    return canonical_number(Decimal((sign, digits, adjusted - ndigits + 1)))


_EDGE_NUMBERS = tuple(
    canonical_number(Decimal(text))
    for text in (
        "0",
        "1",
        "-1",
        "0.5",
        "1E-130",
        "-1E-130",
        "9.9999999999999999999999999999999999999E+125",
        "-9.9999999999999999999999999999999999999E+125",
        "99999999999999999999999999999999999999",
        "0.00000000000000000000000000000000000001",
        "1234567.890",
        "1E+100",
        "0.000001",
        "0.0000001",
    )
)


def numbers() -> st.SearchStrategy[Decimal]:
    """Canonical Decimals: everyday integers and prices, the extremes, and anything between."""
    return st.one_of(
        st.integers(-(10**9), 10**9).map(Decimal),
        st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False).map(
            canonical_number
        ),
        st.sampled_from(_EDGE_NUMBERS),
        _wide_numbers(),
    )


def binaries(*, max_size: int = 24) -> st.SearchStrategy[bytes]:
    """Byte strings, empty included (DynamoDB allows empty binary values outside keys)."""
    return st.binary(max_size=max_size)


def string_sets(*, max_size: int = 5) -> st.SearchStrategy[set[str]]:
    """Non-empty sets of strings (SS)."""
    return st.sets(strings(), min_size=1, max_size=max_size)


def number_sets(*, max_size: int = 5) -> st.SearchStrategy[set[Decimal]]:
    """Non-empty sets of canonical numbers (NS)."""
    return st.sets(numbers(), min_size=1, max_size=max_size)


def binary_sets(*, max_size: int = 5) -> st.SearchStrategy[set[bytes]]:
    """Non-empty sets of byte strings (BS)."""
    return st.sets(binaries(), min_size=1, max_size=max_size)


def sets() -> st.SearchStrategy[set[Any]]:
    """Any of the three set types."""
    return st.one_of(string_sets(), number_sets(), binary_sets())


def scalars() -> st.SearchStrategy[Any]:
    """One non-container value: S, N, B, BOOL or NULL."""
    return st.one_of(strings(), numbers(), binaries(), st.booleans(), st.none())


def key_values(key_type: str = "S") -> st.SearchStrategy[Any]:
    """Values a key attribute of type "S", "N" or "B" may take (non-empty strings and bytes)."""
    if key_type == "S":
        return strings(min_size=1)
    if key_type == "N":
        return numbers()
    if key_type == "B":
        return st.binary(min_size=1, max_size=24)
    raise ValueError(f"key types are S, N and B, not {key_type!r}")


def values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any normalized value of any of the ten types, lists and maps nested (empty ones too)."""
    return st.recursive(
        st.one_of(scalars(), sets()),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(attribute_names(), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def items(
    *, min_size: int = 0, max_size: int = 8, max_leaves: int = 12
) -> st.SearchStrategy[dict[str, Any]]:
    """Whole normalized items: attribute name to value, every type, nested."""
    return st.dictionaries(
        attribute_names(), values(max_leaves=max_leaves), min_size=min_size, max_size=max_size
    )
