"""ChangeRecord, StreamView and UserIdentity: immutability, checks and DynamoDB shapes."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from streamkit.exceptions import ValidationError
from streamkit.records import (
    DEFAULT_REGION,
    TTL_IDENTITY,
    ChangeRecord,
    StreamView,
    UserIdentity,
    changed_attributes,
)

WHEN = datetime(2026, 1, 1, 9, 14, 5, 123000, tzinfo=UTC)


def make(**changes: Any) -> ChangeRecord:
    fields: dict[str, Any] = {
        "event_id": "c4ca4238a0b923820dcc509a6f75849b",
        "event_name": "MODIFY",
        "table": "Users",
        "keys": {"UserID": "123"},
        "new_image": {"UserID": "123", "Name": "Jane", "Tags": {"a", "b"}},
        "old_image": {"UserID": "123", "Name": "John", "Tags": {"a", "b"}},
        "changed": ["Name"],
        "sequence_number": 1200000000000136158523,
        "created_at": WHEN,
        "size_bytes": 42,
        "view_type": StreamView.NEW_AND_OLD_IMAGES,
    }
    fields.update(changes)
    return ChangeRecord(**fields)


# --- immutability -----------------------------------------------------------------------------


def test_fields_cannot_be_assigned() -> None:
    record = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.table = "Other"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        record.extra = 1  # type: ignore[attr-defined]


def test_images_are_read_only() -> None:
    record = make()
    assert record.new_image is not None
    with pytest.raises(TypeError):
        record.new_image["Name"] = "X"  # type: ignore[index]
    with pytest.raises(TypeError):
        record.keys["UserID"] = "X"  # type: ignore[index]
    assert dict(record.new_image)["Name"] == "Jane"  # a copy to change


def test_the_callers_dict_cannot_change_the_record() -> None:
    image = {"UserID": "123", "Name": "Jane"}
    record = make(new_image=image)
    image["Name"] = "Changed"
    assert record.new_image is not None and record.new_image["Name"] == "Jane"


def test_images_are_normalized() -> None:
    record = make(new_image={"UserID": "123", "Age": 42, "Score": 1.5, "Tags": frozenset({"a"})})
    assert record.new_image == {
        "UserID": "123",
        "Age": Decimal(42),
        "Score": Decimal("1.5"),
        "Tags": {"a"},
    }
    assert type(record.new_image["Age"]) is Decimal
    with pytest.raises(ValidationError):
        make(new_image={"Bad": object()})


def test_records_compare_and_hash() -> None:
    assert make() == make()
    assert make() != make(size_bytes=43)
    assert hash(make()) == hash(make())
    assert len({make(), make()}) == 1


def test_records_pickle_copy_and_replace() -> None:
    record = make(user_identity=TTL_IDENTITY, origin="eu-west-1")
    assert pickle.loads(pickle.dumps(record)) == record
    assert copy.deepcopy(record) == record
    assert copy.copy(record) == record
    other = dataclasses.replace(record, table="Other")
    assert other.table == "Other"
    assert other.new_image == record.new_image


# --- checks on construction -------------------------------------------------------------------


def test_created_at_becomes_utc_milliseconds() -> None:
    local = datetime(2026, 1, 1, 10, 14, 5, 123999, tzinfo=timezone(timedelta(hours=1)))
    record = make(created_at=local)
    assert record.created_at == WHEN
    assert record.created_at.tzinfo is UTC
    assert record.created_at_ms == 1767258845123


def test_naive_created_at_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        make(created_at=datetime(2026, 1, 1))


def test_view_type_text_becomes_a_stream_view() -> None:
    assert make(view_type="KEYS_ONLY").view_type is StreamView.KEYS_ONLY
    with pytest.raises(ValidationError):
        make(view_type="EVERYTHING")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"event_name": "UPDATE"}, id="event-name"),
        pytest.param({"sequence_number": -1}, id="negative-sequence"),
        pytest.param({"sequence_number": "12"}, id="sequence-as-text"),
        pytest.param({"keys": ["UserID"]}, id="keys-not-a-mapping"),
        pytest.param({"changed": "Name"}, id="changed-as-str"),
    ],
)
def test_bad_fields_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make(**changes)


def test_changed_becomes_a_sorted_tuple() -> None:
    assert make(changed={"b", "a"}).changed == ("a", "b")
    assert make(event_name="INSERT", old_image=None, changed=None).changed is None


def test_changed_attributes_is_semantic() -> None:
    old = {"a": Decimal(1), "b": {"x": [1]}, "gone": None, "same": {"s"}}
    new = {"a": Decimal("1.0"), "b": {"x": [2]}, "added": True, "same": {"s"}}
    assert changed_attributes(old, new) == ("added", "b", "gone")


def test_stream_view_values_are_dynamodbs() -> None:
    assert [v.value for v in StreamView] == [
        "KEYS_ONLY",
        "NEW_IMAGE",
        "OLD_IMAGE",
        "NEW_AND_OLD_IMAGES",
    ]
    assert StreamView("NEW_IMAGE") == "NEW_IMAGE"
    assert StreamView.NEW_AND_OLD_IMAGES.has_new_image
    assert StreamView.NEW_AND_OLD_IMAGES.has_old_image
    assert not StreamView.KEYS_ONLY.has_new_image
    assert not StreamView.NEW_IMAGE.has_old_image


def test_ttl_identity() -> None:
    assert UserIdentity(type="Service", principal="streamkit.ttl") == TTL_IDENTITY
    with pytest.raises(dataclasses.FrozenInstanceError):
        TTL_IDENTITY.principal = "x"  # type: ignore[misc]


# --- DynamoDB Streams shape -------------------------------------------------------------------


def test_modify_in_dynamodb_shape() -> None:
    record = make(new_image={"UserID": "123", "Blob": b"\x00\x01", "N": Decimal("1.5")})
    assert record.to_dynamodb_json() == {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "local",
        "dynamodb": {
            "ApproximateCreationDateTime": 1767258845,
            "Keys": {"UserID": {"S": "123"}},
            "NewImage": {
                "UserID": {"S": "123"},
                "Blob": {"B": "AAE="},
                "N": {"N": "1.5"},
            },
            "OldImage": {
                "UserID": {"S": "123"},
                "Name": {"S": "John"},
                "Tags": {"SS": ["a", "b"]},
            },
            "SequenceNumber": "1200000000000136158523",
            "SizeBytes": 42,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


@pytest.mark.parametrize(
    ("view", "images"),
    [
        pytest.param(StreamView.KEYS_ONLY, set(), id="keys-only"),
        pytest.param(StreamView.NEW_IMAGE, {"NewImage"}, id="new-image"),
        pytest.param(StreamView.OLD_IMAGE, {"OldImage"}, id="old-image"),
        pytest.param(StreamView.NEW_AND_OLD_IMAGES, {"NewImage", "OldImage"}, id="both"),
    ],
)
def test_images_follow_the_view_type(view: StreamView, images: set[str]) -> None:
    stream = make(view_type=view).to_dynamodb_json()["dynamodb"]
    assert {"NewImage", "OldImage"} & stream.keys() == images
    assert stream["StreamViewType"] == view.value
    assert list(stream) == [
        "ApproximateCreationDateTime",
        "Keys",
        *(["NewImage"] if "NewImage" in images else []),
        *(["OldImage"] if "OldImage" in images else []),
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    ]


def test_insert_and_remove_carry_the_image_they_have() -> None:
    insert = make(event_name="INSERT", old_image=None, changed=None).to_dynamodb_json()
    assert "NewImage" in insert["dynamodb"] and "OldImage" not in insert["dynamodb"]
    remove = make(event_name="REMOVE", new_image=None, changed=None).to_dynamodb_json()
    assert "OldImage" in remove["dynamodb"] and "NewImage" not in remove["dynamodb"]


def test_ttl_deletion_has_dynamodbs_service_identity() -> None:
    record = make(event_name="REMOVE", new_image=None, changed=None, user_identity=TTL_IDENTITY)
    out = record.to_dynamodb_json()
    assert out["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert "userIdentity" not in make().to_dynamodb_json()


def test_region_is_the_origin_else_local() -> None:
    assert make().to_dynamodb_json()["awsRegion"] == DEFAULT_REGION == "local"
    assert make(origin="eu-west-1").to_dynamodb_json()["awsRegion"] == "eu-west-1"
    assert make().to_dynamodb_json(region="us-east-1")["awsRegion"] == "us-east-1"


def test_creation_time_is_whole_seconds_rounded_down() -> None:
    record = make(created_at=datetime(2026, 1, 1, 0, 0, 0, 999000, tzinfo=UTC))
    assert record.to_dynamodb_json()["dynamodb"]["ApproximateCreationDateTime"] == 1767225600


# --- from DynamoDB Streams shape --------------------------------------------------------------

# A record as Lambda delivers it (AWS's documented sample event, one record of it).
LAMBDA_MODIFY: dict[str, Any] = {
    "eventID": "c81e728d9d4c2f636f067f89cc14862c",
    "eventName": "MODIFY",
    "eventVersion": "1.1",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "Keys": {"Id": {"N": "101"}},
        "NewImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
        "OldImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
        "ApproximateCreationDateTime": 1428537600,
        "SequenceNumber": "4421584500000000017450439092",
        "SizeBytes": 59,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    },
    "eventSourceARN": (
        "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream"
        "/stream/2015-06-27T00:48:05.899"
    ),
}


def test_from_a_lambda_event_record() -> None:
    record = ChangeRecord.from_dynamodb_json(LAMBDA_MODIFY)
    assert record.table == "ExampleTableWithStream"
    assert record.event_name == "MODIFY"
    assert record.keys == {"Id": Decimal(101)}
    assert record.new_image == {"Message": "This item has changed", "Id": Decimal(101)}
    assert record.changed == ("Message",)
    assert record.sequence_number == 4421584500000000017450439092
    assert record.created_at == datetime(2015, 4, 9, tzinfo=UTC)
    assert record.origin == "us-east-1"
    assert record.user_identity is None


def test_dynamodb_shape_round_trips() -> None:
    record = make(
        event_name="REMOVE",
        new_image=None,
        changed=None,
        user_identity=TTL_IDENTITY,
        origin="eu-west-1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert ChangeRecord.from_dynamodb_json(record.to_dynamodb_json(), table="Users") == record


def test_from_dynamodb_json_needs_a_table() -> None:
    data = {k: v for k, v in LAMBDA_MODIFY.items() if k != "eventSourceARN"}
    with pytest.raises(ValidationError, match="table"):
        ChangeRecord.from_dynamodb_json(data)
    assert ChangeRecord.from_dynamodb_json(data, table="T").table == "T"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param({"eventName": "UPSERT"}, id="event-name"),
        pytest.param({"dynamodb": None}, id="no-dynamodb"),
        pytest.param({"eventID": 5}, id="event-id"),
        pytest.param({"dynamodb": {**LAMBDA_MODIFY["dynamodb"], "SequenceNumber": 5}}, id="seq"),
        pytest.param({"dynamodb": {**LAMBDA_MODIFY["dynamodb"], "Keys": {"Id": 5}}}, id="keys"),
        pytest.param(
            {"dynamodb": {**LAMBDA_MODIFY["dynamodb"], "StreamViewType": "ALL"}}, id="view"
        ),
        pytest.param({"userIdentity": {"type": "Service"}}, id="identity"),
    ],
)
def test_from_dynamodb_json_refuses_malformed_records(damage: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ChangeRecord.from_dynamodb_json({**LAMBDA_MODIFY, **damage})
