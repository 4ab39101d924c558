"""Issue 16, no traceback ever: a very deep workflow, rows written by hand into a GigQ
database (an invalid status, params that are not JSON, an impossible timestamp), and
plugins that break; the CLI prints what is wrong and goes on with the rest."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pluggy
import pytest

from gigq_core import Job, JobQueue, Workflow

from .conftest import Run
from .helpers import assert_user_error, submit

#: Params that fit tests.jobs:add.
AB = {"a": 1, "b": 1}


def chain(queue: JobQueue, length: int, name: str = "chain") -> Workflow:
    """A workflow of `length` jobs, each depending on the one before."""
    flow = Workflow(name)
    previous = None
    for index in range(length):
        previous = flow.add_job(
            Job(f"j{index}", "tests.jobs:add", params={"a": 1, "b": 1}), depends_on=previous
        )
    flow.submit_all(queue)
    return flow


# -- workflow show -------------------------------------------------------------------------


def test_workflow_show_prints_a_chain_of_5000_jobs(gigq: Run, queue: JobQueue) -> None:
    flow = chain(queue, 5000)

    result = gigq("workflow", "show", "chain")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 5000
    assert lines[1] == f"… j0 [pending] {flow.jobs[0].id[:8]}"
    assert lines[2] == f"└── … j1 [pending] {flow.jobs[1].id[:8]}"
    assert lines[3] == f"    └── … j2 [pending] {flow.jobs[2].id[:8]}"
    # Past 40 levels the indent stops growing (each line would grow by 4 characters), and
    # the depth is written instead.
    assert lines[-1].endswith(f"j4999 [pending] {flow.jobs[-1].id[:8]} (depth 4999)")
    assert max(len(line) for line in lines) < 250
    shown = json.loads(gigq("--json", "workflow", "show", "chain").stdout)
    assert len(shown["jobs"]) == 5000


def test_workflow_show_of_a_wide_and_deep_tree_keeps_the_recursive_order(
    gigq: Run, queue: JobQueue, pm: pluggy.PluginManager
) -> None:
    flow = Workflow("tree")
    root = flow.add_job(Job("root", "tests.jobs:add", params=AB))
    left = flow.add_job(Job("left", "tests.jobs:add", params=AB), depends_on=root)
    flow.add_job(Job("left.1", "tests.jobs:add", params=AB), depends_on=left)
    right = flow.add_job(Job("right", "tests.jobs:add", params=AB), depends_on=root)
    flow.add_job(Job("both", "tests.jobs:add", params=AB), depends_on=[left, right])
    flow.submit_all(queue)
    ids = {j.name: j.id[:8] for j in flow.jobs}

    lines = gigq("workflow", "show", "tree").stdout.splitlines()[1:]

    assert lines == [
        f"… root [pending] {ids['root']}",
        f"├── … left [pending] {ids['left']}",
        f"│   ├── … left.1 [pending] {ids['left.1']}",
        f"│   └── … both [pending] {ids['both']}",
        f"└── … right [pending] {ids['right']}",
        f"    └── both {ids['both']} (see above)",
    ]


# -- broken plugins ------------------------------------------------------------------------


def install_plugin(folder: Path, name: str, source: str) -> None:
    """A module `gigq_test_<name>` with entry point `<name>` of group gigq, importable from
    `folder` (as an installed distribution would be)."""
    module = f"gigq_test_{name}"
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: gigq-test-{name}\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[gigq]\n{name} = {module}\n", encoding="utf-8")


def test_broken_plugins_get_one_line_each_and_the_cli_works(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install_plugin(plugins, "interrupting", "raise KeyboardInterrupt\n")
    install_plugin(plugins, "exiting", "import sys\nsys.exit(4)\n")
    install_plugin(
        plugins,
        "commands",
        "from gigq import hookimpl\n\n"
        "@hookimpl\n"
        "def gigq_register_commands(cli):\n"
        "    raise RuntimeError('no commands today')\n",
    )
    root = Path(__file__).resolve().parents[2]  # tests.jobs is imported from there
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(root)])}
    env.pop("GIGQ_DISABLE_PLUGINS", None)
    db = str(tmp_path / "jobs.db")

    def gigq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gigq_cli", "--db", db, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    submitted = gigq("submit", "tests.jobs:add", "-p", "a=1", "-p", "b=2")
    listed = gigq("list")

    for result in (submitted, listed):
        assert result.returncode == 0, result.stderr
        said = result.stderr.splitlines()
        lines = sorted(line for line in said if not line.startswith("created a new queue at "))
        assert len(lines) == 3, lines
        assert "plugin 'commands' failed to add its commands: RuntimeError(" in lines[0]
        exiting = "plugin 'exiting' (gigq-test-exiting 1.0) failed to load: SystemExit(4)"
        assert exiting in lines[1]
        assert "plugin 'interrupting' (gigq-test-interrupting 1.0) failed to load:" in lines[2]
        assert "KeyboardInterrupt()" in lines[2]
    assert submitted.stdout.startswith("Job submitted: ")
    assert " add " in listed.stdout


# -- rows changed by hand ------------------------------------------------------------------


def spoil(db: str, job_id: str, column: str, value: Any) -> None:
    """Set one column of a job's row by raw SQL, as a person with sqlite3 could."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
        conn.commit()
    finally:
        conn.close()


