"""The SQLite dialect: times as epoch seconds (REAL), booleans as 0/1, id lists as one JSON
parameter read with json_each, dependencies in a table of their own, and an attempt's
execution row written once, when it ends.

Plans are pinned where it matters: without ANALYZE statistics SQLite would rather walk
jobs_status (every pending job) and sort than use a partial index, so hot queries name
their index (INDEXED BY) or hide a column from the planner with a unary "+".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gigq_core.records import Execution, JobRecord
from gigq_sql.connection import Connection
from gigq_sql.dialect import BadColumn, Claim, Dialect, EndedAttempt, show
from gigq_sql.rows import BOOKKEEPING_COLUMNS, EXECUTION_COLUMNS, JOB_COLUMNS, error_columns

JOB_SELECT = ", ".join(JOB_COLUMNS)

#: A column to select after JOB_SELECT: the job's dependencies as a JSON array, in order,
#: saving a second query on hot paths.
DEPENDENCIES_COLUMN = (
    "(SELECT json_group_array(depends_on) FROM"
    " (SELECT depends_on FROM dependencies d WHERE d.job_id = jobs.id ORDER BY position))"
)

_IN_IDS = "IN (SELECT value FROM json_each(?))"

# started_at is never before a dependency's completed_at: the caller reads its clock before
# it waits for the write lock, and a dependency may complete (later by the clock) while it
# waits.
_CLAIM = """
UPDATE jobs SET status = 'running', attempts = attempts + 1,
    token = lower(hex(randomblob(16))), worker_id = ?,
    started_at = max(?, coalesce((SELECT max(p.completed_at) FROM dependencies d
        JOIN jobs p ON p.id = d.depends_on WHERE d.job_id = jobs.id), 0)),
    lease_expires_at = ?, updated_at = ?, cancel_requested = 0
WHERE seq IN (
    SELECT seq FROM jobs INDEXED BY jobs_ready
    WHERE status = 'pending' AND blocked = 0 AND run_at <= ? {queues}
        AND queue NOT IN (SELECT queue FROM paused_queues)
    ORDER BY priority DESC, seq LIMIT ?
)
RETURNING {columns}
"""
# (Not DEPENDENCIES_COLUMN here: in RETURNING, SQLite scans the whole dependencies index
# for a correlated subquery instead of searching it.)
CLAIM_ANY_QUEUE = _CLAIM.format(queues="", columns=JOB_SELECT)
CLAIM_QUEUES = _CLAIM.format(queues=f"AND queue {_IN_IDS}", columns=JOB_SELECT)

# A reservation: held under a token and a lease, but not started (no attempt counted,
# started_at unset until `_START`).
_RESERVE = """
UPDATE jobs SET status = 'running', token = lower(hex(randomblob(16))), worker_id = ?,
    started_at = NULL, lease_expires_at = ?, updated_at = ?, cancel_requested = 0
WHERE seq IN (
    SELECT seq FROM jobs INDEXED BY jobs_ready
    WHERE status = 'pending' AND blocked = 0 AND run_at <= ? {queues}
        AND function {in_ids} AND queue NOT IN (SELECT queue FROM paused_queues)
    ORDER BY priority DESC, seq LIMIT ?
)
RETURNING {columns}
"""
RESERVE_ANY_QUEUE = _RESERVE.format(queues="", in_ids=_IN_IDS, columns=JOB_SELECT)
RESERVE_QUEUES = _RESERVE.format(queues=f"AND queue {_IN_IDS}", in_ids=_IN_IDS, columns=JOB_SELECT)

_START = """
UPDATE jobs SET attempts = attempts + 1,
    started_at = max(?, coalesce((SELECT max(p.completed_at) FROM dependencies d
        JOIN jobs p ON p.id = d.depends_on WHERE d.job_id = jobs.id), 0)),
    updated_at = ?
WHERE id = ? AND status = 'running' AND token = ? AND started_at IS NULL
RETURNING id, attempts, started_at
"""

# A running row that cannot be read ends failed, by `seq` (the one column SQLite always
# keeps an integer). The rest of the row is left as it was, for an operator to look at.
_FAIL_UNREADABLE = """
UPDATE jobs SET status = 'failed', error = ?, token = NULL, lease_expires_at = NULL,
    completed_at = ?, updated_at = ?, cancel_requested = 0
