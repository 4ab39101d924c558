"""The Storage port over SQL, for every dialect: `SqlStorage` holds each method's logic and
leaves transactions to the adapter (`_read`, `_write`), with a few hooks where an adapter
does more (crash-point labels, wake-ups, checkpoints)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

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
from gigq_sql.connection import Connection
from gigq_sql.dialect import Dialect
from gigq_sql.export import import_plan
from gigq_sql.insert import insert_jobs
from gigq_sql.lifecycle import (
    cancel_jobs,
    claim_jobs,
    finish_outcomes,
    release_jobs,
    renew_leases,
    rescue_jobs,
    start_jobs,
)
from gigq_sql.queries import (
    SHOWN_STATUS,
    filter_unmatchable,
    load_executions,
    load_workers,
    load_workflows,
    prefix_upper_bound,
    prune_jobs,
    where_clause,
)
from gigq_sql.requeue import requeue_jobs
from gigq_sql.rows import WORKER_COLUMNS, as_text, jobs_from_rows, load_jobs, worker_values

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Writing:
    """What an adapter may know of a write transaction, to run it the cheapest safe way."""

    #: A label for test-only crash points ("claim", "finish", ...; gigq_sql.crash).
    op: str | None = None
    #: False when losing the commit on power loss only makes a job run again.
    durable: bool = True
    #: True when it claims jobs.
    claiming: bool = False
    #: True when it runs one statement, atomic by itself.
    single: bool = False


#: A write with nothing special about it.
PLAIN = Writing()

#: `work(conn, attempt)`: runs inside one transaction; `attempt` counts the tries (0 first)
#: of an adapter that retries a transaction whose commit may have happened.
Work = Callable[[Connection, int], T]

_ORDERS = {"newest": "seq DESC", "oldest": "seq", "priority": "priority DESC, seq"}

_NEXT_DUE = """
SELECT run_at FROM jobs{indexed_due} WHERE status = 'pending' AND blocked = 0
    AND queue NOT IN (SELECT queue FROM paused_queues){queues}
