"""The benchmark's jobs: each appends its id to a ledger file, one line per run.

The ledger is opened once per process (`O_APPEND`, so concurrent writers never overwrite each
other's lines) and kept in a module global keyed by path; a run then costs one `os.write`.
`noop` does nothing else; `burn` first spends `BURN_SECONDS` of its thread's CPU time in a
busy loop (the CPU-bound drain); `nap` first sleeps (the fairness mix); `stamp` also writes
the wall-clock time it started (latency).
Each comes in two shapes: keywords from the params dict (GigQ, the raw sqlite3 loops), and
the dict as one argument (huey's tasks).
"""

from __future__ import annotations

import os
import time

#: CPU seconds a `burn` job spends before it records its id: 1 ms.
BURN_SECONDS = 0.001

_LEDGERS: dict[str, int] = {}


def record(ledger: str, job_id: str) -> None:
    """Append `job_id` and a newline to the ledger file `ledger`."""
    fd = _LEDGERS.get(ledger)
    if fd is None:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _LEDGERS[ledger] = fd
    os.write(fd, f"{job_id}\n".encode())


def close_ledgers() -> None:
    """Close the ledger files this process holds (after an in-process drain)."""
    while _LEDGERS:
        _, fd = _LEDGERS.popitem()
        os.close(fd)


def spin(seconds: float) -> None:
    """Busy-loop until this thread has used `seconds` more CPU time."""
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def noop(id: str, ledger: str) -> None:
    """GigQ's job: its params dict `{"id": ..., "ledger": ...}` arrives as keywords."""
    record(ledger, id)


def noop_payload(payload: dict[str, str]) -> None:
    """huey's task: the same dict, as its one argument."""
    record(payload["ledger"], payload["id"])


def burn(id: str, ledger: str) -> None:
    """CPU-bound job: spends `BURN_SECONDS` of CPU, then appends its id."""
    spin(BURN_SECONDS)
    record(ledger, id)


def burn_payload(payload: dict[str, str]) -> None:
    """huey's CPU-bound task: `burn` with the dict as its one argument."""
    spin(BURN_SECONDS)
    record(payload["ledger"], payload["id"])


def nap(id: str, ledger: str, seconds: float) -> None:
    """Fairness job: sleeps `seconds` (1 ms or 1 s), then appends its id."""
    time.sleep(seconds)
    record(ledger, id)


def stamp(id: str, ledger: str) -> None:
    """Latency job: appends its id and the wall-clock time it started."""
    record(ledger, f"{id} {time.time():.6f}")


def stamp_payload(payload: dict[str, str]) -> None:
    """huey's latency task: `stamp` with the dict as its one argument."""
    record(payload["ledger"], f"{payload['id']} {time.time():.6f}")
