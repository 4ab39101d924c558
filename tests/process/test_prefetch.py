"""Prefetch with real workers (docs/guarantees.md, "Prefetch"): jobs a worker reserved but
never started are never charged an attempt, whether the worker is killed by a poison job
or stopped by SIGTERM, which hands them back at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from gigq import Job
from tests.process._harness import (
    Fleet,
    WorkerProcess,
    all_final,
    chaos_job,
    executions,
    is_registered,
    job_row,
    read_only,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]


def reserved(db: Path) -> dict[str, str]:
    """The reserved jobs (held, never started): job id to the worker holding it."""
    with read_only(db) as conn:
        rows = conn.execute(
            "SELECT id, worker_id FROM jobs WHERE status = 'running' AND started_at IS NULL"
        ).fetchall()
    return dict(rows)


def started(db: Path) -> set[str]:
    """The jobs running (started)."""
    with read_only(db) as conn:
        rows = conn.execute(
            "SELECT id FROM jobs WHERE status = 'running' AND started_at IS NOT NULL"
        ).fetchall()
    return {job_id for (job_id,) in rows}


def warm_up(db: Path, ledger: Path) -> None:
    """Run a few fast jobs, so the worker knows `work` is fast and prefetches it."""
    ids = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(5)])
    wait_until(lambda: all_final(db, ids), 30, "the warm-up jobs")


def first_in_line(function: str, ledger: Path, **params: object) -> Job:
    """A job of `tests.process.chaos_jobs:<function>` ahead of the others (priority 10)."""
    return Job(
        function,
        f"tests.process.chaos_jobs:{function}",
        params={"ledger": str(ledger), **params},
        priority=10,
        max_attempts=3,
    )


def test_poison_job_fails_alone_while_its_reserved_batch_mates_complete(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    with Fleet(db, tmp_path) as fleet:
        first = fleet.start()
        warm_up(db, ledger)
        # One transaction: the worker finds them all ready at once.
        poison, *mates = submit(
            db,
            [
                first_in_line("kill_own_worker", ledger),
                *(chaos_job("work", ledger=str(ledger)) for _ in range(30)),
            ],
        )
        # The poison job took the free slot and the worker reserved `work` jobs behind it
        # in the same claim; then the job killed the worker.
        wait_until(lambda: first.process.poll() is not None, 30, "the poison job to strike")
        held = reserved(db)
        assert held, "the worker reserved nothing before it died"
        assert set(held.values()) == {first.worker_id}
        assert set(held) <= set(mates)
        assert started(db) == {poison}
        restarts = 1
        live: WorkerProcess = fleet.start()
        deadline = time.monotonic() + 90
        while not all_final(db):
            assert time.monotonic() < deadline, "the jobs did not finish within 90 s"
            if live.process.poll() is not None:  # killed by the poison job again
                restarts += 1
                live = fleet.start()
            time.sleep(0.1)
        wait_until(lambda: is_registered(db, live.worker_id), 30, "the last worker registered")
        assert stop(live) == 0, live.stderr()
    job = job_row(db, poison)
    assert (job["status"], job["attempts"]) == ("failed", 3), job
    assert [r["status"] for r in executions(db, poison)] == ["lost"] * 3
    assert restarts == 3
    for mate in mates:
        row = job_row(db, mate)
        # Never charged for the crash: one attempt, one execution, completed.
        assert (row["status"], row["attempts"], row["handbacks"]) == ("completed", 1, 0), row
        assert [r["status"] for r in executions(db, mate)] == ["completed"]


def test_sigterm_hands_reserved_jobs_back_at_once(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    marker = tmp_path / "marker"
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(grace=30)
        warm_up(db, ledger)
        slow, *mates = submit(
            db,
            [
                first_in_line(
                    "sleep_unless_marked", ledger, marker=str(marker), long=4.0, short=0.0
                ),
                *(chaos_job("work", ledger=str(ledger)) for _ in range(20)),
            ],
        )
        held = wait_until(lambda: reserved(db), 30, "the worker to reserve jobs")
        assert set(held) <= set(mates)
        assert started(db) == {slow}
        worker.process.send_signal(signal.SIGTERM)
        # Within a moment, not after the grace period: the reserved jobs are pending again,
        # nothing counted, while the running job goes on.
        wait_until(lambda: not reserved(db), 3, "the reserved jobs to be handed back")
        assert started(db) == {slow}
        for mate in held:
            row = job_row(db, mate)
            assert (row["status"], row["attempts"], row["handbacks"]) == ("pending", 0, 0), row
            assert row["worker_id"] is None and row["token"] is None
        # The running job ends within the grace period, and so does the worker.
        assert worker.process.wait(timeout=30) == 0, worker.stderr()
        assert job_row(db, slow)["status"] == "completed"
        assert "handed back" in worker.stderr()
