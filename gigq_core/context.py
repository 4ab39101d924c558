"""`current_job()`: what a running job knows about itself."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

import attrs

from gigq_core.errors import GigQError


@attrs.define(kw_only=True)
class JobContext:
    """The running job's id, name, attempt and worker, with cancellation and heartbeat."""

    id: str
    name: str
    attempt: int
    worker_id: str
    #: Set when the job should stop: cancelled, timed out, or its worker is shutting down.
    _stop: threading.Event = attrs.field(factory=threading.Event, alias="stop")
    _beat: Callable[[], None] | None = attrs.field(default=None, alias="beat")

    def is_cancelled(self) -> bool:
        """True once the job was asked to stop (cooperative cancellation)."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the job to stop (its worker's decision: cancelled, timed out, lost, shutting
        down); `is_cancelled()` is True from now on."""
        self._stop.set()

    def heartbeat(self) -> None:
        """Tell the worker the job is alive (renews its lease now, for long jobs)."""
        if self._beat is not None:
            self._beat()


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "gigq_current_job", default=None
)


def current_job() -> JobContext:
    """The job running in this thread or task; raises GigQError outside a job."""
    context = _current.get()
    if context is None:
        raise GigQError("current_job() was called outside a running job")
    return context


def set_current_job(context: JobContext | None) -> contextvars.Token[JobContext | None]:
    """Make `context` the current job (for executors)."""
    return _current.set(context)


def reset_current_job(token: contextvars.Token[JobContext | None]) -> None:
    """Undo `set_current_job`."""
    _current.reset(token)


__all__ = ["JobContext", "current_job"]
