"""ChangeRecord, StreamView and UserIdentity: the change records handlers receive.

A ChangeRecord is plain, immutable data. Its images are read-only mappings of
normalized values (see :mod:`streamkit.records._values`), so a handler that
changes what it was given cannot corrupt a retry of the same record or another
consumer's view of it; ``dict(record.new_image)`` gives a copy to change.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from streamkit.exceptions import ValidationError
from streamkit.records._values import (
    from_dynamodb_json,
    item_from_dynamodb_json,
    normalize_item,
    to_dynamodb_json,
    values_equal,
)

__all__ = (
    "DEFAULT_REGION",
    "EVENT_NAMES",
    "TTL_IDENTITY",
    "ChangeRecord",
    "EventName",
    "Image",
    "StreamView",
    "UserIdentity",
    "changed_attributes",
)

EventName = Literal["INSERT", "MODIFY", "REMOVE", "SNAPSHOT"]
"""The kinds of change; SNAPSHOT only reaches handlers backfilling from a snapshot."""

EVENT_NAMES: Final[tuple[EventName, ...]] = get_args(EventName)

Image = Mapping[str, Any]
"""A read-only item image: attribute name to normalized value."""

DEFAULT_REGION: Final = "local"
"""The ``awsRegion`` that :meth:`ChangeRecord.to_dynamodb_json` gives a record with no origin."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_AWS_TTL_PRINCIPAL: Final = "dynamodb.amazonaws.com"


class StreamView(enum.StrEnum):
    """Which item images a table's change records carry (DynamoDB's StreamViewType)."""

    KEYS_ONLY = "KEYS_ONLY"
    """Only the key attributes of the changed item."""
    NEW_IMAGE = "NEW_IMAGE"
    """The item as it is after the change."""
    OLD_IMAGE = "OLD_IMAGE"
    """The item as it was before the change."""
    NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"
    """Both images."""

    @property
    def has_new_image(self) -> bool:
        """Whether records of this view type carry the new image."""
        return self is StreamView.NEW_IMAGE or self is StreamView.NEW_AND_OLD_IMAGES

    @property
    def has_old_image(self) -> bool:
        """Whether records of this view type carry the old image."""
        return self is StreamView.OLD_IMAGE or self is StreamView.NEW_AND_OLD_IMAGES


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """Who made a change that no user call made (DynamoDB's ``userIdentity``).

    Attributes:
        type: the kind of identity, "Service" for streamkit's own services.
        principal: which one, such as "streamkit.ttl".
    """

    type: str
    principal: str

    def to_dynamodb_json(self) -> dict[str, str]:
        """The identity as DynamoDB Streams shows it.

        The TTL sweeper's identity becomes DynamoDB's own
        (``{"type": "Service", "principalId": "dynamodb.amazonaws.com"}``) so that
        Lambda code that recognises TTL deletions keeps working.
        """
        if self == TTL_IDENTITY:
            return {"type": "Service", "principalId": _AWS_TTL_PRINCIPAL}
        return {"type": self.type, "principalId": self.principal}

    @classmethod
    def from_dynamodb_json(cls, data: Mapping[str, Any]) -> UserIdentity:
        """Parse ``{"type": ..., "principalId": ...}``; DynamoDB's TTL identity becomes ours."""
        try:
            type_ = data["type"]
            principal = data["principalId"]
        except (KeyError, TypeError):
            raise ValidationError(
                f"userIdentity must have type and principalId, got {data!r}"
            ) from None
        if not isinstance(type_, str) or not isinstance(principal, str):
            raise ValidationError(f"userIdentity fields must be strings, got {data!r}")
        if type_ == "Service" and principal in (_AWS_TTL_PRINCIPAL, TTL_IDENTITY.principal):
            return TTL_IDENTITY
        return cls(type_, principal)


