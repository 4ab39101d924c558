"""Job functions the tests submit: module-level, so a worker imports them by name."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

from gigq_core.context import current_job
from gigq_core.errors import Abort
from gigq_core.memory import open_memory
from gigq_core.tasks import task

#: Fake clocks a job can reach by name (a job gets only JSON params).
CLOCKS: dict[str, Any] = {}


class CustomError(Exception):
    """An error type defined outside builtins, for retry_on / dont_retry_on by name."""


def noop() -> None:
    """Do nothing."""


def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def echo(**kwargs: Any) -> dict[str, Any]:
    """Return the params as given."""
    return kwargs


def fail(message: str = "boom") -> None:
    """Raise ValueError."""
    raise ValueError(message)


def fail_custom(message: str = "custom") -> None:
    """Raise CustomError."""
    raise CustomError(message)


def fail_until(attempts: int, value: Any = "ok") -> Any:
    """Raise ValueError on the first `attempts` attempts, then return `value`."""
    if current_job().attempt <= attempts:
        raise ValueError(f"attempt {current_job().attempt} fails")
    return value


class UnprintableError(ValueError):
    """An error whose str() raises: the worker must record it, not crash on it."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def fail_unprintable() -> None:
    """Raise UnprintableError (chained to an error whose str() raises too)."""
    try:
        raise UnprintableError()
    except UnprintableError as cause:
        raise UnprintableError() from cause


def abort(message: str = "give up") -> None:
    """Raise Abort: fail at once, without retry."""
    raise Abort(message)


def exits(code: int = 3) -> None:
    """Call sys.exit()."""
    sys.exit(code)


def sleep(seconds: float = 0.0) -> str:
    """Sleep (only used with tiny values)."""
    time.sleep(seconds)
    return "slept"


async def async_add(a: int, b: int) -> int:
    """An async job."""
    return a + b


def takes_parents(parent_results: dict[str, Any]) -> dict[str, Any]:
    """Return the parent results it received."""
    return parent_results


def takes_kwargs(**kwargs: Any) -> dict[str, Any]:
    """Return every keyword it received (parent_results included, if passed)."""
    return kwargs


def takes_nothing() -> str:
    """Take no parameter at all."""
    return "nothing"


def takes_x(x: int = 0) -> int:
    """Take one parameter that is not parent_results."""
    return x


def returns_unserializable() -> Any:
    """Return a set, which JSON cannot store."""
    return {1, 2, 3}


def returns_text(size: int, char: str = "a") -> str:
    """Return `size` copies of `char`."""
    return char * size


def fail_big(size: int, char: str = "x") -> None:
    """Raise a ValueError whose message is `size` copies of `char`."""
    raise ValueError(char * size)


def record_current_job() -> dict[str, Any]:
    """Return what current_job() says."""
    job = current_job()
    return {
        "id": job.id,
        "name": job.name,
        "attempt": job.attempt,
        "worker_id": job.worker_id,
        "is_cancelled": job.is_cancelled(),
    }


def cancel_self(store: str) -> bool:
    """Ask the queue in `memory://store` to cancel this running job, heartbeat, and return
    whether the job now sees the cancellation."""
    job = current_job()
    storage = open_memory(f"memory://{store}")
    storage.cancel([job.id], datetime.now(UTC), "stop yourself")
    job.heartbeat()
    return job.is_cancelled()


def overrun(clock: str, seconds: float) -> str:
    """Move the fake clock `CLOCKS[clock]` past the job's timeout, then wait (at most 5 s
    of real time) until the worker asks the job to stop."""
    CLOCKS[clock].advance(seconds)
    job = current_job()
    deadline = time.monotonic() + 5
    while not job.is_cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "stopped" if job.is_cancelled() else "not stopped"


@task
def task_add(a: int, b: int) -> int:
    """A task with default options."""
    return a + b


@task(name="custom-name", priority=5, max_attempts=2, timeout=10, retry_delay=3, queue="q1")
def task_with_options(x: int) -> int:
    """A task with options."""
    return x * 2


class Holder:
    """A class whose methods are not valid job functions."""

    def method(self) -> None:
        """A method."""

    @staticmethod
    def static() -> None:
        """A static method."""


def make_nested() -> Any:
    """Return a nested function."""

    def nested() -> None:
        pass

    return nested


def touch(path: str) -> None:
    """Create the file `path` (a job whose running leaves a mark)."""
    with open(path, "a"):
        pass
