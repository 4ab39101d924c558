"""The claim and the execution update keep one index-driven plan whatever the planner's
statistics: taken while the table was empty (a burst arriving on an established queue)
or with 100,000 rows in it.

Each statement runs as the storage runs it: on one of its connections (same session
settings), repeated past psycopg's prepare threshold so a cached plan would show.
auto_explain reports the plans actually executed, nested
ones included (the claim's ready rows come from the schema's gigq_ready_jobs function).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from _pg import make_pm, with_schema
from gigq_core.plugins import open_storage
from gigq_postgres.schema import SCHEMA_VERSION
from gigq_sql.lifecycle import _END_ATTEMPT
from gigq_sql.postgresql import _END_EXECUTION, CLAIM, POSTGRES

PENDING = 100_000
NOW = datetime(2030, 1, 1, tzinfo=UTC)
# psycopg prepares a statement on its 5th run; PostgreSQL may then switch to a generic plan
# after 5 more.
RUNS = 12

_FILL_JOBS = """
INSERT INTO jobs (id, name, function, params, queue, priority, status, attempts, max_attempts,
    retry, retry_params, description, unique_scope, run_at, created_at, updated_at)
SELECT 'job-' || g, 'noop', 'benchmarks.jobs:noop', '{}', 'default', g %% 3, 'pending', 0, 3,
    'none', '{}', '', 'none', %(at)s - interval '1 hour', %(at)s, %(at)s
FROM generate_series(1, %(count)s::int) AS g
"""
_FILL_EXECUTIONS = """
INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status, started_at)
SELECT 'exec-' || g, 'job-' || g, 1, 'w', 'token-' || g, 'running', %(at)s
FROM generate_series(%(first)s::int, %(last)s::int) AS g
"""


_AUTO_EXPLAIN = {
    "log_min_duration": "0",
    "log_nested_statements": "on",
    "log_level": "notice",
    "log_format": "json",
}


@pytest.fixture
def conn(storage: Any) -> Iterator[psycopg.Connection]:
    """One of the storage's own connections, reporting executed plans as JSON notices."""
    with storage._db.connection() as raw:
        raw.execute("LOAD 'auto_explain'")
        try:
            yield raw
        finally:
            for setting in _AUTO_EXPLAIN:
                raw.execute(f"RESET auto_explain.{setting}")


def executed_plans(conn: psycopg.Connection, query: str, params: Any) -> list[dict[str, Any]]:
    """The plans (top-level and nested) of the last of RUNS runs of `query`.

    The runs commit: a rollback would make psycopg drop its prepared statements, and with
    them the cached plans this is about."""
    plans: list[dict[str, Any]] = []

    def collect(diagnostic: psycopg.errors.Diagnostic) -> None:
        text = diagnostic.message_primary or ""
        if "plan:" in text:
            plans.append(json.loads(text.split("plan:", 1)[1])["Plan"])

    for _ in range(RUNS - 1):
        cursor = conn.execute(query, params)
        if cursor.description is not None:
            cursor.fetchall()
    for setting, value in _AUTO_EXPLAIN.items():
        conn.execute(f"SET auto_explain.{setting} = {value}")
    conn.add_notice_handler(collect)
    try:
        cursor = conn.execute(query, params)
        if cursor.description is not None:
            cursor.fetchall()
    finally:
        conn.remove_notice_handler(collect)
        conn.execute("RESET auto_explain.log_min_duration")
    assert plans, "auto_explain reported no plan"
    return plans


def nodes(plan: dict[str, Any], *, inputs_only: bool = False) -> Iterator[dict[str, Any]]:
    """`plan` and every node under it (`inputs_only`: not through InitPlans and SubPlans,
    which a node runs but does not read its rows from)."""
    yield plan
    for child in plan.get("Plans", ()):
        if not inputs_only or child.get("Parent Relationship") not in ("InitPlan", "SubPlan"):
            yield from nodes(child, inputs_only=inputs_only)


def scans_of(plan: dict[str, Any], table: str, *, inputs_only: bool = False) -> list[Any]:
    """The scan nodes of `plan` that read `table`."""
    return [
        node
        for node in nodes(plan, inputs_only=inputs_only)
        if node.get("Relation Name") == table and node["Node Type"].endswith("Scan")
    ]


def assert_index_driven(plan: dict[str, Any], table: str) -> None:
    """No sequential scan of `table`, and no Sort of rows read from it."""
    for node in scans_of(plan, table):
        assert node["Node Type"] != "Seq Scan", node
    for node in nodes(plan):
        if node["Node Type"] == "Sort":
            assert not scans_of(node, table, inputs_only=True), f"a Sort over {table}: {node}"


def analyze(conn: psycopg.Connection, table: str) -> None:
    conn.execute(f"ANALYZE {table}")


def fill_jobs(conn: psycopg.Connection) -> None:
    conn.execute(_FILL_JOBS, {"at": NOW, "count": PENDING})


