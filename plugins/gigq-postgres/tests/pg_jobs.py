"""Jobs of the multi-worker tests. Each appends "<job_id> <attempt> <pid>" to its ledger in
one O_APPEND write before doing anything else, so every execution (even one killed a
moment later) is countable, and duplicates and losses show up."""

from __future__ import annotations

import os
import time

from gigq import current_job


def record(ledger: str) -> None:
    """Append this execution to `ledger`."""
    job = current_job()
    line = f"{job.id} {job.attempt} {os.getpid()}\n".encode()
    fd = os.open(ledger, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def work(ledger: str, ms: float = 0.0) -> int:
    """Record, then sleep `ms` milliseconds."""
    record(ledger)
    if ms:
        time.sleep(ms / 1000)
    return 1


def hold(ledger: str, seconds: float) -> int:
    """Record; the first attempt then sleeps `seconds` (long enough to be killed), later
    attempts return at once."""
    record(ledger)
    if current_job().attempt == 1:
        time.sleep(seconds)
    return 2
