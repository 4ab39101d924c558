"""gigq-cron: due runs, exactly once across workers, missed windows, the commands."""

from __future__ import annotations

import json
import logging
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cron_jobs
import pytest
from click.testing import CliRunner
from gigq import JobQueue, Worker
from gigq.plugin import InvalidJobError, hookimpl
from gigq_cli import create_cli

import gigq_cron
from gigq_cron import (
    NAMESPACE,
    STATE_NAMESPACE,
    Schedule,
    ScheduleExistsError,
    ScheduleNotFoundError,
    add_schedule,
    list_schedules,
    remove_schedule,
    run_due,
)

HERE = Path(__file__).resolve().parent
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """T0 plus `minutes`."""
    return T0 + timedelta(minutes=minutes)


def every_5(**changes) -> Schedule:
    """A schedule every five minutes, with `changes`."""
    fields = {"name": "five", "expression": "*/5 * * * *", "function": cron_jobs.echo}
    fields["params"] = {"n": 5}
    fields.update(changes)
    return Schedule(**fields)


def keys(queue: JobQueue) -> list[str]:
    """The unique keys of the queue's jobs, oldest first."""
    return [j["unique_key"] for j in queue.list_jobs(order="oldest", limit=1000)]


def test_entry_point_names_the_module():
    with (HERE.parent / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]

    assert project["name"] == "gigq-cron"
    assert project["entry-points"]["gigq"] == {"cron": "gigq_cron"}
    assert "gigq" in project["dependencies"]


def test_every_hook_of_the_plugin_exists(pm):
    pm.check_pending()


# -- due runs ------------------------------------------------------------------------------


def test_a_schedule_first_runs_at_the_first_tick_after_it_was_added(queue):
    add_schedule(queue, every_5())  # at 00:00:30

    assert run_due(queue, at(0.5)) == []
    assert run_due(queue, at(4.99)) == []
    (job_id,) = run_due(queue, at(5))

    status = queue.get_status(job_id)
    assert status["unique_key"] == "cron:five:2030-01-01T00:05:00+00:00"
    assert status["unique_scope"] == "success"
    assert status["name"] == "five"
    assert status["function"] == "cron_jobs:echo"
    assert status["params"] == {"n": 5}
    assert status["queue"] == "default"
    assert status["status"] == "pending"
    assert run_due(queue, at(5.5)) == []
    assert queue.stats()["total"] == 1


def test_each_tick_runs_once_however_often_it_is_checked(queue):
    add_schedule(queue, every_5())

    for second in range(30, 16 * 60):  # a check every second, as workers tick
        run_due(queue, T0 + timedelta(seconds=second))

    assert keys(queue) == [
        "cron:five:2030-01-01T00:05:00+00:00",
        "cron:five:2030-01-01T00:10:00+00:00",
        "cron:five:2030-01-01T00:15:00+00:00",
    ]


def test_a_restart_after_missed_ticks_runs_once_for_the_window(queue):
    add_schedule(queue, every_5())
    run_due(queue, at(5))

    # No worker ran from 00:05 to 00:27: the ticks 00:10 .. 00:25 were missed.
    ran = run_due(queue, at(27.2))
    assert len(ran) == 1
    assert run_due(queue, at(27.7)) == []
    run_due(queue, at(30))

    assert keys(queue) == [
        "cron:five:2030-01-01T00:05:00+00:00",
        "cron:five:2030-01-01T00:25:00+00:00",
        "cron:five:2030-01-01T00:30:00+00:00",
    ]


def test_the_run_calls_the_function_with_its_params(queue):
    add_schedule(queue, every_5(queue="periodic", priority=7, max_attempts=1, timeout=9))
    (job_id,) = run_due(queue, at(5))

    assert Worker(queue, worker_id="w1").process_one()

    status = queue.get_status(job_id)
    assert status["result"] == {"n": 5}
    assert (status["queue"], status["priority"], status["max_attempts"], status["timeout"]) == (
        "periodic",
        7,
        1,
        9,
    )


def test_a_completed_run_is_not_run_again_for_its_tick(queue):
    add_schedule(queue, every_5())
    (job_id,) = run_due(queue, at(5))
    Worker(queue, worker_id="w1").process_one()
    # A worker that never saw the record of the last tick still cannot add the run again.
    queue.storage.kv_set(STATE_NAMESPACE, "five", None)

    assert run_due(queue, at(5.5)) == [job_id]
    assert queue.stats()["total"] == 1


def test_a_failed_run_does_not_stop_the_next_tick(queue):
    add_schedule(
        queue, Schedule(name="f", expression="* * * * *", function=cron_jobs.echo, params={"x": 1})
    )
    (first,) = run_due(queue, at(1))
    queue.cancel(first)

    (second,) = run_due(queue, at(2))

    assert second != first
    assert queue.get_status(second)["status"] == "pending"


