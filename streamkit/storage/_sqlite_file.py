"""Opening a SQLite store's file: the storage URL and its options, the connections to
the file, what is at the path (found, before the first connection, without changing
anything there), and the size of the WAL.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from streamkit.exceptions import ConfigurationError, StorageError
from streamkit.storage._sqlite_rows import _SCHEMA, SCHEMA_VERSION

_BUSY_MS = 30_000  # every connection's busy timeout where no shorter one is set
_WAL_LIMIT_MB = 64  # default journal_size_limit, and the size the idle shrink aims below
_MODES = ("ro", "rw", "rwc")  # like SQLite's URI mode: read-only / existing / create

_HEADER = b"SQLite format 3\x00"
# streamkit's own tables: a file holding only (some of) these is a store whose creation
# was interrupted, not a foreign database
_OWN_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))


def _parse_url(url: str) -> tuple[str | None, dict[str, str]]:
    parts = urlsplit(url)
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        return None, opts
    if parts.scheme != "sqlite":
        raise ConfigurationError(
            f"unsupported storage URL {url!r}: use sqlite:///path or memory://"
        )
    path = parts.path
    if parts.netloc:
        raise ConfigurationError(
            f"storage URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs -> /abs
    if not path:
        raise ConfigurationError(f"storage URL {url!r} has no file path")
    if path == ":memory:":
        return None, opts
    return path, opts


def read_only_url(url: str) -> str:
    """``url`` with ``mode=ro`` when it names a SQLite file: for commands that only
    read, so that a mistyped path or a foreign file is reported, never created or
    changed. Other URLs (``memory://``, PostgreSQL) come back unchanged."""
    if urlsplit(url).scheme != "sqlite" or _parse_url(url)[0] is None:
        return url
    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "mode"]
    return f"{base}?{urlencode([*kept, ('mode', 'ro')])}"


def _parse_options(url: str) -> tuple[str | None, str, str, int]:
    """The file path (None: in memory), ``synchronous``, ``mode`` and WAL limit in bytes
    that a storage URL asks for (see :class:`SqliteEngine`); ConfigurationError if an
    option is wrong."""
    path, opts = _parse_url(url)
    sync = opts.get("synchronous", "NORMAL").upper()
    if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(f"synchronous={sync!r} must be OFF, NORMAL, FULL or EXTRA")
    mode = opts.get("mode", "rwc").lower()
    if mode not in _MODES:
        raise ConfigurationError(
            f"storage URL {url!r}: mode={mode!r} must be ro (an existing store, "
            "read-only), rw (an existing store) or rwc (create it if absent; the default)"
        )
    if mode != "rwc" and path is None:
        raise ConfigurationError(
            f"storage URL {url!r}: mode={mode} needs an existing store; "
            "an in-memory store is always new"
        )
    limit = opts.get("wal_limit_mb", str(_WAL_LIMIT_MB))
    try:
        limit_mb = int(limit)
    except ValueError:
        limit_mb = -1
    if limit_mb < 0:
        raise ConfigurationError(
            f"storage URL {url!r}: wal_limit_mb={limit!r} must be a whole number of MiB >= 0"
        )
    return path, sync, mode, limit_mb * 1024 * 1024


def _open_file(
    path: str, *, first: bool, mode: str, url: str, synchronous: str, wal_limit: int
) -> sqlite3.Connection:
    """A connection to the store's file at ``path``, opened in ``mode`` (``first``: the
    writer's first one, which checks what the file is)."""
    read_only = mode == "ro"
    if first:
        # decide what the file is before anything can change it (no WAL switch,
        # no CREATE on a foreign database; no directory or file for a wrong path)
        version = _inspect_file(path)
        if version is None and mode != "rwc":
            raise ConfigurationError(
                f"no streamkit store at {path} (mode={mode} opens an existing "
                "store only; it creates no file, directory or schema)"
            )
        if read_only and version != SCHEMA_VERSION:
            raise ConfigurationError(
                f"{url}: storage schema version {version} cannot be read here "
                f"(this streamkit uses {SCHEMA_VERSION}; opening it without mode=ro "
                "migrates a version 2 store)"
            )
    if mode == "rwc":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=_BUSY_MS / 1000
        )
    else:
        uri = Path(path).resolve().as_uri() + f"?mode={mode}"
        conn = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_MS / 1000,
        )
    try:
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            # a reset WAL is truncated to this; the idle shrink empties it
            conn.execute(f"PRAGMA journal_size_limit={wal_limit}")
            # the checkpointer thread checkpoints (passively, off the write path); this is
            # only the safety net if it falls far behind
            conn.execute("PRAGMA wal_autocheckpoint=20000")
    except BaseException:
        conn.close()
        raise
    return conn


def _ro_uri(path: str, *, immutable: bool = False) -> str:
    """A read-only ``file:`` URI of ``path`` (``immutable``: not even -wal/-shm files)."""
    return Path(path).resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")


def _not_a_store(path: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{path} is not a streamkit store: {why}. It was left unchanged; point the "
        "storage URL at a streamkit store or at a new file"
    )


def _inspect_file(path: str) -> str | None:
    """What is at ``path``, found without changing anything there.

    None for a new store: no file, an empty one, or a SQLite database holding no
    tables but streamkit's (a store whose creation was cut short). Otherwise the
    streamkit schema version stored in it. Raises ConfigurationError for anything
    else: a file that is not a SQLite database, or one with other tables and no
    ``sk_meta`` schema row.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigurationError(f"cannot open {path} as a streamkit store: {e}") from None
    if not header:
        return None
    if len(header) < 100 or not header.startswith(_HEADER):
        raise _not_a_store(path, "not a SQLite database")
    # A WAL database closed cleanly has no -wal file; a mode=ro connection would create
    # -wal and -shm files next to it (and leave them). With no -wal file, the database
    # file is all there is, so reading it as immutable is exact; if that read fails
    # (someone started writing meanwhile), a plain read-only connection decides.
    uris = [_ro_uri(path)]
    if header[18] == 2 and not os.path.exists(f"{path}-wal"):
        uris.insert(0, _ro_uri(path, immutable=True))
    for i, uri in enumerate(uris):
        try:
            return _classify(path, uri)
        except sqlite3.DatabaseError as e:
            if i + 1 < len(uris) and e.sqlite_errorname != "SQLITE_NOTADB":
                continue
            if e.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise _not_a_store(path, f"SQLite cannot read it: {e}") from None
            err = StorageError(
                f"cannot read {path}: {e}",
                retriable=e.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"),
            )
            raise err from e
    raise AssertionError("unreachable")  # pragma: no cover


def _classify(path: str, uri: str) -> str | None:
    conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000)
    try:
        names = {
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        if "sk_meta" in names:
            try:
                row = conn.execute("SELECT value FROM sk_meta WHERE key='schema'").fetchone()
            except sqlite3.OperationalError:  # a foreign table called sk_meta
                row = None
            if row is not None:
                return str(row[0])
    finally:
        conn.close()
    others = sorted(n for n in names - _OWN_TABLES if not n.startswith("sqlite_"))
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise _not_a_store(path, f"it holds other tables ({shown}) and no streamkit schema")
    return None


def _wal_size(path: str) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0
