"""Runs shared by the fast tests and the slow tier (`python -m tests.reliability`): each
starts real processes through tests/process/_harness.py, kills them by pid, ends with the
ledger check and returns its figures."""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gigq_core import JobQueue, make_plugin_manager
from gigq_core.worker import FLUSH_MAX_JOBS
from tests.process._harness import (
    Fleet,
    WorkerProcess,
    all_final,
    chaos_job,
    kill,
    ledger_check,
    read_only,
    running_workers,
    status_counts,
    stop,
    submit,
    wait_until,
)

MIB = 1024 * 1024


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


class WalWatch:
    """Samples the size of DB-wal every `interval` s in a thread (a stat, never an open())."""

    def __init__(self, db: Path, interval: float = 0.1) -> None:
        self.path = f"{db}-wal"
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                size = os.path.getsize(self.path)
            except OSError:
                size = 0
            self.samples.append((time.monotonic(), size))
            self._stop.wait(self.interval)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak(self) -> int:
        """The largest size seen."""
        return max((size for _, size in self.samples), default=0)

    def median(self) -> float:
        """The median size seen."""
        return statistics.median(size for _, size in self.samples) if self.samples else 0.0


def completed_between(db: Path, start: float, end: float) -> int:
    """Jobs completed within [start, end] (wall-clock seconds)."""
    with read_only(db) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'completed' AND completed_at BETWEEN ? AND ?",
            (start, end),
        ).fetchone()
    return int(count)


def run_contention(
    tmp: Path,
    *,
    seconds: float,
    processes: int = 10,
    threads: int = 10,
    interval: float = 0.2,
    workers: int = 4,
    concurrency: int = 2,
    drain_timeout: float = 120.0,
    name: str = "contention",
    pin_reader: float = 0.0,
    pin_after: float = 2.0,
) -> dict[str, Any]:
    """PROCESSES x THREADS paced submitters (INTERVAL s between one thread's submits; 0 is
    unpaced) and WORKERS workers for SECONDS; then a drain and the ledger check.

    With PIN_READER > 0, a process holds one read transaction open for that many seconds,
    from PIN_AFTER s on: the figures then say how long the WAL took to get back under
    64 MiB once it let go."""
    tmp.mkdir(parents=True, exist_ok=True)
    db, ledger = tmp / "jobs.db", tmp / "ledger"
    JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False)).close()
    started = time.monotonic()
    reports = [tmp / f"submitter-{n}.json" for n in range(processes)]
    with Fleet(db, tmp) as fleet, WalWatch(db) as wal:
        live = [fleet.start(concurrency=concurrency, log_level="WARNING") for _ in range(workers)]
        window_start = time.time()
        submitters = [
            fleet.spawn(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability._paced_submitter",
                    str(db),
                    str(ledger),
                    str(report),
                    str(threads),
                    str(seconds),
                    str(interval),
                    str(n),
                ]
            )
            for n, report in enumerate(reports)
        ]
        released = None
        if pin_reader:
            time.sleep(pin_after)
            reader = fleet.spawn([sys.executable, "-c", PINNED_READER, str(db), str(pin_reader)])
            reader.wait(timeout=pin_reader + 60)
            released = time.monotonic()
        for process in submitters:
            process.wait(timeout=seconds + 60)
        window_end = time.time()
        during = completed_between(db, window_start, window_end)
        wait_until(lambda: all_final(db), drain_timeout, "the workers to drain the queue")
        codes = [stop(worker) for worker in live]
    assert [p.returncode for p in submitters] == [0] * processes, "a submitter failed"
    assert codes == [0] * workers, codes
    ids: list[str] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    for report in reports:
        found = json.loads(report.read_text())
        ids += found["ids"]
        latencies += found["latencies"]
        errors.update(found["errors"])
    figures = {
        "submits": len(ids),
        "submits/s": len(ids) / seconds,
        "errors": dict(errors),
        "p50 ms": percentile(latencies, 0.50) * 1000,
        "p90 ms": percentile(latencies, 0.90) * 1000,
        "p99 ms": percentile(latencies, 0.99) * 1000,
        "max ms": max(latencies, default=0.0) * 1000,
        "completed during": during,
        "worker jobs/s": during / max(window_end - window_start, 1e-9),
        "wal peak MiB": wal.peak / MIB,
    }
    if released is not None:
        after = [(at, size) for at, size in wal.samples if at >= released]
        back = next((at - released for at, size in after if size < 64 * MIB), None)
        figures["wal back under 64 MiB s"] = back if back is not None else float("inf")
    # Before the ledger check, which may fail: the figures are worth seeing either way.
    print(f"[{name} figures] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    ledger_check(
        db,
        ledger,
        faults=0,
        submitted=ids,
        name=name,
        started=started,
        submitters=processes * threads,
        interval=interval,
        submits=len(ids),
        busy=errors.get("BusyError", 0),
        errors=sum(errors.values()),
        p50_ms=f"{figures['p50 ms']:.1f}",
        p99_ms=f"{figures['p99 ms']:.1f}",
        max_ms=f"{figures['max ms']:.1f}",
        wal_peak_mib=f"{figures['wal peak MiB']:.1f}",
    )
    return figures


