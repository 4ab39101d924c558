"""Waking idle workers when another process commits, without polling hard.

Every commit in WAL mode writes to the `-wal` file, so on Linux an inotify watch on that file
wakes a waiting worker within microseconds of any writer's commit, whoever the writer is, and
costs nothing while nothing happens. Where inotify is missing (macOS, or no ctypes libc), the
waiter falls back to sleeping in short slices; callers confirm a change with SQLite's
`PRAGMA data_version` either way, so a spurious wake-up is harmless.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import struct
import sys
import threading

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_IGNORED = 0x00008000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_DELETE_SELF | _IN_MOVE_SELF

#: Sleep slice of the fallback waiter, and the longest inotify wait before a re-check.
FALLBACK_SLICE = 0.005
RECHECK = 0.25


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1  # noqa: B018 -- probe: an old libc lacks it
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class WalWaiter:
    """Blocks until the database's WAL file changes, or a timeout passes."""

    def __init__(self, wal: str) -> None:
        self.wal = wal
        self._fd = -1
        self._watch = -1
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _ensure(self) -> bool:
        """An inotify watch on the WAL file, if one can be had now."""
        if _LIBC is None:
            return False
        if self._pid != os.getpid():  # inherited over fork(): start afresh
            self._fd, self._watch, self._pid = -1, -1, os.getpid()
        if self._fd < 0:
            fd = _LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd < 0:
                return False
            self._fd = fd
        if self._watch < 0:
            watch = _LIBC.inotify_add_watch(self._fd, os.fsencode(self.wal), _MASK)
            if watch < 0:
                return False  # no WAL file yet (no writer has opened the database)
            self._watch = watch
        return True

    def _drain(self) -> None:
        """Read pending events; forget the watch if the file went away."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            data = os.read(self._fd, 64 * 1024)
            offset = 0
            while offset + 16 <= len(data):
                _, mask, _, size = struct.unpack_from("iIII", data, offset)
                if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED):
                    self._watch = -1
                offset += 16 + size

    def wait(self, timeout: float) -> bool:
        """Return when the WAL changed (True), or `timeout` passed or a short re-check is
        due (False)."""
        with self._lock:
            watching = self._ensure()
        if not watching:
            select.select([], [], [], min(timeout, FALLBACK_SLICE))
            return False
        ready, _, _ = select.select([self._fd], [], [], min(timeout, RECHECK))
        if ready:
            with self._lock:
                self._drain()
        return bool(ready)

    def close(self) -> None:
        """Release the inotify descriptor."""
        with self._lock:
            if self._fd >= 0 and self._pid == os.getpid():
                os.close(self._fd)
            self._fd, self._watch = -1, -1


__all__ = ["WalWaiter"]
