"""`Job` validation at construction, and the `@task` decorator."""

from __future__ import annotations

import math
import os
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gigq_core import InvalidJobError, Job
from gigq_core.jobs import function_path

# From the defining module: see test_public_api.py for `from gigq_core import task`.
from gigq_core.tasks import TaskWrapper, task
from tests import jobs


def refused(match: str, *args, **kwargs) -> InvalidJobError:
    with pytest.raises(InvalidJobError, match=match) as info:
        Job(*args, **kwargs)
    return info.value


# -- the function --------------------------------------------------------------------------


def test_module_level_function_is_stored_by_qualified_name():
    job = Job("add", jobs.add, params={"a": 1, "b": 2})

    assert job.function_path == "tests.jobs:add"
    assert job.function is jobs.add
    assert job.params == {"a": 1, "b": 2}


@pytest.mark.parametrize("path", ["tests.jobs:add", "tests.jobs.add", "  tests.jobs:add  "])
def test_import_path_string_forms(path):
    assert Job("add", path).function_path == "tests.jobs:add"


def test_lambda_is_refused_saying_why():
    err = refused("lambda", "l", lambda: 1)
    assert "module-level" in str(err)


def test_nested_function_is_refused_saying_why():
    refused("inside another function", "n", jobs.make_nested())


def test_bound_method_is_refused_saying_why():
    refused("bound method", "m", jobs.Holder().method)


@pytest.mark.parametrize("function", [jobs.Holder.method, jobs.Holder.static])
def test_class_function_is_refused_as_a_method(function):
    refused("is a method", "m", function)


@pytest.mark.parametrize(
    "path",
    ["nonsense", "os", "tests.jobs:", ":add", "bad module:f", "tests..jobs:add", "tests.jobs:1x"],
)
def test_bad_import_path_string_is_refused(path):
    err = refused("function path", "bad", path)
    assert repr(path.strip()) in str(err)


@pytest.mark.parametrize("function", [42, None, ["tests.jobs:add"]])
def test_function_that_is_neither_callable_nor_path_is_refused(function):
    refused("function", "bad", function)


# -- numbers and types -----------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, 0.0, -0.5, timedelta(0), timedelta(seconds=-3)])
def test_zero_or_negative_timeout_is_refused(timeout):
    err = refused("timeout", "t", jobs.noop, timeout=timeout)
    assert "positive" in str(err)


@pytest.mark.parametrize(
    ("timeout", "stored"), [(None, None), (1, 1.0), (0.25, 0.25), (timedelta(minutes=2), 120.0)]
)
def test_timeout_forms(timeout, stored):
    assert Job("t", jobs.noop, timeout=timeout).timeout == stored


def test_default_timeout_is_300_seconds():
    assert Job("t", jobs.noop).timeout == 300


@pytest.mark.parametrize("timeout", ["10", True])
def test_timeout_of_the_wrong_type_is_refused(timeout):
    refused("timeout", "t", jobs.noop, timeout=timeout)


@pytest.mark.parametrize("max_attempts", [0, -1, 1.5, "3", True, None])
def test_max_attempts_below_one_or_not_an_integer_is_refused(max_attempts):
    refused("max_attempts", "m", jobs.noop, max_attempts=max_attempts)


def test_max_attempts_of_one_is_allowed():
    assert Job("m", jobs.noop, max_attempts=1).max_attempts == 1


@pytest.mark.parametrize("priority", ["high", 1.5, True, None])
def test_priority_must_be_an_integer(priority):
    refused("priority", "p", jobs.noop, priority=priority)


def test_negative_priority_is_allowed():
    assert Job("p", jobs.noop, priority=-5).priority == -5


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_name_must_be_a_non_empty_string(name):
    refused("name", name, jobs.noop)


def test_params_must_be_a_dict():
    refused("params", "p", jobs.noop, params=[1, 2])


@pytest.mark.parametrize("queue", ["", " ", None])
def test_queue_must_be_a_non_empty_string(queue):
    refused("queue", "q", jobs.noop, queue=queue)


def test_dependencies_take_jobs_or_ids():
    parent = Job("p", jobs.noop)
    child = Job("c", jobs.noop, dependencies=[parent, "some-id"])

    assert child.dependencies == [parent.id, "some-id"]


@pytest.mark.parametrize("dep", ["", 3, None])
def test_bad_dependency_is_refused(dep):
    refused("dependency", "c", jobs.noop, dependencies=[dep])


