"""handlers/welcome.py against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller

import streamkit as sk
from streamkit import testing
from streamkit.handlers.welcome import recipient, welcome_router


class Inbox:
    """An aiosmtpd handler that keeps every message it is sent, and its envelope's
    recipients (where the server delivers it, whatever the headers say)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_a_signup_sends_one_welcome_email(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    app = testing.app()
    app.include_router(welcome_router("Users", smtp_port=port, sender="hi@shop.example"))
    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "1", "Email": "ann@example.com", "Name": "Ann"})
        await users.put({"UserID": "2", "Name": "No Address"})  # nothing to send
        await users.update({"UserID": "1"}, set={"Name": "Ann B."})  # a MODIFY: no e-mail
        await t.drain()
        assert await t.dead_letters("welcome_email") == []
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == "ann@example.com"
    assert mail["From"] == "hi@shop.example"
    assert mail["Subject"] == "Welcome!"
    assert "Hello Ann," in mail.get_payload()
    assert mail["Message-ID"].endswith("@streamkit>")


async def test_an_unreachable_server_sends_the_signup_to_the_dlq_and_redrive_delivers_it(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    app = testing.app()
    closed = _free_port()  # nothing listens here
    router = welcome_router("Users", smtp_port=closed, retries=1, timeout=1.0)
    app.include_router(router)
    async with testing.running(app) as t:
        users = await app.create_table("Users", partition_key="UserID")
        await users.put({"UserID": "1", "Email": "bob@example.com"})
        await t.drain()
        (letter,) = await t.dead_letters("welcome_email")
        assert letter.error_type == "ConnectionRefusedError"
        assert letter.record is not None and letter.record.new_image is not None
        assert letter.record.new_image["Email"] == "bob@example.com"
    # the server is back (a fixed configuration): redrive through a handler that reaches it
    fixed = testing.app(storage=app.storage_url, log=app.log_url, namespace=app.namespace)
    fixed.include_router(welcome_router("Users", smtp_port=port))
    assert isinstance(fixed, sk.App)
    summary = await fixed.redrive("welcome_email")
    await fixed.close()
    assert summary == {"redriven": 1, "failed": 0, "pending": 0}
    await asyncio.sleep(0)
    assert [m["To"] for m in inbox.messages] == ["bob@example.com"]


# --- exactly one address per e-mail ---------------------------------------------------------
REFUSED = {
    "2": "ann@example.com, eve@evil.example",  # a list: once sent to every address in it
    "3": "ann@example.com; eve@evil.example",
    "4": "ann@example.com\r\nBcc: eve@evil.example",  # header injection
    "5": "ann@example.com\nBcc: eve@evil.example",
    "6": "alice@example.org)<eve@evil.example>",  # what lenient parsers read as eve
    "7": "not an address",
    "8": "@example.com",
}


async def test_a_value_that_is_not_exactly_one_address_gets_no_email_and_a_warning(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    app = testing.app()
    app.include_router(welcome_router("Users", smtp_port=port, retries=0))
    with structlog.testing.capture_logs() as logs:
        async with testing.running(app) as t:
            users = await app.create_table("Users", partition_key="UserID")
            await users.put({"UserID": "1", "Email": "Ann Lee <ann@example.com>"})
            for uid, email in REFUSED.items():
                await users.put({"UserID": uid, "Email": email})
            await users.put({"UserID": "9", "Email": "bob@example.com"})
            await t.drain()
            # refused, not failed: nothing to retry, nothing in the DLQ
            assert await t.dead_letters("welcome_email") == []
    # two partitions, delivered side by side: the order between them is not promised
    assert sorted(inbox.recipients) == [["ann@example.com"], ["bob@example.com"]]
    assert sorted(m["To"] for m in inbox.messages) == ["ann@example.com", "bob@example.com"]
    warned = sorted(
        e["keys"]["UserID"]
        for e in logs
        if e["log_level"] == "warning" and e["event"].startswith("welcome e-mail not sent")
    )
    assert warned == sorted(REFUSED)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("ann@example.com", "ann@example.com"),
        ("Ann Lee <ann@example.com>", "ann@example.com"),
        ("first.last+tag@mail.example.co.uk", "first.last+tag@mail.example.co.uk"),
    ],
)
def test_recipient_takes_one_address(value: str, address: str) -> None:
    assert recipient(value) == address


@pytest.mark.parametrize(
    "value", [*REFUSED.values(), "", "a b@example.com", ".a@example.com", 42, None]
)
def test_recipient_refuses_anything_but_one_valid_address(value: object) -> None:
    with pytest.raises(ValueError, match=r"address|'@'"):
        recipient(value)
