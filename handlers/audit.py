"""Kept for compatibility: the handler lives in ``streamkit.handlers.audit``."""

from streamkit.handlers.audit import *  # noqa: F403
from streamkit.handlers.audit import __all__  # noqa: F401
