"""Issue 16, one bad row never stops the queue: rows of a GigQ database changed by hand
(raw SQL) so that they hold no job. Reads return an `UnreadableJob` stand-in and go on; a
claim, a rescue or a finish ends such a running row failed, reports it once at ERROR and
goes on with the valid jobs; nothing raises past the adapter but `UnreadableJobError`."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gigq_core.errors import UnreadableJobError
from gigq_core.records import JobFilter, JobRecord, JobStatus, Outcome, UnreadableJob, WorkerInfo
from gigq_core.testing import FakeClock
from gigq_sqlite import SqliteStorage

#: Column values that no job can hold, each with the words its reason must contain.
BAD_VALUES = [
    ("status", "bogus", "status is 'bogus', not a job state"),
    ("created_at", 1e300, "created_at is 1e+300, not a time"),
    ("created_at", "yesterday", "created_at is 'yesterday', not a time"),
    ("updated_at", -1e300, "updated_at is -1e+300, not a time"),
    ("lease_expires_at", 1e300, "lease_expires_at is 1e+300, not a time"),
    ("started_at", b"\x00", "started_at is b'\\x00', not a time"),
    ("priority", "high", "priority is 'high', not a whole number"),
    ("priority", 1.5, "priority is 1.5, not a whole number"),
    ("attempts", "two", "attempts is 'two', not a whole number"),
    ("timeout", "long", "timeout is 'long', not a number of seconds"),
    ("timeout", float("inf"), "timeout is inf, not a number of seconds"),
    # (A number written to a text column is stored as text: only a blob is not text.)
    ("name", b"n", "name is b'n', not text"),
    ("function", b"mod:f", "function is b'mod:f', not text"),
    ("params", b"{}", "params is b'{}', not text"),
]


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2030-01-01 UTC."""
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the database of a test lives."""
    return tmp_path / "jobs.db"


@pytest.fixture
def storage(db_path: Path) -> Iterator[SqliteStorage]:
    """A fresh SqliteStorage on `db_path`."""
    opened = SqliteStorage(db_path)
    try:
        yield opened
    finally:
        opened.close()


def make_job(now: datetime, **fields: Any) -> JobRecord:
    """A valid job record submitted at `now`."""
    job_id = fields.pop("id", None) or str(uuid.uuid4())
    defaults: dict[str, Any] = {
        "name": f"job-{job_id[:8]}",
        "function": "tests.jobs:noop",
        "params": "{}",
        "run_at": now,
        "created_at": now,
        "updated_at": now,
    }
    return JobRecord(id=job_id, **{**defaults, **fields})


def write(path: Path, sql: str, *args: Any) -> None:
    """Run one statement through a separate plain connection, as a person with sqlite3
    (or another program) would."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def spoil(path: Path, job_id: str, column: str, value: Any) -> None:
    """Set one column of a job's row to `value`, which SQLite keeps whatever its type."""
    write(path, f"UPDATE jobs SET {column} = ? WHERE id = ?", value, job_id)


# -- reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value", "reason"), BAD_VALUES)
def test_reads_return_a_stand_in_and_go_on(
    storage: SqliteStorage, db_path: Path, clock: FakeClock, column: str, value: Any, reason: str
) -> None:
    now = clock.now()
    good, bad = make_job(now), make_job(now, name="bad")
    storage.insert([good, bad], now)
    spoil(db_path, bad.id, column, value)

    listed = storage.list_jobs(JobFilter(), order="oldest")
    got = storage.get(bad.id)
    many = storage.get_many([good.id, bad.id])

    assert [job.id for job in listed] == [good.id, bad.id]
    assert not isinstance(listed[0], UnreadableJob)
    for stand_in in (listed[1], got, many[bad.id]):
        assert isinstance(stand_in, UnreadableJob)
        assert stand_in.reason == reason
        assert stand_in.status is JobStatus.FAILED
        assert stand_in.error == f"unreadable row: {reason}"
        assert stand_in.seq == listed[0].seq + 1
    assert many[good.id] == listed[0]
    assert storage.executions(bad.id) == []


