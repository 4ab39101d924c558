"""The original GigQ's shapes over GigQ's core: a `JobQueue` whose reads return dicts, with
the original's `requeue` and `clear_completed`, a `Worker` that opens such a queue, and
`close_connections`.

The core's `JobQueue` returns records (`get_job`, `jobs`, `executions`); this one adds the
dict-shaped calls under the original's names and changes none of the core's, so it can go
wherever a core queue is expected (a Worker, a Workflow, a plugin's hook).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gigq_core import queue as core_queue
from gigq_core import worker as core_worker
from gigq_core.plugins import GigQPluginManager
from gigq_core.ports import Clock, Serializer
from gigq_core.views import listed_job_dict, status_dict

#: The queues open in this process, for close_connections.
_OPEN: weakref.WeakSet[JobQueue] = weakref.WeakSet()
_OPEN_LOCK = threading.Lock()


class JobQueue(core_queue.JobQueue):
    """A queue of jobs (see `gigq_core.JobQueue`) that also reads jobs as dicts, as the
    original GigQ's did."""

    def __init__(
        self,
        target: Any = None,
        initialize: bool = True,
        *,
        plugin_manager: GigQPluginManager | None = None,
        clock: Clock | None = None,
        serializer: Serializer | str | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(
            target,
            initialize,
            plugin_manager=plugin_manager,
            clock=clock,
            serializer=serializer,
            **settings,
        )
        with _OPEN_LOCK:
            _OPEN.add(self)

    def get_status(self, job_id: str) -> dict[str, Any]:
        """The job as a flat dict with its executions; `{"exists": False}` if unknown."""
        record = self.storage.get(job_id)
        if record is None:
            return {"exists": False}
        return status_dict(record, self.executions(job_id), self.serializer)

    def list_jobs(
        self,
        status: str | Sequence[str] | None = None,
        limit: int = 100,
        *,
        queue: str | Sequence[str] | None = None,
        name: str | None = None,
        workflow_id: str | None = None,
        offset: int = 0,
        order: str = "newest",
    ) -> list[dict[str, Any]]:
        """Jobs as dicts (without executions), newest first unless `order` says otherwise;
        a job whose row cannot be read is listed with status "unreadable"."""
        records = self.jobs(
            status,
            limit,
            queue=queue,
            name=name,
            workflow_id=workflow_id,
            offset=offset,
            order=order,
        )
        return [listed_job_dict(record, self.serializer) for record in records]

    def requeue(self, job_id: str) -> bool:
        """Put a failed, timed-out or cancelled job back to pending; False otherwise."""
        return self.requeue_job(job_id)

    def clear_completed(self, before_timestamp: float | datetime | None = None) -> int:
        """Delete completed and cancelled jobs (and their executions) last updated before
        `before_timestamp` (a Unix time or datetime; default now). Never a job a live job
        depends on. Returns how many were deleted."""
        return self.clear(("completed", "cancelled"), before_timestamp)

    def close(self) -> None:
        """Close the storage."""
        with _OPEN_LOCK:
            _OPEN.discard(self)
        super().close()


class Worker(core_worker.Worker):
    """A worker (see `gigq_core.Worker`) whose own queue, when given a target, is a
    `gigq.JobQueue`."""

    queue_class = JobQueue


def close_connections() -> None:
    """Close every queue opened in this process."""
    with _OPEN_LOCK:
        queues = list(_OPEN)
    for opened in queues:
        opened.close()


__all__ = ["JobQueue", "Worker", "close_connections"]
