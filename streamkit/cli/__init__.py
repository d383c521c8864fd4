"""The ``streamkit`` command line. Importing this package does not import the library's
heavy parts; each command imports what it needs."""

from __future__ import annotations

__all__ = ("main",)


def main() -> None:
    """Entry point of the ``streamkit`` console script."""
    from streamkit.cli._main import cli

    cli()
