"""Optional dependencies: the extra that installs each, and a clear error when one is missing.

``pip install streamkit`` brings what the embedded defaults and ``streamkit demo``
need; the rest come with extras (``pip install 'streamkit[kafka]'``, ``[all]``).
Each optional import is made where it is used, inside :func:`needs`, so a missing
package is reported as what to install, not as a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from streamkit.exceptions import ConfigurationError

__all__ = ("EXTRAS", "needs")

# extra -> (what needs it, the top-level modules it installs)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kafka": ("the Kafka change log (log=kafka://...)", ("aiokafka",)),
    "s3": ("writing to s3://", ("boto3", "botocore", "s3transfer")),
    "server": ("`streamkit serve`", ("uvicorn", "botocore")),
    "postgres": ("PostgreSQL storage (storage=postgresql://...)", ("asyncpg",)),
}


@contextlib.contextmanager
def needs(extra: str) -> Iterator[None]:
    """Run imports; if one of ``extra``'s packages is missing, raise ConfigurationError
    saying ``pip install 'streamkit[extra]'`` (the ImportError is its cause).

    Example:
        ```python
        with needs("kafka"):
            from streamkit.log._kafka import KafkaLog
        ```
    """
    what, modules = EXTRAS[extra]
    try:
        yield
    except ModuleNotFoundError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in modules:
            raise
        raise ConfigurationError(
            f"{what} needs the {missing!r} package, which is not installed: "
            f"pip install 'streamkit[{extra}]' (or 'streamkit[all]')"
        ) from e
