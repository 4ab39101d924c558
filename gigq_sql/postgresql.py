"""The PostgreSQL dialect: times as timestamptz, booleans as boolean, id lists as one text[]
parameter read with `= ANY`, dependencies in a text[] column of the job, execution records
opened by the claim, and row locks (FOR UPDATE, FOR SHARE, SKIP LOCKED) wherever a
transaction reads what it decides on.

Times are the caller's `now`: the contract drives time with a clock it passes in, and the
server's clock is never consulted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gigq_core.records import Execution, JobRecord
from gigq_sql.connection import Connection
from gigq_sql.dialect import BadColumn, Claim, Dialect, EndedAttempt, show
from gigq_sql.rows import BOOKKEEPING_COLUMNS, JOB_COLUMNS, error_columns

#: The job columns and, last, the dependencies: every job row carries them.
JOB_SELECT = ", ".join((*JOB_COLUMNS, "dependencies"))


def job_select(alias: str) -> str:
    """JOB_SELECT with every column qualified by a table alias."""
    return ", ".join(f"{alias}.{column}" for column in (*JOB_COLUMNS, "dependencies"))


# One statement: pick the ready jobs (skipping rows other claimers hold; the schema's
# gigq_ready_jobs, which keeps one plan whatever the statistics), mark them running with a
# fresh token, and open an execution record for each. started_at is never before a
# dependency's completed_at: the caller reads its clock before the statement runs, and a
# dependency may complete (later by the clock) in between.
CLAIM = f"""
WITH ready AS (
    SELECT seq FROM gigq_ready_jobs(%(now)s, %(limit)s, %(queues)s::text[])
), claimed AS (
    UPDATE jobs j SET status = 'running', attempts = j.attempts + 1,
        token = replace(gen_random_uuid()::text, '-', ''), worker_id = %(worker)s,
        started_at = GREATEST(%(now)s, (SELECT max(p.completed_at) FROM jobs p
            WHERE p.id = ANY(j.dependencies))),
        lease_expires_at = %(lease_end)s, updated_at = %(now)s,
        cancel_requested = false
    FROM ready WHERE j.seq = ready.seq
    RETURNING {job_select("j")}
), opened AS (
    INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status, started_at)
    SELECT gen_random_uuid()::text, id, attempts, %(worker)s, token, 'running', started_at
    FROM claimed ORDER BY priority DESC, seq
)
SELECT * FROM claimed ORDER BY priority DESC, seq
"""

# A reservation: held under a token and a lease, not started (no attempt counted, no
# started_at, no execution record until START).
RESERVE = f"""
WITH ready AS (
    SELECT j.seq FROM jobs j
    WHERE j.status = 'pending' AND j.blocked = 0 AND j.run_at <= %(now)s
        AND (%(queues)s::text[] IS NULL OR j.queue = ANY(%(queues)s::text[]))
        AND j.function = ANY(%(functions)s::text[])
        AND j.queue NOT IN (SELECT p.queue FROM paused_queues p)
    ORDER BY j.priority DESC, j.seq
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), reserved AS (
    UPDATE jobs j SET status = 'running', token = replace(gen_random_uuid()::text, '-', ''),
        worker_id = %(worker)s, started_at = NULL, lease_expires_at = %(lease_end)s,
        updated_at = %(now)s, cancel_requested = false
    FROM ready WHERE j.seq = ready.seq
    RETURNING {job_select("j")}
)
SELECT * FROM reserved ORDER BY priority DESC, seq
"""

START = """
WITH started AS (
    UPDATE jobs j SET attempts = j.attempts + 1,
        started_at = GREATEST(%(now)s, (SELECT max(p.completed_at) FROM jobs p
            WHERE p.id = ANY(j.dependencies))),
        updated_at = %(now)s
    WHERE j.id = %(id)s AND j.status = 'running' AND j.token = %(token)s
        AND j.started_at IS NULL
    RETURNING j.id, j.attempts, j.started_at, j.worker_id, j.token
), opened AS (
    INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status, started_at)
    SELECT gen_random_uuid()::text, id, attempts, worker_id, token, 'running', started_at
    FROM started
)
SELECT id, attempts, started_at FROM started
"""

# A running row that cannot be read ends failed, by `seq`. The rest of the row is left as
# it was, for an operator to look at, fix or delete.
_FAIL_UNREADABLE = """
WITH old AS (
    SELECT seq, token FROM jobs WHERE seq = %(seq)s AND status = 'running' {fence}
    FOR UPDATE
)
UPDATE jobs j SET status = 'failed', error = %(error)s, token = NULL,
    lease_expires_at = NULL, completed_at = %(now)s, updated_at = %(now)s,
    cancel_requested = false