TTL_IDENTITY: Final = UserIdentity(type="Service", principal="streamkit.ttl")
"""The identity on REMOVE records of items deleted by the TTL sweeper."""


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One committed change to one item, as DynamoDB Streams describes it.

    Records are immutable. ``keys``, ``new_image`` and ``old_image`` are
    read-only mappings of normalized values (``str``, canonical ``Decimal``,
    ``bytes``, ``bool``, ``None``, ``list``, ``dict``, ``set``); copy one with
    ``dict(record.new_image)`` to change it. Constructing a record normalizes
    the images it is given (``42`` becomes ``Decimal("42")``).

    Attributes:
        event_id: a unique id of this change.
        event_name: "INSERT", "MODIFY", "REMOVE", or "SNAPSHOT" (backfill only).
        table: the table's name.
        keys: the item's key attributes.
        new_image: the item after the change, when the view type carries it.
        old_image: the item before the change, when the view type carries it.
        changed: for MODIFY, the names of the top-level attributes that were
            added, removed or changed, sorted; None for other events.
        sequence_number: strictly increasing per table, in commit order.
        created_at: the commit time, UTC, millisecond precision.
        size_bytes: the size of keys and images in DynamoDB's accounting.
        view_type: the table's stream view type when the change was made.
        user_identity: set for changes streamkit made itself (TTL deletions).
        origin: the region that made the write (global tables), else None; also
            readable as ``origin_region``.
    """

    event_id: str
    event_name: EventName
    table: str
    keys: Image
    new_image: Image | None
    old_image: Image | None
    changed: tuple[str, ...] | None
    sequence_number: int
    created_at: datetime
    size_bytes: int
    view_type: StreamView
    user_identity: UserIdentity | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        # Records built by users (tests, SNAPSHOT backfills) get the same guarantees as
        # decoded ones: read-only images of normalized values, a StreamView, an aware UTC
        # millisecond time.
        # The Avro decoder builds records through _trusted_record() and skips this.
        setter = object.__setattr__
        if self.event_name not in EVENT_NAMES:
            raise ValidationError(
                f"event_name must be one of {', '.join(EVENT_NAMES)}, got {self.event_name!r}"
            )
        try:
            setter(self, "view_type", StreamView(self.view_type))
        except ValueError:
            raise ValidationError(
                f"view_type must be a StreamView, got {self.view_type!r}"
            ) from None
        setter(self, "keys", _read_only(self.keys, "keys"))
        if self.new_image is not None:
            setter(self, "new_image", _read_only(self.new_image, "new_image"))
        if self.old_image is not None:
            setter(self, "old_image", _read_only(self.old_image, "old_image"))
        if self.changed is not None:
            if isinstance(self.changed, str):
                raise ValidationError("changed must be a collection of names, not a str")
            setter(self, "changed", tuple(sorted(self.changed)))
        setter(self, "created_at", _utc_millis(self.created_at))
        if type(self.sequence_number) is not int or self.sequence_number < 0:
            raise ValidationError(
                f"sequence_number must be a non-negative int, got {self.sequence_number!r}"
            )

    def __hash__(self) -> int:
        return hash((self.table, self.sequence_number, self.event_id))

    def __reduce__(self) -> tuple[Any, ...]:
        # mappingproxy cannot be pickled or deep-copied; rebuild from plain dicts.
        return (
            ChangeRecord,
            (
                self.event_id,
                self.event_name,
                self.table,
                dict(self.keys),
                None if self.new_image is None else dict(self.new_image),
                None if self.old_image is None else dict(self.old_image),
                self.changed,
                self.sequence_number,
                self.created_at,
                self.size_bytes,
                self.view_type,
                self.user_identity,
                self.origin,
            ),
        )

    @property
    def origin_region(self) -> str | None:
        """The region where the write happened (global tables; the same as ``origin``).

        In a region's stream, a change replicated from another region names that
        region; a local write names this one."""
        return self.origin

    @property
    def created_at_ms(self) -> int:
        """``created_at`` as milliseconds since the Unix epoch."""
        return (self.created_at - _EPOCH) // _MS

    def to_dynamodb_json(self, *, region: str | None = None) -> dict[str, Any]:
        """The record in DynamoDB Streams' shape, as Lambda hands it to a function.

        ``{"eventID", "eventName", "eventVersion": "1.1", "eventSource":
        "aws:dynamodb", "awsRegion", "dynamodb": {"ApproximateCreationDateTime",
        "Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes",
        "StreamViewType"}, "userIdentity"}``, with attribute values in DynamoDB
        JSON (bytes as base64 text). Only the images the view type includes are
        given; ``userIdentity`` only for changes such as TTL deletions.
        ``ApproximateCreationDateTime`` is whole epoch seconds, rounded down, as
        DynamoDB Streams gives it.

        Args:
            region: the ``awsRegion`` to show; defaults to ``origin``, else "local".
        """
        stream: dict[str, Any] = {
            "ApproximateCreationDateTime": self.created_at_ms // 1000,
            "Keys": _image_json(self.keys),
        }
        view = self.view_type
        if self.new_image is not None and view.has_new_image:
            stream["NewImage"] = _image_json(self.new_image)
        if self.old_image is not None and view.has_old_image:
            stream["OldImage"] = _image_json(self.old_image)
        stream["SequenceNumber"] = str(self.sequence_number)
        stream["SizeBytes"] = self.size_bytes
        stream["StreamViewType"] = view.value
        out: dict[str, Any] = {
            "eventID": self.event_id,
            "eventName": self.event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": region or self.origin or DEFAULT_REGION,
            "dynamodb": stream,
        }
        if self.user_identity is not None:
            out["userIdentity"] = self.user_identity.to_dynamodb_json()
        return out

    @classmethod
    def from_dynamodb_json(
        cls, data: Mapping[str, Any], *, table: str | None = None
    ) -> ChangeRecord:
        """Parse a DynamoDB Streams record (as Lambda or GetRecords gives it).

        Args:
            data: one record: ``{"eventID", "eventName", "dynamodb": {...}, ...}``.
            table: the table's name; when omitted it is read from
                ``eventSourceARN`` (``arn:aws:dynamodb:...:table/NAME/stream/...``).

        The creation time has the precision the record gives (whole seconds
        from DynamoDB); ``changed`` is worked out from the two images of a
        MODIFY when both are there; an ``awsRegion`` of "local" means no origin.

        Raises:
            ValidationError: when ``data`` is not such a record.
        """
        if not isinstance(data, Mapping):
            raise ValidationError("a DynamoDB Streams record must be an object")
        stream = data.get("dynamodb")
        if not isinstance(stream, Mapping):
            raise ValidationError("the record has no 'dynamodb' object")
        if table is None:
            table = _table_from_arn(data.get("eventSourceARN"))
        event_name = data.get("eventName")
        if event_name not in EVENT_NAMES:
            raise ValidationError(f"unknown eventName {event_name!r}")
        event_id = data.get("eventID")
        if not isinstance(event_id, str):
            raise ValidationError("eventID must be a string")
        keys = item_from_dynamodb_json(stream.get("Keys"))
        new_image = _image_from_json(stream.get("NewImage"))
        old_image = _image_from_json(stream.get("OldImage"))
        changed: tuple[str, ...] | None = None
        if event_name == "MODIFY" and new_image is not None and old_image is not None:
            changed = changed_attributes(old_image, new_image)
        seq_text = stream.get("SequenceNumber")
        if not isinstance(seq_text, str) or not seq_text.isdigit():
            raise ValidationError(f"SequenceNumber must be a string of digits, got {seq_text!r}")
        size = stream.get("SizeBytes", 0)
        if type(size) is not int:
            raise ValidationError(f"SizeBytes must be an integer, got {size!r}")
        when = stream.get("ApproximateCreationDateTime", 0)
        if isinstance(when, bool) or not isinstance(when, (int, float)):
            raise ValidationError(f"ApproximateCreationDateTime must be a number, got {when!r}")
        created_at = _EPOCH + timedelta(milliseconds=round(when * 1000))
        view_text = stream.get("StreamViewType")
        if view_text is None:
            view = _infer_view(new_image is not None, old_image is not None)
        else:
            try:
                view = StreamView(view_text)
            except ValueError:
                raise ValidationError(f"unknown StreamViewType {view_text!r}") from None
        identity_json = data.get("userIdentity")
        identity = None if identity_json is None else UserIdentity.from_dynamodb_json(identity_json)
        region = data.get("awsRegion")
        origin = region if isinstance(region, str) and region != DEFAULT_REGION else None
        return cls(
            event_id=event_id,
            event_name=event_name,
            table=table,
            keys=keys,
            new_image=new_image,
            old_image=old_image,
            changed=changed,
            sequence_number=int(seq_text),
            created_at=created_at,
            size_bytes=size,
            view_type=view,
            user_identity=identity,
            origin=origin,
        )


_FIELDS: Final = tuple(ChangeRecord.__dataclass_fields__)

# The slots' own setters: the fastest way to fill a frozen record (see _trusted_record).
(
    _set_event_id,
    _set_event_name,
    _set_table,
    _set_keys,
    _set_new_image,
    _set_old_image,
    _set_changed,
    _set_sequence_number,
    _set_created_at,
    _set_size_bytes,
    _set_view_type,
    _set_user_identity,
    _set_origin,
) = (getattr(ChangeRecord, name).__set__ for name in _FIELDS)
_new_record = object.__new__


def _trusted_record(
    event_id: str,
    event_name: EventName,
    table: str,
    keys: Image,
    new_image: Image | None,
    old_image: Image | None,
    changed: tuple[str, ...] | None,
    sequence_number: int,
    created_at: datetime,
    size_bytes: int,
    view_type: StreamView,
    user_identity: UserIdentity | None,
    origin: str | None,
) -> ChangeRecord:
    """Build a record from fields already in final form, skipping the checks (the decoder).

    A third of the cost of the dataclass constructor, which matters on the consumer's
    hot path: read-only images, a StreamView, and an aware UTC millisecond datetime.
    """
    self = _new_record(ChangeRecord)
    _set_event_id(self, event_id)
    _set_event_name(self, event_name)
    _set_table(self, table)
    _set_keys(self, keys)
    _set_new_image(self, new_image)
    _set_old_image(self, old_image)
    _set_changed(self, changed)
    _set_sequence_number(self, sequence_number)
    _set_created_at(self, created_at)
    _set_size_bytes(self, size_bytes)
    _set_view_type(self, view_type)
    _set_user_identity(self, user_identity)
    _set_origin(self, origin)
    return self


# Until 2^32 seconds (the year 2106) a millisecond count divided by 1000 is within 0.12 us
# of the exact time, so fromtimestamp's rounding to microseconds gives it exactly, and
# three times faster than adding a timedelta.
_FAST_MS_LIMIT: Final = (1 << 32) * 1000


def datetime_from_ms(ms: int) -> datetime:
    """The aware UTC datetime of a count of milliseconds since the Unix epoch."""
    if 0 <= ms < _FAST_MS_LIMIT:
        return datetime.fromtimestamp(ms / 1000, UTC)
    return _EPOCH + timedelta(milliseconds=ms)


def changed_attributes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """The sorted names of the top-level attributes added, removed or changed from old to new.

    "Changed" is semantic: map order and number spelling do not count.
    """
    names = [k for k, v in new.items() if k not in old or not values_equal(old[k], v)]
    names.extend(k for k in old if k not in new)
    return tuple(sorted(names))


def _read_only(image: Any, what: str) -> Image:
    if type(image) is MappingProxyType:
        return image
    if not isinstance(image, Mapping):
        raise ValidationError(f"{what} must be a mapping, got {type(image).__name__}")
    # A normalized copy: values as decoded records have them (42 -> Decimal("42")), and
    # the caller's dict cannot change the record behind its back.
    return MappingProxyType(normalize_item(image))


def _utc_millis(when: Any) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise ValidationError(f"created_at must be a timezone-aware datetime, got {when!r}")
    utc: datetime = when if when.tzinfo is UTC else when.astimezone(UTC)
    if utc.microsecond % 1000:
        utc = utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    return utc


def _image_json(image: Image) -> dict[str, Any]:
    return {k: to_dynamodb_json(v) for k, v in image.items()}


def _image_from_json(image: Any) -> dict[str, Any] | None:
    if image is None:
        return None
    if not isinstance(image, Mapping):
        raise ValidationError("an image must be an object of attribute name to AttributeValue")
    return {k: from_dynamodb_json(v, k, 1) for k, v in _named(image.items())}


def _named(pairs: Iterable[tuple[Any, Any]]) -> Iterable[tuple[str, Any]]:
    for k, v in pairs:
        if not isinstance(k, str) or not k:
            raise ValidationError(f"attribute names must be non-empty strings, got {k!r}")
        yield k, v


def _infer_view(has_new: bool, has_old: bool) -> StreamView:
    if has_new and has_old:
        return StreamView.NEW_AND_OLD_IMAGES
    if has_new:
        return StreamView.NEW_IMAGE
    if has_old:
        return StreamView.OLD_IMAGE
    return StreamView.KEYS_ONLY


def _table_from_arn(arn: Any) -> str:
    # arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL
    if isinstance(arn, str):
        resource = arn.split(":", 5)[-1]
        parts = resource.split("/")
        if len(parts) >= 2 and parts[0] == "table" and parts[1]:
            return parts[1]
    raise ValidationError(
        "the record names no table: pass table= or give an eventSourceARN "
        "of the form arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL"
    )