WHERE seq = ? AND status = 'running' {fence}
"""
_FAIL_RUNNING = _FAIL_UNREADABLE.format(fence="")
_FAIL_HELD = _FAIL_UNREADABLE.format(fence="AND token = ?")

# An attempt's execution row is written once, when it ends (with the ending's commit): a
# claim then writes only the job's row, and a running attempt's execution is read from
# its job (`running_executions`). The DELETE clears a "running" row that an earlier GigQ
# version wrote at claim time for the same attempt.
_CLEAR_RUNNING_EXECUTION = """
DELETE FROM job_executions WHERE job_id = ? AND token = ? AND status = 'running'
"""
_INSERT_EXECUTION = (
    f"INSERT INTO job_executions ({EXECUTION_COLUMNS}) VALUES ({', '.join('?' * 12)})"
)

# A completed dependency no longer blocks its dependents (once per dependency row).
_RELEASE = """
UPDATE jobs SET blocked = blocked - (
    SELECT count(*) FROM dependencies d WHERE d.job_id = jobs.id AND d.depends_on = ?1)
WHERE id IN (SELECT job_id FROM dependencies WHERE depends_on = ?1)
"""

_DEPENDENCIES_OF_ONE = (
    "SELECT job_id, depends_on FROM dependencies WHERE job_id = ? ORDER BY position"
)
_DEPENDENCIES_OF_MANY = (
    f"SELECT job_id, depends_on FROM dependencies WHERE job_id {_IN_IDS} ORDER BY job_id, position"
)


def execution_id(token: str) -> str:
    """An attempt's execution id: its random token, written as a UUID."""
    return str(uuid.UUID(token))


def to_ts(value: datetime) -> float:
    """An aware datetime as unix epoch seconds."""
    return value.timestamp()


