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
import struct
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


@pytest.mark.parametrize(
    ("mode", "owner", "group", "says"),
    [
        (0o1777, NOBODY, NOBODY, "belongs to another user"),  # sticky does not help
        (0o755, NOBODY, NOBODY, "belongs to another user"),  # theirs: they may plant files
        (0o1777, 0, 0, "writable by group or others"),  # like /tmp, even for root
        (0o770, 0, NOBODY, "writable by group or others"),  # a group of other users
    ],
)
def test_a_worker_refuses_a_folder_another_user_can_write(
    gigq, pm, tmp_path: Path, mode: int, owner: int, group: int, says: str
) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = folder / "jobs.db"
    with JobQueue(str(db), plugin_manager=pm) as queue:
        submit(queue)
    os.chown(folder, owner, group)
    folder.chmod(mode)
    result = gigq("worker", "--burst", "--executor", "inline", db=str(db))
    assert_user_error(result, 78, says)
    doctor = json.loads(gigq("--json", "doctor", db=str(db)).stdout)
    [check] = [c for c in doctor["checks"] if c["check"] == "directory permissions"]
    assert check["level"] == "fail"
    # The same folder, only the user's (group-writable for the user's own group): trusted.
    os.chown(folder, 0, 0)
    folder.chmod(0o775)
    assert run_problems(str(db)) == []


def hot_journal(source: Path) -> bytes:
    """A rollback journal that, beside any database, replays `source`'s pages into it: a
    "hot" journal as a crashed writer leaves one, built as another user could."""
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(source.read_bytes())
    data[18] = data[19] = 2  # keep the WAL-mode marks of the database it lands beside
    (size,) = struct.unpack(">H", data[16:18])
    size = 65536 if size == 1 else size
    pages, nonce, sector = len(data) // size, 0x5EED, 512
    header = bytes.fromhex("d9d505f920a163d7") + struct.pack(
        ">IIIII", pages, nonce, pages, sector, size
    )
    out = bytearray(header.ljust(sector, b"\0"))
    for number in range(pages):
        page = data[number * size : (number + 1) * size]
        checksum = nonce + sum(page[i] for i in range(size - 200, 0, -200))
        out += struct.pack(">I", number + 1) + page + struct.pack(">I", checksum & 0xFFFFFFFF)
    return bytes(out)


def test_a_planted_rollback_journal_is_refused_and_never_replayed(
    gigq, pm, tmp_path: Path, sticky: Path
) -> None:
    db, evil_db, marker = sticky / "jobs.db", tmp_path / "evil.db", tmp_path / "marker"
    with JobQueue(str(db), plugin_manager=pm) as queue:
        mine = submit(queue)
    with JobQueue(str(evil_db), plugin_manager=pm) as queue:
        queue.submit(Job("evil", "tests.jobs:touch", params={"path": str(marker)}))
    journal = Path(f"{db}-journal")
    journal.write_bytes(hot_journal(evil_db))
    give_away(journal, 0o666)
    before = db.read_bytes()

    for args in (["list"], ["status", mine], ["worker", "--burst", "--executor", "inline"]):
        result = gigq(*args, db=str(db))
        assert_user_error(result, 77, "owned by nobody")
    assert db.read_bytes() == before, "the planted journal was replayed"
    assert not marker.exists()

    # The journal is a real attack: trusted anyway, SQLite replays it and the victim's
    # queue becomes the attacker's.
    trusted = gigq("--json", "list", db=str(db), env={"GIGQ_ALLOW_INSECURE_PERMISSIONS": "1"})
    assert [job["name"] for job in json.loads(trusted.stdout)] == ["evil"]


def test_a_symlink_another_user_planted_is_never_followed(gigq, tmp_path: Path) -> None:
    shared, mine = tmp_path / "shared", tmp_path / "mine"
    shared.mkdir()
    shared.chmod(0o1777)
    mine.mkdir(mode=0o700)
    link = shared / "jobs.db"
    link.symlink_to(mine / "jobs.db")
    os.lchown(link, NOBODY, NOBODY)
    result = gigq("submit", "tests.jobs:noop", db=str(link))
    assert_user_error(result, 77, "symlink made by nobody")
    assert not (mine / "jobs.db").exists()


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
