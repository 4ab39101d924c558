"""Trust only what the user owns: files another user made or may write beside a database
are refused, by every command for planted journal files and by a worker for the rest.

Another user is real here: files are given to `nobody` with chown, which needs root (CI
runs as root); elsewhere these tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from gigq_core import Job, JobQueue
from gigq_sqlite._trust import run_problems
from tests.cli.helpers import assert_user_error, submit

pwd = pytest.importorskip("pwd")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="giving files to another user (chown) needs root"
)

NOBODY = pwd.getpwnam("nobody").pw_uid


def give_away(path: Path, mode: int) -> None:
    """Make `path` another user's file (nobody's), with `mode`."""
    os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)


def planted_wal(victim: Path, attacker_dir: Path, marker: Path) -> Path:
    """A -wal file that, beside `victim`, adds a job writing `marker`: built, as an attacker
    could, on a byte copy of the victim's database, then kept while its writer is open."""
    attacker_dir.mkdir()
    copy = attacker_dir / victim.name
    shutil.copyfile(victim, copy)
    conn = sqlite3.connect(copy)
    conn.execute("SELECT count(*) FROM jobs").fetchall()  # now a reader of the log
    with JobQueue(str(copy)) as queue:
        queue.submit(Job("evil", "tests.jobs:touch", params={"path": str(marker)}))
    wal = attacker_dir / f"{victim.name}-wal"
    stolen = attacker_dir / "stolen-wal"
    shutil.copyfile(wal, stolen)  # while `conn` keeps the log from being checkpointed
    conn.close()
    return stolen


@pytest.fixture
def sticky(tmp_path: Path) -> Path:
    """A folder like /tmp: world-writable, sticky, owned by root."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


def test_a_planted_wal_is_refused_by_every_command_and_never_merged(
    gigq, pm, tmp_path: Path, sticky: Path
) -> None:
    db = sticky / "jobs.db"
    marker = tmp_path / "marker"
    with JobQueue(str(db), plugin_manager=pm) as queue:
        mine = submit(queue)
    stolen = planted_wal(db, tmp_path / "attacker", marker)
    wal = Path(f"{db}-wal")
    assert not wal.exists()
    shutil.copyfile(stolen, wal)
    give_away(wal, 0o666)
    before = db.read_bytes()

    for args in (["list"], ["status", mine], ["worker", "--burst", "--executor", "inline"]):
        result = gigq(*args, db=str(db))
        assert_user_error(result, 77, "owned by nobody")
        assert "planted" in result.stderr
    assert db.read_bytes() == before, "the planted log was checkpointed into the database"
    assert not marker.exists()

    # Without the planted file, the victim's queue is as it was: one job, their own.
    wal.unlink()
    listed = json.loads(gigq("--json", "list", db=str(db)).stdout)
    assert [job["id"] for job in listed] == [mine]


def test_a_wal_others_may_write_is_refused(gigq, queue, db) -> None:
    submit(queue)
    queue.close()
    wal = Path(f"{db}-wal")
    wal.write_bytes(b"")
    wal.chmod(0o666)
    assert_user_error(gigq("list"), 77, "writable by group or others")
    allowed = gigq("list", env={"GIGQ_ALLOW_INSECURE_PERMISSIONS": "1"})
    assert allowed.exit_code == 0, allowed.output


def test_a_worker_refuses_a_database_another_user_owns(gigq, queue, db) -> None:
    submit(queue)
    queue.close()
    give_away(Path(db), 0o600)
    result = gigq("worker", "--burst", "--executor", "inline")
    assert_user_error(result, 78, "owned by nobody")
    doctor = json.loads(gigq("--json", "doctor").stdout)
    [check] = [c for c in doctor["checks"] if c["check"] == "file permissions"]
    assert check["level"] == "fail"
    assert "chown root" in check["fix"]
    assert json.loads(gigq("--json", "list").stdout)[0]["status"] == "pending"


def test_a_worker_refuses_a_folder_another_user_can_write(gigq, pm, tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = folder / "jobs.db"
    with JobQueue(str(db), plugin_manager=pm) as queue:
        submit(queue)
    give_away(folder, 0o1777)  # sticky does not help: they may plant files not made yet
    result = gigq("worker", "--burst", "--executor", "inline", db=str(db))
    assert_user_error(result, 78, "another user could plant or replace")
    doctor = json.loads(gigq("--json", "doctor", db=str(db)).stdout)
    [check] = [c for c in doctor["checks"] if c["check"] == "directory permissions"]
    assert check["level"] == "fail"
    # A root-owned /tmp-like folder is the user's own: the files' owners decide there.
    give_away(folder, 0o1777)
    os.chown(folder, 0, 0)
    assert run_problems(str(db)) == []


@pytest.mark.parametrize("args", [["submit", "tests.jobs:noop"], ["migrate", "--to", "{db}"]])
def test_an_empty_file_another_user_made_is_never_written(
    gigq, queue, tmp_path: Path, args: list[str]
) -> None:
    submit(queue)
    trap = tmp_path / "trap.db"
    trap.touch()
    give_away(trap, 0o666)
    if args[0] == "submit":
        result = gigq(*args, db=str(trap))
    else:
        result = gigq(*[a.format(db=trap) for a in args])
    assert_user_error(result, 77, "owned by nobody")
    assert trap.stat().st_size == 0
    with pytest.raises(Exception, match="owned by nobody"):
        JobQueue(str(trap))
    assert trap.stat().st_size == 0


def test_doctor_reports_each_file(gigq, queue, db) -> None:
    submit(queue)
    report = json.loads(gigq("--json", "doctor").stdout)
    checks = {c["check"]: c for c in report["checks"]}
    for name in ("file permissions", "wal file permissions", "shm file permissions"):
        assert checks[name]["level"] == "ok", checks[name]
        assert "owned by root" in checks[name]["detail"]
    assert checks["directory permissions"]["level"] == "ok"
