"""DynamoDB's import API through the endpoint (ImportTable, DescribeImport, ListImports)
from a real S3-compatible server (S3Proxy; ``make test`` starts it and sets
STREAMKIT_TEST_S3), driven by boto3 as a DynamoDB user would, with what real DynamoDB
was measured to do."""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import zstandard
from amazon.ion import simpleion
from amazon.ion.core import IonType
from amazon.ion.simple_types import IonPyList
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.config import Config

from streamkit.server import _imports
from tests import s3_env
from tests.integration.test_dynamodb_api import Served, _post, enable_pitr
from tests.integration.test_dynamodb_conformance import _error, _eventually, _table, served

__all__ = ("served",)

pytestmark = pytest.mark.skipif(not os.environ.get(s3_env.S3_ENV), reason=s3_env.SKIP_REASON)

SCHEMA = {
    "KeySchema": [
        {"AttributeName": "p", "KeyType": "HASH"},
        {"AttributeName": "c", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "p", "AttributeType": "S"},
        {"AttributeName": "c", "AttributeType": "N"},
    ],
}
ITEMS: list[dict[str, Any]] = [
    {"p": "minimal", "c": Decimal(1)},
    {"p": "strings", "c": Decimal(2), "u": "zażółć 日本語 🦑", "esc": 'q" b\\ n\n t\t', "e": ""},
    {
        "p": "numbers",
        "c": Decimal(3),
        "big": Decimal("9.99999E+37"),
        "neg": Decimal("-17.5"),
        "tiny": Decimal("1E-130"),
        "digits38": Decimal("12345678901234567890123456789012345678"),
    },
    {"p": "binary", "c": Decimal(4), "b": Binary(b"\x00\x01\xfe\xff"), "e": Binary(b"")},
    {"p": "scalars", "c": Decimal(5), "yes": True, "no": False, "nothing": None},
    {
        "p": "sets",
        "c": Decimal(6),
        "ss": {"a", "b"},
        "ns": {Decimal(1), Decimal("3.5")},
        "bs": {Binary(b"\x00"), Binary(b"\x01")},
    },
    {"p": "docs", "c": Decimal(7), "l": ["s", Decimal(1), [], {}], "m": {"a": {"b": "c"}}},
    {"p": "names", "c": Decimal(8), "a.b": "dotted", "Size": "reserved", "n" * 255: "long"},
    {"p": "big", "c": Decimal(9), "blob": "y" * 380_000},
]


def _encoded(av: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as DynamoDB JSON (binary as base64 text)."""
    ((tag, value),) = av.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(value)).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(b)).decode() for b in value]}
    if tag == "L":
        return {"L": [_encoded(v) for v in value]}
    if tag == "M":
        return {"M": {k: _encoded(v) for k, v in value.items()}}
    return av


def _lines(items: list[dict[str, Any]]) -> list[str]:
    s = TypeSerializer()
    return [
        json.dumps({"Item": {k: _encoded(s.serialize(v)) for k, v in item.items()}})
        for item in items
    ]


def _ion(value: Any) -> Any:
    """A boto3 resource value in DynamoDB's Ion mapping (sets: annotated lists)."""
    if isinstance(value, Binary):
        return bytes(value)
    if isinstance(value, set):
        kind = type(next(iter(value)))
        annotation = {str: "$dynamodb_SS", Decimal: "$dynamodb_NS"}.get(kind, "$dynamodb_BS")
        members = [_ion(m) for m in value]
        return IonPyList.from_value(IonType.LIST, members, annotations=(annotation,))
    if isinstance(value, list):
        return [_ion(v) for v in value]
    if isinstance(value, dict):
        return {k: _ion(v) for k, v in value.items()}
    return value


def _ion_lines(items: list[dict[str, Any]]) -> list[str]:
    """Items as DynamoDB's ION export writes them: ``$ion_1_0 {Item:{...}}`` a line."""
    return [str(simpleion.dumps({"Item": _ion(item)}, binary=False)) for item in items]


def _bucket() -> tuple[Any, str]:
    s3 = s3_env.client()
    bucket = f"sk-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


def _put(s3: Any, bucket: str, key: str, lines: list[str], *, gz: bool = False) -> bytes:
    body = "".join(line + "\n" for line in lines).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if gz else body)
    return body


