"""JSON in and out for the command line: plain JSON, or DynamoDB JSON for exact types."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from streamkit.exceptions import ValidationError
from streamkit.records._values import item_from_dynamodb_json, item_to_dynamodb_json, normalize_item

__all__ = ("dumps", "parse_item", "render_item")


def parse_item(text: str, *, dynamodb_json: bool) -> dict[str, Any]:
    """Parse an item (or key) given on the command line.

    Plain JSON numbers become exact decimals; DynamoDB JSON (``{"Name": {"S": "x"}}``)
    can say every type (sets, binary).
    """
    try:
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as e:
        raise ValidationError(f"not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValidationError("an item must be a JSON object")
    return item_from_dynamodb_json(data) if dynamodb_json else normalize_item(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_plain(v) for v in sorted(value)]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            # exact: integers as ints; other decimals through float only when lossless
            if o == o.to_integral_value():
                return int(o)
            f = float(o)
            return f if Decimal(repr(f)) == o else str(o)
        return super().default(o)


def render_item(item: dict[str, Any], *, dynamodb_json: bool) -> Any:
    """An item as JSON-ready data."""
    return item_to_dynamodb_json(item) if dynamodb_json else _plain(item)


def dumps(data: Any, *, indent: int | None = None) -> str:
    """JSON text of data that may hold Decimals."""
    return json.dumps(data, cls=_Encoder, indent=indent, ensure_ascii=False)
