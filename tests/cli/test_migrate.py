"""`gigq migrate --from SOURCE --to TARGET` (SQLite to SQLite here; the PostgreSQL plugin
tests SQLite to PostgreSQL through the same command)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gigq import JobQueue
from gigq_core import Job, Workflow
from gigq_core.records import JobFilter, JobStatus, WorkerInfo
from tests.cli.helpers import assert_user_error, run_one, submit


@pytest.fixture
def target(tmp_path: Path) -> str:
    """Where the copy goes (does not exist yet)."""
    return str(tmp_path / "copy.db")


def _fill(queue: JobQueue, pm) -> dict[str, str]:
    """A small queue: a workflow whose first step completed, a failed job with a cascaded
    dependent, a scheduled job, a paused queue and a key-value entry."""
    flow = Workflow("etl")
    first = flow.add_job(Job("first", "tests.jobs:add", params={"a": 1, "b": 2}))
    second = flow.add_job(Job("second", "tests.jobs:echo", queue="etl"), depends_on=[first])
    flow.submit_all(queue)
    assert run_one(queue.target, pm)
    broken = Job("broken", "tests.jobs:fail", max_attempts=1)
    after = Job("after", "tests.jobs:noop", dependencies=[broken.id])
    queue.submit_many([broken, after])
    assert run_one(queue.target, pm, queues=["default"])
    later = queue.submit(Job("later", "tests.jobs:noop", delay=timedelta(hours=1)))
    parked = queue.submit(Job("parked", "tests.jobs:noop", queue="reports"))
    queue.pause_queue("reports")
    queue.storage.kv_set("cron", "nightly", "0 3 * * *")
    return {
        "first": first.id,
        "second": second.id,
        "broken": broken.id,
        "after": after.id,
        "later": later,
        "parked": parked,
    }


def _records(target: str, pm) -> list:
    with JobQueue(target, plugin_manager=pm) as queue:
        return queue.storage.list_jobs(JobFilter(), limit=1000, order="oldest")


def test_migrate_copies_everything_and_prints_counts(gigq, queue, db, target, pm):
    ids = _fill(queue, pm)
    executions = sum(len(queue.storage.executions(i)) for i in ids.values())

    result = gigq("migrate", "--from", db, "--to", target, db=None)

    assert result.exit_code == 0, result.output
    assert (
        f"Copied 6 jobs, {executions} execution records, 1 key-value entry and 1 paused queue "
        f"from {db} to {target}." in result.stdout
    )
    assert _records(target, pm) == _records(db, pm)
    with JobQueue(target, plugin_manager=pm) as copy:
        assert copy.storage.paused_queues() == frozenset({"reports"})
        assert copy.storage.kv_items("cron") == {"nightly": "0 3 * * *"}
        assert copy.get_result(ids["first"]) == 3
        assert copy.get_status(ids["after"])["status"] == "cancelled"
        # The copy carries on: the workflow's next step runs there, and a requeue of the
        # failed job revives the dependent its failure cancelled.
        assert run_one(target, pm)
        assert copy.get_status(ids["second"])["status"] == "completed"
        assert copy.requeue_job(ids["broken"])
        assert copy.get_status(ids["after"])["status"] == "pending"
    with JobQueue(db, plugin_manager=pm) as source:
        assert source.get_status(ids["second"])["status"] == "pending"  # left unchanged


def test_migrate_defaults_from_to_the_db_option_and_speaks_json(gigq, queue, target, pm):
    submit(queue)

    result = gigq("--json", "migrate", "--to", target)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["to"] == target
    assert report["counts"] == {"job": 1, "execution": 0, "kv": 0, "paused": 0, "lost": 0}


def test_migrate_refuses_while_a_worker_is_live_on_the_source(gigq, queue, target):
    submit(queue)
    now = queue.clock.now()
    queue.storage.register_worker(
        WorkerInfo(
            id="busy-worker",
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            last_heartbeat=now,
        )
    )

    result = gigq("migrate", "--to", target)

    assert_user_error(result, 75, "busy-worker")
    assert "stop them" in result.stderr
    assert not Path(target).exists()


def test_migrate_ignores_workers_that_stopped_died_or_went_silent(gigq, queue, target):
    submit(queue)
    now = queue.clock.now()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    workers = [
        ("stopped", os.getpid(), now, now),
        ("silent", os.getpid(), now - timedelta(minutes=5), None),
        ("dead-process", int(dead.stdout), now, None),
    ]
    for worker_id, pid, beat, stopped in workers:
        queue.storage.register_worker(
            WorkerInfo(
                id=worker_id,
                host=socket.gethostname(),
                pid=pid,
                started_at=beat,
                last_heartbeat=beat,
                stopped_at=stopped,
            )
        )

    result = gigq("migrate", "--to", target)

    assert result.exit_code == 0, result.output


def test_migrate_copies_a_job_left_running_by_a_dead_worker_as_rescued(gigq, queue, target, pm):
    job_id = submit(queue)
    [claimed] = queue.storage.claim("gone", 1, queue.clock.now(), 30.0)
    assert claimed.id == job_id

    result = gigq("migrate", "--to", target)

    assert result.exit_code == 0, result.output
    assert "1 job still running under a dead worker's lease" in result.stdout
    with JobQueue(target, plugin_manager=pm) as copy:
        status = copy.get_status(job_id)
    assert (status["status"], status["attempts"], status["error"]) == ("pending", 1, "worker lost")
    assert [e["status"] for e in status["executions"]] == ["lost"]
    assert run_one(target, pm)


def test_migrate_refuses_a_target_that_holds_jobs(gigq, queue, target, pm):
    submit(queue)
    with JobQueue(target, plugin_manager=pm) as other:
        kept = submit(other)

    result = gigq("migrate", "--to", target)

    assert_user_error(result, 1, "already holds 1 job")
    assert [job.id for job in _records(target, pm)] == [kept]


def test_migrate_from_a_missing_database_is_a_user_error(gigq, tmp_path, target):
    result = gigq("migrate", "--from", str(tmp_path / "nope.db"), "--to", target)

    assert_user_error(result, 1, "does not exist")
    assert not (tmp_path / "nope.db").exists()
    assert not Path(target).exists()


def test_migrate_from_a_queue_onto_itself_is_refused(gigq, queue, db):
    submit(queue)

    result = gigq("migrate", "--to", db)

    assert_user_error(result, 1, "the same queue")
    assert queue.stats()["total"] == 1


def test_migrate_into_a_garbage_file_is_a_storage_error(gigq, queue, tmp_path):
    submit(queue)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)

    result = gigq("migrate", "--to", str(garbage))

    assert_user_error(result, 65)
    assert garbage.read_bytes() == b"not a database at all" * 100


def test_migrate_without_to_is_a_usage_error(gigq, queue):
    result = gigq("migrate")

    assert result.exit_code == 2
    assert "--to" in result.stderr


def test_migrated_failed_job_keeps_its_status(gigq, queue, target, pm):
    ids = _fill(queue, pm)

    assert gigq("migrate", "--to", target).exit_code == 0

    with JobQueue(target, plugin_manager=pm) as copy:
        status = copy.get_status(ids["broken"])
    assert status["status"] == JobStatus.FAILED.value
    assert status["executions"][0]["error"]
