"""Storage problems use the exit codes of RELIABILITY.md D10, and never change the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gigq_core import JobQueue

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
