"""Limits on what a queue stores (gigq_core.limits): oversized names, descriptions and
dependency lists refused at submit, deep params refused, errors cut with a marker, and the
parent results handed to a job capped."""

from __future__ import annotations

import re
import uuid

import pytest

from gigq import JobQueue
from gigq_core import ConfigError, InvalidJobError, Job, SerializationError, Worker, Workflow
from gigq_core.limits import DEFAULTS, clip, clip_error
from gigq_core.records import ErrorInfo
from tests import jobs

#: The 10 MB name the issue found accepted.
HUGE = "n" * 10_000_000


def deep(levels: int) -> list:
    """A list `levels` deep (the innermost list counts)."""
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def refused(queue: JobQueue, job: Job, setting: str) -> str:
    """Submit `job`, which must be refused naming `setting`; nothing may be stored."""
    with pytest.raises((InvalidJobError, SerializationError)) as caught:
        queue.submit(job)
    message = str(caught.value)
    assert setting in message
    assert len(message) < 300, "the message must not echo the oversized value"
    assert "\n" not in message
    assert queue.stats()["total"] == 0
    return message


# -- names, descriptions, dependencies -------------------------------------------------------


def test_the_defaults(queue):
    for key, value in DEFAULTS.items():
        assert getattr(queue.settings, key) == value
    assert DEFAULTS["max_name_length"] == 1_000
    assert DEFAULTS["max_error_length"] == 65_536
    assert DEFAULTS["max_parent_results"] == 16 * 1024 * 1024


def test_a_ten_megabyte_name_is_refused(queue):
    message = refused(queue, Job(HUGE, jobs.noop), "max_name_length")
    assert message == (
        "the job name is 10,000,000 characters long, over the limit of 1,000 "
        "(setting max_name_length)"
    )


def test_a_name_at_the_limit_is_stored(queue):
    job_id = queue.submit(Job("n" * 1_000, jobs.noop, queue="q" * 1_000))
    assert queue.get_job(job_id).name == "n" * 1_000


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("queue name", lambda: Job("j", jobs.noop, queue=HUGE)),
        ("unique key", lambda: Job("j", jobs.noop, unique_key=HUGE)),
        ("id", lambda: Job("j", jobs.noop, id=HUGE)),
        ("dependency id", lambda: Job("j", jobs.noop, dependencies=[HUGE])),
    ],
)
def test_other_names_over_the_limit_are_refused(queue, field, build):
    message = refused(queue, build(), "max_name_length")
    assert field in message
    assert "'j'" in message


def test_a_workflow_name_over_the_limit_is_refused(queue):
    flow = Workflow(HUGE)
    flow.add_job(Job("a", jobs.noop))

    with pytest.raises(InvalidJobError, match=r"workflow name .* max_name_length"):
        flow.submit_all(queue)
    assert queue.stats()["total"] == 0


def test_a_description_over_the_limit_is_refused(queue):
    queue.submit(Job("ok", jobs.noop, description="d" * 10_000))
    with pytest.raises(InvalidJobError, match=r"description .* 10,000 \(setting max_desc"):
        queue.submit(Job("j", jobs.noop, description="d" * 10_001))
    assert queue.stats()["total"] == 1


def test_a_hundred_thousand_dependencies_are_refused(queue):
    ids = [str(uuid.uuid4()) for _ in range(100_000)]

    message = refused(queue, Job("fan-in", jobs.noop, dependencies=ids), "max_dependencies")

    assert message == (
        "job 'fan-in' has 100,000 dependencies, over the limit of 10,000 (setting max_dependencies)"
    )


def test_dependencies_up_to_the_limit_are_stored(pm, clock, store):
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock, max_dependencies=3) as queue:
        parents = [Job(f"p{n}", jobs.noop) for n in range(4)]
        queue.submit_many(parents)
        queue.submit(Job("three", jobs.noop, dependencies=parents[:3]))
        with pytest.raises(InvalidJobError, match="4 dependencies, over the limit of 3"):
            queue.submit(Job("four", jobs.noop, dependencies=parents))
        assert queue.stats()["total"] == 5


def test_one_bad_job_stores_none_of_its_batch(queue):
    with pytest.raises(InvalidJobError):
        queue.submit_many([Job("good", jobs.noop), Job("bad", jobs.noop, queue=HUGE)])
    assert queue.stats()["total"] == 0


