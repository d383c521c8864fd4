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

Each e-mail goes to exactly one address: the item's ``Email`` must be one valid
address (``ann@example.com`` or ``Ann <ann@example.com>``). Anything else — several
addresses (``a@x.com, b@y.com``), a CR or LF (header injection), no ``@`` — is
refused: nothing is sent and a warning is logged with the item's key (retrying
would not help, so the record does not go to the DLQ). An item without the
attribute is skipped silently.
"""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

import streamkit as sk

__all__ = ("WelcomeSettings", "build_message", "recipient", "welcome_router")

# RFC 5322's dot-atom local part and a host name of LDH labels: no quoted local parts,
# no address literals, nothing that needs SMTPUTF8
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")


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


def recipient(value: object) -> str:
    """The one e-mail address ``value`` holds (``ann@example.com``, ``Ann <ann@example.com>``).

    Raises:
        ValueError: ``value`` is not exactly one valid address: not a string, several
            addresses, a control character (CR, LF: header injection), no address.
    """
    if not isinstance(value, str):
        raise ValueError(f"the address is not a string but {type(value).__name__}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("the address contains a control character (CR, LF, ...)")
    if value.count("@") != 1:
        # several addresses, or none; also what some parsers misread (CVE-2023-27043)
        raise ValueError(f"the value holds {value.count('@')} '@', not exactly one address")
    pairs = [pair for pair in getaddresses([value]) if pair != ("", "")]
    if len(pairs) != 1:
        raise ValueError(f"the value holds {len(pairs)} addresses, not exactly one")
    address = pairs[0][1]
    if parseaddr(value)[1] != address or len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise ValueError("the value is not a valid e-mail address")
    return address


def build_message(record: sk.ChangeRecord, settings: WelcomeSettings) -> EmailMessage | None:
    """The e-mail for a new user's INSERT record; None when the item has no address.

    Raises:
        ValueError: the item's address is not exactly one valid address (see
            :func:`recipient`).
    """
    image = record.new_image or {}
    value = image.get(settings.email_attribute)
    if value is None or value == "":
        return None
    address = recipient(value)
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
        smtp.send_message(message, to_addrs=[str(message["To"])])  # that one address only


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
    def welcome_email(record: sk.ChangeRecord, ctx: sk.Context) -> None:  # blocking SMTP:
        try:  # a worker thread
            message = build_message(record, conf)
        except ValueError as e:
            # the item's data, not the server: no retry would help; never send it
            ctx.log.warning(
                "welcome e-mail not sent: not exactly one valid address",
                keys=dict(record.keys),
                attribute=conf.email_attribute,
                reason=str(e),
            )
            return
        if message is not None:
            _send(message, conf)

    return router
