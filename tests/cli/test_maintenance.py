"""`gigq doctor` and `gigq backup`."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from gigq import JobQueue
from tests.cli.helpers import assert_user_error, run_one, submit


def test_doctor_on_a_healthy_queue_exits_0_with_every_check(gigq, queue):
    submit(queue)
    result = gigq("doctor")
    assert result.exit_code == 0, result.output
    for check in ("integrity", "journal mode", "synchronous", "stuck jobs", "file permissions"):
        assert check in result.stdout
    assert "Healthy" in result.stdout


def test_doctor_json_lists_levels_and_fixes(gigq, queue):
    result = gigq("--json", "doctor")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    levels = {c["check"]: c["level"] for c in report["checks"]}
    assert levels["integrity"] == "ok"
    assert levels["schema version"] == "ok"
    assert all({"check", "level", "detail", "fix"} <= set(c) for c in report["checks"])


def test_doctor_reports_a_job_stuck_past_its_lease_with_a_fix(gigq, queue, db, pm):
    job_id = submit(queue)
    claimed = queue.storage.claim("gone", 1, queue.clock.now(), 30.0)
    assert [j.id for j in claimed] == [job_id]
    raw = sqlite3.connect(db)
    raw.execute("UPDATE jobs SET lease_expires_at = ? WHERE id = ?", (time.time() - 60, job_id))
    raw.commit()
    raw.close()

    report = json.loads(gigq("--json", "doctor").stdout)

    [stuck] = [c for c in report["checks"] if c["check"] == "stuck jobs"]
    assert stuck["level"] == "warn"
    assert stuck["detail"].startswith("1 ")
    assert "worker" in stuck["fix"]


def test_doctor_fails_on_a_world_writable_database(gigq, queue, db):
    Path(db).chmod(0o666)
    result = gigq("doctor")
    assert result.exit_code == 1
    assert "chmod 600" in result.stdout


def test_doctor_on_a_missing_database_is_a_user_error(gigq, tmp_path):
    result = gigq("doctor", db=str(tmp_path / "nope.db"))
    assert_user_error(result, 1, "does not exist")
    assert not (tmp_path / "nope.db").exists()


def test_backup_copies_every_job_and_refuses_to_overwrite(gigq, queue, pm, tmp_path, db):
    ids = [submit(queue) for _ in range(3)]
    assert run_one(db, pm)
    target = tmp_path / "copy.db"

    result = gigq("backup", str(target))

    assert result.exit_code == 0, result.output
    assert "Backed up" in result.stdout
    assert target.stat().st_mode & 0o777 == 0o600
    with JobQueue(str(target), plugin_manager=pm) as copy:
        assert sorted(j["id"] for j in copy.list_jobs()) == sorted(ids)
        assert copy.stats()["completed"] == 1
    assert_user_error(gigq("backup", str(target)), 1, "already exists")


def test_a_worker_refuses_a_database_others_can_write(gigq, queue, db):
    submit(queue)
    Path(db).chmod(0o666)
    result = gigq("worker", "--once", "--executor", "inline")
    assert_user_error(result, 78, "writable by group or others")
    allowed = gigq(
        "worker", "--once", "--executor", "inline",
        env={"GIGQ_ALLOW_INSECURE_PERMISSIONS": "1"},
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
