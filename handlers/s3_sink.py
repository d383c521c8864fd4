"""Kept for compatibility: the handler lives in ``streamkit.handlers.s3_sink``."""

from streamkit.handlers.s3_sink import *  # noqa: F403
from streamkit.handlers.s3_sink import __all__  # noqa: F401
