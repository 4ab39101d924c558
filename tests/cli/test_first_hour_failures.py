"""A failing job seen through the real `gigq` command (a subprocess, as a user runs it): the
worker's log names each failure with its error, and `gigq status` shows the traceback and
why a pending job waits (issue 20, items 1 and 12)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.helpers import run_gigq, user_environment

TASKS = """
import os
import time


def add(a, b):
    return a + b


def flaky():
    raise ValueError("boom in flaky")


def slow():
    time.sleep(30)


def die():
    os._exit(3)


def forge():
    raise ValueError("boom\\n2024-05-01 14:03:22,123 INFO gigq: all is well")


def ping(n):
    if n == 0:
        raise KeyError("deep down")
    pong(n - 1)


def pong(n):
    ping(n)
"""

#: A line of an error message that looks like a log record of its own.
FORGED = "2024-05-01 14:03:22,123 INFO gigq: all is well"

#: The start of a log record of the `gigq` logger: "2024-05-01 14:03:22,123 LEVEL gigq: ".
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) gigq: (.*)$")


def gigq(folder: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli ARGS...` in `folder`; `settings` become GIGQ_* variables, and no
    other GIGQ_* setting comes from outside."""
    env = user_environment(**{f"GIGQ_{name.upper()}": value for name, value in settings.items()})
    return run_gigq(folder, *args, env=env)


def submit(folder: Path, *args: str) -> str:
    done = gigq(folder, "--json", "submit", *args)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)
    assert isinstance(job_id, str)
    return job_id


def records(stderr: str, job_id: str) -> list[tuple[str, list[str]]]:
    """The `gigq` log records about `job_id`: (level, lines), the message first, then any
    lines that follow it before the next record (a traceback)."""
    found: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in stderr.splitlines():
        match = RECORD.match(line)
        if match:
            current = None
            if job_id in match.group(2):
                current = [match.group(2)]
                found.append((match.group(1), current))
        elif current is not None and line.startswith("  "):
            current.append(line)
        else:
            current = None
    return found


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


def test_the_worker_logs_a_retried_failure_and_a_final_one_with_their_error(
    folder: Path,
) -> None:
    job_id = submit(folder, "tasks:flaky", "--max-attempts", "2", "--retry-delay", "0")

    ran = gigq(folder, "worker", "--burst", "--log-level", "WARNING")

    assert ran.returncode == 0, ran.stderr
    [(retried, [retried_text]), (final, [final_text, *traceback])] = records(ran.stderr, job_id)
    assert retried == "WARNING"
    assert f"job {job_id} ('flaky') attempt 1/2 failed in " in retried_text
    assert retried_text.endswith(": ValueError: boom in flaky; retry at once")
    assert final == "ERROR"
    assert f"job {job_id} ('flaky') attempt 2/2 failed for good in " in final_text
    assert final_text.endswith(": ValueError: boom in flaky")
    # The traceback is part of the same record, on lines of its own.
    assert traceback[0] == "  Traceback (most recent call last):"
    assert 'raise ValueError("boom in flaky")' in "\n".join(traceback)
    assert traceback[-1] == "  ValueError: boom in flaky"


def test_an_error_message_cannot_forge_a_log_record(folder: Path) -> None:
    job_id = submit(folder, "tasks:forge", "--max-attempts", "1")

    ran = gigq(folder, "worker", "--burst", "--log-level", "WARNING")

    assert ran.returncode == 0, ran.stderr
    [(level, [text, *traceback])] = records(ran.stderr, job_id)
    assert level == "ERROR"
    assert f"job {job_id} ('forge') attempt 1/1 failed for good in " in text
    assert "ValueError: boom\\n" + FORGED in text  # the message's line break, escaped
    # In the traceback the message keeps its lines, each indented like the rest.
    assert traceback[-2:] == ["  ValueError: boom", f"  {FORGED}"]
    assert not any(line.startswith(FORGED) for line in ran.stderr.splitlines())


def test_retry_log_level_sets_the_level_of_a_retried_failure_only(folder: Path) -> None:
    quiet, shown = (
        submit(folder, "tasks:flaky", "--max-attempts", "2", "--retry-delay", "60", "--queue", q)
        for q in ("quiet", "shown")
    )

    ran = gigq(folder, "worker", "--burst", "--queue", "quiet", "--log-level", "WARNING",
               retry_log_level="info")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert records(ran.stderr, quiet) == []  # the retry, at INFO, is below WARNING

    ran = gigq(folder, "worker", "--burst", "--queue", "shown", retry_log_level="info")
    assert ran.returncode == 0, ran.stderr
    [(level, [text])] = records(ran.stderr, shown)
    assert level == "INFO"
    assert re.search(r"; retry in (59\.\d+|60) s \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$", text)


