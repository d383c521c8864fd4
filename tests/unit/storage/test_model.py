"""A stateful property test: random operations, including failing conditions and
transactions, leave the store and its change records equal to a plain-Python model."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import streamkit as sk
from streamkit.records._values import normalize_item, values_equal
from tests import postgres_env
from tests.unit.storage.helpers import committed_records

KEYS = st.sampled_from(["a", "b", "c"])
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([Decimal("1.0"), Decimal("2.50"), 1.5]),
    st.text(alphabet="xy", max_size=2),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["p", "q"]), inner, max_size=2)
    ),
    max_leaves=4,
)
ATTRS = st.dictionaries(st.sampled_from(["v", "w", "n"]), VALUES, max_size=3)


class StoreModel(RuleBasedStateMachine):
    engine = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self._store = postgres_env.throwaway_store(self.engine)
        self.app = sk.App(storage=self.run(self._store.__aenter__()))
        self.table = self.run(self.app.create_table("Things", partition_key="k"))
        self.items: dict[str, dict[str, Any]] = {}
        self.expected: list[tuple[str, str, Any, Any]] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.app.close())
        self.run(self._store.__aexit__(None, None, None))
        self.loop.close()

    def _emit(self, key: str, old: Any, new: Any) -> None:
        if old is None and new is None:
            return
        if old is not None and new is not None and values_equal(old, new):
            return
        event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        self.expected.append((event, key, old, new))

    @staticmethod
    def _cond_holds(old: Any, cond: str) -> bool:
        if cond == "none":
            return True
        if cond == "absent":
            return old is None
        if cond == "present":
            return old is not None
        # "v = 1"
        return old is not None and "v" in old and values_equal(old["v"], Decimal(1))

    @staticmethod
    def _condition(cond: str) -> sk.Condition | None:
        return {
            "none": None,
            "absent": sk.attr("k").not_exists(),
            "present": sk.attr("k").exists(),
            "v1": sk.attr("v").eq(1),
        }[cond]

    CONDS = st.sampled_from(["none", "absent", "present", "v1"])

    @rule(key=KEYS, attrs=ATTRS, cond=CONDS)
    def put(self, key: str, attrs: dict[str, Any], cond: str) -> None:
        item = normalize_item({"k": key, **attrs})
        old = self.items.get(key)
        try:
            self.run(self.table.put(item, condition=self._condition(cond)))
        except sk.ConditionFailed:
            assert not self._cond_holds(old, cond)
            return
        assert self._cond_holds(old, cond)
        self.items[key] = item
        self._emit(key, old, item)

    @rule(key=KEYS)
    def put_same_item_reordered(self, key: str) -> None:
        """Putting an equal item with every map in another order changes nothing."""
        old = self.items.get(key)
        if old is None:
            return

        def reorder(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: reorder(v[k]) for k in reversed(list(v))}
            if isinstance(v, list):
                return [reorder(x) for x in v]
            return v

        self.run(self.table.put(reorder(old)))

    @rule(key=KEYS, value=VALUES, cond=CONDS)
    def update_set(self, key: str, value: Any, cond: str) -> None:
        old = self.items.get(key)
        try:
            self.run(
                self.table.update({"k": key}, set={"v": value}, condition=self._condition(cond))
            )
        except sk.ConditionFailed:
            assert not self._cond_holds(old, cond)
            return
        new = dict(old) if old is not None else {"k": key}
        new["v"] = normalize_item({"v": value})["v"]
        self.items[key] = new
        self._emit(key, old, new)

    @rule(key=KEYS, delta=st.integers(-2, 2))
    def update_add(self, key: str, delta: int) -> None:
        old = self.items.get(key)
        present = old is not None and "n" in old  # a stored NULL is present, not missing
        current = old["n"] if present else None
        if present and type(current) is not Decimal:
            try:
                self.run(self.table.update({"k": key}, add={"n": delta}))
            except sk.ValidationError:
                return
            raise AssertionError("ADD to a non-number must fail")
        self.run(self.table.update({"k": key}, add={"n": delta}))
        new = dict(old) if old is not None else {"k": key}
        new["n"] = (current or Decimal(0)) + delta
        self.items[key] = new
        self._emit(key, old, new)

    @rule(key=KEYS, cond=CONDS)
    def remove_attr(self, key: str, cond: str) -> None:
        old = self.items.get(key)
        try:
            self.run(self.table.update({"k": key}, remove=["v"], condition=self._condition(cond)))
        except sk.ConditionFailed:
            assert not self._cond_holds(old, cond)
            return
        if old is None:
            return  # as DynamoDB: an update that only removes creates no item
        new = dict(old)
        new.pop("v", None)
        self.items[key] = new
        self._emit(key, old, new)

    @rule(key=KEYS, cond=CONDS)
    def delete(self, key: str, cond: str) -> None:
        old = self.items.get(key)
        try:
            self.run(self.table.delete({"k": key}, condition=self._condition(cond)))
        except sk.ConditionFailed:
            assert not self._cond_holds(old, cond)
            return
        self.items.pop(key, None)
        self._emit(key, old, None)

    @rule(k1=KEYS, k2=KEYS, attrs=ATTRS, cond=CONDS)
    def transaction(self, k1: str, k2: str, attrs: dict[str, Any], cond: str) -> None:
        if k1 == k2:
            return
        item = normalize_item({"k": k1, **attrs})
        old1, old2 = self.items.get(k1), self.items.get(k2)

        async def go() -> None:
            async with self.app.transaction() as tx:
                tx.put(self.table, item)
                tx.delete(self.table, {"k": k2}, condition=self._condition(cond))

        if not self._cond_holds(old2, cond):
            with pytest.raises(sk.TransactionCanceled) as err:
                self.run(go())
            assert [r.code for r in err.value.reasons] == ["None", "ConditionalCheckFailed"]
            return
        self.run(go())
        assert self._cond_holds(old2, cond)
        self.items[k1] = item
        self.items.pop(k2, None)
        self._emit(k1, old1, item)
        self._emit(k2, old2, None)

    @invariant()
    def store_matches_model(self) -> None:
        stored = {i["k"]: i for i in self.run(self._scan())}
        assert stored.keys() == self.items.keys()
        for k, item in self.items.items():
            assert values_equal(stored[k], item), (stored[k], item)

    async def _scan(self) -> list[dict[str, Any]]:
        return [i async for i in self.table.scan()]

    def check_records(self) -> None:
        recs = self.run(committed_records(self.app))
        assert len(recs) == len(self.expected)
        for rec, (event, key, old, new) in zip(recs, self.expected, strict=True):
            assert rec.event_name == event
            assert rec.keys == {"k": key}
            assert (rec.old_image is None) == (old is None)
            if old is not None:
                assert values_equal(dict(rec.old_image), old)
            if new is not None:
                assert values_equal(dict(rec.new_image), new)
            if event == "MODIFY":
                changed = {
                    n
                    for n in set(old) | set(new)
                    if n not in old or n not in new or not values_equal(old[n], new[n])
                }
                assert set(rec.changed or ()) == changed

    @invariant()
    def records_match_model(self) -> None:
        self.check_records()


StoreModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreModel = StoreModel.TestCase


class PostgresStoreModel(StoreModel):
    """The same model, each example on a new PostgreSQL database."""

    engine = "postgres"


PostgresStoreModel.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPostgresStoreModel = postgres_env.needs_postgres(PostgresStoreModel.TestCase)
