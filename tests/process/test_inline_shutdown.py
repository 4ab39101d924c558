"""SIGTERM to an inline worker whose job outlives the grace period: the job's thread cannot
be stopped, so the job is not handed back while it runs, and no other worker runs it at the
same time."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from gigq_core import Job
from tests.process._harness import Fleet, executions, job_row, submit, wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def _events(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [
        (event, int(pid))
        for event, _, pid in (line.split() for line in log.read_text().splitlines())
    ]


def test_an_inline_job_past_the_grace_period_is_not_handed_back_while_its_thread_runs(
    tmp_path: Path,
) -> None:
    db, log = tmp_path / "jobs.db", tmp_path / "runs"
    seconds = 4.0
    [job_id] = submit(
        db, [Job("hold", "tests.process.overlap_jobs:hold", {"log": str(log), "seconds": seconds})]
    )
    with Fleet(db, tmp_path) as fleet:
        first = fleet.start("first", "--executor", "inline", grace=0.5)
        wait_until(lambda: _events(log), 30, "the job to start")
        # Another worker, ready to claim the job the moment it is handed back or rescued
        # (its lease is 2 s, its sweep 0.5 s: well inside the job's 4 s).
        second = fleet.start("second", polling_interval=0.1)
        wait_until(lambda: "second started" in second.stderr(), 30, "the second worker")
        signalled = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=30) == 0, first.stderr()
        waited = time.monotonic() - signalled
        wait_until(lambda: job_row(db, job_id)["status"] == "completed", 30, "the outcome")
        time.sleep(1.0)  # room for a wrong second run to show up
    events = _events(log)
    # One run, from start to end, in the first worker; nothing started while it ran.
    assert [event for event, _ in events] == ["start", "end"], events
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"], job["worker_id"]) == ("completed", 1, "first")
    assert [(r["status"], r["worker_id"]) for r in executions(db, job_id)] == [
        ("completed", "first")
    ]
    # The first worker waited for its job's thread instead of handing the job back.
    assert waited > 1.0
    assert "still running past the grace period" in first.stderr()
