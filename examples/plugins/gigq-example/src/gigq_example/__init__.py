"""gigq-example: a small plugin to copy from.

It adds retry strategies (an extension hook) and logs every job that failed for good (a
lifecycle hook). Its entry point in pyproject.toml is all that links it to GigQ.

A strategy is offered in one of two ways: as a factory that each job's parameters build
("fibonacci", the class), or as a ready strategy object that jobs name alone
("fibonacci_minutes").
"""

from __future__ import annotations

import logging
from typing import Any

from gigq.plugin import hookimpl

log = logging.getLogger("gigq_example")


class Fibonacci:
    """Wait `unit` times 1, 1, 2, 3, 5, 8, ... seconds before each retry, at most `cap`.

    Errors whose type name is in `dont_retry_on` fail the job at once.
    """

    def __init__(
        self, unit: float = 1.0, cap: float = 3600.0, dont_retry_on: list[str] | None = None
    ) -> None:
        if unit < 0 or cap < 0:
            raise TypeError("unit and cap must be zero or more")
        self.unit = unit
        self.cap = cap
        self.dont_retry_on = tuple(dont_retry_on or ())

    def delay(self, attempt: int, error: Any) -> float | None:
        """Seconds before attempt `attempt + 1`, or None: don't retry."""
        if error.type in self.dont_retry_on or error.type.rpartition(".")[2] in self.dont_retry_on:
            return None
        previous, current = 0, 1
        for _ in range(attempt - 1):
            previous, current = current, previous + current
            if self.unit * current >= self.cap:
                return self.cap
        return min(self.cap, self.unit * current)


#: A ready strategy: 1, 1, 2, 3, 5, ... minutes, at most an hour.
FIBONACCI_MINUTES = Fibonacci(unit=60.0)


@hookimpl
def gigq_retry_strategies() -> dict[str, Any]:
    """Offer "fibonacci", a factory: a job picks it with `retry=("fibonacci", {"unit": 2})`;
    and "fibonacci_minutes", a strategy object: `retry="fibonacci_minutes"`, no parameters."""
    return {"fibonacci": Fibonacci, "fibonacci_minutes": FIBONACCI_MINUTES}


@hookimpl
def gigq_job_failed(job: Any, error: Any, final: bool) -> None:
    """Log a job that failed for good (a failed attempt that will be retried is not logged)."""
    if final:
        # Quoted (%r): a name or an error holding a newline or an escape stays on one line.
        log.warning(
            "job %r (%s) failed for good after %d attempt(s): %r",
            job.name,
            job.id,
            job.attempts,
            str(error),
        )


__all__ = ["FIBONACCI_MINUTES", "Fibonacci"]
