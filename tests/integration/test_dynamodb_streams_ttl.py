"""Where the DynamoDB Streams API and TTL used to answer differently from DynamoDB: each
test is one difference, fixed, driven by boto3 as a DynamoDB user would."""

from __future__ import annotations

from typing import Any

from botocore.config import Config

from tests.integration.test_dynamodb_api import Served
from tests.integration.test_dynamodb_conformance import _error, _eventually, _table, served

__all__ = ("served",)

_KEYS_ONLY = {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
_NEW_IMAGE = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}


def _shards(streams: Any, arn: str) -> list[Any]:
    return list(streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"])


def _read_shard(streams: Any, iterator: str, **kw: Any) -> list[Any]:
    """Every record from ``iterator`` on, up to the shard's current end."""
    out: list[Any] = []
    while iterator:
        got = streams.get_records(ShardIterator=iterator, **kw)
        out.extend(got["Records"])
        if not got["Records"]:
            break
        iterator = got.get("NextShardIterator")
    return out


def test_at_sequence_number_accepts_each_shards_starting_sequence_number(
    served: Served,
) -> None:
    """DescribeStream's StartingSequenceNumber of every shard is a valid AT_SEQUENCE_NUMBER
    (readers such as the KCL start there), and reading from it gives the shard's records
    even when the shard holds no record with that very number."""
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, "Before", StreamSpecification=_KEYS_ONLY)
    for i in range(3):
        c.put_item(TableName="Before", Item={"id": {"S": f"b{i}"}})  # numbers 1..3 go here
    _table(c, StreamSpecification=_KEYS_ONLY)
    keys = {f"k{i}" for i in range(8)}
    for k in sorted(keys):
        c.put_item(TableName="Users", Item={"id": {"S": k}})
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]

    def read_all() -> set[str]:
        got = set()
        for shard in _shards(streams, arn):
            it = streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shard["ShardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=shard["SequenceNumberRange"]["StartingSequenceNumber"],
            )["ShardIterator"]
            got |= {r["dynamodb"]["Keys"]["id"]["S"] for r in _read_shard(streams, it)}
        return got

    _eventually(lambda: read_all() == keys)


def test_after_sequence_number_of_a_record_reads_the_records_after_it(served: Served) -> None:
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, StreamSpecification=_KEYS_ONLY)
    for i in range(6):
        c.put_item(TableName="Users", Item={"id": {"S": f"k{i}"}})
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    shards = _shards(streams, arn)

    def trim_horizon(shard: Any) -> list[Any]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        return _read_shard(streams, it)

    _eventually(lambda: sum(len(trim_horizon(s)) for s in shards) == 6)
    for shard in shards:
        records = trim_horizon(shard)
        for i, record in enumerate(records):
            it = streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shard["ShardId"],
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                SequenceNumber=record["dynamodb"]["SequenceNumber"],
            )["ShardIterator"]
            assert _read_shard(streams, it) == records[i + 1 :]
        # the number just below a record's is not a record of the shard: AT it reads on
        # from that record, as DynamoDB Streams does
        if records:
            below = f"{int(records[0]['dynamodb']['SequenceNumber']) - 1:021d}"
            it = streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shard["ShardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=max(below, shard["SequenceNumberRange"]["StartingSequenceNumber"]),
            )["ShardIterator"]
            assert _read_shard(streams, it) == records


def test_get_records_returns_at_most_one_megabyte(served: Served) -> None:
    """GetRecords gives at most 1 MB of records; the next iterator carries on from there."""
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, sort=True, StreamSpecification=_NEW_IMAGE)
    big = "x" * 350_000
    for n in range(5):  # one partition key: one shard
        c.put_item(
            TableName="Users", Item={"id": {"S": "same"}, "n": {"N": str(n)}, "v": {"S": big}}
        )
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]

    def pages(**kw: Any) -> list[list[Any]]:
        out = []
        for shard in _shards(streams, arn):
            it = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while it:
                got = streams.get_records(ShardIterator=it, **kw)
                if not got["Records"]:
                    break
                out.append(got["Records"])
                it = got.get("NextShardIterator")
        return out

    _eventually(lambda: len(pages(Limit=1)) == 5)  # all five published
    got = pages()
    assert [len(p) for p in got] == [2, 2, 1]
    for page in got:
        assert sum(r["dynamodb"]["SizeBytes"] for r in page) <= 1 << 20
    assert [r["dynamodb"]["Keys"]["n"]["N"] for p in got for r in p] == [str(n) for n in range(5)]


