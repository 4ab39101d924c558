"""`gigq queue`, `gigq stats`, `gigq workers` and `gigq plugins`."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pluggy
import pytest

from gigq import JobQueue
from gigq_core import Worker, WorkerInfo, hookimpl
from gigq_core.testing import FakeClock

from .conftest import Run
from .helpers import run_one, submit


def test_queue_list_pause_and_resume(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    paused_job = submit(queue, queue="slow")
    other = submit(queue)
    result = gigq("queue", "pause", "slow")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Queue 'slow' paused")

    lines = gigq("queue", "list").stdout.splitlines()
    assert lines[0].split() == [
        "queue", "state", "pending", "reserved", "running", "completed", "failed", "cancelled",
        "timeout", "total",
    ]  # fmt: skip
    assert lines[2].split() == ["default", "active", "1", "0", "0", "0", "0", "0", "0", "1"]
    assert lines[3].split() == ["slow", "paused", "1", "0", "0", "0", "0", "0", "0", "1"]

    assert run_one(db, pm)  # the default queue's job
    assert not run_one(db, pm)  # nothing is claimed from the paused queue
    assert not run_one(db, pm, queues=["slow"])
    assert queue.get_status(paused_job)["status"] == "pending"
    assert queue.get_status(other)["status"] == "completed"

    assert gigq("queue", "resume", "slow").stdout == "Queue 'slow' resumed.\n"
    assert run_one(db, pm, queues=["slow"])
    assert queue.get_status(paused_job)["status"] == "completed"


def test_queue_list_json_shows_paused_queues_without_jobs(gigq: Run, queue: JobQueue) -> None:
    assert gigq("queue", "list").stdout == "No queues yet.\n"
    assert json.loads(gigq("--json", "queue", "pause", "a", "b").stdout) == {"paused": ["a", "b"]}
    rows = json.loads(gigq("--json", "queue", "list").stdout)
    assert [(r["queue"], r["paused"], r["total"]) for r in rows] == [("a", True, 0), ("b", True, 0)]
    assert json.loads(gigq("--json", "queue", "resume", "a").stdout) == {"resumed": ["a"]}
    assert gigq("queue", "pause").exit_code == 2


@pytest.fixture
def memory_db() -> str:
    """A fresh in-memory queue URL, private to the test."""
    return f"memory://cli-{uuid.uuid4().hex}"


@pytest.mark.parametrize("target", ["sqlite", "memory"])
def test_stats_counts_throughput_oldest_and_workers(
    gigq: Run, db: str, memory_db: str, pm: pluggy.PluginManager, target: str
) -> None:
    url = db if target == "sqlite" else memory_db
    with JobQueue(url, plugin_manager=pm) as queue:
        submit(queue, "tests.jobs:fail", max_attempts=1)
        while run_one(url, pm):
            pass
        for _ in range(2):
            submit(queue)
        assert run_one(url, pm)
        submit(queue, queue="other")
        now = queue.clock.now()
        old = now - timedelta(hours=2)
        queue.storage.register_worker(
            WorkerInfo(id="w-live", host="h", pid=1, started_at=now, last_heartbeat=now)
        )
        queue.storage.register_worker(
            WorkerInfo(id="w-gone", host="h", pid=2, started_at=old, last_heartbeat=old)
        )

    result = gigq("--json", "stats", db=url)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counts"] == {
        "pending": 2, "reserved": 0, "running": 0, "completed": 1, "failed": 1, "cancelled": 0,
        "timeout": 0, "total": 4,
    }  # fmt: skip
    assert [(q["queue"], q["counts"]["pending"]) for q in data["queues"]] == [
        ("default", 1),
        ("other", 1),
    ]
    assert data["throughput"]["completed_last_minute"] == 1
    assert data["throughput"]["completed_last_hour"] == 1
    assert data["throughput"]["failed_last_hour"] == 1
    assert data["oldest_ready_age"] >= 0
    assert data["oldest_ready_since"].endswith("+00:00")
    assert data["live_workers"] == 1

    out = gigq("stats", db=url).stdout
    assert "pending    2" in out and "total      4" in out
    assert "Throughput: 1 completed in the last minute, 1 in the last hour" in out
    assert "Oldest ready job: waiting for" in out
    assert "Live workers: 1." in out


@pytest.mark.parametrize("target", ["sqlite", "memory"])
def test_stats_throughput_leaves_out_older_jobs(
    gigq: Run, db: str, memory_db: str, pm: pluggy.PluginManager, target: str
) -> None:
    url = db if target == "sqlite" else memory_db
    two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
    with JobQueue(url, plugin_manager=pm, clock=FakeClock(two_minutes_ago)) as queue:
        submit(queue)
        worker = Worker(queue, executor="inline")
        assert worker.process_one()
    data = json.loads(gigq("--json", "stats", db=url).stdout)
    assert data["throughput"]["completed_last_minute"] == 0
    assert data["throughput"]["completed_last_hour"] == 1


def test_stats_on_an_empty_queue(gigq: Run, queue: JobQueue) -> None:
    out = gigq("stats").stdout
    assert "Oldest ready job: none waiting." in out
    assert "Live workers: 0." in out


def test_workers_lists_live_lost_and_recently_stopped(gigq: Run, queue: JobQueue) -> None:
    assert gigq("workers").stdout == "No workers.\n"
    now = queue.clock.now()
    job_id = submit(queue)
    for worker_id, age in (("w-live", 0), ("w-lost", 600), ("w-stopped", 60), ("w-old", 7200)):
        then = now - timedelta(seconds=age)
        queue.storage.register_worker(
            WorkerInfo(
                id=worker_id, host="h", pid=os.getpid(), queues=("a", "b"), concurrency=2,
                started_at=then, last_heartbeat=then,
            )
        )  # fmt: skip
        if worker_id in ("w-stopped", "w-old"):
            queue.storage.deregister_worker(worker_id, then)
    assert queue.storage.claim("w-live", 1, queue.clock.now(), 30.0)

    data = json.loads(gigq("--json", "workers").stdout)
    states = {w["id"]: w["state"] for w in data}
    assert states == {"w-live": "live", "w-lost": "lost", "w-stopped": "stopped"}
    live = next(w for w in data if w["id"] == "w-live")
    assert live["current_jobs"] == [job_id]
    assert live["queues"] == ["a", "b"] and live["concurrency"] == 2
    assert live["last_heartbeat"].endswith("+00:00")

    lines = gigq("workers").stdout.splitlines()
    assert lines[0].split() == [
        "worker", "state", "pid", "queues", "slots", "started", "heartbeat", "jobs",
    ]  # fmt: skip
    assert any(line.startswith("w-live") and job_id in line for line in lines)
    assert not any("w-old" in line for line in lines)
    assert any("w-old" in line for line in gigq("workers", "--since", "180").stdout.splitlines())


class ExtraPlugin:
    """A plugin with two hooks."""

    @hookimpl
    def gigq_job_submitted(self, job: object) -> None:
        """Observe."""

    @hookimpl
    def gigq_worker_started(self, worker_id: str) -> None:
        """Observe."""


def test_plugins_lists_plugins_versions_hooks_and_failures(
    gigq: Run, pm: pluggy.PluginManager
) -> None:
    pm.register(ExtraPlugin(), name="extra")
    pm.failures["broken"] = "plugin 'broken' (gigq-broken 1.0) failed to load: boom"
    result = gigq("plugins", db=None)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["plugin", "version", "hooks"]
    assert any(line.split()[0] == "sqlite" and "gigq_storage" in line for line in lines[2:])
    extra = next(line for line in lines if line.startswith("extra"))
    assert "gigq_job_submitted, gigq_worker_started" in extra
    assert "Failed to load:" in result.stdout and "broken" in result.stdout

    data = json.loads(gigq("--json", "plugins", db=None).stdout)
    names = [p["name"] for p in data["plugins"]]
    assert {"memory", "retry", "json", "sqlite", "extra"} <= set(names)
    assert data["failed"] == {"broken": pm.failures["broken"]}
