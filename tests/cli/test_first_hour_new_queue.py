"""A typo or the wrong folder never quietly starts a new queue, and text that is not UTF-8
gets one sentence (issue 20, items 3 and 4), through the real `gigq` command: only `submit`
creates a database, and says so on stderr; `gigq worker` and `gigq cron add` refuse a
missing one unless --create; a missing folder is refused unless --create-folders; a worker's
start line names the database's absolute path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gigq import Job, JobQueue
from gigq_core.errors import DatabaseNotFoundError, GigQError, InvalidJobError
from tests.cli.helpers import run_gigq, user_environment

ADD = ("tasks:add", "-p", "a=1", "-p", "b=2")


_env = user_environment


def gigq(folder: Path, *args: str | bytes, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli ARGS...` run in `folder`; bytes arguments are passed as they are
    (a shell passes a file name or pasted text that is not UTF-8 so)."""
    return run_gigq(folder, *args, env=_env(**env))


def one_sentence(ran: subprocess.CompletedProcess[str], says: str) -> str:
    """The single `Error:` line of a refused command that exited 1, and printed nothing else."""
    assert ran.returncode == 1, (ran.returncode, ran.stderr)
    assert "Traceback" not in ran.stderr
    assert ran.stdout == ""
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A user's project folder with a tasks module and no queue yet."""
    (tmp_path / "tasks.py").write_text("def add(a, b):\n    return a + b\n")
    return tmp_path


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")


# -- item 3: only submit creates a queue, and says so -----------------------------------------


def test_a_worker_in_a_folder_without_a_queue_refuses_to_start(folder: Path) -> None:
    ran = gigq(folder, "worker", "--burst")
    line = one_sentence(ran, f"the database {folder / 'gigq.db'} does not exist")
    assert line.endswith("; submit a job first or pass --create")
    assert _files(folder) == ["tasks.py"], "a refused worker made a database"


def test_a_worker_with_create_makes_the_queue_says_so_and_names_it(folder: Path) -> None:
    ran = gigq(folder, "worker", "--burst", "--create")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    where = str(folder / "gigq.db")
    assert lines[0] == f"created a new queue at {where}"
    assert next(line for line in lines if " started (" in line).endswith(f") on {where}")
    assert (folder / "gigq.db").exists()


def test_gigq_create_in_the_environment_is_create(folder: Path) -> None:
    ran = gigq(folder, "worker", "--burst", GIGQ_CREATE="1")
    assert ran.returncode == 0, ran.stderr
    assert f"created a new queue at {folder / 'gigq.db'}" in ran.stderr.splitlines()


def test_a_worker_start_line_names_the_absolute_path_of_its_database(folder: Path) -> None:
    (folder / "data").mkdir()
    assert gigq(folder, "--db", "data/q.db", "submit", *ADD).returncode == 0
    ran = gigq(folder, "--db", "data/q.db", "worker", "--burst")
    assert ran.returncode == 0, ran.stderr
    assert "created a new queue" not in ran.stderr
    started = [line for line in ran.stderr.splitlines() if " started (" in line]
    assert started and started[0].endswith(f") on {folder / 'data' / 'q.db'}"), ran.stderr


def test_submit_creates_the_queue_and_says_so_once(folder: Path) -> None:
    first = gigq(folder, "submit", *ADD)
    assert first.returncode == 0, first.stderr
    assert first.stderr == f"created a new queue at {folder / 'gigq.db'}\n"
    assert first.stdout.startswith("Job submitted: ")
    second = gigq(folder, "submit", *ADD)
    assert second.returncode == 0 and second.stderr == "", second.stderr


def test_submit_into_a_missing_folder_is_refused(folder: Path) -> None:
    ran = gigq(folder, "--db", "missing/dir/q.db", "submit", *ADD)
    line = one_sentence(ran, f"the folder {folder / 'missing' / 'dir'} does not exist")
    assert "--create-folders" in line
    assert _files(folder) == ["tasks.py"], "a refused submit made a folder"


def test_submit_with_create_folders_makes_them(folder: Path) -> None:
    ran = gigq(folder, "--db", "missing/dir/q.db", "submit", "--create-folders", *ADD)
    assert ran.returncode == 0, ran.stderr
    where = folder / "missing" / "dir" / "q.db"
    assert ran.stderr == f"created a new queue at {where}\n"
    assert (folder / "missing").stat().st_mode & 0o777 == 0o700
    # The setting does the same for every command that creates (a service's environment).
    other = gigq(folder, "--db", "other/q.db", "submit", *ADD, GIGQ_CREATE_FOLDERS="1")
    assert other.returncode == 0, other.stderr
    assert (folder / "other" / "q.db").exists()


