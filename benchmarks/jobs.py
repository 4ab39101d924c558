"""The benchmark's no-op jobs: each appends its id to a ledger file, one line per run.

The ledger is opened once per process (`O_APPEND`, so concurrent writers never overwrite each
other's lines) and kept in a module global keyed by path; a run then costs one `os.write`.
"""

from __future__ import annotations

import os

_LEDGERS: dict[str, int] = {}


def record(ledger: str, job_id: str) -> None:
    """Append `job_id` and a newline to the ledger file `ledger`."""
    fd = _LEDGERS.get(ledger)
    if fd is None:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _LEDGERS[ledger] = fd
    os.write(fd, f"{job_id}\n".encode())


def noop(id: str, ledger: str) -> None:
    """GigQ's job: its params dict `{"id": ..., "ledger": ...}` arrives as keywords."""
    record(ledger, id)


def noop_payload(payload: dict[str, str]) -> None:
    """huey's task: the same dict, as its one argument."""
    record(payload["ledger"], payload["id"])


def stamp(id: str, ledger: str) -> None:
    """Latency job: appends its id and the wall-clock time it started."""
    import time

    record(ledger, f"{id} {time.time():.6f}")