def test_id_is_a_uuid_from_construction():
    a, b = Job("a", jobs.noop), Job("b", jobs.noop)

    assert uuid.UUID(a.id)
    assert a.id != b.id


# -- when ------------------------------------------------------------------------------------


def test_delay_and_run_at_together_are_refused():
    refused("delay or run_at", "d", jobs.noop, delay=5, run_at=datetime.now(UTC))


@pytest.mark.parametrize("delay", [-1, timedelta(seconds=-1)])
def test_negative_delay_is_refused(delay):
    refused("delay", "d", jobs.noop, delay=delay)


@pytest.mark.parametrize("delay", ["5", True])
def test_delay_of_the_wrong_type_is_refused(delay):
    refused("delay", "d", jobs.noop, delay=delay)


def test_run_at_must_be_a_datetime():
    refused("run_at", "r", jobs.noop, run_at="2030-01-01")


@pytest.mark.parametrize("delay", [30, 30.0, timedelta(seconds=30)])
def test_delay_forms_give_due_time(delay):
    now = datetime(2030, 1, 1, tzinfo=UTC)

    assert Job("d", jobs.noop, delay=delay).due_at(now) == now + timedelta(seconds=30)


def test_no_delay_is_due_at_submit():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert Job("d", jobs.noop).due_at(now) == now


def test_aware_run_at_is_kept_as_the_same_instant():
    plus_two = timezone(timedelta(hours=2))
    run_at = datetime(2030, 6, 1, 12, 0, tzinfo=plus_two)

    due = Job("r", jobs.noop, run_at=run_at).due_at(datetime(2030, 1, 1, tzinfo=UTC))

    assert due == datetime(2030, 6, 1, 10, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)


def test_naive_run_at_is_taken_as_local_time():
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT-5"  # POSIX sign: UTC+5
    time.tzset()
    try:
        due = Job("r", jobs.noop, run_at=datetime(2030, 6, 1, 12, 0)).due_at(
            datetime(2030, 1, 1, tzinfo=UTC)
        )
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()

    assert due == datetime(2030, 6, 1, 7, 0, tzinfo=UTC)


# -- retry -----------------------------------------------------------------------------------


def test_retry_delay_and_retry_together_are_refused():
    refused("retry_delay or retry", "r", jobs.noop, retry_delay=1, retry="fixed")


@pytest.mark.parametrize("retry_delay", [-1, timedelta(seconds=-1)])
def test_negative_retry_delay_is_refused(retry_delay):
    refused("retry_delay", "r", jobs.noop, retry_delay=retry_delay)


@pytest.mark.parametrize("retry_delay", ["5", True])
def test_retry_delay_of_the_wrong_type_is_refused(retry_delay):
    refused("retry_delay", "r", jobs.noop, retry_delay=retry_delay)


@pytest.mark.parametrize(
    "retry", [3, ("exponential",), ("exponential", {"base": 2}, 1), (1, {}), ("fixed", "x")]
)
def test_malformed_retry_is_refused(retry):
    refused("retry must be", "r", jobs.noop, retry=retry)


@pytest.mark.parametrize(
    "retry",
    [
        "fixed",
        "exponential",
        ("exponential", {"base": 2, "cap": 600}),
        ["linear", {"base": 5}],
        ("fixed", {"delay": 0, "dont_retry_on": ["ValueError"]}),
    ],
)
def test_retry_forms_are_accepted(retry):
    assert Job("r", jobs.noop, retry=retry).retry == retry


@pytest.mark.parametrize("retry_delay", [0, 5, 2.5, timedelta(seconds=5)])
def test_retry_delay_forms_are_accepted(retry_delay):
    assert Job("r", jobs.noop, retry_delay=retry_delay).retry_delay == retry_delay


# -- unique keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["active", "success"])
def test_unique_scope_values(scope):
    job = Job("u", jobs.noop, unique_key="k", unique_scope=scope)
    assert (job.unique_key, job.unique_scope) == ("k", scope)


@pytest.mark.parametrize("scope", ["always", "", None, "ACTIVE"])
def test_unknown_unique_scope_is_refused(scope):
    refused("unique_scope", "u", jobs.noop, unique_key="k", unique_scope=scope)


@pytest.mark.parametrize("key", ["", 3])
def test_bad_unique_key_is_refused(key):
    refused("unique_key", "u", jobs.noop, unique_key=key)


