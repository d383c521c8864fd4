"""Kept for compatibility: the handler lives in ``streamkit.handlers.welcome``."""

from streamkit.handlers.welcome import *  # noqa: F403
from streamkit.handlers.welcome import __all__  # noqa: F401