def test_the_limits_are_settings(pm, clock, store):
    with JobQueue(
        f"memory://{store}",
        plugin_manager=pm,
        clock=clock,
        max_name_length=20_000_000,
        max_description_length=5,
    ) as queue:
        queue.submit(Job(HUGE, jobs.noop))
        with pytest.raises(InvalidJobError, match="max_description_length"):
            queue.submit(Job("j", jobs.noop, description="sixsix"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_name_length", 0),
        ("max_description_length", -1),
        ("max_error_length", 1.5),
        ("max_dependencies", True),
        ("max_parent_results", "many"),
        ("max_nesting_depth", 501),
    ],
)
def test_a_bad_limit_setting_is_a_config_error(pm, store, key, value):
    with pytest.raises(ConfigError, match=f"setting '{key}'"):
        JobQueue(f"memory://{store}", plugin_manager=pm, **{key: value})


def test_limit_settings_come_from_the_environment(pm, store, monkeypatch):
    monkeypatch.setenv("GIGQ_MAX_NAME_LENGTH", "4")
    with JobQueue(f"memory://{store}", plugin_manager=pm) as queue:
        assert queue.settings.max_name_length == 4
        with pytest.raises(InvalidJobError, match="max_name_length"):
            queue.submit(Job("fives", jobs.noop))


def test_pausing_a_queue_name_over_the_limit_is_refused(queue):
    with pytest.raises(InvalidJobError, match=r"the queue name .* max_name_length"):
        queue.pause_queue(HUGE)
    assert queue.storage.queue_counts() == {}


def test_a_worker_id_over_the_limit_is_refused(queue):
    with pytest.raises(InvalidJobError, match=r"the worker id .* max_name_length"):
        Worker(queue, worker_id=HUGE)


# -- nesting ---------------------------------------------------------------------------------


def test_params_nested_up_to_the_limit_are_stored(queue):
    # The params object is level 1: 99 levels below it make 100.
    job_id = queue.submit(Job("j", jobs.echo, params={"v": deep(99)}))
    assert queue.get_status(job_id)["params"] == {"v": deep(99)}


def test_params_nested_past_the_limit_are_refused(queue):
    message = refused(queue, Job("j", jobs.echo, params={"v": deep(100)}), "max_nesting_depth")
    assert message == (
        "the params of job 'j' are nested too deeply (more than 100 levels; "
        "setting max_nesting_depth)"
    )


def test_fifty_thousand_levels_are_refused_without_recursion(queue):
    refused(queue, Job("j", jobs.echo, params={"v": deep(50_000)}), "max_nesting_depth")


def test_params_that_contain_themselves_are_refused(queue):
    loop: list = []
    loop.extend([loop] * 1_000)  # walked at most once per level, not 1,000 ** levels
    refused(queue, Job("j", jobs.echo, params={"v": loop}), "max_nesting_depth")


def test_a_shared_list_is_measured_on_its_deepest_path(queue):
    shared = deep(50)
    wrapped: list = shared
    for _ in range(50):
        wrapped = [wrapped]
    # The shallow path ("b") is walked first; the deep one must still be measured.
    params = {"a": wrapped, "b": shared}
    refused(queue, Job("j", jobs.echo, params=params), "max_nesting_depth")


def test_the_nesting_limit_can_be_raised_to_500(pm, clock, store):
    with JobQueue(
        f"memory://{store}", plugin_manager=pm, clock=clock, max_nesting_depth=500
    ) as queue:
        job_id = queue.submit(Job("j", jobs.echo, params={"v": deep(200)}))
        assert queue.get_status(job_id)["params"] == {"v": deep(200)}


# -- errors ----------------------------------------------------------------------------------


def test_clip_keeps_short_text():
    assert clip("", 10) == ""
    assert clip("x" * 100, 100) == "x" * 100


def test_clip_keeps_head_and_tail_around_a_marker():
    text = "H" * 1_000 + "m" * 19_876_543 + "T" * 1_000

    cut = clip(text, 65_536)

    assert len(cut) <= 65_536
    head, marker, tail = re.fullmatch(
        r"(H+m*)(\n… \[truncated ([\d,]+) characters\] …\n)(m*T+)", cut, re.S
    ).group(1, 3, 4)
    removed = int(marker.replace(",", ""))
    assert len(head) + removed + len(tail) == len(text)
    assert text.startswith(head) and text.endswith(tail)
    assert len(cut) > 65_536 - 5  # the room is used


def test_clip_under_a_tiny_limit_stays_within_it():
    assert clip("x" * 100, 10) == "x" * 10


