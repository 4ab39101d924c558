"""The CLI a new user reaches for, through the real `gigq` command (a subprocess, as a user
runs it): an ambiguous id prefix lists what it matches, a listing says when it stopped at its
limit, `--help` shows no 64-bit bound, wide characters keep tables aligned, tabs and line
breaks never break a row, and a stopping worker says a second Ctrl-C stops it at once
(issue 20, item 10)."""

from __future__ import annotations

import logging
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from wcwidth import wcswidth

from gigq_cli import create_cli
from gigq_core import Job, JobQueue, Workflow, make_plugin_manager
from tests.cli.helpers import run_gigq, user_environment

ROOT = Path(__file__).resolve().parents[2]

TASKS = """
import time


def add(a, b):
    return a + b


def nap(seconds):
    time.sleep(seconds)


def fail():
    raise ValueError("bad\\tthing\\rmore\\fstill\\nsecond line")
"""


def gigq(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli --db jobs.db ARGS...` run in `folder`, with no GIGQ_* settings
    from outside."""
    return run_gigq(folder, "--db", "jobs.db", *args)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A user's project folder with a tasks module."""
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


def submit(folder: Path, *jobs: Job) -> None:
    with JobQueue(str(folder / "jobs.db")) as queue:
        queue.submit_many(jobs)


def add(name: str = "add", **kwargs: object) -> Job:
    return Job(name, "tasks:add", params={"a": 1, "b": 2}, **kwargs)


# -- an ambiguous id prefix ----------------------------------------------------------------


def test_an_ambiguous_id_prefix_lists_the_ids_it_matches(folder: Path) -> None:
    submit(folder, add(id="3f0a1111-aaaa-4aaa"), add(id="3f9b2222-bbbb-4bbb"), add(id="77"))

    for command in (["status", "3f"], ["cancel", "3f"], ["wait", "3f", "--timeout", "0"]):
        shown = gigq(folder, *command)
        assert shown.returncode == 1, shown
        assert shown.stdout == ""
        assert shown.stderr == "Error: id prefix '3f' is ambiguous: 3f0a1111…, 3f9b2222…\n"
    # Each id is shown as a prefix that picks it alone.
    for prefix, wanted in (("3f0a1111", "3f0a1111-aaaa-4aaa"), ("3f9b2222", "3f9b2222-bbbb-4bbb")):
        assert wanted in gigq(folder, "status", prefix).stdout


def test_an_ambiguous_prefix_shows_five_ids_and_how_many_match(folder: Path) -> None:
    # Ids sharing more than 8 characters are shown as long as it takes to tell them apart.
    submit(folder, *(add(id=f"abcdef0123-{i}") for i in range(7)), add(id="abc"))

    shown = gigq(folder, "status", "abcd")

    assert shown.returncode == 1
    ids = ", ".join(f"abcdef0123-{i}" for i in range(5))
    assert shown.stderr == f"Error: id prefix 'abcd' is ambiguous: {ids} (5 of 7 shown)\n"


def test_an_ambiguous_workflow_id_prefix_lists_the_ids_it_matches(folder: Path) -> None:
    with JobQueue(str(folder / "jobs.db")) as queue:
        for flow_id in ("e5e5aaaa-1", "e5e5bbbb-2"):
            flow = Workflow("nightly-" + flow_id)
            flow.id = flow_id
            flow.add_job(add())
            flow.submit_all(queue)

    shown = gigq(folder, "workflow", "show", "e5e5")

    assert shown.returncode == 1
    assert shown.stderr == ("Error: workflow id prefix 'e5e5' is ambiguous: e5e5aaaa…, e5e5bbbb…\n")


# -- listings that stop at their limit -----------------------------------------------------


def test_list_says_when_it_stopped_at_its_limit(folder: Path) -> None:
    submit(folder, *(add() for _ in range(5)), add("other"), add("other"))

    limited = gigq(folder, "list", "--limit", "3")
    assert limited.returncode == 0
    assert len(limited.stdout.splitlines()) == 2 + 3
    assert limited.stderr == "3 of 7 jobs shown; use --limit to see more.\n"
    # Counted with the listing's own filter.
    filtered = gigq(folder, "list", "--name", "other", "--limit", "1")
    assert filtered.stderr == "1 of 2 jobs shown; use --limit to see more.\n"
    # All shown: nothing to say.
    assert gigq(folder, "list", "--limit", "7").stderr == ""
    assert gigq(folder, "list", "--name", "other", "--limit", "2").stderr == ""
    # JSON is for programs, which ask for the --limit they want.
    assert gigq(folder, "--json", "list", "--limit", "3").stderr == ""


def test_workflow_list_says_when_it_stopped_at_its_limit(folder: Path) -> None:
    with JobQueue(str(folder / "jobs.db")) as queue:
        for name in ("one", "two", "three"):
            flow = Workflow(name)
            flow.add_job(add())
            flow.submit_all(queue)

    limited = gigq(folder, "workflow", "list", "--limit", "2")
    assert limited.returncode == 0
    assert [line.split()[1] for line in limited.stdout.splitlines()[2:]] == ["three", "two"]
    assert limited.stderr == "2 workflows shown, and there are more; use --limit to see more.\n"
    assert gigq(folder, "workflow", "list", "--limit", "3").stderr == ""


def test_limit_help_shows_no_64_bit_bound(folder: Path) -> None:
    for command in (["list"], ["workflow", "list"]):
        shown = gigq(folder, *command, "--help")
        assert shown.returncode == 0
        assert "--limit" in shown.stdout and "x>=1" in shown.stdout, shown.stdout
        assert "9223372036854775807" not in shown.stdout, shown.stdout
        # The bound still holds: past 64 bits is one sentence, exit 2.
        refused = gigq(folder, *command, "--limit", str(2**63))
        assert refused.returncode == 2
        assert "Error: Invalid value for '--limit': 9223372036854775808 is too large." in (
            refused.stderr
        )
    # No other command's help shows it either.
    cli = create_cli(make_plugin_manager(load_entrypoints=False))
    pending = [([], cli)]
    while pending:
        path, command = pending.pop()
        help_text = CliRunner().invoke(cli, [*path, "--help"]).stdout
        assert "922337203685477" not in help_text, (path, help_text)
        for name, sub in getattr(command, "commands", {}).items():
            pending.append(([*path, name], sub))


# -- tables ------------------------------------------------------------------------------


#: Names two columns a character (CJK, emoji, fullwidth Latin), and with combining accents.
WIDE = ("你好世界", "🎉 party 🎉", "\uff46\uff55\uff4c\uff4c", "plain", "e\u0301te\u0301")


def _column_starts(lines: list[str], word: str) -> set[int]:
    """The display column at which `word` starts on each line that has it."""
    return {wcswidth(line[: line.index(word)]) for line in lines if word in line}


def test_wide_characters_keep_tables_aligned(folder: Path) -> None:
    submit(folder, *(add(name, queue=name) for name in WIDE))

    listed = gigq(folder, "list").stdout.splitlines()
    assert len(listed) == 2 + len(WIDE)
    # On screen, each column after the names starts where its header does.
    assert _column_starts(listed, "pending") == {listed[0].index("status")}, listed
    assert _column_starts(listed, "0/3") == {listed[0].index("attempts")}, listed
    assert _column_starts(listed, "just now") == {listed[0].index("created")}, listed

    queues = gigq(folder, "queue", "list").stdout.splitlines()
    assert len(queues) == 2 + len(WIDE)
    assert _column_starts(queues, "active") == {queues[0].index("state")}, queues
    # Rows end where the others do.
    assert len({wcswidth(line) for line in queues[2:]}) == 1, queues


def test_tabs_and_line_breaks_never_break_a_row(folder: Path) -> None:
    evil = "a\tb\nc\rd\x0be\x0cf"
    submit(
        folder,
        add(evil, queue=evil, description=evil),
        Job("fails", "tasks:fail", queue=evil, max_attempts=1, id="f00d-1"),
    )
    with JobQueue(str(folder / "jobs.db")) as queue:
        flow = Workflow(evil)
        flow.add_job(add(evil, queue=evil))
        flow.submit_all(queue)
    ran = gigq(folder, "worker", "--burst", "--queue", evil)
    assert ran.returncode == 0, ran.stderr
    shown = "a\\tb\\nc\\rd\\x0be\\x0cf"

    listed = gigq(folder, "list").stdout.splitlines()
    assert len(listed) == 2 + 3, listed
    assert sum(shown in line for line in listed) == 2, listed
    queues = gigq(folder, "queue", "list").stdout.splitlines()
    assert len(queues) == 2 + 1 and shown in queues[2], queues
    flows = gigq(folder, "workflow", "list").stdout.splitlines()
    assert len(flows) == 2 + 1 and shown in flows[2], flows
    # The executions table shows an error's first line, everything up to its "\n", escaped.
    status = gigq(folder, "status", "f00d", "--show-executions").stdout.splitlines()
    [header] = [i for i, line in enumerate(status) if line.startswith("attempt")]
    assert len(status) == header + 3, status
    assert status[header + 2].endswith("ValueError: bad\\tthing\\rmore\\x0cstill"), status
    assert "second line" not in status[header + 2]


# -- a stopping worker ---------------------------------------------------------------------


def _read_until(process: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    """What the process wrote to stderr up to the line holding `text`."""
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if not ready:
            continue
        line = process.stderr.readline()
        assert line, f"the worker exited: {''.join(seen)}"
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"no {text!r} within {timeout} s: {''.join(seen)}")


@pytest.mark.parametrize(
    ("signum", "hint"),
    [
        (signal.SIGINT, "press Ctrl-C again to stop at once"),
        (signal.SIGTERM, "a second SIGTERM or Ctrl-C stops it at once"),
    ],
)
def test_a_stopping_worker_says_a_second_signal_stops_it_at_once(
    folder: Path, signum: int, hint: str
) -> None:
    submit(folder, Job("nap", "tasks:nap", params={"seconds": 60}, id="nap-1"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "gigq_cli", "--db", "jobs.db", "worker", "--grace", "25"],
        cwd=folder,
        env=user_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_until(worker, "started")
        deadline = time.monotonic() + 30
        while '"status": "running"' not in gigq(folder, "--json", "status", "nap-1").stdout:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        worker.send_signal(signum)
        said = _read_until(worker, "stopping:")
        line = said.splitlines()[-1]
        assert line.endswith(f": stopping: waiting up to 25 s for 1 running job; {hint}"), said

        started = time.monotonic()
        worker.send_signal(signum)
        assert worker.wait(timeout=10) == 1
        assert time.monotonic() - started < 10
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stderr is not None:
            worker.stderr.close()


def test_a_worker_stopped_by_its_program_names_no_key(caplog: pytest.LogCaptureFixture) -> None:
    # A stop that no signal asked for (a program calling stop()) has no second signal.
    from gigq_core.worker._loop import _log_waiting

    class Stopped:
        worker_id = "w"

        def second_signal_hint(self) -> str:
            return ""

    with caplog.at_level(logging.INFO, logger="gigq"):
        _log_waiting(Stopped(), 2, 2.5)  # type: ignore[arg-type]

    assert caplog.messages == ["worker w: stopping: waiting up to 2.5 s for 2 running jobs"]
