"""A worker that cannot record an outcome (the commit fails: here the database stays locked
past its `busy_timeout`) drops it and lives on; the job's lease, no longer renewed, expires
and the job runs again: it ends exactly once, nothing is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gigq_core import Job
from tests.process._harness import (
    Fleet,
    all_final,
    executions,
    is_alive,
    job_row,
    ledger_check,
    read_ledger,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

DROPPED = "could not record the outcome of job(s)"


def test_a_failed_outcome_commit_is_left_to_the_lease_and_the_job_ends_once(
    tmp_path: Path,
) -> None:
    db, ledger, go = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "go"
    job = Job(
        "held",
        "tests.process.fault_jobs:wait_for_file",
        params={"ledger": str(ledger), "path": str(go)},
    )
    [job_id] = submit(db, [job])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(env={"GIGQ_BUSY_TIMEOUT": "0.5"})
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        # Another process holds the write lock longer than the worker's busy_timeout while
        # the job ends: the worker's commit of its outcome fails.
        locker = sqlite3.connect(db, timeout=30, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            go.touch()
            wait_until(lambda: DROPPED in worker.stderr(), 30, "the commit to fail")
            assert is_alive(worker.pid), worker.stderr()
            assert job_row(db, job_id)["status"] == "running"
        finally:
            locker.rollback()
            locker.close()
        # The lease expires (nobody renews it now), a sweep rescues the job, it runs again.
        wait_until(lambda: all_final(db, [job_id]), 60, "the job to end")
        assert is_alive(worker.pid), worker.stderr()
        assert stop(worker) == 0, worker.stderr()

    assert worker.stderr().count(DROPPED) == 1, worker.stderr()
    job_now = job_row(db, job_id)
    assert (job_now["status"], job_now["attempts"]) == ("completed", 2), job_now
    assert [r["status"] for r in executions(db, job_id)] == ["lost", "completed"]
    assert len(read_ledger(ledger)) == 2
    # One fault (the dropped outcome): at most one extra execution.
    ledger_check(db, ledger, faults=1, submitted=[job_id], name="outcome-commit-failure")
