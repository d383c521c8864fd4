"""The audit trail: every change of the chosen tables, who or what made it, before and
after, appended to a tamper-evident store.

Example:
    ```python
    import streamkit as sk
    from streamkit.handlers.audit import TableSink, audit_router

    app = sk.App(storage="sqlite:///./shop.db")
    app.include_router(audit_router(["Users", "Orders"], sink=TableSink()))
    ```

**Chains.** Entries form one hash chain per (table, log partition): a partition's
records are handled in commit order by one worker at a time, and every record of an
item is in one partition, so an item's whole history is in one chain. Entry ``pos``
counts from 0; ``hash = sha256(prev_hash + canonical JSON of the entry without its
hash)``, ``prev_hash`` of entry 0 is 64 zeros. Changing an entry breaks its hash,
removing one breaks the next one's ``prev_hash`` (and the positions), reordering does
both; the chain's head (count and last hash) is kept too, so a cut tail is detected.

**Exactly once.** The table sink writes each batch's entries and the chain head with
the handler's context writes, in the storage transaction that also moves the
handler's checkpoint: a retried or redelivered batch adds nothing twice. The file and
log sinks skip records whose sequence number is not after the chain's last entry
(sequence numbers only grow within a partition).

**Who.** ``who`` holds the record's user identity (the TTL service for expiries),
its origin (the region or replication source that wrote it) and, with
``actor_attribute=``, that attribute of the new (or old) image — the application's
own "changed by".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import streamkit as sk
from streamkit._names import audit_topic, check_audit_topic
from streamkit.log import read_until
from streamkit.records._values import item_to_dynamodb_json, normalize_item

__all__ = (
    "FileSink",
    "LogSink",
    "TableSink",
    "VerifyReport",
    "audit_router",
    "entry_hash",
    "history",
    "prepare",
    "verify",
)

GENESIS = "0" * 64
DEFAULT_TABLE = "streamkit_audit"


def _canonical(entry: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash an entry must carry: sha256 over its ``prev_hash`` and canonical JSON."""
    return hashlib.sha256(str(entry["prev_hash"]).encode() + _canonical(entry)).hexdigest()


def _image(image: Mapping[str, Any] | None) -> Any:
    return None if image is None else item_to_dynamodb_json(dict(image))


def _who(record: sk.ChangeRecord, actor_attribute: str | None) -> dict[str, Any]:
    who: dict[str, Any] = {
        "identity": None
        if record.user_identity is None
        else {"type": record.user_identity.type, "principal": record.user_identity.principal},
        "origin": record.origin,
        "actor": None,
    }
    if actor_attribute is not None:
        image = record.new_image if record.new_image is not None else record.old_image
        value = None if image is None else image.get(actor_attribute)
        who["actor"] = None if value is None else str(value)
    return who


def make_entry(
    record: sk.ChangeRecord, chain: str, pos: int, prev_hash: str, actor_attribute: str | None
) -> dict[str, Any]:
    """The audit entry of one change record at position ``pos`` of ``chain``."""
    entry: dict[str, Any] = {
        "chain": chain,
        "pos": pos,
        "table": record.table,
        "keys": _image(record.keys),
        "event": record.event_name,
        "sequence_number": record.sequence_number,
        "at": record.created_at.isoformat(),
        "who": _who(record, actor_attribute),
        "old_image": _image(record.old_image),
        "new_image": _image(record.new_image),
        "prev_hash": prev_hash,
    }
    entry["hash"] = entry_hash(entry)
    return entry


Head = tuple[int, str, int]  # (entries in the chain, last hash, last sequence number)
EMPTY: Head = (0, GENESIS, -1)


def extend(
    chain: str, head: Head, records: Sequence[sk.ChangeRecord], actor_attribute: str | None
) -> tuple[list[dict[str, Any]], Head]:
    """The entries ``records`` add to a chain whose head is ``head``, and the new head.
    Records at or below the head's sequence number are in the chain already (a
    redelivered batch) and add nothing."""
    count, prev, last_seq = head
    entries = []
    for r in records:
        if r.sequence_number <= last_seq:
            continue
        entry = make_entry(r, chain, count, prev, actor_attribute)
        entries.append(entry)
        count, prev, last_seq = count + 1, entry["hash"], r.sequence_number
    return entries, (count, prev, last_seq)