def stored(db: str, job_id: str) -> tuple[str, str | None]:
    """A job's stored (status, error)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT status, error FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()


#: (column, value, what `gigq` says is wrong) for rows that no job can hold.
SPOILED = [
    ("status", "bogus", "status is 'bogus', not a job state"),
    ("params", "{not json", "its params cannot be decoded (Expecting property name"),
    ("created_at", "yesterday", "created_at is 'yesterday', not a time"),
    ("created_at", 1e300, "created_at is 1e+300, not a time"),
    ("run_at", -1e300, "run_at is -1e+300, not a time"),
    ("lease_expires_at", 1e300, "lease_expires_at is 1e+300, not a time"),
    ("result", "[1,", "its result cannot be decoded"),
    ("retry_params", "{", "its retry_params cannot be decoded"),
]


@pytest.fixture
def spoiled(queue: JobQueue, db: str) -> dict[str, str]:
    """A good job before and after one job per SPOILED entry: name -> id."""
    ids = {"first": submit(queue, name="first")}
    for index, (column, value, _) in enumerate(SPOILED):
        ids[str(index)] = submit(queue, name=f"bad-{column}")
        spoil(db, ids[str(index)], column, value)
    ids["last"] = submit(queue, name="last")
    return ids


def test_list_shows_unreadable_rows_as_such_and_the_others_as_usual(
    gigq: Run, spoiled: dict[str, str]
) -> None:
    result = gigq("list", "--sort", "oldest")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].split()[:3] == [spoiled["first"], "first", "pending"]
    assert lines[-1].split()[:3] == [spoiled["last"], "last", "pending"]
    for index, (_, _, reason) in enumerate(SPOILED):
        job_id = spoiled[str(index)]
        assert lines[3 + index].split() == [job_id, "-", "unreadable", "-", "-", "-", "-"]
        assert f"Job {job_id} cannot be read: {reason}" in result.stderr
    assert len(result.stderr.splitlines()) == len(SPOILED)
    assert "Traceback" not in result.stderr

    listed = json.loads(gigq("--json", "list", "--sort", "oldest").stdout)
    assert [j["status"] for j in listed] == ["pending", *["unreadable"] * len(SPOILED), "pending"]
    assert listed[1]["id"] == spoiled["0"]
    assert listed[1]["error"] == SPOILED[0][2]
    assert set(listed[1]) == set(listed[0])


@pytest.mark.parametrize(("index", "reason"), [(i, s[2]) for i, s in enumerate(SPOILED)])
def test_status_of_an_unreadable_row_is_one_sentence_and_exit_65(
    gigq: Run, spoiled: dict[str, str], index: int, reason: str
) -> None:
    job_id = spoiled[str(index)]

    for args in (("status", job_id), ("status", job_id[:13]), ("--json", "status", job_id)):
        result = gigq(*args)
        assert_user_error(result, 65, f"Error: job '{job_id}' cannot be read: {reason}")
        assert result.stderr.rstrip().endswith("; fix or delete its row")
    assert gigq("status", spoiled["last"]).exit_code == 0


def test_a_worker_skips_a_row_it_cannot_read_reports_it_once_and_runs_the_others(
    gigq: Run, queue: JobQueue, db: str
) -> None:
    bad = submit(queue, name="bad", priority=5)  # first in line
    other = submit(queue, name="other", priority=5)
    good = [submit(queue, name=f"good-{i}") for i in range(3)]
    child = queue.submit(
        Job("child", "tests.jobs:add", params={"a": 1, "b": 1}, dependencies=[bad])
    )
    spoil(db, bad, "created_at", 1e300)
    spoil(db, other, "run_at", -1e300)

    result = gigq("worker", "--burst", "--executor", "inline")

    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 2, errors
    assert bad in errors[0] and "created_at is 1e+300, not a time" in errors[0]
    assert other in errors[1] and "run_at is -1e+300, not a time" in errors[1]
    assert [stored(db, job_id)[0] for job_id in good] == ["completed"] * 3
    assert stored(db, bad) == ("failed", "unreadable row: created_at is 1e+300, not a time")
    assert stored(db, other)[0] == "failed"
    assert stored(db, child)[0] == "cancelled"
    again = gigq("worker", "--burst", "--executor", "inline")
    assert " ERROR " not in again.stderr  # reported once: the row is no longer claimed
    assert_user_error(gigq("status", bad), 65, "created_at is 1e+300")


def test_a_worker_waits_past_a_job_due_after_year_9999(gigq: Run, queue: JobQueue, db: str) -> None:
    later = submit(queue, name="later")
    spoil(db, later, "run_at", 1e300)
    now = submit(queue, name="now")

    result = gigq("worker", "--burst", "--executor", "inline")

    assert result.exit_code == 0, result.stderr
    assert stored(db, now)[0] == "completed"
    assert stored(db, later)[0] == "pending"


def test_the_other_commands_say_which_row_is_unreadable(
    gigq: Run, queue: JobQueue, db: str, tmp_path: Path
) -> None:
    flow = Workflow("etl")
    a = flow.add_job(Job("A", "tests.jobs:add", params={"a": 1, "b": 1}))
    flow.add_job(Job("B", "tests.jobs:add", params={"a": 1, "b": 1}), depends_on=a)
    flow.submit_all(queue)
    a_id, b_id = (j.id for j in flow.jobs)
    spoil(db, a_id, "status", "bogus")
    spoil(db, b_id, "created_at", 1e300)

    shown = gigq("workflow", "show", "etl")
    assert shown.exit_code == 0, shown.stderr
    assert f"A [unreadable] {a_id[:8]}: status is 'bogus', not a job state" in shown.stdout
    assert gigq("workflow", "list").exit_code == 0
    assert gigq("--json", "workflow", "show", "etl").exit_code == 0

    cancelled = gigq("cancel", a_id)
    assert_user_error(cancelled, 1, f"not cancelled: {a_id} is unreadable")
    requeued = gigq("requeue", a_id)
    assert_user_error(requeued, 1, f"not requeued: {a_id} is unreadable")
    assert gigq("stats").exit_code == 0
    assert gigq("queue", "list").exit_code == 0
    timed_out = gigq("wait", a_id, "--timeout", "0")
    assert "Traceback" not in timed_out.stderr

    assert_user_error(
        gigq("migrate", "--to", str(tmp_path / "copy.db")), 65, f"job '{a_id}' cannot be read"
    )
    assert_user_error(
        gigq("submit", "tests.jobs:add", "-p", "a=1", "-p", "b=2", "--depends-on", a_id),
        65,
        f"job '{a_id}' cannot be read: status is 'bogus', not a job state",
    )


def test_stats_and_queue_list_survive_names_that_are_not_text(
    gigq: Run, queue: JobQueue, db: str
) -> None:
    job_id = submit(queue)
    queue.pause_queue("q")
    spoil(db, job_id, "queue", b"\xff")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE paused_queues SET queue = x'fe'")
    conn.commit()
    conn.close()

    for args in (("stats",), ("--json", "stats"), ("queue", "list"), ("--json", "queue", "list")):
        result = gigq(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.stderr
