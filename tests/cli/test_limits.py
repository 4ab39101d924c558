"""Limits through the CLI on a SQLite file: oversized input to `gigq submit` and `gigq queue
pause` gets one sentence and exit 1, never a traceback; a huge error is stored cut."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gigq import JobQueue
from tests.cli.helpers import assert_user_error, run_one, submit

HUGE = "n" * 10_000_000


def nested(levels: int) -> str:
    """A JSON array `levels` deep."""
    return "[" * levels + "]" * levels


def test_submit_with_a_ten_megabyte_name(gigq, db, queue):
    result = gigq("submit", "tests.jobs:noop", "--name", HUGE)

    assert_user_error(result, 1, "the job name is 10,000,000 characters long")
    assert "max_name_length" in result.stderr
    assert len(result.stderr) < 300


@pytest.mark.parametrize(
    ("option", "setting"),
    [("--queue", "max_name_length"), ("--description", "max_description_length")],
)
def test_submit_with_other_oversized_text(gigq, queue, option, setting):
    assert_user_error(gigq("submit", "tests.jobs:noop", option, HUGE), 1, setting)


def test_submit_with_fifty_thousand_levels_of_param(gigq, db):
    result = gigq("submit", "tests.jobs:echo", "-p", "x=" + nested(50_000))

    assert_user_error(result, 1, "--param 'x' is JSON nested too deeply")
    assert not Path(db).exists()  # refused before the queue is opened


def test_submit_with_fifty_thousand_levels_of_params_json(gigq):
    result = gigq("submit", "tests.jobs:echo", "--params-json", '{"x": ' + nested(50_000) + "}")

    assert_user_error(result, 1, "--params-json is nested too deeply")


def test_submit_with_params_past_the_nesting_limit(gigq, queue):
    result = gigq("submit", "tests.jobs:echo", "-p", "x=" + nested(100))

    assert_user_error(result, 1, "nested too deeply (more than 100 levels")
    assert "max_nesting_depth" in result.stderr


def test_the_nesting_limit_from_the_environment(gigq, db):
    result = gigq(
        "submit",
        "tests.jobs:echo",
        "-p",
        "x=" + nested(150),
        env={"GIGQ_MAX_NESTING_DEPTH": "200"},
    )

    assert result.exit_code == 0, result.stderr
    with JobQueue(db) as jobs:
        [job] = jobs.list_jobs()
        assert job["params"] == {"x": json.loads(nested(150))}


def test_queue_pause_with_a_long_name(gigq, queue):
    assert_user_error(gigq("queue", "pause", "q" * 2_000), 1, "max_name_length")


def test_a_twenty_megabyte_error_keeps_the_database_small(gigq, db, queue, pm):
    job_id = submit(queue, "tests.jobs:fail_big", params={"size": 20_000_000}, retry_delay=0)
    for _ in range(3):
        assert run_one(db, pm)

    sizes = sum(
        os.path.getsize(db + suffix) for suffix in ("", "-wal") if os.path.exists(db + suffix)
    )
    assert sizes < 4_000_000, sizes  # before the limit: 140 MB
    result = gigq("--json", "status", job_id, "--show-executions")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] == "failed"
    assert len(shown["executions"]) == 3
    for execution in shown["executions"]:
        assert "[truncated 19," in execution["error"]
        assert len(execution["traceback"]) <= 65_536