ORDER BY run_at LIMIT 1
"""


class SqlStorage:
    """Jobs in SQL tables; an adapter subclasses it with its dialect and transactions."""

    #: The dialect of the adapter's database.
    dialect: Dialect
    #: The URL the storage was opened with, for messages.
    url: str

    # -- what an adapter provides ---------------------------------------------------------

    def _read(self, work: Work[T], *, snapshot: bool = False) -> T:
        """Run `work` for reading (`snapshot`: its statements see one state)."""
        raise NotImplementedError

    def _write(self, work: Work[T], how: Writing = PLAIN) -> T:
        """Run `work` in a write transaction and commit, as `how` allows."""
        raise NotImplementedError

    def _label(self, op: str) -> None:
        """Add a crash-point label to the write in progress (SQLite's test-only crash
        points); nothing by default."""

    def _wake(self, conn: Connection) -> None:
        """Wake waiting workers once the write in progress commits, where waiting is not
        watching the database; nothing by default."""

    def _finished(self, conn: Connection, done: Sequence[Transition | None]) -> None:
        """Called inside a finish's transaction with its transitions."""
        self._wake(conn)

    def _after_commit(self, op: str) -> None:
        """Called after a finish or a rescue committed (housekeeping); nothing by default."""

    def _reclaim_space(self) -> None:
        """Called after a prune deleted jobs; nothing by default."""

    # -- jobs: writes ----------------------------------------------------------------------

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        """Store new jobs atomically; see Storage.insert."""
        jobs = list(jobs)
        if not jobs:
            return []

        def work(conn: Connection, attempt: int) -> list[str]:
            ids = insert_jobs(conn, self.dialect, jobs, now, attempt)
            self._wake(conn)
            return ids

        return self._write(work, Writing(op="submit"))

    def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> list[JobRecord]:
        """Claim up to `limit` ready jobs; see Storage.claim."""
        if limit <= 0 or (queues is not None and not queues):
            return []
        wanted = None if queues is None else list(queues)
        return self._write(
            lambda conn, _: claim_jobs(conn, self.dialect, worker_id, limit, now, lease, wanted),
            # A claim lost to a power cut only makes its job run again (at-least-once).
            Writing(op="claim", durable=False, claiming=True, single=True),
        )

    def claim_ahead(
        self,
        worker_id: str,
        start: int,
        reserve: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None,
        functions: Sequence[str],
    ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Claim `start` jobs and reserve `reserve` more in one transaction; see
        ports.Prefetch.claim_ahead."""
        if queues is not None and not queues:
            return [], []
        wanted = None if queues is None else list(queues)
        reserving = reserve > 0 and bool(functions)
        d = self.dialect

        def work(conn: Connection, _: int) -> tuple[list[JobRecord], list[JobRecord]]:
            started = claim_jobs(conn, d, worker_id, start, now, lease, wanted) if start > 0 else []
            held = (
                claim_jobs(conn, d, worker_id, reserve, now, lease, wanted, list(functions))
                if reserving
                else []
            )
            return started, held

        # Lost to a power cut, a claim or a reservation only makes its jobs run again.
        return self._write(work, Writing(op="claim", durable=False, claiming=True))

    def start(self, worker_id: str, jobs: Sequence[JobRecord], now: datetime) -> list[JobRecord]:
        """Start reserved jobs; see ports.Prefetch.start. The commit survives a crash of
        this process (it is in the database's log), not necessarily a power cut."""
        if not jobs:
            return []
        jobs = list(jobs)
        return self._write(
            lambda conn, _: start_jobs(conn, self.dialect, jobs, now),
            Writing(op="start", durable=False),
        )

    def release(self, held: Mapping[str, str], now: datetime) -> list[str]:
        """Hand reserved jobs back; see ports.Prefetch.release."""
        if not held:
            return []
        held = dict(held)
        return self._write(
            lambda conn, _: release_jobs(conn, self.dialect, held, now),
            Writing(op="release", durable=False),
        )

    def finish(self, outcomes: Sequence[Outcome], now: datetime) -> list[Transition | None]:
        """Apply attempt outcomes in one transaction; see Storage.finish."""
        return self._finish(outcomes, now, durable=True)

    def _finish(
        self, outcomes: Sequence[Outcome], now: datetime, *, durable: bool
    ) -> list[Transition | None]:
        if not outcomes:
            return []
        outcomes = list(outcomes)

        def work(conn: Connection, attempt: int) -> list[Transition | None]:
            done = finish_outcomes(conn, self.dialect, outcomes, now, attempt)
            self._finished(conn, done)
            return done

        result = self._write(work, Writing(op="finish", durable=durable))
        self._after_commit("finish")
        return result

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
        d = self.dialect

        def work(conn: Connection, attempt: int) -> tuple[list[Transition | None], list[JobRecord]]:
            done: list[Transition | None] = []
            if outcomes:
                done = finish_outcomes(conn, d, outcomes, now, attempt)
                self._finished(conn, done)
            claimed = claim_jobs(conn, d, worker_id, limit, now, lease, wanted) if claiming else []
            if claimed:
                self._label("claim")
            return done, claimed

        result = self._write(work, Writing(op="finish" if outcomes else None, claiming=claiming))
        self._after_commit("finish")
        return result

    def heartbeat(
        self, worker_id: str, held: Mapping[str, str], now: datetime, lease: float
    ) -> HeartbeatReply:
        """Renew the leases of held jobs; see Storage.heartbeat."""
        held = dict(held)
        return self._write(
            lambda conn, _: renew_leases(conn, self.dialect, worker_id, held, now, lease),
            # A crash point at a heartbeat means one that renews a lease.
            Writing(op="heartbeat" if held else None, durable=False),
        )

    def rescue(self, now: datetime, worker_ids: Sequence[str] = ()) -> list[Transition]:
        """Return jobs of dead workers to pending; see Storage.rescue."""
        dead = list(worker_ids)

        def work(conn: Connection, _: int) -> list[Transition]:
            rescued = rescue_jobs(conn, self.dialect, now, dead)
            if rescued:
                self._label("rescue")
                self._wake(conn)
            return rescued

        result = self._write(work)
        self._after_commit("rescue")
        return result

    def cancel(self, job_ids: Sequence[str], now: datetime, reason: str) -> list[Transition]:
        """Cancel jobs, with cascade; see Storage.cancel."""
        ids = [i for i in job_ids if not self.dialect.unmatchable(i)]
        if not ids:
            return []
        return self._write(
            lambda conn, _: cancel_jobs(conn, self.dialect, ids, now, reason), Writing(op="cancel")
        )

    def requeue(self, job_ids: Sequence[str], now: datetime) -> list[Transition]:
        """Requeue finished-badly jobs, reviving their dependents; see Storage.requeue."""
        ids = [i for i in job_ids if not self.dialect.unmatchable(i)]
        if not ids:
            return []

        def work(conn: Connection, _: int) -> list[Transition]:
            transitions = requeue_jobs(conn, self.dialect, ids, now)
            if transitions:
                self._wake(conn)
            return transitions

        return self._write(work, Writing(op="requeue"))

    def prune(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete old jobs in `statuses` that no unfinished job needs; see Storage.prune."""
        wanted = sorted({JobStatus(status).value for status in statuses})
        if not wanted:
            return 0
        deleted = self._write(
            lambda conn, _: prune_jobs(conn, self.dialect, before, wanted), Writing(op="prune")
        )
        if deleted:
            self._reclaim_space()
        return deleted

    # -- jobs: reads -----------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job with that id, or None."""
        return self.get_many([job_id]).get(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs that exist among `job_ids`, by id."""
        ids = [i for i in job_ids if not self.dialect.unmatchable(i)]
        if not ids:
            return {}
        return self._read(lambda conn, _: load_jobs(conn, self.dialect, ids), snapshot=True)

    def results(self, job_ids: Sequence[str], max_bytes: int) -> tuple[int, dict[str, str]]:
        """The results of the jobs among `job_ids` if together they fit in `max_bytes`;
        see Storage.results."""
        d = self.dialect
        ids = [i for i in job_ids if not d.unmatchable(i)]
        if not ids:
            return 0, {}

        def work(conn: Connection, _: int) -> tuple[int, dict[str, str]]:
            # Sized in SQL first, so results over the limit never reach Python.
            row = conn.execute(
                d.render("SELECT coalesce(sum({result_bytes}), 0) FROM jobs WHERE id {any}"),
                (d.ids(ids),),
            ).fetchone()
            total = int(row[0]) if row else 0
            if total > max_bytes:
                return total, {}
            rows = conn.execute(
                d.render("SELECT id, result FROM jobs WHERE id {any} AND result IS NOT NULL"),
                (d.ids(ids),),
            ).fetchall()
            return total, {job_id: result for job_id, result in rows}

        return self._read(work, snapshot=True)

    def executions(self, job_id: str) -> list[Execution]:
        """The job's execution records, oldest first."""
        if self.dialect.unmatchable(job_id):
            return []
        return self._read(
            lambda conn, _: load_executions(conn, self.dialect, job_id), snapshot=True
        )

    def list_jobs(
        self, where: JobFilter, limit: int = 100, offset: int = 0, order: str = "newest"
    ) -> list[JobRecord]:
        """Jobs matching `where`, in `order` ("newest", "oldest" or "priority")."""
        if order not in _ORDERS:
            raise ValueError(f"unknown order {order!r}; use newest, oldest or priority")
        d = self.dialect
        if filter_unmatchable(d, where):
            return []
        clause, params = where_clause(d, where)
        sql = d.render(
            f"SELECT {{job_select}} FROM jobs WHERE {clause} ORDER BY {_ORDERS[order]}"
            " LIMIT {p} OFFSET {p}"
        )
        args = (*params, max(limit, 0), max(offset, 0))
        return self._read(
            lambda conn, _: jobs_from_rows(conn, d, conn.execute(sql, args).fetchall()),
            snapshot=True,
        )

    def count(self, where: JobFilter) -> dict[str, int]:
        """Count of matching jobs per status value."""
        if filter_unmatchable(self.dialect, where):
            return {}
        clause, params = where_clause(self.dialect, where)
        sql = f"SELECT {SHOWN_STATUS}, count(*) FROM jobs WHERE {clause} GROUP BY 1"
        rows = self._read(lambda conn, _: conn.execute(sql, params).fetchall())
        counts: dict[str, int] = {}
        for status, total in rows:  # (a status changed by hand may not be text)
            counts[as_text(status)] = counts.get(as_text(status), 0) + total
        return counts

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Count of jobs per queue name and status value, queues sorted by name."""
        rows = self._read(
            lambda conn, _: conn.execute(
                f"SELECT queue, {SHOWN_STATUS}, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1"
            ).fetchall()
        )
        counts: dict[str, dict[str, int]] = {}
        for queue, status, total in rows:  # (names changed by hand may not be text)
            per_status = counts.setdefault(as_text(queue), {})
            per_status[as_text(status)] = per_status.get(as_text(status), 0) + total
        return counts

    def find_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` ids starting with `prefix`, sorted (a range scan of the id index)."""
        d = self.dialect
        if limit <= 0 or d.unmatchable(prefix):
            return []
        upper = prefix_upper_bound(prefix)
        args: tuple[Any, ...]
        if upper is None:
            sql = d.render("SELECT id FROM jobs WHERE id >= {p} ORDER BY id LIMIT {p}")
            args = (prefix, limit)
        else:
            sql = d.render("SELECT id FROM jobs WHERE id >= {p} AND id < {p} ORDER BY id LIMIT {p}")
            args = (prefix, upper, limit)
        rows = self._read(lambda conn, _: conn.execute(sql, args).fetchall())
        return [job_id for (job_id,) in rows if job_id.startswith(prefix)]

    def next_due(self, now: datetime, queues: Sequence[str] | None = None) -> datetime | None:
        """The earliest run_at of a pending job whose dependencies all completed."""
        d = self.dialect
        if queues is not None and not queues:
            return None
        # The first row of the jobs_due index that passes the filters; never a scan of jobs.
        sql = d.render(_NEXT_DUE.replace("{queues}", "" if queues is None else " AND queue {any}"))
        args: tuple[Any, ...] = () if queues is None else (d.ids(queues),)
        row = self._read(lambda conn, _: conn.execute(sql, args).fetchone())
        return None if row is None else d.due_time(row[0], now)

    def list_workflows(self, limit: int = 100) -> list[WorkflowInfo]:
        """Workflows with their job counts, newest first."""
        return self._read(
            lambda conn, _: load_workflows(conn, self.dialect, max(limit, 0)), snapshot=True
        )

    # -- workers, queues, key-value --------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker, replacing a record with the same id."""
        d = self.dialect
        values = worker_values(d, info)
        sql = d.render(
            f"{{upsert_worker}} ({WORKER_COLUMNS}) VALUES ({', '.join(['{p}'] * 8)})"
            "{upsert_worker_end}"
        )
        self._write(lambda conn, _: conn.execute(sql, values), Writing(op="register", single=True))

    def deregister_worker(self, worker_id: str, now: datetime) -> None:
        """Mark the worker stopped at `now`."""
        d = self.dialect
        sql = d.render("UPDATE workers SET stopped_at = {p} WHERE id = {p}")
        params = (d.time(now), worker_id)
        self._write(
            lambda conn, _: conn.execute(sql, params), Writing(op="deregister", single=True)
        )

    def list_workers(self, since: datetime | None = None) -> list[WorkerInfo]:
        """Workers still registered, or stopped at or after `since`; with their jobs."""
        return self._read(lambda conn, _: load_workers(conn, self.dialect, since), snapshot=True)

    def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue (a resume wakes waiting workers)."""
        d = self.dialect

        def work(conn: Connection, _: int) -> None:
            if paused:
                conn.execute(d.render("{pause}"), (queue,))
            else:
                conn.execute(d.render("DELETE FROM paused_queues WHERE queue = {p}"), (queue,))
                self._wake(conn)

        self._write(work, Writing(op="pause" if paused else "resume"))

    def paused_queues(self) -> frozenset[str]:
        """Names of the paused queues."""
        rows = self._read(
            lambda conn, _: conn.execute("SELECT queue FROM paused_queues").fetchall()
        )
        return frozenset(as_text(queue) for (queue,) in rows)

    def kv_get(self, namespace: str, key: str) -> str | None:
        """A value of the key-value store, or None."""
        d = self.dialect
        if d.unmatchable(namespace, key):
            return None
        sql = d.render("SELECT value FROM kv WHERE namespace = {p} AND key = {p}")
        row = self._read(lambda conn, _: conn.execute(sql, (namespace, key)).fetchone())
        return None if row is None else str(row[0])

    def kv_set(self, namespace: str, key: str, value: str | None) -> None:
        """Set a value (None deletes it)."""
        d = self.dialect
        params: tuple[str, ...] = (namespace, key)
        if value is None:
            sql = d.render("DELETE FROM kv WHERE namespace = {p} AND key = {p}")
        else:
            sql = d.render("{upsert_kv}")
            params = (namespace, key, value)
        self._write(lambda conn, _: conn.execute(sql, params), Writing(op="kv", single=True))

    def kv_items(self, namespace: str) -> dict[str, str]:
        """All keys and values of a namespace, sorted by key."""
        d = self.dialect
        if d.unmatchable(namespace):
            return {}
        sql = d.render("SELECT key, value FROM kv WHERE namespace = {p} ORDER BY key")
        rows = self._read(lambda conn, _: conn.execute(sql, (namespace,)).fetchall())
        return {key: value for key, value in rows}

    # -- capabilities ----------------------------------------------------------------------

    def import_(
        self, items: Iterable[Mapping[str, Any]], now: datetime | None = None
    ) -> dict[str, int]:
        """Store an export exactly, in one transaction, into this empty queue; counts per
        kind. Refused (TransferError) when it holds any job; running jobs arrive as a rescue
        at `now` (default: the current time) leaves them. Workers waiting are woken."""
        plan = plan_import(items, now or datetime.now(UTC))

        def work(conn: Connection, attempt: int) -> dict[str, int]:
            counts = import_plan(conn, self.dialect, self.url, plan, attempt)
            self._wake(conn)
            return counts

        return self._write(work, Writing(op="import"))


__all__ = ["PLAIN", "SqlStorage", "Work", "Writing"]
