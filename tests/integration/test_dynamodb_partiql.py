"""PartiQL through the DynamoDB endpoint, driven by boto3: ExecuteStatement (paging,
ConsumedCapacity, errors), BatchExecuteStatement and ExecuteTransaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.test_dynamodb_api import Served, _served, _users


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    with _served(tmp_path, f"local://{tmp_path}/log?poll_interval=0.02") as s:
        c = Served.client(s)
        _users(c)
        yield c


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    e = err.value.response["Error"]
    return str(e["Code"]), str(e["Message"])


def test_execute_statement(client: Any) -> None:
    for n in range(5):
        out = client.execute_statement(
            Statement="INSERT INTO Users VALUE {'id': ?, 'n': ?, 'tags': <<'a'>>}",
            Parameters=[{"S": "u1"}, {"N": str(n)}],
        )
        assert out["Items"] == []
    rows = client.execute_statement(
        Statement="SELECT n, tags FROM Users WHERE id = ? AND n >= ?",
        Parameters=[{"S": "u1"}, {"N": "3"}],
        ConsistentRead=True,
        ReturnConsumedCapacity="TOTAL",
    )
    assert rows["Items"] == [
        {"n": {"N": "3"}, "tags": {"SS": ["a"]}},
        {"n": {"N": "4"}, "tags": {"SS": ["a"]}},
    ]
    assert rows["ConsumedCapacity"]["TableName"] == "Users"
    assert rows["ConsumedCapacity"]["CapacityUnits"] > 0
    # paging: Limit items evaluated per page, an opaque NextToken
    seen, token, pages = [], None, 0
    while True:
        kw = {"NextToken": token} if token else {}
        page = client.execute_statement(Statement='SELECT n FROM "Users"', Limit=2, **kw)
        seen += [int(i["n"]["N"]) for i in page["Items"]]
        pages += 1
        token = page.get("NextToken")
        if token is None:
            break
    assert sorted(seen) == [0, 1, 2, 3, 4] and pages == 3
    new = client.execute_statement(
        Statement="UPDATE Users SET c = 1 WHERE id = 'u1' AND n = 0 RETURNING ALL NEW *"
    )
    assert new["Items"] == [
        {"id": {"S": "u1"}, "n": {"N": "0"}, "c": {"N": "1"}, "tags": {"SS": ["a"]}}
    ]


def test_execute_statement_errors(client: Any) -> None:
    client.execute_statement(Statement="INSERT INTO Users VALUE {'id': 'u1', 'n': 1, 'v': 5}")
    cases = [
        ("INSERT INTO Users VALUE {'id': 'u1', 'n': 1}", "DuplicateItemException",
         "Duplicate primary key exists in table"),
        ("UPDATE Users SET v = 1 WHERE id = 'u1' AND n = 2", "ConditionalCheckFailedException",
         "The conditional request failed"),
        ("SELECT * FROM Users WHERE", "ValidationException",
         "Statement wasn't well formed, can't be processed: Unexpected term"),
        ("DELETE FROM Users WHERE id = 'u1'", "ValidationException",
         "Where clause does not contain a mandatory equality on all key attributes"),
        ("SELECT * FROM Nope", "ResourceNotFoundException",
         "Requested resource not found: Table: Nope not found"),
        ("SELECT * FROM Users WHERE id = ?", "ValidationException",
         "Number of parameters in request and statement don't match."),
    ]  # fmt: skip
    for statement, code, message in cases:
        with pytest.raises(ClientError) as err:
            client.execute_statement(Statement=statement)
        assert _error(err) == (code, message), statement
    with pytest.raises(ClientError) as err:
        client.execute_statement(
            Statement="DELETE FROM Users WHERE id = 'u1' AND n = 1 AND v = 6",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert err.value.response["Item"] == {"id": {"S": "u1"}, "n": {"N": "1"}, "v": {"N": "5"}}
    with pytest.raises(ClientError) as err:
        client.execute_statement(Statement="SELECT * FROM Users", NextToken="garbage")
    assert _error(err) == ("ValidationException", "Invalid NextToken")


def test_batch_execute_statement(client: Any) -> None:
    out = client.batch_execute_statement(
        Statements=[
            {"Statement": "INSERT INTO Users VALUE {'id': ?, 'n': 1}", "Parameters": [{"S": "a"}]},
            {"Statement": "INSERT INTO Users VALUE {'id': 'b', 'n': 1}"},
            {"Statement": "INSERT INTO Users VALUE {'id': 'a', 'n': 1}"},
            {"Statement": "UPDATE Users SET x = 1 WHERE id = 'zz' AND n = 1"},
        ],
        ReturnConsumedCapacity="TOTAL",
    )
    responses = out["Responses"]
    assert [r.get("Error", {}).get("Code") for r in responses] == [
        None, None, "DuplicateItem", "ConditionalCheckFailed",
    ]  # fmt: skip
    assert responses[2]["Error"]["Message"] == "Duplicate primary key exists in table"
    assert all(r["TableName"] == "Users" for r in responses)
    assert out["ConsumedCapacity"][0]["CapacityUnits"] >= 2
    reads = client.batch_execute_statement(
        Statements=[
            {"Statement": "SELECT id FROM Users WHERE id = 'a' AND n = 1"},
            {"Statement": "SELECT id FROM Users WHERE id = 'none' AND n = 1"},
            {"Statement": "SELECT * FROM Users WHERE"},
        ]
    )["Responses"]
    assert reads[0] == {"TableName": "Users", "Item": {"id": {"S": "a"}}}
    assert reads[1] == {"TableName": "Users"}
    assert reads[2]["Error"] == {
        "Code": "ValidationError",
        "Message": "Statement wasn't well formed, can't be processed: Unexpected term",
    }
    with pytest.raises(ClientError) as err:
        client.batch_execute_statement(
            Statements=[{"Statement": "SELECT * FROM Users WHERE id = 'a' AND n = 1"}] * 26
        )
    assert _error(err)[0] == "ValidationException"


def test_execute_transaction(client: Any) -> None:
    client.execute_statement(Statement="INSERT INTO Users VALUE {'id': 'a', 'n': 1, 'v': 1}")
    client.execute_statement(Statement="INSERT INTO Users VALUE {'id': 'e', 'n': 1, 'v': 1}")
    client.execute_transaction(
        TransactStatements=[
            {"Statement": "INSERT INTO Users VALUE {'id': ?, 'n': 2}", "Parameters": [{"S": "b"}]},
            {"Statement": "UPDATE Users SET v = v + 1 WHERE id = 'a' AND n = 1"},
            {"Statement": "EXISTS(SELECT * FROM Users WHERE id = 'e' AND n = 1 AND v = 1)"},
        ]
    )
    got = client.execute_transaction(
        TransactStatements=[
            {"Statement": "SELECT v FROM Users WHERE id = 'a' AND n = 1"},
            {"Statement": "SELECT * FROM Users WHERE id = 'b' AND n = 2"},
            {"Statement": "SELECT * FROM Users WHERE id = 'c' AND n = 2"},
        ]
    )["Responses"]
    assert got == [{"Item": {"v": {"N": "2"}}}, {"Item": {"id": {"S": "b"}, "n": {"N": "2"}}}, {}]
    with pytest.raises(ClientError) as err:
        client.execute_transaction(
            TransactStatements=[
                {"Statement": "UPDATE Users SET v = 9 WHERE id = 'a' AND n = 1"},
                {"Statement": "INSERT INTO Users VALUE {'id': 'b', 'n': 2}"},
            ]
        )
    assert _error(err)[0] == "TransactionCanceledException"
    reasons = err.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "DuplicateItem"]
    assert client.get_item(TableName="Users", Key={"id": {"S": "a"}, "n": {"N": "1"}})["Item"][
        "v"
    ] == {"N": "2"}  # nothing of the cancelled transaction was written
    with pytest.raises(ClientError) as err:
        client.execute_transaction(TransactStatements=[{"Statement": "SELECT * FROM Users WHERE"}])
    assert _error(err) == (
        "ValidationException",
        "Validation failed in TransactStatements[0]: Statement wasn't well formed, "
        "can't be processed: Unexpected term",
    )
