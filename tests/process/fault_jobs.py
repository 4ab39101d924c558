"""Jobs for the fault tests: a process that dies under its job, a job that keeps memory
after it returns (`max_child_memory`), a job that ends when the test says so. Each one first
appends its execution to the ledger, as the jobs of `chaos_jobs` do."""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any

from tests.process.chaos_jobs import record

#: What a leaking job keeps after it returns (so its child's resident memory stays up).
_KEPT: list[bytearray] = []


def die(ledger: str, how: str, marker: str | None = None) -> dict[str, Any]:
    """End this job's process at once: `os._exit(3)` ("exit") or a signal it sends itself
    ("SIGKILL", "SIGSEGV"). With `marker`, only the first run dies (creating it); later
    runs return their execution."""
    execution = record(ledger)
    if marker is not None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return execution
    if how == "exit":
        os._exit(3)
    # No core file for a segfault we cause on purpose.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.kill(os.getpid(), signal.Signals[how])
    raise AssertionError(f"still alive after {how}")


def keep_memory(ledger: str, mib: int = 0) -> dict[str, Any]:
    """Allocate (and touch) `mib` MiB and keep it after returning, as a leaking job does."""
    execution = record(ledger)
    if mib:
        _KEPT.append(bytearray(b"\x01") * (mib * 2**20))
    return execution


def wait_for_file(ledger: str, path: str, seconds: float = 60.0) -> dict[str, Any]:
    """Return once `path` exists (at most `seconds` later): the test decides when it ends."""
    execution = record(ledger)
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return execution
