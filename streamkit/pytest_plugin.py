"""streamkit's pytest plugin: fixtures for testing handlers.

pytest loads it by itself wherever streamkit is installed (the ``pytest11`` entry
point ``streamkit``; ``-p no:streamkit`` turns it off). It needs pytest-asyncio
(``asyncio_mode = "auto"``, or ``@pytest.mark.asyncio`` on each test) and defines:

- ``streamkit_app``: a fresh :func:`streamkit.testing.app` (``memory://`` storage, a
  temporary ``local://`` log, a namespace of its own) for one test, closed after it.

Example:
    ```python
    import streamkit as sk
    from streamkit import testing


    async def test_welcome(streamkit_app: sk.App) -> None:
        seen: list[str] = []

        @streamkit_app.on_insert("Users")
        async def welcome(record: sk.ChangeRecord) -> None:
            seen.append(record.keys["UserID"])

        async with testing.running(streamkit_app) as t:
            users = await streamkit_app.create_table("Users", partition_key="UserID")
            await users.put({"UserID": "1"})
            await t.drain()
        assert seen == ["1"]
    ```

To test the handlers of your real App, ``testing.isolated(app)`` (see
:mod:`streamkit.testing`) works at module level without a fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamkit.testing import IsolatedApp

__all__ = ("streamkit_app",)

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - without pytest-asyncio there is no fixture
    _HAVE_PYTEST_ASYNCIO = False
else:
    _HAVE_PYTEST_ASYNCIO = True

if _HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def streamkit_app() -> AsyncIterator[IsolatedApp]:
        """A fresh ``streamkit.testing.app()`` for the test; closed after it."""
        from streamkit import testing

        app = testing.app()
        try:
            yield app
        finally:
            await app.close()
