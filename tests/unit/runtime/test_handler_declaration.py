"""Mistakes in declaring and running handlers fail loudly, at once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import streamkit as sk


def _app(tmp_path: Path) -> sk.App:
    return sk.App(storage="memory://", log=f"local://{tmp_path}/log")


@pytest.mark.parametrize("method", ["on_insert", "on_modify", "on_remove", "on_change"])
def test_a_decorator_without_its_call_says_how_to_write_it(tmp_path: Path, method: str) -> None:
    app = _app(tmp_path)

    def greet(record: sk.ChangeRecord) -> None: ...

    with pytest.raises(sk.ValidationError) as err:
        getattr(app, method)(greet)  # what `@app.on_insert` without "(...)" does
    assert f'use @app.{method}("Table")' in str(err.value)
    assert "'greet'" in str(err.value)
    assert app.handlers == {}


def test_a_router_decorator_without_its_call_names_the_router() -> None:
    router = sk.Router()
    with pytest.raises(sk.ValidationError, match=r'@router\.on_insert\("Table"\)'):

        @router.on_insert  # type: ignore[arg-type]
        def greet(record: sk.ChangeRecord) -> None: ...


def test_a_table_that_is_not_a_string_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(sk.ValidationError, match="table's name first"):
        _app(tmp_path).on_insert(42)  # type: ignore[arg-type]


async def test_run_refuses_an_app_without_handlers(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with pytest.raises(sk.ConfigurationError, match="no handlers"):
        await app.run()
    await app.close()


async def test_running_without_handlers_warns_unless_asked_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path)
    with caplog.at_level(logging.WARNING, logger="streamkit"):
        async with app.running():
            pass
        async with app.running(handlers=[]):
            pass
    await app.close()
    warnings = [r for r in caplog.records if "no handlers" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_changes_of_a_missing_table_raise_table_not_found(tmp_path: Path) -> None:
    app = _app(tmp_path)
    for follow in (True, False):
        with pytest.raises(sk.TableNotFound, match="NoSuchTable"):
            async for _ in app.changes("NoSuchTable", follow=follow):
                pass
    await app.close()


async def test_following_a_table_without_a_stream_is_refused(tmp_path: Path) -> None:
    app = _app(tmp_path)
    await app.create_table("Quiet", partition_key="k", stream=None)
    with pytest.raises(sk.ConfigurationError, match="has no stream"):
        async for _ in app.changes("Quiet"):
            pass
    assert [r async for r in app.changes("Quiet", follow=False)] == []
    await app.close()


async def test_a_deleted_tables_stream_stays_readable(tmp_path: Path) -> None:
    app = _app(tmp_path)
    users = await app.create_table("Users", partition_key="UserID")
    await users.put({"UserID": "a"})
    async with app.running(handlers=[]):
        await app.drain()
    await app.delete_table("Users")
    records = [r async for r in app.changes("Users", follow=False)]
    assert [r.keys["UserID"] for r in records] == ["a"]
    await app.close()
