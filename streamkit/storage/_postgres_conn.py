"""The PostgreSQL engine's connection handling: the storage URL (:class:`_Target`,
:func:`_parse_url`) and the one place asyncpg and socket errors become streamkit errors
(:func:`_wrap`, :func:`_guard`, :func:`_dropping_lost`).

Used by :class:`~streamkit.storage._postgres.PostgresEngine` and its pool side
(:mod:`streamkit.storage._postgres_pool`); the module docstring of ``_postgres`` explains
which errors are retriable and why.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from streamkit.exceptions import ConfigurationError, StorageError, StreamkitError

# --- errors: the one place asyncpg and socket errors become streamkit errors -------------


def _is_lost(e: BaseException) -> bool:
    """Whether ``e`` means the connection is gone (or the server is going or coming), or
    is in a state it cannot be trusted in: it is then dropped and the call may retry."""
    if isinstance(e, OSError | asyncpg.PostgresConnectionError | asyncpg.InternalClientError):
        # InternalClientError: asyncpg's protocol lost track of the connection, seen when
        # the server crashes in the middle of a statement
        return True
    if isinstance(e, asyncpg.OperatorInterventionError):
        return not isinstance(e, asyncpg.QueryCanceledError)  # shutdown, crash, starting up
    # asyncpg raises a bare InterfaceError when a closed connection is used
    return isinstance(e, asyncpg.InterfaceError) and "closed" in str(e)


def _wrap(e: BaseException, target: _Target, *, connecting: bool = False) -> BaseException:
    """The streamkit error for ``e`` (``e`` itself when it is not a database error)."""
    if isinstance(e, StreamkitError) or not isinstance(
        e, OSError | asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError
    ):
        return e
    where = target.where
    if connecting:
        err: StreamkitError | None = None
        if isinstance(e, asyncpg.InvalidCatalogNameError):
            err = ConfigurationError(
                f"database {target.database!r} does not exist on {target.server}: create it "
                f"(CREATE DATABASE {target.database}) or fix the storage URL"
            )
        elif isinstance(e, asyncpg.InvalidAuthorizationSpecificationError):
            err = ConfigurationError(
                f"PostgreSQL at {target.server} refused user {target.user!r} ({e}): check the "
                "user name and password in the storage URL"
            )
        elif isinstance(e, asyncpg.InsufficientPrivilegeError):
            err = ConfigurationError(
                f"user {target.user!r} may not use database {where} ({e}): grant it CONNECT "
                "and CREATE, or use another user"
            )
        elif _is_lost(e) or isinstance(e, asyncpg.TooManyConnectionsError):
            err = StorageError(
                f"cannot reach PostgreSQL at {target.server} ({type(e).__name__}: {e}): check "
                "that the server runs and that the host and port of the storage URL are right",
                retriable=True,
            )
        elif isinstance(e, asyncpg.PostgresError | ValueError):
            err = ConfigurationError(f"PostgreSQL refused the connection to {where}: {e}")
        if err is not None:
            err.__cause__ = e
            return err
    retriable = _is_lost(e) or isinstance(
        e, asyncpg.TransactionRollbackError | asyncpg.TooManyConnectionsError
    )
    hint = "; retrying may succeed" if retriable else ""
    err = StorageError(
        f"PostgreSQL storage {where} failed ({type(e).__name__}: {e}){hint}", retriable=retriable
    )
    err.__cause__ = e
    return err


@contextlib.contextmanager
def _guard(target: _Target, *, connecting: bool = False) -> Iterator[None]:
    try:
        yield
    except Exception as e:
        err = _wrap(e, target, connecting=connecting)
        if err is e:
            raise
        raise err from e


@contextlib.asynccontextmanager
async def _dropping_lost(conn: Any) -> AsyncIterator[None]:
    """Close a pool connection that failed as lost, so the pool never hands it out again
    (asyncpg may not have noticed yet) and replaces it with a new one."""
    try:
        yield
    except Exception as e:
        if _is_lost(e):
            # a connection asyncpg saw close is back in the pool already (and detached)
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        raise


# --- the URL -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    dsn: str  # the URL without streamkit's own options, for asyncpg
    user: str
    server: str  # host:port
    database: str
    pool_size: int
    connect_timeout: float

    @property
    def where(self) -> str:
        return f"{self.user}@{self.server}/{self.database}"


def _parse_url(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as e:
        raise ConfigurationError(f"storage URL is malformed ({e}): use {_URL_FORM}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError(f"storage URL scheme {parts.scheme!r} is not PostgreSQL")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigurationError(f"storage URL names no database: use {_URL_FORM}")
    opts = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        pool_size = int(opts.pop("pool_size", "10"))
        timeout = float(opts.pop("connect_timeout", "10"))
    except ValueError as e:
        raise ConfigurationError(f"storage URL option is not a number: {e}") from None
    if pool_size < 1 or timeout <= 0:
        raise ConfigurationError("storage URL: pool_size must be >= 1 and connect_timeout > 0")
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(opts), ""))
    user = unquote(parts.username or "") or os.environ.get("PGUSER", "") or "(default user)"
    host = parts.hostname or "localhost"
    return _Target(dsn, user, f"{host}:{port}", database, pool_size, timeout)


_URL_FORM = "postgresql://user:password@host:port/database[?pool_size=10&connect_timeout=10]"


async def _no_reset(conn: Any) -> None:
    # Pool connections keep no session state (locks are transaction-scoped, LISTEN has
    # its own connection): skip asyncpg's reset query, a round trip per release.
    return None