class Sink(Protocol):
    """Where entries go, and how they are read back."""

    async def append(
        self,
        chain: str,
        records: Sequence[sk.ChangeRecord],
        ctx: sk.Context,
        actor_attribute: str | None,
    ) -> None: ...

    def chains(self, app: sk.App) -> AsyncIterator[tuple[str, list[dict[str, Any]], Any]]:
        """Every chain: (name, entries in stored order, head or None)."""
        ...

    async def create(self, app: sk.App) -> None:
        """Create what the sink needs."""


# --- the table sink ------------------------------------------------------------------------
@dataclass
class TableSink:
    """Entries in a streamkit table (``streamkit_audit`` by default): partition key
    ``chain``, sort key ``pos``; the head of each chain at ``pos = -1``."""

    table: str = DEFAULT_TABLE

    async def create(self, app: sk.App) -> None:
        """Create the audit table if it is not there (``audit_router`` apps call this
        through :func:`prepare`)."""
        with contextlib.suppress(sk.TableExists):
            await app.create_table(
                self.table, partition_key="chain", sort_key=("pos", "N"), stream=None
            )

    async def append(
        self,
        chain: str,
        records: Sequence[sk.ChangeRecord],
        ctx: sk.Context,
        actor_attribute: str | None,
    ) -> None:
        t = ctx.get_table(self.table)
        try:
            head = await t.get({"chain": chain, "pos": -1})
        except sk.TableNotFound:
            raise sk.ConfigurationError(
                f"the audit table {self.table!r} does not exist: "
                "`await streamkit.handlers.audit.prepare(app, sink)` creates it"
            ) from None
        start: Head = (
            EMPTY
            if head is None
            else (int(head["count"]), str(head["last_hash"]), int(head["last_seq"]))
        )
        entries, (count, prev, last_seq) = extend(chain, start, records, actor_attribute)
        for entry in entries:
            ctx.put(t, {"chain": chain, "pos": entry["pos"], "entry": json.dumps(entry)})
        new_head = {
            "chain": chain,
            "pos": -1,
            "count": count,
            "last_hash": prev,
            "last_seq": last_seq,
        }
        # compare-and-set on the head: two writers of one chain cannot both commit
        if head is None:
            ctx.put(t, new_head, condition="attribute_not_exists(chain)")
        else:
            ctx.put(
                t,
                new_head,
                condition="#c = :c",
                names={"#c": "count"},
                values={":c": head["count"]},
            )

    async def chains(self, app: sk.App) -> AsyncIterator[tuple[str, list[dict[str, Any]], Any]]:
        t = app.table(self.table)
        by_chain: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        heads: dict[str, Any] = {}
        async for item in t.scan():
            chain, pos = str(item["chain"]), int(item["pos"])
            if pos == -1:
                heads[chain] = {"count": int(item["count"]), "last_hash": item["last_hash"]}
            else:
                by_chain.setdefault(chain, []).append((pos, json.loads(item["entry"])))
        for chain in sorted(set(by_chain) | set(heads)):
            entries = [e for _, e in sorted(by_chain.get(chain, []), key=lambda pe: pe[0])]
            yield chain, entries, heads.get(chain)


# --- the JSONL file sink -------------------------------------------------------------------
def _chain_file(directory: Path, chain: str) -> Path:
    return directory / (chain.replace("/", "_").replace("#", ".p") + ".jsonl")


