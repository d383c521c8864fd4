"""How DynamoDB shows operands in its expression error messages."""

from __future__ import annotations

import base64
from typing import Any, Final

from streamkit.records._values import type_of

__all__ = ("ANY_TYPE", "shown_value")

# the type DynamoDB's parser gives a document path, whose value may be of any type
ANY_TYPE: Final = (
    "S,SS,N,NS,B,BS,BOOL,NULL,L,M,HD,DOUBLE,FLOAT,HDS,FS,DOUBLESET,DICT,DECIMAL,INT,"
    "DECIMALSET,INTSET"
)


def shown_value(value: Any) -> str:
    """A string, number or binary operand as DynamoDB prints it: ``AttributeValue: {N:1}``
    (a binary in base64)."""
    tag = type_of(value)
    text = base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)
    return f"AttributeValue: {{{tag}:{text}}}"
