"""`gigq list` and `gigq status`, short ids, and reading without creating a database."""

from __future__ import annotations

import json
import os

import pluggy
import pytest

from gigq_core import Job, JobQueue

from .conftest import Run
from .helpers import assert_user_error, run_one, submit

HEADERS = ["id", "name", "status", "priority", "attempts", "created", "updated"]


def test_list_prints_a_table_newest_first(gigq: Run, queue: JobQueue) -> None:
    first = submit(queue, name="first")
    second = submit(queue, "tests.jobs:noop", name="second", priority=4)
    result = gigq("list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == HEADERS
    assert lines[2].split()[:5] == [second, "second", "pending", "4", "0/3"]
    assert lines[3].split()[:5] == [first, "first", "pending", "0", "0/3"]
    assert "just now" in lines[2] or "s ago" in lines[2]


def test_list_json_is_an_array_with_iso_times(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    result = gigq("list", "--json")
    assert result.exit_code == 0
    jobs = json.loads(result.stdout)
    assert [j["id"] for j in jobs] == [job_id]
    assert jobs[0]["status"] == "pending"
    assert jobs[0]["created_at"].endswith("+00:00")
    assert jobs[0]["params"] == {"a": 1, "b": 2}


def test_list_filters_limits_and_sorts(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    low = submit(queue, name="low", queue="q1")
    high = submit(queue, "tests.jobs:fail", name="high", priority=9, max_attempts=1)
    run_one(db, pm)  # runs "high" first (priority): it fails for good

    def ids(*args: str) -> list[str]:
        result = gigq("--json", "list", *args)
        assert result.exit_code == 0, result.stderr
        return [j["id"] for j in json.loads(result.stdout)]

    assert ids() == [high, low]
    assert ids("--sort", "oldest") == [low, high]
    assert ids("--sort", "priority") == [high, low]
    assert ids("--limit", "1") == [high]
    assert ids("--status", "failed") == [high]
    assert ids("--status", "failed", "--status", "pending") == [high, low]
    assert ids("--queue", "q1") == [low]
    assert ids("--name", "low") == [low]
    assert ids("--status", "completed") == []
    assert gigq("list", "--status", "completed").stdout == "No jobs found.\n"


def test_list_unknown_status_is_a_user_error(gigq: Run, queue: JobQueue) -> None:
    assert_user_error(gigq("list", "--status", "done"), 1, "unknown status")


def test_list_bad_options_are_usage_errors(gigq: Run, queue: JobQueue) -> None:
    assert gigq("list", "--limit", "0").exit_code == 2
    assert gigq("list", "--sort", "random").exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["status", "abc"],
        ["cancel", "abc"],
        ["requeue", "--status", "failed"],
        ["clear"],
        ["wait", "abc"],
        ["stats"],
        ["workers"],
        ["queue", "list"],
        ["queue", "pause", "q"],
    ],
)
def test_commands_that_read_never_create_a_database(gigq: Run, db: str, args: list[str]) -> None:
    assert_user_error(gigq(*args), 1, "does not exist")
    assert not os.path.exists(db)


def test_status_shows_fields_result_and_executions(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    job_id = submit(queue, description="adds")
    run_one(db, pm)
    result = gigq("status", job_id)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"add ({job_id})" in out
    assert "completed" in out and "tests.jobs:add" in out and "1/3" in out
    assert "Params:" not in out and "Result:" not in out and "Executions:" not in out

    out = gigq("status", job_id, "--show-params", "--show-result", "--show-executions").stdout
    assert '"a": 1' in out
    assert "Result:\n3\n" in out
    executions = out.split("Executions:\n", 1)[1].splitlines()
    assert executions[0].split() == ["attempt", "status", "worker", "started", "took", "error"]
    assert executions[2].split()[:2] == ["1", "completed"]


def test_status_shows_one_row_per_attempt_with_its_error(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    job_id = submit(queue, "tests.jobs:fail", params={"message": "bad input"}, retry_delay=0)
    for _ in range(3):
        assert run_one(db, pm)
    out = gigq("status", job_id, "--show-executions").stdout
    assert "Error:" in out and "ValueError: bad input" in out
    rows = out.split("Executions:\n", 1)[1].splitlines()[2:]
    assert [r.split()[:2] for r in rows] == [["1", "failed"], ["2", "failed"], ["3", "failed"]]
    assert all("ValueError: bad input" in r for r in rows)


def test_status_json_is_get_status(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    data = json.loads(gigq("--json", "status", job_id).stdout)
    assert data["id"] == job_id and data["exists"] is True
    assert data["executions"] == [] and data["params"] == {"a": 1, "b": 2}
    assert data["created_at"].endswith("+00:00")


def test_short_ids_and_ambiguous_prefixes(gigq: Run, queue: JobQueue) -> None:
    one = queue.submit(Job("one", "tests.jobs:noop", id="abc123-1"))
    queue.submit(Job("two", "tests.jobs:noop", id="abc456-2"))
    assert json.loads(gigq("--json", "status", "abc1").stdout)["id"] == one
    assert json.loads(gigq("--json", "status", one).stdout)["id"] == one
    assert_user_error(gigq("status", "abc"), 1, "ambiguous: abc123-1, abc456-2")
    assert_user_error(gigq("status", "zzz"), 1, "no job with id 'zzz'")
    assert_user_error(gigq("cancel", "abc"), 1, "ambiguous: abc123-1, abc456-2")
    assert_user_error(gigq("wait", "abc"), 1, "ambiguous: abc123-1, abc456-2")
