"""gigq-cron checks a schedule's future run as `gigq submit` checks a job: the queue's limits
(name lengths, params nesting and size) apply when the schedule is added, not at every tick."""

from __future__ import annotations

import json

import cron_jobs
import pytest
from click.testing import CliRunner
from gigq.plugin import InvalidJobError, JobQueue, SerializationError
from gigq_cli import create_cli

from gigq_cron import Schedule, add_schedule, list_schedules, run_due

#: JSON nested far deeper than Python's recursion limit.
DEEP_JSON = "[" * 50_000 + "]" * 50_000


def invoke(pm, *args):
    return CliRunner().invoke(create_cli(pm), list(args))


def nested(levels: int) -> list:
    """Lists nested `levels` deep, built without recursion."""
    outer: list = []
    inner = outer
    for _ in range(levels - 1):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--params-json", '{"a": ' + DEEP_JSON + "}"], "nested too deeply"),
        (["-p", "a=" + DEEP_JSON], "nested too deeply"),
        (["--params-json", json.dumps({"a": nested(200)})], "max_nesting_depth"),
        (["-p", "a=" + json.dumps(nested(200))], "max_nesting_depth"),
        (["--queue", "q" * 3000], "max_name_length"),
        (["-p", "a=" + "x" * (2 * 1024 * 1024)], "max_payload"),
    ],
    ids=["params-json-50000", "param-50000", "params-json-201", "param-201", "queue", "size"],
)
def test_cron_add_refuses_what_submit_refuses_with_its_exit_code(pm, store, args, fragment):
    submitted = invoke(pm, "--db", store, "submit", "cron_jobs:echo", *args)
    added = invoke(pm, "--db", store, "cron", "add", "deep", "* * * * *", "cron_jobs:echo", *args)

    assert submitted.exit_code == 1, submitted.output
    assert added.exit_code == submitted.exit_code, added.output
    assert added.stderr.startswith("Error: ")
    assert added.stderr.count("\n") == 1
    assert fragment in added.stderr
    assert "Traceback" not in added.output
    assert invoke(pm, "--db", store, "cron", "list").stdout == "No schedules.\n"


def test_params_nested_past_the_limit_are_refused(queue):
    schedule = Schedule(
        name="deep", expression="* * * * *", function=cron_jobs.echo, params={"a": nested(200)}
    )

    with pytest.raises(SerializationError, match="max_nesting_depth"):
        add_schedule(queue, schedule)
    assert list_schedules(queue) == []


def test_params_nested_past_the_recursion_limit_are_refused(queue):
    schedule = Schedule(
        name="deep", expression="* * * * *", function=cron_jobs.echo, params={"a": nested(50_000)}
    )

    with pytest.raises((InvalidJobError, SerializationError), match="nested too deeply"):
        add_schedule(queue, schedule)
    assert list_schedules(queue) == []


def test_a_queue_name_past_the_limit_is_refused(queue):
    schedule = Schedule(
        name="long", expression="* * * * *", function=cron_jobs.echo, queue="q" * 3000
    )

    with pytest.raises(InvalidJobError, match="max_name_length"):
        add_schedule(queue, schedule)
    assert list_schedules(queue) == []


def test_the_limits_are_the_queue_s_own_settings(pm, clock, store):
    schedule = Schedule(
        name="deep", expression="* * * * *", function=cron_jobs.echo, params={"a": nested(200)}
    )
    with JobQueue(store, plugin_manager=pm, clock=clock, max_nesting_depth=300) as queue:
        add_schedule(queue, schedule)
        clock.advance(60)

        assert len(run_due(queue)) == 1
