"""What differs between the SQL databases GigQ stores jobs in: how values are passed and
read back, and the statements that truly differ. One subclass per database
(`gigq_sql.sqlite`, `gigq_sql.postgresql`); the algorithms of this package ask it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from gigq_core.records import ErrorInfo, Execution, JobRecord
from gigq_sql.connection import Connection


class BadColumn(ValueError):
    """A column holds a value that its record field cannot take."""


def show(value: Any) -> str:
    """A stored value for a message, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


@attrs.frozen(kw_only=True)
class Claim:
    """What a claim asks for, the same in each of its rounds."""

    #: The claiming worker.
    worker_id: str
    #: The caller's clock: jobs due by then are ready.
    now: datetime
    #: When the leases of the claimed jobs end.
    lease_end: datetime
    #: The queues to claim from (None: any queue).
    queues: tuple[str, ...] | None
    #: Reserve the jobs (held, not started: no attempt counted, no `started_at`) instead
    #: of starting them; only jobs of these functions.
    reserve_functions: tuple[str, ...] | None = None


#: An attempt that ended: the job as it ran, the execution status, its result and error.
EndedAttempt = tuple[JobRecord, str, str | None, ErrorInfo | None]


class Dialect(ABC):
    """One database's way of storing GigQ's rows; see the module docstring."""

    #: Short name ("sqlite", "postgres"); log messages go to the logger `gigq.<name>`.
    name: str
    #: Pieces of SQL that statement templates name in braces (`render`): `p` (a parameter),
    #: `any` (`= any of the ids in one parameter`), `plus` (a planner hint that hides a
    #: column from the index choice), `true`/`false`, `for_update`/`for_share` (row locks),
    #: `execution_order` (a job's executions, oldest first), and statements or conditions
    #: that differ (see each dialect); `job_select` and `job_select_with_dependencies` too.
    fragments: Mapping[str, str]
    #: The job columns every job query selects (`gigq_sql.rows.job_from_row`).
    job_select: str
    #: `job_select` and, last, the job's dependencies (`dependencies_of` reads it).
    job_select_with_dependencies: str
    #: True when a failed statement aborts the whole transaction: what can be checked
    #: before a write is checked, never left to a constraint.
    checks_before_writing: bool

    def __init__(self) -> None:
        self._names = {
            **self.fragments,
            "job_select": self.job_select,
            "job_select_with_dependencies": self.job_select_with_dependencies,
        }
        self._rendered: dict[str, str] = {}

    def render(self, template: str) -> str:
        """`template` with its `{fragment}` names filled in (computed once per template)."""
        text = self._rendered.get(template)
        if text is None:
            text = self._rendered[template] = template.format_map(self._names)
        return text

    # -- values ------------------------------------------------------------------------------

    @abstractmethod
    def time(self, value: datetime) -> Any:
        """An aware datetime as this database stores it."""

    def time_opt(self, value: datetime | None) -> Any:
        """Like `time`, passing None through."""
        return None if value is None else self.time(value)

    @abstractmethod
    def stored_time(self, value: datetime) -> datetime:
        """`value` as reading it back after storing it gives it."""

    @abstractmethod
    def read_time(self, column: str, value: Any) -> datetime:
        """A stored time as an aware UTC datetime; BadColumn if it holds none."""

    def read_time_opt(self, column: str, value: Any) -> datetime | None:
        """Like `read_time`, passing None through."""
        return None if value is None else self.read_time(column, value)

    @abstractmethod
    def due_time(self, run_at: Any, now: datetime) -> datetime | None:
        """When a pending job with this stored run_at is due, for a worker's sleep (a value
        that holds no time: now if a claim would meet it, else None)."""

    @abstractmethod
    def flag(self, value: bool) -> Any:
        """A boolean as this database stores it."""

    @abstractmethod
    def ids(self, values: Iterable[Any]) -> Any:
        """A list of ids (or names) as the one parameter of `{any}`."""

    @abstractmethod
    def names(self, values: Sequence[str]) -> Any:
        """A list of names as a column value (a worker's queues)."""

    @abstractmethod
    def read_names(self, column: str, value: Any) -> tuple[str, ...]:
        """A column of names read back; BadColumn if it holds none."""

    @abstractmethod
    def dependencies_of(self, value: Any) -> Sequence[Any]:
        """The dependencies selected last by `job_select_with_dependencies`, unchecked."""

    def check_dependencies(self, dependencies: Sequence[Any]) -> None:
        """BadColumn unless every dependency read back is a job id."""
        for depends_on in dependencies:
            if not isinstance(depends_on, str):
                raise BadColumn(f"a dependency is {show(depends_on)}, not text")

    @abstractmethod
    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A condition `column is one of values` and its parameters."""

    def unmatchable(self, *texts: str | None) -> bool:
        """True when one of `texts` cannot be stored, so no stored value equals it."""
        return False

    # -- statements that differ ------------------------------------------------------------

    @abstractmethod
    def with_dependencies(
        self, conn: Connection, rows: Sequence[Sequence[Any]]
    ) -> list[tuple[Sequence[Any], Sequence[Any]]]:
        """Rows selected with `job_select`, each with its dependencies (unchecked)."""

    @abstractmethod
    def job_values(self, values: tuple[Any, ...], dependencies: Sequence[str]) -> tuple[Any, ...]:
        """Values for `job_insert` or `job_import`: the job's columns and bookkeeping, then
        its dependencies where jobs rows hold them."""

    #: INSERT INTO jobs of the values of `job_values` (a new job; seq is numbered).
    job_insert: str
    #: INSERT INTO jobs of the values of `job_values` with seq first (an import).
    job_import: str

    @abstractmethod
    def insert_dependencies(
        self, conn: Connection, links: Iterable[tuple[str, Sequence[str]]]
    ) -> None:
        """Store the dependencies of new jobs (id, dependencies) where jobs rows do not
        hold them."""

    @abstractmethod
    def forget_dependencies(self, conn: Connection, job_ids: Sequence[str]) -> None:
        """Delete the dependencies of deleted jobs where jobs rows do not hold them."""

    @abstractmethod
    def imported(self, conn: Connection, last_seq: int) -> None:
        """After an import kept the source's seq numbers: number new jobs past `last_seq`."""

    @abstractmethod
    def claim_rows(self, conn: Connection, claim: Claim, limit: int) -> list[Any]:
        """Mark up to `limit` ready jobs running for `claim`'s worker; their rows
        (`job_select`)."""

    @abstractmethod
    def start_rows(
        self, conn: Connection, jobs: Sequence[JobRecord], now: datetime
    ) -> list[tuple[Any, Any, Any]]:
        """Start the jobs still reserved under their tokens (attempts + 1, `started_at`,
        the attempt's execution opened where the dialect opens it at the start); for each
        started, (id, attempts, started_at) as stored."""

    @abstractmethod
    def fail_running(
        self, conn: Connection, seq: int, error: str, now: datetime, token: str | None
    ) -> bool:
        """End the running row `seq` failed with `error` (`token`: only while that attempt
        holds it), its open execution too; whether it did."""

    @abstractmethod
    def end_executions(
        self, conn: Connection, ended: Sequence[EndedAttempt], now: datetime
    ) -> None:
        """Record the ends of attempts, as their jobs' rows are ended too."""

    @abstractmethod
    def running_executions(
        self, conn: Connection, job_ids: Sequence[str], recorded: Iterable[Execution]
    ) -> dict[str, Execution]:
        """The running attempts that have no execution row, by job id."""

    @abstractmethod
    def release(self, conn: Connection, job_ids: Sequence[str]) -> None:
        """Unblock the dependents of the jobs `job_ids`, which completed."""

    @abstractmethod
    def renew(
        self, conn: Connection, held: Mapping[str, str], lease_end: datetime
    ) -> dict[str, bool]:
        """Extend the leases of the running jobs still held under their tokens; for each
        such job, whether a cancel was requested."""


__all__ = ["BadColumn", "Claim", "Dialect", "EndedAttempt", "show"]
