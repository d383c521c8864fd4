"""Change records: ChangeRecord, StreamView, the item value model, and the Avro codec.

Records are plain data; this package knows nothing of storage, logs or handlers.
The Avro schema ships beside this file as ``change_record.avsc``
(:func:`schema_text`); :mod:`._avro` encodes and decodes it by hand for speed.
"""

from __future__ import annotations

from streamkit.records._avro import (
    FINGERPRINT,
    MARKER,
    PARSING_CANONICAL_FORM,
    SCHEMA,
    decode_image,
    decode_record,
    encode_change_record,
    encode_image,
    encode_record,
    schema_text,
)
from streamkit.records._record import (
    DEFAULT_REGION,
    EVENT_NAMES,
    TTL_IDENTITY,
    ChangeRecord,
    EventName,
    Image,
    StreamView,
    UserIdentity,
    changed_attributes,
)
from streamkit.records._values import (
    MAX_ITEM_BYTES,
    Item,
    Value,
    canonical_number,
    from_dynamodb_json,
    item_from_dynamodb_json,
    item_size,
    item_to_dynamodb_json,
    items_equal,
    normalize_item,
    normalize_value,
    significant_digits,
    to_dynamodb_json,
    type_of,
    value_size,
    values_equal,
)

__all__ = (
    "DEFAULT_REGION",
    "EVENT_NAMES",
    "FINGERPRINT",
    "MARKER",
    "MAX_ITEM_BYTES",
    "PARSING_CANONICAL_FORM",
    "SCHEMA",
    "TTL_IDENTITY",
    "ChangeRecord",
    "EventName",
    "Image",
    "Item",
    "StreamView",
    "UserIdentity",
    "Value",
    "canonical_number",
    "changed_attributes",
    "decode_image",
    "decode_record",
    "encode_change_record",
    "encode_image",
    "encode_record",
    "from_dynamodb_json",
    "item_from_dynamodb_json",
    "item_size",
    "item_to_dynamodb_json",
    "items_equal",
    "normalize_item",
    "normalize_value",
    "schema_text",
    "significant_digits",
    "to_dynamodb_json",
    "type_of",
    "value_size",
    "values_equal",
)
