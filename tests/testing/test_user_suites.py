"""What a user's test suite does with ``streamkit.testing``, run by pytester in a process
of its own: the testing guide's pattern across several tests, a real App's handlers
tested through ``testing.isolated`` without ever opening its store, and the
``streamkit_app`` fixture of streamkit's pytest plugin."""

from __future__ import annotations

import pytest

# the configuration docs/guides/testing.md shows
PYPROJECT = """
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

GUIDE_PATTERN = """
import pytest

import streamkit as sk
from streamkit import testing

app = testing.app()  # module level: every test uses it, each on fresh backends
welcomed: list[str] = []


@app.on_insert("Users", retries=0)
async def welcome(record: sk.ChangeRecord) -> None:
    if "@" not in record.new_image["Email"]:
        raise ValueError("not an e-mail address")
    welcomed.append(record.new_image["Email"])


@pytest.fixture(autouse=True)
def empty_outbox() -> None:
    welcomed.clear()


async def test_welcome() -> None:
    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "1", "Email": "a@example.com"})
        await users.put({"UserID": "2", "Email": "nope"})
        await t.drain()
        letters = await t.dead_letters("welcome")
    assert welcomed == ["a@example.com"]
    assert [letter.record.keys["UserID"] for letter in letters] == ["2"]


async def test_welcome_again() -> None:
    # the same table name, the same handler: nothing of the first test is here
    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "3", "Email": "b@example.com"})
        await t.drain()
        assert await t.dead_letters("welcome") == []
    assert welcomed == ["b@example.com"]
"""


def test_the_guides_module_level_app_works_in_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.makepyfile(test_signup=GUIDE_PATTERN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


SHOP = '''
"""The user's real application: handlers on an App with a real store and log."""
import streamkit as sk

app = sk.App(storage="sqlite:///./shop.db", log="local://./shop-log", namespace="shop")
sent: list[str] = []


@app.on_insert("Users", batch_size=10, retries=0)
async def welcome(batch: sk.Batch) -> None:
    for record in batch:
        if record.new_image.get("Email") == "poison":
            raise ValueError("poison")
        sent.append(record.new_image["Email"])
'''

SHOP_TESTS = """
import pytest

import shop
import streamkit as sk
from streamkit import testing

app = testing.isolated(shop.app)  # shop's handlers; ./shop.db is never opened


@pytest.fixture(autouse=True)
def no_mail_yet() -> None:
    shop.sent.clear()


async def test_signups_are_welcomed() -> None:
    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "1", "Email": "a@example.com"})
        await t.drain()
    assert shop.sent == ["a@example.com"]


async def test_a_poison_batch_goes_to_the_dlq() -> None:
    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "2", "Email": "poison"})
        await t.drain()
        letters = await t.dead_letters("welcome")
    assert [letter.record.keys["UserID"] for letter in letters] == ["2"]
    assert shop.sent == []


async def test_invoke_calls_the_handler_of_the_copy() -> None:
    record = testing.make_record("INSERT", {"UserID": "3"}, new={"UserID": "3", "Email": "c@x.io"})
    await testing.invoke(app, "welcome", record)
    assert shop.sent == ["c@x.io"]
    await app.close()


def test_the_copy_has_the_same_handlers_and_its_own_backends() -> None:
    assert app.handlers == shop.app.handlers
    assert app.storage_url == "memory://"
    assert app.log_url != shop.app.log_url and app.namespace != shop.app.namespace


async def test_the_helpers_refuse_the_real_app() -> None:
    with pytest.raises(sk.ConfigurationError, match="isolated"):
        async with testing.running(shop.app):
            pass
    record = testing.make_record("INSERT", {"UserID": "4"}, new={"UserID": "4", "Email": "d@x.io"})
    with pytest.raises(sk.ConfigurationError, match="isolated"):
        await testing.invoke(shop.app, "welcome", record)
    assert shop.sent == []
"""


def test_isolated_tests_a_real_apps_handlers_without_opening_its_store(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.makepyfile(shop=SHOP, test_shop=SHOP_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    # neither the real App's store and log nor streamkit's defaults were touched
    left = sorted(p.name for p in pytester.path.iterdir())
    assert not {"shop.db", "shop-log", "streamkit.db", ".streamkit"} & set(left), left


FIXTURE_TESTS = """
import streamkit as sk
from streamkit import testing

namespaces: list[str] = []


async def _one_signup(app: sk.App) -> list[str]:
    seen: list[str] = []

    @app.on_insert("Users")
    async def greet(record: sk.ChangeRecord) -> None:
        seen.append(record.keys["UserID"])

    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "1"})
        await t.drain()
    namespaces.append(app.namespace)
    return seen


async def test_first(streamkit_app: sk.App) -> None:
    assert await _one_signup(streamkit_app) == ["1"]


async def test_second(streamkit_app: sk.App) -> None:
    assert await _one_signup(streamkit_app) == ["1"]
    assert len(set(namespaces)) == 2
"""


def test_the_streamkit_app_fixture_gives_each_test_a_fresh_app(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.makepyfile(test_fixture=FIXTURE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
