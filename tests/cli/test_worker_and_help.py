"""`gigq worker` in-process, and `--help` of every command."""

from __future__ import annotations

import json

import pluggy
import pytest
from click.testing import CliRunner

from gigq import JobQueue
from gigq_cli import create_cli

from .conftest import Run
from .helpers import submit


def test_worker_once_runs_one_job(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    result = gigq("worker", "--once", "--log-level", "warning")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Processed one job.\n"
    assert queue.get_result(job_id) == 3
    assert gigq("worker", "--once").stdout == "No job was ready.\n"
    assert json.loads(gigq("--json", "worker", "--once").stdout) == {"processed": False}


def test_worker_once_serves_only_its_queues(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue, queue="q1")
    assert gigq("worker", "--once", "--queue", "q2").stdout == "No job was ready.\n"
    assert gigq("worker", "--once", "--queue", "q2", "--queue", "q1").exit_code == 0
    assert queue.get_status(job_id)["status"] == "completed"


def test_worker_bad_options_exit_2(gigq: Run) -> None:
    assert gigq("worker", "--concurrency", "0").exit_code == 2
    assert gigq("worker", "--polling-interval", "0").exit_code == 2
    assert gigq("worker", "--log-level", "loud").exit_code == 2


def test_worker_bad_settings_exit_78(gigq: Run, queue: JobQueue) -> None:
    result = gigq("worker", "--once", "--heartbeat", "10", "--lease", "5")
    assert result.exit_code == 78
    assert "heartbeat" in result.stderr and "Traceback" not in result.stderr


COMMANDS = [
    [], ["submit"], ["list"], ["status"], ["cancel"], ["requeue"], ["worker"], ["clear"],
    ["queue"], ["queue", "list"], ["queue", "pause"], ["queue", "resume"], ["stats"],
    ["workers"], ["wait"], ["plugins"],
]  # fmt: skip


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "gigq")
def test_every_command_has_help(pm: pluggy.PluginManager, args: list[str]) -> None:
    result = CliRunner().invoke(create_cli(pm), [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")


def test_every_builtin_command_is_registered(pm: pluggy.PluginManager) -> None:
    cli = create_cli(pm)
    assert set(cli.commands) == {
        "submit", "list", "status", "cancel", "requeue", "worker", "clear", "queue", "stats",
        "workers", "wait", "plugins", "workflow", "doctor", "backup", "upgrade", "migrate",
    }  # fmt: skip
