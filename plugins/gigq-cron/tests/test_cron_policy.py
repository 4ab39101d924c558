"""gigq-cron refuses at add time what could never run: a schedule that never fires, and a
function the queue's function policy refuses (as `gigq submit` does)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import cron_jobs
import pytest
from click.testing import CliRunner
from gigq.plugin import DisallowedFunctionError, InvalidJobError, JobQueue
from gigq_cli import create_cli

from gigq_cron import NAMESPACE, Schedule, add_schedule, list_schedules, run_due


def invoke(pm, *args):
    return CliRunner().invoke(create_cli(pm), list(args))


# -- schedules that never fire -------------------------------------------------------------


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "15 10 31 4,6,9,11 *"])
def test_a_schedule_that_never_fires_is_refused(queue, expression):
    schedule = Schedule(name="never", expression=expression, function=cron_jobs.echo)

    with pytest.raises(InvalidJobError, match="never fires"):
        add_schedule(queue, schedule)

    assert list_schedules(queue) == []


def test_a_leap_day_schedule_is_accepted(queue):
    add_schedule(queue, Schedule(name="leap", expression="0 0 29 2 *", function=cron_jobs.echo))

    assert [s.name for s in list_schedules(queue)] == ["leap"]


def test_cron_add_of_a_schedule_that_never_fires_is_one_sentence(pm, store):
    result = invoke(pm, "--db", store, "cron", "add", "never", "0 0 31 2 *", "cron_jobs:echo")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cron expression '0 0 31 2 *' never fires")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert invoke(pm, "--db", store, "cron", "list").stdout == "No schedules.\n"


def test_a_stored_schedule_that_never_fires_is_listed_and_skipped(pm, store, clock, caplog):
    # Stored by an older version, which did not check.
    never = Schedule(name="never", expression="0 0 31 2 *", function="cron_jobs:echo")
    with JobQueue(store, plugin_manager=pm, clock=clock) as queue:
        queue.storage.kv_set(NAMESPACE, "never", never.to_json())
        add_schedule(
            queue, Schedule(name="every", expression="* * * * *", function="cron_jobs:echo")
        )
        with caplog.at_level(logging.WARNING, logger="gigq.cron"):
            ran = run_due(queue, clock.now() + timedelta(minutes=1))
    assert len(ran) == 1
    assert "cron schedule 'never' is skipped" in caplog.text

    listed = invoke(pm, "--db", store, "--json", "cron", "list")
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["never"]["next_run"] is None
    assert rows["every"]["next_run"] is not None

    table = invoke(pm, "--db", store, "cron", "list")
    assert table.exit_code == 0, table.output
    assert "never fires" in table.stdout
    assert "Traceback" not in table.output


# -- the function policy -------------------------------------------------------------------


@pytest.mark.parametrize("function", ["os:system", "subprocess:run", "builtins:eval"])
def test_cron_add_refuses_a_function_the_policy_refuses(pm, store, function):
    result = invoke(pm, "--db", store, "cron", "add", "sys", "* * * * *", function)

    assert result.exit_code == 78  # as `gigq submit` of the same function
    assert result.stderr.startswith(f"Error: function '{function}' is not allowed")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert invoke(pm, "--db", store, "cron", "list").stdout == "No schedules.\n"


def test_cron_add_obeys_the_queues_allowed_modules(pm, store, monkeypatch):
    monkeypatch.setenv("GIGQ_ALLOWED_MODULES", "myapp.*")

    result = invoke(pm, "--db", store, "cron", "add", "e", "* * * * *", "cron_jobs:echo")

    assert result.exit_code == 78
    assert "outside allowed_modules" in result.stderr
    assert invoke(pm, "--db", store, "cron", "list").stdout == "No schedules.\n"

    monkeypatch.setenv("GIGQ_ALLOWED_MODULES", "cron_jobs")
    allowed = invoke(pm, "--db", store, "cron", "add", "e", "* * * * *", "cron_jobs:echo")
    assert allowed.exit_code == 0, allowed.output


def test_add_schedule_applies_the_queues_policy(pm, clock, store):
    with JobQueue(store, plugin_manager=pm, clock=clock, allowed_modules=["myapp.*"]) as queue:
        with pytest.raises(DisallowedFunctionError, match="outside allowed_modules"):
            add_schedule(queue, Schedule(name="e", expression="* * * * *", function=cron_jobs.echo))
        with pytest.raises(DisallowedFunctionError, match="not allowed"):
            add_schedule(queue, Schedule(name="s", expression="* * * * *", function="os:system"))

        assert list_schedules(queue) == []
