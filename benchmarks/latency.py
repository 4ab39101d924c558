"""Submit-to-start latency with one idle worker, and the idle worker's CPU use.

`python -m benchmarks.latency [--jobs 200] [--gap 0.02]`: starts `gigq worker` (default
executor) on a fresh SQLite file, submits jobs one at a time with a pause between them, and
reads from a ledger when each job started. Then measures the worker's CPU time over a few idle
seconds (supervisor and children).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.jobs import stamp
from gigq import Job, JobQueue

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children, from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between submits")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU sampling")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gigq-latency-"))
    db, ledger = workdir / "q.db", workdir / "ledger"
    queue = JobQueue(str(db), durability="full")
    worker = subprocess.Popen(
        [sys.executable, "-m", "gigq_cli", "--db", str(db), "worker", "--log-level", "WARNING"],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        time.sleep(1.5)  # let it start and go idle
        sent: dict[str, float] = {}
        for _ in range(args.jobs):
            job = Job("stamp", stamp, params={"ledger": str(ledger)})
            job.params["id"] = job.id
            before = time.time()
            queue.submit(job)
            sent[job.id] = before
            time.sleep(args.gap)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = ledger.read_text().splitlines() if ledger.exists() else []
            if len(lines) >= args.jobs:
                break
            time.sleep(0.05)
        started = dict(line.split() for line in lines)
        latencies = sorted((float(started[i]) - t) * 1000 for i, t in sent.items())
        time.sleep(1.0)
        cpu0, wall0 = _cpu_seconds(worker.pid), time.monotonic()
        time.sleep(args.idle)
        idle = (_cpu_seconds(worker.pid) - cpu0) / (time.monotonic() - wall0) * 100
        p50 = statistics.median(latencies)
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        print(f"{len(latencies)} jobs, one idle worker (process executor), synchronous=FULL\n")
        print("| measure | value |")
        print("|:--|--:|")
        print(f"| submit-to-start p50 | {p50:.1f} ms |")
        print(f"| submit-to-start p99 | {p99:.1f} ms |")
        print(f"| submit-to-start max | {latencies[-1]:.1f} ms |")
        print(f"| idle worker CPU | {idle:.2f} % of a core |")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        queue.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