FROM old WHERE j.seq = old.seq
RETURNING j.id, old.token
"""
_FAIL_RUNNING = _FAIL_UNREADABLE.format(fence="")
_FAIL_HELD = _FAIL_UNREADABLE.format(fence="AND token = %(token)s")
# The attempt's execution record, opened by the claim, ends with the job.
_FAIL_EXECUTION = """
UPDATE job_executions SET status = 'failed', error_type = 'UnreadableRow',
    error_message = %s, completed_at = %s
WHERE job_id = %s AND token = %s AND completed_at IS NULL
"""

_END_EXECUTION = """
UPDATE job_executions SET status = %s, result = %s, error_type = %s, error_message = %s,
    error_traceback = %s, completed_at = %s
WHERE job_id = %s AND token = %s
"""

# A completed dependency no longer blocks its dependents (once per mention).
_RELEASE = """
UPDATE jobs SET blocked = blocked - cardinality(array_positions(dependencies, %(id)s::text))
WHERE dependencies @> ARRAY[%(id)s::text] AND cardinality(dependencies) > 0
"""

_RENEW = """
UPDATE jobs j SET lease_expires_at = %s
FROM unnest(%s::text[], %s::text[]) AS h(id, token)
WHERE j.id = h.id AND j.token = h.token AND '' || j.status = 'running'
RETURNING j.id, j.cancel_requested
"""

_COLUMNS = (*JOB_COLUMNS[1:], *BOOKKEEPING_COLUMNS, "dependencies")


def utc(value: datetime) -> datetime:
    """An aware datetime as UTC (connections use TimeZone UTC, so this rarely converts)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def has_nul(*values: Any) -> bool:
    """True when a text value holds NUL, which PostgreSQL text cannot: no stored value
    equals it."""
    return any(isinstance(v, str) and "\x00" in v for v in values)


