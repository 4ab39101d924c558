"""What both sides share: workload names, payloads, errors, and the drain subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

#: The repository root: the drain subprocess runs here so `benchmarks` is importable.
ROOT = Path(__file__).resolve().parent.parent

#: Every workload, in table order.
WORKLOADS = ("enqueue", "enqueue_batch", "drain")

#: Polling interval of both drain workers (GigQ's `polling_interval`, huey's `initial_delay`).
POLLING_INTERVAL = 0.05


class BenchmarkError(Exception):
    """A workload could not be measured (a worker crashed, timed out, or left work behind)."""


def payloads(n: int, ledger: Path) -> list[dict[str, str]]:
    """`n` small job payloads, each with a distinct id and the ledger's path."""
    path = str(ledger)
    return [{"id": uuid.uuid4().hex, "ledger": path} for _ in range(n)]


def drain_timeout(n: int) -> float:
    """How long a drain of `n` jobs may take before it counts as hung (generous)."""
    return 60.0 + n * 0.05


def run_drain_worker(system: str, db: Path, n: int) -> dict[str, Any]:
    """Drain `db` in a fresh `python -m benchmarks.drain_worker` process; returns its report.

    The report has `elapsed` (first claim to last completion, in seconds) and `completed`.
    """
    timeout = drain_timeout(n)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    command = [
        sys.executable,
        "-m",
        "benchmarks.drain_worker",
        system,
        "--db",
        str(db),
        "--jobs",
        str(n),
        "--timeout",
        str(timeout),
    ]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise BenchmarkError(
            f"{system} drain worker did not exit within {err.timeout:g} s"
        ) from None
    lines = done.stdout.strip().splitlines()
    report: dict[str, Any] | None = None
    if lines:
        try:
            report = json.loads(lines[-1])
        except json.JSONDecodeError:
            report = None
    if done.returncode != 0 or report is None:
        detail = (report or {}).get("error") or done.stderr.strip()[-2000:] or "no output"
        raise BenchmarkError(f"{system} drain worker failed (exit {done.returncode}): {detail}")
    return report