def test_a_bad_retry_log_level_is_one_sentence(folder: Path) -> None:
    ran = gigq(folder, "worker", "--burst", retry_log_level="LOUD")

    assert ran.returncode == 78, ran.stderr
    assert ran.stderr == (
        "Error: setting 'retry_log_level' must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'\n"
    )


def test_a_timeout_and_a_dead_job_process_are_logged_as_final_failures(folder: Path) -> None:
    slow = submit(folder, "tasks:slow", "--max-attempts", "1", "--timeout", "0.5")
    died = submit(folder, "tasks:die", "--max-attempts", "1")

    ran = gigq(folder, "worker", "--burst", "--log-level", "WARNING", "--concurrency", "2")

    assert ran.returncode == 0, ran.stderr
    [(level, [text])] = records(ran.stderr, slow)
    assert level == "ERROR"
    assert f"job {slow} ('slow') attempt 1/1 timed out for good in " in text
    assert text.endswith(": Timeout: timed out after 0.5 s")
    [(level, [text])] = records(ran.stderr, died)
    assert level == "ERROR"
    assert f"job {died} ('die') attempt 1/1 failed for good in " in text
    assert text.endswith(": JobProcessDied: the job's process exited with code 3")


def test_status_shows_the_last_traceback_clipped_to_its_end(folder: Path) -> None:
    short = submit(folder, "tasks:flaky", "--max-attempts", "1")
    deep = submit(folder, "tasks:ping", "-p", "n=30", "--max-attempts", "1")
    assert gigq(folder, "worker", "--burst").returncode == 0

    out = gigq(folder, "status", short).stdout
    assert "\n\nTraceback of attempt 1:\n  Traceback (most recent call last):\n" in out
    assert out.rstrip("\n").endswith(
        'raise ValueError("boom in flaky")\n  ValueError: boom in flaky'
    )

    out = gigq(folder, "status", deep).stdout
    whole = json.loads(gigq(folder, "--json", "status", deep).stdout)["executions"][0]
    lines = whole["traceback"].rstrip("\n").split("\n")
    assert len(lines) > 40
    title = (
        f"Traceback of attempt 1 (its last 20 of {len(lines)} lines; "
        f"`gigq --json status {deep}` has it whole):"
    )
    shown = out.split("\n\n", 1)[1].rstrip("\n").split("\n")
    assert shown == [title, *(f"  {line}" for line in lines[-20:])]


def test_status_says_why_a_pending_job_waits(folder: Path) -> None:
    done = submit(folder, "tasks:add", "-p", "a=1", "-p", "b=2", "--name", "first")
    assert gigq(folder, "worker", "--burst").returncode == 0
    later = submit(folder, "tasks:add", "-p", "a=1", "-p", "b=2", "--name", "second",
                   "--delay", "3600")  # fmt: skip
    run_at = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3, minutes=5)
    job_id = submit(folder, "tasks:add", "-p", "a=1", "-p", "b=2", "--name", "third",
                    "--queue", "emails", "--depends-on", done, "--depends-on", later,
                    "--run-at", run_at.isoformat())  # fmt: skip
    assert gigq(folder, "queue", "pause", "emails").returncode == 0

    out = gigq(folder, "status", job_id).stdout

    assert f"Dependencies:  {later[:8]}  second  pending\n" in out
    assert f"\n               {done[:8]}  first  completed\n" in out
    waiting = out.split("Waiting:", 1)[1].split("\nStarted:", 1)[0].split("\n")
    assert [line.strip() for line in waiting] == [
        "1 of 2 dependencies not completed",
        "its queue 'emails' is paused (`gigq queue resume emails` lets workers claim it)",
        f"scheduled for {run_at:%Y-%m-%d %H:%M} UTC, in 3 h",
    ]
    assert (
        "Waiting:       nothing: ready for a worker of queue 'default'"
        in gigq(folder, "status", submit(folder, "tasks:add", "-p", "a=1", "-p", "b=2")).stdout
    )


def test_stats_does_not_count_paused_queues_as_waiting_without_saying_so(folder: Path) -> None:
    submit(folder, "tasks:add", "-p", "a=1", "-p", "b=2", "--queue", "emails")
    assert gigq(folder, "queue", "pause", "emails").returncode == 0

    out = gigq(folder, "stats").stdout
    assert (
        "Oldest ready job: none waiting (paused queues not counted: 1 pending job in 'emails')."
        in out
    )
    data = json.loads(gigq(folder, "--json", "stats").stdout)
    assert data["oldest_ready_age"] is None and data["pending_in_paused_queues"] == 1

    submit(folder, "tasks:add", "-p", "a=1", "-p", "b=2")
    out = gigq(folder, "stats").stdout
    assert re.search(
        r"Oldest ready job: waiting for \d+ ms \(paused queues not counted: 1 pending job in "
        r"'emails'\)\.",
        out,
    ), out
