"""A job for the inline shutdown test: it logs when each run starts and ends, so two runs
of the same job at the same time show up as a start between a start and its end."""

from __future__ import annotations

import os
import time

from gigq import current_job


def _note(log: str, event: str) -> None:
    line = f"{event} {current_job().attempt} {os.getpid()}\n".encode()
    fd = os.open(log, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def hold(log: str, seconds: float) -> str:
    """Note the start, sleep `seconds` (ignoring any request to stop), note the end."""
    _note(log, "start")
    time.sleep(seconds)
    _note(log, "end")
    return "held"
