"""The `retention` setting: workers delete old completed and cancelled jobs."""

from __future__ import annotations

import pytest

from gigq import JobQueue
from gigq_core import ConfigError, Job, Worker
from tests import jobs


def test_retention_removes_old_completed_and_cancelled_jobs_only(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        worker = Worker(queue, executor="inline", retention=3600)
        done = queue.submit(Job("done", jobs.noop))
        failed = queue.submit(Job("failed", jobs.fail, max_attempts=1))
        cancelled = queue.submit(Job("cancelled", jobs.noop))
        queue.cancel(cancelled)
        while worker.process_one():
            pass
        clock.advance(1800)
        fresh = queue.submit(Job("fresh", jobs.noop))
        assert worker.process_one()

        worker._maybe_sweep()  # less than an hour old: all kept
        assert queue.stats()["total"] == 4

        clock.advance(1900)  # the first three are now older than the retention
        worker._maybe_sweep()

        assert not queue.get_status(done)["exists"]
        assert not queue.get_status(cancelled)["exists"]
        assert queue.get_status(failed)["status"] == "failed"  # kept for inspection
        assert queue.get_status(fresh)["status"] == "completed"


def test_retention_is_off_by_default(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        worker = Worker(queue, executor="inline")
        queue.submit(Job("done", jobs.noop))
        assert worker.process_one()
        clock.advance(10 * 365 * 86400)
        worker._maybe_sweep()
        assert queue.stats()["completed"] == 1


def test_negative_retention_is_refused(pm, store):
    with pytest.raises(ConfigError, match="retention"):
        JobQueue(f"memory://{store}", plugin_manager=pm, retention=-1)