def test_clip_error_cuts_each_field():
    error = ErrorInfo(type="ValueError", message="m" * 200, traceback="t" * 50)

    cut = clip_error(error, 100)

    assert cut.type == "ValueError"
    assert len(cut.message) <= 100 and "truncated" in cut.message
    assert cut.traceback == "t" * 50
    assert clip_error(cut, 100) is cut


def test_a_twenty_megabyte_error_is_stored_cut(queue, worker, rec):
    size = 20_000_000
    job_id = queue.submit(Job("big-error", jobs.fail_big, params={"size": size}, retry_delay=0))

    while worker.process_one():
        pass

    status = queue.get_status(job_id)
    assert status["status"] == "failed"
    assert len(status["executions"]) == 3
    for execution in status["executions"]:
        assert len(execution["error"]) <= 65_536 + len("ValueError: ")
        assert "characters] …" in execution["error"]
        assert len(execution["traceback"]) <= 65_536
        assert execution["traceback"].startswith("Traceback (most recent call last):")
        assert execution["traceback"].endswith("x" * 1_000 + "\n")
    assert len(status["error"]) <= 65_536 + len("ValueError: ")
    [failed] = [kw for h, kw in rec.kwargs if h == "gigq_job_failed" and kw["final"]]
    assert len(failed["error"].message) <= 65_536  # hooks see what was stored


def test_the_error_limit_is_a_setting(pm, clock, store):
    with JobQueue(
        f"memory://{store}", plugin_manager=pm, clock=clock, max_error_length=1_000
    ) as queue:
        job_id = queue.submit(Job("e", jobs.fail, params={"message": "y" * 5_000}, max_attempts=1))
        Worker(queue, worker_id="w1").process_one()
        [execution] = queue.get_status(job_id)["executions"]
        assert len(execution["traceback"]) <= 1_000
        assert "[truncated " in execution["error"]


def test_a_cancel_reason_is_cut(queue):
    job_id = queue.submit(Job("c", jobs.noop))
    queue.cancel_many([job_id], reason="r" * 1_000_000)
    error = queue.get_job(job_id).error
    assert error is not None and len(error) <= 65_536 and "[truncated " in error


# -- parent results --------------------------------------------------------------------------


def run_fan_in(queue, worker, parents: int, size: int) -> dict:
    """`parents` jobs returning `size` characters each, then a job taking their results."""
    tops = [Job(f"p{n}", jobs.returns_text, params={"size": size}) for n in range(parents)]
    child = Job("child", jobs.takes_parents, dependencies=tops, retry_delay=0)
    queue.submit_many([*tops, child])
    while worker.process_one():
        pass
    return queue.get_status(child.id)


def test_parent_results_over_the_limit_fail_the_job_at_once(pm, clock, store):
    with JobQueue(
        f"memory://{store}", plugin_manager=pm, clock=clock, max_parent_results=1_000
    ) as queue:
        status = run_fan_in(queue, Worker(queue, worker_id="w1"), parents=3, size=400)

    assert status["status"] == "failed"
    assert status["attempts"] == 1  # permanent: a retry cannot make them smaller
    [execution] = status["executions"]
    assert execution["error_type"] == "PermanentError"
    assert re.search(
        r"the results of the 3 dependencies of job \S+ are 1,206 bytes together, over the "
        r"limit of 1,000 \(setting max_parent_results\)",
        status["error"],
    ), status["error"]


def test_parent_results_at_the_limit_are_passed(pm, clock, store):
    with JobQueue(
        f"memory://{store}", plugin_manager=pm, clock=clock, max_parent_results=1_206
    ) as queue:
        status = run_fan_in(queue, Worker(queue, worker_id="w1"), parents=3, size=400)

    assert status["status"] == "completed", status["error"]
    assert sorted(status["result"].values()) == ["a" * 400] * 3


def test_a_job_that_does_not_take_parent_results_is_not_limited(pm, clock, store):
    with JobQueue(
        f"memory://{store}", plugin_manager=pm, clock=clock, max_parent_results=10
    ) as queue:
        parent = Job("p", jobs.returns_text, params={"size": 100})
        child = Job("c", jobs.takes_x, params={"x": 1}, dependencies=[parent])
        queue.submit_many([parent, child])
        worker = Worker(queue, worker_id="w1")
        while worker.process_one():
            pass
        assert queue.get_status(child.id)["status"] == "completed"
