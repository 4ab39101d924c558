"""`Workflow`: a named group of jobs with dependencies, submitted atomically."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gigq_core.errors import InvalidJobError
from gigq_core.jobs import Job

if TYPE_CHECKING:
    from gigq_core.queue import JobQueue
    from gigq_core.tasks import TaskWrapper


def _ids(depends_on: Any) -> list[str]:
    if depends_on is None:
        return []
    if isinstance(depends_on, Job | str):
        depends_on = [depends_on]
    ids = []
    for dep in depends_on:
        if isinstance(dep, Job):
            ids.append(dep.id)
        elif isinstance(dep, str) and dep:
            ids.append(dep)
        else:
            raise InvalidJobError(f"depends_on takes Jobs or job ids, got {dep!r}")
    return ids


class Workflow:
    """Jobs that belong together; `submit_all` stores them all or none."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidJobError(f"workflow name must be a non-empty string, got {name!r}")
        self.name = name
        self.id = str(uuid.uuid4())
        self.jobs: list[Job] = []

    def add_job(self, job: Job, depends_on: Sequence[Job | str] | Job | str | None = None) -> Job:
        """Add `job`, depending on `depends_on` (Jobs or ids) besides its own dependencies."""
        if not isinstance(job, Job):
            raise InvalidJobError(f"add_job takes a Job, got {type(job).__name__}")
        for dep in _ids(depends_on):
            if dep not in job.dependencies:
                job.dependencies.append(dep)
        self.jobs.append(job)
        return job

    def add_task(
        self,
        task_fn: TaskWrapper,
        params: dict[str, Any] | None = None,
        depends_on: Sequence[Job | str] | Job | str | None = None,
        pass_parent_results: bool | None = None,
    ) -> Job:
        """Add a job for a `@task` function with `params`."""
        if not hasattr(task_fn, "to_job"):
            raise InvalidJobError(f"add_task takes a @task function, got {task_fn!r}")
        job: Job = task_fn.to_job(**(params or {}))
        if pass_parent_results is not None:
            job.pass_parent_results = pass_parent_results
        return self.add_job(job, depends_on)

    def submit_all(self, queue: JobQueue) -> list[str]:
        """Submit every job in one transaction; returns their ids in the order added."""
        for job in self.jobs:
            job.workflow_id = self.id
            job.workflow_name = self.name
        return queue.submit_many(self.jobs)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} {len(self.jobs)} jobs>"


__all__ = ["Workflow"]