@dataclass
class FileSink:
    """Entries as JSON lines, one file per chain in ``directory``, fsynced per batch."""

    directory: str | os.PathLike[str]
    _heads: dict[str, Head] = field(default_factory=dict, repr=False)

    def _head(self, path: Path) -> Head:
        count, prev, seq = EMPTY
        if path.exists():
            with path.open("rb") as f:
                for line in f:
                    if line.strip():
                        e = json.loads(line)
                        count, prev, seq = e["pos"] + 1, e["hash"], e["sequence_number"]
        return count, prev, seq

    async def create(self, app: sk.App) -> None:
        """Nothing to create (the directory is made on first write)."""

    async def append(
        self,
        chain: str,
        records: Sequence[sk.ChangeRecord],
        ctx: sk.Context,
        actor_attribute: str | None,
    ) -> None:
        directory = Path(self.directory)
        path = _chain_file(directory, chain)

        def write() -> None:
            directory.mkdir(parents=True, exist_ok=True)
            entries, head = extend(
                chain, self._heads.get(chain) or self._head(path), records, actor_attribute
            )
            lines = [json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in entries]
            if lines:
                with path.open("a", encoding="utf-8") as f:
                    f.writelines(lines)
                    f.flush()
                    os.fsync(f.fileno())
            self._heads[chain] = head

        await asyncio.to_thread(write)

    async def chains(self, app: sk.App) -> AsyncIterator[tuple[str, list[dict[str, Any]], Any]]:
        def read() -> list[tuple[str, list[dict[str, Any]], Any]]:
            out: list[tuple[str, list[dict[str, Any]], Any]] = []
            for path in sorted(Path(self.directory).glob("*.jsonl")):
                entries: list[dict[str, Any]] = []
                with path.open("rb") as f:
                    for n, line in enumerate(f):
                        if not line.strip():
                            continue
                        try:
                            entries.append(json.loads(line))
                        except ValueError:
                            entries.append({"_unreadable": n})
                chain = entries[0].get("chain", path.stem) if entries else path.stem
                out.append((str(chain), entries, None))
            return out

        for found in await asyncio.to_thread(read):
            yield found


# --- the change-log sink -------------------------------------------------------------------
@dataclass
class LogSink:
    """Entries appended to a topic of ``app``'s change log (``{namespace}.audit`` by
    default), keyed by chain.

    No table's topic can be ``{namespace}.audit`` (the table name ``audit`` is
    reserved); a ``topic`` of your own must lie outside ``{namespace}.``, where every
    name may be a table's (ConfigurationError otherwise).
    """

    app: sk.App
    topic: str | None = None
    partitions: int = 1
    _heads: dict[str, Head] = field(default_factory=dict, repr=False)
    _loaded: bool = field(default=False, repr=False)
    _producer: Any = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def name(self, app: sk.App) -> str:
        if self.topic is None:
            return audit_topic(app.namespace)
        return check_audit_topic(app.namespace, self.topic)

    async def _ready(self, app: sk.App) -> Any:
        from streamkit.log import TopicConfig

        if self._producer is None:
            log = app.log
            await log.open()
            await log.ensure_topic(
                self.name(app),
                TopicConfig(partitions=self.partitions, retention_ms=-1, cleanup_policy="delete"),
            )
            producer = log.producer(f"{self.name(app)}.{uuid.uuid4().hex[:12]}")
            await producer.start()
            self._producer = producer
        return self._producer

    async def _load_heads(self, app: sk.App) -> None:
        async for chain, entries, _ in self.chains(app):
            if entries:
                last = entries[-1]
                self._heads[chain] = (last["pos"] + 1, last["hash"], last["sequence_number"])

    async def create(self, app: sk.App) -> None:
        """Create the topic if it is not there."""
        await self._ready(app)

    async def append(
        self,
        chain: str,
        records: Sequence[sk.ChangeRecord],
        ctx: sk.Context,
        actor_attribute: str | None,
    ) -> None:
        from streamkit.log import OutRecord

        app = self.app
        async with self._lock:
            producer = await self._ready(app)
            if not self._loaded:
                await self._load_heads(app)
                self._loaded = True
            entries, head = extend(chain, self._heads.get(chain, EMPTY), records, actor_attribute)
            if entries:
                topic = self.name(app)
                await producer.append(
                    [
                        OutRecord(topic, chain.encode(), json.dumps(e, sort_keys=True).encode())
                        for e in entries
                    ]
                )
            self._heads[chain] = head

    async def chains(self, app: sk.App) -> AsyncIterator[tuple[str, list[dict[str, Any]], Any]]:
        log = app.log
        await log.open()
        if await log.describe_topic(self.name(app)) is None:
            return
        reader = log.reader(self.name(app))
        by_chain: dict[str, list[dict[str, Any]]] = {}
        try:
            async for batch in read_until(reader, await reader.end_offsets(settled=True)):
                for rec in batch:
                    e = json.loads(rec.value)
                    by_chain.setdefault(str(e.get("chain")), []).append(e)
        finally:
            await reader.close()
        for chain in sorted(by_chain):
            yield chain, by_chain[chain], None