def _request(bucket: str, prefix: str, table: str, **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "S3BucketSource": {"S3Bucket": bucket, "S3KeyPrefix": prefix},
        "InputFormat": "DYNAMODB_JSON",
        "TableCreationParameters": {
            "TableName": table,
            "BillingMode": "PAY_PER_REQUEST",
            **SCHEMA,
        },
    }
    out.update(over)
    return out


def _start(c: Any, **request: Any) -> dict[str, Any]:
    return dict(c.import_table(**request)["ImportTableDescription"])


def _done(c: Any, arn: str) -> dict[str, Any]:
    def ended() -> bool:
        status = c.describe_import(ImportArn=arn)["ImportTableDescription"]["ImportStatus"]
        return bool(status != "IN_PROGRESS")

    _eventually(ended, timeout=60)
    return dict(c.describe_import(ImportArn=arn)["ImportTableDescription"])


def _scan(c: Any, table: str) -> list[dict[str, Any]]:
    d = TypeDeserializer()
    items: list[dict[str, Any]] = []
    start: dict[str, Any] = {}
    while True:
        page = c.scan(TableName=table, **start)
        items += [{k: d.deserialize(v) for k, v in i.items()} for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda i: (i["p"], i["c"]))
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


@pytest.fixture
def s3(served: Served, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """The S3 server the endpoint reads (found the usual AWS way) and a fresh bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ[s3_env.S3_ENV])
    return _bucket()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Imports stay IN_PROGRESS (before listing their objects) until the event is set."""
    release = threading.Event()
    listed = _imports._keys

    def waiting(client: Any, source: dict[str, Any]) -> list[str]:
        release.wait(30)
        return listed(client, source)

    monkeypatch.setattr(_imports, "_keys", waiting)
    yield release
    release.set()


def test_a_dynamodb_json_import_fills_a_new_table(served: Served, s3: tuple[Any, str]) -> None:
    client, bucket = s3
    c = served.client()
    body = _put(client, bucket, "in/data-0.json", ["", *_lines(ITEMS[:5]), "   "])
    body += _put(client, bucket, "in/data-1.json", _lines(ITEMS[5:]))
    client.put_object(Bucket=bucket, Key="in/empty.json", Body=b"")  # no items
    client.put_object(Bucket=bucket, Key="other/x.json", Body=b"not under the prefix")
    first = _start(c, **_request(bucket, "in/", "Imported", InputCompressionType="NONE"))
    assert first["ImportStatus"] == "IN_PROGRESS"
    assert first["ImportArn"].startswith(first["TableArn"] + "/import/")
    assert first["TableArn"].endswith(":table/Imported")
    assert first["ClientToken"]  # boto3 makes one up
    assert (first["ProcessedItemCount"], first["ImportedItemCount"], first["ErrorCount"]) == (
        0,
        0,
        0,
    )
    assert not {"EndTime", "ProcessedSizeBytes", "FailureCode"} & set(first)
    assert first["CloudWatchLogGroupArn"].startswith("arn:aws:logs:us-east-1:")
    assert first["TableCreationParameters"]["TableName"] == "Imported"
    done = _done(c, first["ImportArn"])
    assert done["ImportStatus"] == "COMPLETED", done
    assert "FailureCode" not in done
    assert done["ProcessedItemCount"] == done["ImportedItemCount"] == len(ITEMS)
    assert done["ErrorCount"] == 0
    assert done["ProcessedSizeBytes"] == len(body)  # blank lines are read, not items
    assert done["EndTime"] >= done["StartTime"]
    for member in ("ImportArn", "TableArn", "TableId", "ClientToken", "S3BucketSource"):
        assert done[member] == first[member]
    table = c.describe_table(TableName="Imported")["Table"]
    assert (table["TableStatus"], table["TableId"]) == ("ACTIVE", first["TableId"])
    assert _scan(c, "Imported") == sorted(ITEMS, key=lambda i: (i["p"], i["c"]))


def test_gzip_and_zstd_count_the_uncompressed_bytes(served: Served, s3: tuple[Any, str]) -> None:
    client, bucket = s3
    c = served.client()
    body = _put(client, bucket, "plain/0.json", _lines(ITEMS))
    _put(client, bucket, "gz/0.json.gz", _lines(ITEMS), gz=True)
    # two zstd frames, one after the other (as a streaming compressor may write them)
    half = body.index(b"\n", len(body) // 2) + 1
    zstd = zstandard.ZstdCompressor()
    frames = zstd.compress(body[:half]) + zstd.compress(body[half:])
    client.put_object(Bucket=bucket, Key="zst/0.json.zst", Body=frames)
    plain = _start(c, **_request(bucket, "plain/", "Plain"))  # no InputCompressionType
    gz = _start(c, **_request(bucket, "gz/", "Zipped", InputCompressionType="GZIP"))
    zs = _start(c, **_request(bucket, "zst/", "Zstd", InputCompressionType="ZSTD"))
    assert plain["InputCompressionType"] == "NONE" and zs["InputCompressionType"] == "ZSTD"
    plain, gz, zs = (_done(c, d["ImportArn"]) for d in (plain, gz, zs))
    assert plain["ProcessedSizeBytes"] == gz["ProcessedSizeBytes"] == len(body)
    assert zs["ProcessedSizeBytes"] == len(body)
    for done in (gz, zs):
        assert done["ImportStatus"] == "COMPLETED" and done["ImportedItemCount"] == len(ITEMS)
    assert _scan(c, "Zipped") == _scan(c, "Plain") == _scan(c, "Zstd")


def test_an_object_not_in_its_compression_fails_the_import(
    served: Served, s3: tuple[Any, str]
) -> None:
    client, bucket = s3
    c = served.client()
    _put(client, bucket, "notzst/0.json", _lines(ITEMS))  # plain, though ZSTD is named
    done = _done(
        c,
        _start(c, **_request(bucket, "notzst/", "NotZstd", InputCompressionType="ZSTD"))[
            "ImportArn"
        ],
    )
    assert (done["ImportStatus"], done["FailureCode"]) == ("FAILED", "ItemValidationError")
    assert done["ErrorCount"] == 1 and done["ImportedItemCount"] == 0


def test_csv_keys_are_typed_by_their_definitions_and_the_rest_are_strings(
    served: Served, s3: tuple[Any, str]
) -> None:
    client, bucket = s3
    c = served.client()
    _put(client, bucket, "h/0.csv", ["p,c,name,age", "a,1,Ann,30", "", 'b,2,"Bo, ""B""",'])
    _put(client, bucket, "h/1.csv", ["c,p,age", "3,c,7"])  # each object has its header
    done = _done(c, _start(c, **_request(bucket, "h/", "Csv", InputFormat="CSV"))["ImportArn"])
    assert (done["ImportStatus"], done["ImportedItemCount"]) == ("COMPLETED", 3)
    assert _scan(c, "Csv") == [
        {"p": "a", "c": 1, "name": "Ann", "age": "30"},
        {"p": "b", "c": 2, "name": 'Bo, "B"'},  # an empty value is no attribute
        {"p": "c", "c": 3, "age": "7"},
    ]
    # HeaderList: every line is data; a delimiter; an index's key column is typed too
    _put(client, bucket, "l/0.csv", ["a;1;5;x", "b;2;6;y"])
    params = _request(bucket, "l/", "CsvList")["TableCreationParameters"]
    params["AttributeDefinitions"] = [
        *SCHEMA["AttributeDefinitions"],
        {"AttributeName": "score", "AttributeType": "N"},
    ]
    params["GlobalSecondaryIndexes"] = [
        {
            "IndexName": "by_score",
            "KeySchema": [{"AttributeName": "score", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    options = {"Csv": {"Delimiter": ";", "HeaderList": ["p", "c", "score", "v"]}}
    request = _request(bucket, "l/", "CsvList", InputFormat="CSV", InputFormatOptions=options)
    request["TableCreationParameters"] = params
    started = _start(c, **request)
    assert started["InputFormatOptions"] == options
    assert _done(c, started["ImportArn"])["ImportedItemCount"] == 2
    assert _scan(c, "CsvList") == [
        {"p": "a", "c": 1, "score": 5, "v": "x"},
        {"p": "b", "c": 2, "score": 6, "v": "y"},
    ]
    found = c.query(
        TableName="CsvList",
        IndexName="by_score",
        KeyConditionExpression="score = :s",
        ExpressionAttributeValues={":s": {"N": "6"}},
    )["Items"]
    assert [i["p"]["S"] for i in found] == ["b"]


def test_a_prefix_without_objects_completes_with_an_empty_table(
    served: Served, s3: tuple[Any, str]
) -> None:
    _, bucket = s3
    c = served.client()
    done = _done(c, _start(c, **_request(bucket, "nothing/", "Empty"))["ImportArn"])
    assert (done["ImportStatus"], done["ProcessedItemCount"], done["ErrorCount"]) == (
        "COMPLETED",
        0,
        0,
    )
    assert "ProcessedSizeBytes" not in done and "FailureCode" not in done
    assert c.describe_table(TableName="Empty")["Table"]["TableStatus"] == "ACTIVE"
    assert _scan(c, "Empty") == []


def test_a_bad_line_abandons_the_rest_of_its_object_only(
    served: Served, s3: tuple[Any, str]
) -> None:
    client, bucket = s3
    c = served.client()
    good = [{"p": "good", "c": Decimal(i)} for i in range(5)]
    _put(client, bucket, "bad/0.json", _lines(good[:2]))
    _put(client, bucket, "bad/1.json", [*_lines(good[2:3]), '{"NotAnItem": {}}', *_lines(good)])
    _put(client, bucket, "bad/2.json", ['{"Item": {"p": {"S": "x"}}}'])  # no sort key
    _put(client, bucket, "bad/3.json", ['{"Item": {"p": {"S": "x"}, "c": {"S": "1"}}}'])
    _put(client, bucket, "bad/4.json", ['{"Item": ', *_lines(good)])
    _put(client, bucket, "bad/5.json", _lines(good[3:]))
    done = _done(c, _start(c, **_request(bucket, "bad/", "Bad"))["ImportArn"])
    # as DynamoDB: FAILED, its table kept with what passed
    assert (done["ImportStatus"], done["FailureCode"]) == ("FAILED", "ItemValidationError")
    assert "bad/1.json" in done["FailureMessage"]
    assert (done["ErrorCount"], done["ImportedItemCount"], done["ProcessedItemCount"]) == (4, 5, 9)
    assert c.describe_table(TableName="Bad")["Table"]["TableStatus"] == "ACTIVE"
    assert _scan(c, "Bad") == good


def test_the_counters_count_writes_not_surviving_items(served: Served, s3: tuple[Any, str]) -> None:
    client, bucket = s3
    c = served.client()
    dups = [{"p": "d", "c": Decimal(n % 3), "which": n} for n in range(5)]  # 3 keys
    _put(client, bucket, "dup/0.json", _lines(dups))
    done = _done(c, _start(c, **_request(bucket, "dup/", "Dups"))["ImportArn"])
    assert (done["ImportedItemCount"], done["ProcessedItemCount"]) == (5, 5)
    assert [i["which"] for i in _scan(c, "Dups")] == [3, 4, 2]  # the later line wins


def test_an_import_uses_none_of_a_provisioned_tables_capacity(
    served: Served, s3: tuple[Any, str]
) -> None:
    """As DynamoDB's: 200 items of 2 KB (400 write units) into a table with 1 write unit a
    second are imported at once, and the table's own unit is left for its callers."""
    client, bucket = s3
    c = served.client()
    items = [{"p": "load", "c": Decimal(n), "pad": "x" * 2000} for n in range(200)]
    _put(client, bucket, "prov/0.json", _lines(items))
    request = _request(bucket, "prov/", "Slow")
    request["TableCreationParameters"].update(
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 100, "WriteCapacityUnits": 1},
    )
    started = time.monotonic()
    done = _done(c, _start(c, **request)["ImportArn"])
    assert time.monotonic() - started < 20  # (a unit a second would need 400 s)
    assert (done["ImportStatus"], done["ImportedItemCount"]) == ("COMPLETED", 200)
    assert len(_scan(c, "Slow")) == 200
    c.put_item(TableName="Slow", Item={"p": {"S": "mine"}, "c": {"N": "1"}})


def test_while_it_runs(served: Served, s3: tuple[Any, str], held: threading.Event) -> None:
    client, bucket = s3
    c = served.client()
    _put(client, bucket, "run/0.json", _lines(ITEMS[:3]))
    request = _request(bucket, "run/", "Running", ClientToken="tok-1")
    first = _start(c, **request)
    arn = first["ImportArn"]
    now = c.describe_import(ImportArn=arn)["ImportTableDescription"]
    assert now["ImportStatus"] == "IN_PROGRESS" and "EndTime" not in now
    assert c.describe_table(TableName="Running")["Table"]["TableStatus"] == "CREATING"
    listed = c.list_imports(TableArn=first["TableArn"])["ImportSummaryList"]
    assert [(s["ImportArn"], s["ImportStatus"]) for s in listed] == [(arn, "IN_PROGRESS")]
    assert _error(lambda: c.delete_table(TableName="Running"))[0] == "ResourceInUseException"
    # the same token: only another table conflicts; another source is the same import
    again = _start(c, **request)
    assert (again["ImportArn"], again["TableId"]) == (arn, first["TableId"])
    other = {
        **request,
        "S3BucketSource": {"S3Bucket": "some-other-bucket", "S3KeyPrefix": "x/"},
        "InputCompressionType": "GZIP",
        "InputFormat": "CSV",
    }
    replay = _start(c, **other)
    assert replay["ImportArn"] == arn and replay["S3BucketSource"] == first["S3BucketSource"]
    renamed = {**request, "TableCreationParameters": {**request["TableCreationParameters"]}}
    renamed["TableCreationParameters"]["TableName"] = "Elsewhere"
    code, message = _error(lambda: c.import_table(**renamed))
    assert (code, message) == (
        "ImportConflictException",
        "Duplicate request detected with conflicting parameters",
    )
    held.set()
    done = _done(c, arn)
    assert (done["ImportStatus"], done["ImportedItemCount"]) == ("COMPLETED", 3)
    assert c.describe_table(TableName="Running")["Table"]["TableStatus"] == "ACTIVE"
    # once it has ended, its table exists: refused before the token is looked at
    code, message = _error(lambda: c.import_table(**request))
    assert code == "ResourceInUseException" and "Table already exists" in message
    c.delete_table(TableName="Running")
    assert _start(c, **other)["ImportArn"] == arn  # its table gone: the token again


def test_an_existing_table_or_a_missing_bucket(served: Served, s3: tuple[Any, str]) -> None:
    _, bucket = s3
    c = served.client()
    _table(c, "Taken")
    code, message = _error(lambda: c.import_table(**_request(bucket, "x/", "Taken")))
    assert code == "ResourceInUseException" and "Table already exists: Taken" in message
    gone = _start(c, **_request(f"sk-missing-{uuid.uuid4().hex[:8]}", "x/", "NoBucket"))
    done = _done(c, gone["ImportArn"])
    assert (done["ImportStatus"], done["FailureCode"]) == ("FAILED", "S3NoSuchBucket")
    assert done["FailureMessage"] and done["ImportedItemCount"] == 0
    assert _error(lambda: c.describe_table(TableName="NoBucket"))[0] == (
        "ResourceNotFoundException"
    )


def test_requests_refused(served: Served) -> None:
    c = served.client(config=Config(parameter_validation=False))  # as DynamoDB gets them
    base = _request("bucket", "p/", "Refused")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"InputFormatOptions": {"Csv": {"Delimiter": ","}}}, "InputFormatOptions"),
        ({"InputFormat": "XML"}, "inputFormat"),
        ({"InputCompressionType": "BZIP2"}, "inputCompressionType"),
        ({"S3BucketSource": {"S3Bucket": "-nope!"}}, "s3Bucket"),
        ({"S3BucketSource": {"S3Bucket": "b" * 256}}, "s3Bucket"),
        ({"S3BucketSource": {"S3Bucket": "ok", "S3KeyPrefix": "p" * 1025}}, "s3KeyPrefix"),
        ({"ClientToken": "a$b"}, "clientToken"),
        ({"ClientToken": ""}, "clientToken"),
        ({"TableCreationParameters": {**base["TableCreationParameters"], "TableName": "x"}}, ""),
        ({"InputFormat": "CSV", "InputFormatOptions": {"Csv": {"Delimiter": "#"}}}, "Delimiter"),
    ]
    for over, words in cases:
        code, message = _error(lambda over=over: c.import_table(**{**base, **over}))
        assert code == "ValidationException" and words in message, (over, message)
    assert c.list_imports()["ImportSummaryList"] == []
    assert _error(lambda: c.describe_table(TableName="Refused"))[0] == "ResourceNotFoundException"
    # ClientToken is required (boto3 always makes one up: a raw request has none)
    status, answer = _post(served.port, "DynamoDB_20120810.ImportTable", json.dumps(base).encode())
    assert status == 400 and answer["__type"].endswith("#ValidationException")
    assert "clientToken" in answer["message"]


def test_describe_and_list(served: Served, s3: tuple[Any, str]) -> None:
    client, bucket = s3
    c = served.client()
    _put(client, bucket, "two/0.json", _lines(ITEMS[:1]))
    arns = [_start(c, **_request(bucket, "two/", f"Two{i}"))["ImportArn"] for i in range(3)]
    done = [_done(c, arn) for arn in arns]
    summaries = c.list_imports()["ImportSummaryList"]
    assert [s["ImportArn"] for s in summaries] == arns
    assert set(summaries[0]) == {
        "ImportArn",
        "ImportStatus",
        "TableArn",
        "S3BucketSource",
        "CloudWatchLogGroupArn",
        "InputFormat",
        "StartTime",
        "EndTime",
    }
    only = c.list_imports(TableArn=done[1]["TableArn"])["ImportSummaryList"]
    assert [s["ImportArn"] for s in only] == [arns[1]]
    paged, token = [], None
    while True:
        page = c.list_imports(PageSize=1, **({"NextToken": token} if token else {}))
        assert len(page["ImportSummaryList"]) == 1
        paged += [s["ImportArn"] for s in page["ImportSummaryList"]]
        token = page.get("NextToken")
        if token is None:
            break
        assert len(token) >= 112
    assert paged == arns
    assert _error(lambda: c.list_imports(NextToken="0" * 112))[0] == "ValidationException"
    assert _error(lambda: c.list_imports(PageSize=26))[0] == "ValidationException"
    table_arn = done[0]["TableArn"]
    unknown = f"{table_arn}/import/01658528578619-0badf00d"
    assert _error(lambda: c.describe_import(ImportArn=unknown))[0] == "ImportNotFoundException"
    short = table_arn.rsplit("/", 1)[0] + "/x/import/01658528578619-c4d4e311"
    code, message = _error(lambda: c.describe_import(ImportArn=short))
    assert code == "ValidationException" and "Invalid Import ARN" in message


def test_an_ion_import_fills_a_new_table(served: Served, s3: tuple[Any, str]) -> None:
    """InputFormat ION: each value an ``{Item:{...}}`` struct in DynamoDB's Ion mapping
    (as its export writes them, one a line; a value over several lines reads too);
    ProcessedSizeBytes counts the uncompressed bytes."""
    client, bucket = s3
    c = served.client()
    lines = _ion_lines(ITEMS)
    assert all(line.startswith("$ion_1_0 {Item:{") for line in lines)
    # the example of DynamoDB's documentation, and a value written over several lines
    documented = (
        '$ion_1_0 {Item:{Authors:$dynamodb_SS::["Author1","Author2"],'
        'Dimensions:"8.5 x 11.0 x 1.5",ISBN:"333-3333333333",p:"doc",c:103.,'
        'InPublication:false,PageCount:6d2,Price:2d3,ProductCategory:"Book",'
        'Title:"Book 103 Title"}}'
    )
    spread = '$ion_1_0\n{\n  Item: {\n    p: "spread",\n    c: 2d-1\n  }\n}'
    first, second = ["", *lines[:5], "   ", documented], [*lines[5:], spread]
    body = _put(client, bucket, "ion/data-0.ion", first)
    body += _put(client, bucket, "ion/data-1.ion", second)
    _put(client, bucket, "gz/data-0.ion.gz", [*first, *second], gz=True)
    plain = _start(c, **_request(bucket, "ion/", "Ion", InputFormat="ION"))
    assert plain["InputFormat"] == "ION"
    gz = _start(
        c, **_request(bucket, "gz/", "IonZipped", InputFormat="ION", InputCompressionType="GZIP")
    )
    plain, gz = _done(c, plain["ImportArn"]), _done(c, gz["ImportArn"])
    for done in (plain, gz):
        assert done["ImportStatus"] == "COMPLETED", done
        assert done["ProcessedItemCount"] == done["ImportedItemCount"] == len(ITEMS) + 2
        assert done["ErrorCount"] == 0 and "FailureCode" not in done
    assert plain["ProcessedSizeBytes"] == gz["ProcessedSizeBytes"] == len(body)
    expected = [
        *ITEMS,
        {
            "p": "doc",
            "c": 103,
            "Authors": {"Author1", "Author2"},
            "Dimensions": "8.5 x 11.0 x 1.5",
            "ISBN": "333-3333333333",
            "InPublication": False,
            "PageCount": 600,
            "Price": 2000,
            "ProductCategory": "Book",
            "Title": "Book 103 Title",
        },
        {"p": "spread", "c": Decimal("0.2")},
    ]
    assert (
        _scan(c, "Ion") == _scan(c, "IonZipped") == sorted(expected, key=lambda i: (i["p"], i["c"]))
    )


def test_a_bad_ion_value_abandons_the_rest_of_its_object_only(
    served: Served, s3: tuple[Any, str]
) -> None:
    client, bucket = s3
    c = served.client()
    good = [{"p": "good", "c": Decimal(i)} for i in range(5)]
    _put(client, bucket, "bad/0.ion", _ion_lines(good[:2]))
    _put(client, bucket, "bad/1.ion", [*_ion_lines(good[2:3]), "{NotAnItem:{}}", *_ion_lines(good)])
    _put(client, bucket, "bad/2.ion", ['{Item:{p:"x"}}'])  # no sort key
    _put(client, bucket, "bad/3.ion", ['{Item:{p:"x",c:1.5e0}}'])  # a float: no DynamoDB type
    _put(client, bucket, "bad/4.ion", ["{Item:", *_ion_lines(good)])  # not Ion
    _put(client, bucket, "bad/5.ion", ['{Item:{p:"x",c:1,s:$dynamodb_SS::[1]}}'])
    _put(client, bucket, "bad/6.ion", _ion_lines(good[3:]))
    request = _request(bucket, "bad/", "BadIon", InputFormat="ION")
    done = _done(c, _start(c, **request)["ImportArn"])
    assert (done["ImportStatus"], done["FailureCode"]) == ("FAILED", "ItemValidationError")
    assert "bad/1.ion" in done["FailureMessage"]
    assert (done["ErrorCount"], done["ImportedItemCount"], done["ProcessedItemCount"]) == (
        5,
        5,
        10,
    )
    assert _scan(c, "BadIon") == good


def test_an_ion_export_imports_back_as_it_was(served: Served, s3: tuple[Any, str]) -> None:
    """ExportTableToPointInTime as ION, then ImportTable of its data files (ION, GZIP):
    the same items, every type."""
    _, bucket = s3
    c = served.client()
    c.create_table(TableName="Source", BillingMode="PAY_PER_REQUEST", **SCHEMA)
    enable_pitr(c, "Source")  # (an export reads a table's point-in-time archive)
    serializer = TypeSerializer()
    for item in ITEMS:
        c.put_item(TableName="Source", Item={k: serializer.serialize(v) for k, v in item.items()})
    arn = c.describe_table(TableName="Source")["Table"]["TableArn"]
    export = c.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="exported", ExportFormat="ION"
    )["ExportDescription"]

    def exported() -> bool:
        desc = c.describe_export(ExportArn=export["ExportArn"])["ExportDescription"]
        return bool(desc["ExportStatus"] == "COMPLETED")

    _eventually(exported)
    export_id = export["ExportArn"].rsplit("/", 1)[1]
    request = _request(
        bucket,
        f"exported/AWSDynamoDB/{export_id}/data/",
        "RoundTrip",
        InputFormat="ION",
        InputCompressionType="GZIP",
    )
    done = _done(c, _start(c, **request)["ImportArn"])
    assert (done["ImportStatus"], done["ImportedItemCount"]) == ("COMPLETED", len(ITEMS))
    assert (
        _scan(c, "RoundTrip") == _scan(c, "Source") == sorted(ITEMS, key=lambda i: (i["p"], i["c"]))
    )
