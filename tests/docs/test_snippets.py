"""The Python snippets of docs/ run as written (every block that calls asyncio.run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DOCS.rglob("*.md")):
        if "design" in path.parts:
            continue
        for i, code in enumerate(_BLOCK.findall(path.read_text())):
            out.append((f"{path.relative_to(DOCS)}#{i}", code))
    return out


BLOCKS = _blocks()
# Snippets that call asyncio.run run as written; those that read a live Kafka topic
# (aiokafka) are only compiled here — the Kafka guide's examples are exercised by the
# integration tests instead.
SNIPPETS = [
    pytest.param(code, id=ident)
    for ident, code in BLOCKS
    if "asyncio.run(" in code and "aiokafka" not in code
]


@pytest.mark.parametrize("code", [pytest.param(c, id=i) for i, c in BLOCKS])
def test_every_python_block_compiles(code: str) -> None:
    compile(code, "<docs snippet>", "exec")


def test_docs_have_runnable_snippets() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs snippet>", "exec"), {"__name__": "__main__"})
