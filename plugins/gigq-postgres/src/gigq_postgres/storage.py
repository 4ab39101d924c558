"""PostgresStorage: the Storage port on one PostgreSQL schema, shared by workers on many
hosts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from gigq_core.records import (
    Execution,
    HeartbeatReply,
    JobFilter,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
    WorkerInfo,
    WorkflowInfo,
)
from gigq_core.transfer import plan_import
from gigq_postgres import _lifecycle
from gigq_postgres._connection import Database
from gigq_postgres._export import export_items, import_plan
from gigq_postgres._insert import insert_jobs
from gigq_postgres._options import Settings
from gigq_postgres._queries import (
    filter_has_nul,
    has_nul,
    load_workers,
    load_workflows,
    prefix_upper_bound,
    prune_jobs,
    where_clause,
)
from gigq_postgres._requeue import requeue_jobs
from gigq_postgres._rows import (
    EXECUTION_SELECT,
    JOB_SELECT,
    WORKER_SELECT,
    due_time,
    execution_from_row,
    job_or_stand_in,
    load_jobs,
    worker_values,
)
from gigq_postgres.schema import SCHEMA_VERSION, read_version

_ORDERS = {"newest": "seq DESC", "oldest": "seq", "priority": "priority DESC, seq"}


class PostgresStorage:
    """Jobs in one PostgreSQL schema; safe for threads of one process and for many
    processes on many hosts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.display_url
        self.schema = settings.schema
        self._db = Database(settings)

    def __repr__(self) -> str:
        return f"PostgresStorage({self.url!r})"

    # -- jobs: writes ----------------------------------------------------------------------

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        """Store new jobs atomically; see Storage.insert."""
        jobs = list(jobs)
        if not jobs:
            return []

        def work(conn: psycopg.Connection, attempt: int) -> list[str]:
            ids = insert_jobs(conn, jobs, now, attempt)
            self._db.notify(conn)
            return ids

        return self._db.run(work)

    def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> list[JobRecord]:
        """Claim up to `limit` ready jobs with one statement (FOR UPDATE SKIP LOCKED)."""
        if limit <= 0 or (queues is not None and not queues):
            return []
        wanted = None if queues is None else list(queues)
        return self._db.run(
            lambda conn, _: _lifecycle.claim_jobs(conn, worker_id, limit, now, lease, wanted),
            single=True,
        )

    def finish(self, outcomes: Sequence[Outcome], now: datetime) -> list[Transition | None]:
        """Apply attempt outcomes in one transaction; see Storage.finish."""
        if not outcomes:
            return []
        outcomes = list(outcomes)

        def work(conn: psycopg.Connection, attempt: int) -> list[Transition | None]:
            results = _lifecycle.finish_outcomes(conn, outcomes, now, attempt)
            self._db.notify(conn)
            return results

        return self._db.run(work)

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: datetime,
        worker_id: str,
        limit: int,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Transition | None], list[JobRecord]]:
        """finish() then claim() in one transaction; see Storage.finish_and_claim."""
        outcomes = list(outcomes)
        claiming = limit > 0 and (queues is None or bool(queues))
        wanted = None if queues is None else list(queues)

        def work(
            conn: psycopg.Connection, attempt: int
        ) -> tuple[list[Transition | None], list[JobRecord]]:
            done: list[Transition | None] = []
            if outcomes:
                done = _lifecycle.finish_outcomes(conn, outcomes, now, attempt)
                self._db.notify(conn)
            claimed = (
                _lifecycle.claim_jobs(conn, worker_id, limit, now, lease, wanted)
                if claiming
                else []
            )
            return done, claimed

        return self._db.run(work)

    def heartbeat(
        self, worker_id: str, held: Mapping[str, str], now: datetime, lease: float
    ) -> HeartbeatReply:
        """Renew the leases of held jobs; see Storage.heartbeat."""
        held = dict(held)
        return self._db.run(
            lambda conn, _: _lifecycle.renew_leases(conn, worker_id, held, now, lease)
        )

    def rescue(self, now: datetime, worker_ids: Sequence[str] = ()) -> list[Transition]:
        """Return jobs of dead workers to pending; see Storage.rescue."""
        dead = list(worker_ids)

        def work(conn: psycopg.Connection, _: int) -> list[Transition]:
            transitions = _lifecycle.rescue_jobs(conn, now, dead)
            if transitions:
                self._db.notify(conn)
            return transitions

        return self._db.run(work)

    def cancel(self, job_ids: Sequence[str], now: datetime, reason: str) -> list[Transition]:
        """Cancel jobs, with cascade; see Storage.cancel."""
        ids = [i for i in job_ids if not has_nul(i)]
        if not ids:
            return []
        return self._db.run(lambda conn, _: _lifecycle.cancel_jobs(conn, ids, now, reason))

    def requeue(self, job_ids: Sequence[str], now: datetime) -> list[Transition]:
        """Requeue finished-badly jobs, reviving their dependents; see Storage.requeue."""
        ids = [i for i in job_ids if not has_nul(i)]
        if not ids:
            return []

        def work(conn: psycopg.Connection, _: int) -> list[Transition]:
            transitions = requeue_jobs(conn, ids, now)
            if transitions:
                self._db.notify(conn)
            return transitions

        return self._db.run(work)

    def prune(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete old jobs in `statuses` that no unfinished job needs; see Storage.prune."""
        wanted = sorted({JobStatus(status).value for status in statuses})
        if not wanted:
            return 0
        return self._db.run(lambda conn, _: prune_jobs(conn, before, wanted))

    # -- jobs: reads -----------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job with that id, or None."""
        return self.get_many([job_id]).get(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs that exist among `job_ids`, by id."""
        ids = [i for i in job_ids if not has_nul(i)]
        if not ids:
            return {}
        return self._db.run(lambda conn, _: load_jobs(conn, ids), single=True)

    def results(self, job_ids: Sequence[str], max_bytes: int) -> tuple[int, dict[str, str]]:
        """The results of the jobs among `job_ids` if together they fit in `max_bytes`;
        see Storage.results."""
        ids = [i for i in job_ids if not has_nul(i)]
        if not ids:
            return 0, {}

        def work(conn: psycopg.Connection, _: int) -> tuple[int, dict[str, str]]:
            # Sized in SQL first (octet_length reads the stored size, not the value), so
            # results over the limit never reach Python.
            row = conn.execute(
                "SELECT coalesce(sum(octet_length(result)), 0) FROM jobs WHERE id = ANY(%s)",
                (ids,),
            ).fetchone()
            total = int(row[0]) if row else 0
            if total > max_bytes:
                return total, {}
            rows = conn.execute(
                "SELECT id, result FROM jobs WHERE id = ANY(%s) AND result IS NOT NULL", (ids,)
            ).fetchall()
            return total, {job_id: result for job_id, result in rows}

        return self._db.run(work)

    def executions(self, job_id: str) -> list[Execution]:
        """The job's execution records, oldest first."""
        if has_nul(job_id):
            return []
        rows = self._db.run(
            lambda conn, _: conn.execute(
                f"SELECT {EXECUTION_SELECT} FROM job_executions WHERE job_id = %s"
                " ORDER BY started_at, seq",
                (job_id,),
            ).fetchall(),
            single=True,
        )
        return [execution_from_row(row) for row in rows]

    def list_jobs(
        self, where: JobFilter, limit: int = 100, offset: int = 0, order: str = "newest"
    ) -> list[JobRecord]:
        """Jobs matching `where`, in `order` ("newest", "oldest" or "priority")."""
        if order not in _ORDERS:
            raise ValueError(f"unknown order {order!r}; use newest, oldest or priority")
        if filter_has_nul(where):
            return []
        clause, params = where_clause(where)
        query = (
            f"SELECT {JOB_SELECT} FROM jobs WHERE {clause} ORDER BY {_ORDERS[order]}"
            " LIMIT %(limit)s OFFSET %(offset)s"
        )
        args = {**params, "limit": max(limit, 0), "offset": max(offset, 0)}
        rows = self._db.run(lambda conn, _: conn.execute(query, args).fetchall(), single=True)
        return [job_or_stand_in(row) for row in rows]

    def count(self, where: JobFilter) -> dict[str, int]:
        """Count of matching jobs per status value."""
        if filter_has_nul(where):
            return {}
        clause, params = where_clause(where)
        query = f"SELECT status, count(*) FROM jobs WHERE {clause} GROUP BY status"
        rows = self._db.run(lambda conn, _: conn.execute(query, params).fetchall(), single=True)
        return {status: total for status, total in rows}

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Count of jobs per queue name and status value, queues sorted by name."""
        rows = self._db.run(
            lambda conn, _: conn.execute(
                "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status ORDER BY queue"
            ).fetchall(),
            single=True,
        )
        counts: dict[str, dict[str, int]] = {}
        for queue, status, total in rows:
            counts.setdefault(queue, {})[status] = total
        return counts

    def find_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` ids starting with `prefix`, sorted (a range scan of the id index)."""
        if limit <= 0 or has_nul(prefix):
            return []
        upper = prefix_upper_bound(prefix)
        args: tuple[Any, ...]
        if upper is None:
            query, args = "SELECT id FROM jobs WHERE id >= %s ORDER BY id LIMIT %s", (prefix, limit)
        else:
            query = "SELECT id FROM jobs WHERE id >= %s AND id < %s ORDER BY id LIMIT %s"
            args = (prefix, upper, limit)
        rows = self._db.run(lambda conn, _: conn.execute(query, args).fetchall(), single=True)
        return [job_id for (job_id,) in rows if job_id.startswith(prefix)]

    def next_due(self, now: datetime, queues: Sequence[str] | None = None) -> datetime | None:
        """The earliest run_at of a pending job whose dependencies all completed."""
        if queues is not None and not queues:
            return None
        query = (
            "SELECT min(run_at) FROM jobs WHERE status = 'pending' AND blocked = 0"
            " AND queue NOT IN (SELECT queue FROM paused_queues)"
        )
        args: tuple[Any, ...] = ()
        if queues is not None:
            query += " AND queue = ANY(%s)"
            args = (list(queues),)
        row = self._db.run(lambda conn, _: conn.execute(query, args).fetchone(), single=True)
        return None if row is None or row[0] is None else due_time(row[0], now)

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until a notification says a job may be ready.

        Inserts, finishes, requeues, rescues and resumed queues NOTIFY on the schema's
        channel when they commit; this waits on a LISTEN connection (opened on first use),
        so an idle worker starts a new job at once without polling the tables.
        """
        return self._db.wait(timeout)

    def list_workflows(self, limit: int = 100) -> list[WorkflowInfo]:
        """Workflows with their job counts, newest first."""
        return self._db.run(lambda conn, _: load_workflows(conn, max(limit, 0)))

    # -- workers, queues, key-value --------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker, replacing a record with the same id."""
        values = worker_values(info)
        self._db.run(
            lambda conn, _: conn.execute(
                f"INSERT INTO workers ({WORKER_SELECT}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " queues = excluded.queues, concurrency = excluded.concurrency,"
                " started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat,"
                " stopped_at = excluded.stopped_at",
                values,
            ),
            single=True,
        )

    def deregister_worker(self, worker_id: str, now: datetime) -> None:
        """Mark the worker stopped at `now`."""
        self._db.run(
            lambda conn, _: conn.execute(
                "UPDATE workers SET stopped_at = %s WHERE id = %s", (now, worker_id)
            ),
            single=True,
        )

    def list_workers(self, since: datetime | None = None) -> list[WorkerInfo]:
        """Workers still registered, or stopped at or after `since`; with their jobs."""
        return self._db.run(lambda conn, _: load_workers(conn, since))

    def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue (a resume wakes waiting workers)."""

        def work(conn: psycopg.Connection, _: int) -> None:
            if paused:
                conn.execute(
                    "INSERT INTO paused_queues (queue) VALUES (%s) ON CONFLICT DO NOTHING",
                    (queue,),
                )
            else:
                conn.execute("DELETE FROM paused_queues WHERE queue = %s", (queue,))
                self._db.notify(conn)

        self._db.run(work)

    def paused_queues(self) -> frozenset[str]:
        """Names of the paused queues."""
        rows = self._db.run(
            lambda conn, _: conn.execute("SELECT queue FROM paused_queues").fetchall(),
            single=True,
        )
        return frozenset(queue for (queue,) in rows)

    def kv_get(self, namespace: str, key: str) -> str | None:
        """A value of the key-value store, or None."""
        if has_nul(namespace, key):
            return None
        row = self._db.run(
            lambda conn, _: conn.execute(
                "SELECT value FROM kv WHERE namespace = %s AND key = %s", (namespace, key)
            ).fetchone(),
            single=True,
        )
        return None if row is None else str(row[0])

    def kv_set(self, namespace: str, key: str, value: str | None) -> None:
        """Set a value (None deletes it)."""
        if value is None:
            query = "DELETE FROM kv WHERE namespace = %s AND key = %s"
            args: tuple[str, ...] = (namespace, key)
        else:
            query = (
                "INSERT INTO kv (namespace, key, value) VALUES (%s, %s, %s)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
            )
            args = (namespace, key, value)
        self._db.run(lambda conn, _: conn.execute(query, args), single=True)

    def kv_items(self, namespace: str) -> dict[str, str]:
        """All keys and values of a namespace, sorted by key."""
        if has_nul(namespace):
            return {}
        rows = self._db.run(
            lambda conn, _: conn.execute(
                "SELECT key, value FROM kv WHERE namespace = %s ORDER BY key", (namespace,)
            ).fetchall(),
            single=True,
        )
        return {key: value for key, value in rows}

    # -- capabilities ----------------------------------------------------------------------

    def diagnose(self) -> list[dict[str, Any]]:
        """Checks for `gigq doctor`: each a dict with `check`, `ok` and `detail`."""

        def work(conn: psycopg.Connection, _: int) -> list[dict[str, Any]]:
            row = conn.execute(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit')"
            ).fetchone()
            assert row is not None
            version = read_version(conn, self.schema)
            stuck = conn.execute(
                "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_expires_at < now()"
            ).fetchone()
            return [
                _check("server", True, f"PostgreSQL {row[0]}"),
                _check("schema", version == SCHEMA_VERSION, f"'{self.schema}' version {version}"),
                _check("synchronous_commit", True, str(row[1])),
                _check(
                    "expired leases",
                    not stuck or not stuck[0],
                    f"{stuck[0] if stuck else 0} running job(s) past their lease by the "
                    "server's clock (no worker sweeping, or clocks apart)",
                ),
            ]

        return self._db.run(work)

    def export(self) -> Iterator[dict[str, Any]]:
        """The queue as a stream of JSON-able items (gigq_core.transfer), from one
        REPEATABLE READ snapshot."""
        return export_items(self._db)

    def import_(
        self, items: Iterable[Mapping[str, Any]], now: datetime | None = None
    ) -> dict[str, int]:
        """Store an export exactly, in one transaction, into this empty schema; counts per
        kind. Refused (TransferError) when it holds any job; running jobs arrive as a rescue
        at `now` (default: the current time) leaves them. Workers waiting are woken."""
        plan = plan_import(items, now or datetime.now(UTC))

        def work(conn: psycopg.Connection, attempt: int) -> dict[str, int]:
            counts = import_plan(conn, self.url, plan, attempt)
            self._db.notify(conn)
            return counts

        return self._db.run(work)

    def close(self) -> None:
        """Close every connection; the object may not be used afterwards."""
        self._db.close()


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail}


__all__ = ["PostgresStorage"]
