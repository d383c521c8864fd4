"""Table writes committed together with a consumer's checkpoint (exactly-once effects).

A handler's :class:`~streamkit.Context` collects its writes in an :class:`Effects`;
the runtime commits them with the handler's position in one storage transaction,
so the writes of a record are applied once even when the record is delivered
twice (a crash before the log commit, a zombie after a rebalance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamkit.storage._transaction import Transaction
from streamkit.storage._write_ops import Checkpoint, WriteOp

if TYPE_CHECKING:
    from streamkit.storage._spec import TableSpec
    from streamkit.storage._store import Store

__all__ = ("Checkpoint", "Effects", "read_checkpoints")

_MAX_EFFECTS = 100_000


class Effects(Transaction):
    """Buffered puts, updates, deletes and condition checks, applied in order on commit.

    Unlike a transaction, several actions may touch one item (each sees the ones before
    it) and there is no 100-action limit. A failing condition fails the whole commit.
    """

    _max_actions = _MAX_EFFECTS

    def mark(self) -> int:
        """How many actions are buffered (to undo a failed invocation's with :meth:`undo`)."""
        return len(self._actions)

    def undo(self, mark: int) -> None:
        """Forget the actions buffered after ``mark``."""
        del self._actions[mark:]

    def absorb(self, other: Effects) -> None:
        """Append ``other``'s buffered actions to this buffer's (and empty ``other``)."""
        self._actions.extend(other._actions)
        other._actions = []

    def __len__(self) -> int:
        return len(self._actions)

    async def commit_with(self, checkpoints: list[Checkpoint]) -> int | None:
        """Apply every buffered action and advance ``checkpoints``, all or nothing.

        Returns None when committed; when a stored checkpoint shows (some of) the work
        was already committed, writes nothing and returns that stored position. The
        buffer is empty afterwards either way.

        Raises:
            ConditionFailed, ValidationError: an action failed; nothing was written.
        """
        actions, self._actions = self._actions, []
        store = self._store
        ops: list[WriteOp] = []
        specs: dict[str, TableSpec] = {}
        for table, build in actions:
            spec = specs.get(table.name)
            if spec is None:
                spec = specs[table.name] = await store.spec(table.name)
            ops.append(build(spec))
        origin = store.origin
        stale = await store.commit_effects(ops, checkpoints, origin)
        if stale is None and store.cache is not None:
            # the new items are not returned here: drop them (and their pages)
            store.cache.invalidate(ops)
        if stale is None:
            for op in ops:
                store.charge(op.spec, write=1.0)
        return stale


async def read_checkpoints(store: Store, prefix: str) -> dict[str, int]:
    """Every stored checkpoint whose key starts with ``prefix``."""
    await store.ensure_open()
    return {k: int(v) for k, v in (await store.engine.meta_with_prefix(prefix)).items()}