def test_time_zone_and_aliases(queue):
    add_schedule(
        queue,
        Schedule(
            name="paris", expression="0 9 * * *", function="cron_jobs:echo", timezone="Europe/Paris"
        ),
    )
    add_schedule(queue, Schedule(name="hourly", expression="@hourly", function="cron_jobs.echo"))

    assert run_due(queue, at(59)) == []
    assert len(run_due(queue, at(60))) == 1  # 01:00 UTC
    assert len(run_due(queue, at(8 * 60))) == 2  # 08:00 UTC is 09:00 in Paris in winter

    assert "cron:paris:2030-01-01T08:00:00+00:00" in keys(queue)


def test_a_removed_schedule_stops_running(queue):
    add_schedule(queue, every_5())
    run_due(queue, at(5))

    remove_schedule(queue, "five")

    assert run_due(queue, at(10)) == []
    assert list_schedules(queue) == []
    assert queue.storage.kv_items(STATE_NAMESPACE) == {}
    with pytest.raises(ScheduleNotFoundError, match="no schedule named 'five'"):
        remove_schedule(queue, "five")


def test_a_name_is_added_once_unless_replaced(queue, clock):
    add_schedule(queue, every_5())
    with pytest.raises(ScheduleExistsError, match="--replace"):
        add_schedule(queue, every_5())

    clock.advance(6 * 60)  # 00:06:30
    replaced = add_schedule(queue, every_5(params={"n": 6}), replace_existing=True)

    assert replaced.created_at == at(6.5)
    assert run_due(queue, at(6.6)) == []  # 00:05 came before the replacement
    (job_id,) = run_due(queue, at(10))
    assert queue.get_status(job_id)["params"] == {"n": 6}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"expression": "*/5 * * *"}, "five fields"),
        ({"expression": "* * * * * 30"}, "five fields"),
        ({"expression": "61 * * * *"}, "is not valid"),
        ({"expression": "@sometimes"}, "is not valid"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"name": "a:b"}, "schedule name"),
        ({"name": ""}, "schedule name"),
        ({"function": "not a path"}, "function path"),
        ({"params": {"when": datetime.now()}}, "JSON-serializable"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_schedules_are_refused(queue, changes, fragment):
    fields = {"name": "s", "expression": "* * * * *", "function": "cron_jobs:echo"}
    fields.update(changes)

    with pytest.raises(InvalidJobError, match=fragment):
        add_schedule(queue, Schedule(**fields))
    assert list_schedules(queue) == []


def test_an_unreadable_stored_schedule_is_skipped_and_the_others_run(queue, caplog):
    queue.storage.kv_set(NAMESPACE, "broken", "{not json")
    add_schedule(queue, every_5())

    with caplog.at_level(logging.WARNING, logger="gigq.cron"):
        ran = run_due(queue, at(5))

    assert len(ran) == 1
    assert "cron schedule 'broken' cannot be read" in caplog.text


def test_a_run_the_queue_refuses_is_logged_once_per_tick(pm, clock, store, caplog):
    # Added where the policy allowed it; the worker's queue has a stricter allow-list.
    with JobQueue(store, plugin_manager=pm, clock=clock) as queue:
        add_schedule(queue, every_5())
    strict = JobQueue(store, plugin_manager=pm, clock=clock, allowed_modules=["myapp.*"])
    with strict as queue, caplog.at_level(logging.ERROR, logger="gigq.cron"):
        assert run_due(queue, at(5)) == []
        assert run_due(queue, at(5.5)) == []

    assert caplog.text.count("cannot be submitted") == 1
    assert "allowed_modules" in caplog.text


# -- exactly once across workers -----------------------------------------------------------


def _race(queues: list[JobQueue], now: datetime) -> list[list[str]]:
    barrier = threading.Barrier(len(queues))
    results: list[list[str]] = [[] for _ in queues]
    errors: list[BaseException] = []

    def tick(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = run_due(queues[index], now)
        except BaseException as err:  # reported by the test below
            errors.append(err)

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(len(queues))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_workers_ticking_at_once_store_one_run_per_tick(pm, clock, store, tmp_path, backend):
    target = store if backend == "memory" else str(tmp_path / "jobs.db")
    queues = [JobQueue(target, plugin_manager=pm, clock=clock) for _ in range(4)]
    try:
        add_schedule(queues[0], every_5())
        for minute in (5, 10, 15, 20):
            results = _race(queues, at(minute))
            # Every worker that submitted got the one job's id back.
            assert len({job_id for ids in results for job_id in ids}) == 1
        assert queues[1].stats()["total"] == 4
        assert len(set(keys(queues[2]))) == 4
    finally:
        for opened in queues:
            opened.close()


@pytest.mark.timeout(60)
def test_the_worker_loop_enqueues_through_the_tick_hook(pm, clock, store):
    ticks: list[tuple[str, datetime, object]] = []

    class Ticks:
        @hookimpl
        def gigq_worker_tick(self, worker_id, now, queue):
            ticks.append((worker_id, now, queue))

    pm.register(Ticks(), name="ticks")
    worker = Worker(
        store,
        worker_id="w-cron",
        executor="inline",
        polling_interval=0.05,
        plugin_manager=pm,
        clock=clock,
    )
    add_schedule(
        worker.queue, Schedule(name="m", expression="* * * * *", function="cron_jobs:echo")
    )
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not ticks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ticks, "the worker never ticked"
        assert ticks[0][0] == "w-cron"
        assert ticks[0][2] is worker.queue

        clock.advance(60)  # 00:01:30: the 00:01 run is due on the next tick
        done: list[dict] = []
        while not done and time.monotonic() < deadline:
            done = worker.queue.list_jobs(status="completed")
            time.sleep(0.02)
        assert [j["unique_key"] for j in done] == ["cron:m:2030-01-01T00:01:00+00:00"]
    finally:
        worker.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()


# -- the commands --------------------------------------------------------------------------


def invoke(pm, *args):
    return CliRunner().invoke(create_cli(pm), list(args))


def test_cron_add_list_remove(pm, store):
    added = invoke(
        pm, "--db", store, "cron", "add", "nightly", "0 3 * * *", "cron_jobs:echo",
        "-p", "n=3", "-p", "who=ops", "--queue", "batch",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("Schedule added: nightly (next run ")
    assert "T03:00:00+00:00" in added.stdout

    listed = invoke(pm, "--db", store, "cron", "list")
    assert listed.exit_code == 0, listed.output
    assert "nightly" in listed.stdout
    assert "0 3 * * *" in listed.stdout
    assert "cron_jobs:echo" in listed.stdout

    as_json = json.loads(invoke(pm, "--db", store, "--json", "cron", "list").stdout)
    assert len(as_json) == 1
    row = as_json[0]
    assert row["name"] == "nightly"
    assert row["params"] == {"n": 3, "who": "ops"}
    assert row["queue"] == "batch"
    assert row["last_run"] is None
    assert row["next_run"].endswith("T03:00:00+00:00")

    removed = invoke(pm, "--db", store, "cron", "remove", "nightly")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == "Schedule removed: nightly\n"
    assert invoke(pm, "--db", store, "cron", "list").stdout == "No schedules.\n"


def test_cron_add_with_params_json_and_a_time_zone(pm, store):
    result = invoke(
        pm, "--db", store, "--json", "cron", "add", "p", "30 8 * * 1-5", "cron_jobs.echo",
        "--params-json", '{"a": [1, 2]}', "--tz", "America/New_York",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "p"

    (row,) = json.loads(invoke(pm, "--db", store, "--json", "cron", "list").stdout)
    assert row["params"] == {"a": [1, 2]}
    assert row["timezone"] == "America/New_York"
    assert row["function"] == "cron_jobs:echo"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["x", "every minute", "cron_jobs:echo"], "is not valid"),
        (["x", "* * * * *", "cron_jobs:nothing_here"], "cannot import function"),
        (["x", "* * * * *", "no_such_module:f"], "cannot import function"),
        (["x", "* * * * *", "cron_jobs:echo", "--tz", "Nowhere/Land"], "unknown time zone"),
    ],
)
def test_cron_add_refuses_bad_input_with_one_sentence(pm, store, args, fragment):
    result = invoke(pm, "--db", store, "cron", "add", *args)

    assert result.exit_code == 1
    assert fragment in result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output


def test_cron_add_of_an_existing_name_needs_replace(pm, store):
    args = ["--db", store, "cron", "add", "x", "* * * * *", "cron_jobs:echo"]
    assert invoke(pm, *args).exit_code == 0

    again = invoke(pm, *args)
    assert again.exit_code == 1
    assert "--replace" in again.stderr

    assert invoke(pm, *args, "--replace").exit_code == 0


def test_cron_add_bad_param_is_a_usage_error(pm, store):
    result = invoke(pm, "--db", store, "cron", "add", "x", "* * * * *", "cron_jobs:echo", "-p", "k")

    assert result.exit_code == 2
    assert "key=value" in result.stderr


def test_cron_remove_of_an_unknown_name_is_a_user_error(pm, store):
    result = invoke(pm, "--db", store, "cron", "remove", "ghost")

    assert result.exit_code == 1
    assert "no schedule named 'ghost'" in result.stderr


def test_cron_list_never_creates_a_database(pm, tmp_path):
    missing = tmp_path / "missing.db"

    result = invoke(pm, "--db", str(missing), "cron", "list")

    assert result.exit_code == 1
    assert not missing.exists()


def test_cron_on_a_sqlite_file_is_seen_by_a_worker(pm, clock, tmp_path):
    db = str(tmp_path / "jobs.db")
    added = invoke(pm, "--db", db, "cron", "add", "m", "* * * * *", "cron_jobs:echo", "--create")
    assert added.exit_code == 0

    with JobQueue(db, plugin_manager=pm, clock=clock) as queue:
        (schedule,) = list_schedules(queue)
        now = schedule.created_at + timedelta(minutes=1)
        (job_id,) = run_due(queue, now)
        assert queue.get_status(job_id)["name"] == "m"

    (row,) = json.loads(invoke(pm, "--db", db, "--json", "cron", "list").stdout)
    assert row["last_run"] is not None


def test_module_exports():
    assert gigq_cron.unique_key("n", T0) == "cron:n:2030-01-01T00:00:00+00:00"
    assert isinstance(gigq_cron.__version__, str)