def test_an_unreadable_execution_row_is_one_error_naming_the_job(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    job = make_job(now)
    storage.insert([job], now)
    [claimed] = storage.claim("w1", 1, now, 60)
    assert claimed.token is not None
    storage.finish([Outcome(job_id=job.id, token=claimed.token, status="completed")], now)
    write(db_path, "UPDATE job_executions SET started_at = 'soon' WHERE job_id = ?", job.id)

    with pytest.raises(UnreadableJobError) as raised:
        storage.executions(job.id)

    assert str(raised.value) == (
        f"job '{job.id}' cannot be read: one of its execution rows: started_at is 'soon',"
        " not a time; fix or delete its row"
    )
    assert raised.value.exit_code == 65


def test_unreadable_worker_rows_are_left_out_of_the_listing(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    for worker_id in ("good", "bad-time", "bad-queues"):
        storage.register_worker(
            WorkerInfo(id=worker_id, host="h", pid=1, started_at=now, last_heartbeat=now)
        )
    write(db_path, "UPDATE workers SET last_heartbeat = 1e300 WHERE id = 'bad-time'")
    write(db_path, "UPDATE workers SET queues = '{nope' WHERE id = 'bad-queues'")

    assert [w.id for w in storage.list_workers()] == ["good"]


def test_a_workflow_whose_first_row_has_no_time_is_still_listed(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    job = make_job(now, workflow_id="wf-1", workflow_name="etl")
    storage.insert([job], now)
    spoil(db_path, job.id, "created_at", 1e300)

    [flow] = storage.list_workflows()

    assert (flow.id, flow.name, flow.counts) == ("wf-1", "etl", {"pending": 1})
    assert flow.created_at == datetime.fromtimestamp(0, flow.created_at.tzinfo)


@pytest.mark.parametrize(
    ("run_at", "due"), [(1e300, None), (-1e300, "now"), ("tomorrow", None), (b"x", None)]
)
def test_next_due_survives_a_run_at_that_is_no_time(
    storage: SqliteStorage, db_path: Path, clock: FakeClock, run_at: Any, due: str | None
) -> None:
    now = clock.now()
    job = make_job(now)
    storage.insert([job], now)
    spoil(db_path, job.id, "run_at", run_at)

    assert storage.next_due(now) == (now if due == "now" else None)


def test_requeue_and_cancel_leave_a_row_with_an_unknown_status_alone(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    job = make_job(now)
    storage.insert([job], now)
    spoil(db_path, job.id, "status", "bogus")

    assert storage.requeue([job.id], now) == []
    assert storage.cancel([job.id], now, "stop") == []
    assert isinstance(storage.get(job.id), UnreadableJob)


def test_export_names_the_unreadable_job(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    job = make_job(now)
    storage.insert([job], now)
    spoil(db_path, job.id, "status", "bogus")

    with pytest.raises(UnreadableJobError, match=f"job '{job.id}' cannot be read: status"):
        list(storage.export())


# -- claim, rescue, finish -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("created_at", 1e300),
        ("run_at", -1e300),
        ("priority", "high"),  # sorts before every number: first in line
        ("timeout", "long"),
        ("name", b"n"),
    ],
)
def test_a_claim_ends_an_unreadable_row_failed_and_claims_the_valid_jobs_behind_it(
    storage: SqliteStorage,
    db_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    column: str,
    value: Any,
) -> None:
    now = clock.now()
    bad = make_job(now, priority=10)
    good = [make_job(now) for _ in range(3)]
    child = make_job(now, dependencies=(bad.id,))
    storage.insert([bad, *good, child], now)
    spoil(db_path, bad.id, column, value)

    with caplog.at_level(logging.ERROR, logger="gigq"):
        first = storage.claim("w1", 2, now, 60)
        second = storage.claim("w1", 5, now, 60)
        third = storage.claim("w1", 5, now, 60)

    assert [job.id for job in first + second] == [job.id for job in good]
    assert len(first) == 2  # the unreadable row did not take a slot
    assert third == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert bad.id in errors[0].getMessage()
    assert f"{column} is {value!r}"[:20] in errors[0].getMessage()
    row = raw_row(db_path, bad.id)
    assert row["status"] == "failed"
    assert row["error"].startswith(f"unreadable row: {column} is ")
    assert row["token"] is None and row["lease_expires_at"] is None
    assert row[column] == value  # kept for the operator to see
    cancelled = storage.get(child.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert bad.id in (cancelled.error or "")


def test_a_claim_of_only_unreadable_rows_returns_nothing_and_ends_them_all(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    jobs = [make_job(now) for _ in range(5)]
    storage.insert(jobs, now)
    for job in jobs:
        spoil(db_path, job.id, "created_at", 1e300)

    assert storage.claim("w1", 2, now, 60) == []
    assert {raw_row(db_path, job.id)["status"] for job in jobs} == {"failed"}


def test_a_rescue_ends_an_unreadable_running_row_failed(
    storage: SqliteStorage, db_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    now = clock.now()
    bad, good = make_job(now), make_job(now)
    storage.insert([bad, good], now)
    assert len(storage.claim("w1", 2, now, 60)) == 2
    spoil(db_path, bad.id, "lease_expires_at", -1e300)  # expired, and no time
    spoil(db_path, bad.id, "created_at", "x")

    with caplog.at_level(logging.ERROR, logger="gigq"):
        rescued = storage.rescue(now + timedelta(seconds=120))

    assert [t.job.id for t in rescued] == [good.id]
    assert raw_row(db_path, bad.id)["status"] == "failed"
    assert [r.levelno for r in caplog.records if bad.id in r.getMessage()] == [logging.ERROR]


def test_a_finish_of_a_row_spoiled_while_it_ran_ends_it_failed(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    bad, good = make_job(now), make_job(now)
    storage.insert([bad, good], now)
    held = {job.id: job.token for job in storage.claim("w1", 2, now, 60)}
    spoil(db_path, bad.id, "created_at", 1e300)

    stale = storage.finish([Outcome(job_id=bad.id, token="other", status="completed")], now)
    assert stale == [None]
    assert raw_row(db_path, bad.id)["status"] == "running"  # fenced: not this attempt's
    results = storage.finish(
        [
            Outcome(job_id=bad.id, token=str(held[bad.id]), status="completed"),
            Outcome(job_id=good.id, token=str(held[good.id]), status="completed"),
        ],
        now,
    )

    assert results[0] is None
    assert results[1] is not None and results[1].job.status is JobStatus.COMPLETED
    assert raw_row(db_path, bad.id)["status"] == "failed"


def raw_row(path: Path, job_id: str) -> sqlite3.Row:
    """A job's row as stored."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert row is not None
        return row
    finally:
        conn.close()


def test_text_that_is_not_utf8_makes_its_row_unreadable_not_every_read(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    bad, good = make_job(now), make_job(now)
    storage.insert([bad, good], now)
    write(db_path, "UPDATE jobs SET name = CAST(x'ff41' AS TEXT) WHERE id = ?", bad.id)

    listed = storage.list_jobs(JobFilter(), order="oldest")
    claimed = storage.claim("w1", 2, now, 60)

    assert isinstance(listed[0], UnreadableJob)
    assert listed[0].reason == "name is b'\\xffA', not text"
    assert [job.id for job in claimed] == [good.id]
    conn = sqlite3.connect(db_path)
    try:
        [status] = conn.execute("SELECT status FROM jobs WHERE id = ?", (bad.id,)).fetchone()
    finally:
        conn.close()
    assert status == "failed"
    assert storage.get(good.id) is not None  # the connection reads text as str again


def test_counts_and_paused_queues_survive_names_that_are_not_text(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    now = clock.now()
    job = make_job(now)
    storage.insert([job, make_job(now)], now)
    storage.set_queue_paused("q", True)
    spoil(db_path, job.id, "queue", b"\xff")
    spoil(db_path, job.id, "status", b"\x01")
    write(db_path, "UPDATE paused_queues SET queue = x'fe'")

    assert storage.queue_counts() == {"b'\\xff'": {"b'\\x01'": 1}, "default": {"pending": 1}}
    assert storage.count(JobFilter()) == {"b'\\x01'": 1, "pending": 1}
    assert storage.paused_queues() == frozenset({"b'\\xfe'"})
