"""Contract of the optional capability `Prefetch` (ports.Prefetch, issue 18): a worker claims
jobs ahead of its free slots. Such a job is "reserved": held by the worker under a token and
a lease, not started, its attempt not counted until `start`.

The capability is optional: an adapter without it (a third-party one given with
`--storage-url`) is skipped here with a reason that says so, never failed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from gigq_core.ports import Prefetch, Storage
from gigq_core.records import JobFilter, JobRecord, JobStatus, Outcome, WorkerInfo, cascade_reason
from tests.contract._factory import (
    BOOM,
    LEASE,
    claim_one,
    complete,
    ids,
    job_record,
    seconds,
    stored,
)
from tests.contract._migration import has_transfer, import_into, items_of
from tests.contract.test_export_import import import_target  # noqa: F401 (a fixture)

#: The function of the contract suite's jobs (tests.contract._factory.job_record).
NOOP = "tests.jobs:noop"
#: Another function, which the worker in these tests may not take ahead.
OTHER = "tests.jobs:other"
#: The functions the worker in these tests takes ahead.
FUNCTIONS = (NOOP,)


@pytest.fixture
def prefetch(storage: Storage) -> Any:
    """The storage under test, which must have the optional capability (else skipped)."""
    if not isinstance(storage, Prefetch):
        pytest.skip(
            f"{type(storage).__name__} has no claim_ahead()/start()/release() "
            "(Prefetch is an optional capability)"
        )
    return storage


def claim_ahead(
    storage: Any,
    now: Any,
    start: int = 0,
    reserve: int = 10,
    worker_id: str = "w1",
    queues: list[str] | None = None,
    functions: tuple[str, ...] = FUNCTIONS,
    lease: float = LEASE,
) -> tuple[list[JobRecord], list[JobRecord]]:
    """`storage.claim_ahead(...)` with the suite's defaults: reserve only."""
    started, reserved = storage.claim_ahead(
        worker_id, start, reserve, now, lease, queues, list(functions)
    )
    return started, reserved


def start(storage: Any, worker_id: str, held: dict[str, str], now: Any) -> list[JobRecord]:
    """`storage.start(...)` for the jobs of `held` (job id to token), given as the records a
    worker holds: each job's stored record (a stand-in for an unknown id) under that
    token."""
    jobs = []
    for job_id, token in held.items():
        found = storage.get(job_id)
        record = found if found is not None else job_record(now, id=job_id)
        jobs.append(attrs.evolve(record, token=token))
    result: list[JobRecord] = storage.start(worker_id, jobs, now)
    return result


def reserve_one(storage: Any, now: Any, job_id: str, worker_id: str = "w1") -> JobRecord:
    """Reserve exactly `job_id`, which must be the next ready job of its queue."""
    queue = stored(storage, job_id).queue
    started, reserved = claim_ahead(storage, now, reserve=1, worker_id=worker_id, queues=[queue])
    assert started == []
    assert ids(reserved) == [job_id], f"expected to reserve {job_id}"
    return reserved[0]


def retried_once(storage: Storage, now: Any, job_id: str) -> JobRecord:
    """Claim `job_id` and fail the attempt with a retry due at once: pending, 1 attempt."""
    token = claim_one(storage, now, job_id).token
    assert token
    [transition] = storage.finish(
        [Outcome(job_id=job_id, token=token, status="failed", error=BOOM, retry_at=now)], now
    )
    assert transition is not None
    record = stored(storage, job_id)
    assert (record.status, record.attempts) == (JobStatus.PENDING, 1)
    return record


def handed_back_once(storage: Storage, now: Any, job_id: str) -> JobRecord:
    """Claim `job_id` and hand it back: pending, no attempt counted, 1 hand-back."""
    token = claim_one(storage, now, job_id).token
    assert token
    [transition] = storage.finish([Outcome(job_id=job_id, token=token, status="handed_back")], now)
    assert transition is not None
    record = stored(storage, job_id)
    assert (record.status, record.attempts, record.handbacks) == (JobStatus.PENDING, 0, 1)
    return record


def worker(clock: Any, worker_id: str) -> WorkerInfo:
    now = clock.now()
    return WorkerInfo(id=worker_id, host="host", pid=100, started_at=now, last_heartbeat=now)


def assert_reserved(
    record: JobRecord, worker_id: str, now: Any, attempts: int = 0, lease: float = LEASE
) -> None:
    """`record` is a reservation made at `now`: held, not started, nothing counted."""
    assert record.status == JobStatus.RESERVED
    assert record.attempts == attempts
    assert record.token
    assert record.worker_id == worker_id
    assert record.lease_expires_at == now + seconds(lease)
    assert record.started_at is None
    assert not record.cancel_requested


def assert_pending_unreserved(record: JobRecord, attempts: int = 0, handbacks: int = 0) -> None:
    """`record` is pending again after its reservation ended, nothing counted."""
    assert record.status == JobStatus.PENDING
    assert record.attempts == attempts
    assert record.handbacks == handbacks
    assert record.token is None
    assert record.worker_id is None
    assert record.lease_expires_at is None


