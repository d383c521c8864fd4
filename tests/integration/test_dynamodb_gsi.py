"""Where the endpoint's secondary indexes used to answer differently from DynamoDB: each
test is one difference, fixed, driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

from typing import Any

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _eventually, served

__all__ = ("served",)

_INVALID = "One or more parameter values were invalid: "


def _key(*names: str) -> list[dict[str, str]]:
    out = [{"AttributeName": names[0], "KeyType": "HASH"}]
    if len(names) > 1:
        out.append({"AttributeName": names[1], "KeyType": "RANGE"})
    return out


def _defs(**types: str) -> list[dict[str, str]]:
    return [{"AttributeName": n, "AttributeType": t} for n, t in types.items()]


def _index(name: str, *keys: str, projection: Any = None) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": _key(*keys),
        "Projection": {"ProjectionType": "ALL"} if projection is None else projection,
    }


def _create(c: Any, name: str, keys: tuple[str, ...], defs: dict[str, str], **extra: Any) -> Any:
    extra.setdefault("BillingMode", "PAY_PER_REQUEST")
    return c.create_table(
        TableName=name, KeySchema=_key(*keys), AttributeDefinitions=_defs(**defs), **extra
    )


def _gsi_table(c: Any, name: str = "Things") -> None:
    """Key p; global index ByX on x (S)."""
    _create(c, name, ("p",), {"p": "S", "x": "S"}, GlobalSecondaryIndexes=[_index("ByX", "x")])


def test_null_index_key_value_is_a_type_mismatch(served: Served) -> None:
    c = served.client()
    _gsi_table(c)
    _create(
        c,
        "Local",
        ("p", "c"),
        {"p": "S", "c": "S", "b": "S"},
        LocalSecondaryIndexes=[_index("ByB", "p", "b")],
    )
    null = {"NULL": True}
    for call in (
        lambda: c.put_item(TableName="Things", Item={"p": {"S": "a"}, "x": null}),
        lambda: c.update_item(
            TableName="Things",
            Key={"p": {"S": "a"}},
            AttributeUpdates={"x": {"Value": null, "Action": "PUT"}},
        ),
        lambda: c.batch_write_item(
            RequestItems={"Things": [{"PutRequest": {"Item": {"p": {"S": "a"}, "x": null}}}]}
        ),
    ):
        assert _error(call) == (
            "ValidationException",
            f"{_INVALID}Type mismatch for Index Key x Expected: S Actual: NULL IndexName: ByX",
        )
    item = {"p": {"S": "a"}, "c": {"S": "c"}, "b": null}
    assert _error(lambda: c.put_item(TableName="Local", Item=item)) == (
        "ValidationException",
        f"{_INVALID}Type mismatch for Index Key b Expected: S Actual: NULL IndexName: ByB",
    )
    assert c.scan(TableName="Things")["Count"] == 0
    assert c.scan(TableName="Local")["Count"] == 0


def test_index_key_schema_naming_one_attribute_twice(served: Served) -> None:
    c = served.client()
    same = "Both the Hash Key and the Range Key element in the KeySchema have the same name"
    defs = {"p": "S", "c": "S", "x": "S"}
    gsi = [_index("Twice", "x", "x")]
    lsi = [_index("Twice", "p", "p")]
    assert _error(lambda: _create(c, "Tab1", ("p", "c"), defs, GlobalSecondaryIndexes=gsi)) == (
        "ValidationException",
        same,
    )
    defs = {"p": "S", "c": "S"}
    assert _error(lambda: _create(c, "Tab2", ("p", "c"), defs, LocalSecondaryIndexes=lsi)) == (
        "ValidationException",
        same,
    )
    assert c.list_tables()["TableNames"] == []


def test_index_projection_without_projection_type(served: Served) -> None:
    c = served.client()
    gsi = [_index("ByP", "p", projection={})]
    assert _error(lambda: _create(c, "Tab", ("p",), {"p": "S"}, GlobalSecondaryIndexes=gsi)) == (
        "ValidationException",
        f"{_INVALID}Unknown ProjectionType: null",
    )


def test_index_projection_listing_an_attribute_twice(served: Served) -> None:
    c = served.client()
    projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "a"]}
    gsi = [_index("ByX", "x", projection=projection)]
    code, message = _error(
        lambda: _create(c, "Tab", ("p",), {"p": "S", "x": "S"}, GlobalSecondaryIndexes=gsi)
    )
    assert code == "ValidationException"
    assert message.startswith(f"{_INVALID}Duplicate NonKeyAttributes") and "a" in message


def test_index_names_are_checked_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    gsi = [_index("ByP", "p"), _index("nyh@test", "p")]
    assert _error(lambda: _create(c, "Tab", ("p",), {"p": "S"}, GlobalSecondaryIndexes=gsi)) == (
        "ValidationException",
        "1 validation error detected: Value 'nyh@test' at "
        "'globalSecondaryIndexes.2.member.indexName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    )
    long = "n" * 256
    lsi = [_index(long, "p", "c")]
    defs = {"p": "S", "c": "S"}
    assert _error(lambda: _create(c, "Tab", ("p", "c"), defs, LocalSecondaryIndexes=lsi)) == (
        "ValidationException",
        f"1 validation error detected: Value '{long}' at "
        "'localSecondaryIndexes.1.member.indexName' failed to satisfy constraint: "
        "Member must have length less than or equal to 255",
    )
    _create(c, "Tab", ("p",), {"p": "S"})
    update = [{"Create": _index(long, "p")}]
    assert _error(
        lambda: c.update_table(
            TableName="Tab", AttributeDefinitions=_defs(p="S"), GlobalSecondaryIndexUpdates=update
        )
    ) == (
        "ValidationException",
        f"1 validation error detected: Value '{long}' at "
        "'globalSecondaryIndexUpdates.1.member.create.indexName' failed to satisfy "
        "constraint: Member must have length less than or equal to 255",
    )
    # a name of 255 characters, or one starting with a dot, is fine
    _create(c, "Ubu", ("p",), {"p": "S"}, GlobalSecondaryIndexes=[_index("n" * 255, "p")])
    _create(c, "Vvv", ("p",), {"p": "S"}, GlobalSecondaryIndexes=[_index(".dotted", "p")])


def test_local_index_count_limit_in_dynamodb_words(served: Served) -> None:
    c = served.client()
    defs = {"p": "S", "c": "S", **{f"x{i}": "S" for i in range(6)}}
    lsis = [_index(f"By{i}", "p", f"x{i}") for i in range(6)]
    assert _error(lambda: _create(c, "Tab", ("p", "c"), defs, LocalSecondaryIndexes=lsis)) == (
        "ValidationException",
        f"{_INVALID}LocalSecondaryIndex count exceeds the per-table limit of 5",
    )


def test_global_index_read_of_attributes_it_does_not_project_is_refused(
    served: Served,
) -> None:
    c = served.client()
    projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a"]}
    gsi = [_index("ByX", "x", projection=projection)]
    _create(c, "Tab", ("p",), {"p": "S", "x": "S"}, GlobalSecondaryIndexes=gsi)
    c.put_item(
        TableName="Tab", Item={"p": {"S": "1"}, "x": {"S": "x"}, "a": {"S": "A"}, "b": {"S": "B"}}
    )
    refused = ("ValidationException", f"{_INVALID}Global secondary index ByX does not project [b]")
    query: dict[str, Any] = {
        "TableName": "Tab",
        "IndexName": "ByX",
        "KeyConditionExpression": "x = :x",
        "ExpressionAttributeValues": {":x": {"S": "x"}},
    }
    assert _error(lambda: c.query(**query, ProjectionExpression="a, b")) == refused
    assert _error(lambda: c.scan(TableName="Tab", IndexName="ByX", ProjectionExpression="b")) == (
        refused
    )
    legacy = {"x": {"AttributeValueList": [{"S": "x"}], "ComparisonOperator": "EQ"}}
    assert (
        _error(
            lambda: c.query(
                TableName="Tab",
                IndexName="ByX",
                KeyConditions=legacy,
                Select="SPECIFIC_ATTRIBUTES",
                AttributesToGet=["b"],
            )
        )
        == refused
    )
    # what it projects (its keys, the table's, the INCLUDE list) may be asked for
    got = c.query(**query, ProjectionExpression="a, p, x")["Items"]
    assert got == [{"p": {"S": "1"}, "x": {"S": "x"}, "a": {"S": "A"}}]


def test_update_table_index_create_needs_its_attribute_definitions(served: Served) -> None:
    c = served.client()
    _create(c, "Tab", ("p", "c"), {"p": "S", "c": "S"})
    for attr in ("x", "c"):  # even a key attribute the table already knows
        update = [{"Create": _index("ByAttr", attr)}]
        assert _error(
            lambda update=update: c.update_table(
                TableName="Tab", GlobalSecondaryIndexUpdates=update
            )
        ) == (
            "ValidationException",
            f"{_INVALID}Some index key attributes are not defined in AttributeDefinitions. "
            f"Keys: [{attr}], AttributeDefinitions: []",
        )
    assert "GlobalSecondaryIndexes" not in c.describe_table(TableName="Tab")["Table"]


def test_update_table_index_create_cannot_redefine_an_attribute_type(served: Served) -> None:
    c = served.client()
    _gsi_table(c)
    update = [{"Create": _index("ByXNumber", "x")}]
    assert _error(
        lambda: c.update_table(
            TableName="Things",
            AttributeDefinitions=_defs(x="N"),
            GlobalSecondaryIndexUpdates=update,
        )
    ) == (
        "ValidationException",
        f"{_INVALID}Attributes cannot be redefined. Please check that your attribute has the "
        "same type as previously defined. Existing schema: Schema:[SchemaElement: key{x:S:HASH}] "
        "New schema: Schema:[SchemaElement: key{x:N:HASH}]",
    )
    gsis = c.describe_table(TableName="Things")["Table"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsis] == ["ByX"]


def test_update_table_two_index_creations_or_deletions_are_limit_exceeded(
    served: Served,
) -> None:
    c = served.client()
    _gsi_table(c)
    limit = (
        "LimitExceededException",
        "Subscriber limit exceeded: Only 1 online index can be created or deleted "
        "simultaneously per table",
    )
    for updates in (
        [{"Create": _index("ByY", "y")}, {"Create": _index("ByZ", "z")}],
        [{"Create": _index("ByY", "y")}, {"Delete": {"IndexName": "ByX"}}],
    ):
        assert (
            _error(
                lambda updates=updates: c.update_table(
                    TableName="Things",
                    AttributeDefinitions=_defs(y="S", z="S"),
                    GlobalSecondaryIndexUpdates=updates,
                )
            )
            == limit
        )
    gsis = c.describe_table(TableName="Things")["Table"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsis] == ["ByX"]


def test_update_table_index_update_members_are_checked(served: Served) -> None:
    c = served.client()
    _gsi_table(c)

    def update(updates: list[Any]) -> tuple[str, str]:
        return _error(
            lambda: c.update_table(
                TableName="Things",
                AttributeDefinitions=_defs(y="S"),
                GlobalSecondaryIndexUpdates=updates,
            )
        )

    assert update([]) == (
        "ValidationException",
        "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, "
        "GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required",
    )
    assert update([{}]) == (
        "ValidationException",
        f"{_INVALID}One of GlobalSecondaryIndexUpdate.Update, GlobalSecondaryIndexUpdate.Create,"
        " GlobalSecondaryIndexUpdate.Delete must not be null",
    )
    code, message = update([{"Create": _index("ByY", "y"), "Delete": {"IndexName": "ByX"}}])
    assert code == "ValidationException" and message.startswith(f"{_INVALID}Only one of")
    assert update([{"Delete": {"IndexName": "ByX"}}, {"Delete": {"IndexName": "ByX"}}]) == (
        "ValidationException",
        f"{_INVALID}Only one global secondary index update per index is allowed "
        "simultaneously. Index: ByX",
    )
    gsis = c.describe_table(TableName="Things")["Table"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsis] == ["ByX"]


def test_update_table_refuses_a_bad_index_update_before_changing_anything(
    served: Served,
) -> None:
    c = served.client()
    _gsi_table(c)
    assert _error(
        lambda: c.update_table(
            TableName="Things",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
            GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "Nope"}}],
        )
    ) == ("ResourceNotFoundException", "Requested resource not found: Index: Nope")
    assert "StreamSpecification" not in c.describe_table(TableName="Things")["Table"]


def test_update_table_updates_a_global_index_provisioned_throughput(served: Served) -> None:
    c = served.client()
    gsi = {**_index("ByX", "x"), "ProvisionedThroughput": _units(1, 1)}
    _create(
        c,
        "Tab",
        ("p",),
        {"p": "S", "x": "S"},
        BillingMode="PROVISIONED",
        ProvisionedThroughput=_units(5, 5),
        GlobalSecondaryIndexes=[gsi],
    )
    out = c.update_table(
        TableName="Tab",
        GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "ByX", "ProvisionedThroughput": _units(3, 4)}}
        ],
    )
    (described,) = out["TableDescription"]["GlobalSecondaryIndexes"]
    assert described["ProvisionedThroughput"]["ReadCapacityUnits"] == 3
    assert described["ProvisionedThroughput"]["WriteCapacityUnits"] == 4
    (described,) = c.describe_table(TableName="Tab")["Table"]["GlobalSecondaryIndexes"]
    assert (described["ProvisionedThroughput"]["ReadCapacityUnits"], described["IndexStatus"]) == (
        3,
        "ACTIVE",
    )
    assert (
        c.describe_table(TableName="Tab")["Table"]["ProvisionedThroughput"]["ReadCapacityUnits"]
        == 5
    )
    missing = [{"Update": {"IndexName": "Nope", "ProvisionedThroughput": _units(3, 4)}}]
    assert _error(lambda: c.update_table(TableName="Tab", GlobalSecondaryIndexUpdates=missing)) == (
        "ValidationException",
        "This operation cannot be performed with given input values. Please contact DynamoDB "
        "service team for more info: Action Blocked: IndexUpdate",
    )


def _units(read: int, write: int) -> dict[str, int]:
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}


def test_index_filter_on_attributes_it_does_not_project_is_refused(served: Served) -> None:
    c = served.client()
    keys_only = {"ProjectionType": "KEYS_ONLY"}
    _create(
        c,
        "Tab",
        ("p", "c"),
        {"p": "S", "c": "S", "b": "S"},
        LocalSecondaryIndexes=[_index("ByB", "p", "b", projection=keys_only)],
        GlobalSecondaryIndexes=[_index("GlobalB", "b", projection=keys_only)],
    )
    for i in range(3):
        item = {"p": {"S": "P"}, "c": {"S": str(i)}, "b": {"S": str(9 - i)}, "d": {"S": str(i)}}
        c.put_item(TableName="Tab", Item=item)
    local: dict[str, Any] = {
        "TableName": "Tab",
        "IndexName": "ByB",
        "KeyConditionExpression": "p = :p",
        "FilterExpression": "d = :v",
        "ExpressionAttributeValues": {":p": {"S": "P"}, ":v": {"S": "1"}},
    }
    refused = (
        "ValidationException",
        f"{_INVALID}Secondary index ByB does not project one or more filter attributes: [d]",
    )
    assert _error(lambda: c.query(**local)) == refused
    assert _error(lambda: c.query(**local, Select="ALL_ATTRIBUTES")) == refused
    assert _error(lambda: c.query(**local, ProjectionExpression="d")) == refused
    assert _error(
        lambda: c.scan(
            TableName="Tab",
            IndexName="GlobalB",
            FilterExpression="d = :v",
            ExpressionAttributeValues={":v": {"S": "1"}},
        )
    ) == (
        "ValidationException",
        f"{_INVALID}Secondary index GlobalB does not project one or more filter attributes: [d]",
    )
    # the table's key is projected: a local index may filter on its sort key, and still
    # fetch an attribute it does not project from the table
    local["FilterExpression"] = "c = :v"
    assert c.query(**local, ProjectionExpression="d")["Items"] == [{"d": {"S": "1"}}]


def _multi(name: str, hashes: list[str], ranges: list[str]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": n, "KeyType": "HASH"} for n in hashes]
        + [{"AttributeName": n, "KeyType": "RANGE"} for n in ranges],
        "Projection": {"ProjectionType": "ALL"},
    }


def test_multi_attribute_index_keys_are_created_described_and_checked(served: Served) -> None:
    """DynamoDB's multi-attribute GSI keys: up to four HASH and four RANGE attributes,
    every HASH first, each attribute once and defined; shown as given."""
    c = served.client()
    _create(
        c,
        "Games",
        ("id",),
        {"id": "S", "player": "S", "season": "N", "round": "N", "opp": "S"},
        GlobalSecondaryIndexes=[_multi("ByPlayer", ["player", "season"], ["round", "opp"])],
    )
    table = c.describe_table(TableName="Games")["Table"]
    assert (
        table["GlobalSecondaryIndexes"][0]["KeySchema"]
        == _multi("ByPlayer", ["player", "season"], ["round", "opp"])["KeySchema"]
    )
    assert {d["AttributeName"] for d in table["AttributeDefinitions"]} == {
        "id",
        "player",
        "season",
        "round",
        "opp",
    }
    for schema, words in (
        (_multi("Many", [f"a{i}" for i in range(5)], [])["KeySchema"], "at most 4 HASH"),
        (_multi("Many", ["id"], [f"a{i}" for i in range(5)])["KeySchema"], "at most 4 RANGE"),
        (
            [
                {"AttributeName": "a0", "KeyType": "HASH"},
                {"AttributeName": "a1", "KeyType": "RANGE"},
                {"AttributeName": "a2", "KeyType": "HASH"},
            ],
            "every HASH key element must precede every RANGE",
        ),
        (_multi("Many", ["a0", "a0"], [])["KeySchema"], "same name"),
        (_multi("Many", ["a0", "zz"], [])["KeySchema"], "not defined in AttributeDefinitions"),
    ):
        code, msg = _error(
            lambda schema=schema: c.create_table(
                TableName="Refused",
                KeySchema=_key("id"),
                AttributeDefinitions=_defs(
                    **{"id": "S"}
                    | {k["AttributeName"]: "S" for k in schema if k["AttributeName"] != "zz"}
                ),
                BillingMode="PAY_PER_REQUEST",
                GlobalSecondaryIndexes=[{**_multi("Many", [], []), "KeySchema": schema}],
            )
        )
        assert code == "ValidationException" and words in msg, msg
    assert c.list_tables()["TableNames"] == ["Games"]


def test_multi_attribute_index_queries_as_dynamodb(served: Served) -> None:
    """Every HASH attribute with =, RANGE attributes left to right, each = but the last;
    a filter may not name a key attribute of the index; pages carry every key attribute;
    legacy KeyConditions work too; an index added later is backfilled."""
    c = served.client()
    _create(
        c,
        "Games",
        ("id",),
        {"id": "S", "player": "S", "season": "N", "round": "N", "opp": "S"},
        GlobalSecondaryIndexes=[_multi("ByPlayer", ["player", "season"], ["round", "opp"])],
    )
    for i, (rnd, opp) in enumerate([(1, "zed"), (1, "amy"), (2, "bob"), (10, "amy")]):
        c.put_item(
            TableName="Games",
            Item={
                "id": {"S": f"g{i}"},
                "player": {"S": "p"},
                "season": {"N": "2026"},
                "round": {"N": str(rnd)},
                "opp": {"S": opp},
                "score": {"N": str(i)},
            },
        )
    c.put_item(
        TableName="Games",
        Item={
            "id": {"S": "sparse"},
            "player": {"S": "p"},
            "season": {"N": "2026"},
            "round": {"N": "1"},
        },
    )
    values = {":p": {"S": "p"}, ":s": {"N": "2026"}, ":r": {"N": "1"}, ":o": {"S": "b"}}

    def query(text: str, **kw: Any) -> Any:
        used = {k: v for k, v in values.items() if k in text + kw.get("FilterExpression", "")}
        return c.query(
            TableName="Games",
            IndexName="ByPlayer",
            KeyConditionExpression=text,
            ExpressionAttributeValues=used,
            **kw,
        )

    got = query("player = :p AND season = :s")["Items"]
    assert [(i["round"]["N"], i["opp"]["S"]) for i in got] == [
        ("1", "amy"),
        ("1", "zed"),
        ("2", "bob"),
        ("10", "amy"),
    ]
    assert [
        i["opp"]["S"]
        for i in query("player = :p AND season = :s AND round = :r AND opp > :o")["Items"]
    ] == ["zed"]
    back = query("player = :p AND season = :s AND round <= :r", ScanIndexForward=False)
    assert [i["opp"]["S"] for i in back["Items"]] == ["zed", "amy"]
    for text, words in (
        ("player = :p", "every HASH attribute of the index key needs an equality"),
        ("player = :p AND season > :s", "HASH attribute season takes only an equality"),
        (
            "player = :p AND season = :s AND opp = :o",
            "RANGE attributes are conditioned left to right",
        ),
        (
            "player = :p AND season = :s AND round > :r AND opp = :o",
            "only the last conditioned RANGE",
        ),
    ):
        code, msg = _error(lambda text=text: query(text))
        assert code == "ValidationException" and words in msg, msg
    code, msg = _error(lambda: query("player = :p AND season = :s", FilterExpression="opp = :o"))
    assert (code, msg) == (
        "ValidationException",
        "Filter Expression can only contain non-primary key attributes: Primary key attribute: opp",
    )
    # paging: LastEvaluatedKey holds the table's and every index key attribute
    seen, start = [], None
    while True:
        page = query(
            "player = :p AND season = :s",
            Limit=1,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        seen += [i["id"]["S"] for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if start is None:
            break
        assert set(start) == {"id", "player", "season", "round", "opp"}
    assert seen == ["g1", "g0", "g2", "g3"]
    legacy = c.query(
        TableName="Games",
        IndexName="ByPlayer",
        KeyConditions={
            "player": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]},
            "season": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "2026"}]},
            "round": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "1"}]},
        },
    )
    assert [i["id"]["S"] for i in legacy["Items"]] == ["g2", "g3"]
    # added to a table in use: backfilled, then queryable
    c.update_table(
        TableName="Games",
        AttributeDefinitions=_defs(opp="S", season="N", round="N"),
        GlobalSecondaryIndexUpdates=[{"Create": _multi("ByOpp", ["opp", "season"], ["round"])}],
    )
    _eventually(
        lambda: all(
            g["IndexStatus"] == "ACTIVE"
            for g in c.describe_table(TableName="Games")["Table"]["GlobalSecondaryIndexes"]
        )
    )
    got = c.query(
        TableName="Games",
        IndexName="ByOpp",
        KeyConditionExpression="opp = :o AND season = :s",
        ExpressionAttributeValues={":o": {"S": "amy"}, ":s": {"N": "2026"}},
    )["Items"]
    assert [i["id"]["S"] for i in got] == ["g1", "g3"]
