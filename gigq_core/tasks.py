"""The `@task` decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from gigq_core.jobs import Job, function_path

if TYPE_CHECKING:
    from gigq_core.queue import JobQueue


class TaskWrapper:
    """A function that can still be called, and also turned into jobs."""

    def __init__(self, function: Callable[..., Any], **options: Any) -> None:
        function_path(function)  # refuse lambdas and nested functions at decoration
        self.__wrapped_task__ = function
        self.options = options
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped_task__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskWrapper {function_path(self.__wrapped_task__)}>"

    def to_job(self, **params: Any) -> Job:
        """A Job that calls this function with `params`."""
        options = dict(self.options)
        name = options.pop("name", None) or self.__wrapped_task__.__name__
        return Job(name, self.__wrapped_task__, params=params, **options)

    def submit(self, queue: JobQueue, **params: Any) -> str:
        """Submit a job that calls this function with `params`; returns its id."""
        return queue.submit(self.to_job(**params))


@overload
def task(function: Callable[..., Any]) -> TaskWrapper: ...


@overload
def task(function: None = None, **options: Any) -> Callable[[Callable[..., Any]], TaskWrapper]: ...


def task(function: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a module-level function so it can be submitted as a job.

    `@task` or `@task(name=, priority=, max_attempts=, timeout=, description=, retry_delay=,
    queue=, retry=, ...)`: the options are Job's keyword arguments.
    """
    if function is not None:
        return TaskWrapper(function)

    def decorate(inner: Callable[..., Any]) -> TaskWrapper:
        return TaskWrapper(inner, **options)

    return decorate


__all__ = ["TaskWrapper", "task"]
