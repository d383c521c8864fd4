"""Effects: table writes committed with a consumer's checkpoint, all or nothing."""

from __future__ import annotations

import pytest

import streamkit as sk
from streamkit.storage._effects import Checkpoint, Effects, read_checkpoints


async def test_several_writes_to_one_item_add_up_and_commit_with_the_checkpoint(
    app: sk.App,
) -> None:
    t = await app.create_table("Totals", partition_key="k")
    effects = Effects(app._store)
    for _ in range(3):
        effects.update(t, {"k": "a"}, add={"n": 1})
    effects.put(t, {"k": "b"})
    assert len(effects) == 4
    assert await effects.commit_with([Checkpoint("runtime.g.0.0", first=0, value=10)]) is None
    assert await t.get({"k": "a"}) == {"k": "a", "n": 3}
    assert await read_checkpoints(app._store, "runtime.g.") == {"runtime.g.0.0": 10}
    assert len(effects) == 0


async def test_a_stale_checkpoint_writes_nothing_and_says_where_it_is(app: sk.App) -> None:
    t = await app.create_table("Totals", partition_key="k")
    first = Effects(app._store)
    first.put(t, {"k": "a"})
    assert await first.commit_with([Checkpoint("runtime.g.0.0", first=0, value=10)]) is None
    again = Effects(app._store)
    again.put(t, {"k": "dup"})
    assert await again.commit_with([Checkpoint("runtime.g.0.0", first=5, value=20)]) == 10
    assert await t.get({"k": "dup"}) is None
    later = Effects(app._store)
    later.put(t, {"k": "c"})
    assert await later.commit_with([Checkpoint("runtime.g.0.0", first=10, value=20)]) is None


async def test_a_failed_condition_rolls_everything_back(app: sk.App) -> None:
    t = await app.create_table("Totals", partition_key="k")
    effects = Effects(app._store)
    effects.put(t, {"k": "a"})
    effects.put(t, {"k": "b"}, condition=sk.attr("k").not_exists())
    effects.put(t, {"k": "b"}, condition=sk.attr("k").not_exists())  # fails: b exists now
    with pytest.raises(sk.ConditionFailed):
        await effects.commit_with([Checkpoint("runtime.g.0.0", first=0, value=3)])
    assert await t.get({"k": "a"}) is None
    assert await read_checkpoints(app._store, "runtime.g.") == {}


async def test_undo_forgets_a_failed_invocations_writes(app: sk.App) -> None:
    t = await app.create_table("Totals", partition_key="k")
    effects = Effects(app._store)
    effects.put(t, {"k": "kept"})
    mark = effects.mark()
    effects.put(t, {"k": "undone"})
    effects.undo(mark)
    assert await effects.commit_with([]) is None
    assert [i["k"] async for i in t.scan()] == ["kept"]