def test_a_refused_job_creates_no_queue(folder: Path) -> None:
    one_sentence(gigq(folder, "submit", *ADD, "--timeout", "0"), "timeout")
    assert _files(folder) == ["tasks.py"]


def test_cron_add_refuses_a_missing_queue_unless_create(folder: Path) -> None:
    add = ("cron", "add", "nightly", "0 3 * * *", *ADD)
    line = one_sentence(gigq(folder, *add), f"the database {folder / 'gigq.db'} does not exist")
    assert line.endswith("; submit a job first or pass --create")
    assert _files(folder) == ["tasks.py"], "a refused cron add made a database"
    ran = gigq(folder, *add, "--create")
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == f"created a new queue at {folder / 'gigq.db'}\n"


def test_the_python_api_creates_a_file_but_not_its_folders(tmp_path: Path) -> None:
    with JobQueue(str(tmp_path / "jobs.db")) as jobs:  # as the original GigQ API does
        assert jobs.stats()["total"] == 0
    with pytest.raises(DatabaseNotFoundError, match=r"the folder .* does not exist"):
        JobQueue(str(tmp_path / "typo" / "jobs.db"))
    assert not (tmp_path / "typo").exists()
    with JobQueue(str(tmp_path / "asked" / "jobs.db"), create_folders=True) as jobs:
        assert jobs.stats()["total"] == 0


# -- item 4: text that is not UTF-8 ------------------------------------------------------------

NOT_UTF8 = b"x\xffy"


@pytest.mark.parametrize(
    "args",
    [
        ("submit", *ADD, b"--name", NOT_UTF8),
        ("submit", *ADD, b"--queue", NOT_UTF8),
        ("submit", *ADD, b"--description", NOT_UTF8),
        ("submit", *ADD, b"--unique-key", NOT_UTF8),
    ],
    ids=["name", "queue", "description", "unique-key"],
)
def test_submit_refuses_text_that_is_not_utf8_before_creating_a_queue(
    folder: Path, args: tuple[str | bytes, ...]
) -> None:
    one_sentence(gigq(folder, *args), "is not valid text: '\\udcff' at position 1")
    assert _files(folder) == ["tasks.py"]


@pytest.mark.parametrize(
    "args",
    [
        ("list", b"--name", NOT_UTF8),
        ("list", b"--queue", NOT_UTF8),
        ("queue", "pause", NOT_UTF8),
        ("queue", "resume", NOT_UTF8),
        ("status", NOT_UTF8),
        ("cancel", NOT_UTF8),
        ("submit", *ADD, b"--depends-on", NOT_UTF8),
        ("worker", "--burst", b"--queue", NOT_UTF8),
        ("worker", "--burst", b"--worker-id", NOT_UTF8),
    ],
    ids=[
        "list-name",
        "list-queue",
        "pause",
        "resume",
        "status",
        "cancel",
        "depends-on",
        "worker-queue",
        "worker-id",
    ],
)
def test_commands_refuse_text_that_is_not_utf8_in_one_sentence(
    folder: Path, args: tuple[str | bytes, ...]
) -> None:
    assert gigq(folder, "submit", *ADD).returncode == 0
    one_sentence(gigq(folder, *args), "is not valid text")


def test_the_python_api_refuses_lone_surrogates_with_a_gigq_error(tmp_path: Path) -> None:
    bad = NOT_UTF8.decode("utf-8", "surrogateescape")
    for build in (
        lambda: Job(bad, "tasks:add"),
        lambda: Job("ok", "tasks:add", queue=bad),
        lambda: Job("ok", "tasks:add", description=bad),
        lambda: Job("ok", "tasks:add", unique_key=bad),
    ):
        with pytest.raises(InvalidJobError, match="is not valid text"):
            build()
    with JobQueue(str(tmp_path / "jobs.db")) as jobs:
        for call in (
            lambda: jobs.jobs(name=bad),
            lambda: jobs.jobs(queue=[bad]),
            lambda: jobs.pause_queue(bad),
            lambda: jobs.resume_queue(bad),
            lambda: jobs.get_job(bad),
            lambda: jobs.resolve_id(bad),
            lambda: jobs.cancel_many([bad]),
            lambda: jobs.requeue_many([bad]),
            lambda: jobs.wait([bad], timeout=0),
        ):
            with pytest.raises(GigQError, match="is not valid text"):
                call()
        job = Job("ok", "tests.jobs:noop")
        job.id = bad  # set past the constructor's checks: the submit checks it too
        with pytest.raises(InvalidJobError, match="the id of job 'ok' is not valid text"):
            jobs.submit(job)
        assert jobs.stats()["total"] == 0
