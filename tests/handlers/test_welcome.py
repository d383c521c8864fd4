"""handlers/welcome.py against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

import streamkit as sk
from streamkit import testing
from streamkit.handlers.welcome import welcome_router


class Inbox:
    """An aiosmtpd handler that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
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
