"""`gigq cancel`, `gigq requeue` (by id and in bulk) and `gigq clear`."""

from __future__ import annotations

import json
from datetime import timedelta

import pluggy

from gigq import JobQueue

from .conftest import Run
from .helpers import assert_user_error, run_one, submit


def statuses(queue: JobQueue, *ids: str) -> list[str]:
    return [queue.get_status(i)["status"] for i in ids]


def test_cancel_by_id_and_prefix(gigq: Run, queue: JobQueue) -> None:
    one, two = submit(queue), submit(queue)
    result = gigq("cancel", one[:10], two)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Cancelled 2 jobs.\n"
    assert statuses(queue, one, two) == ["cancelled", "cancelled"]


def test_cancel_says_why_a_job_did_not_change(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    done = submit(queue)
    run_one(db, pm)
    result = gigq("cancel", done)
    assert_user_error(result, 1, f"not cancelled: {done} is completed")
    assert gigq("cancel", done).stderr == f"Error: not cancelled: {done} is completed\n"
    cancelled = gigq("--json", "cancel", done)
    assert cancelled.exit_code == 1
    data = json.loads(cancelled.stdout)
    assert data == {"count": 0, "changed": [], "unchanged": [done]}
    # Some changed, some not: exit 0, the others named on stderr.
    pending = submit(queue)
    result = gigq("cancel", done, pending)
    assert result.exit_code == 0
    assert result.stdout == "Cancelled 1 job.\n"
    assert result.stderr == f"Not cancelled: {done} is completed.\n"
    # Cancelling what is already cancelled changes nothing: a user error too.
    assert_user_error(gigq("cancel", pending), 1, f"{pending} is cancelled")


def test_cancel_in_bulk_by_filter(gigq: Run, queue: JobQueue) -> None:
    a = [submit(queue, name="a") for _ in range(3)]
    b = [submit(queue, name="b", queue="other") for _ in range(2)]
    result = gigq("cancel", "--queue", "other")
    assert result.stdout == "Cancelled 2 jobs.\n"
    assert statuses(queue, *b) == ["cancelled"] * 2
    assert statuses(queue, *a) == ["pending"] * 3
    data = json.loads(gigq("--json", "cancel", "--name", "a").stdout)
    assert data["count"] == 3 and sorted(data["changed"]) == sorted(a)
    nothing = gigq("cancel", "--status", "pending")  # a filter matching nothing: no error
    assert (nothing.exit_code, nothing.stdout, nothing.stderr) == (0, "Cancelled 0 jobs.\n", "")


def test_cancel_of_a_pending_job_cancels_its_dependents(gigq: Run, queue: JobQueue) -> None:
    parent = submit(queue)
    child = submit(queue, dependencies=[parent])
    assert gigq("cancel", parent).exit_code == 0
    assert statuses(queue, parent, child) == ["cancelled", "cancelled"]


def test_cancel_of_a_running_job_asks_it_to_stop(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    queue.storage.claim("w1", 1, queue.clock.now(), 30.0)
    result = gigq("cancel", job_id)
    assert result.stdout == "Cancelled 0 jobs. Asked 1 running job to stop.\n"
    assert queue.get_status(job_id)["cancel_requested"] is True


def test_requeue_by_id_and_in_bulk(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    failed = [submit(queue, "tests.jobs:fail", max_attempts=1) for _ in range(2)]
    while run_one(db, pm):
        pass
    cancelled = submit(queue, name="c")
    queue.cancel(cancelled)
    result = gigq("requeue", failed[0][:9])
    assert result.stdout == "Requeued 1 job.\n"
    assert statuses(queue, failed[0]) == ["pending"]
    assert queue.get_status(failed[0])["attempts"] == 0
    data = json.loads(gigq("--json", "requeue", "--status", "failed").stdout)
    assert data["changed"] == [failed[1]]
    assert gigq("requeue", "--name", "c").stdout == "Requeued 1 job.\n"
    assert statuses(queue, *failed, cancelled) == ["pending"] * 3
    assert_user_error(gigq("requeue", cancelled), 1, f"not requeued: {cancelled} is pending")


def test_requeue_names_the_job_holding_the_unique_key(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    failed = submit(queue, "tests.jobs:fail", max_attempts=1, unique_key="report")
    run_one(db, pm)
    holder = submit(queue, "tests.jobs:noop", unique_key="report")
    assert holder != failed
    result = gigq("requeue", failed)
    assert_user_error(result, 1, f"the unique key of {failed} is held by job {holder}")
    assert statuses(queue, failed, holder) == ["failed", "pending"]
    # Once the holder is done with the key, the requeue goes through.
    queue.cancel(holder)
    assert gigq("requeue", failed).stdout == "Requeued 1 job.\n"


def test_bulk_needs_ids_or_filters_but_not_both(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    for command in ("cancel", "requeue"):
        assert gigq(command).exit_code == 2
        result = gigq(command, job_id, "--status", "pending")
        assert result.exit_code == 2 and "not both" in result.stderr
    assert_user_error(gigq("cancel", "--status", "nope"), 1, "unknown status")
    assert_user_error(gigq("cancel", "missing-id"), 1, "no job with id 'missing-id'")
    assert statuses(queue, job_id) == ["pending"]


def test_clear_removes_completed_jobs_and_says_how_many(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    done = [submit(queue) for _ in range(2)]
    failed = submit(queue, "tests.jobs:fail", max_attempts=1)
    while run_one(db, pm):
        pass
    pending = submit(queue)
    result = gigq("clear")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Cleared 2 jobs (completed).\n"
    assert [queue.get_status(i)["exists"] for i in done] == [False, False]
    assert statuses(queue, failed, pending) == ["failed", "pending"]
    assert queue.storage.executions(done[0]) == []
    assert json.loads(gigq("--json", "clear", "--status", "failed").stdout) == {"deleted": 1}


def test_clear_keeps_a_completed_job_a_pending_job_depends_on(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    parent = submit(queue)
    run_one(db, pm)
    child = submit(queue, "tests.jobs:noop", dependencies=[parent])
    assert gigq("clear").stdout == "Cleared 0 jobs (completed).\n"
    assert statuses(queue, parent, child) == ["completed", "pending"]
    run_one(db, pm)
    assert gigq("clear").stdout == "Cleared 2 jobs (completed).\n"


def test_clear_before_days_keeps_recent_jobs(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    job_id = submit(queue)
    run_one(db, pm)
    assert gigq("clear", "--before", "1").stdout == "Cleared 0 jobs (completed).\n"
    old = queue.clock.now() - timedelta(days=2)
    assert queue.storage.prune(old, ["completed"]) == 0  # the cut-off is really in the past
    assert gigq("clear", "--before", "0").stdout == "Cleared 1 job (completed).\n"
    assert not queue.get_status(job_id)["exists"]


def test_clear_refuses_unfinished_or_unknown_states(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    assert_user_error(gigq("clear", "--status", "pending"), 1, "only finished jobs")
    assert_user_error(gigq("clear", "--status", "finished"), 1, "unknown status")
    assert gigq("clear", "--before", "-1").exit_code == 2
    assert statuses(queue, job_id) == ["pending"]


def test_bulk_counts_jobs_changed_by_a_cascade_in_the_same_selection(
    gigq: Run, queue: JobQueue
) -> None:
    parent = submit(queue)
    child = submit(queue, dependencies=[parent])
    assert gigq("cancel", "--status", "pending").stdout == "Cancelled 2 jobs.\n"
    assert statuses(queue, parent, child) == ["cancelled", "cancelled"]
    data = json.loads(gigq("--json", "requeue", "--status", "cancelled").stdout)
    assert data == {"count": 2, "changed": [parent, child], "unchanged": []}
    assert statuses(queue, parent, child) == ["pending", "pending"]


def test_unknown_status_names_the_known_ones(gigq: Run, queue: JobQueue) -> None:
    assert_user_error(gigq("requeue", "--status", "done"), 1, "unknown status 'done'; use one")