def from_ts(value: float) -> datetime:
    """Unix epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC)


class SqliteDialect(Dialect):
    """SQLite; see the module docstring."""

    name = "sqlite"
    job_select = JOB_SELECT
    job_select_with_dependencies = f"{JOB_SELECT}, {DEPENDENCIES_COLUMN}"
    job_insert = (
        f"INSERT INTO jobs ({', '.join((*JOB_COLUMNS[1:], *BOOKKEEPING_COLUMNS))}) "
        f"VALUES ({', '.join('?' * (len(JOB_COLUMNS) - 1 + len(BOOKKEEPING_COLUMNS)))})"
    )
    job_import = (
        f"INSERT INTO jobs ({', '.join((*JOB_COLUMNS, *BOOKKEEPING_COLUMNS))}) "
        f"VALUES ({', '.join('?' * (len(JOB_COLUMNS) + len(BOOKKEEPING_COLUMNS)))})"
    )
    checks_before_writing = False
    fragments: Mapping[str, str] = {
        "p": "?",
        "any": _IN_IDS,
        "greatest": "max",
        "plus": "+",
        "true": "1",
        "false": "0",
        "for_update": "",
        "for_share": "",
        "skip_locked": "",
        "execution_order": "started_at, rowid",
        "indexed_running": " INDEXED BY jobs_running",
        "indexed_due": " INDEXED BY jobs_due",
        "upsert_kv": "INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
        "upsert_worker": "INSERT OR REPLACE INTO workers",
        "upsert_worker_end": "",
        "result_bytes": "length(CAST(result AS BLOB))",
        "pause": "INSERT OR IGNORE INTO paused_queues (queue) VALUES (?)",
        "dependent_of": "id IN (SELECT job_id FROM dependencies WHERE depends_on = ?)",
        "blocked_count": (
            "(SELECT count(*) FROM dependencies d JOIN jobs p ON p.id = d.depends_on"
            " WHERE d.job_id = jobs.id AND p.status <> 'completed')"
        ),
        "broken_dependency": (
            "SELECT d.job_id, p.id, p.name, p.status"
            " FROM dependencies d JOIN jobs p ON p.id = d.depends_on"
            f" WHERE d.job_id {_IN_IDS} AND p.status IN ('failed', 'timeout', 'cancelled')"
            " ORDER BY d.job_id, d.position"
        ),
        "has_active_dependent": (
            "EXISTS (SELECT 1 FROM dependencies d JOIN jobs c ON c.id = d.job_id"
            " WHERE d.depends_on = jobs.id AND c.status IN ('pending', 'running'))"
        ),
    }

    def time(self, value: datetime) -> float:
        """Unix epoch seconds."""
        return value.timestamp()

    def stored_time(self, value: datetime) -> datetime:
        """`value` through a float, as a REAL column keeps it."""
        return from_ts(value.timestamp())

    def read_time(self, column: str, value: Any) -> datetime:
        """The time in a REAL column (epoch seconds); BadColumn if it holds none."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return datetime.fromtimestamp(value, UTC)
            except (OverflowError, OSError, ValueError):
                pass  # out of datetime's range (years 1 to 9999): reported below
        raise BadColumn(f"{column} is {show(value)}, not a time")

    def due_time(self, run_at: Any, now: datetime) -> datetime | None:
        """A value that holds no time (written by hand) is due now if it is a number in the
        past, so a claim meets it and ends it failed, and never otherwise (a time past year
        9999, or text, which no claim's `run_at <= ?` ever selects)."""
        try:
            return self.read_time("run_at", run_at)
        except BadColumn:
            if isinstance(run_at, int | float) and run_at < now.timestamp():
                return now
            return None

    def flag(self, value: bool) -> int:
        """0 or 1."""
        return int(value)

    def ids(self, values: Iterable[Any]) -> str:
        """One JSON parameter: one prepared statement for any number of ids."""
        return json.dumps(list(values))

    def names(self, values: Sequence[str]) -> str:
        """A JSON array."""
        return json.dumps(list(values))

    def read_names(self, column: str, value: Any) -> tuple[str, ...]:
        """A JSON array of names."""
        try:
            names = json.loads(value) if isinstance(value, str) else None
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(q, str) for q in names):
            raise BadColumn(f"{column} is {show(value)}, not a JSON list of names")
        return tuple(names)

    def dependencies_of(self, value: Any) -> Sequence[Any]:
        """DEPENDENCIES_COLUMN's JSON array."""
        return () if value == "[]" else tuple(json.loads(value))

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A literal list (not json_each): SQLite walks the (column, seq) index per value."""
        if len(values) == 1:
            return f"{column} = ?", list(values)
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def load_dependencies(self, conn: Connection, job_ids: Sequence[str]) -> dict[str, list[str]]:
        """The dependencies of each job among `job_ids`, in the order they were given."""
        if len(job_ids) == 1:  # a single claim: skip the JSON round trip
            rows = conn.execute(_DEPENDENCIES_OF_ONE, (job_ids[0],))
        else:
            rows = conn.execute(_DEPENDENCIES_OF_MANY, (self.ids(job_ids),))
        found: dict[str, list[str]] = {}
        for job_id, depends_on in rows:
            found.setdefault(job_id, []).append(depends_on)
        return found

    def with_dependencies(
        self, conn: Connection, rows: Sequence[Sequence[Any]]
    ) -> list[tuple[Sequence[Any], Sequence[Any]]]:
        """Rows with their dependencies, loaded in one query."""
        deps = self.load_dependencies(conn, [row[1] for row in rows])
        return [(row, deps.get(row[1], ())) for row in rows]

    def job_values(self, values: tuple[Any, ...], dependencies: Sequence[str]) -> tuple[Any, ...]:
        """The common columns: dependencies live in their own table."""
        return values

    def insert_dependencies(
        self, conn: Connection, links: Iterable[tuple[str, Sequence[str]]]
    ) -> None:
        """One row per dependency, numbered by position."""
        rows = [
            (job_id, position, depends_on)
            for job_id, dependencies in links
            for position, depends_on in enumerate(dependencies)
        ]
        if rows:
            conn.executemany(
                "INSERT INTO dependencies (job_id, position, depends_on) VALUES (?, ?, ?)", rows
            )

    def forget_dependencies(self, conn: Connection, job_ids: Sequence[str]) -> None:
        """Their rows in the dependencies table."""
        conn.execute(f"DELETE FROM dependencies WHERE job_id {_IN_IDS}", (self.ids(job_ids),))

    def imported(self, conn: Connection, last_seq: int) -> None:
        """Nothing: an INTEGER PRIMARY KEY numbers past the largest."""

    def claim_rows(self, conn: Connection, claim: Claim, limit: int) -> list[Any]:
        """One UPDATE ... RETURNING; the execution row is written when the attempt ends."""
        ts = claim.now.timestamp()
        if claim.reserve_functions is not None:
            ahead = (claim.worker_id, claim.lease_end.timestamp(), ts, ts)
            functions = self.ids(claim.reserve_functions)
            if claim.queues is None:
                return conn.execute(RESERVE_ANY_QUEUE, (*ahead, functions, limit)).fetchall()
            return conn.execute(
                RESERVE_QUEUES, (*ahead, self.ids(claim.queues), functions, limit)
            ).fetchall()
        head = (claim.worker_id, ts, claim.lease_end.timestamp(), ts, ts)
        if claim.queues is None:
            return conn.execute(CLAIM_ANY_QUEUE, (*head, limit)).fetchall()
        return conn.execute(CLAIM_QUEUES, (*head, self.ids(claim.queues), limit)).fetchall()

    def start_rows(
        self, conn: Connection, jobs: Sequence[JobRecord], now: datetime
    ) -> list[tuple[Any, Any, Any]]:
        """One UPDATE per job (by its primary key); the execution row is written when
        the attempt ends."""
        ts = now.timestamp()
        rows: list[tuple[Any, Any, Any]] = []
        for job in jobs:
            rows += conn.execute(_START, (ts, ts, job.id, job.token)).fetchall()
        return rows

    def fail_running(
        self, conn: Connection, seq: int, error: str, now: datetime, token: str | None
    ) -> bool:
        """By seq; the attempt had no execution row yet."""
        ts = now.timestamp()
        if token is None:
            return bool(conn.execute(_FAIL_RUNNING, (error, ts, ts, seq)).rowcount)
        return bool(conn.execute(_FAIL_HELD, (error, ts, ts, seq, token)).rowcount)

    def end_executions(
        self, conn: Connection, ended: Sequence[EndedAttempt], now: datetime
    ) -> None:
        """The attempts' execution rows, written now."""
        ts = now.timestamp()
        rows = []
        for job, status, result, error in ended:
            assert job.token is not None
            rows.append(
                (
                    execution_id(job.token),
                    job.id,
                    job.attempts,
                    job.worker_id or "",
                    job.token,
                    status,
                    job.started_at.timestamp() if job.started_at is not None else ts,
                    ts,
                    result,
                    *error_columns(error),
                )
            )
        conn.executemany(_CLEAR_RUNNING_EXECUTION, [(row[1], row[4]) for row in rows])
        conn.executemany(_INSERT_EXECUTION, rows)

    def running_executions(
        self, conn: Connection, job_ids: Sequence[str], recorded: Iterable[Execution]
    ) -> dict[str, Execution]:
        """The running attempt of each running job among `job_ids`, read from its job; an
        attempt among `recorded` (a row an earlier version wrote) is skipped."""
        tokens = {execution.token for execution in recorded}
        rows = conn.execute(
            "SELECT id, attempts, worker_id, token, started_at FROM jobs"
            f" WHERE id {_IN_IDS} AND +status = 'running' AND started_at IS NOT NULL",
            (self.ids(job_ids),),
        ).fetchall()
        found: dict[str, Execution] = {}
        for job_id, attempts, worker_id, token, started_at in rows:
            if not token or token in tokens:
                continue
            try:
                found[job_id] = Execution(
                    id=execution_id(token),
                    job_id=job_id,
                    attempt=attempts,
                    worker_id=worker_id or "",
                    token=token,
                    status="running",
                    started_at=self.read_time("started_at", started_at),
                )
            except (BadColumn, TypeError, ValueError):
                continue  # a row written by hand: its job shows as unreadable
        return found

    def release(self, conn: Connection, job_ids: Sequence[str]) -> None:
        """Per dependency row."""
        conn.executemany(_RELEASE, [(job_id,) for job_id in job_ids])

    def renew(
        self, conn: Connection, held: Mapping[str, str], lease_end: datetime
    ) -> dict[str, bool]:
        """Read the held jobs, then extend the leases still held."""
        rows = conn.execute(
            f"SELECT id, token, cancel_requested FROM jobs WHERE id {_IN_IDS}"
            " AND +status = 'running'",
            (self.ids(held),),
        ).fetchall()
        alive = {job_id: bool(cancel) for job_id, token, cancel in rows if held[job_id] == token}
        conn.executemany(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status = 'running'"
            " AND token = ?",
            [(lease_end.timestamp(), job_id, held[job_id]) for job_id in alive],
        )
        return alive


#: The SQLite dialect.
SQLITE = SqliteDialect()

__all__ = [
    "CLAIM_ANY_QUEUE",
    "CLAIM_QUEUES",
    "DEPENDENCIES_COLUMN",
    "JOB_SELECT",
    "RESERVE_ANY_QUEUE",
    "RESERVE_QUEUES",
    "SQLITE",
    "SqliteDialect",
    "execution_id",
    "from_ts",
    "to_ts",
]
