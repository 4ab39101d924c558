"""Prefetch, bounded by time: how many jobs a worker may reserve beyond its free slots,
from the recent durations of each function on this worker."""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Weight of the newest duration in a function's running average.
SMOOTHING = 0.2
#: Functions remembered at most (the least recently run are forgotten first).
MAX_FUNCTIONS = 256


class Prefetcher:
    """Recent durations per function, and the reservation they allow.

    A worker holds reserved jobs whose expected run time adds up to at most `window`
    seconds, and never more than `max_jobs` of them. Only functions that ran here recently
    and took no longer than `window` are reserved: a function never seen, or a slow one, is
    claimed only into a free slot, so long jobs are never held back from another worker.
    """

    def __init__(self, window: float, max_jobs: int) -> None:
        self.window = window
        self.max_jobs = max_jobs
        #: Running average of each function's duration (seconds), most recent last.
        self._durations: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """Whether this worker prefetches at all."""
        return self.window > 0 and self.max_jobs > 0

    def observe(self, ended: Iterable[tuple[str, float]]) -> None:
        """Learn from attempts that ended: (function, seconds it ran)."""
        if not self.enabled:
            return
        for function, seconds in ended:
            seconds = max(0.0, seconds)
            old = self._durations.pop(function, None)
            self._durations[function] = (
                seconds if old is None else old + SMOOTHING * (seconds - old)
            )
        while len(self._durations) > MAX_FUNCTIONS:
            del self._durations[next(iter(self._durations))]

    def expected(self, function: str) -> float | None:
        """The expected duration of a job of `function`, or None if unknown here."""
        return self._durations.get(function)

    def plan(self, reserved: Iterable[str]) -> tuple[int, list[str]]:
        """How many more jobs to reserve, and of which functions, given the functions of
        the jobs already reserved."""
        if not self.enabled:
            return 0, []
        fast = sorted(f for f, seconds in self._durations.items() if seconds <= self.window)
        if not fast:
            return 0, []
        held = list(reserved)
        budget = self.window - sum(self._durations.get(f, self.window) for f in held)
        # Count every new job at the slowest fast function's pace, so the sum stays bounded.
        slowest = max(self._durations[f] for f in fast)
        room = self.max_jobs - len(held)
        if budget <= 0 or room <= 0:
            return 0, []
        count = room if slowest <= 0 else min(room, math.floor(budget / slowest))
        return (count, fast) if count > 0 else (0, [])
