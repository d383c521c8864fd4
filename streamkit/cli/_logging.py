"""Logging for the command line: configured once, here, and nowhere in the library."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ("configure_logging",)

_configured = False


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of each write (it may be replaced after
    logging was configured: by a test runner capturing output, by a daemonizer)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, force: bool = False
) -> None:
    """Configure structlog: readable in a terminal, JSON lines otherwise.

    Args:
        level: the minimum level ("DEBUG", "INFO", "WARNING", ...).
        json: force JSON (True) or console (False) output; None decides by ``isatty``.
        force: configure again (otherwise only the first call counts).
    """
    global _configured  # noqa: PLW0603 - configure once per process
    if _configured and not force:
        return
    _configured = True
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