def test_job_is_a_mutable_builder_that_may_be_subclassed():
    class MyJob(Job):
        pass

    job = MyJob("m", jobs.noop)
    job.priority = 7

    assert job.priority == 7
    assert "tests.jobs:noop" in repr(job)


# -- @task -----------------------------------------------------------------------------------


def test_task_is_still_callable():
    assert jobs.task_add(2, 3) == 5
    assert jobs.task_with_options(4) == 8


def test_task_repr_names_task_wrapper():
    assert isinstance(jobs.task_add, TaskWrapper)
    assert "TaskWrapper" in repr(jobs.task_add)
    assert "tests.jobs:task_add" in repr(jobs.task_add)


def test_task_keeps_the_function_name_and_doc():
    assert jobs.task_add.__name__ == "task_add"
    assert jobs.task_add.__doc__ == "A task with default options."


def test_task_to_job_with_defaults():
    job = jobs.task_add.to_job(a=1, b=2)

    assert isinstance(job, Job)
    assert job.name == "task_add"
    assert job.function_path == "tests.jobs:task_add"
    assert job.params == {"a": 1, "b": 2}
    assert (job.priority, job.max_attempts, job.timeout) == (0, 3, 300)


def test_task_to_job_with_options():
    job = jobs.task_with_options.to_job(x=4)

    assert job.name == "custom-name"
    assert job.priority == 5
    assert job.max_attempts == 2
    assert job.timeout == 10
    assert job.retry_delay == 3
    assert job.queue == "q1"
    assert job.params == {"x": 4}
    assert jobs.task_with_options.options["priority"] == 5


def test_each_to_job_is_a_new_job():
    assert jobs.task_add.to_job(a=1, b=2).id != jobs.task_add.to_job(a=1, b=2).id


def test_task_refuses_a_lambda():
    with pytest.raises(InvalidJobError, match="lambda"):
        task(lambda: 1)


def test_task_refuses_a_nested_function():
    with pytest.raises(InvalidJobError, match="inside another function"):
        task(name="n")(jobs.make_nested())


def test_task_with_a_bad_option_fails_when_turned_into_a_job():
    wrapper = task(max_attempts=0)(jobs.add)

    with pytest.raises(InvalidJobError, match="max_attempts"):
        wrapper.to_job(a=1, b=2)


def test_job_accepts_a_task_as_its_function():
    assert function_path(jobs.task_add) == "tests.jobs:task_add"
    assert Job("t", jobs.task_add).function_path == "tests.jobs:task_add"


# -- non-finite and out-of-range numbers -----------------------------------------------------


@pytest.mark.parametrize("timeout", [math.nan])
def test_nan_timeout_is_refused(timeout):
    refused("timeout", "t", jobs.noop, timeout=timeout)


@pytest.mark.parametrize("retry_delay", [math.nan, math.inf])
def test_non_finite_retry_delay_is_refused(retry_delay):
    refused("retry_delay", "r", jobs.noop, retry_delay=retry_delay)


@pytest.mark.parametrize("delay", [math.nan, math.inf, 1e12])
def test_non_finite_or_out_of_range_delay_is_refused_with_an_invalid_job_error(queue, delay):
    # Refused at construction or at submit, but as an InvalidJobError naming the field, not
    # a ValueError/OverflowError from datetime arithmetic.
    with pytest.raises(InvalidJobError, match="delay"):
        queue.submit(Job("d", jobs.noop, delay=delay))
    assert queue.stats()["total"] == 0


def test_new_job_ids_are_random_uuid4():
    ids = [Job("n", jobs.noop).id for _ in range(200)]

    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids
    # Random from the first character: short prefixes of jobs submitted together differ.
    assert len({i[:4] for i in ids}) > 150


@pytest.mark.parametrize("max_attempts", [0, 2**63, True, 1.5])
def test_max_attempts_must_fit_a_stored_integer(max_attempts):
    with pytest.raises(InvalidJobError, match="max_attempts"):
        Job("f", jobs.noop, max_attempts=max_attempts)


def test_one_dependency_may_be_given_without_a_list():
    parent = Job("p", jobs.noop)
    assert Job("c", jobs.noop, dependencies=parent.id).dependencies == [parent.id]
    assert Job("c", jobs.noop, dependencies=parent).dependencies == [parent.id]
