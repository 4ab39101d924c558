"""`JobQueue` on the in-memory adapter: submit, inspect and steer jobs (through the facade's
queue, which reads jobs as dicts too; the core's reads records)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gigq import JobQueue, Worker, close_connections
from gigq_core import (
    AmbiguousIdError,
    DependencyCycleError,
    DisallowedFunctionError,
    InvalidJobError,
    Job,
    JobNotFoundError,
    JobStatus,
    SerializationError,
    UnknownDependencyError,
    UserError,
    Workflow,
)
from gigq_core.clock import SystemClock
from gigq_core.queue import JobQueue as CoreJobQueue
from gigq_core.records import Execution, JobFilter, JobRecord
from tests import jobs

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")

STATUS_KEYS = {
    "exists",
    "id",
    "name",
    "function_name",
    "function_module",
    "status",
    "priority",
    "dependencies",
    "attempts",
    "max_attempts",
    "timeout",
    "params",
    "result",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "worker_id",
    "executions",
}
EXECUTION_KEYS = {"id", "worker_id", "status", "started_at", "completed_at", "result", "error"}


def run_all(worker) -> int:
    """Run ready jobs until none is left; returns how many ran."""
    count = 0
    while worker.process_one():
        count += 1
        assert count < 100, "runaway"
    return count


# -- submit ----------------------------------------------------------------------------------


def test_submit_returns_the_job_id_and_stores_it_pending(queue):
    job = Job("add", jobs.add, params={"a": 1, "b": 2})

    job_id = queue.submit(job)

    assert job_id == job.id
    status = queue.get_status(job_id)
    assert status["status"] == "pending"
    assert status["params"] == {"a": 1, "b": 2}
    assert status["function_module"] == "tests.jobs"
    assert status["function_name"] == "add"


def test_submit_many_returns_ids_in_order(queue):
    batch = [Job(f"j{i}", jobs.noop) for i in range(5)]

    assert queue.submit_many(batch) == [j.id for j in batch]
    assert queue.stats()["pending"] == 5


def test_submit_many_of_nothing(queue):
    assert queue.submit_many([]) == []
    assert queue.stats()["total"] == 0


def test_submit_refuses_something_that_is_not_a_job(queue):
    with pytest.raises(InvalidJobError, match="Job"):
        queue.submit({"name": "x"})


def test_submit_many_is_atomic_when_one_job_is_bad(queue):
    good = Job("good", jobs.noop)
    bad = Job("bad", jobs.echo, params={"s": {1, 2}})

    with pytest.raises(SerializationError):
        queue.submit_many([good, bad])

    assert queue.stats()["total"] == 0
    assert queue.get_status(good.id) == {"exists": False}


def test_submit_many_is_atomic_when_a_dependency_is_unknown(queue):
    good = Job("good", jobs.noop)
    orphan = Job("orphan", jobs.noop, dependencies=[str(uuid.uuid4())])

    with pytest.raises(UnknownDependencyError, match="orphan"):
        queue.submit_many([good, orphan])

    assert queue.stats()["total"] == 0


def test_submit_refuses_a_dependency_cycle(queue):
    a = Job("a", jobs.noop)
    b = Job("b", jobs.noop, dependencies=[a])
    a.dependencies.append(b.id)

    with pytest.raises(DependencyCycleError):
        queue.submit_many([a, b])

    assert queue.stats()["total"] == 0


def test_submit_of_the_same_job_twice_is_refused(queue):
    job = Job("once", jobs.noop)
    queue.submit(job)

    with pytest.raises(InvalidJobError, match="already exists"):
        queue.submit(job)

    assert queue.stats()["total"] == 1


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"s": {1, 2}}, "JSON"),
        ({"x": math.nan}, "JSON"),
        ({"x": math.inf}, "JSON"),
        ({"x": [1, {"y": -math.inf}]}, "JSON"),
        ({"x": {1: "a"}}, "key"),
        ({"x": "\ud800"}, "surrogate"),
        ({"\udfff": 1}, "surrogate"),
        ({"b": b"bytes"}, "JSON"),
        ({"o": object()}, "JSON"),
    ],
)
def test_unserializable_params_are_refused_and_nothing_is_stored(queue, params, reason):
    job = Job("bad", jobs.echo, params=params)

    with pytest.raises(SerializationError, match=reason):
        queue.submit(job)

    assert queue.stats()["total"] == 0


def test_params_over_max_payload_are_refused(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock, max_payload=100) as queue:
        with pytest.raises(SerializationError, match="100-byte limit"):
            queue.submit(Job("big", jobs.echo, params={"text": "x" * 200}))
        # Multi-byte characters count in bytes.
        with pytest.raises(SerializationError, match="limit"):
            queue.submit(Job("wide", jobs.echo, params={"text": "é" * 60}))

        assert queue.stats()["total"] == 0
        queue.submit(Job("small", jobs.echo, params={"text": "x" * 50}))
        assert queue.stats()["total"] == 1


def test_params_round_trip_exactly(queue):
    params = {
        "text": "héllo ✓ 日本 \U0001f600",
        "int": 2**62,
        "float": 0.1,
        "neg": -3,
        "nested": {"list": [1, "two", None, True, False, {"deep": []}]},
        "empty": "",
    }
    job_id = queue.submit(Job("p", jobs.echo, params=params))

    assert queue.get_status(job_id)["params"] == params


@pytest.mark.parametrize("path", ["os:system", "builtins:eval", "subprocess:run", "pickle:loads"])
def test_stdlib_and_builtin_functions_are_refused(queue, path):
    with pytest.raises(DisallowedFunctionError, match="not allowed"):
        queue.submit(Job("evil", path, params={"command": "true"}))

    assert queue.stats()["total"] == 0


def test_dotted_stdlib_path_is_refused_too(queue):
    with pytest.raises(DisallowedFunctionError):
        queue.submit(Job("evil", "os.path.join"))


def test_disallowed_function_error_has_the_policy_exit_code():
    assert DisallowedFunctionError.exit_code == 78


def test_allowed_modules_is_an_allow_list(pm, clock, store):
    url = f"memory://{store}"
    with JobQueue(url, plugin_manager=pm, clock=clock, allowed_modules=["tests.*"]) as queue:
        assert queue.submit(Job("ok", jobs.add, params={"a": 1, "b": 2}))
        with pytest.raises(DisallowedFunctionError, match="allowed_modules"):
            queue.submit(Job("other", "elsewhere.module:func"))
        with pytest.raises(DisallowedFunctionError):
            queue.submit(Job("stdlib", "os:system"))
        assert queue.stats()["total"] == 1


def test_without_allow_list_any_non_stdlib_module_is_accepted(queue):
    assert queue.submit(Job("other", "elsewhere.module:func"))


def test_unknown_retry_strategy_is_refused_at_submit(queue):
    with pytest.raises(InvalidJobError, match="unknown retry strategy 'nope'"):
        queue.submit(Job("r", jobs.noop, retry="nope"))
    assert queue.stats()["total"] == 0


def test_bad_retry_strategy_parameters_are_refused_at_submit(queue):
    with pytest.raises(InvalidJobError, match="fixed"):
        queue.submit(Job("r", jobs.noop, retry=("fixed", {"bogus": 1})))
    assert queue.stats()["total"] == 0


@pytest.mark.parametrize(
    ("kwargs", "name", "params"),
    [
        ({}, "exponential_jitter", {}),
        ({"retry_delay": 5}, "fixed", {"delay": 5.0}),
        ({"retry_delay": 0}, "fixed", {"delay": 0.0}),
        ({"retry_delay": timedelta(seconds=7)}, "fixed", {"delay": 7.0}),
        ({"retry": "linear"}, "linear", {}),
        (
            {"retry": ("exponential", {"base": 2, "cap": 600})},
            "exponential",
            {"base": 2, "cap": 600},
        ),
    ],
)
def test_retry_is_stored_as_a_name_and_parameters(queue, kwargs, name, params):
    job_id = queue.submit(Job("r", jobs.noop, **kwargs))

    status = queue.get_status(job_id)
    assert status["retry"] == name
    assert status["retry_params"] == params


def test_main_function_submits_with_a_warning(queue, caplog):
    job = Job("m", "tests.jobs:noop")
    job.function_path = "__main__:script_func"

    with caplog.at_level("WARNING", logger="gigq"):
        queue.submit(job)

    assert "__main__" in caplog.text
    assert queue.get_status(job.id)["function_module"] == "__main__"


def test_delay_sets_run_at_from_the_queue_clock(queue, clock):
    job_id = queue.submit(Job("d", jobs.noop, delay=60))

    expected = (clock.now() + timedelta(seconds=60)).isoformat()
    assert queue.get_status(job_id)["run_at"] == expected


def test_duplicate_dependencies_are_stored_once(queue):
    parent = Job("p", jobs.noop)
    child = Job("c", jobs.noop, dependencies=[parent, parent.id])
    queue.submit_many([parent, child])

    assert queue.get_status(child.id)["dependencies"] == [parent.id]


# -- unique keys -----------------------------------------------------------------------------


def test_unique_key_returns_the_existing_active_job(queue, rec):
    first = queue.submit(Job("a", jobs.noop, unique_key="k"))

    second = queue.submit(Job("b", jobs.noop, unique_key="k"))

    assert second == first
    assert queue.stats()["total"] == 1
    assert rec.calls == [("gigq_job_submitted", first)]


def test_unique_key_scope_active_allows_a_new_job_after_completion(queue, worker):
    first = queue.submit(Job("a", jobs.noop, unique_key="k"))
    worker.process_one()

    second = queue.submit(Job("b", jobs.noop, unique_key="k"))

    assert second != first
    assert queue.stats()["total"] == 2


def test_unique_key_scope_success_skips_finished_work(queue, worker):
    first = queue.submit(Job("a", jobs.noop, unique_key="k", unique_scope="success"))
    worker.process_one()

    again = queue.submit(Job("b", jobs.noop, unique_key="k", unique_scope="success"))

    assert again == first
    assert queue.stats()["total"] == 1


def test_failed_and_cancelled_jobs_do_not_hold_a_key(queue, worker):
    failed = queue.submit(Job("f", jobs.fail, unique_key="k", max_attempts=1))
    worker.process_one()
    assert queue.get_status(failed)["status"] == "failed"
    cancelled = queue.submit(Job("c", jobs.noop, unique_key="k"))
    assert cancelled != failed
    queue.cancel(cancelled)

    third = queue.submit(Job("t", jobs.noop, unique_key="k", unique_scope="success"))

    assert third not in (failed, cancelled)


def test_workflow_dependents_of_a_deduplicated_job_point_at_the_existing_job(queue):
    existing = queue.submit(Job("fetch", jobs.noop, unique_key="fetch-1"))
    flow = Workflow("pipeline")
    fetch = flow.add_job(Job("fetch", jobs.noop, unique_key="fetch-1"))
    parse = flow.add_job(Job("parse", jobs.noop), depends_on=fetch)

    ids = flow.submit_all(queue)

    assert ids == [existing, parse.id]
    assert queue.get_status(parse.id)["dependencies"] == [existing]


# -- workflows -------------------------------------------------------------------------------


def test_workflow_submit_all_is_atomic(queue):
    flow = Workflow("w")
    flow.add_job(Job("a", jobs.noop))
    flow.add_job(Job("b", jobs.echo, params={"bad": math.nan}))

    with pytest.raises(SerializationError):
        flow.submit_all(queue)

    assert queue.stats()["total"] == 0


def test_workflow_add_task_and_dependencies(queue):
    flow = Workflow("w")
    first = flow.add_task(jobs.task_add, params={"a": 1, "b": 2})
    second = flow.add_task(
        jobs.task_with_options, params={"x": 1}, depends_on=[first], pass_parent_results=True
    )

    ids = flow.submit_all(queue)

    assert ids == [first.id, second.id]
    status = queue.get_status(second.id)
    assert status["dependencies"] == [first.id]
    assert status["workflow_id"] == flow.id
    assert status["workflow_name"] == "w"
    assert [j["id"] for j in queue.list_jobs(workflow_id=flow.id)] == [second.id, first.id]


def test_workflow_refuses_bad_arguments():
    with pytest.raises(InvalidJobError):
        Workflow("")
    with pytest.raises(InvalidJobError):
        Workflow("w").add_job("not a job")
    with pytest.raises(InvalidJobError):
        Workflow("w").add_task(jobs.add)


# -- get_status ------------------------------------------------------------------------------


def test_get_status_has_every_documented_key(queue, worker):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}, description="d"))
    worker.process_one()

    status = queue.get_status(job_id)

    assert status.keys() >= STATUS_KEYS
    assert status["exists"] is True
    assert status["id"] == job_id
    assert status["name"] == "add"
    assert status["status"] == "completed"
    assert status["result"] == 3
    assert status["attempts"] == 1
    assert status["max_attempts"] == 3
    assert status["timeout"] == 300
    assert status["priority"] == 0
    assert status["dependencies"] == []
    assert status["error"] is None
    assert status["worker_id"] == "w1"
    for key in ("created_at", "updated_at", "started_at", "completed_at"):
        assert ISO_UTC.match(status[key]), (key, status[key])
    [execution] = status["executions"]
    assert execution.keys() >= EXECUTION_KEYS
    assert execution["status"] == "completed"
    assert execution["worker_id"] == "w1"
    assert execution["result"] == 3
    assert execution["error"] is None
    assert ISO_UTC.match(execution["started_at"])
    assert ISO_UTC.match(execution["completed_at"])


def test_get_status_of_a_pending_job(queue, clock):
    job_id = queue.submit(Job("n", jobs.noop))

    status = queue.get_status(job_id)

    assert status["created_at"] == clock.now().isoformat()
    assert status["created_at"].endswith("+00:00")
    assert status["started_at"] is None
    assert status["completed_at"] is None
    assert status["worker_id"] is None
    assert status["executions"] == []


def test_get_status_timestamps_are_utc_whatever_the_clock_zone(pm, store):
    from gigq_core.testing import FakeClock

    clock = FakeClock(datetime(2030, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=5))))
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(Job("n", jobs.noop))
        assert queue.get_status(job_id)["created_at"] == "2030-01-01T00:00:00+00:00"


def test_get_status_of_an_unknown_id(queue):
    assert queue.get_status(str(uuid.uuid4())) == {"exists": False}


def test_get_status_of_a_failed_job_has_the_error(queue, worker):
    job_id = queue.submit(Job("f", jobs.fail, params={"message": "bad thing"}, max_attempts=1))
    worker.process_one()

    status = queue.get_status(job_id)

    assert status["status"] == "failed"
    assert "bad thing" in status["error"]
    [execution] = status["executions"]
    assert execution["status"] == "failed"
    assert "ValueError" in execution["error"]
    assert "bad thing" in execution["error"]
    assert "Traceback" in execution["traceback"]


# -- get_result / wait -----------------------------------------------------------------------


def test_get_result_is_none_while_pending(queue):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}))
    assert queue.get_result(job_id) is None


def test_get_result_is_the_value_once_completed(queue, worker):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}))
    worker.process_one()

    assert queue.get_result(job_id) == 3


def test_get_result_of_a_failed_job_is_none(queue, worker):
    job_id = queue.submit(Job("f", jobs.fail, max_attempts=1))
    worker.process_one()

    assert queue.get_result(job_id) is None


def test_get_result_of_an_unknown_id_raises_key_error(queue):
    unknown = str(uuid.uuid4())
    with pytest.raises(KeyError):
        queue.get_result(unknown)
    with pytest.raises(JobNotFoundError, match=unknown):
        queue.get_result(unknown)


def test_get_result_with_a_timeout_gives_up_on_an_unfinished_job(queue):
    job_id = queue.submit(Job("n", jobs.noop))
    assert queue.get_result(job_id, timeout=0) is None


def test_wait_returns_statuses_of_finished_jobs(queue, worker):
    ok = queue.submit(Job("ok", jobs.noop))
    bad = queue.submit(Job("bad", jobs.fail, max_attempts=1))
    run_all(worker)

    assert queue.wait([ok, bad]) == {ok: "completed", bad: "failed"}


def test_wait_with_timeout_returns_current_statuses(queue):
    job_id = queue.submit(Job("n", jobs.noop))
    assert queue.wait([job_id], timeout=0) == {job_id: "pending"}


@pytest.mark.timeout(10)
def test_wait_with_timeout_on_a_real_clock_returns(pm, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=SystemClock()) as queue:
        job_id = queue.submit(Job("n", jobs.noop))
        assert queue.wait([job_id], timeout=0.05) == {job_id: "pending"}


def test_wait_for_an_unknown_id_raises(queue):
    with pytest.raises(JobNotFoundError):
        queue.wait([str(uuid.uuid4())], timeout=0)


# -- list_jobs / stats -----------------------------------------------------------------------


def test_list_jobs_newest_first(queue):
    ids = [queue.submit(Job(f"j{i}", jobs.noop)) for i in range(4)]

    assert [j["id"] for j in queue.list_jobs()] == ids[::-1]
    assert [j["id"] for j in queue.list_jobs(order="oldest")] == ids


def test_list_jobs_limit_and_offset(queue):
    ids = [queue.submit(Job(f"j{i}", jobs.noop)) for i in range(5)]

    assert [j["id"] for j in queue.list_jobs(limit=2)] == ids[:2:-1][:2]
    assert [j["id"] for j in queue.list_jobs(limit=2, offset=2)] == [ids[2], ids[1]]


def test_list_jobs_default_limit_is_100(queue):
    queue.submit_many([Job(f"j{i}", jobs.noop) for i in range(105)])
    assert len(queue.list_jobs()) == 100


def test_list_jobs_filters(queue, worker):
    a = queue.submit(Job("alpha", jobs.noop, queue="q1"))
    b = queue.submit(Job("beta", jobs.fail, queue="q2", max_attempts=1))
    c = queue.submit(Job("alpha", jobs.noop, queue="q2", delay=3600))
    run_all(worker)

    assert [j["id"] for j in queue.list_jobs(status="completed")] == [a]
    assert [j["id"] for j in queue.list_jobs(status=["completed", "failed"])] == [b, a]
    assert [j["id"] for j in queue.list_jobs(status=JobStatus.PENDING)] == [c]
    assert [j["id"] for j in queue.list_jobs(queue="q2")] == [c, b]
    assert [j["id"] for j in queue.list_jobs(name="alpha")] == [c, a]
    assert [j["id"] for j in queue.list_jobs(status="pending", queue="q1")] == []
    listed = queue.list_jobs(status="failed")[0]
    assert listed["status"] == "failed"
    assert "executions" not in listed


@pytest.mark.parametrize("status", ["done", "PENDING ", ["pending", "nope"]])
def test_list_jobs_unknown_status_is_refused(queue, status):
    with pytest.raises(InvalidJobError, match="unknown status"):
        queue.list_jobs(status=status)


def test_stats_counts_every_status_and_total(queue, worker):
    assert queue.stats() == {s.value: 0 for s in JobStatus} | {"total": 0}
    queue.submit(Job("ok", jobs.noop))
    queue.submit(Job("bad", jobs.fail, max_attempts=1))
    run_all(worker)
    queue.submit(Job("later", jobs.noop, delay=60))
    queue.cancel(queue.submit(Job("c", jobs.noop, delay=60)))

    stats = queue.stats()

    assert set(stats) == {s.value for s in JobStatus} | {"total"}
    assert stats["completed"] == 1
    assert stats["failed"] == 1
    assert stats["pending"] == 1
    assert stats["cancelled"] == 1
    assert stats["running"] == 0
    assert stats["timeout"] == 0
    assert stats["total"] == 4


# -- cancel / requeue ------------------------------------------------------------------------


def test_cancel_pending_job_returns_true(queue):
    job_id = queue.submit(Job("n", jobs.noop))

    assert queue.cancel(job_id) is True
    status = queue.get_status(job_id)
    assert status["status"] == "cancelled"
    assert ISO_UTC.match(status["completed_at"])


def test_cancel_finished_or_unknown_job_returns_false(queue, worker):
    done = queue.submit(Job("n", jobs.noop))
    worker.process_one()
    cancelled = queue.submit(Job("c", jobs.noop))
    queue.cancel(cancelled)

    assert queue.cancel(done) is False
    assert queue.cancel(cancelled) is False
    assert queue.cancel(str(uuid.uuid4())) is False
    assert queue.get_status(done)["status"] == "completed"


def test_cancel_running_job_records_the_request(queue, worker):
    job_id = queue.submit(Job("n", jobs.noop))
    [record] = queue.storage.claim("other", 1, queue.clock.now(), 30)

    assert queue.cancel(job_id) is True
    status = queue.get_status(job_id)
    assert status["status"] == "running"
    assert status["cancel_requested"] is True
    assert record.id == job_id


def test_cancel_cascades_to_dependents(queue):
    parent = Job("p", jobs.noop)
    child = Job("c", jobs.noop, dependencies=[parent])
    grandchild = Job("g", jobs.noop, dependencies=[child])
    queue.submit_many([parent, child, grandchild])

    queue.cancel(parent.id)

    for job in (child, grandchild):
        status = queue.get_status(job.id)
        assert status["status"] == "cancelled"
    assert "'p'" in queue.get_status(child.id)["error"]


def test_requeue_failed_job_returns_true_and_resets_it(queue, worker):
    job_id = queue.submit(Job("f", jobs.fail, max_attempts=1))
    worker.process_one()

    assert queue.requeue_job(job_id) is True
    status = queue.get_status(job_id)
    assert status["status"] == "pending"
    assert status["attempts"] == 0
    assert status["error"] is None
    assert status["result"] is None
    assert status["started_at"] is None
    assert status["completed_at"] is None


def test_requeue_cancelled_job_and_alias(queue):
    job_id = queue.submit(Job("n", jobs.noop))
    queue.cancel(job_id)

    assert queue.requeue(job_id) is True
    assert queue.get_status(job_id)["status"] == "pending"


def test_requeue_pending_completed_or_unknown_job_returns_false(queue, worker):
    done = queue.submit(Job("n", jobs.noop))
    worker.process_one()
    pending = queue.submit(Job("p", jobs.noop))

    assert queue.requeue_job(done) is False
    assert queue.requeue_job(pending) is False
    assert queue.requeue_job(str(uuid.uuid4())) is False
    assert queue.get_status(done)["status"] == "completed"


def test_requeue_revives_the_dependents_its_end_cancelled(queue, worker):
    parent = Job("p", jobs.noop)
    child = Job("c", jobs.noop, dependencies=[parent])
    queue.submit_many([parent, child])
    queue.cancel(parent.id)
    assert queue.get_status(child.id)["status"] == "cancelled"

    queue.requeue_job(parent.id)

    assert queue.get_status(child.id)["status"] == "pending"
    assert run_all(worker) == 2
    assert queue.wait([parent.id, child.id]) == {parent.id: "completed", child.id: "completed"}


# -- clear_completed -------------------------------------------------------------------------


def test_clear_completed_removes_completed_and_cancelled_jobs_with_executions(queue, worker, clock):
    done = queue.submit(Job("d", jobs.noop))
    worker.process_one()
    cancelled = queue.submit(Job("c", jobs.noop))
    queue.cancel(cancelled)
    failed = queue.submit(Job("f", jobs.fail, max_attempts=1))
    worker.process_one()
    pending = queue.submit(Job("p", jobs.noop, delay=60))
    clock.advance(1)

    assert queue.clear_completed() == 2

    assert queue.get_status(done) == {"exists": False}
    assert queue.get_status(cancelled) == {"exists": False}
    assert queue.storage.executions(done) == []
    assert queue.get_status(failed)["status"] == "failed"
    assert queue.get_status(pending)["status"] == "pending"


def test_clear_completed_never_removes_a_job_a_pending_job_depends_on(queue, worker, clock):
    parent = Job("p", jobs.noop)
    queue.submit(parent)
    worker.process_one()
    child = Job("c", jobs.noop, dependencies=[parent], delay=3600)
    queue.submit(child)
    clock.advance(10)

    assert queue.clear_completed() == 0

    assert queue.get_status(parent.id)["status"] == "completed"
    clock.advance(3600)
    assert worker.process_one() is True
    assert queue.get_status(child.id)["status"] == "completed"
    clock.advance(1)
    assert queue.clear_completed() == 2


def test_clear_completed_before_a_timestamp(queue, worker, clock):
    old = queue.submit(Job("old", jobs.noop))
    worker.process_one()
    clock.advance(100)
    cutoff = clock.now()
    clock.advance(100)
    new = queue.submit(Job("new", jobs.noop))
    worker.process_one()
    clock.advance(1)

    assert queue.clear_completed(before_timestamp=cutoff.timestamp()) == 1
    assert queue.get_status(old) == {"exists": False}
    assert queue.get_status(new)["exists"] is True
    assert queue.clear_completed(before_timestamp=cutoff) == 0


def test_clear_refuses_unfinished_statuses(queue):
    with pytest.raises(InvalidJobError, match="pending"):
        queue.clear(("pending",))


# -- resolve_id ------------------------------------------------------------------------------


def test_resolve_id_full_and_prefix(queue):
    a = Job("a", jobs.noop, id="aaaa1111-0000-4000-8000-000000000000")
    b = Job("b", jobs.noop, id="aaaa2222-0000-4000-8000-000000000000")
    queue.submit_many([a, b])

    assert queue.resolve_id(a.id) == a.id
    assert queue.resolve_id("aaaa1") == a.id
    assert queue.resolve_id("aaaa2") == b.id


def test_resolve_id_ambiguous_prefix(queue):
    queue.submit(Job("a", jobs.noop, id="aaaa1111-0000-4000-8000-000000000000"))
    queue.submit(Job("b", jobs.noop, id="aaaa2222-0000-4000-8000-000000000000"))

    with pytest.raises(AmbiguousIdError, match="aaaa"):
        queue.resolve_id("aaaa")


@pytest.mark.parametrize("prefix", ["zzz", ""])
def test_resolve_id_unknown(queue, prefix):
    queue.submit(Job("a", jobs.noop, id="aaaa1111-0000-4000-8000-000000000000"))

    with pytest.raises(JobNotFoundError):
        queue.resolve_id(prefix)


# -- the queue object ------------------------------------------------------------------------


def test_memory_store_is_shared_by_name_within_the_process(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as first:
        job_id = first.submit(Job("n", jobs.noop))
        with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as second:
            assert second.get_status(job_id)["exists"] is True


def test_queue_accepts_a_storage_object(pm, clock):
    from gigq_core.memory import MemoryStorage

    storage = MemoryStorage("object")
    with JobQueue(storage, plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(Job("n", jobs.noop))
        assert storage.get(job_id) is not None
        assert queue.storage is storage


def test_queue_repr_and_target(queue, store):
    assert queue.target == f"memory://{store}"
    assert store in repr(queue)


def test_storage_filter_counts_match_stats(queue):
    queue.submit_many([Job(f"j{i}", jobs.noop) for i in range(3)])
    assert queue.storage.count(JobFilter()) == {"pending": 3}


def test_requeue_does_not_make_a_second_active_job_with_one_unique_key(queue):
    first = queue.submit(Job("a", jobs.noop, unique_key="k"))
    queue.cancel(first)
    second = queue.submit(Job("b", jobs.noop, unique_key="k"))
    assert second != first

    try:
        requeued = queue.requeue_job(first)
    except UserError:
        requeued = False

    assert requeued is False
    assert [j["id"] for j in queue.list_jobs(status=["pending", "running"])] == [second]
    assert queue.get_status(first)["status"] == "cancelled"


@pytest.mark.parametrize(
    "retry",
    [("fixed", {"delay": object()}), ("nosuch", {"x": {1, 2}}), ("fixed", {"delay": math.nan})],
)
def test_retry_parameters_that_are_not_json_are_refused_in_a_sentence(queue, retry):
    with pytest.raises(InvalidJobError, match="plain JSON values"):
        queue.submit(Job("n", jobs.noop, retry=retry))

    assert queue.stats()["total"] == 0


def test_a_listing_limit_past_64_bits_lists_everything(queue):
    ids = queue.submit_many([Job(f"j{i}", jobs.noop) for i in range(3)])
    listed = queue.list_jobs(limit=2**70, offset=0)
    assert sorted(j["id"] for j in listed) == sorted(ids)
    assert queue.list_jobs(limit=10, offset=2**70) == []


def test_wait_takes_one_id_as_well_as_many(queue, worker):
    job_id = queue.submit(Job("a", jobs.add, {"a": 1, "b": 2}))
    assert worker.process_one() is True
    assert queue.wait(job_id, timeout=5) == {job_id: "completed"}
    assert queue.wait([job_id], timeout=5) == {job_id: "completed"}


# -- the core's records and the facade's dicts ------------------------------------------------


def test_the_core_queue_reads_jobs_and_executions_as_records(pm, clock, store):
    with CoreJobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as core:
        ok = core.submit(Job("ok", jobs.noop))
        bad = core.submit(Job("bad", jobs.fail, max_attempts=1))
        worker = Worker(core, worker_id="w1")
        while worker.process_one():
            pass

        listed = core.jobs()
        [attempt] = core.executions(bad)

        assert [r.id for r in listed] == [bad, ok]
        assert all(isinstance(r, JobRecord) for r in listed)
        assert [r.id for r in core.jobs(status="failed")] == [bad]
        assert core.get_job(bad).status is JobStatus.FAILED
        assert isinstance(attempt, Execution)
        assert (attempt.status, attempt.worker_id) == ("failed", "w1")
        assert attempt.error is not None and attempt.error.type == "ValueError"
        assert core.executions(str(uuid.uuid4())) == []


def test_the_facade_dicts_are_the_core_records_decoded(queue, worker):
    job_id = queue.submit(Job("bad", jobs.fail, {"message": "no"}, max_attempts=1))
    run_all(worker)

    status = queue.get_status(job_id)
    record = queue.get_job(job_id)

    assert status["status"] == record.status.value
    assert status["params"] == {"message": "no"}
    assert status["completed_at"] == record.completed_at.isoformat()
    assert [e["id"] for e in status["executions"]] == [e.id for e in queue.executions(job_id)]
    assert queue.list_jobs() == [{k: v for k, v in status.items() if k != "executions"}]


def test_close_connections_closes_every_queue_still_open(pm, clock, store):
    closed: list[str] = []
    opened = [JobQueue(f"memory://{store}-{n}", plugin_manager=pm, clock=clock) for n in (0, 1)]
    for number, each in enumerate(opened):
        each.storage.close = lambda number=number: closed.append(number)
    opened[0].close()

    close_connections()
    close_connections()  # a closed queue is not closed again

    assert closed == [0, 1]
