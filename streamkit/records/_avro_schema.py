"""The change-record schema: its text, its parsed form and fingerprint, and the header
that opens every encoded record.

The hand-written encoder (:mod:`._avro_encode`) and decoder (:mod:`._avro_decode`) are
written for one fixed schema; both import their header from here, so the fingerprint
check below guards them: streamkit refuses to import a codec that no longer matches the
``.avsc``.
"""

from __future__ import annotations

import importlib.resources
import json
from typing import Any, Final, cast

import fastavro
import fastavro.schema

from streamkit.records._record import StreamView

__all__ = (
    "FINGERPRINT",
    "MARKER",
    "PARSING_CANONICAL_FORM",
    "SCHEMA",
    "schema_text",
)


def schema_text() -> str:
    """The Avro schema of change records (the ``.avsc`` file shipped in the package)."""
    resource = importlib.resources.files("streamkit.records").joinpath("change_record.avsc")
    return resource.read_text(encoding="utf-8")


SCHEMA: Final[dict[str, Any]] = cast(
    "dict[str, Any]", fastavro.parse_schema(json.loads(schema_text()))
)
"""The schema, parsed by fastavro (pass it to ``fastavro.schemaless_reader``)."""

PARSING_CANONICAL_FORM: Final[str] = fastavro.schema.to_parsing_canonical_form(SCHEMA)
"""The schema's Parsing Canonical Form, the text its fingerprint is taken of."""

FINGERPRINT: Final[bytes] = bytes.fromhex(
    # fastavro gives the CRC-64-AVRO fingerprint as the hex of its little-endian bytes,
    # which is the byte order the single-object encoding wants.
    fastavro.schema.fingerprint(PARSING_CANONICAL_FORM, "CRC-64-AVRO")
)
"""The schema's CRC-64-AVRO fingerprint, 8 bytes little-endian."""

MARKER: Final = b"\xc3\x01"
"""The two bytes that open every Avro single-object encoding."""

# The fingerprint of the schema the encoder and decoder were written for. Editing the .avsc
# in a way that changes the wire format without changing the codec would make streamkit
# write bodies that do not match the fingerprint it puts in front of them: refuse to start
# instead.
_CODEC_FINGERPRINT: Final = bytes.fromhex("7499467ae1e085de")
if FINGERPRINT != _CODEC_FINGERPRINT:  # pragma: no cover - guards future edits
    raise RuntimeError(
        f"change_record.avsc has fingerprint {FINGERPRINT.hex()}, but the hand-written codec "
        f"in {__name__} was written for {_CODEC_FINGERPRINT.hex()}: update the codec"
    )

_HEADER: Final = MARKER + FINGERPRINT
_HEADER_LEN: Final = len(_HEADER)

# The stream view types in the schema's enum order (their index is the encoded symbol).
_VIEWS: Final = tuple(StreamView)
