"""`Worker` on the in-memory adapter: running jobs inline, retries, results, the loop."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest

from gigq import JobQueue, Worker
from gigq_core import GigQError, Job, current_job, hookimpl
from gigq_core.clock import SystemClock
from gigq_core.records import JobStatus, Outcome
from gigq_core.testing import RecordingPlugin
from tests import jobs
from tests.contract._factory import job_record


def status_of(queue, job_id):
    return queue.get_status(job_id)


def test_process_one_without_work_returns_false(worker):
    assert worker.process_one() is False


def test_success_stores_the_result(queue, worker):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 2, "b": 3}))

    assert worker.process_one() is True

    status = status_of(queue, job_id)
    assert status["status"] == "completed"
    assert status["result"] == 5
    assert status["attempts"] == 1
    assert status["error"] is None
    assert worker.process_one() is False


def test_process_one_runs_the_highest_priority_then_oldest(queue, worker):
    low = queue.submit(Job("low", jobs.noop, priority=1))
    high_first = queue.submit(Job("high1", jobs.noop, priority=9))
    high_second = queue.submit(Job("high2", jobs.noop, priority=9))

    order = []
    while worker.process_one():
        done = [j["id"] for j in queue.list_jobs(status="completed", order="oldest")]
        order.extend(i for i in done if i not in order)

    assert order == [high_first, high_second, low]


def test_failure_is_retried_after_the_strategy_delay(queue, worker, clock):
    job_id = queue.submit(
        Job("flaky", jobs.fail_until, params={"attempts": 1, "value": "done"}, retry_delay=10)
    )

    assert worker.process_one() is True
    status = status_of(queue, job_id)
    assert status["status"] == "pending"
    assert status["attempts"] == 1
    assert "attempt 1 fails" in status["error"]
    assert status["run_at"] == (clock.now() + timedelta(seconds=10)).isoformat()

    clock.advance(9)
    assert worker.process_one() is False
    clock.advance(1)
    assert worker.process_one() is True

    status = status_of(queue, job_id)
    assert status["status"] == "completed"
    assert status["result"] == "done"
    assert status["attempts"] == 2
    assert [e["status"] for e in status["executions"]] == ["failed", "completed"]


def test_retry_delay_zero_retries_at_once(queue, worker):
    job_id = queue.submit(Job("flaky", jobs.fail_until, params={"attempts": 2}, retry_delay=0))

    assert worker.process_one() and worker.process_one() and worker.process_one()

    assert status_of(queue, job_id)["status"] == "completed"
    assert status_of(queue, job_id)["attempts"] == 3


def test_exponential_retry_strategy_delays(queue, worker, clock):
    job_id = queue.submit(
        Job("f", jobs.fail, max_attempts=4, retry=("exponential", {"base": 2, "cap": 5}))
    )
    waits = []
    for _ in range(3):
        before = clock.now()
        assert worker.process_one() is True
        run_at = status_of(queue, job_id)["run_at"]
        waits.append(run_at)
        assert worker.process_one() is False
        delay = {0: 2, 1: 4, 2: 5}[len(waits) - 1]
        assert run_at == (before + timedelta(seconds=delay)).isoformat()
        clock.advance(delay)

    assert worker.process_one() is True
    assert status_of(queue, job_id)["status"] == "failed"
    assert status_of(queue, job_id)["attempts"] == 4


def test_default_strategy_retries_within_the_first_backoff(queue, worker, clock):
    job_id = queue.submit(Job("f", jobs.fail, max_attempts=2))

    worker.process_one()

    status = status_of(queue, job_id)
    assert status["status"] == "pending"
    assert status["retry"] == "exponential_jitter"
    clock.advance(1)  # jitter is within [0, base=1 s] for the first retry
    assert worker.process_one() is True
    assert status_of(queue, job_id)["status"] == "failed"


def test_abort_fails_at_once_without_retry(queue, worker):
    job_id = queue.submit(Job("a", jobs.abort, params={"message": "no way"}, retry_delay=0))

    worker.process_one()

    status = status_of(queue, job_id)
    assert status["status"] == "failed"
    assert status["attempts"] == 1
    assert "no way" in status["error"]
    assert worker.process_one() is False


def test_dont_retry_on_fails_at_once(queue, worker):
    retry = ("fixed", {"delay": 0, "dont_retry_on": ["ValueError"]})
    job_id = queue.submit(Job("f", jobs.fail, retry=retry))

    worker.process_one()

    assert status_of(queue, job_id)["status"] == "failed"
    assert status_of(queue, job_id)["attempts"] == 1


def test_dont_retry_on_by_qualified_name(queue, worker):
    retry = ("fixed", {"delay": 0, "dont_retry_on": ["tests.jobs.CustomError"]})
    custom = queue.submit(Job("c", jobs.fail_custom, retry=retry))
    other = queue.submit(Job("o", jobs.fail, retry=retry))

    worker.process_one()
    worker.process_one()

    assert status_of(queue, custom)["status"] == "failed"
    assert status_of(queue, other)["status"] == "pending"


def test_retry_on_retries_only_listed_errors(queue, worker):
    retry = ("fixed", {"delay": 0, "retry_on": ["CustomError"]})
    other = queue.submit(Job("o", jobs.fail, retry=retry))
    custom = queue.submit(Job("c", jobs.fail_custom, retry=retry))

    worker.process_one()
    worker.process_one()

    assert status_of(queue, custom)["status"] == "pending"
    assert status_of(queue, other)["status"] == "failed"


def test_max_attempts_exhausted_fails_the_job(queue, worker):
    job_id = queue.submit(Job("f", jobs.fail, max_attempts=3, retry_delay=0))

    assert [worker.process_one() for _ in range(4)] == [True, True, True, False]

    status = status_of(queue, job_id)
    assert status["status"] == "failed"
    assert status["attempts"] == 3
    assert [e["status"] for e in status["executions"]] == ["failed"] * 3
    assert [e["attempt"] for e in status["executions"]] == [1, 2, 3]


def test_job_calling_sys_exit_does_not_kill_the_worker(queue, worker):
    job_id = queue.submit(Job("exit", jobs.exits, params={"code": 3}, max_attempts=1))
    after = queue.submit(Job("after", jobs.add, params={"a": 1, "b": 1}))

    assert worker.process_one() is True
    assert worker.process_one() is True

    status = status_of(queue, job_id)
    assert status["status"] == "failed"
    assert "SystemExit" in status["executions"][0]["error_type"]
    assert status_of(queue, after)["result"] == 2


def test_an_error_whose_str_raises_is_recorded_not_raised_inline(queue, worker):
    job_id = queue.submit(Job("bad str", jobs.fail_unprintable, max_attempts=1))

    assert worker.process_one() is True

    status = status_of(queue, job_id)
    assert status["status"] == "failed"
    assert status["error"] == (
        "tests.jobs.UnprintableError: <exception str() failed: UnprintableError>"
    )
    assert "fail_unprintable" in status["executions"][0]["traceback"]


@pytest.mark.timeout(30)
def test_an_error_whose_str_raises_is_recorded_by_the_process_executor(pm, tmp_path):
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        job_id = queue.submit(Job("bad str", jobs.fail_unprintable, max_attempts=1))
        Worker(queue, executor="process", polling_interval=0.1).start(burst=True)
        status = queue.get_status(job_id)
    assert status["status"] == "failed"
    assert status["error"] == (
        "tests.jobs.UnprintableError: <exception str() failed: UnprintableError>"
    )
    assert "fail_unprintable" in status["executions"][0]["traceback"]


def test_unserializable_result_fails_without_retry(queue, worker):
    job_id = queue.submit(Job("u", jobs.returns_unserializable, retry_delay=0))

    worker.process_one()

    status = status_of(queue, job_id)
    assert status["status"] == "failed"
    assert status["attempts"] == 1
    assert "result cannot be stored" in status["error"]
    assert worker.process_one() is False


def test_result_over_max_payload_fails_without_retry(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock, max_payload=100) as queue:
        job_id = queue.submit(Job("big", jobs.returns_text, params={"size": 200}, retry_delay=0))
        Worker(queue, worker_id="w1").process_one()

        status = status_of(queue, job_id)
        assert status["status"] == "failed"
        assert "limit" in status["error"]
        assert status["attempts"] == 1


def test_result_over_max_payload_in_utf8_bytes_fails(pm, clock, store):
    # 60 two-byte characters: 62 characters of JSON, 122 bytes; the limit is in bytes (D6),
    # as it is for params.
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock, max_payload=100) as queue:
        job_id = queue.submit(
            Job("wide", jobs.returns_text, params={"size": 60, "char": "é"}, retry_delay=0)
        )
        Worker(queue, worker_id="w1").process_one()

        assert status_of(queue, job_id)["status"] == "failed"


def test_async_job_runs_to_completion(queue, worker):
    job_id = queue.submit(Job("async", jobs.async_add, params={"a": 20, "b": 22}))

    worker.process_one()

    assert status_of(queue, job_id)["result"] == 42


def test_task_job_runs_through_the_worker(queue, worker):
    job_id = jobs.task_add.submit(queue, a=4, b=5)

    worker.process_one()

    assert queue.get_result(job_id) == 9


def test_current_job_inside_a_job(queue, worker):
    job_id = queue.submit(Job("who", jobs.record_current_job))

    worker.process_one()

    assert queue.get_result(job_id) == {
        "id": job_id,
        "name": "who",
        "attempt": 1,
        "worker_id": "w1",
        "is_cancelled": False,
    }


def test_current_job_attempt_counts_retries(queue, worker):
    job_id = queue.submit(Job("f", jobs.fail_until, params={"attempts": 2}, retry_delay=0))
    while worker.process_one():
        pass
    assert [e["attempt"] for e in status_of(queue, job_id)["executions"]] == [1, 2, 3]


def test_current_job_outside_a_job_raises():
    with pytest.raises(GigQError, match="outside a running job"):
        current_job()


def test_current_job_is_reset_after_the_job(queue, worker):
    queue.submit(Job("who", jobs.record_current_job))
    worker.process_one()

    with pytest.raises(GigQError):
        current_job()


def test_main_function_not_in_this_process_fails_at_once(queue, worker, clock):
    record = job_record(clock.now(), function="__main__:nope", name="scripted")
    queue.storage.insert([record], clock.now())

    assert worker.process_one() is True

    status = status_of(queue, record.id)
    assert status["status"] == "failed"
    assert status["attempts"] == 1
    assert "defined in a script (__main__)" in status["error"]
    assert "move it to an importable module" in status["error"]
    assert worker.process_one() is False


def test_job_whose_module_cannot_be_imported_here_is_handed_back(queue, worker):
    # Another worker may have the module (this one may run in the wrong folder): the job
    # goes back uncounted; tests/unit/test_unimportable.py has the rest of the rule.
    job_id = queue.submit(Job("ghost", "no_such_module_xyz:func"))

    worker.process_one()

    status = status_of(queue, job_id)
    assert status["status"] == "pending"
    assert status["attempts"] == 0
    assert [e["status"] for e in status["executions"]] == ["handed_back"]
    assert "no_such_module_xyz" in status["executions"][0]["error"]


def test_disallowed_function_written_into_storage_fails_without_running(
    queue, worker, clock, tmp_path
):
    # docs/guarantees.md (function policy): the worker fails it with "not allowed" and the
    # function never runs (zero executions of it): its side effect, a file, must not appear.
    marker = tmp_path / "ran"
    params = json.dumps({"args": ["touch", str(marker)]})
    record = job_record(clock.now(), function="subprocess:run", params=params)
    queue.storage.insert([record], clock.now())

    worker.process_one()

    status = status_of(queue, record.id)
    assert status["status"] == "failed"
    assert "not allowed" in status["error"]
    assert status["attempts"] == 1  # failed at once, no retry
    assert not marker.exists()
    [attempt] = status["executions"]
    assert attempt["status"] == "failed"
    assert "not allowed" in attempt["error"]


def test_worker_allow_list_refuses_a_stored_function_outside_it(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(Job("n", jobs.noop))
    worker = Worker(
        f"memory://{store}", plugin_manager=pm, clock=clock, allowed_modules=["other.*"]
    )

    worker.process_one()

    status = worker.queue.get_status(job_id)
    assert status["status"] == "failed"
    assert "not allowed" in status["error"]


# -- parent results --------------------------------------------------------------------------


def run_parent_then(queue, worker, child_function, **child_kwargs):
    parent_a = Job("a", jobs.add, params={"a": 1, "b": 2})
    parent_b = Job("b", jobs.echo, params={"k": "v"})
    child = Job("child", child_function, dependencies=[parent_a, parent_b], **child_kwargs)
    queue.submit_many([parent_a, parent_b, child])
    while worker.process_one():
        pass
    status = status_of(queue, child.id)
    assert status["status"] == "completed", status["error"]
    return status["result"], {parent_a.id: 3, parent_b.id: {"k": "v"}}


def test_parent_results_passed_to_a_parameter_named_parent_results(queue, worker):
    result, expected = run_parent_then(queue, worker, jobs.takes_parents)
    assert result == expected


def test_parent_results_passed_to_kwargs(queue, worker):
    result, expected = run_parent_then(queue, worker, jobs.takes_kwargs, params={"x": 1})
    assert result == {"x": 1, "parent_results": expected}


def test_parent_results_not_passed_when_the_function_does_not_take_them(queue, worker):
    result, _ = run_parent_then(queue, worker, jobs.takes_x, params={"x": 7})
    assert result == 7


def test_pass_parent_results_false_withholds_them(queue, worker):
    result, _ = run_parent_then(
        queue, worker, jobs.takes_kwargs, params={"x": 1}, pass_parent_results=False
    )
    assert result == {"x": 1}


def test_pass_parent_results_true_passes_them(queue, worker):
    # takes_parents would get them anyway; True must pass them even to **kwargs-less names.
    result, expected = run_parent_then(queue, worker, jobs.takes_parents, pass_parent_results=True)
    assert result == expected


def test_pass_parent_results_true_to_a_function_without_the_parameter_fails(queue, worker):
    parent = Job("p", jobs.noop)
    child = Job("c", jobs.takes_nothing, dependencies=[parent], pass_parent_results=True)
    queue.submit_many([parent, child])
    while worker.process_one():
        pass

    status = status_of(queue, child.id)
    assert status["status"] in ("failed", "pending")
    assert "parent_results" in status["error"]


def test_job_without_dependencies_gets_no_parent_results(queue, worker):
    job_id = queue.submit(Job("k", jobs.takes_kwargs, params={"x": 1}))
    worker.process_one()
    assert queue.get_result(job_id) == {"x": 1}


# -- dependencies ----------------------------------------------------------------------------


def test_dependent_waits_for_its_dependency(queue, worker):
    parent = Job("p", jobs.noop, delay=60)
    child = Job("c", jobs.noop, dependencies=[parent])
    queue.submit_many([parent, child])

    assert worker.process_one() is False
    assert status_of(queue, child.id)["status"] == "pending"


def test_failed_dependency_cancels_its_dependents(queue, worker, rec):
    parent = Job("p", jobs.fail, max_attempts=1)
    child = Job("c", jobs.noop, dependencies=[parent])
    grandchild = Job("g", jobs.noop, dependencies=[child])
    other = Job("o", jobs.noop)
    queue.submit_many([parent, child, grandchild, other])

    assert worker.process_one() is True

    assert status_of(queue, parent.id)["status"] == "failed"
    for job in (child, grandchild):
        status = status_of(queue, job.id)
        assert status["status"] == "cancelled"
        assert status["executions"] == []
    assert parent.id in status_of(queue, child.id)["error"]
    assert "'p'" in status_of(queue, child.id)["error"]
    assert child.id in status_of(queue, grandchild.id)["error"]
    cancelled = [key for hook, key in rec.calls if hook == "gigq_job_cancelled"]
    assert cancelled == [child.id, grandchild.id]
    assert worker.process_one() is True
    assert status_of(queue, other.id)["status"] == "completed"
    assert worker.process_one() is False


def test_retrying_dependency_does_not_cancel_dependents(queue, worker):
    parent = Job("p", jobs.fail_until, params={"attempts": 1}, retry_delay=0)
    child = Job("c", jobs.noop, dependencies=[parent])
    queue.submit_many([parent, child])

    worker.process_one()
    assert status_of(queue, child.id)["status"] == "pending"
    while worker.process_one():
        pass
    assert status_of(queue, child.id)["status"] == "completed"


def test_submit_with_a_dependency_already_failed_stores_the_job_cancelled(queue, worker):
    parent = queue.submit(Job("p", jobs.fail, max_attempts=1))
    worker.process_one()

    child = queue.submit(Job("c", jobs.noop, dependencies=[parent]))

    status = status_of(queue, child)
    assert status["status"] == "cancelled"
    assert parent in status["error"]


def test_requeue_of_a_cascade_cancelled_job_while_its_dependency_is_broken(queue, worker):
    # A dependency that ended badly for good cancels its dependents (docs/guarantees.md D8);
    # a dependent requeued while that is still so would otherwise wait forever.
    parent = Job("p", jobs.fail, max_attempts=1)
    child = Job("c", jobs.noop, dependencies=[parent])
    queue.submit_many([parent, child])
    worker.process_one()
    assert status_of(queue, child.id)["status"] == "cancelled"

    queue.requeue_job(child.id)

    assert status_of(queue, parent.id)["status"] == "failed"
    assert status_of(queue, child.id)["status"] == "cancelled"


def test_revived_dependent_with_another_broken_dependency_stays_cancelled(queue, worker):
    first = Job("first", jobs.fail, max_attempts=1, priority=2)
    second = Job("second", jobs.fail, max_attempts=1, priority=1)
    child = Job("c", jobs.noop, dependencies=[first, second])
    queue.submit_many([first, second, child])
    worker.process_one()  # first fails and cancels child
    worker.process_one()  # second fails too
    assert status_of(queue, child.id)["status"] == "cancelled"

    queue.requeue_job(first.id)

    assert status_of(queue, second.id)["status"] == "failed"
    assert status_of(queue, child.id)["status"] == "cancelled"


# -- cancellation and timeouts of a running inline job ---------------------------------------


def test_inline_job_sees_cancellation_and_ends_cancelled(queue, worker, store, rec):
    job_id = queue.submit(Job("self", jobs.cancel_self, params={"store": store}, retry_delay=0))

    worker.process_one()

    status = status_of(queue, job_id)
    assert status["status"] == "cancelled"
    assert status["executions"][0]["status"] == "cancelled"
    assert rec.calls == [
        ("gigq_job_submitted", job_id),
        ("gigq_job_started", job_id),
        ("gigq_job_cancelled", job_id),
    ]
    assert worker.process_one() is False


@pytest.mark.timeout(20)
def test_inline_timeout_is_recorded_and_retried(queue, worker, clock, rec):
    key = uuid.uuid4().hex
    jobs.CLOCKS[key] = clock
    try:
        job_id = queue.submit(
            Job(
                "slow",
                jobs.overrun,
                params={"clock": key, "seconds": 11},
                timeout=10,
                max_attempts=2,
                retry_delay=0,
            )
        )
        worker.process_one()
        status = status_of(queue, job_id)
        assert status["status"] == "pending"
        assert status["executions"][0]["status"] == "timeout"
        assert rec.names() == [
            "gigq_job_submitted",
            "gigq_job_started",
            "gigq_job_timed_out",
            "gigq_job_retrying",
        ]
        assert rec.kwargs[2][1]["final"] is False

        worker.process_one()
        status = status_of(queue, job_id)
        assert status["status"] == "timeout"
        assert status["attempts"] == 2
        assert rec.names()[-2:] == ["gigq_job_started", "gigq_job_timed_out"]
        assert rec.kwargs[-1][1]["final"] is True
    finally:
        del jobs.CLOCKS[key]


# -- construction and the loop ---------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [0, -1, True, 1.5])
def test_concurrency_below_one_raises_value_error(pm, clock, store, concurrency):
    with pytest.raises(ValueError, match="concurrency"):
        Worker(f"memory://{store}", concurrency=concurrency, plugin_manager=pm, clock=clock)


def test_concurrency_zero_raises_with_a_queue_too(queue):
    with pytest.raises(ValueError):
        Worker(queue, concurrency=0)


def test_worker_id_default_is_unique(queue):
    assert Worker(queue).worker_id != Worker(queue).worker_id


def test_worker_queues_filter(queue):
    a = queue.submit(Job("a", jobs.noop, queue="a"))
    b = queue.submit(Job("b", jobs.noop, queue="b"))
    only_b = Worker(queue, worker_id="wb", queues="b")

    assert only_b.process_one() is True
    assert only_b.process_one() is False
    assert status_of(queue, a)["status"] == "pending"
    assert status_of(queue, b)["status"] == "completed"


def test_worker_rescues_expired_leases(queue, worker, clock, rec):
    job_id = queue.submit(Job("n", jobs.noop))
    queue.storage.claim("dead-worker", 1, clock.now(), 30)
    clock.advance(31)

    transitions = worker.rescue()

    assert [t.job.id for t in transitions] == [job_id]
    status = status_of(queue, job_id)
    assert status["status"] == "pending"
    assert status["error"] == "worker lost"
    assert status["executions"][0]["status"] == "lost"
    assert rec.calls[-1] == ("gigq_job_failed", job_id)
    assert rec.kwargs[-1][1]["final"] is False
    assert worker.process_one() is True
    assert status_of(queue, job_id)["attempts"] == 2


@pytest.mark.timeout(30)
def test_stop_from_another_thread_makes_start_return(pm, store):
    rec_started = threading.Event()

    class Started:
        from gigq_core import hookimpl

        @hookimpl
        def gigq_worker_started(self, worker_id):
            rec_started.set()

    pm.register(Started(), name="started")
    worker = Worker(
        f"memory://{store}",
        worker_id="looping",
        polling_interval=30,
        plugin_manager=pm,
        clock=SystemClock(),
    )
    job_id = worker.queue.submit(Job("add", jobs.add, params={"a": 1, "b": 1}))
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    assert rec_started.wait(10), "worker did not start"
    assert worker.queue.wait([job_id], timeout=10) == {job_id: "completed"}

    began = time.monotonic()
    worker.stop()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert time.monotonic() - began < 10  # well under the 30 s polling interval
    assert worker.queue.get_result(job_id) == 2
    [info] = worker.queue.workers(since=worker.queue.clock.now() - timedelta(minutes=1))
    assert info.id == "looping"
    assert info.stopped_at is not None


def test_job_status_enum_values():
    assert [s.value for s in JobStatus] == [
        "pending",
        "reserved",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timeout",
    ]
    assert JobStatus.PENDING == "pending"


def test_a_retry_delay_past_the_calendar_does_not_crash_the_worker(queue, worker):
    # The strategy is valid, but now + delay is past datetime.max: reporting the attempt
    # must not raise out of the worker and leave the job running until its lease ends.
    retry = ("exponential", {"base": 1e12, "cap": 1e12})
    job_id = queue.submit(Job("f", jobs.fail, retry=retry))

    assert worker.process_one() is True

    assert status_of(queue, job_id)["status"] != "running"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("executor", ["inline", "process"])
def test_burst_start_returns_once_the_queue_is_drained(pm, executor, tmp_path):
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        ids = queue.submit_many([Job(f"a{i}", jobs.add, {"a": i, "b": 1}) for i in range(5)])
        later = queue.submit(Job("later", jobs.noop, delay=3600))
        worker = Worker(queue, executor=executor, concurrency=2, polling_interval=0.1)
        worker.start(burst=True)
        assert all(queue.get_status(i)["status"] == "completed" for i in ids)
        assert queue.get_status(later)["status"] == "pending"  # scheduled: left for later


# -- group commit of the inline executor under start() ---------------------------------------


@pytest.mark.timeout(30)
def test_inline_start_commits_outcomes_in_groups_and_fires_each_hook_once(pm, store):
    rec = RecordingPlugin()
    pm.register(rec, name="rec")
    worker = Worker(
        f"memory://{store}",
        executor="inline",
        concurrency=4,
        polling_interval=0.1,
        flush_interval=0.5,
        plugin_manager=pm,
        clock=SystemClock(),
    )
    # Jobs that end 10 ms apart: each used to commit its own outcome from its thread.
    ids = worker.queue.submit_many(
        [Job(f"s{i}", jobs.sleep, params={"seconds": 0.01 * (1 + i % 4)}) for i in range(12)]
    )
    commits: list[int] = []
    finish = worker.storage.finish

    def counted(outcomes, now):
        commits.append(len(outcomes))
        return finish(outcomes, now)

    worker.storage.finish = counted  # type: ignore[method-assign]
    try:
        worker.start(burst=True)
    finally:
        worker.close()
    assert all(status_of(worker.queue, i)["status"] == "completed" for i in ids)
    # The loop commits what ended within flush_interval together, none twice, none lost.
    assert sum(commits) == 12 and len(commits) <= 4, commits
    succeeded = [key for name, key in rec.calls if name == "gigq_job_succeeded"]
    assert sorted(succeeded) == sorted(ids)


@pytest.mark.timeout(30)
def test_inline_burst_runs_a_chain_whose_links_the_commits_release(pm, tmp_path):
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        first = queue.submit(Job("a", jobs.add, {"a": 1, "b": 1}))
        second = queue.submit(Job("b", jobs.add, {"a": 2, "b": 2}, dependencies=[first]))
        third = queue.submit(Job("c", jobs.add, {"a": 3, "b": 3}, dependencies=[second]))
        worker = Worker(queue, executor="inline", polling_interval=0.1)
        worker.start(burst=True)
        assert [queue.get_status(i)["status"] for i in (first, second, third)] == ["completed"] * 3


@pytest.mark.timeout(30)
def test_inline_success_hook_fires_once_the_outcome_is_stored(pm, tmp_path):
    path = str(tmp_path / "jobs.db")
    seen: list[str] = []

    class Check:
        @hookimpl
        def gigq_job_succeeded(self, job, result, duration):
            with JobQueue(path) as other:  # another connection: the commit is visible
                seen.append(other.get_status(job.id)["status"])

    pm.register(Check(), name="check")
    with JobQueue(path, plugin_manager=pm) as queue:
        ids = queue.submit_many([Job(f"a{i}", jobs.add, {"a": i, "b": 1}) for i in range(3)])
        Worker(queue, executor="inline", polling_interval=0.1).start(burst=True)
    assert seen == ["completed"] * len(ids)


@pytest.mark.timeout(30)
def test_stopping_past_the_grace_fails_a_job_whose_counted_hand_back_took_its_last_attempt(
    pm, store
):
    rec = RecordingPlugin()
    pm.register(rec, name="rec")
    worker = Worker(
        f"memory://{store}",
        executor="process",  # an inline job is never handed back while its thread runs
        grace=0.1,
        polling_interval=0.1,
        plugin_manager=pm,
        clock=SystemClock(),
    )
    job_id = worker.queue.submit(Job("long", jobs.sleep, {"seconds": 3}, max_attempts=1))
    storage = worker.storage
    for _ in range(3):  # three earlier workers stopped while it ran: free hand-backs
        [held] = storage.claim("earlier", 1, worker.clock.now(), 30.0)
        storage.finish(
            [Outcome(job_id=job_id, token=held.token, status="handed_back")], worker.clock.now()
        )
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while status_of(worker.queue, job_id)["status"] != "running":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.01)
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()

    status = status_of(worker.queue, job_id)
    assert status["status"] == "failed"
    assert "handed back 4 times" in status["error"]
    [failed] = [kwargs for name, kwargs in rec.kwargs if name == "gigq_job_failed"]
    assert failed["final"] is True and failed["error"].type == "HandedBack"


@pytest.mark.timeout(30)
def test_an_inline_job_running_past_the_grace_is_waited_for_not_handed_back(pm, tmp_path):
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        job_id = queue.submit(Job("long", jobs.sleep, {"seconds": 1.5}))
        worker = Worker(queue, executor="inline", grace=0.1, polling_interval=0.1)
        thread = threading.Thread(target=worker.start, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while queue.get_status(job_id)["status"] != "running":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.01)
        worker.stop()
        time.sleep(0.5)  # past the grace period, the job's thread still sleeping
        assert thread.is_alive()
        assert queue.get_status(job_id)["status"] == "running"  # still held, not handed back
        thread.join(timeout=15)
        assert not thread.is_alive()
        status = queue.get_status(job_id)
    assert (status["status"], status["attempts"]) == ("completed", 1)
    assert [e["status"] for e in status["executions"]] == ["completed"]


@pytest.mark.timeout(30)
def test_inline_jobs_ending_in_the_grace_period_are_committed_without_waiting_for_it(pm, tmp_path):
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        short = queue.submit(Job("short", jobs.sleep, {"seconds": 0.3}))
        long = queue.submit(Job("long", jobs.sleep, {"seconds": 3}))
        worker = Worker(queue, executor="inline", concurrency=2, grace=20, polling_interval=0.1)
        thread = threading.Thread(target=worker.start, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not all(queue.get_status(i)["status"] == "running" for i in (short, long)):
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.01)
        worker.stop()
        # The short job ends during the grace period: committed then, not when the long
        # one ends (nor when the grace period would).
        while queue.get_status(short)["status"] != "completed":
            assert time.monotonic() < deadline, "the short job's outcome was held back"
            time.sleep(0.01)
        assert queue.get_status(long)["status"] == "running"
        thread.join(timeout=15)
        assert not thread.is_alive()
        assert queue.get_status(long)["status"] == "completed"
