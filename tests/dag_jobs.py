"""Job functions of the workflow tests (DAG property test, workflow process tests).

Module-level and importable as `tests.dag_jobs`, so a worker process can run them. A job
that should fail "for good" names a marker file: it raises while the file is missing, and
succeeds once a test has created it (then requeues the job).
"""

from __future__ import annotations

import os
import time
from typing import Any

from gigq_core import current_job


class StepFailed(Exception):
    """Raised by a step whose marker file does not exist yet."""


def append(ledger: str, line: str) -> None:
    """Append one line to `ledger` in one O_APPEND write (atomic between processes)."""
    fd = os.open(ledger, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def step(
    value: int = 0,
    ms: float = 0.0,
    fail_unless: str | None = None,
    ledger: str | None = None,
    parent_results: dict[str, Any] | None = None,
) -> int:
    """Return `value` plus the sum of the parents' results, after sleeping `ms` ms.

    Raises StepFailed when `fail_unless` names a file that does not exist. With a `ledger`,
    appends "<job id> <start> <end> <ok|fail>" (Unix times) before returning or raising.
    """
    started = time.time()
    if ms:
        time.sleep(ms / 1000)
    ok = fail_unless is None or os.path.exists(fail_unless)
    if ledger is not None:
        ended = time.time()
        append(ledger, f"{current_job().id} {started!r} {ended!r} {'ok' if ok else 'fail'}\n")
    if not ok:
        raise StepFailed(f"marker {fail_unless} is missing")
    return value + sum(int(result) for result in (parent_results or {}).values())
