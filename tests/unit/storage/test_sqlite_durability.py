"""``synchronous``: what the URL sets, and what the operations guide says it costs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamkit.storage._sqlite import SqliteEngine, _Rows

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "operations.md"


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match is not None, f"no '## {title}' section"
    return " ".join(match.group(1).split())


@pytest.mark.parametrize(("query", "level"), [("", 1), ("?synchronous=FULL", 2)])
async def test_synchronous_comes_from_the_url(tmp_path: Path, query: str, level: int) -> None:
    engine = SqliteEngine(f"sqlite:///{tmp_path}/s.db{query}")
    await engine.open()
    try:

        def fn(rows: _Rows) -> int:
            return int(rows.conn.execute("PRAGMA synchronous").fetchone()[0])

        assert await engine.write_fn(fn) == level  # the connection that commits
    finally:
        await engine.close()


def test_the_guide_says_power_loss_can_reuse_published_sequence_numbers() -> None:
    durability = _section(GUIDE.read_text(), "Durability")
    assert "synchronous=NORMAL" in durability
    assert re.search(r"power loss", durability, re.IGNORECASE)
    # the hazard: published records whose sequence numbers are handed out again
    assert re.search(r"published", durability)
    assert re.search(r"sequence numbers again|reuse[sd]? (?:their|the|those) sequence", durability)
    # how to turn it off, and what that costs
    assert "?synchronous=FULL" in durability
    assert re.search(r"fsync per commit", durability)
