"""Submit-to-start latency with one idle worker, and the idle worker's CPU use.

`python -m benchmarks.latency [--jobs 200] [--gap 0.02] [--idle 5] [--huey]`, and the
`latency` workload of `python -m benchmarks`. GigQ: starts `gigq worker` (default settings and
executor) on a fresh SQLite file; huey: its consumer with its defaults
(`benchmarks.huey_consumer`). Once the worker is up and idle, jobs are submitted one at a
time (`synchronous=FULL`) with a pause between them, and each job appends its id and the
time it started to a ledger: the latency is that time minus the time just before the submit
call. Every id must be in the ledger exactly once. Then the worker's CPU time (its process
and its children, from /proc) is sampled over a few idle seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import ledger
from benchmarks.common import ROOT, START_TIMEOUT, BenchmarkError, subprocess_env
from benchmarks.jobs import stamp

#: Seconds the worker is left alone once it is up, before the first submit (it goes idle).
SETTLE = 1.0
#: Longest wait for the last job to start after the last submit.
FINISH_TIMEOUT = 30.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and its direct children, from /proc
    (Linux); 0 elsewhere."""
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


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@contextlib.contextmanager
def _process(
    command: list[str], log: Path, pipe: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess in its own session, SIGTERMed (then SIGKILLed) as a group at the end;
    its stderr (and stdout, unless `pipe` asks for a pipe to read) goes to `log`."""
    env = subprocess_env()
    env["GIGQ_DURABILITY"] = "full"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE if pipe else sink,
            stderr=sink,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _measure(
    proc: subprocess.Popen[bytes],
    book: Path,
    submit: Callable[[], str],
    jobs: int,
    gap: float,
    idle: float,
    what: str,
) -> dict[str, float]:
    """Submit `jobs` jobs `gap` s apart, wait until all started, verify the ledger, then
    sample the idle CPU; the measures in ms and % of a core."""
    time.sleep(SETTLE)
    sent: dict[str, float] = {}
    for _ in range(jobs):
        before = time.time()
        job_id = submit()
        sent[job_id] = before
        time.sleep(gap)
    deadline = time.monotonic() + FINISH_TIMEOUT
    lines = ledger.read(book)
    while len(lines) < jobs and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(f"{what}: the worker exited ({proc.returncode})")
        time.sleep(0.05)
        lines = ledger.read(book)
    ledger.verify(what, list(sent), (line.split()[0] for line in lines))
    started = dict(line.split() for line in lines)
    latencies = sorted((float(started[i]) - t) * 1000 for i, t in sent.items())
    time.sleep(SETTLE)
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(idle)
    cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0) * 100
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1],
        "idle_cpu_pct": cpu,
    }


def measure_gigq(workdir: Path, jobs: int, gap: float, idle: float) -> dict[str, float]:
    """GigQ: `gigq worker` with default settings, one idle worker."""
    from gigq import Job, JobQueue

    db, book = workdir / "gigq.db", workdir / "ledger"
    command = [
        sys.executable,
        "-m",
        "gigq_cli",
        "--db",
        str(db),
        "worker",
        "--log-level",
        "WARNING",
    ]
    with (
        JobQueue(str(db), durability="full") as queue,
        _process(command, workdir / "worker.log") as proc,
    ):
        deadline = time.monotonic() + START_TIMEOUT
        while not queue.workers():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"GigQ latency: the worker did not start ({proc.poll()})")
            time.sleep(0.05)

        def submit() -> str:
            job = Job("stamp", stamp, params={"ledger": str(book)})
            job.params["id"] = job.id
            return queue.submit(job)

        return _measure(proc, book, submit, jobs, gap, idle, "GigQ latency")


def measure_huey(workdir: Path, jobs: int, gap: float, idle: float) -> dict[str, float]:
    """huey: its consumer with its defaults, one idle worker thread."""
    from benchmarks.huey_bench import make_huey

    db, book = workdir / "huey.db", workdir / "ledger"
    huey, tasks = make_huey(db, fsync=True)
    command = [sys.executable, "-m", "benchmarks.huey_consumer", "--db", str(db)]
    try:
        with _process(command, workdir / "consumer.log", pipe=True) as proc:
            assert proc.stdout is not None
            up, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
            if not up or proc.stdout.readline().strip() != b"ready":
                raise BenchmarkError(f"huey latency: the consumer did not start ({proc.poll()})")

            def submit() -> str:
                task_id = uuid.uuid4().hex
                tasks["stamp"]({"id": task_id, "ledger": str(book)})
                return task_id

            return _measure(proc, book, submit, jobs, gap, idle, "huey latency")
    finally:
        huey.storage.close()


def main(argv: list[str] | None = None) -> int:
    """Measure GigQ (and huey with `--huey`) and print a small Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between submits")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU sampling")
    parser.add_argument("--huey", action="store_true", help="measure huey's consumer too")
    args = parser.parse_args(argv)
    systems = {"GigQ": measure_gigq}
    if args.huey:
        systems["huey"] = measure_huey
    results = {}
    for name, measure in systems.items():
        with tempfile.TemporaryDirectory(prefix="gigq-latency-") as folder:
            try:
                results[name] = measure(Path(folder), args.jobs, args.gap, args.idle)
            except (BenchmarkError, ledger.ExactlyOnceError) as err:
                print(f"FAILED: {err}", file=sys.stderr)
                return 1
    print(f"{args.jobs} jobs, one idle worker, synchronous=FULL\n")
    print("| measure | " + " | ".join(results) + " |")
    print("|:--|" + "--:|" * len(results))
    for key, label in (
        ("p50_ms", "submit-to-start p50 (ms)"),
        ("p99_ms", "submit-to-start p99 (ms)"),
        ("max_ms", "submit-to-start max (ms)"),
        ("idle_cpu_pct", "idle worker CPU (% of a core)"),
    ):
        print(f"| {label} | " + " | ".join(f"{r[key]:.2f}" for r in results.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