PINNED_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM jobs").fetchone()  # the snapshot is pinned from here
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
conn.close()
"""


def run_drain_rate(tmp: Path, *, jobs: int, workers: int = 4, concurrency: int = 2) -> float:
    """Jobs per second that WORKERS workers complete with nothing else running."""
    tmp.mkdir(parents=True, exist_ok=True)
    db, ledger = tmp / "jobs.db", tmp / "ledger"
    ids = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(jobs)])
    with Fleet(db, tmp) as fleet:
        live = [fleet.start(concurrency=concurrency, log_level="WARNING") for _ in range(workers)]
        begun = time.monotonic()
        wait_until(lambda: all_final(db), 600, "the uncontended drain", interval=0.02)
        took = time.monotonic() - begun
        for worker in live:
            stop(worker)
    ledger_check(db, ledger, faults=0, submitted=ids, name="uncontended", started=begun)
    return jobs / took


def run_chaos(
    tmp: Path,
    *,
    jobs: int,
    seed: int,
    workers: int = 4,
    concurrency: int = 2,
    kill_every: float = 0.2,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """The SIGKILL chaos of docs/guarantees.md: jobs of 2-18 ms (max_attempts 10); every
    KILL_EVERY s a random worker holding a job is killed and replaced; then the ledger check."""
    tmp.mkdir(parents=True, exist_ok=True)
    db, ledger = tmp / "jobs.db", tmp / "ledger"
    rng = random.Random(seed)
    batch = [
        chaos_job("work", ledger=str(ledger), ms=round(rng.uniform(2, 18), 1), max_attempts=10)
        for _ in range(jobs)
    ]
    ids: list[str] = []
    for start in range(0, jobs, 5000):
        ids += submit(db, batch[start : start + 5000])
    started = time.monotonic()
    kills = 0
    with Fleet(db, tmp) as fleet:

        def replacement() -> WorkerProcess:
            return fleet.start(concurrency=concurrency, log_level="WARNING")

        live = {w.worker_id: w for w in (replacement() for _ in range(workers))}
        deadline = time.monotonic() + timeout
        while not all_final(db):
            assert time.monotonic() < deadline, f"the chaos run did not finish in {timeout} s"
            time.sleep(kill_every)
            for worker_id, worker in list(live.items()):
                code = worker.process.poll()
                assert code is None, f"worker {worker_id} exited by itself ({code})"
            holders = sorted(running_workers(db) & live.keys())
            if holders:
                kill(live.pop(rng.choice(holders)))
                kills += 1
                worker = replacement()
                live[worker.worker_id] = worker
        wait_until(lambda: not running_workers(db), 10, "no job running")
        codes = [stop(worker) for worker in live.values()]
    assert set(codes) == {0}, codes
    took = time.monotonic() - started
    summary = ledger_check(
        db,
        ledger,
        faults=kills,
        submitted=ids,
        per_fault=concurrency + FLUSH_MAX_JOBS,
        name="chaos-sigkill",
        seed=seed,
        started=started,
        kills=kills,
    )
    return {
        "jobs": jobs,
        "seed": seed,
        "kills": kills,
        "extra executions": summary.extra,
        "allowed": summary.allowed_extra,
        "lost (rescued)": summary.lost,
        "seconds": took,
        "jobs/s": jobs / took,
    }


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ClaimLatency:
    """Samples, every `interval` s, how long each new execution waited to be claimed
    (started_at - run_at), before retention prunes its job."""

    def __init__(self, db: Path, interval: float = 2.0) -> None:
        self.db = db
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (started_at, seconds waited)
        self._last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Read the executions started since the last sample."""
        with read_only(self.db) as conn:
            rows = conn.execute(
                "SELECT e.rowid, e.started_at, j.run_at FROM job_executions e"
                " JOIN jobs j ON j.id = e.job_id WHERE e.rowid > ? ORDER BY e.rowid",
                (self._last,),
            ).fetchall()
        for rowid, started_at, run_at in rows:
            self._last = max(self._last, rowid)
            self.samples.append((started_at, max(0.0, started_at - run_at)))

    def __enter__(self) -> ClaimLatency:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def window_p99s(self, window: float) -> list[float]:
        """The p99 wait of each `window`-second window, in ms."""
        if not self.samples:
            return []
        first = min(at for at, _ in self.samples)
        buckets: dict[int, list[float]] = {}
        for at, waited in self.samples:
            buckets.setdefault(int((at - first) // window), []).append(waited)
        return [percentile(buckets[k], 0.99) * 1000 for k in sorted(buckets)]


def run_soak(
    tmp: Path,
    *,
    minutes: float,
    workers: int = 4,
    kill_every: float = 20.0,
    restart_every: float = 60.0,
    retention: float = 60.0,
    seed: int = 1,
) -> dict[str, Any]:
    """Paced submitters (2 processes x 5 threads, a job each 0.2 s) and WORKERS workers for
    MINUTES, with a SIGKILL every KILL_EVERY s, a rolling restart (SIGTERM, replace) every
    RESTART_EVERY s and retention pruning; one sentinel worker is never touched, for RSS.
    Ends with the ledger check of what retention left (a missing acknowledged job must have
    run, i.e. be pruned, not lost)."""
    tmp.mkdir(parents=True, exist_ok=True)
    db, ledger = tmp / "jobs.db", tmp / "ledger"
    JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False)).close()
    rng = random.Random(seed)
    seconds = minutes * 60
    started = time.monotonic()
    env = {"GIGQ_RETENTION": str(retention)}
    kills = restarts = 0
    reports = [tmp / f"submitter-{n}.json" for n in range(2)]
    with Fleet(db, tmp) as fleet, WalWatch(db, interval=1.0) as wal, ClaimLatency(db) as claims:
        sentinel = fleet.start("sentinel", concurrency=2, log_level="WARNING", env=env)
        others = [
            fleet.start(concurrency=2, log_level="WARNING", env=env) for _ in range(workers - 1)
        ]
        submitters = [
            fleet.spawn(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability._paced_submitter",
                    str(db),
                    str(ledger),
                    str(report),
                    "5",
                    str(seconds),
                    "0.2",
                    str(n),
                ]
            )
            for n, report in enumerate(reports)
        ]
        time.sleep(min(30.0, seconds / 4))
        rss_start = rss_mib(sentinel.pid)
        next_kill = time.monotonic() + kill_every
        next_restart = time.monotonic() + restart_every
        while any(p.poll() is None for p in submitters):
            time.sleep(0.5)
            now = time.monotonic()
            if now >= next_kill:
                next_kill += kill_every
                holders = sorted(running_workers(db) & {w.worker_id for w in others})
                pick = [w for w in others if w.worker_id in holders] or others
                victim = rng.choice(pick)
                kill(victim)
                others.remove(victim)
                others.append(fleet.start(concurrency=2, log_level="WARNING", env=env))
                kills += 1
            if now >= next_restart:
                next_restart += restart_every
                oldest = others.pop(0)
                assert stop(oldest) == 0, oldest.stderr()
                others.append(fleet.start(concurrency=2, log_level="WARNING", env=env))
                restarts += 1
        rss_end = rss_mib(sentinel.pid)
        wait_until(lambda: all_final(db), 300, "the soak's drain")
        codes = [stop(worker) for worker in [sentinel, *others]]
    assert codes == [0] * workers, codes
    ids: list[str] = []
    errors: Counter[str] = Counter()
    for report in reports:
        found = json.loads(report.read_text())
        ids += found["ids"]
        errors.update(found["errors"])
    with read_only(db) as conn:
        present = {job_id for (job_id,) in conn.execute("SELECT id FROM jobs")}
    ran = {line.split(" ", 1)[0] for line in ledger.read_text().splitlines()}
    pruned = [job_id for job_id in ids if job_id not in present and job_id in ran]
    lost = [job_id for job_id in ids if job_id not in present and job_id not in ran]
    assert not lost, f"{len(lost)} acknowledged job(s) lost, e.g. {lost[:3]}"
    kept_ledger = tmp / "ledger.kept"
    lines = ledger.read_text().splitlines()
    kept_ledger.write_text("".join(f"{line}\n" for line in lines if line.split()[0] in present))
    p99s = claims.window_p99s(300.0)
    figures = {
        "minutes": minutes,
        "submits": len(ids),
        "errors": dict(errors),
        "kills": kills,
        "rolling restarts": restarts,
        "pruned": len(pruned),
        "sentinel RSS growth MiB": rss_end - rss_start,
        "wal median MiB": wal.median() / MIB,
        "wal peak MiB": wal.peak / MIB,
        "claim p99 ms (worst 5-min window)": max(p99s, default=0.0),
        "windows": len(p99s),
    }
    ledger_check(
        db,
        kept_ledger,
        faults=kills + restarts,
        submitted=[job_id for job_id in ids if job_id in present],
        per_fault=2 + FLUSH_MAX_JOBS,
        name="soak",
        seed=seed,
        started=started,
        kills=kills,
        restarts=restarts,
        pruned=len(pruned),
    )
    return figures


__all__ = [
    "MIB",
    "ClaimLatency",
    "WalWatch",
    "completed_between",
    "percentile",
    "rss_mib",
    "run_chaos",
    "run_contention",
    "run_drain_rate",
    "run_soak",
    "status_counts",
]