# --- the handlers ---------------------------------------------------------------------------
def audit_router(
    tables: Sequence[str],
    sink: Sink | None = None,
    *,
    name: str = "audit",
    actor_attribute: str | None = None,
    batch_size: int = 500,
    start: Any = "trim_horizon",
) -> sk.Router:
    """A router with one audit handler per table (``{name}_{table}``), batches of
    ``batch_size`` records, every event, from ``start`` (the oldest record the log
    keeps by default; a datetime to begin later)."""
    if isinstance(tables, str):
        raise sk.ValidationError("tables= takes a list of table names")
    target = sink if sink is not None else TableSink()
    router = sk.Router()
    for table in tables:
        handler = _handler(target, actor_attribute)
        handler.__name__ = f"{name}_{table}".replace(".", "_").replace("-", "_")
        router.on_change(table, batch_size=batch_size, name=handler.__name__, start=start)(handler)
    return router


def _handler(target: Sink, actor_attribute: str | None) -> Any:
    async def audit(batch: sk.Batch, ctx: sk.Context) -> None:
        if ctx.partition < 0:
            raise sk.ValidationError(
                "the audit handler records each change once, from the live stream; it is not "
                "replayed (its trail already holds the history: `streamkit audit show`)"
            )
        await target.append(f"{ctx.table}#{ctx.partition}", list(batch), ctx, actor_attribute)

    return audit


async def prepare(app: sk.App, sink: Sink) -> None:
    """Create what the sink needs (the audit table, the topic) before handlers run."""
    await sink.create(app)


# --- verification and history ---------------------------------------------------------------
@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        ok: every chain is intact.
        chains: how many chains were checked.
        entries: how many entries.
        problems: ``(chain, position, reason)`` for the first problem of each broken chain.
    """

    ok: bool
    chains: int
    entries: int
    problems: list[tuple[str, int, str]]


def _check_chain(chain: str, entries: list[dict[str, Any]], head: Any) -> tuple[int, str] | None:
    prev = GENESIS
    last_seq = -1
    for i, e in enumerate(entries):
        if "_unreadable" in e:
            return i, "the entry is not valid JSON"
        if e.get("chain") != chain:
            return i, f"the entry belongs to chain {e.get('chain')!r}"
        if e.get("pos") != i:
            return (
                i,
                f"position {e.get('pos')} where {i} was expected (an entry is missing or moved)",
            )
        if e.get("prev_hash") != prev:
            return i, "prev_hash does not match the previous entry's hash (missing or reordered)"
        if entry_hash(e) != e.get("hash"):
            return i, "the entry's content does not match its hash (altered)"
        seq = e.get("sequence_number")
        if not isinstance(seq, int) or seq <= last_seq:
            return i, "sequence numbers go backwards (reordered)"
        prev, last_seq = e["hash"], seq
    if head is not None:
        if head["count"] != len(entries):
            return len(
                entries
            ), f"the chain head counts {head['count']} entries, {len(entries)} found"
        if head["last_hash"] != prev:
            return len(entries), "the chain head's last hash does not match the last entry"
    return None


async def verify(app: sk.App, sink: Sink | None = None, tables: Sequence[str] = ()) -> VerifyReport:
    """Re-read every chain (of ``tables``, or all) and check every link."""
    target = sink if sink is not None else TableSink()
    problems: list[tuple[str, int, str]] = []
    chains = entries = 0
    async for chain, found, head in target.chains(app):
        if tables and chain.rsplit("#", 1)[0] not in tables:
            continue
        chains += 1
        entries += len(found)
        bad = _check_chain(chain, found, head)
        if bad is not None:
            problems.append((chain, bad[0], bad[1]))
    return VerifyReport(not problems, chains, entries, problems)


async def history(
    app: sk.App, table: str, key: Mapping[str, Any], sink: Sink | None = None
) -> list[dict[str, Any]]:
    """Every entry of one item, oldest first."""
    target = sink if sink is not None else TableSink()
    wanted = item_to_dynamodb_json(normalize_item(dict(key)))
    out: list[dict[str, Any]] = []
    async for chain, found, _ in target.chains(app):
        if chain.rsplit("#", 1)[0] != table:
            continue
        out.extend(e for e in found if e.get("keys") == wanted)
    out.sort(key=lambda e: e["sequence_number"])
    return out
