"""Storage problems use the exit codes of docs/guarantees.md D10, and never change the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gigq import JobQueue

from .conftest import Run
from .helpers import assert_user_error, submit

COMMANDS = [
    ["list"],
    ["status", "abc"],
    ["submit", "tests.jobs:noop"],
    ["cancel", "--status", "pending"],
    ["requeue", "abc"],
    ["clear"],
    ["wait", "abc"],
    ["stats"],
    ["workers"],
    ["queue", "list"],
    ["queue", "pause", "q"],
    ["worker", "--once"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_a_garbage_db_file_exits_65_and_is_never_modified(
    gigq: Run, tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "garbage.db"
    data = bytes(range(256)) * 64
    path.write_bytes(data)
    result = gigq(*args, db=str(path))
    assert_user_error(result, 65, "not a GigQ database")
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.db"]


def test_a_foreign_sqlite_database_exits_65_and_is_unchanged(gigq: Run, tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    data = path.read_bytes()
    assert_user_error(gigq("list", db=str(path)), 65, "not a GigQ database")
    assert_user_error(gigq("submit", "tests.jobs:noop", db=str(path)), 65)
    assert path.read_bytes() == data


def test_a_database_of_a_newer_schema_exits_65(gigq: Run, queue: JobQueue, db: str) -> None:
    queue.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    data = Path(db).read_bytes()
    assert_user_error(gigq("list"), 65, "newer")
    assert_user_error(gigq("submit", "tests.jobs:noop"), 65, "newer")
    assert Path(db).read_bytes() == data


def test_a_read_only_database_refuses_writes_with_77(gigq: Run, queue: JobQueue, db: str) -> None:
    job_id = submit(queue)
    read_only = f"sqlite:///{db}?read_only=1"
    assert gigq("list", db=read_only).exit_code == 0
    assert_user_error(gigq("cancel", job_id, db=read_only), 77, "read-only")
    assert queue.get_status(job_id)["status"] == "pending"


def test_a_missing_database_is_a_user_error_and_is_not_created(gigq: Run, db: str) -> None:
    assert_user_error(gigq("list"), 1, "does not exist")
    assert not Path(db).exists()


def test_the_default_database_is_gigq_db_in_the_current_directory(
    gigq: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GIGQ_DB", raising=False)
    assert_user_error(gigq("list", db=None), 1, "gigq.db")
    assert gigq("submit", "tests.jobs:noop", db=None).exit_code == 0
    assert (tmp_path / "gigq.db").exists()
    assert gigq("list", db=None).stdout.count("noop") == 1


def test_a_bad_setting_exits_78(gigq: Run, queue: JobQueue, db: str) -> None:
    assert_user_error(gigq("list", db=f"sqlite:///{db}?durability=fast"), 78, "durability")


@pytest.mark.parametrize(
    ("args", "code", "contains"),
    [
        (("list", "--limit", str(2**63)), 2, "--limit"),
        (("workflow", "list", "--limit", str(2**63)), 2, "--limit"),
        (("clear", "--before", "800000"), 2, "--before"),
        (("clear", "--before", "nan"), 2, "finite"),
        (("workers", "--since", "2000000000"), 2, "--since"),
        (("workers", "--since", "inf"), 2, "--since"),
        (("workers", "--since", "nan"), 2, "finite"),
        (("wait", "--timeout", "nan"), 2, "finite"),
        (("worker", "--concurrency", "100000000000"), 2, "--concurrency"),
        (("worker", "--burst", "--lease", "nan"), 78, "lease"),
        (("worker", "--burst", "--lease", "inf"), 78, "lease"),
        (("worker", "--burst", "--grace", "nan"), 78, "grace"),
        (("worker", "--burst", "--polling-interval", "nan"), 78, "polling_interval"),
        (("submit", "tests.jobs:noop", "--max-attempts", str(2**63)), 1, "max_attempts"),
    ],
    ids=lambda value: value if isinstance(value, int) else None,
)
def test_out_of_range_numbers_get_one_sentence(
    gigq: Run, queue: JobQueue, args: tuple[str, ...], code: int, contains: str
) -> None:
    # Numbers a range check lets through (NaN, infinities, values past 64 bits or the
    # calendar) used to end in tracebacks, and a huge --concurrency forked without end.
    result = gigq(*args)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert contains.lower() in result.stderr.lower(), result.stderr


@pytest.mark.parametrize(
    ("name", "value", "contains"),
    [
        ("GIGQ_CONCURRENCY", "0", "concurrency"),
        ("GIGQ_CONCURRENCY", "5000", "concurrency"),
        ("GIGQ_EXECUTOR", "thread", "executor"),
        ("GIGQ_MAX_JOBS_PER_CHILD", "-1", "max_jobs_per_child"),
        ("GIGQ_MAX_CHILD_MEMORY", "-5", "max_child_memory"),
        ("GIGQ_LEASE", "nan", "lease"),
    ],
)
def test_bad_worker_settings_from_the_environment_exit_78(
    gigq: Run, queue: JobQueue, name: str, value: str, contains: str
) -> None:
    assert_user_error(gigq("worker", "--burst", env={name: value}), 78, contains)
