"""SIGTERM and SIGINT: finish within the grace period, hand back after it, exit at once on a
second signal, and never lose or strand a job when the signal races a claim."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.process._harness import (
    LEASE,
    SWEEP,
    Fleet,
    all_final,
    chaos_job,
    executions,
    is_alive,
    job_row,
    ledger_check,
    read_ledger,
    read_only,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def test_sigterm_within_grace(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    [job_id] = submit(db, [chaos_job("work", ledger=str(ledger), ms=1000)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(grace=10)
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=20) == 0, worker.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)
    assert [r["status"] for r in executions(db, job_id)] == ["completed"]
    ledger_check(db, ledger, faults=0, submitted=[job_id], name="sigterm-within-grace")


def test_sigterm_to_the_job_process_too_keeps_the_grace_period(tmp_path: Path) -> None:
    # systemd's default (KillMode=control-group) sends SIGTERM to every process of the unit
    # at once, and `pkill -f` matches the forked children too: the supervisor decides what
    # happens to a running job, so the job still gets its grace period.
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    [job_id] = submit(db, [chaos_job("work", ledger=str(ledger), ms=1500)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(grace=10)
        [run] = wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        assert run.pid != worker.pid
        os.kill(run.pid, signal.SIGTERM)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=20) == 0, worker.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1), job
    assert [r["status"] for r in executions(db, job_id)] == ["completed"]
    ledger_check(db, ledger, faults=0, submitted=[job_id], name="sigterm-to-every-process")


def test_a_jobs_forked_helper_still_dies_of_sigterm(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    [job_id] = submit(db, [chaos_job("terminate_a_forked_helper", ledger=str(ledger))])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start()
        wait_until(lambda: all_final(db, [job_id]), 30, "the job to end")
        assert stop(worker) == 0, worker.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["result"]) == ("completed", str(-signal.SIGTERM)), job


def test_a_jobs_subprocess_does_not_ignore_sigint_or_sigterm(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    [job_id] = submit(db, [chaos_job("ignored_signals_of_a_subprocess", ledger=str(ledger))])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start()
        wait_until(lambda: all_final(db, [job_id]), 30, "the job to end")
        assert stop(worker) == 0, worker.stderr()
    job = job_row(db, job_id)
    assert job["status"] == "completed", job
    ignored = json.loads(job["result"])
    assert signal.SIGINT not in ignored and signal.SIGTERM not in ignored, ignored


def test_sigterm_beyond_grace(tmp_path: Path) -> None:
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    [job_id] = submit(
        db,
        [
            chaos_job(
                "sleep_unless_marked", ledger=str(ledger), marker=str(marker), long=30, short=0.1
            )
        ],
    )
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start("first", grace=1)
        [first_run] = wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        signalled = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=20) == 0, worker.stderr()
        took = time.monotonic() - signalled
        assert took < 8, f"the worker took {took:.1f} s to exit with --grace 1"
        assert not is_alive(first_run.pid), "the job's process outlived its worker"
        job = job_row(db, job_id)
        assert (job["status"], job["attempts"]) == ("pending", 0), job
        assert [r["status"] for r in executions(db, job_id)] == ["handed_back"]

        fresh = fleet.start("fresh")
        wait_until(lambda: all_final(db, [job_id]), 30, "the fresh worker to run the job")
        assert stop(fresh) == 0, fresh.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"], job["worker_id"]) == ("completed", 1, "fresh")
    assert [(r["status"], r["worker_id"]) for r in executions(db, job_id)] == [
        ("handed_back", "first"),
        ("completed", "fresh"),
    ]
    # The hand-back did not count: both runs were attempt 1.
    assert [e.attempt for e in read_ledger(ledger)] == [1, 1]
    ledger_check(db, ledger, faults=1, submitted=[job_id], name="sigterm-beyond-grace")


def test_second_sigint_exits_at_once(tmp_path: Path) -> None:
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    [job_id] = submit(
        db,
        [
            chaos_job(
                "sleep_unless_marked", ledger=str(ledger), marker=str(marker), long=30, short=0.1
            )
        ],
    )
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start("first", grace=30)
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        os.kill(worker.pid, signal.SIGINT)
        wait_until(lambda: "SIGINT received" in worker.stderr(), 10, "the first SIGINT")
        signalled = time.monotonic()
        os.kill(worker.pid, signal.SIGINT)
        worker.process.wait(timeout=10)  # any exit code: it left at once
        took = time.monotonic() - signalled
        assert took < 3, f"the worker took {took:.1f} s to exit after a second SIGINT"
        assert job_row(db, job_id)["status"] == "running"  # not handed back: rescued later

        rescuer = fleet.start("rescuer")
        wait_until(lambda: all_final(db, [job_id]), LEASE + SWEEP + 15, "the rescue")
        assert stop(rescuer) == 0, rescuer.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"], job["worker_id"]) == ("completed", 2, "rescuer")
    assert [r["status"] for r in executions(db, job_id)] == ["lost", "completed"]
    ledger_check(db, ledger, faults=1, submitted=[job_id], name="second-sigint")


ITERATIONS = 20


def _registered(db: Path, worker_id: str) -> bool:
    with read_only(db) as conn:
        row = conn.execute(
            "SELECT 1 FROM workers WHERE id = ? AND stopped_at IS NULL", (worker_id,)
        ).fetchone()
    return row is not None


def test_sigterm_racing_claim(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    started = time.monotonic()
    ids: list[str] = []
    with Fleet(db, tmp_path) as fleet:
        submit(db, [])  # create the database before the first worker
        for _ in range(ITERATIONS):
            worker = fleet.start(concurrency=2, grace=0.05, polling_interval=0.1)
            wait_until(lambda w=worker: _registered(db, w.worker_id), 30, "the worker to start")
            ids += submit(
                db,
                [
                    chaos_job("work", ledger=str(ledger), ms=rng.choice((0, 5, 20, 80)))
                    for _ in range(3)
                ],
            )
            time.sleep(rng.uniform(0, 0.020))
            worker.process.send_signal(signal.SIGTERM)
            code = worker.process.wait(timeout=30)
            assert code == 0, f"exit code {code}: {worker.stderr()}"
            assert "Traceback" not in worker.stderr(), worker.stderr()
        with read_only(db) as conn:
            running = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'")
            assert running.fetchone()[0] == 0, "a stopped worker left a job running"
        drain = fleet.start("drain", concurrency=2)
        wait_until(lambda: all_final(db), 60, "the drain")
        assert stop(drain) == 0, drain.stderr()
    with read_only(db) as conn:
        (handed_back,) = conn.execute(
            "SELECT count(*) FROM job_executions WHERE status = 'handed_back'"
        ).fetchone()
    # A stop interrupts at most the jobs running (the concurrency), each handed back once.
    assert handed_back <= 2 * ITERATIONS, handed_back
    ledger_check(
        db,
        ledger,
        faults=ITERATIONS,
        submitted=ids,
        # Only a job handed back while it ran can run again.
        allowed_extra=handed_back,
        name="sigterm-race",
        seed=seed,
        started=started,
    )


def test_sigterm_during_once_hands_the_job_back(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    [job_id] = submit(db, [chaos_job("work", ledger=str(ledger), ms=30_000)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(None, "--once")
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=20) == 0, worker.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"]) == ("pending", 0), job
    assert [r["status"] for r in executions(db, job_id)] == ["handed_back"]
