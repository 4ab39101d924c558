"""Contract of `Storage.wait_for_work`: a bounded wait, cut short by a change.

A spurious True is allowed, so the waits below repeat until the change has happened; a
storage that never wakes up makes them fail after their (generous) budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from gigq_core.records import Outcome
from tests.contract._factory import BOOM, LEASE, job_record

#: Seconds a wake-up may take before the test fails; generous, this checks correctness.
BUDGET = 8.0


def test_wait_for_work_returns_false_after_the_timeout_when_nothing_happens(storage):
    start = time.monotonic()

    result = storage.wait_for_work(0.05)

    elapsed = time.monotonic() - start
    assert result is False
    assert 0.04 <= elapsed < BUDGET


def wakes_up_on(waiting, change: Callable[[], object]) -> bool:
    """Run `change` in another thread shortly after `waiting` starts to wait; True when a
    wait returned True once the change had begun, within the budget."""
    errors: list[BaseException] = []
    started = threading.Event()
    done = threading.Event()

    def run() -> None:
        started.set()
        try:
            change()
        except BaseException as err:  # reported by the test, in its own thread
            errors.append(err)
        finally:
            done.set()

    timer = threading.Timer(0.05, run)
    deadline = time.monotonic() + BUDGET
    timer.start()
    woke = False
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            woke = waiting.wait_for_work(remaining)
            # A True before the change began is spurious (allowed): wait again.
            if not woke or started.is_set():
                break
        done.wait(max(deadline - time.monotonic(), 0))
    finally:
        timer.join(timeout=BUDGET)
    assert errors == []
    return woke and started.is_set() and done.is_set()


def _change(kind, storage, clock):
    """Prepare the storage, and return the change another thread will make."""
    job = job_record(clock.now())
    if kind == "submit":
        return lambda: storage.insert([job], clock.now())
    storage.insert([job], clock.now())
    [claimed] = storage.claim("w1", 1, clock.now(), LEASE)
    if kind == "finish":
        outcome = Outcome(job_id=job.id, token=claimed.token, status="completed", result="1")
        return lambda: storage.finish([outcome], clock.now())
    failed = Outcome(job_id=job.id, token=claimed.token, status="failed", error=BOOM)
    storage.finish([failed], clock.now())
    return lambda: storage.requeue([job.id], clock.now())


@pytest.mark.parametrize("kind", ["submit", "finish", "requeue"])
def test_wait_for_work_returns_true_when_another_thread_changes_something(storage, clock, kind):
    change = _change(kind, storage, clock)

    assert wakes_up_on(storage, change)


def test_wait_for_work_sees_a_submit_through_another_storage_object(open_target, clock):
    # Two objects on one store stand for a worker and a submitting process.
    waiting = open_target()
    submitting = open_target()
    job = job_record(clock.now())

    assert wakes_up_on(waiting, lambda: submitting.insert([job], clock.now()))
    assert waiting.get(job.id) is not None
