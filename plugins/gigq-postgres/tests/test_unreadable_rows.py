"""Issue 16, one bad row never stops the queue, on PostgreSQL: its column types keep most
wrong values out, but a row changed by hand can still hold an unknown status, a time that
Python cannot hold ('infinity', a year past 9999), a NaN timeout or a NULL dependency.
Reads give an `UnreadableJob` stand-in and go on; a claim, rescue or finish ends such a
running row failed, reports it once at ERROR and goes on with the valid jobs."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from gigq_cli import create_cli
from gigq_core.errors import UnreadableJobError
from gigq_core.records import JobFilter, JobStatus, Outcome, UnreadableJob, WorkerInfo

#: (SQL assignment, reason) for values no job can hold that PostgreSQL accepts.
SPOILED = [
    ("status = 'bogus'", "status is 'bogus', not a job state"),
    ("created_at = 'infinity'", "created_at is 'infinity', not a time"),
    ("run_at = '-infinity'", "run_at is '-infinity', not a time"),
    ("updated_at = '20000-01-01'", "updated_at is '20000-01-01 00:00:00+00', not a time"),
    ("lease_expires_at = '0044-03-15 BC'", "lease_expires_at is '0044-03-15"),
    ("timeout = 'NaN'", "timeout is nan, not a number of seconds"),
    ("timeout = '-Infinity'", "timeout is -inf, not a number of seconds"),
    ("dependencies = '{NULL}'", "dependencies holds [None], not only job ids"),
]


def spoil(pg_url: str, job_id: str, assignment: str) -> None:
    """Change one job's row by hand, as a person with psql could."""
    server, _, query = pg_url.partition("?")
    schema = query.split("schema=", 1)[1].split("&", 1)[0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(schema))
        )
        conn.execute(f"UPDATE jobs SET {assignment} WHERE id = %s", (job_id,))  # type: ignore[arg-type]