# -- claim_ahead -------------------------------------------------------------------------------


def test_adapter_has_every_member_of_the_capability(prefetch):
    for name in ("claim_ahead", "start", "release"):
        assert callable(getattr(prefetch, name))


def test_claim_ahead_starts_then_reserves_in_claim_order(prefetch, clock, make_job):
    jobs = [make_job(priority=p) for p in (0, 5, 0, 5, -1, 10)]
    prefetch.insert(jobs[:3], clock.now())
    clock.advance(1)
    prefetch.insert(jobs[3:], clock.now())
    by_priority = [jobs[i].id for i in (5, 1, 3, 0, 2, 4)]

    started, reserved = claim_ahead(prefetch, clock.now(), start=2, reserve=3)

    assert ids(started) == by_priority[:2]
    assert ids(reserved) == by_priority[2:5]
    assert stored(prefetch, by_priority[5]).status == JobStatus.PENDING


def test_started_jobs_are_claimed_exactly_as_claim_does(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    clock.advance(5)
    now = clock.now()

    [claimed], reserved = claim_ahead(prefetch, now, start=1, reserve=0, worker_id="w7", lease=45)

    assert reserved == []
    for record in (claimed, stored(prefetch, job.id)):
        assert record.status == JobStatus.RUNNING
        assert record.attempts == 1
        assert record.token == claimed.token
        assert record.worker_id == "w7"
        assert record.started_at == now
        assert record.lease_expires_at == now + seconds(45)
    [execution] = prefetch.executions(job.id)
    assert (execution.status, execution.attempt) == ("running", 1)
    assert (execution.worker_id, execution.token) == ("w7", claimed.token)
    assert execution.started_at == now
    assert execution.completed_at is None


def test_reserved_job_is_held_without_counting_an_attempt(prefetch, clock, make_job):
    fresh = make_job(priority=1)
    retried = make_job(queue="r")
    prefetch.insert([fresh, retried], clock.now())
    retried_once(prefetch, clock.now(), retried.id)
    clock.advance(5)
    now = clock.now()

    started, reserved = claim_ahead(prefetch, now, start=0, reserve=2, worker_id="w7", lease=45)

    assert started == []
    assert ids(reserved) == [fresh.id, retried.id]
    for job, attempts in ((fresh, 0), (retried, 1)):
        [returned] = [r for r in reserved if r.id == job.id]
        record = stored(prefetch, job.id)
        assert_reserved(returned, "w7", now, attempts=attempts, lease=45)
        assert_reserved(record, "w7", now, attempts=attempts, lease=45)
        assert record.token == returned.token
    assert reserved[0].token != reserved[1].token
    # No execution record for a reservation: only the retried job's first attempt.
    assert prefetch.executions(fresh.id) == []
    assert [e.attempt for e in prefetch.executions(retried.id)] == [1]


def test_reserve_only_jobs_whose_function_is_listed(prefetch, clock, make_job):
    a = make_job(priority=3)
    b = make_job(priority=2, function=OTHER)
    c = make_job(priority=1)
    d = make_job(function=OTHER)
    prefetch.insert([a, b, c, d], clock.now())

    assert claim_ahead(prefetch, clock.now(), reserve=5, functions=()) == ([], [])
    started, reserved = claim_ahead(prefetch, clock.now(), reserve=5)

    assert started == []
    assert ids(reserved) == [a.id, c.id]
    assert stored(prefetch, b.id).status == JobStatus.PENDING
    assert stored(prefetch, d.id).status == JobStatus.PENDING


def test_the_functions_filter_does_not_apply_to_the_started_jobs(prefetch, clock, make_job):
    a = make_job(priority=3, function=OTHER)
    b = make_job(priority=2, function=OTHER)
    c = make_job(priority=1)
    prefetch.insert([a, b, c], clock.now())

    started, reserved = claim_ahead(prefetch, clock.now(), start=1, reserve=5)

    assert ids(started) == [a.id]
    assert ids(reserved) == [c.id]
    assert stored(prefetch, b.id).status == JobStatus.PENDING


def test_several_functions_may_be_taken_ahead(prefetch, clock, make_job):
    a = make_job(function=OTHER)
    b = make_job()
    c = make_job(function="tests.jobs:third")
    prefetch.insert([a, b, c], clock.now())

    _, reserved = claim_ahead(prefetch, clock.now(), reserve=5, functions=(OTHER, NOOP))

    assert ids(reserved) == [a.id, b.id]


def test_start_zero_only_reserves(prefetch, clock, make_job):
    jobs = [make_job() for _ in range(3)]
    prefetch.insert(jobs, clock.now())

    started, reserved = claim_ahead(prefetch, clock.now(), start=0, reserve=2)

    assert started == []
    assert ids(reserved) == ids(jobs[:2])
    assert prefetch.count(JobFilter()) == {"reserved": 2, "pending": 1}


def test_reserve_zero_is_a_claim(prefetch, clock, make_job):
    jobs = [make_job() for _ in range(3)]
    prefetch.insert(jobs, clock.now())

    started, reserved = claim_ahead(prefetch, clock.now(), start=2, reserve=0)

    assert ids(started) == ids(jobs[:2])
    assert reserved == []
    assert prefetch.count(JobFilter()) == {"running": 2, "pending": 1}
    assert claim_ahead(prefetch, clock.now(), start=0, reserve=0) == ([], [])
    assert stored(prefetch, jobs[2].id).status == JobStatus.PENDING


def test_claim_ahead_takes_no_more_than_what_is_ready(prefetch, clock, make_job):
    jobs = [make_job() for _ in range(3)]
    prefetch.insert(jobs, clock.now())

    started, reserved = claim_ahead(prefetch, clock.now(), start=2, reserve=5)

    assert ids(started) == ids(jobs[:2])
    assert ids(reserved) == [jobs[2].id]
    assert claim_ahead(prefetch, clock.now(), start=5, reserve=5) == ([], [])


def test_claim_ahead_honours_run_at(prefetch, clock, make_job):
    later = make_job(run_at=clock.now() + seconds(60))
    prefetch.insert([later], clock.now())

    assert claim_ahead(prefetch, clock.now(), start=1, reserve=5) == ([], [])
    clock.advance(60)
    assert ids(claim_ahead(prefetch, clock.now(), reserve=5)[1]) == [later.id]


def test_claim_ahead_queues_filter(prefetch, clock, make_job):
    a = make_job(queue="a")
    b = make_job(queue="b")
    c = make_job(queue="c")
    d = make_job(queue="a")
    prefetch.insert([a, b, c, d], clock.now())

    started, reserved = claim_ahead(prefetch, clock.now(), start=1, reserve=5, queues=["a", "c"])

    assert ids(started) == [a.id]
    assert ids(reserved) == [c.id, d.id]
    assert claim_ahead(prefetch, clock.now(), start=1, reserve=5, queues=[]) == ([], [])
    assert stored(prefetch, b.id).status == JobStatus.PENDING


def test_claim_ahead_takes_nothing_from_a_paused_queue(prefetch, clock, make_job):
    a = make_job(queue="a")
    b = make_job(queue="b")
    prefetch.insert([a, b], clock.now())
    prefetch.set_queue_paused("a", True)

    assert claim_ahead(prefetch, clock.now(), start=0, reserve=5, queues=["a"]) == ([], [])
    assert ids(claim_ahead(prefetch, clock.now(), start=0, reserve=5)[1]) == [b.id]
    assert stored(prefetch, a.id).status == JobStatus.PENDING

    prefetch.set_queue_paused("a", False)
    assert ids(claim_ahead(prefetch, clock.now(), start=0, reserve=5)[1]) == [a.id]


def test_a_job_with_an_unfinished_dependency_is_never_reserved(prefetch, clock, make_job):
    parent = make_job(priority=1)
    child = make_job(priority=100, dependencies=(parent.id,))
    prefetch.insert([parent, child], clock.now())

    started, reserved = claim_ahead(prefetch, clock.now(), start=0, reserve=5)

    assert started == []
    assert ids(reserved) == [parent.id]
    assert stored(prefetch, child.id).status == JobStatus.PENDING
    # Started but not completed still blocks it.
    [running] = start(prefetch, "w1", {parent.id: reserved[0].token}, clock.now())
    assert claim_ahead(prefetch, clock.now(), start=1, reserve=5) == ([], [])
    prefetch.finish(
        [Outcome(job_id=parent.id, token=running.token, status="completed")], clock.now()
    )
    assert ids(claim_ahead(prefetch, clock.now(), reserve=5)[1]) == [child.id]


def test_reserved_job_is_not_claimed_or_reserved_again(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)
    clock.advance(LEASE - 1)

    assert prefetch.claim("w2", 10, clock.now(), LEASE) == []
    assert claim_ahead(prefetch, clock.now(), start=5, reserve=5, worker_id="w2") == ([], [])
    assert stored(prefetch, job.id) == held
    assert prefetch.next_due(clock.now()) is None


def test_no_job_is_reserved_for_two_threads(prefetch, clock, make_job):
    jobs = [make_job(priority=i % 3) for i in range(40)]
    prefetch.insert(jobs, clock.now())
    now = clock.now()
    workers = 6
    barrier = threading.Barrier(workers)
    taken: dict[str, list[str]] = {f"w{i}": [] for i in range(workers)}
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(len(jobs)):
                started, reserved = claim_ahead(
                    prefetch, now, start=1, reserve=2, worker_id=worker_id
                )
                if not started and not reserved:
                    return
                taken[worker_id].extend(ids([*started, *reserved]))
        except BaseException as err:  # reported by the test below, in its own thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    every = [job_id for got in taken.values() for job_id in got]
    assert sorted(every) == sorted(ids(jobs))
    for worker_id, got in taken.items():
        for job_id in got:
            assert stored(prefetch, job_id).worker_id == worker_id


# -- start ---------------------------------------------------------------------------------


def test_start_runs_reserved_jobs_counting_the_attempt(prefetch, clock, make_job):
    a = make_job(priority=1)
    b = make_job()
    prefetch.insert([a, b], clock.now())
    _, reserved = claim_ahead(prefetch, clock.now(), reserve=2, worker_id="w7")
    tokens = {r.id: r.token for r in reserved}
    leases = {r.id: r.lease_expires_at for r in reserved}
    clock.advance(5)
    now = clock.now()

    started = start(prefetch, "w7", tokens, now)

    assert sorted(ids(started)) == sorted([a.id, b.id])
    for returned in started:
        for record in (returned, stored(prefetch, returned.id)):
            assert record.status == JobStatus.RUNNING
            assert record.attempts == 1
            assert record.started_at == now
            assert record.token == tokens[returned.id]
            assert record.worker_id == "w7"
            # `start` takes no lease: the reservation's (as heartbeats renewed it) holds.
            assert record.lease_expires_at == leases[returned.id]
        [execution] = prefetch.executions(returned.id)
        assert (execution.status, execution.attempt) == ("running", 1)
        assert (execution.worker_id, execution.token) == ("w7", tokens[returned.id])
        assert execution.started_at == now
        assert execution.completed_at is None
    assert prefetch.count(JobFilter()) == {"running": 2}


def test_a_started_job_finishes_under_its_reservation_token(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token
    start(prefetch, "w1", {job.id: token}, clock.now())
    clock.advance(3)

    [transition] = prefetch.finish(
        [Outcome(job_id=job.id, token=token, status="completed", result="7")], clock.now()
    )

    assert transition is not None
    assert transition.previous == JobStatus.RUNNING
    assert transition.job.status == JobStatus.COMPLETED
    assert transition.job.result == "7"
    [execution] = prefetch.executions(job.id)
    assert (execution.status, execution.result) == ("completed", "7")


def test_start_counts_the_next_attempt_of_a_retried_job(prefetch, clock, make_job):
    job = make_job(max_attempts=3)
    prefetch.insert([job], clock.now())
    retried_once(prefetch, clock.now(), job.id)
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token

    [started] = start(prefetch, "w1", {job.id: token}, clock.now())

    assert started.attempts == 2
    executions = prefetch.executions(job.id)
    assert [(e.attempt, e.status) for e in executions] == [(1, "failed"), (2, "running")]
    assert executions[1].token == token


def test_start_with_a_wrong_token_or_an_unknown_job_starts_nothing(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)
    unknown = str(uuid.uuid4())

    assert start(prefetch, "w1", {job.id: "not-the-token", unknown: "t"}, clock.now()) == []

    assert stored(prefetch, job.id) == held
    assert prefetch.executions(job.id) == []


def test_start_of_a_pending_job_starts_nothing(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert prefetch.release({job.id: token}, clock.now()) == [job.id]

    assert start(prefetch, "w1", {job.id: token}, clock.now()) == []
    assert stored(prefetch, job.id).status == JobStatus.PENDING
    assert prefetch.executions(job.id) == []


def test_start_twice_starts_once(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token
    [first] = start(prefetch, "w1", {job.id: token}, clock.now())
    clock.advance(1)

    assert start(prefetch, "w1", {job.id: token}, clock.now()) == []
    assert stored(prefetch, job.id) == first
    assert len(prefetch.executions(job.id)) == 1


def test_start_starts_only_the_jobs_still_held(prefetch, clock, make_job):
    kept = make_job(priority=1)
    cancelled = make_job()
    prefetch.insert([kept, cancelled], clock.now())
    _, reserved = claim_ahead(prefetch, clock.now(), reserve=2)
    tokens = {r.id: r.token for r in reserved}
    prefetch.cancel([cancelled.id], clock.now(), "stop")

    started = start(prefetch, "w1", tokens, clock.now())

    assert ids(started) == [kept.id]
    assert stored(prefetch, cancelled.id).status == JobStatus.CANCELLED
    assert prefetch.executions(cancelled.id) == []


def test_a_reserved_start_is_never_before_a_dependency_completed(prefetch, clock, make_job):
    # The worker read its clock before the parent completed (later by the clock), then
    # started the child it had reserved: the start is the parent's completion.
    parent = make_job()
    child = make_job(dependencies=(parent.id,))
    prefetch.insert([parent, child], clock.now())
    read_before = clock.now()
    clock.advance(5)
    complete(prefetch, clock.now(), parent.id)
    finished = stored(prefetch, parent.id).completed_at
    assert finished is not None
    token = reserve_one(prefetch, clock.now(), child.id).token
    assert token

    [started] = start(prefetch, "w2", {child.id: token}, read_before)

    assert started.started_at == finished
    assert stored(prefetch, child.id).started_at == finished
    [execution] = prefetch.executions(child.id)
    assert execution.started_at == finished


# -- release -------------------------------------------------------------------------------


def test_release_puts_reserved_jobs_back_to_pending_counting_nothing(prefetch, clock, make_job):
    fresh = make_job(priority=2)
    retried = make_job(priority=1, queue="r")
    handed = make_job(queue="h")
    prefetch.insert([fresh, retried, handed], clock.now())
    retried_once(prefetch, clock.now(), retried.id)
    handed_back_once(prefetch, clock.now(), handed.id)
    _, reserved = claim_ahead(prefetch, clock.now(), reserve=3)
    assert ids(reserved) == [fresh.id, retried.id, handed.id]
    tokens = {r.id: r.token for r in reserved}
    runs = {job_id: prefetch.executions(job_id) for job_id in tokens}
    clock.advance(2)

    released = prefetch.release(tokens, clock.now())

    assert sorted(released) == sorted(tokens)
    assert_pending_unreserved(stored(prefetch, fresh.id))
    assert_pending_unreserved(stored(prefetch, retried.id), attempts=1)
    assert_pending_unreserved(stored(prefetch, handed.id), handbacks=1)
    for job_id, before in runs.items():
        assert prefetch.executions(job_id) == before
    assert prefetch.count(JobFilter()) == {"pending": 3}


def test_a_released_job_is_claimed_again_by_another_worker(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    old = reserve_one(prefetch, clock.now(), job.id, worker_id="w1")
    assert old.token
    assert prefetch.release({job.id: old.token}, clock.now()) == [job.id]

    again = reserve_one(prefetch, clock.now(), job.id, worker_id="w2")

    assert again.token != old.token
    assert again.worker_id == "w2"
    # The first worker's token no longer holds the job.
    assert start(prefetch, "w1", {job.id: old.token}, clock.now()) == []
    assert prefetch.release({job.id: old.token}, clock.now()) == []
    assert stored(prefetch, job.id) == again
    [started] = start(prefetch, "w2", {job.id: again.token}, clock.now())
    assert (started.attempts, started.worker_id) == (1, "w2")


def test_a_released_job_may_be_claimed_at_once(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    clock.advance(10)
    prefetch.release({job.id: token}, clock.now())

    [claimed] = prefetch.claim("w2", 5, clock.now(), LEASE)

    assert (claimed.id, claimed.attempts) == (job.id, 1)


def test_release_does_not_release_a_started_job(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token
    [started] = start(prefetch, "w1", {job.id: token}, clock.now())

    assert prefetch.release({job.id: token}, clock.now()) == []
    assert stored(prefetch, job.id) == started


def test_release_with_a_wrong_token_or_an_unknown_job_releases_nothing(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)

    assert prefetch.release({job.id: "not-the-token", str(uuid.uuid4()): "t"}, clock.now()) == []
    assert stored(prefetch, job.id) == held


def test_release_does_not_touch_a_claimed_job(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    claimed = claim_one(prefetch, clock.now(), job.id)
    assert claimed.token

    assert prefetch.release({job.id: claimed.token}, clock.now()) == []
    assert stored(prefetch, job.id) == claimed


# -- finish, heartbeat ---------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed", "timeout", "cancelled", "handed_back"])
def test_an_outcome_for_a_reserved_job_is_fenced(prefetch, clock, make_job, status):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)
    assert held.token
    retry_at = clock.now() if status in ("failed", "timeout") else None

    outcome = Outcome(
        job_id=job.id, token=held.token, status=status, result="1", error=BOOM, retry_at=retry_at
    )
    assert prefetch.finish([outcome], clock.now()) == [None]

    assert stored(prefetch, job.id) == held
    assert prefetch.executions(job.id) == []


def test_heartbeat_renews_the_lease_of_a_reserved_job(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token
    clock.advance(20)

    reply = prefetch.heartbeat("w1", {job.id: token}, clock.now(), 40.0)

    assert reply.lost == frozenset()
    assert reply.cancel_requested == frozenset()
    record = stored(prefetch, job.id)
    assert record.lease_expires_at == clock.now() + seconds(40)
    assert (record.status, record.token, record.attempts) == (JobStatus.RESERVED, token, 0)
    # The first lease has passed; the renewed one has not.
    clock.advance(LEASE)
    assert prefetch.rescue(clock.now()) == []
    assert stored(prefetch, job.id).status == JobStatus.RESERVED


def test_heartbeat_with_a_wrong_token_does_not_renew_a_reservation(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)
    clock.advance(10)

    reply = prefetch.heartbeat("w1", {job.id: "not-the-token"}, clock.now(), LEASE)

    assert reply.lost == frozenset({job.id})
    assert stored(prefetch, job.id) == held


def test_heartbeat_reports_a_released_rescued_or_cancelled_reservation_lost(
    prefetch, clock, make_job
):
    released = make_job(priority=2)
    rescued = make_job(priority=1)
    cancelled = make_job()
    prefetch.insert([released, rescued, cancelled], clock.now())
    _, reserved = claim_ahead(prefetch, clock.now(), reserve=3)
    tokens = {r.id: r.token for r in reserved}
    prefetch.release({released.id: tokens[released.id]}, clock.now())
    prefetch.cancel([cancelled.id], clock.now(), "stop")
    clock.advance(LEASE + 1)
    assert ids(t.job for t in prefetch.rescue(clock.now())) == [rescued.id]

    reply = prefetch.heartbeat("w1", tokens, clock.now(), LEASE)

    assert reply.lost == frozenset(tokens)
    assert reply.cancel_requested == frozenset()


# -- rescue --------------------------------------------------------------------------------


def test_rescue_returns_an_expired_reservation_to_pending_counting_nothing(
    prefetch, clock, make_job
):
    # One attempt allowed: a counted loss would fail the job; a reservation counts nothing.
    once = make_job(max_attempts=1, priority=2)
    retried = make_job(max_attempts=2, priority=1, queue="r")
    handed = make_job(queue="h")
    prefetch.insert([once, retried, handed], clock.now())
    retried_once(prefetch, clock.now(), retried.id)
    handed_back_once(prefetch, clock.now(), handed.id)
    errors = {job.id: stored(prefetch, job.id).error for job in (once, retried, handed)}
    runs = {job.id: prefetch.executions(job.id) for job in (once, retried, handed)}
    _, reserved = claim_ahead(prefetch, clock.now(), reserve=3)
    assert ids(reserved) == [once.id, retried.id, handed.id]
    clock.advance(LEASE + 1)

    transitions = prefetch.rescue(clock.now())

    assert ids(t.job for t in transitions) == [once.id, retried.id, handed.id]
    for transition in transitions:
        assert transition.previous == JobStatus.RESERVED
        assert transition.cancelled == ()
        assert transition.error is None
        assert transition.job == stored(prefetch, transition.job.id)
    assert_pending_unreserved(stored(prefetch, once.id))
    assert_pending_unreserved(stored(prefetch, retried.id), attempts=1)
    assert_pending_unreserved(stored(prefetch, handed.id), handbacks=1)
    for job_id, error in errors.items():
        # No attempt was lost: no "worker lost" error, no execution record.
        assert stored(prefetch, job_id).error == error
        assert prefetch.executions(job_id) == runs[job_id]
    # Ready again at once, in claim order.
    assert ids(prefetch.claim("w2", 5, clock.now(), LEASE)) == [once.id, retried.id, handed.id]


def test_rescue_waits_until_a_reservation_has_expired_before_now(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)
    assert held.lease_expires_at is not None

    assert prefetch.rescue(held.lease_expires_at) == []
    assert stored(prefetch, job.id) == held
    [transition] = prefetch.rescue(held.lease_expires_at + seconds(0.001))
    assert transition.job.id == job.id


def test_rescue_of_a_dead_workers_reservations_before_their_leases_expire(
    prefetch, clock, make_job
):
    prefetch.register_worker(worker(clock, "dead"))
    prefetch.register_worker(worker(clock, "alive"))
    lost = make_job(queue="a")
    kept = make_job(queue="b")
    prefetch.insert([lost, kept], clock.now())
    reserve_one(prefetch, clock.now(), lost.id, worker_id="dead")
    held = reserve_one(prefetch, clock.now(), kept.id, worker_id="alive")
    clock.advance(5)

    [transition] = prefetch.rescue(clock.now(), ["dead"])

    assert transition.job.id == lost.id
    assert transition.previous == JobStatus.RESERVED
    assert_pending_unreserved(stored(prefetch, lost.id))
    assert prefetch.executions(lost.id) == []
    assert stored(prefetch, kept.id) == held
    assert [w.id for w in prefetch.list_workers()] == ["alive"]


def test_rescue_returns_reserved_and_running_jobs_in_seq_order(prefetch, clock, make_job):
    jobs = [make_job(priority=p, max_attempts=1) for p in (0, 5, 1, 3)]
    prefetch.insert(jobs, clock.now())
    started, reserved = claim_ahead(prefetch, clock.now(), start=2, reserve=2)
    assert ids(started) == [jobs[1].id, jobs[3].id]
    assert ids(reserved) == [jobs[2].id, jobs[0].id]
    clock.advance(LEASE + 1)

    transitions = prefetch.rescue(clock.now())

    assert ids(t.job for t in transitions) == ids(jobs)
    previous = {t.job.id: t.previous for t in transitions}
    statuses = {t.job.id: t.job.status for t in transitions}
    for job in (jobs[1], jobs[3]):
        # A started attempt is lost and counts (today's rule): no attempt left, failed.
        assert previous[job.id] == JobStatus.RUNNING
        assert statuses[job.id] == JobStatus.FAILED
        assert prefetch.executions(job.id)[0].status == "lost"
    for job in (jobs[0], jobs[2]):
        assert previous[job.id] == JobStatus.RESERVED
        assert statuses[job.id] == JobStatus.PENDING
    assert prefetch.rescue(clock.now()) == []


def test_a_started_reservation_is_rescued_as_a_running_job(prefetch, clock, make_job):
    job = make_job(max_attempts=3)
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token
    start(prefetch, "w1", {job.id: token}, clock.now())
    clock.advance(LEASE + 1)

    [transition] = prefetch.rescue(clock.now())

    assert transition.previous == JobStatus.RUNNING
    record = stored(prefetch, job.id)
    assert (record.status, record.attempts) == (JobStatus.PENDING, 1)
    assert "worker lost" in (record.error or "")
    assert prefetch.executions(job.id)[0].status == "lost"


def test_a_rescued_reservation_is_not_started_by_its_old_token(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    clock.advance(LEASE + 1)
    prefetch.rescue(clock.now())
    before = stored(prefetch, job.id)

    assert start(prefetch, "w1", {job.id: token}, clock.now()) == []
    assert prefetch.release({job.id: token}, clock.now()) == []
    assert stored(prefetch, job.id) == before


# -- cancel, requeue -----------------------------------------------------------------------


def test_cancel_of_a_reserved_job_cancels_it_at_once_with_its_dependents(prefetch, clock, make_job):
    job = make_job()
    child = make_job(dependencies=(job.id,))
    grandchild = make_job(dependencies=(child.id,))
    prefetch.insert([job, child, grandchild], clock.now())
    token = reserve_one(prefetch, clock.now(), job.id).token
    assert token
    clock.advance(1)

    [transition] = prefetch.cancel([job.id], clock.now(), "stop")

    assert transition.previous == JobStatus.RESERVED
    for record in (transition.job, stored(prefetch, job.id)):
        assert record.status == JobStatus.CANCELLED
        assert record.error == "stop"
        assert not record.cancel_requested
        assert record.token is None
        assert record.attempts == 0
    assert sorted(ids(transition.cancelled)) == sorted([child.id, grandchild.id])
    assert stored(prefetch, child.id).error == cascade_reason(job.id, job.name, "cancelled")
    assert stored(prefetch, grandchild.id).status == JobStatus.CANCELLED
    assert prefetch.executions(job.id) == []
    # The worker that held it learns nothing can start.
    assert start(prefetch, "w1", {job.id: token}, clock.now()) == []
    assert prefetch.release({job.id: token}, clock.now()) == []
    assert prefetch.heartbeat("w1", {job.id: token}, clock.now(), LEASE).lost == {job.id}
    assert stored(prefetch, job.id) == transition.job


def test_a_cancelled_reservation_may_be_requeued(prefetch, clock, make_job):
    job = make_job()
    child = make_job(dependencies=(job.id,))
    prefetch.insert([job, child], clock.now())
    reserve_one(prefetch, clock.now(), job.id)
    prefetch.cancel([job.id], clock.now(), "stop")

    [transition] = prefetch.requeue([job.id], clock.now())

    assert transition.job.status == JobStatus.PENDING
    assert ids(transition.revived) == [child.id]
    assert ids(prefetch.claim("w2", 5, clock.now(), LEASE)) == [job.id]


def test_requeue_leaves_a_reserved_job_alone(prefetch, clock, make_job):
    job = make_job()
    prefetch.insert([job], clock.now())
    held = reserve_one(prefetch, clock.now(), job.id)

    assert prefetch.requeue([job.id], clock.now()) == []
    assert stored(prefetch, job.id) == held


# -- unique keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["active", "success"])
def test_a_reserved_job_holds_its_unique_key(prefetch, clock, make_job, scope):
    job = make_job(unique_key="k", unique_scope=scope)
    prefetch.insert([job], clock.now())
    reserve_one(prefetch, clock.now(), job.id)

    duplicate = make_job(unique_key="k", unique_scope=scope)
    assert prefetch.insert([duplicate], clock.now()) == [job.id]
    assert prefetch.get(duplicate.id) is None


def test_a_requeue_does_not_take_the_key_a_reservation_holds(prefetch, clock, make_job):
    old = make_job(unique_key="k")
    prefetch.insert([old], clock.now())
    prefetch.cancel([old.id], clock.now(), "stop")
    new = make_job(unique_key="k")
    assert prefetch.insert([new], clock.now()) == [new.id]
    reserve_one(prefetch, clock.now(), new.id)

    assert prefetch.requeue([old.id], clock.now()) == []
    assert stored(prefetch, old.id).status == JobStatus.CANCELLED


def test_a_cancelled_reservation_frees_its_unique_key(prefetch, clock, make_job):
    job = make_job(unique_key="k")
    prefetch.insert([job], clock.now())
    reserve_one(prefetch, clock.now(), job.id)
    prefetch.cancel([job.id], clock.now(), "stop")

    again = make_job(unique_key="k")
    assert prefetch.insert([again], clock.now()) == [again.id]


# -- reading -------------------------------------------------------------------------------


@pytest.fixture
def mixed(prefetch: Any, clock: Any, make_job: Callable[..., JobRecord]) -> dict[str, list[str]]:
    """Two reserved jobs (queues a and b), one running (a), one pending (b), one completed
    (c); by status."""
    done = make_job(queue="c")
    prefetch.insert([done], clock.now())
    complete(prefetch, clock.now(), done.id)
    jobs = [make_job(queue=q) for q in ("a", "a", "b", "b")]
    prefetch.insert(jobs, clock.now())
    started, reserved = claim_ahead(prefetch, clock.now(), start=1, reserve=1, queues=["a"])
    _, more = claim_ahead(prefetch, clock.now(), start=0, reserve=1, queues=["b"])
    return {
        "running": ids(started),
        "reserved": ids([*reserved, *more]),
        "pending": [jobs[3].id],
        "completed": [done.id],
    }


def test_list_jobs_shows_reserved_jobs_as_reserved(prefetch, mixed):
    def listed(*statuses: JobStatus) -> set[str]:
        return set(ids(prefetch.list_jobs(JobFilter(statuses=statuses))))

    assert listed(JobStatus.RESERVED) == set(mixed["reserved"])
    assert listed(JobStatus.RUNNING) == set(mixed["running"])
    assert listed(JobStatus.PENDING) == set(mixed["pending"])
    assert listed(JobStatus.RESERVED, JobStatus.RUNNING) == {
        *mixed["reserved"],
        *mixed["running"],
    }
    for record in prefetch.list_jobs(JobFilter()):
        wanted = next(status for status, group in mixed.items() if record.id in group)
        assert record.status.value == wanted
    assert {r.id: r.status for r in prefetch.get_many(mixed["reserved"]).values()} == {
        job_id: JobStatus.RESERVED for job_id in mixed["reserved"]
    }


def test_count_shows_reserved_jobs_as_reserved(prefetch, mixed):
    def nonzero(counts: dict[str, int]) -> dict[str, int]:
        return {status: n for status, n in counts.items() if n}

    assert nonzero(prefetch.count(JobFilter())) == {
        "reserved": 2,
        "running": 1,
        "pending": 1,
        "completed": 1,
    }
    assert nonzero(prefetch.count(JobFilter(statuses=(JobStatus.RESERVED,)))) == {"reserved": 2}
    assert nonzero(prefetch.count(JobFilter(queues=("a",)))) == {"reserved": 1, "running": 1}


def test_queue_counts_show_reserved_jobs_as_reserved(prefetch, mixed):
    counts = {
        queue: {status: n for status, n in per.items() if n}
        for queue, per in prefetch.queue_counts().items()
    }

    assert counts == {
        "a": {"reserved": 1, "running": 1},
        "b": {"reserved": 1, "pending": 1},
        "c": {"completed": 1},
    }


def test_prune_keeps_a_completed_dependency_of_a_reserved_job(prefetch, clock, make_job):
    parent = make_job()
    child = make_job(dependencies=(parent.id,))
    prefetch.insert([parent, child], clock.now())
    complete(prefetch, clock.now(), parent.id)
    reserve_one(prefetch, clock.now(), child.id)
    clock.advance(100)

    assert prefetch.prune(clock.now(), ["completed"]) == 0
    assert stored(prefetch, parent.id).status == JobStatus.COMPLETED


# -- export and import ---------------------------------------------------------------------


def test_a_reserved_job_is_imported_pending_with_nothing_counted(
    prefetch,
    import_target,  # noqa: F811 (the fixture imported above)
    clock,
    make_job,
):
    if not has_transfer(prefetch):
        pytest.skip(f"{type(prefetch).__name__} has no export()/import_() (optional)")
    once = make_job(max_attempts=1, priority=1, unique_key="k")
    retried = make_job(max_attempts=2, queue="r")
    prefetch.insert([once, retried], clock.now())
    retried_once(prefetch, clock.now(), retried.id)
    _, reserved = claim_ahead(prefetch, clock.now(), reserve=2)
    assert ids(reserved) == [once.id, retried.id]
    runs = {job.id: prefetch.executions(job.id) for job in (once, retried)}
    clock.advance(60)

    counts = import_into(import_target, items_of(prefetch), clock.now())

    assert counts["lost"] == 0
    assert counts["job"] == 2
    assert_pending_unreserved(stored(import_target, once.id))
    assert_pending_unreserved(stored(import_target, retried.id), attempts=1)
    assert stored(import_target, retried.id).error == stored(prefetch, retried.id).error
    for job_id, before in runs.items():
        assert [(e.attempt, e.status) for e in import_target.executions(job_id)] == [
            (e.attempt, e.status) for e in before
        ]
    # The source is left as it was.
    assert stored(prefetch, once.id).status == JobStatus.RESERVED
    # The key is still held on the target, and the jobs run there.
    assert import_target.insert([make_job(unique_key="k")], clock.now()) == [once.id]
    claimed = import_target.claim("w2", 5, clock.now(), LEASE)
    assert [(r.id, r.attempts) for r in claimed] == [(once.id, 1), (retried.id, 2)]
