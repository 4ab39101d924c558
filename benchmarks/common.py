"""What every side shares: workload names, payloads, errors, and the drain subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository root: the drain subprocesses run here so `benchmarks` is importable.
ROOT = Path(__file__).resolve().parent.parent

#: The throughput workloads (jobs/s), in table order.
THROUGHPUT = (
    "enqueue",
    "enqueue_batch",
    "drain",
    "drain_batch32",
    "drain_w2",
    "drain_w4",
    "drain_inline",
    "drain_cpu1ms_w1",
    "drain_cpu1ms_w2",
)

#: Every workload, in table order.
WORKLOADS = (*THROUGHPUT, "latency", "startup", "fairness", "scale")

#: What `python -m benchmarks` runs without `--workloads`: all but `scale` (on demand).
DEFAULT_WORKLOADS = tuple(w for w in WORKLOADS if w != "scale")

#: Polling interval of the drain workers (GigQ's `polling_interval`, huey's `initial_delay`).
POLLING_INTERVAL = 0.05

#: How long the workers of a parallel drain may take to start before the run fails.
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Drain:
    """A drain with worker processes: how many, which job they run, and how."""

    workers: int
    #: "noop" (append the id) or "burn" (1 ms of CPU, then append the id); see `jobs`.
    job: str
    #: GigQ's executor: "process" (the default: a child process runs each job) or
    #: "inline" (a thread of the worker's process); huey's worker type: "process" or
    #: "thread" accordingly.
    executor: str = "process"


#: The CPU-bound drains: each job costs at least 1 ms, so they run `--cpu-jobs` jobs.
CPU_WORKLOADS = ("drain_cpu1ms_w1", "drain_cpu1ms_w2")

#: The drains run by worker processes (GigQ's and huey's), by workload name.
DRAINS = {
    "drain": Drain(1, "noop"),
    "drain_w2": Drain(2, "noop"),
    "drain_w4": Drain(4, "noop"),
    "drain_inline": Drain(1, "noop", "inline"),
    "drain_cpu1ms_w1": Drain(1, "burn"),
    "drain_cpu1ms_w2": Drain(2, "burn"),
}


class BenchmarkError(Exception):
    """A workload could not be measured (a worker crashed, timed out, or left work behind)."""


def payloads(n: int, ledger: Path) -> list[dict[str, str]]:
    """`n` small job payloads, each with a distinct id and the ledger's path."""
    path = str(ledger)
    return [{"id": uuid.uuid4().hex, "ledger": path} for _ in range(n)]


def drain_timeout(n: int) -> float:
    """How long a drain of `n` jobs may take before it counts as hung (generous)."""
    return 60.0 + n * 0.05


def subprocess_env() -> dict[str, str]:
    """This environment with the repository on PYTHONPATH and no `GIGQ_*` settings, so a
    setting in the caller's shell cannot change what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _report(system: str, proc: subprocess.Popen[str], out: str, err_file: Path) -> dict[str, Any]:
    lines = out.strip().splitlines()
    report: dict[str, Any] | None = None
    if lines:
        try:
            report = json.loads(lines[-1])
        except json.JSONDecodeError:
            report = None
    if proc.returncode != 0 or report is None:
        stderr = err_file.read_text(errors="replace").strip()[-2000:]
        detail = (report or {}).get("error") or stderr or "no output"
        raise BenchmarkError(f"{system} drain worker failed (exit {proc.returncode}): {detail}")
    return report


def _await_ready(system: str, procs: list[subprocess.Popen[str]]) -> None:
    """Read each worker's `ready` line (sent from its start hook), within START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    for proc in procs:
        assert proc.stdout is not None
        left = deadline - time.monotonic()
        readable, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        line = proc.stdout.readline() if readable else ""
        if line.strip() != "ready":
            raise BenchmarkError(
                f"{system} drain worker {proc.pid} did not start within {START_TIMEOUT:g} s"
                f" (exit {proc.poll()})"
            )


def run_drain_worker(
    system: str, db: Path, n: int, workers: int = 1, executor: str = "process"
) -> dict[str, Any]:
    """Drain `db` (holding `n` queued jobs) with `workers` worker processes, started fresh
    (`executor`: see `Drain`).

    GigQ: `workers` separate `python -m benchmarks.drain_worker gigq` processes, each one
    `Worker(...).start()`; each says `ready` from its start hook and waits until all are
    ready, so they begin together. huey: one `drain_worker huey` process whose consumer runs
    `workers` worker processes. Returns `elapsed` (the first job's start to the last job's
    completion, across all processes, in seconds), `completed` and each process's report.
    """
    timeout = drain_timeout(n)
    count = workers if system == "gigq" else 1
    command = [
        sys.executable,
        "-m",
        "benchmarks.drain_worker",
        system,
        "--db",
        str(db),
        "--jobs",
        str(n),
        "--workers",
        str(workers),
        "--timeout",
        str(timeout),
        "--executor",
        executor,
    ]
    if system == "gigq":
        command.append("--barrier")
    procs: list[subprocess.Popen[str]] = []
    errs = [db.parent / f"{system}-worker-{i}.stderr" for i in range(count)]
    reports: list[dict[str, Any]] = []
    try:
        for err in errs:
            with err.open("w") as sink:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env=subprocess_env(),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=sink,
                        text=True,
                        start_new_session=True,
                    )
                )
        if system == "gigq":
            _await_ready(system, procs)
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
        deadline = time.monotonic() + timeout + 30
        for proc, err in zip(procs, errs, strict=True):
            try:
                out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchmarkError(
                    f"{system} drain worker did not exit within {timeout + 30:g} s"
                ) from None
            reports.append(_report(system, proc, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                # Its own session: the group holds huey's forked workers too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
    active = [r for r in reports if r["completed"]]
    completed = sum(r["completed"] for r in reports)
    if completed != n or not active:
        raise BenchmarkError(f"{system} drain: {completed} of {n} jobs completed")
    first = min(r["first"] for r in active)
    last = max(r["last"] for r in active)
    return {"elapsed": last - first, "completed": completed, "processes": reports}