@pytest.mark.parametrize("analyzed", ["while empty", "with the backlog"])
@pytest.mark.parametrize("queues", [None, ["default"]], ids=["any queue", "named queues"])
@pytest.mark.parametrize("limit", [1, 32])
def test_a_claim_walks_jobs_ready_whatever_the_statistics(conn, analyzed, queues, limit):
    if analyzed == "while empty":
        analyze(conn, "jobs")
        fill_jobs(conn)
    else:
        fill_jobs(conn)
        analyze(conn, "jobs")
    params = {
        "now": NOW,
        "worker": "w",
        "lease_end": NOW + timedelta(minutes=5),
        "limit": limit,
        "queues": queues,
    }

    plans = executed_plans(conn, CLAIM, params)

    ready = [p for p in plans if scans_of(p, "jobs") and not scans_of(p, "job_executions")]
    ready = [p for p in ready if any(n.get("Index Name") == "jobs_ready" for n in nodes(p))]
    assert ready, f"no plan walks jobs_ready: {plans}"
    for plan in plans:
        assert_index_driven(plan, "jobs")
    # The walk stops after the rows it returns, not at the end of the backlog.
    (walk,) = [n for n in nodes(ready[0]) if n.get("Index Name") == "jobs_ready"]
    assert not any(n["Node Type"] == "Sort" for n in nodes(ready[0]))
    assert walk["Scan Direction"] == "Forward"


@pytest.mark.parametrize("analyzed", ["while empty", "with many rows"])
def test_the_execution_update_uses_its_index_whatever_the_statistics(conn, analyzed):
    def fill(first: int, last: int) -> None:
        conn.execute(_FILL_EXECUTIONS, {"at": NOW, "first": first, "last": last})

    if analyzed == "while empty":
        analyze(conn, "job_executions")
        # A few finishes while the table is small: a cached plan would be made now.
        fill(1, 20)
        for number in range(1, RUNS + 1):
            conn.execute(
                _END_EXECUTION,
                ("completed", None, None, None, None, NOW, f"job-{number}", f"token-{number}"),
            )
        fill(21, PENDING)
    else:
        fill(1, PENDING)
        analyze(conn, "job_executions")
    params = ("completed", None, None, None, None, NOW, "job-5000", "token-5000")

    plans = executed_plans(conn, _END_EXECUTION, params)

    (plan,) = plans
    assert_index_driven(plan, "job_executions")
    assert [n.get("Index Name") for n in scans_of(plan, "job_executions")] == ["job_executions_job"]


@pytest.mark.parametrize("analyzed", ["while empty", "with the backlog"])
def test_a_finish_looks_its_job_up_by_id_whatever_the_statistics(conn, analyzed):
    if analyzed == "while empty":
        analyze(conn, "jobs")
        fill_jobs(conn)
    else:
        fill_jobs(conn)
        analyze(conn, "jobs")
    # Jobs run since the statistics were taken leave dead row versions in the indexes of
    # running jobs (autovacuum has not come by yet).
    conn.execute(
        "UPDATE jobs SET status = 'running', token = 'token-' || id, lease_expires_at = %s"
        " WHERE substr(id, 5)::int <= 3000",
        (NOW,),
    )
    conn.execute(
        "UPDATE jobs SET status = 'completed', token = NULL, lease_expires_at = NULL"
        " WHERE substr(id, 5)::int < 3000"
    )
    job_id, token = conn.execute("SELECT id, token FROM jobs WHERE id = 'job-3000'").fetchone()
    params = ("completed", 1, 0, NOW, None, None, NOW, NOW, job_id, token)

    plans = executed_plans(conn, POSTGRES.render(_END_ATTEMPT), params)

    (plan,) = plans
    assert_index_driven(plan, "jobs")
    # By its id, through an index scan or a bitmap of one entry.
    assert [n["Index Name"] for n in nodes(plan) if "Index Name" in n] == ["jobs_id_key"]


@pytest.fixture
def version_one_store(pg_server: str) -> Iterator[str]:
    """A store as version 1 of the schema left it (no gigq_ready_jobs), with a pending job;
    its schema. Dropped afterwards."""
    schema = "gigq_scratch_plans"
    url = with_schema(pg_server, schema)
    with psycopg.connect(pg_server, autocommit=True) as raw:
        raw.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    open_storage(url, None, pm=make_pm()).close()
    with psycopg.connect(pg_server, autocommit=True) as raw:
        raw.execute(f"SET search_path TO {schema}")
        raw.execute("DROP FUNCTION gigq_ready_jobs")
        raw.execute("UPDATE gigq_meta SET value = '1' WHERE key = 'schema_version'")
        raw.execute(_FILL_JOBS, {"at": NOW, "count": 1})
    try:
        yield schema
    finally:
        with psycopg.connect(pg_server, autocommit=True) as raw:
            raw.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_opening_a_version_one_store_adds_the_claim_function(pg_server, version_one_store):
    store = open_storage(with_schema(pg_server, version_one_store), None, pm=make_pm())
    try:
        claimed = store.claim("w", 1, NOW, 60.0, None)
    finally:
        store.close()

    assert [job.id for job in claimed] == ["job-1"]
    with psycopg.connect(pg_server) as raw:
        row = raw.execute(
            f"SELECT value FROM {version_one_store}.gigq_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert row is not None
    assert int(row[0]) == SCHEMA_VERSION == 2
