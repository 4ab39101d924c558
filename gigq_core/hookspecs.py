"""Every hook spec of GigQ, and the two markers (project name "gigq").

Hooks are called with keyword arguments; an implementation may take any subset of them.
Lifecycle hooks observe only: they receive frozen records, return nothing, and fire after the
transition is committed, in the process that committed it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from gigq_core.ports import Serializer, Storage
    from gigq_core.queue import JobQueue
    from gigq_core.records import ErrorInfo, JobRecord
    from gigq_core.settings import Option

NAME = "gigq"

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


class CommandGroup(Protocol):
    """What gigq_register_commands receives: the root `click.Group`, typed here without
    the core depending on click."""

    def add_command(self, cmd: Any, name: str | None = None) -> None:
        """Attach a click command or group."""


# -- lifecycle -----------------------------------------------------------------------------


@hookspec
def gigq_job_submitted(job: JobRecord) -> None:
    """A job was stored by submit (not for a deduplicated submit).

    Fired after the submit's commit. `job.seq` (the storage's submit order) may be 0 here:
    a job without dependencies is passed as submitted, without reading it back.
    """


@hookspec
def gigq_job_started(job: JobRecord, attempt: int, worker_id: str) -> None:
    """A worker claimed the job and starts attempt number `attempt`."""


@hookspec
def gigq_job_succeeded(job: JobRecord, result: Any, duration: float) -> None:
    """The job completed; `result` is its return value, `duration` seconds of the attempt."""


@hookspec
def gigq_job_failed(job: JobRecord, error: ErrorInfo, final: bool) -> None:
    """An attempt failed (or its worker was lost); `final` is True when no retry follows."""


@hookspec
def gigq_job_retrying(job: JobRecord, error: ErrorInfo, delay: float) -> None:
    """A failed or timed-out attempt will be retried after `delay` seconds."""


@hookspec
def gigq_job_cancelled(job: JobRecord, reason: str) -> None:
    """The job was cancelled (by a user, or because a dependency ended badly)."""


@hookspec
def gigq_job_timed_out(job: JobRecord, final: bool) -> None:
    """An attempt ran past the job's timeout and was stopped."""


@hookspec
def gigq_worker_started(worker_id: str) -> None:
    """A worker started and registered itself."""


@hookspec
def gigq_worker_stopped(worker_id: str) -> None:
    """A worker stopped."""


@hookspec
def gigq_worker_tick(worker_id: str, now: datetime, queue: JobQueue) -> None:
    """About once a second in every running worker, for periodic plugin work (such as
    cron); `queue` is the worker's JobQueue, to read plugin state and submit jobs."""


# -- extension points ----------------------------------------------------------------------


@hookspec
def gigq_register_commands(cli: CommandGroup) -> None:
    """Add click commands to the `gigq` root group (a `click.Group`)."""


@hookspec
def gigq_retry_strategies() -> dict[str, Any]:
    """Return a dict of retry strategy name -> strategy or factory.

    A strategy is an object with a method `delay(attempt, error) -> float | None` (seconds
    before the next attempt; None: don't retry). Each value is either

    - a strategy object, used as it is: a job names it alone (`retry="name"`), with no
      parameters; or
    - a factory (a class or a function) that builds one from the job's retry parameters
      as keyword arguments: `retry=("name", {"param": 1})` gives `factory(param=1)`. A
      class counts as a factory even when it defines `delay` itself.
    """
    return {}


@hookspec(firstresult=True)
def gigq_storage(url: str, options: dict[str, Any]) -> Storage | None:
    """Return a storage adapter for `url` (with settings `options`), or None if not yours."""


@hookspec
def gigq_serializers() -> dict[str, Serializer]:
    """Return a dict of serializer name -> serializer."""
    return {}


@hookspec
def gigq_settings() -> dict[str, Option[Any]]:
    """Return the settings this plugin reads, name -> `Option` (default, help, check).

    GigQ reads each like its own settings (keyword, URL query, `GIGQ_<NAME>`, config file),
    fills in the default, checks the value for every queue, and passes it to the storage hook
    in `options`. Job processes keep `GIGQ_<NAME>` as they keep GigQ's own variables, so no
    secret belongs here. A name of GigQ's own settings is ignored.
    """
    return {}
