"""Where the endpoint's table operations, tags and request checks used to answer
differently from DynamoDB: each test is one difference, fixed, driven by boto3 with its
own parameter validation off (so that DynamoDB's server-side checks are what answer)."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from typing import Any

from botocore.config import Config

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _eventually, _table, served

__all__ = ("served",)

_KEY = [{"AttributeName": "id", "KeyType": "HASH"}]
_DEFS = [{"AttributeName": "id", "AttributeType": "S"}]


def _raw(served: Served) -> Any:
    """A client that sends what it is given (DynamoDB checks it, not boto3)."""
    return served.client(config=Config(parameter_validation=False))


def _create(c: Any, name: str = "Users", **extra: Any) -> Any:
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": _KEY,
        "AttributeDefinitions": _DEFS,
        "BillingMode": "PAY_PER_REQUEST",
    }
    args.update(extra)
    return c.create_table(**{k: v for k, v in args.items() if v is not None})


def _names(c: Any) -> list[str]:
    return list(c.list_tables()["TableNames"])


# --- CreateTable's request checks -----------------------------------------------------------


def test_create_table_bad_name_is_refused_in_dynamodbs_words(served: Served) -> None:
    c = _raw(served)
    assert _error(lambda: _create(c, "ab")) == (
        "ValidationException",
        "1 validation error detected: Value 'ab' at 'tableName' failed to satisfy "
        "constraint: Member must have length greater than or equal to 3",
    )
    assert _error(lambda: _create(c, "nyh@test")) == (
        "ValidationException",
        "1 validation error detected: Value 'nyh@test' at 'tableName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    )
    code, message = _error(lambda: _create(c, "n" * 256))
    assert code == "ValidationException"
    assert message.endswith("Member must have length less than or equal to 255")
    assert _names(c) == []


def test_describe_table_checks_the_name_before_looking_it_up(served: Served) -> None:
    c = _raw(served)
    assert _error(lambda: c.describe_table(TableName="x!")) == (
        "ValidationException",
        "2 validation errors detected: Value 'x!' at 'tableName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value 'x!' at 'tableName' failed to satisfy constraint: Member must have length "
        "greater than or equal to 3",
    )


def test_create_table_unsupported_key_type_names_the_type(served: Served) -> None:
    c = _raw(served)
    defs = [{"AttributeName": "id", "AttributeType": "BOOL"}]
    assert _error(lambda: _create(c, AttributeDefinitions=defs)) == (
        "ValidationException",
        "1 validation error detected: Value 'BOOL' at "
        "'attributeDefinitions.1.member.attributeType' failed to satisfy constraint: Member "
        "must satisfy enum value set: [B, N, S]",
    )


def test_create_table_attribute_definition_missing_a_member(served: Served) -> None:
    c = _raw(served)
    no_name = [{"AttributeType": "S"}]
    assert _error(lambda: _create(c, AttributeDefinitions=no_name)) == (
        "ValidationException",
        "1 validation error detected: Value null at "
        "'attributeDefinitions.1.member.attributeName' failed to satisfy constraint: Member "
        "must not be null",
    )
    no_type = [{"AttributeName": "id"}]
    code, message = _error(lambda: _create(c, AttributeDefinitions=no_type))
    assert code == "ValidationException"
    assert "'attributeDefinitions.1.member.attributeType'" in message


def test_create_table_duplicate_attribute_definition_is_refused(served: Served) -> None:
    c = _raw(served)
    defs = [
        {"AttributeName": "id", "AttributeType": "S"},
        {"AttributeName": "id", "AttributeType": "N"},
    ]
    assert _error(lambda: _create(c, AttributeDefinitions=defs)) == (
        "ValidationException",
        "Attribute Name is duplicated: id",
    )
    assert _names(c) == []


def test_create_table_key_schema_order_errors(served: Served) -> None:
    c = _raw(served)
    defs = [*_DEFS, {"AttributeName": "n", "AttributeType": "S"}]
    two_hash = [*_KEY, {"AttributeName": "n", "KeyType": "HASH"}]
    assert _error(lambda: _create(c, KeySchema=two_hash, AttributeDefinitions=defs)) == (
        "ValidationException",
        "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
    )
    range_only = [{"AttributeName": "id", "KeyType": "RANGE"}]
    assert _error(lambda: _create(c, KeySchema=range_only)) == (
        "ValidationException",
        "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
    )
    three = [*_KEY, {"AttributeName": "n", "KeyType": "RANGE"}] * 2
    code, message = _error(lambda: _create(c, KeySchema=three[:3], AttributeDefinitions=defs))
    assert code == "ValidationException"
    assert message.endswith(
        "at 'keySchema' failed to satisfy constraint: Member must have length less than or "
        "equal to 2"
    )


def test_key_attribute_names_are_limited_to_255_bytes(served: Served) -> None:
    c = _raw(served)
    long = "k" * 256
    # DynamoDB reports the length before it compares the schema with the definitions
    code, message = _error(
        lambda: _create(c, KeySchema=[{"AttributeName": long, "KeyType": "HASH"}])
    )
    assert code == "ValidationException"
    assert message == (
        f"1 validation error detected: Value '{long}' at 'keySchema.1.member.attributeName' "
        "failed to satisfy constraint: Member must have length less than or equal to 255"
    )
    gsi = [
        {
            "IndexName": "byLong",
            "KeySchema": [{"AttributeName": long, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    code, message = _error(lambda: _create(c, GlobalSecondaryIndexes=gsi))
    assert code == "ValidationException"
    assert "'globalSecondaryIndexes.1.member.keySchema.1.member.attributeName'" in message
    assert _names(c) == []
    ok = "k" * 255
    _create(
        c,
        KeySchema=[{"AttributeName": ok, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": ok, "AttributeType": "S"}],
    )
    assert _names(c) == ["Users"]


def test_create_table_unused_definition_with_an_index(served: Served) -> None:
    c = _raw(served)
    defs = [
        *_DEFS,
        {"AttributeName": "email", "AttributeType": "S"},
        {"AttributeName": "spare", "AttributeType": "S"},
    ]
    gsi = [
        {
            "IndexName": "byEmail",
            "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    assert _error(lambda: _create(c, AttributeDefinitions=defs, GlobalSecondaryIndexes=gsi)) == (
        "ValidationException",
        "One or more parameter values were invalid: Some AttributeDefinitions are not used. "
        "AttributeDefinitions: [id, email, spare], keys used: [email, id]",
    )


def test_create_table_billing_mode_is_an_enum(served: Served) -> None:
    c = _raw(served)
    assert _error(lambda: _create(c, BillingMode="pay_per_request")) == (
        "ValidationException",
        "1 validation error detected: Value 'pay_per_request' at 'billingMode' failed to "
        "satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
    )


def test_pay_per_request_table_refuses_provisioned_throughput(served: Served) -> None:
    c = _raw(served)
    units = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    words = (
        "ValidationException",
        "One or more parameter values were invalid: Neither ReadCapacityUnits nor "
        "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
    )
    assert _error(lambda: _create(c, ProvisionedThroughput=units)) == words
    assert _names(c) == []
    _create(c, BillingMode="PROVISIONED", ProvisionedThroughput=units)
    assert (
        _error(
            lambda: c.update_table(
                TableName="Users", BillingMode="PAY_PER_REQUEST", ProvisionedThroughput=units
            )
        )
        == words
    )
    assert c.describe_table(TableName="Users")["Table"]["BillingModeSummary"] == {
        "BillingMode": "PROVISIONED"
    }


def test_provisioned_throughput_units_are_checked_as_dynamodb_does(served: Served) -> None:
    c = _raw(served)
    missing = {"WriteCapacityUnits": 1}
    assert _error(lambda: _create(c, BillingMode="PROVISIONED", ProvisionedThroughput=missing)) == (
        "ValidationException",
        "1 validation error detected: Value null at 'provisionedThroughput.readCapacityUnits' "
        "failed to satisfy constraint: Member must not be null",
    )
    zero = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 0}
    assert _error(lambda: _create(c, BillingMode="PROVISIONED", ProvisionedThroughput=zero)) == (
        "ValidationException",
        "1 validation error detected: Value '0' at 'provisionedThroughput.writeCapacityUnits' "
        "failed to satisfy constraint: Member must have value greater than or equal to 1",
    )


def test_list_tables_limit_is_checked_in_dynamodbs_words(served: Served) -> None:
    c = _raw(served)
    assert _error(lambda: c.list_tables(Limit=101)) == (
        "ValidationException",
        "1 validation error detected: Value '101' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 100",
    )


# --- DescribeTable / DeleteTable ----------------------------------------------------------


def test_on_demand_table_reports_when_it_became_on_demand(served: Served) -> None:
    c = served.client()
    _table(c)
    table = c.describe_table(TableName="Users")["Table"]
    summary = table["BillingModeSummary"]
    assert summary["LastUpdateToPayPerRequestDateTime"] == table["CreationDateTime"]
    units = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    _table(c, "Orders", BillingMode="PROVISIONED", ProvisionedThroughput=units)
    orders = c.describe_table(TableName="Orders")["Table"]
    assert "LastUpdateToPayPerRequestDateTime" not in orders["BillingModeSummary"]
    c.update_table(TableName="Orders", BillingMode="PAY_PER_REQUEST")
    switched = c.describe_table(TableName="Orders")["Table"]["BillingModeSummary"]
    assert isinstance(switched["LastUpdateToPayPerRequestDateTime"], datetime)
    assert switched["LastUpdateToPayPerRequestDateTime"] > orders["CreationDateTime"]


def test_delete_table_description_leaves_out_the_schema(served: Served) -> None:
    c = served.client()
    _table(
        c,
        AttributeDefinitions=[*_DEFS, {"AttributeName": "email", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byEmail",
                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    got = c.delete_table(TableName="Users")["TableDescription"]
    assert got["TableName"] == "Users"
    assert got["TableStatus"] == "DELETING"
    assert got["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert got["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    for member in ("CreationDateTime", "KeySchema", "AttributeDefinitions"):
        assert member not in got
    assert "GlobalSecondaryIndexes" not in got
    assert {"TableId", "TableArn", "ItemCount", "TableSizeBytes"} <= set(got)


# --- UpdateTable -----------------------------------------------------------------------------


def test_update_table_that_changes_nothing_is_refused(served: Served) -> None:
    c = _raw(served)
    _table(c)
    code, message = _error(lambda: c.update_table(TableName="Users"))
    assert code == "ValidationException"
    assert message.startswith(
        "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, "
        "GlobalSecondaryIndexUpdates, SSESpecification, ReplicaUpdates,"
    )
    assert message.endswith("WarmThroughput or TableClass is required")


def test_update_table_to_the_current_throughput_is_refused(served: Served) -> None:
    c = _raw(served)
    units = {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}
    _table(c, BillingMode="PROVISIONED", ProvisionedThroughput=units)
    assert _error(lambda: c.update_table(TableName="Users", ProvisionedThroughput=units)) == (
        "ValidationException",
        "The provisioned throughput for the table will not change. The requested value equals "
        "the current value. Current ReadCapacityUnits provisioned for the table: 2. Requested "
        "ReadCapacityUnits: 2. Current WriteCapacityUnits provisioned for the table: 3. "
        "Requested WriteCapacityUnits: 3. Refer to the Amazon DynamoDB Developer Guide for "
        "current limits and how to request higher limits.",
    )
    out = c.update_table(
        TableName="Users", ProvisionedThroughput={"ReadCapacityUnits": 4, "WriteCapacityUnits": 3}
    )
    assert out["TableDescription"]["ProvisionedThroughput"]["ReadCapacityUnits"] == 4


def test_update_table_billing_mode_needs_and_refuses_throughput_as_dynamodb(
    served: Served,
) -> None:
    c = _raw(served)
    _table(c)
    assert _error(lambda: c.update_table(TableName="Users", BillingMode="PROVISIONED")) == (
        "ValidationException",
        "One or more parameter values were invalid: ProvisionedThroughput must be specified "
        "when BillingMode is PROVISIONED",
    )
    units = {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
    assert _error(lambda: c.update_table(TableName="Users", ProvisionedThroughput=units)) == (
        "ValidationException",
        "One or more parameter values were invalid: ProvisionedThroughput cannot be specified "
        "when BillingMode is PAY_PER_REQUEST",
    )
    table = c.describe_table(TableName="Users")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


# --- tags --------------------------------------------------------------------------------------


def _arn(c: Any, name: str = "Users") -> str:
    return str(c.describe_table(TableName=name)["Table"]["TableArn"])


def _tags(n: range) -> list[dict[str, str]]:
    return [{"Key": f"k{i}", "Value": f"v{i}"} for i in n]


def test_more_than_50_tags_is_a_validation_error(served: Served) -> None:
    c = _raw(served)
    _table(c)
    arn = _arn(c)
    c.tag_resource(ResourceArn=arn, Tags=_tags(range(40)))
    words = (
        "ValidationException",
        "Number of Tags exceed the current limit for the provided ResourceArn",
    )
    assert _error(lambda: c.tag_resource(ResourceArn=arn, Tags=_tags(range(40, 60)))) == words
    assert len(c.list_tags_of_resource(ResourceArn=arn)["Tags"]) == 40
    assert _error(lambda: _create(c, "Orders", Tags=_tags(range(51)))) == words
    assert "Orders" not in _names(c)


def test_create_table_with_an_empty_tag_list(served: Served) -> None:
    c = _raw(served)
    _create(c, Tags=[])
    assert c.list_tags_of_resource(ResourceArn=_arn(c))["Tags"] == []


def test_tag_errors_use_dynamodbs_words(served: Served) -> None:
    c = _raw(served)
    _table(c)
    arn = _arn(c)

    def tag(*tags: dict[str, str]) -> tuple[str, str]:
        return _error(lambda: c.tag_resource(ResourceArn=arn, Tags=list(tags)))

    assert tag() == ("ValidationException", "Atleast one Tag needs to be provided as Input.")
    assert tag({"Key": "x" * 129, "Value": "v"}) == (
        "ValidationException",
        f"The Tag Key provided is invalid, Key: {'x' * 129}",
    )
    assert tag({"Key": "hi!", "Value": "v"}) == (
        "ValidationException",
        "The Tag Key provided is invalid, Key: hi!",
    )
    assert tag({"Key": "k"}) == (
        "ValidationException",
        "The Tag Value provided is invalid, Value: null",
    )
    assert tag({"Key": "k", "Value": "100%"}) == (
        "ValidationException",
        "The Tag Value provided is invalid, Value: 100%",
    )
    assert tag({"Key": "aws:x", "Value": "v"}) == (
        "ValidationException",
        "Tag Key cannot be prefixed with aws:, Key: aws:x",
    )
    assert tag({"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}) == (
        "ValidationException",
        "Duplicate Tag Keys provided as input: Duplicate Tag Key found k",
    )
    assert _error(lambda: c.untag_resource(ResourceArn=arn, TagKeys=[])) == (
        "ValidationException",
        "Atleast one Tag Key needs to be provided as Input.",
    )
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == []


def test_tag_arn_errors_use_dynamodbs_words(served: Served) -> None:
    c = _raw(served)
    _table(
        c,
        AttributeDefinitions=[*_DEFS, {"AttributeName": "email", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byEmail",
                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    one = [{"Key": "k", "Value": "v"}]
    assert _error(lambda: c.tag_resource(ResourceArn="I_do_not_exist", Tags=one)) == (
        "ValidationException",
        "One or more parameter values were invalid: ARNs must start with 'arn:': I_do_not_exist",
    )
    index_arn = c.describe_table(TableName="Users")["Table"]["GlobalSecondaryIndexes"][0][
        "IndexArn"
    ]
    words = (
        "ValidationException",
        "One or more parameter values were invalid: Invalid resource arn provided, only table "
        f"or stream is accepted. Provided resource arn: {index_arn}",
    )
    assert _error(lambda: c.tag_resource(ResourceArn=index_arn, Tags=one)) == words
    assert _error(lambda: c.list_tags_of_resource(ResourceArn=index_arn)) == words


def test_tag_and_untag_answer_with_an_empty_body(served: Served) -> None:
    c = served.client()
    _table(c)
    arn = _arn(c)

    def post(target: str, body: dict[str, Any]) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{served.port}",
            data=json.dumps(body).encode(),
            headers={
                "X-Amz-Target": f"DynamoDB_20120810.{target}",
                "Content-Type": "application/x-amz-json-1.0",
            },
        )
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()

    assert post("TagResource", {"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v"}]}) == (
        200,
        b"",
    )
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    assert post("UntagResource", {"ResourceArn": arn, "TagKeys": ["k"]}) == (200, b"")
    # boto3 reads the empty answer as success
    c.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": "b"}])
    c.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == []


def test_concurrent_tag_and_untag_requests_never_undo_each_other(served: Served) -> None:
    """Two clients each add and remove their own tag, many times, at once: every
    acknowledged TagResource is visible until its own UntagResource (the change is a
    read-modify-write of the table's settings, stored only if nothing came in between)."""
    import threading

    c = served.client()
    _table(c)
    arn = _arn(c)
    lost: list[str] = []

    def worker(key: str) -> None:
        mine = served.client()
        for i in range(60):
            mine.tag_resource(ResourceArn=arn, Tags=[{"Key": key, "Value": str(i)}])
            tags = {
                t["Key"]: t["Value"] for t in mine.list_tags_of_resource(ResourceArn=arn)["Tags"]
            }
            if tags.get(key) != str(i):
                lost.append(f"{key}={i}: {tags}")
            mine.untag_resource(ResourceArn=arn, TagKeys=[key])

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("A", "B", "C")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lost == []
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == []


def test_concurrent_ttl_backup_and_tag_changes_never_undo_each_other(served: Served) -> None:
    """UpdateTimeToLive, UpdateContinuousBackups and TagResource change different settings
    of one table at once: none of them stores settings read before another's change (each
    is re-applied to the latest settings, as ``Store.change_spec``)."""
    import threading

    c = served.client()
    _table(c)
    arn = _arn(c)
    errors: list[str] = []

    def ttl() -> None:
        mine = served.client()
        for _ in range(15):
            for enabled in (True, False):
                mine.update_time_to_live(
                    TableName="Users",
                    TimeToLiveSpecification={"Enabled": enabled, "AttributeName": "exp"},
                )
                status = mine.describe_time_to_live(TableName="Users")["TimeToLiveDescription"]
                if status["TimeToLiveStatus"] != ("ENABLED" if enabled else "DISABLED"):
                    errors.append(f"ttl {enabled}: {status}")

    def tags() -> None:
        mine = served.client()
        for i in range(30):
            mine.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"}])

    def pitr() -> None:
        mine = served.client()
        for days in range(1, 31):
            mine.update_continuous_backups(
                TableName="Users",
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": True,
                    "RecoveryPeriodInDays": days,
                },
            )

    threads = [threading.Thread(target=f) for f in (ttl, tags, pitr)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = c.list_tags_of_resource(ResourceArn=arn)["Tags"]
    assert sorted(t["Key"] for t in listed) == sorted(f"k{i}" for i in range(30))
    described = c.describe_continuous_backups(TableName="Users")["ContinuousBackupsDescription"]
    assert described["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 30
    assert c.describe_time_to_live(TableName="Users")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "DISABLED"
    }


def test_table_class_is_kept_and_shown_as_dynamodb_does(served: Served) -> None:
    """Found by Alternator's test_tableclass: no TableClassSummary unless a class was
    given; the class given at creation is shown (without LastUpdateDateTime); UpdateTable
    changes it and records when; a class that is not DynamoDB's is refused."""
    c = served.client()
    _table(c)
    assert "TableClassSummary" not in c.describe_table(TableName="Users")["Table"]
    _table(c, "Cold", TableClass="STANDARD_INFREQUENT_ACCESS")
    assert c.describe_table(TableName="Cold")["Table"]["TableClassSummary"] == {
        "TableClass": "STANDARD_INFREQUENT_ACCESS"
    }
    _table(c, "Plain", TableClass="STANDARD")
    assert c.describe_table(TableName="Plain")["Table"]["TableClassSummary"] == {
        "TableClass": "STANDARD"
    }
    c.update_table(TableName="Plain", TableClass="STANDARD_INFREQUENT_ACCESS")
    summary = c.describe_table(TableName="Plain")["Table"]["TableClassSummary"]
    assert summary["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert isinstance(summary["LastUpdateDateTime"], datetime)
    message = (
        "Invalid table-class parameter provided. Please try again with a valid table-class "
        "value: [STANDARD, STANDARD_INFREQUENT_ACCESS]."
    )
    for bad in ("junk", "standard"):
        assert _error(lambda bad=bad: _table(c, "Bad", TableClass=bad)) == (
            "ValidationException",
            message,
        )
        assert _error(lambda bad=bad: c.update_table(TableName="Plain", TableClass=bad)) == (
            "ValidationException",
            message,
        )
    assert "Bad" not in c.list_tables()["TableNames"]
    assert c.describe_table(TableName="Plain")["Table"]["TableClassSummary"] == summary


def test_warm_throughput_is_kept_checked_and_shown(served: Served) -> None:
    """Found by Alternator's test_warm_throughput: every table shows its WarmThroughput
    (DynamoDB's 12,000 reads / 4,000 writes a second for a new one); CreateTable and
    UpdateTable set it, one unit alone too; below DynamoDB's minimum, or lower than the
    table's current figure, is refused and changes nothing."""
    c = served.client()
    _table(c)
    assert c.describe_table(TableName="Users")["Table"]["WarmThroughput"] == {
        "ReadUnitsPerSecond": 12000,
        "WriteUnitsPerSecond": 4000,
        "Status": "ACTIVE",
    }
    made = c.create_table(
        TableName="Warm",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        WarmThroughput={"ReadUnitsPerSecond": 15000, "WriteUnitsPerSecond": 5000},
    )["TableDescription"]
    assert made["WarmThroughput"]["ReadUnitsPerSecond"] == 15000
    assert made["WarmThroughput"]["WriteUnitsPerSecond"] == 5000
    c.update_table(TableName="Users", WarmThroughput={"WriteUnitsPerSecond": 6000})
    warm = c.describe_table(TableName="Users")["Table"]["WarmThroughput"]
    assert (warm["ReadUnitsPerSecond"], warm["WriteUnitsPerSecond"]) == (12000, 6000)
    code, msg = _error(
        lambda: c.update_table(TableName="Users", WarmThroughput={"WriteUnitsPerSecond": 5000})
    )
    assert code == "ValidationException" and "lower than current WarmThroughput" in msg
    code, msg = _error(lambda: _table(c, "Cold", WarmThroughput={"ReadUnitsPerSecond": 11999}))
    assert code == "ValidationException" and "ReadUnitsPerSecond" in msg and "lower than" in msg
    assert "Cold" not in c.list_tables()["TableNames"]
    assert c.describe_table(TableName="Users")["Table"]["WarmThroughput"] == warm


def test_continuous_backups_of_a_missing_table_is_table_not_found(served: Served) -> None:
    """As DynamoDB (Alternator's test_backup): these two say TableNotFoundException."""
    c = served.client()
    assert _error(lambda: c.describe_continuous_backups(TableName="Nope")) == (
        "TableNotFoundException",
        "Table not found: Nope",
    )
    spec = {"PointInTimeRecoveryEnabled": False}
    assert (
        _error(
            lambda: c.update_continuous_backups(
                TableName="Nope", PointInTimeRecoverySpecification=spec
            )
        )[0]
        == "TableNotFoundException"
    )


def test_point_in_time_recovery_turned_on_for_a_table_in_use(served: Served) -> None:
    """As DynamoDB: UpdateContinuousBackups turns PITR on for a table that has items (it
    answers at once; the status is ENABLING until every item is in the archive, then
    ENABLED from that moment); a restore then holds the items written before."""
    import time
    from datetime import UTC, datetime

    c = served.client()
    _table(c)
    c.update_continuous_backups(
        TableName="Users", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    for i in range(40):
        c.put_item(TableName="Users", Item={"id": {"S": f"k{i}"}, "v": {"N": str(i)}})

    def status() -> dict[str, Any]:
        got = c.describe_continuous_backups(TableName="Users")["ContinuousBackupsDescription"]
        return dict(got["PointInTimeRecoveryDescription"])

    assert status()["PointInTimeRecoveryStatus"] == "DISABLED"
    turned_on = datetime.now(UTC)
    answer = c.update_continuous_backups(
        TableName="Users",
        PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True,
            "RecoveryPeriodInDays": 7,
        },
    )["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert answer["PointInTimeRecoveryStatus"] in ("ENABLING", "ENABLED")
    _eventually(lambda: status()["PointInTimeRecoveryStatus"] == "ENABLED")
    got = status()
    assert got["RecoveryPeriodInDays"] == 7
    assert got["EarliestRestorableDateTime"] >= turned_on
    time.sleep(0.01)
    c.restore_table_to_point_in_time(
        SourceTableName="Users", TargetTableName="Restored", UseLatestRestorableTime=True
    )
    items = c.scan(TableName="Restored")["Items"]
    assert sorted(int(i["v"]["N"]) for i in items) == list(range(40))


def test_deletion_protection_refuses_delete_table_until_turned_off(served: Served) -> None:
    """As DynamoDB: DeletionProtectionEnabled (CreateTable, UpdateTable) is shown by
    DescribeTable and makes DeleteTable a ValidationException that deletes nothing."""
    c = served.client()
    _table(c, DeletionProtectionEnabled=True)
    c.put_item(TableName="Users", Item={"id": {"S": "a"}})
    assert c.describe_table(TableName="Users")["Table"]["DeletionProtectionEnabled"] is True
    refused = (
        "ValidationException",
        "Resource cannot be deleted as it is currently protected against deletion. "
        "Disable deletion protection first.",
    )
    assert _error(lambda: c.delete_table(TableName="Users")) == refused
    assert c.get_item(TableName="Users", Key={"id": {"S": "a"}})["Item"] == {"id": {"S": "a"}}
    c.update_table(TableName="Users", DeletionProtectionEnabled=False)
    assert c.describe_table(TableName="Users")["Table"]["DeletionProtectionEnabled"] is False
    c.delete_table(TableName="Users")
    assert c.list_tables()["TableNames"] == []
    _table(c)  # the default: unprotected
    assert c.describe_table(TableName="Users")["Table"]["DeletionProtectionEnabled"] is False
    c.update_table(TableName="Users", DeletionProtectionEnabled=True)
    assert _error(lambda: c.delete_table(TableName="Users")) == refused