def stored(pg_url: str, job_id: str) -> tuple[str, str | None]:
    """A job's stored (status, error)."""
    server, _, query = pg_url.partition("?")
    schema = query.split("schema=", 1)[1].split("&", 1)[0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(schema))
        )
        row = conn.execute("SELECT status, error FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize(("assignment", "reason"), SPOILED)
def test_reads_return_a_stand_in_and_go_on(
    storage: Any, pg_url: str, make_job: Any, clock: Any, assignment: str, reason: str
) -> None:
    good, bad = make_job(), make_job(name="bad")
    storage.insert([good, bad], clock.now())
    spoil(pg_url, bad.id, assignment)

    listed = storage.list_jobs(JobFilter(), order="oldest")
    many = storage.get_many([good.id, bad.id])

    assert [job.id for job in listed] == [good.id, bad.id]
    assert not isinstance(listed[0], UnreadableJob)
    for stand_in in (listed[1], storage.get(bad.id), many[bad.id]):
        assert isinstance(stand_in, UnreadableJob)
        assert stand_in.reason.startswith(reason)
        assert stand_in.status is JobStatus.FAILED
    with pytest.raises(UnreadableJobError, match=f"job '{bad.id}' cannot be read"):
        list(storage.export())


@pytest.mark.parametrize(
    "assignment",
    ["created_at = 'infinity'", "run_at = '-infinity'", "timeout = 'NaN'"],
)
def test_a_claim_ends_an_unreadable_row_failed_and_claims_the_jobs_behind_it(
    storage: Any,
    pg_url: str,
    make_job: Any,
    clock: Any,
    caplog: pytest.LogCaptureFixture,
    assignment: str,
) -> None:
    now = clock.now()
    bad = make_job(priority=10)
    good = [make_job() for _ in range(3)]
    child = make_job(dependencies=(bad.id,))
    storage.insert([bad, *good, child], now)
    spoil(pg_url, bad.id, assignment)

    with caplog.at_level(logging.ERROR, logger="gigq"):
        first = storage.claim("w1", 2, now, 60)
        rest = storage.claim("w1", 5, now, 60)

    assert [job.id for job in first + rest] == [job.id for job in good]
    assert len(first) == 2
    assert [r.levelno for r in caplog.records if bad.id in r.getMessage()] == [logging.ERROR]
    status, error = stored(pg_url, bad.id)
    assert status == "failed" and (error or "").startswith("unreadable row: ")
    assert stored(pg_url, child.id)[0] == "cancelled"
    assert storage.claim("w1", 5, now, 60) == []


def test_a_rescue_ends_an_unreadable_running_row_failed(
    storage: Any, pg_url: str, make_job: Any, clock: Any
) -> None:
    now = clock.now()
    lost, good = make_job(), make_job()
    storage.insert([lost, good], now)
    assert len(storage.claim("w1", 2, now, 60)) == 2
    spoil(pg_url, lost.id, "created_at = 'infinity'")

    rescued = storage.rescue(now + timedelta(seconds=120), ["w1"])

    assert [t.job.id for t in rescued] == [good.id]
    assert stored(pg_url, lost.id)[0] == "failed"
    assert stored(pg_url, good.id)[0] == "pending"


def test_a_finish_of_a_row_whose_run_at_was_spoiled_while_it_ran_ends_it_failed(
    storage: Any, pg_url: str, make_job: Any, clock: Any
) -> None:
    now = clock.now()
    bad, good = make_job(), make_job()
    storage.insert([bad, good], now)
    held = {job.id: str(job.token) for job in storage.claim("w1", 2, now, 60)}
    spoil(pg_url, bad.id, "run_at = 'infinity'")

    results = storage.finish(
        [
            Outcome(job_id=bad.id, token=held[bad.id], status="completed"),
            Outcome(job_id=good.id, token=held[good.id], status="completed"),
        ],
        now,
    )

    assert results[0] is None
    assert results[1] is not None and results[1].job.status is JobStatus.COMPLETED
    assert stored(pg_url, bad.id) == ("failed", "unreadable row: run_at is 'infinity', not a time")


def test_next_due_workers_and_workflows_survive_times_python_cannot_hold(
    storage: Any, pg_url: str, make_job: Any, clock: Any
) -> None:
    now = clock.now()
    later = make_job(workflow_id="wf-1", workflow_name="etl")
    storage.insert([later], now)
    spoil(pg_url, later.id, "run_at = 'infinity'")
    spoil(pg_url, later.id, "created_at = 'infinity'")
    storage.register_worker(
        WorkerInfo(id="bad", host="h", pid=1, started_at=now, last_heartbeat=now)
    )
    server, _, query = pg_url.partition("?")
    schema = query.split("schema=", 1)[1].split("&", 1)[0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(schema))
        )
        conn.execute("UPDATE workers SET last_heartbeat = 'infinity'")

    assert storage.next_due(now) is None
    spoil(pg_url, later.id, "run_at = '-infinity'")
    assert storage.next_due(now) == now
    assert storage.list_workers() == []
    [flow] = storage.list_workflows()
    assert (flow.id, flow.name) == ("wf-1", "etl")


def test_the_cli_lists_an_unreadable_row_and_status_says_what_is_wrong(
    storage: Any, pg_url: str, make_job: Any, clock: Any, plugin_manager: Any
) -> None:
    good, bad = make_job(name="good"), make_job(name="bad")
    storage.insert([good, bad], clock.now())
    spoil(pg_url, bad.id, "created_at = 'infinity'")
    cli = create_cli(plugin_manager)

    listed = CliRunner().invoke(cli, ["--db", pg_url, "list", "--sort", "oldest"])
    status = CliRunner().invoke(cli, ["--db", pg_url, "status", bad.id])
    submitted = CliRunner().invoke(
        cli, ["--db", pg_url, "submit", "tests.jobs:noop", "--depends-on", bad.id]
    )
    spoil(pg_url, bad.id, "status = 'bogus'")
    depends = CliRunner().invoke(
        cli, ["--db", pg_url, "submit", "tests.jobs:noop", "--depends-on", bad.id]
    )

    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[3].split() == [bad.id, "-", "unreadable", "-", "-", "-", "-"]
    assert f"Job {bad.id} cannot be read: created_at is 'infinity', not a time." in listed.stderr
    assert status.exit_code == 65
    assert status.stderr == (
        f"Error: job '{bad.id}' cannot be read: created_at is 'infinity', not a time;"
        " fix or delete its row\n"
    )
    assert submitted.exit_code == 0, submitted.output
    assert depends.exit_code == 65, depends.output
    assert "status is 'bogus', not a job state" in depends.stderr
