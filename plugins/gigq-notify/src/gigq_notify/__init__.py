"""gigq-notify: a webhook and/or a command on job events, configured in GigQ's settings.

Hooks only put an event in a bounded queue; one background thread per process sends it, so a
worker never waits on a slow webhook. A stopping worker (and an exiting process) waits at most
`flush_timeout` seconds for what is still queued.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import logging
import socket
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gigq.plugin import hookimpl

from gigq_notify._config import DEFAULT_EVENTS, EVENTS, NotifyConfig, load_config
from gigq_notify._redaction import redact
from gigq_notify._sender import Outcome, Sender, deliver, environment

if TYPE_CHECKING:
    import click
    from gigq.plugin import ErrorInfo, JobRecord

log = logging.getLogger("gigq.notify")


class Notifier:
    """The settings and the background sender of one process."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self.sender = Sender(config)

    def wants(self, event: str) -> bool:
        """True when `event` is to be sent."""
        return self.config.is_enabled and event in self.config.events


# The process's notifier, made on the first event: the sender thread belongs to the process,
# so this one piece of state is per process, like GigQ's default plugin manager.
_notifier: Notifier | None = None
_disabled = False
_lock = threading.Lock()
_atexit_registered = False


def current() -> Notifier | None:
    """The process's notifier, reading the settings on first use; None when misconfigured."""
    global _notifier, _disabled, _atexit_registered
    with _lock:
        if _notifier is not None or _disabled:
            return _notifier
        try:
            _notifier = Notifier(load_config())
        except Exception as err:  # bad settings must not break jobs: say so once, stay quiet
            _disabled = True
            log.error("gigq-notify is off: %s", redact(str(err)))
            return None
        if not _atexit_registered:
            atexit.register(_flush_at_exit)
            _atexit_registered = True
        return _notifier


def reset() -> None:
    """Forget the settings and stop the sender (bounded); the next event reads them again."""
    global _notifier, _disabled
    with _lock:
        notifier, _notifier, _disabled = _notifier, None, False
    if notifier is not None:
        notifier.sender.close(notifier.config.flush_timeout)


def _flush_at_exit() -> None:
    notifier = _notifier
    if notifier is not None and notifier.sender.pending():
        notifier.sender.flush(notifier.config.flush_timeout)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def job_fields(job: JobRecord) -> dict[str, Any]:
    """What a notification says about a job."""
    return {
        "id": job.id,
        "name": job.name,
        "function": job.function,
        "queue": job.queue,
        "status": job.status.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "unique_key": job.unique_key,
        "workflow_id": job.workflow_id,
        "worker_id": job.worker_id,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
    }


def make_event(event: str, job: JobRecord | None = None, **fields: Any) -> dict[str, Any]:
    """The notification of `event`: the JSON body of the webhook and the command's payload."""
    body: dict[str, Any] = {
        "event": event,
        "sent_at": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
    }
    if job is not None:
        body["job"] = job_fields(job)
    for key, value in fields.items():
        if key == "error" and value is not None:
            body["error"] = {"type": value.type, "message": value.message}
        else:
            body[key] = value
    return body


def _emit(event: str, job: JobRecord | None = None, **fields: Any) -> None:
    notifier = current()
    if notifier is not None and notifier.wants(event):
        notifier.sender.submit(make_event(event, job, **fields))


# -- hooks ---------------------------------------------------------------------------------


@hookimpl
def gigq_job_submitted(job: JobRecord) -> None:
    """Send `submitted`."""
    _emit("submitted", job)


@hookimpl
def gigq_job_started(job: JobRecord, attempt: int, worker_id: str) -> None:
    """Send `started`."""
    _emit("started", job, attempt=attempt, worker_id=worker_id)


@hookimpl
def gigq_job_succeeded(job: JobRecord, duration: float) -> None:
    """Send `succeeded` (without the result, which may be large or private)."""
    _emit("succeeded", job, duration=duration)


@hookimpl
def gigq_job_failed(job: JobRecord, error: ErrorInfo, final: bool) -> None:
    """Send `failed` when the job failed for good (a retried attempt sends `retrying`)."""
    if final:
        _emit("failed", job, error=error, final=True)


@hookimpl
def gigq_job_retrying(job: JobRecord, error: ErrorInfo, delay: float) -> None:
    """Send `retrying`."""
    _emit("retrying", job, error=error, delay=delay)


@hookimpl
def gigq_job_cancelled(job: JobRecord, reason: str) -> None:
    """Send `cancelled`."""
    _emit("cancelled", job, reason=reason)


@hookimpl
def gigq_job_timed_out(job: JobRecord, final: bool) -> None:
    """Send `timed_out` when the job timed out for good (a retry sends `retrying`)."""
    if final:
        _emit("timed_out", job, final=True)


@hookimpl
def gigq_worker_started(worker_id: str) -> None:
    """Read the settings (here, before job processes exist: theirs lack `GIGQ_NOTIFY_*`), and
    send `worker_started`."""
    _emit("worker_started", worker_id=worker_id)


@hookimpl
def gigq_worker_stopped(worker_id: str) -> None:
    """Send `worker_stopped`, then wait (at most `flush_timeout`) for what is unsent."""
    _emit("worker_stopped", worker_id=worker_id)
    notifier = current()
    if notifier is not None and notifier.sender.pending():
        notifier.sender.flush(notifier.config.flush_timeout)


@hookimpl
def gigq_register_commands(cli: click.Group) -> None:
    """Add `gigq notify test`."""
    from gigq_notify._commands import notify

    cli.add_command(notify)


def _version() -> str:
    try:
        return importlib.metadata.version("gigq-notify")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'gigq_notify' has no attribute {name!r}")


__all__ = [
    "DEFAULT_EVENTS",
    "EVENTS",
    "Notifier",
    "NotifyConfig",
    "Outcome",
    "Sender",
    "current",
    "deliver",
    "environment",
    "job_fields",
    "load_config",
    "make_event",
    "reset",
]
