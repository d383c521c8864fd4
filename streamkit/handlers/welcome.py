"""The welcome e-mail: a user signs up (an INSERT), the stream triggers a handler, an
e-mail goes out over real SMTP.

Example:
    ```python
    import streamkit as sk
    from streamkit.handlers.welcome import welcome_router

    app = sk.App(storage="memory://", log="local:///tmp/streamkit-welcome-example/log")
    app.include_router(welcome_router("Users", smtp_host="127.0.0.1", smtp_port=8025))
    ```

Delivery is at least once, like every handler's: after a crash a user may get the
e-mail twice. Each message carries a ``Message-ID`` made from the change record's
event id, so a mail system (or a test) can recognise a repeat.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

import streamkit as sk

__all__ = ("WelcomeSettings", "build_message", "welcome_router")


@dataclass(frozen=True, slots=True)
class WelcomeSettings:
    """Where and how to send.

    Attributes:
        smtp_host, smtp_port: the SMTP server.
        sender: the From address.
        email_attribute: the item attribute holding the user's address.
        name_attribute: the attribute holding a name to greet (optional in items).
        subject: the Subject line.
        starttls: upgrade the connection with STARTTLS before sending.
        username, password: SMTP AUTH credentials, if the server wants them.
        timeout: seconds for the SMTP conversation.
    """

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    sender: str = "welcome@streamkit.invalid"
    email_attribute: str = "Email"
    name_attribute: str = "Name"
    subject: str = "Welcome!"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0


def build_message(record: sk.ChangeRecord, settings: WelcomeSettings) -> EmailMessage | None:
    """The e-mail for a new user's INSERT record; None when the item has no address."""
    image = record.new_image or {}
    address = image.get(settings.email_attribute)
    if not isinstance(address, str) or "@" not in address:
        return None
    name = image.get(settings.name_attribute)
    greeting = f"Hello {name}," if isinstance(name, str) and name else "Hello,"
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = address
    message["Subject"] = settings.subject
    message["Message-ID"] = f"<{record.event_id}@streamkit>"
    message.set_content(f"{greeting}\n\nwelcome aboard.\n")
    return message


def _send(message: EmailMessage, settings: WelcomeSettings) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.username is not None:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(message)


def welcome_router(
    table: str = "Users",
    *,
    name: str = "welcome_email",
    retries: int = 5,
    **settings: object,
) -> sk.Router:
    """A router with one handler: on every INSERT of ``table``, e-mail the new user.

    Args:
        table: the users table.
        name: the handler's name (its consumer group and DLQ).
        retries: retries while the SMTP server is unreachable (then the record goes to
            the handler's DLQ, whence ``streamkit dlq redrive`` sends it again).
        settings: :class:`WelcomeSettings` fields (``smtp_host=``, ``smtp_port=``, ...).
    """
    conf = WelcomeSettings(**settings)  # type: ignore[arg-type]
    router = sk.Router()

    @router.on_insert(table, name=name, retries=retries, retry_delay=0.5)
    def welcome_email(record: sk.ChangeRecord) -> None:  # blocking SMTP: a worker thread
        message = build_message(record, conf)
        if message is not None:
            _send(message, conf)

    return router
