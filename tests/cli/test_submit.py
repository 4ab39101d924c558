"""`gigq submit`."""

from __future__ import annotations

import json
import os

from gigq import JobQueue

from .conftest import Run
from .helpers import assert_user_error, submit


def test_submit_prints_the_id_and_stores_the_job(gigq: Run, db: str, pm: object) -> None:
    result = gigq(
        "submit", "tests.jobs:add", "--name", "adding", "-p", "a=1", "--param", "b=2",
        "--priority", "7", "--max-attempts", "5", "--timeout", "9", "--queue", "q1",
        "--description", "two numbers", "--retry-delay", "4", "--delay", "60",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Job submitted: ")
    job_id = result.stdout.split(": ", 1)[1].strip()
    with JobQueue(db, plugin_manager=pm) as queue:
        info = queue.get_status(job_id)
    assert info["name"] == "adding"
    assert info["function"] == "tests.jobs:add"
    assert info["params"] == {"a": 1, "b": 2}
    assert (info["priority"], info["max_attempts"], info["timeout"]) == (7, 5, 9)
    assert info["queue"] == "q1"
    assert info["description"] == "two numbers"
    assert info["retry"] == "fixed"
    assert info["retry_params"] == {"delay": 4.0}
    assert info["run_at"] > info["created_at"]


def test_submit_json_prints_the_id_as_json(gigq: Run, db: str, pm: object) -> None:
    result = gigq("submit", "tests.jobs:noop", "--json")
    assert result.exit_code == 0
    job_id = json.loads(result.stdout)
    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.get_status(job_id)["name"] == "noop"


def test_param_values_are_json_when_they_parse_else_strings(gigq: Run, db: str, pm: object) -> None:
    result = gigq(
        "--json", "submit", "tests.jobs:echo", "-p", "n=3", "-p", "s=hello", "-p", "l=[1, 2]",
        "-p", "t=true", "-p", "eq=a=b", "-p", "empty=", "--params-json", '{"n": 0, "o": {"x": 1}}',
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    with JobQueue(db, plugin_manager=pm) as queue:
        params = queue.get_status(json.loads(result.stdout))["params"]
    assert params == {
        "n": 3, "s": "hello", "l": [1, 2], "t": True, "eq": "a=b", "empty": "", "o": {"x": 1},
    }  # fmt: skip


def test_depends_on_takes_a_short_id(gigq: Run, queue: JobQueue) -> None:
    parent = submit(queue)
    result = gigq("--json", "submit", "tests.jobs:noop", "--depends-on", parent[:8])
    assert result.exit_code == 0, result.stderr
    assert queue.get_status(json.loads(result.stdout))["dependencies"] == [parent]


def test_bad_param_is_a_user_error(gigq: Run, db: str) -> None:
    assert_user_error(gigq("submit", "tests.jobs:add", "-p", "novalue"), 1, "key=value")
    assert_user_error(gigq("submit", "tests.jobs:add", "--params-json", "{nope"), 1, "JSON")
    assert_user_error(gigq("submit", "tests.jobs:add", "--params-json", "[1]"), 1, "object")
    assert not os.path.exists(db)


def test_a_function_that_cannot_be_imported_is_refused_and_creates_nothing(
    gigq: Run, db: str
) -> None:
    assert_user_error(gigq("submit", "tests.jobs:missing"), 1, "cannot import")
    assert_user_error(gigq("submit", "no_such_module_xyz:f"), 1, "no_such_module_xyz")
    assert not os.path.exists(db)


def test_unknown_dependency_is_a_user_error(gigq: Run, queue: JobQueue) -> None:
    assert_user_error(gigq("submit", "tests.jobs:noop", "--depends-on", "nope"), 1, "nope")
    assert queue.stats()["total"] == 0


def test_invalid_job_values_are_user_errors(gigq: Run) -> None:
    assert_user_error(gigq("submit", "tests.jobs:noop", "--timeout", "0"), 1, "timeout")


def test_a_disallowed_function_exits_78(gigq: Run) -> None:
    assert_user_error(gigq("submit", "os:system", "-p", "command=true"), 78)


def test_usage_errors_exit_2(gigq: Run) -> None:
    assert gigq("submit").exit_code == 2
    assert gigq("submit", "tests.jobs:noop", "--priority", "high").exit_code == 2
    assert gigq("submit", "tests.jobs:noop", "--max-attempts", "0").exit_code == 2
    assert gigq("submit", "tests.jobs:noop", "--bogus").exit_code == 2
    assert gigq("no-such-command").exit_code == 2


def test_global_options_work_after_the_command(gigq: Run, db: str, pm: object) -> None:
    result = gigq("submit", "tests.jobs:noop", "--db", db, "--json", db=None)
    assert result.exit_code == 0, result.stderr
    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.get_status(json.loads(result.stdout))["exists"]


def test_the_database_defaults_to_gigq_db_env(gigq: Run, db: str, pm: object) -> None:
    result = gigq("--json", "submit", "tests.jobs:noop", db=None, env={"GIGQ_DB": db})
    assert result.exit_code == 0, result.stderr
    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.stats()["total"] == 1
