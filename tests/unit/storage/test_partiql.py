"""PartiQL: the parser, the query-or-scan rule, every statement's semantics on each
engine, batches, transactions, change records, and a fuzz test of the whole path."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamkit as sk
from streamkit.storage._conditions import And, Compare, In, NotExists, Or, PathRef
from streamkit.storage._partiql import (
    NOT_WELL_FORMED,
    Delete,
    ExistsCheck,
    Insert,
    Literal,
    MapValue,
    Param,
    Select,
    SetValue,
    Update,
    Value,
    parse_statement,
)
from tests.unit.storage.helpers import committed_records

# --- the parser ----------------------------------------------------------------------------------


def _eq(name: str, value: Any) -> Compare:
    return Compare("=", PathRef((name,)), Value(Literal(value)))


async def test_select_parses_to_the_condition_ast() -> None:
    stmt = parse_statement(
        'SELECT a.b[2], "c d" FROM "Orders" WHERE OrderID = 100 OR OrderID IN [1, ?] '
        "ORDER BY OrderID DESC"
    )
    assert stmt == Select(
        table="Orders",
        index=None,
        projection=(PathRef(("a", "b", 2)), PathRef(("c d",))),
        where=Or(
            _eq("OrderID", Decimal(100)),
            In(PathRef(("OrderID",)), (Value(Literal(Decimal(1))), Value(Param(0)))),
        ),
        order=(("OrderID", True),),
        params=1,
    )


async def test_writes_parse() -> None:
    ins = parse_statement("insert into T value {'k': ?, 's': <<'a', 'b'>>, 'n': -1.5e2}")
    assert ins == Insert(
        "T",
        MapValue(
            (
                ("k", Param(0)),
                ("s", SetValue((Literal("a"), Literal("b")))),
                ("n", Literal(Decimal("-1.5e2"))),
            )
        ),
        1,
    )
    upd = parse_statement(
        "UPDATE T SET a = a + 1 SET b = list_append(b, [1]), s = set_add(s, <<1>>) "
        "REMOVE c WHERE k = 'x' AND v IS NOT MISSING RETURNING MODIFIED OLD *"
    )
    assert isinstance(upd, Update)
    assert upd.returning == "UPDATED_OLD"
    assert [len(upd.update.sets), len(upd.update.removes), len(upd.update.adds)] == [2, 1, 1]
    dele = parse_statement("DELETE FROM T WHERE k = 1 AND attribute_not_exists(z)")
    assert dele == Delete("T", And(_eq("k", Decimal(1)), NotExists(PathRef(("z",)))), "NONE", 0)
    assert isinstance(parse_statement("EXISTS(SELECT * FROM T WHERE k = ?)"), ExistsCheck)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        pytest.param(
            "SELECT * FROM T WHERE", NOT_WELL_FORMED + "Unexpected term", id="empty-where"
        ),
        pytest.param(
            "SELECT * FROM T WHERE k = 1 AND",
            NOT_WELL_FORMED + "Missing right-hand side expression of infix operator",
            id="dangling-and",
        ),
        pytest.param(
            "SELECT * FROM T WHERE k = 1 foo",
            NOT_WELL_FORMED + "Unexpected token after expression",
            id="leftover",
        ),
        pytest.param(
            "DELETE FROM T WHERE k = 1 ORDER BY k",
            NOT_WELL_FORMED + "Unexpected token after expression",
            id="order-on-delete",
        ),
        pytest.param("SELECT * FROM T WHERE k = 1 # x", NOT_WELL_FORMED, id="hash-comment"),
        pytest.param("SELECT * FROM T t WHERE k = 'x'", "Aliasing is not supported", id="alias"),
        pytest.param(
            "DELETE FROM", NOT_WELL_FORMED + "Expected identifier for simple path", id="no-table"
        ),
        pytest.param("DROP TABLE T", NOT_WELL_FORMED + "Expected data manipulation", id="ddl"),
        pytest.param(
            "SELECT * FROM T WHERE ORDER BY k",
            NOT_WELL_FORMED + "Unexpected keyword",
            id="where-order",
        ),
        pytest.param(
            "SELECT * FROM T WHERE IS NULL", NOT_WELL_FORMED + "Unexpected operator", id="is"
        ),
        pytest.param(
            "SELECT *, a FROM T",
            "Other attributes should not be present in the projection when '*' is used.",
            id="star-and-more",
        ),
        pytest.param("SELECT a, a FROM T", "Duplicate identifiers in select clause: a", id="dup"),
        pytest.param(
            "UPDATE T SET a = 1 WHERE k = 1 RETURNING ALL OLD",
            "Expected '*' after ( MODIFIED | ALL ) ( NEW | OLD ) in RETURNING clause",
            id="returning-star",
        ),
        pytest.param(
            "DELETE FROM T WHERE k = 1 RETURNING ALL NEW *",
            "Invalid returning clause: RETURNING ALL NEW. Only RETURNING ALL OLD * is allowed "
            "in DELETE statements.",
            id="delete-returning",
        ),
        pytest.param(
            "INSERT INTO T VALUE {'k': 1} RETURNING ALL OLD *",
            "RETURNING is not supported in INSERT",
            id="insert-returning",
        ),
        pytest.param(
            "UPDATE T SET a = 1",
            "Where clause does not contain a mandatory equality on all key attributes",
            id="update-no-where",
        ),
        pytest.param(
            "SELECT * FROM T WHERE a = MISSING",
            "MISSING must be compared using IS operator",
            id="missing-value",
        ),
        pytest.param(
            "SELECT * FROM T WHERE upper(a) = 'A'", "Unrecognized function: upper", id="fn"
        ),
        pytest.param(
            "INSERT INTO T VALUE {'k': 1, 'k': 2}",
            "Duplicate keys in tuple. Key: k under root",
            id="dup-key",
        ),
        pytest.param(
            "UPDATE T SET s = set_add(t, <<1>>) WHERE k = 1",
            "The first argument to SET_ADD must equal the assignment value",
            id="set-add-target",
        ),
        pytest.param(
            "SELECT * FROM T WHERE a IS NULL", "IS NULL is not supported yet", id="is-null"
        ),
    ],
)
async def test_refusals_in_dynamodb_words(statement: str, message: str) -> None:
    with pytest.raises(sk.ValidationError) as e:
        parse_statement(statement)
    assert str(e.value).startswith(message)
    if message.endswith(": "):
        assert str(e.value) == message


async def test_limits() -> None:
    with pytest.raises(sk.ValidationError, match="length between 1 and 8192"):
        parse_statement("SELECT * FROM T WHERE " + " OR ".join(["a = 1"] * 2000))
    with pytest.raises(sk.ValidationError, match="Too many operators"):
        parse_statement("SELECT * FROM T WHERE " + " OR ".join(["a=1"] * 400))
    with pytest.raises(sk.ValidationError, match="parentheses"):
        parse_statement("SELECT * FROM T WHERE " + "(" * 60 + "a = 1" + ")" * 60)
    with pytest.raises(sk.ValidationError, match="Nesting"):
        parse_statement("INSERT INTO T VALUE {'k': " + "[" * 100 + "]" * 100 + "}")


# --- semantics on every engine -------------------------------------------------------------------


async def _orders(app: sk.App) -> sk.Table:
    orders = await app.create_table("Orders", partition_key="UserID", sort_key="OrderDate")
    for user in ("u1", "u2", "u3"):
        for i, day in enumerate(("2026-01-01", "2026-01-02", "2026-02-01")):
            await orders.put(
                {
                    "UserID": user,
                    "OrderDate": day,
                    "Total": 10 * (i + 1),
                    "Tags": {"a", f"t{i}"},
                    "Address": {"City": "Berlin" if i else "Paris", "Lines": ["x", "y"]},
                }
            )
    return orders


def _keys(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["UserID"], i["OrderDate"]) for i in items]


async def test_select_query_and_scan(app: sk.App) -> None:
    await _orders(app)
    q = await app.execute("SELECT * FROM Orders WHERE UserID = ?", ["u2"])
    assert _keys(q) == [("u2", "2026-01-01"), ("u2", "2026-01-02"), ("u2", "2026-02-01")]
    assert q[0]["Tags"] == {"a", "t0"}
    rows = await app.execute(
        'SELECT OrderDate, "Address".City, Address.Lines[1] FROM "Orders" '
        "WHERE UserID = 'u1' AND begins_with(OrderDate, '2026-01') ORDER BY OrderDate DESC"
    )
    assert rows == [
        {"OrderDate": "2026-01-02", "Address": {"City": "Berlin", "Lines": ["y"]}},
        {"OrderDate": "2026-01-01", "Address": {"City": "Paris", "Lines": ["y"]}},
    ]
    # IN of partitions, OR of partition equalities, with conditions that read keys
    both = await app.execute(
        "SELECT UserID, OrderDate FROM Orders WHERE UserID IN ['u1', 'u3'] AND Total >= 20"
    )
    assert sorted(_keys(both)) == [
        ("u1", "2026-01-02"), ("u1", "2026-02-01"), ("u3", "2026-01-02"), ("u3", "2026-02-01"),
    ]  # fmt: skip
    mixed = await app.execute(
        "SELECT UserID, OrderDate FROM Orders "
        "WHERE UserID = 'u1' OR UserID = 'u2' AND OrderDate > '2026-01-15'"
    )
    assert _keys(mixed) == [
        ("u1", "2026-01-01"), ("u1", "2026-01-02"), ("u1", "2026-02-01"), ("u2", "2026-02-01"),
    ]  # fmt: skip
    desc = await app.execute(
        "SELECT UserID FROM Orders WHERE UserID IN ['u1', 'u2'] AND OrderDate = '2026-01-01' "
        "ORDER BY UserID DESC"
    )
    assert desc == [{"UserID": "u2"}, {"UserID": "u1"}]
    # a scan: no partition fixed
    scanned = await app.execute(
        "SELECT UserID FROM Orders WHERE Total BETWEEN 15 AND 25 AND contains(Tags, 't1') "
        "AND NOT Address.City <> 'Berlin' AND size(Tags) = 2 AND attribute_type(Total, 'N') "
        "AND Nope IS MISSING AND Address IS NOT MISSING"
    )
    assert sorted(r["UserID"] for r in scanned) == ["u1", "u2", "u3"]
    assert len(await app.execute("SELECT * FROM Orders")) == 9
    assert await app.execute("SELECT * FROM Orders WHERE UserID = 'nobody'") == []


async def test_select_paging_with_next_token(app: sk.App) -> None:
    await _orders(app)
    for statement in (
        "SELECT * FROM Orders",
        "SELECT * FROM Orders WHERE UserID IN ['u1', 'u2', 'u3']",
    ):
        seen: list[tuple[str, str]] = []
        token = None
        pages = 0
        while True:
            page = await app.execute_page(statement, limit=2, next_token=token)
            assert len(page.items) <= 2 and page.consumed > 0
            seen += _keys(page.items)
            pages += 1
            if page.next_token is None:
                break
            token = page.next_token
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 9
        assert pages >= 5
    assert len(await app.execute("SELECT * FROM Orders", limit=4)) == 4
    with pytest.raises(sk.ValidationError, match="NextToken does not match request"):
        await app.execute_page("SELECT * FROM Orders WHERE UserID = 'u1'", next_token=token)
    with pytest.raises(sk.ValidationError, match="Invalid NextToken"):
        await app.execute_page("SELECT * FROM Orders", next_token="not a token")


async def test_select_refusals(app: sk.App) -> None:
    await _orders(app)
    cases = {
        "SELECT * FROM Orders ORDER BY OrderDate": "Must have WHERE clause",
        "SELECT * FROM Orders WHERE Total = 1 ORDER BY OrderDate": "non-optional hash key",
        "SELECT * FROM Orders WHERE UserID = 'u1' ORDER BY Total": "must be part of the primary",
        "SELECT * FROM Orders WHERE UserID IN ['u1', 'u2'] ORDER BY OrderDate": "Must have hash",
        "SELECT * FROM Orders WHERE UserID = ?": "Number of parameters",
        "SELECT * FROM Orders WHERE Total < TRUE": "Incorrect operand type",
    }
    for statement, message in cases.items():
        with pytest.raises(sk.ValidationError, match=message):
            await app.execute(statement)
    with pytest.raises(sk.TableNotFound):
        await app.execute("SELECT * FROM Nope")


async def test_insert_update_delete(app: sk.App) -> None:
    orders = await _orders(app)
    key = {"UserID": "u9", "OrderDate": "2026-03-01"}
    assert (
        await app.execute(
            "INSERT INTO Orders VALUE {'UserID': ?, 'OrderDate': ?, 'Total': 5, 'L': [1], "
            "'S': <<'x'>>, 'M': {'a': NULL, 'b': TRUE}}",
            ["u9", "2026-03-01"],
        )
        == []
    )
    assert await orders.get(key) == {
        **key, "Total": 5, "L": [1], "S": {"x"}, "M": {"a": None, "b": True},
    }  # fmt: skip
    with pytest.raises(sk.DuplicateItem, match="Duplicate primary key exists in table"):
        await app.execute("INSERT INTO Orders VALUE {'UserID': 'u9', 'OrderDate': '2026-03-01'}")
    new = await app.execute(
        "UPDATE Orders SET Total = Total + ?, L = list_append(L, [2]) "
        "SET S = set_add(S, <<'y'>>), M.c = 'new' REMOVE M.a "
        "WHERE UserID = 'u9' AND OrderDate = '2026-03-01' AND Total = 5 RETURNING ALL NEW *",
        [2],
    )
    assert new == [{**key, "Total": 7, "L": [1, 2], "S": {"x", "y"}, "M": {"b": True, "c": "new"}}]
    old = await app.execute(
        "UPDATE Orders SET S = set_delete(S, <<'x'>>) WHERE UserID = 'u9' AND "
        "OrderDate = '2026-03-01' RETURNING MODIFIED OLD *"
    )
    assert old == [{"S": {"x", "y"}}]
    with pytest.raises(sk.ConditionFailed):  # a false WHERE
        await app.execute(
            "UPDATE Orders SET Total = 1 WHERE UserID = 'u9' AND OrderDate = '2026-03-01' "
            "AND Total > 100"
        )
    with pytest.raises(sk.ConditionFailed):  # UPDATE never creates an item
        await app.execute("UPDATE Orders SET Total = 1 WHERE UserID = 'u0' AND OrderDate = 'x'")
    assert await orders.get({"UserID": "u0", "OrderDate": "x"}) is None
    with pytest.raises(sk.ValidationError, match="mandatory equality on all key attributes"):
        await app.execute("UPDATE Orders SET Total = 1 WHERE UserID = 'u9'")
    with pytest.raises(sk.ValidationError, match="Multiple conditions on same key UserID"):
        await app.execute(
            "DELETE FROM Orders WHERE UserID = 'u9' AND UserID = 'u8' AND OrderDate = 'x'"
        )
    # DELETE: absent is no error, a false WHERE on a present item is
    assert await app.execute("DELETE FROM Orders WHERE UserID = 'u0' AND OrderDate = 'x'") == []
    with pytest.raises(sk.ConditionFailed):
        await app.execute(
            "DELETE FROM Orders WHERE UserID = 'u9' AND OrderDate = '2026-03-01' AND Total = 1"
        )
    gone = await app.execute(
        "DELETE FROM Orders WHERE UserID = 'u9' AND OrderDate = '2026-03-01' RETURNING ALL OLD *"
    )
    assert gone[0]["Total"] == 7
    assert await orders.get(key) is None


async def test_condition_failure_returns_the_old_item(app: sk.App) -> None:
    await _orders(app)
    with pytest.raises(sk.ConditionFailed) as e:
        await app.execute_page(
            "UPDATE Orders SET Total = 1 WHERE UserID = 'u1' AND OrderDate = '2026-01-01' "
            "AND Total = 99",
            return_old_on_condition_failure=True,
        )
    assert e.value.item is not None and e.value.item["Total"] == 10


async def test_batch(app: sk.App) -> None:
    await _orders(app)
    reads = await app.execute_batch(
        [
            ("SELECT Total FROM Orders WHERE UserID = ? AND OrderDate = ?", ["u1", "2026-01-02"]),
            "SELECT * FROM Orders WHERE UserID = 'u1' AND OrderDate = 'none'",
            "SELECT * FROM Orders WHERE UserID = 'u1'",
            "SELECT * FROM Orders WHERE",
        ]
    )
    assert reads[0] == sk.BatchStatementResult(table="Orders", item={"Total": 20})
    assert reads[1].item is None and reads[1].error is None
    assert "mandatory equality" in str(reads[2].error)
    assert str(reads[3].error) == NOT_WELL_FORMED + "Unexpected term"
    writes = await app.execute_batch(
        [
            "INSERT INTO Orders VALUE {'UserID': 'n1', 'OrderDate': 'd'}",
            "INSERT INTO Orders VALUE {'UserID': 'u1', 'OrderDate': '2026-01-01'}",
            "UPDATE Orders SET Total = 0 WHERE UserID = 'u2' AND OrderDate = '2026-01-01'",
        ]
    )
    assert [type(w.error) for w in writes] == [type(None), sk.DuplicateItem, type(None)]
    assert len(await app.execute("SELECT * FROM Orders WHERE UserID = 'n1'")) == 1
    with pytest.raises(sk.ValidationError, match="either read statements or write"):
        await app.execute_batch(["SELECT * FROM Orders", "DELETE FROM Orders WHERE UserID = 'a'"])
    with pytest.raises(sk.ValidationError, match="less than or equal to 25"):
        await app.execute_batch(["SELECT * FROM Orders"] * 26)


async def test_transaction(app: sk.App) -> None:
    orders = await _orders(app)
    assert (
        await app.execute_transaction(
            [
                "INSERT INTO Orders VALUE {'UserID': 'n1', 'OrderDate': 'd', 'Total': 1}",
                "UPDATE Orders SET Total = Total + 1 "
                "WHERE UserID = 'u1' AND OrderDate = '2026-01-01'",
                "DELETE FROM Orders WHERE UserID = 'u2' AND OrderDate = '2026-01-01'",
                "EXISTS(SELECT * FROM Orders WHERE UserID = 'u3' AND OrderDate = '2026-01-01' "
                "AND Total = 10)",
            ]
        )
        == []
    )
    assert (await orders.get({"UserID": "u1", "OrderDate": "2026-01-01"}))["Total"] == 11  # type: ignore[index]
    before = len(await committed_records(app))
    with pytest.raises(sk.TransactionCanceled) as e:
        await app.execute_transaction(
            [
                "UPDATE Orders SET Total = 0 WHERE UserID = 'u1' AND OrderDate = '2026-01-02'",
                "INSERT INTO Orders VALUE {'UserID': 'n1', 'OrderDate': 'd'}",
                "EXISTS(SELECT * FROM Orders WHERE UserID = 'u3' AND OrderDate = 'none')",
            ]
        )
    assert [r.code for r in e.value.reasons] == ["None", "DuplicateItem", "ConditionalCheckFailed"]
    assert len(await committed_records(app)) == before  # all or nothing
    assert (await orders.get({"UserID": "u1", "OrderDate": "2026-01-02"}))["Total"] == 20  # type: ignore[index]
    reads = await app.execute_transaction(
        [
            "SELECT Total FROM Orders WHERE UserID = 'u1' AND OrderDate = '2026-01-02'",
            "SELECT * FROM Orders WHERE UserID = 'u1' AND OrderDate = 'none'",
        ]
    )
    assert reads == [{"Total": 20}, None]
    with pytest.raises(sk.ValidationError, match="either read statements or write"):
        await app.execute_transaction(
            ["SELECT * FROM Orders WHERE UserID = 'u1' AND OrderDate = 'x'",
             "DELETE FROM Orders WHERE UserID = 'u1' AND OrderDate = 'x'"]
        )  # fmt: skip
    with pytest.raises(sk.ValidationError, match=r"TransactStatements\[1\]"):
        await app.execute_transaction(["DELETE FROM Orders WHERE UserID = 'a'", "SELEC"])


async def test_partiql_writes_emit_the_same_records_as_api_writes(app: sk.App) -> None:
    api = await app.create_table("Api", partition_key="k", sort_key=("n", "N"))
    await app.create_table("Pql", partition_key="k", sort_key=("n", "N"))
    await api.put({"k": "x", "n": 1, "v": 1, "l": [1]}, condition="attribute_not_exists(k)")
    await api.update(
        {"k": "x", "n": 1},
        expression="SET v = v + :one, l = list_append(l, :l) REMOVE w",
        condition="attribute_exists(k)",
        values={":one": 1, ":l": [2]},
    )
    await api.delete({"k": "x", "n": 1})
    await app.execute("INSERT INTO Pql VALUE {'k': 'x', 'n': 1, 'v': 1, 'l': [1]}")
    await app.execute(
        "UPDATE Pql SET v = v + 1, l = list_append(l, [2]) REMOVE w WHERE k = 'x' AND n = 1"
    )
    await app.execute("DELETE FROM Pql WHERE k = 'x' AND n = 1")
    records = await committed_records(app)

    def shape(r: sk.ChangeRecord) -> tuple[Any, ...]:
        return (r.event_name, r.keys, r.old_image, r.new_image, r.changed, r.view_type)

    by_table = {t: [shape(r) for r in records if r.table == t] for t in ("Api", "Pql")}
    assert len(by_table["Api"]) == 3
    assert by_table["Pql"] == by_table["Api"]


# --- fuzz ----------------------------------------------------------------------------------

_WORDS = [
    "SELECT", "*", "FROM", "Tbl", '"Tbl"', "WHERE", "k", "n", "v", "a.b", "l[0]", "=", "<>", "<",
    ">=", "AND", "OR", "NOT", "IN", "[", "]", "(", ")", ",", "BETWEEN", "'x'", "1", "-2.5",
    "1e400", "?", "INSERT", "INTO", "VALUE", "{", "}", "'k'", ":", "UPDATE", "SET", "REMOVE",
    "DELETE", "RETURNING", "ALL", "OLD", "NEW", "MODIFIED", "begins_with", "size", "contains",
    "attribute_type", "'S'", "IS", "MISSING", "ORDER", "BY", "DESC", "<<", ">>", "NULL", "TRUE",
    "list_append", "set_add", "+", "EXISTS", ";", ".", "'", '"',
]  # fmt: skip
_statements = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(_WORDS), max_size=24).map(" ".join),
    st.sampled_from(
        [
            "INSERT INTO Tbl VALUE {'k': ?, 'n': ?}",
            "UPDATE Tbl SET v = ? WHERE k = ? AND n = ?",
            "DELETE FROM Tbl WHERE k = ? AND n = ? AND v = ?",
            "SELECT * FROM Tbl WHERE k = ? AND n > ?",
        ]
    ),
)
_params = st.lists(
    st.one_of(st.text(max_size=3), st.integers(-3, 3), st.booleans(), st.none(), st.just([1])),
    max_size=4,
)


@given(_statements)
@settings(max_examples=400)
def test_the_parser_raises_only_validation_errors(text: str) -> None:
    stmt: object
    try:
        stmt = parse_statement(text)
    except sk.ValidationError as e:
        stmt = str(e)
    if isinstance(stmt, str):
        assert stmt  # a message, never a bare error
    else:
        assert isinstance(stmt, (Select, Insert, Update, Delete, ExistsCheck))
        assert stmt.params == text.count("?") - _quoted_marks(text)


def _quoted_marks(text: str) -> int:
    """The ``?`` inside quotes (names or strings), which are not parameters."""
    count, quote = 0, ""
    for ch in text:
        if quote:
            count += ch == "?"
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
    return count


@given(_statements, _params)
@settings(max_examples=120)
def test_statements_raise_only_typed_errors_and_never_write_partly(
    text: str, params: list[Any]
) -> None:
    asyncio.run(_run_one(text, params))


async def _run_one(text: str, params: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as log:
        app = sk.App(storage="memory://", log=f"local://{log}")
        try:
            t = await app.create_table("Tbl", partition_key="k", sort_key=("n", "N"))
            await t.put({"k": "x", "n": 1, "v": 1})
            before = len(await committed_records(app))
            try:
                await app.execute(text, params)
            except (sk.ValidationError, sk.ConditionFailed, sk.TableNotFound):
                assert len(await committed_records(app)) == before
                assert await t.get({"k": "x", "n": 1}) == {"k": "x", "n": 1, "v": 1}
            before = len(await committed_records(app))
            item = await t.get({"k": "x", "n": 1})
            try:
                await app.execute_transaction([(text, params), (text, params)])
            except (sk.ValidationError, sk.TransactionCanceled, sk.TableNotFound):
                assert len(await committed_records(app)) == before
                assert await t.get({"k": "x", "n": 1}) == item
        finally:
            await app.close()


async def test_select_from_an_index(app: sk.App) -> None:
    orders = await app.create_table(
        "Orders",
        partition_key="UserID",
        sort_key="OrderDate",
        global_indexes=[
            sk.GlobalIndex("ByStatus", partition_key="Status", sort_key=("Total", "N"))
        ],
    )
    await orders.put({"UserID": "1", "OrderDate": "a", "Status": "NEW", "Total": 5})
    await orders.put({"UserID": "2", "OrderDate": "b", "Status": "SHIPPED", "Total": 7})
    await orders.put({"UserID": "3", "OrderDate": "c", "Status": "SHIPPED", "Total": 9})
    rows = await app.execute(
        'SELECT UserID FROM "Orders"."ByStatus" WHERE Status = ? AND Total > 8', ["SHIPPED"]
    )
    assert rows == [{"UserID": "3"}]
    with pytest.raises(sk.ValidationError, match="not supported in transactions"):
        await app.execute_transaction(
            ['EXISTS(SELECT * FROM "Orders"."ByStatus" WHERE Status = \'NEW\')']
        )


async def test_a_where_that_fixes_an_index_partition_key_is_a_query_of_the_index(
    app: sk.App,
) -> None:
    orders = await app.create_table(
        "Orders",
        partition_key="UserID",
        sort_key="OrderDate",
        global_indexes=[
            sk.GlobalIndex("ByStatus", partition_key="Status", sort_key=("Total", "N"))
        ],
    )
    for i in range(40):  # 4 KB each: a scan of them all would cost 20 read units
        await orders.put(
            {
                "UserID": f"u{i}",
                "OrderDate": "d",
                "Status": "NEW",
                "Total": 100 + i,
                "Pad": "x" * 4000,
            }
        )
    for t in (3, 1, 2):
        await orders.put({"UserID": f"s{t}", "OrderDate": "d", "Status": "SHIPPED", "Total": t})
    with sk.measure_capacity() as used:
        rows = await app.execute(
            'SELECT Total FROM "Orders"."ByStatus" WHERE Status = ? ORDER BY Total DESC',
            ["SHIPPED"],
        )
    assert rows == [{"Total": 3}, {"Total": 2}, {"Total": 1}]
    assert used.read_units == 0.5  # one partition of the index read, not the index
    with sk.measure_capacity() as used:
        rows = await app.execute('SELECT UserID FROM "Orders"."ByStatus" WHERE Total = 2')
    assert rows == [{"UserID": "s2"}]
    assert used.read_units > 10  # no partition key: a scan of the index


async def test_a_where_that_fixes_every_attribute_of_a_multi_attribute_partition_key_is_a_query(
    app: sk.App,
) -> None:
    """An index whose partition key has several attributes: a query when the WHERE fixes
    each (with = or IN), the rest of the WHERE applied to what it reads; else a scan."""
    orders = await app.create_table(
        "Orders",
        partition_key="UserID",
        global_indexes=[
            sk.GlobalIndex(
                "ByPair",
                partition_key=["Status", ("Year", "N")],
                sort_key=[("Total", "N"), "UserID"],
            )
        ],
    )
    for i in range(40):  # 4 KB each: a scan of them all would cost 20 read units
        await orders.put(
            {"UserID": f"u{i}", "Status": "NEW", "Year": 2026, "Total": i, "Pad": "x" * 4000}
        )
    for t in (3, 1, 2):
        await orders.put({"UserID": f"s{t}", "Status": "SHIPPED", "Year": 2026, "Total": t})
    await orders.put({"UserID": "old", "Status": "SHIPPED", "Year": 2025, "Total": 9})
    with sk.measure_capacity() as used:
        rows = await app.execute(
            'SELECT UserID FROM "Orders"."ByPair" WHERE Status = ? AND "Year" = ? AND Total > 1',
            ["SHIPPED", 2026],
        )
    assert rows == [{"UserID": "s2"}, {"UserID": "s3"}]  # in the index's sort order
    assert used.read_units == 0.5  # one partition of the index read
    rows = await app.execute(
        'SELECT UserID FROM "Orders"."ByPair" WHERE Status = ? AND "Year" IN [2025, 2026] '
        "AND Total >= 3",
        ["SHIPPED"],
    )
    assert sorted(r["UserID"] for r in rows) == ["old", "s3"]
    with sk.measure_capacity() as used:
        rows = await app.execute(
            'SELECT UserID FROM "Orders"."ByPair" WHERE Status = ?', ["SHIPPED"]
        )
    assert sorted(r["UserID"] for r in rows) == ["old", "s1", "s2", "s3"]
    assert used.read_units > 10  # Year not fixed: a scan of the index
