"""Linux file events for "another process wrote this database": used by the embedded
log and the SQLite store to wake waiting readers without polling.

A leaf module (only the standard library), so the log and the store may both use it.
"""

from __future__ import annotations

import ctypes
import os
import select
import sys
import time
from pathlib import Path

__all__ = ("CommitPacer", "DirectoryEvents")


class DirectoryEvents:
    """Linux inotify on a directory: "some file in it was written" (IN_MODIFY)."""

    _IN_MODIFY = 0x00000002

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, directory: Path) -> DirectoryEvents | None:
        """A watch of ``directory``; None where inotify is unavailable (not Linux, or
        out of inotify instances or watches): the caller polls instead."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return None
            if libc.inotify_add_watch(fd, os.fsencode(directory), cls._IN_MODIFY) < 0:
                os.close(fd)
                return None
        except (OSError, AttributeError):
            return None
        return cls(fd)

    def wait(self, timeout: float) -> bool:
        """Block until a file was written (True) or ``timeout`` passed (False)."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        return bool(ready) and self.drain()

    def drain(self) -> bool:
        """Read every pending event; True if there was any."""
        got = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return got
            if not data:
                return got
            got = True

    def close(self) -> None:
        os.close(self._fd)


class CommitPacer:
    """When a watcher thread should look again for another process's commit to a
    SQLite file (it then reads ``PRAGMA data_version``, a counter that changes when
    another connection commits).

    With file events (Linux): sleep until a file of the directory is written, then look
    every ``interval`` for ``hot`` seconds (a commit's WAL frames are written just
    before it becomes visible), and at least every ``idle`` seconds otherwise — no CPU
    while nothing is written. Without them: look every ``interval``.
    """

    def __init__(self, directory: Path, *, hot: float, idle: float) -> None:
        self._events = DirectoryEvents.open(directory)
        self._hot = hot
        self._idle = idle
        self._hot_until = 0.0

    def heat(self) -> None:
        """Look closely for a while from now (as after a file event)."""
        self._hot_until = time.monotonic() + self._hot

    def wait(self, interval: float) -> None:
        """Block until it is time to look again."""
        events = self._events
        if events is None:
            time.sleep(interval)
        elif time.monotonic() < self._hot_until:
            time.sleep(interval)
            if events.drain():
                self.heat()
        elif events.wait(self._idle):
            self.heat()

    def close(self) -> None:
        """Stop watching the directory."""
        if self._events is not None:
            self._events.close()
            self._events = None