class PostgresDialect(Dialect):
    """PostgreSQL; see the module docstring."""

    name = "postgres"
    job_select = JOB_SELECT
    job_select_with_dependencies = JOB_SELECT
    job_insert = (
        f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
    )
    # seq is an identity column: an import keeps the source's numbers (then moves the
    # sequence past them), so submit order survives the move.
    job_import = (
        f"INSERT INTO jobs (seq, {', '.join(_COLUMNS)}) OVERRIDING SYSTEM VALUE"
        f" VALUES ({', '.join(['%s'] * (len(_COLUMNS) + 1))})"
    )
    checks_before_writing = True
    fragments: Mapping[str, str] = {
        "p": "%s",
        "any": "= ANY(%s)",
        "greatest": "GREATEST",
        # An expression no index holds: with statistics that say no job is running (taken
        # with a backlog), `status = 'running'` would walk jobs_status (or jobs_running)
        # through the dead row versions of every job run since, instead of one id lookup.
        "plus": "'' || ",
        "true": "true",
        "false": "false",
        "for_update": " FOR UPDATE",
        "for_share": " FOR SHARE",
        # Other rescuers skip rows this one holds, and rows a finishing worker holds are
        # left to it.
        "skip_locked": " FOR UPDATE SKIP LOCKED",
        "execution_order": "started_at, seq",
        "indexed_running": "",
        "indexed_due": "",
        "upsert_kv": (
            "INSERT INTO kv (namespace, key, value) VALUES (%s, %s, %s)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
        ),
        "upsert_worker": "INSERT INTO workers",
        "upsert_worker_end": (
            " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
            " queues = excluded.queues, concurrency = excluded.concurrency,"
            " started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,"
            " stopped_at = excluded.stopped_at"
        ),
        # octet_length reads the stored size, not the value.
        "result_bytes": "octet_length(result)",
        "pause": "INSERT INTO paused_queues (queue) VALUES (%s) ON CONFLICT DO NOTHING",
        "dependent_of": "dependencies @> ARRAY[%s::text] AND cardinality(dependencies) > 0",
        "blocked_count": (
            "(SELECT count(*) FROM unnest(jobs.dependencies) AS d(id)"
            " JOIN jobs p ON p.id = d.id WHERE p.status <> 'completed')"
        ),
        "broken_dependency": (
            "SELECT c.id, p.id, p.name, p.status"
            " FROM jobs c, unnest(c.dependencies) WITH ORDINALITY AS d(id, position)"
            " JOIN jobs p ON p.id = d.id"
            " WHERE c.id = ANY(%s) AND p.status IN ('failed', 'timeout', 'cancelled')"
            " ORDER BY c.id, d.position"
        ),
        "has_active_dependent": (
            "EXISTS (SELECT 1 FROM jobs c WHERE c.dependencies @> ARRAY[jobs.id]"
            " AND cardinality(c.dependencies) > 0 AND c.status IN ('pending', 'running'))"
        ),
    }

    def time(self, value: datetime) -> datetime:
        """A datetime, as psycopg passes it."""
        return value

    def stored_time(self, value: datetime) -> datetime:
        """In UTC, as connections read timestamptz back."""
        return utc(value)

    def read_time(self, column: str, value: Any) -> datetime:
        """A timestamptz value; BadColumn for one Python cannot hold (loaded as a value
        with the server's text, see gigq_postgres)."""
        if isinstance(value, datetime):
            return utc(value)
        raise BadColumn(f"{column} is {show(value)}, not a time")

    def due_time(self, run_at: Any, now: datetime) -> datetime | None:
        """A time Python cannot hold is due now if it lies in the past ('-infinity', a
        year BC), so a claim meets it and ends it failed, and never otherwise ('infinity',
        years past 9999)."""
        if isinstance(run_at, datetime):
            return utc(run_at)
        text = getattr(run_at, "text", "")
        return now if text.startswith("-") or text.endswith(" BC") else None

    def flag(self, value: bool) -> bool:
        """A boolean."""
        return value

    def ids(self, values: Iterable[Any]) -> list[Any]:
        """A list, passed as text[]."""
        return list(values)

    def names(self, values: Sequence[str]) -> list[str]:
        """A list, stored as text[]."""
        return list(values)

    def read_names(self, column: str, value: Any) -> tuple[str, ...]:
        """A text[] with no NULL in it."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadColumn(f"{column} holds {show(value)}, not only job ids")
        return tuple(value)

    def dependencies_of(self, value: Any) -> Sequence[Any]:
        """The dependencies column."""
        return () if value is None else tuple(value)

    def check_dependencies(self, dependencies: Sequence[Any]) -> None:
        """A text[] with no NULL in it."""
        if not all(isinstance(depends_on, str) for depends_on in dependencies):
            raise BadColumn(f"dependencies holds {show(list(dependencies))}, not only job ids")

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """One array parameter."""
        return f"{column} = ANY(%s)", [list(values)]

    def unmatchable(self, *texts: str | None) -> bool:
        """Text that holds NUL."""
        return has_nul(*texts)

    def with_dependencies(
        self, conn: Connection, rows: Sequence[Sequence[Any]]
    ) -> list[tuple[Sequence[Any], Sequence[Any]]]:
        """Each row carries its dependencies last."""
        return [(row, self.dependencies_of(row[-1])) for row in rows]

    def job_values(self, values: tuple[Any, ...], dependencies: Sequence[str]) -> tuple[Any, ...]:
        """The common columns, then the dependencies."""
        return (*values, list(dependencies))

    def insert_dependencies(
        self, conn: Connection, links: Iterable[tuple[str, Sequence[str]]]
    ) -> None:
        """Nothing: the jobs rows hold them."""

    def forget_dependencies(self, conn: Connection, job_ids: Sequence[str]) -> None:
        """Nothing: they went with the jobs rows."""

    def imported(self, conn: Connection, last_seq: int) -> None:
        """Move the identity sequence past the imported numbers."""
        conn.execute("SELECT setval(pg_get_serial_sequence('jobs', 'seq'), %s)", (last_seq,))

    def claim_rows(self, conn: Connection, claim: Claim, limit: int) -> list[Any]:
        """One statement (FOR UPDATE SKIP LOCKED) that also opens the executions."""
        params = {
            "now": claim.now,
            "worker": claim.worker_id,
            "lease_end": claim.lease_end,
            "limit": limit,
            "queues": None if claim.queues is None else list(claim.queues),
        }
        if claim.reserve_functions is not None:
            params["functions"] = list(claim.reserve_functions)
            return conn.execute(RESERVE, params).fetchall()
        return conn.execute(CLAIM, params).fetchall()

    def start_rows(
        self, conn: Connection, jobs: Sequence[JobRecord], now: datetime
    ) -> list[tuple[Any, Any, Any]]:
        """One statement per job, which also opens its execution."""
        rows: list[tuple[Any, Any, Any]] = []
        for job in jobs:
            rows += conn.execute(START, {"now": now, "id": job.id, "token": job.token}).fetchall()
        return rows

    def fail_running(
        self, conn: Connection, seq: int, error: str, now: datetime, token: str | None
    ) -> bool:
        """By seq, ending the execution the claim opened."""
        params = {"seq": seq, "error": error, "now": now, "token": token}
        failed = conn.execute(_FAIL_RUNNING if token is None else _FAIL_HELD, params).fetchone()
        if failed is None:
            return False
        conn.execute(_FAIL_EXECUTION, (error, now, *failed))
        return True

    def end_executions(
        self, conn: Connection, ended: Sequence[EndedAttempt], now: datetime
    ) -> None:
        """Close the execution records the claims opened."""
        conn.executemany(
            _END_EXECUTION,
            [
                (status, result, *error_columns(error), now, job.id, job.token)
                for job, status, result, error in ended
            ],
        )

    def running_executions(
        self, conn: Connection, job_ids: Sequence[str], recorded: Iterable[Execution]
    ) -> dict[str, Execution]:
        """None: every attempt has its record from the claim on."""
        return {}

    def release(self, conn: Connection, job_ids: Sequence[str]) -> None:
        """Per mention in the dependencies arrays."""
        conn.executemany(_RELEASE, [{"id": job_id} for job_id in job_ids])

    def renew(
        self, conn: Connection, held: Mapping[str, str], lease_end: datetime
    ) -> dict[str, bool]:
        """One UPDATE of the rows still held, in id order."""
        job_ids = sorted(held)
        rows = conn.execute(_RENEW, (lease_end, job_ids, [held[i] for i in job_ids])).fetchall()
        return {job_id: bool(cancel) for job_id, cancel in rows}


#: The PostgreSQL dialect.
POSTGRES = PostgresDialect()

__all__ = [
    "CLAIM",
    "JOB_SELECT",
    "POSTGRES",
    "RESERVE",
    "START",
    "PostgresDialect",
    "has_nul",
    "job_select",
    "utc",
]
