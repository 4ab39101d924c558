"""The loop's wake-up pipe: any thread wakes the worker's loop without a lock."""

from __future__ import annotations

import contextlib
import os
import select


class Wakeup:
    """A self-pipe, open while the worker runs: `wake()` from any thread (or a signal
    handler) ends the loop's current wait."""

    def __init__(self) -> None:
        #: The end the loop waits on (-1 while closed).
        self.fd = -1
        self._write_fd = -1

    @property
    def is_open(self) -> bool:
        """Whether the worker's loop runs (between `open()` and `close()`)."""
        return self.fd >= 0

    def open(self) -> None:
        """Create the pipe, both ends non-blocking."""
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        os.set_blocking(self.fd, False)

    def wake(self) -> None:
        """Wake the loop (nothing while closed)."""
        if self._write_fd >= 0:
            # A full pipe already wakes the loop.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._write_fd, b"x")

    def drain(self) -> None:
        """Empty the pipe after a wake-up."""
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.fd, 4096):
                pass

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for a wake-up, then empty the pipe."""
        select.select([self.fd], [], [], timeout)
        self.drain()

    def close(self) -> None:
        """Close both ends."""
        for fd in (self.fd, self._write_fd):
            os.close(fd)
        self.fd = self._write_fd = -1