def test_trim_horizon_of_a_re_enabled_stream_starts_at_its_own_first_record(
    served: Served,
) -> None:
    """A stream turned on again holds only what was written since: TRIM_HORIZON's first
    GetRecords gives its first record, not an empty page (readers take an empty page for
    the end of the shard)."""
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, sort=True, StreamSpecification=_KEYS_ONLY)
    first = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    for n in range(5):
        c.put_item(TableName="Users", Item={"id": {"S": "same"}, "n": {"N": str(n)}})
    _eventually(
        lambda: (
            sum(
                len(
                    _read_shard(
                        streams,
                        streams.get_shard_iterator(
                            StreamArn=first, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
                        )["ShardIterator"],
                    )
                )
                for s in _shards(streams, first)
            )
            == 5
        )
    )
    c.update_table(TableName="Users", StreamSpecification={"StreamEnabled": False})
    c.update_table(TableName="Users", StreamSpecification=_KEYS_ONLY)
    second = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    c.put_item(TableName="Users", Item={"id": {"S": "same"}, "n": {"N": "9"}})

    def first_pages() -> list[list[Any]]:
        out = []
        for s in _shards(streams, second):
            it = streams.get_shard_iterator(
                StreamArn=second, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            out.append(streams.get_records(ShardIterator=it, Limit=1)["Records"])
        return out

    _eventually(lambda: any(first_pages()))
    records = [r for page in first_pages() for r in page]
    assert [r["dynamodb"]["Keys"]["n"]["N"] for r in records] == ["9"]


def test_stream_specification_is_checked_as_dynamodb_checks_it(served: Served) -> None:
    c = served.client()
    raw = served.client(config=Config(parameter_validation=False))
    enum = (
        "ValidationException",
        "1 validation error detected: Value 'Fisk' at 'streamSpecification.streamViewType' "
        "failed to satisfy constraint: Member must satisfy enum value set: "
        "[NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY]",
    )
    fisk = {"StreamEnabled": True, "StreamViewType": "Fisk"}
    assert _error(lambda: _table(raw, "Fisk", StreamSpecification=fisk)) == enum
    assert _error(lambda: _table(raw, "NoFlag", StreamSpecification={})) == (
        "ValidationException",
        "1 validation error detected: Value null at 'streamSpecification.streamEnabled' "
        "failed to satisfy constraint: Member must not be null",
    )
    assert _error(
        lambda: _table(raw, "NoFlag", StreamSpecification={"StreamViewType": "KEYS_ONLY"})
    )[1].startswith("1 validation error detected: Value null at 'streamSpecification.")
    assert c.list_tables()["TableNames"] == []  # nothing was created
    # UpdateTable checks the view type before the table's stream
    _table(c, StreamSpecification=_KEYS_ONLY)
    assert _error(lambda: raw.update_table(TableName="Users", StreamSpecification=fisk)) == enum
    _table(c, "Plain")
    assert _error(lambda: raw.update_table(TableName="Plain", StreamSpecification=fisk)) == enum
    assert "StreamSpecification" not in c.describe_table(TableName="Plain")["Table"]


def _all_records(streams: Any, arn: str) -> dict[str, list[Any]]:
    """Each shard's records from TRIM_HORIZON, by shard id."""
    return {
        s["ShardId"]: _read_shard(
            streams,
            streams.get_shard_iterator(
                StreamArn=arn, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"],
        )
        for s in _shards(streams, arn)
    }


def test_each_shards_sequence_number_range_is_its_own_records(served: Served) -> None:
    """As DynamoDB: a shard's StartingSequenceNumber is its first record's, and once the
    stream is disabled its EndingSequenceNumber is its last record's (not the stream's
    first and last numbers on every shard)."""
    c, streams = served.client(), served.client("dynamodbstreams")
    _table(c, StreamSpecification=_KEYS_ONLY)
    for i in range(12):
        c.put_item(TableName="Users", Item={"id": {"S": f"k{i}"}})
    arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
    _eventually(lambda: sum(len(r) for r in _all_records(streams, arn).values()) == 12)
    records = _all_records(streams, arn)
    assert sum(1 for r in records.values() if r) == 2  # both shards hold records
    numbers = {s["ShardId"]: s["SequenceNumberRange"] for s in _shards(streams, arn)}
    for sid, got in records.items():
        first = got[0]["dynamodb"]["SequenceNumber"]
        assert numbers[sid] == {"StartingSequenceNumber": first}
    c.update_table(TableName="Users", StreamSpecification={"StreamEnabled": False})
    c.put_item(TableName="Users", Item={"id": {"S": "after"}})  # in no stream

    def closed() -> dict[str, Any]:
        return {s["ShardId"]: s["SequenceNumberRange"] for s in _shards(streams, arn)}

    _eventually(lambda: all("EndingSequenceNumber" in r for r in closed().values()))
    for sid, got in records.items():
        assert closed()[sid] == {
            "StartingSequenceNumber": got[0]["dynamodb"]["SequenceNumber"],
            "EndingSequenceNumber": got[-1]["dynamodb"]["SequenceNumber"],
        }
    starts = {r["StartingSequenceNumber"] for r in closed().values()}
    assert len(starts) == 2  # two shards, two ranges


def test_reading_records_the_log_no_longer_keeps_is_trimmed_data_access(tmp_path: Any) -> None:
    """Records past the log's retention are gone: a shard iterator at an older number, or
    an iterator made before they went, is DynamoDB's TrimmedDataAccessException, not a
    silent skip; TRIM_HORIZON reads on from the oldest record kept."""
    import time
    import uuid

    import streamkit as sk

    app = sk.App(
        storage=f"sqlite:///{tmp_path}/api.db",
        log=f"local://{tmp_path}/log?poll_interval=0.02&prune_interval=0.05",
        namespace=f"trim{uuid.uuid4().hex[:8]}",
        topic_partitions=1,
        topic_retention_ms=1500,
    )
    with Served(app) as s:
        c, streams = s.client(), s.client("dynamodbstreams")
        _table(c, StreamSpecification=_KEYS_ONLY)
        for i in range(3):
            c.put_item(TableName="Users", Item={"id": {"S": f"old{i}"}})
        arn = c.describe_table(TableName="Users")["Table"]["LatestStreamArn"]
        _eventually(lambda: sum(len(r) for r in _all_records(streams, arn).values()) == 3)
        ((sid, old),) = _all_records(streams, arn).items()
        early = streams.get_shard_iterator(
            StreamArn=arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        time.sleep(2.0)  # past the retention: the prune deletes the three
        c.put_item(TableName="Users", Item={"id": {"S": "new"}})

        def kept() -> list[str]:
            return [r["dynamodb"]["Keys"]["id"]["S"] for r in _all_records(streams, arn)[sid]]

        _eventually(lambda: kept() == ["new"])
        for kind, record in (("AT_SEQUENCE_NUMBER", old[0]), ("AFTER_SEQUENCE_NUMBER", old[1])):
            code, _ = _error(
                lambda kind=kind, record=record: streams.get_shard_iterator(
                    StreamArn=arn,
                    ShardId=sid,
                    ShardIteratorType=kind,
                    SequenceNumber=record["dynamodb"]["SequenceNumber"],
                )
            )
            assert code == "TrimmedDataAccessException"
        code, _ = _error(lambda: streams.get_records(ShardIterator=early))
        assert code == "TrimmedDataAccessException"
        # any number older than the oldest record kept is past the trim point, even the
        # newest of the deleted ones read AFTER (DynamoDB: "older than the trim point")
        code, _ = _error(
            lambda: streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=sid,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                SequenceNumber=old[-1]["dynamodb"]["SequenceNumber"],
            )
        )
        assert code == "TrimmedDataAccessException"
        new = _all_records(streams, arn)[sid][0]["dynamodb"]["SequenceNumber"]
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=sid, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=new
        )["ShardIterator"]
        assert [r["dynamodb"]["Keys"]["id"]["S"] for r in _read_shard(streams, it)] == ["new"]
