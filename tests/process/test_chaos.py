"""SIGKILL chaos (docs/guarantees.md, scaled to a 2-core machine): workers holding
jobs are killed every 200 ms and replaced; every job still runs to completion, exactly one
completion each, and the extra executions stay within what the kills can explain."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from gigq_core.worker import FLUSH_MAX_JOBS
from tests.process._harness import (
    Fleet,
    WorkerProcess,
    all_final,
    chaos_job,
    is_registered,
    kill_counting,
    ledger_check,
    running_workers,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

JOBS = 1500
WORKERS = 4
CONCURRENCY = 2
KILL_EVERY = 0.1
#: Fewest kills for a run to count: each kill is a fault the ledger check must explain.
MIN_KILLS = 10


def test_chaos_sigkill(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ids = submit(
        db,
        [
            chaos_job("work", ledger=str(ledger), ms=round(rng.uniform(2, 18), 1), max_attempts=10)
            for _ in range(JOBS)
        ],
    )
    started = time.monotonic()
    kills = 0
    #: Jobs started and not yet recorded as ended by the workers at the moment of their kill.
    interrupted = 0
    most = 0
    with Fleet(db, tmp_path) as fleet:

        def replacement() -> WorkerProcess:
            return fleet.start(concurrency=CONCURRENCY, log_level="WARNING")

        live = {w.worker_id: w for w in (replacement() for _ in range(WORKERS))}
        deadline = time.monotonic() + 180
        while not all_final(db):
            assert time.monotonic() < deadline, "the chaos run did not finish in 180 s"
            time.sleep(KILL_EVERY)
            for worker_id, worker in list(live.items()):
                code = worker.process.poll()
                assert code is None, f"worker {worker_id} exited by itself ({code})"
            holders = sorted(running_workers(db) & live.keys())
            if holders:
                held = kill_counting(db, live.pop(rng.choice(holders)))
                interrupted += held
                most = max(most, held)
                kills += 1
                worker = replacement()
                live[worker.worker_id] = worker
        # Let the survivors show they are healthy before stopping them.
        wait_until(lambda: not running_workers(db), 10, "no job running")
        # A replacement SIGTERMed before its interpreter installed the handler would die of
        # the signal (-15): stop each only once it has registered.
        wait_until(
            lambda: all(is_registered(db, worker_id) for worker_id in live),
            30,
            "every live worker registered",
        )
        codes = {worker_id: stop(worker) for worker_id, worker in live.items()}
    assert set(codes.values()) == {0}, codes
    assert kills >= MIN_KILLS, f"only {kills} kill(s): the run proved little"
    # What one kill can interrupt: the jobs running, and those whose outcomes wait for the
    # next group commit (at most FLUSH_MAX_JOBS); reserved jobs never ran.
    assert most <= CONCURRENCY + FLUSH_MAX_JOBS, most
    summary = ledger_check(
        db,
        ledger,
        faults=kills,
        submitted=ids,
        # Each extra execution re-runs a job one of the kills interrupted, counted at the kill.
        allowed_extra=interrupted,
        name="chaos-sigkill",
        seed=seed,
        started=started,
        kills=kills,
        most_at_one_kill=most,
    )
    # Every interrupted job was rescued (a "lost" record), and no other one was.
    assert summary.lost == interrupted, (summary.lost, interrupted)
