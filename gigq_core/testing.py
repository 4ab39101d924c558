"""Helpers for testing code that uses GigQ, and for plugin authors: a fake clock and a
recording plugin."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from gigq_core.hookspecs import hookimpl


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The fake current time."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """The fake monotonic time."""
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds


class RecordingPlugin:
    """A plugin that records every lifecycle hook call as `(hook, job_id or worker_id)`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.kwargs: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _record(self, hook: str, key: str, **kwargs: Any) -> None:
        with self._lock:
            self.calls.append((hook, key))
            self.kwargs.append((hook, kwargs))

    def names(self) -> list[str]:
        """The hook names recorded, in order."""
        with self._lock:
            return [hook for hook, _ in self.calls]

    @hookimpl
    def gigq_job_submitted(self, job: Any) -> None:
        self._record("gigq_job_submitted", job.id, job=job)

    @hookimpl
    def gigq_job_started(self, job: Any, attempt: int, worker_id: str) -> None:
        self._record("gigq_job_started", job.id, job=job, attempt=attempt, worker_id=worker_id)

    @hookimpl
    def gigq_job_succeeded(self, job: Any, result: Any, duration: float) -> None:
        self._record("gigq_job_succeeded", job.id, job=job, result=result, duration=duration)

    @hookimpl
    def gigq_job_failed(self, job: Any, error: Any, final: bool) -> None:
        self._record("gigq_job_failed", job.id, job=job, error=error, final=final)

    @hookimpl
    def gigq_job_retrying(self, job: Any, error: Any, delay: float) -> None:
        self._record("gigq_job_retrying", job.id, job=job, error=error, delay=delay)

    @hookimpl
    def gigq_job_cancelled(self, job: Any, reason: str) -> None:
        self._record("gigq_job_cancelled", job.id, job=job, reason=reason)

    @hookimpl
    def gigq_job_timed_out(self, job: Any, final: bool) -> None:
        self._record("gigq_job_timed_out", job.id, job=job, final=final)

    @hookimpl
    def gigq_worker_started(self, worker_id: str) -> None:
        self._record("gigq_worker_started", worker_id)

    @hookimpl
    def gigq_worker_stopped(self, worker_id: str) -> None:
        self._record("gigq_worker_stopped", worker_id)


__all__ = ["FakeClock", "RecordingPlugin"]
